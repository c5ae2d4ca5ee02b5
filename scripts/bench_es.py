#!/usr/bin/env python3
"""Benchmark indexing into Elasticsearch: the whole pipeline against the node's raw `_bulk` ceiling.

    python scripts/bench_es.py [--events 200000] [--es-url http://127.0.0.1:9200] [--batch-docs 1000]
                               [--concurrency 2] [--runner-args "--direct_running_mode=..."]

Measured in the same run, on the same generated corpus (the shipped demo audit log repeated with
fresh auditIDs, as scripts/bench.py does), into fresh data streams of the same template
(`logs-kubernetes.audit_logs-bench*`, so the real audit mapping applies to both):

  raw        the node's ceiling: the corpus's ECS documents pre-serialised into `_bulk` bodies of
             --batch-docs `create` actions, sent by --concurrency threads; no pipeline work at all.
             Measured before and after the pipeline; the better of the two is the ceiling.
  sink       WriteToElasticsearch's DoFn alone (no Beam, no per-event work) fed the same
             pre-serialised documents: what the sink itself costs against the raw ceiling.
  pipeline   `kubehunt run --audit CORPUS` into Elasticsearch (read, parse, ECS, hunts, serialise,
             WriteToElasticsearch), same batch size and concurrency; the rate is events over the
             run's own elapsed time (pipeline construction to the last acknowledged bulk request).

It prints both rates and their ratio (the project's target: >= 70%), and the machine. The bench data
streams are deleted afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _bench_module():
    import scripts.bench
    return scripts.bench


def node_cpu_seconds() -> float | None:
    """CPU time used so far by the local node started by scripts/elasticsearch.sh (None if not ours)."""
    try:
        home = subprocess.run(["bash", str(ROOT / "scripts" / "elasticsearch.sh"), "home"], capture_output=True,
                              text=True, check=True).stdout.strip()
        pid = Path(home, "es.pid").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None


class Phase:
    """Wall time and CPU (this process + children, and the node) of one measured phase."""

    def __enter__(self):
        self.wall, self.node = time.perf_counter(), node_cpu_seconds()
        t = os.times()
        self.cpu = t.user + t.system + t.children_user + t.children_system
        return self

    def __exit__(self, *exc):
        t = os.times()
        self.cpu = t.user + t.system + t.children_user + t.children_system - self.cpu
        self.wall = time.perf_counter() - self.wall
        after = node_cpu_seconds()
        self.node = after - self.node if after is not None and self.node is not None else None

    def __str__(self):
        node = f"node {self.node:.1f} core-s" if self.node is not None else "node cpu n/a"
        return f"[{self.wall:.1f} s wall; client {self.cpu:.1f} core-s, {node}]"


def ecs_documents(corpus: Path) -> list[tuple[str, bytes]]:
    """The (id, bytes) the pipeline would index, made by the same fused per-event function."""
    from transforms.process import ProcessChunkFn, ProcessSettings

    fn = ProcessChunkFn(ProcessSettings(correlate=False))
    fn.setup()
    lines = corpus.read_bytes().splitlines()
    docs: list[tuple[str, bytes]] = []
    for first in range(0, len(lines), 1000):
        for out in fn.process(("audit", str(corpus), first + 1, lines[first:first + 1000])):
            if isinstance(out, list):
                docs.extend((item.id, item.body) for item in out)
    return docs


def raw_bulk(client, index: str, docs: list[tuple[str, bytes]], batch: int, concurrency: int) -> float:
    prefix = b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":'
    bodies = [b"".join(prefix + orjson.dumps(doc_id) + b"}}\n" + body + b"\n" for doc_id, body in docs[i:i + batch])
              for i in range(0, len(docs), batch)]

    def send(body: bytes) -> int:
        resp = client.bulk(operations=body, filter_path="errors,items.*.status")
        bad = [i for i in resp["items"] if next(iter(i.values()))["status"] not in (200, 201)]
        if bad:
            raise SystemExit(f"raw bulk: {len(bad)} documents not created: {bad[:3]}")
        return len(resp["items"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        sent = sum(pool.map(send, bodies))
    return sent / (time.perf_counter() - start)


def sink_only(url: str, index: str, docs: list[tuple[str, bytes]], batch: int, concurrency: int) -> float:
    from transforms.elasticsearch import BulkWriteFn, EsSettings
    from transforms.sink import SinkItem

    settings = EsSettings(hosts=(url,), batch_docs=batch, concurrency=concurrency,
                          indices=(("audit", index), ("falco", index), ("incidents", index), ("dead_letters", index)))
    chunks = [[SinkItem("audit", doc_id, body) for doc_id, body in docs[i:i + 1000]] for i in range(0, len(docs), 1000)]
    fn = BulkWriteFn(settings)
    fn.setup()
    try:
        start = time.perf_counter()
        fn.start_bundle()
        for chunk in chunks:
            fn.process(chunk)
        fn.finish_bundle()
        return len(docs) / (time.perf_counter() - start)
    finally:
        fn.teardown()


def pipeline_run(corpus: Path, url: str, index: str, batch: int, concurrency: int, extra: list[str]) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "pipeline.cli", "run", "--audit", str(corpus), "--es-url", url,
               "--audit-index", index, "--no-correlation", "--es-batch-docs", str(batch),
               "--es-concurrency", str(concurrency), "--summary-json", str(summary_file), *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"pipeline failed:\n{proc.stderr[-3000:]}")
        summary = json.loads(summary_file.read_text())
    return summary["events"]["audit"] / summary["elapsed_s"], wall, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--es-url", default=os.environ.get("KUBEHUNT_ES_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--batch-docs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--runner-args", default="", help="extra Beam options for the pipeline run")
    parser.add_argument("--keep", action="store_true", help="keep the bench data streams")
    args = parser.parse_args()

    from elasticsearch import Elasticsearch

    bench = _bench_module()
    client = Elasticsearch(args.es_url, request_timeout=300)
    tag = time.strftime("%Y%m%d%H%M%S")
    streams = {name: f"logs-kubernetes.audit_logs-bench{name}{tag}" for name in ("raw1", "sink", "pipeline", "raw2")}
    print(f"machine: {bench.machine()}")
    print(f"elasticsearch: {client.info()['version']['number']} at {args.es_url}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "audit.log"
            size = bench.make_corpus(corpus, args.events)
            docs = ecs_documents(corpus)
            doc_bytes = sum(len(b) for _, b in docs) / len(docs)
            print(f"corpus: {args.events:,} audit events, {size / args.events:.0f} bytes/line, "
                  f"{doc_bytes:.0f} bytes/ECS document; batch {args.batch_docs} docs, {args.concurrency} concurrent requests")
            with Phase() as phase:
                raw1 = raw_bulk(client, streams["raw1"], docs, args.batch_docs, args.concurrency)
            print(f"raw _bulk (before)   {raw1:>10,.0f} docs/s    {phase}")
            with Phase() as phase:
                sink = sink_only(args.es_url, streams["sink"], docs, args.batch_docs, args.concurrency)
            print(f"sink DoFn only       {sink:>10,.0f} docs/s    {phase}")
            with Phase() as phase:
                rate, wall, summary = pipeline_run(corpus, args.es_url, streams["pipeline"], args.batch_docs,
                                                   args.concurrency, args.runner_args.split())
            print(f"pipeline             {rate:>10,.0f} events/s  {phase}\n"
                  f"                     ({summary['events']['audit']:,} events in {summary['elapsed_s']:.1f} s "
                  f"of run; {wall:.1f} s incl. interpreter start and setup; "
                  f"books {'balanced' if summary['balanced'] else 'NOT balanced'})")
            with Phase() as phase:
                raw2 = raw_bulk(client, streams["raw2"], docs, args.batch_docs, args.concurrency)
            print(f"raw _bulk (after)    {raw2:>10,.0f} docs/s    {phase}")
            client.indices.refresh(index=streams["pipeline"])
            indexed = client.count(index=streams["pipeline"])["count"]
            if indexed != len(docs):
                print(f"WARNING: the pipeline's data stream holds {indexed:,} documents, expected {len(docs):,}")
            ceiling = max(raw1, raw2)
            print(f"ratio                {rate / ceiling:>10.0%} of the raw ceiling ({ceiling:,.0f} docs/s); target >= 70%")
    finally:
        if not args.keep:
            for stream in streams.values():
                client.options(ignore_status=404).indices.delete_data_stream(name=stream)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
