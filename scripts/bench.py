#!/usr/bin/env python3
"""Benchmark kubehunt end to end, as ratios against baselines measured in the same run.

    .venv/bin/python scripts/bench.py                          # 400k events; growth 100k, 1M, 4M
    .venv/bin/python scripts/bench.py --events 400000 --growth 100000 400000 --es-url http://127.0.0.1:9202
    .venv/bin/python scripts/bench.py --quick                  # CI smoke test: it runs, figures meaningless

One corpus from the project's own generator (``tests/builders/corpus.py generate_bench``: real-shaped
bodies, a hot service account, Falco alert bursts with planted chains, a pod inventory). Printed:

  machine     cores, memory, load average (the machine may be shared: compare ratios, not rates)
  floor       ``../shared/bench/floor_ecs.py`` on the same audit file: one core, orjson, hand-written
              ECS subset and four predicates; the reference every rate is divided by
  playbook    the playbook's four grep | jq hunts, run verbatim on the same file (sequentially)
  job 1w/2w   ``kubehunt run --audit --falco --pods --output-dir`` (correlation on), in-process and
              ``--direct_running_mode=multi_processing --direct_num_workers=2``: events/s over the
              whole run (incl. Beam's start), peak RSS of the process tree (sum) and of its largest process
  growth      the 1-worker job at each ``--growth`` size: events/s and peak RSS
  es          with ``--es-url``: the job into Elasticsearch next to the node's raw ``_bulk`` ceiling for
              the same documents, measured before and after it in the same run (``scripts/bench_es.py``)

Every run also reports CPU time per event (user + system of the whole process tree, from
``getrusage(RUSAGE_CHILDREN)``; the node's from its ``_nodes/stats``): unlike events/s it does not
move with the machine's load, and it tells what bounds the end-to-end row when the job and the node
share the machine's cores: at most ``node / (node + job)`` of the ceiling, per document.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FLOOR = ROOT.parent / "shared" / "bench" / "floor_ecs.py"
PLAYBOOK = ROOT.parent / "shared" / "seed" / "000_1e14803f65f36fe7.txt"
PLAYBOOK_LOG = "/var/log/kubernetes/audit.log"


def machine() -> str:
    mem_kb = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB, "
            f"Python {platform.python_version()}")


def load() -> str:
    return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])


def make_corpus(path: Path, events: int) -> int:
    """The audit part of the benchmark corpus at ``path`` (used by scripts/bench_es.py); returns its size."""
    from tests.builders.corpus import generate_bench

    audit, _, _ = generate_bench(events)
    with path.open("wb") as fh:
        for ev in audit:
            fh.write(orjson.dumps(ev) + b"\n")
    return path.stat().st_size


# ---------------------------------------------------------------------------------------------
# measuring a process tree


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children_cpu_s() -> float:
    """CPU seconds of every finished descendant: a worker process reaped by the job's driver counts
    in the driver's children, and so in ours once the driver is reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _node_cpu_ms(client) -> int:
    """CPU milliseconds the cluster's processes have used so far (every node of it: a local node here)."""
    stats = client.nodes.stats(metric="process", filter_path="nodes.*.process.cpu.total_in_millis")
    return sum(node["process"]["cpu"]["total_in_millis"] for node in stats["nodes"].values())


def _us_per(cpu_s: float, count: int) -> float:
    return cpu_s / max(count, 1) * 1e6


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd``; wall time, peak RSS of the whole process tree (sum) and of its largest process."""
    cpu_before = _children_cpu_s()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = {"sum": 0, "max": 0, "processes": 1}
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            tree, todo, pids = _children(), [proc.pid], []
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo.extend(tree.get(pid, ()))
            sizes = [_rss_kb(pid) for pid in pids]
            peak["sum"] = max(peak["sum"], sum(sizes))
            peak["max"] = max(peak["max"], max(sizes))
            peak["processes"] = max(peak["processes"], len(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return {"wall": wall, "cpu_s": _children_cpu_s() - cpu_before,
            "rss_sum_mib": peak["sum"] / 1024, "rss_max_mib": peak["max"] / 1024,
            "processes": peak["processes"], "rc": proc.returncode, "stdout": out.decode(), "stderr": err.decode()}


# ---------------------------------------------------------------------------------------------
# the measured things


def floor(audit: Path) -> dict:
    res = run_measured([sys.executable, str(FLOOR), str(audit)])
    if res["rc"] != 0:
        raise SystemExit(f"floor failed: {res['stderr'][-2000:]}")
    return {**json.loads(res["stdout"].strip().splitlines()[-1]), **res}


def playbook_hunts(audit: Path) -> dict | None:
    """The playbook's four grep | jq hunts as printed (without the ranking tail), one after the other."""
    if not PLAYBOOK.is_file() or not _which("jq"):
        return None
    text = PLAYBOOK.read_text()
    blocks = re.findall(r"^grep .*?^\}'(?: \| sort \| uniq -c \| sort -rn \| head -30)?$", text, re.S | re.M)[:4]
    start = time.perf_counter()
    hits = []
    for block in blocks:
        command = block.replace(PLAYBOOK_LOG, f"'{audit}'").replace(" | sort | uniq -c | sort -rn | head -30", "")
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
        hits.append(sum(1 for line in proc.stdout.splitlines() if line))
    return {"wall": time.perf_counter() - start, "hits": hits}


def _which(name: str) -> bool:
    return any(os.access(os.path.join(d, name), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


def job(paths: dict, out: Path, extra: list[str]) -> dict:
    summary = out.with_suffix(".summary.json")
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--audit", str(paths["audit"]), "--falco", str(paths["falco"]),
           "--pods", str(paths["pods"]), "--summary-json", str(summary), *extra]
    res = run_measured(cmd)
    if res["rc"] != 0 or not summary.exists():
        raise SystemExit(f"kubehunt run failed ({res['rc']}):\n{res['stderr'][-3000:]}")
    s = json.loads(summary.read_text())
    events = sum(s["events"].values())
    return {**res, "summary": s, "events": events, "rate": events / res["wall"]}


def es_end_to_end(paths: dict, url: str, tmp: Path, tag: str) -> dict:
    from elasticsearch import Elasticsearch

    import scripts.bench_es as bench_es

    client = Elasticsearch(url, request_timeout=300)
    streams = {"raw1": f"logs-kubernetes.audit_logs-benchraw1{tag}", "raw2": f"logs-kubernetes.audit_logs-benchraw2{tag}",
               "audit": f"logs-kubernetes.audit_logs-bench{tag}", "falco": f"logs-falco.alerts-bench{tag}"}
    try:
        # The templates and the ingest pipeline first: the ceiling is measured on the same mappings
        # as the job (without them a fresh node maps the raw documents dynamically and refuses some).
        setup = subprocess.run([sys.executable, "-m", "pipeline.cli", "setup", "--es-url", url],
                               capture_output=True, text=True)
        if setup.returncode != 0:
            raise SystemExit(f"kubehunt setup failed ({setup.returncode}):\n{setup.stderr[-3000:]}")
        docs = bench_es.ecs_documents(paths["audit"])
        node = [_node_cpu_ms(client)]    # the node's CPU at each step: before, after raw1, job, raw2
        raw1 = bench_es.raw_bulk(client, streams["raw1"], docs, 1000, 2)
        node.append(_node_cpu_ms(client))
        run = job(paths, tmp / "es", ["--es-url", url, "--audit-index", streams["audit"],
                                      "--falco-index", streams["falco"]])
        node.append(_node_cpu_ms(client))
        raw2 = bench_es.raw_bulk(client, streams["raw2"], docs, 1000, 2)
        node.append(_node_cpu_ms(client))
        client.indices.refresh(index=streams["audit"])
        indexed = client.count(index=streams["audit"])["count"]
        # Node CPU per document: the raw rows index len(docs) each; the job, its events and incidents.
        raw_us = min(node[1] - node[0], node[3] - node[2]) * 1e3 / len(docs)
        job_docs = run["events"] + run["summary"]["incidents"]["written"]
        return {"raw1": raw1, "raw2": raw2, "job": run, "indexed": indexed, "expected": len(docs),
                "node_raw_us": raw_us, "node_job_us": (node[2] - node[1]) * 1e3 / max(job_docs, 1)}
    finally:
        for stream in streams.values():
            client.options(ignore_status=404).indices.delete_data_stream(name=stream)
        client.close()


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400_000, help="corpus for floor / playbook / 1w / 2w / es")
    parser.add_argument("--growth", type=int, nargs="*", default=[100_000, 1_000_000, 4_000_000],
                        help="sizes of the growth series (1 worker); none to skip")
    parser.add_argument("--es-url", help="also measure end to end into this Elasticsearch (a node you own)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.growth = 3000, [1000, 3000]
    from tests.builders.corpus import write_bench_corpus

    rows: list[str] = []

    def show(line: str) -> None:
        rows.append(line)
        print(line, flush=True)

    show(f"machine: {machine()}; {load()} at start")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths = write_bench_corpus(tmp / "corpus", args.events)
        size = paths["audit"].stat().st_size
        alerts = sum(1 for _ in paths["falco"].open("rb"))
        show(f"corpus: {args.events:,} audit events ({size / args.events:,.0f} bytes/event, {size / 2**20:,.0f} MiB), "
             f"{alerts:,} Falco alerts, pod inventory; tests/builders/corpus.py generate_bench(seed=7)")
        base = floor(paths["audit"])
        fr = base["events_per_s"]
        show(f"{'floor (floor_ecs.py)':<28}{fr:>10,.0f} events/s   1.00x   peak RSS {base['rss_sum_mib']:,.0f} MiB, "
             f"CPU {_us_per(base['cpu_s'], base['events']):.1f} us/event")
        pb = playbook_hunts(paths["audit"])
        if pb is None:
            show(f"{'playbook grep | jq (4 hunts)':<28}   skipped (jq or the playbook not found)")
        else:
            rate = args.events / pb["wall"]
            show(f"{'playbook grep | jq (4 hunts)':<28}{rate:>10,.0f} events/s   {rate / fr:.2f}x   "
                 f"({pb['wall']:.1f} s for the four, {sum(pb['hits']):,} result lines)")
        one = job(paths, tmp / "one", ["--output-dir", str(tmp / "one")])
        show(f"{'job, 1 worker':<28}{one['rate']:>10,.0f} events/s   {one['rate'] / fr:.2f}x   "
             f"peak RSS {one['rss_sum_mib']:,.0f} MiB (tree of {one['processes']}), "
             f"CPU {_us_per(one['cpu_s'], one['events']):.1f} us/event, "
             f"{one['summary']['incidents']['written']:,} incidents, "
             f"books {'balanced' if one['summary']['balanced'] else 'NOT BALANCED'}")
        two = job(paths, tmp / "two", ["--output-dir", str(tmp / "two"), "--direct_running_mode=multi_processing",
                                       "--direct_num_workers=2"])
        show(f"{'job, 2 workers':<28}{two['rate']:>10,.0f} events/s   {two['rate'] / fr:.2f}x   "
             f"peak RSS {two['rss_sum_mib']:,.0f} MiB (tree of {two['processes']}; largest {two['rss_max_mib']:,.0f}), "
             f"CPU {_us_per(two['cpu_s'], two['events']):.1f} us/event, "
             f"{two['rate'] / one['rate']:.2f}x of 1 worker, books "
             f"{'balanced' if two['summary']['balanced'] else 'NOT BALANCED'}")
        growth = []
        for n in args.growth or []:
            gpaths = write_bench_corpus(tmp / f"g{n}", n)
            run = job(gpaths, tmp / f"g{n}out", ["--output-dir", str(tmp / f"g{n}out")])
            growth.append((n, run))
            show(f"{'growth ' + format(n, ','):<28}{run['rate']:>10,.0f} events/s   peak RSS {run['rss_sum_mib']:,.0f} MiB"
                 + (f"   (x{run['rss_sum_mib'] / growth[0][1]['rss_sum_mib']:.2f} of {growth[0][0]:,})"
                    if len(growth) > 1 else ""))
            for folder in (tmp / f"g{n}", tmp / f"g{n}out"):
                subprocess.run(["rm", "-rf", str(folder)], check=False)
        if args.es_url:
            es = es_end_to_end(paths, args.es_url, tmp, time.strftime("%Y%m%d%H%M%S"))
            ceiling = max(es["raw1"], es["raw2"])
            run = es["job"]
            job_us = _us_per(run["cpu_s"], run["events"])
            bound = es["node_raw_us"] / (es["node_raw_us"] + job_us)
            show(f"{'es raw _bulk ceiling':<28}{ceiling:>10,.0f} docs/s   (before {es['raw1']:,.0f}, after {es['raw2']:,.0f}); "
                 f"node CPU {es['node_raw_us']:,.0f} us/document")
            show(f"{'es job end to end':<28}{run['rate']:>10,.0f} events/s   {run['rate'] / ceiling:.0%} of the ceiling, "
                 f"{run['rate'] / fr:.2f}x the floor; {es['indexed']:,} of {es['expected']:,} audit documents indexed; "
                 f"node CPU {es['node_job_us']:,.0f} us/document, job CPU {job_us:.0f} us/event: sharing the cores, "
                 f"at most {bound:.0%} of the ceiling")
    show(f"{load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
