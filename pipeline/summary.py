"""The end-of-run summary: read from Beam counters, printed on stderr and optionally written as JSON.

The books must balance: every record read (an event, or a line that could not become one) ends up
either written (indexed, or already present from an earlier run) or dead-lettered.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from apache_beam.metrics.metric import MetricsFilter

from transforms.records import METRICS_NAMESPACE, SOURCES


def redact_url(url: str) -> str:
    """`https://user:pw@host:9200/p?api_key=x#f` -> `https://***@host:9200/p?***`: safe to show anywhere.

    ``--es-url`` refuses credentials, but every place that shows a URL goes through this too, so a
    URL that reached the settings another way (code, a future option) still never leaks.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


_URL = re.compile(r"\bhttps?://[^\s'\")\]>,]+")


def redact_urls_in(text: str) -> str:
    """Every URL inside a message, redacted (``redact_url``)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


@dataclass
class Summary:
    counters: dict[str, int]
    elapsed_s: float
    sink: str
    extra: dict = field(default_factory=dict)

    def get(self, name: str) -> int:
        return int(self.counters.get(name, 0))

    def by_prefix(self, prefix: str) -> dict[str, int]:
        return {k[len(prefix):]: v for k, v in sorted(self.counters.items()) if k.startswith(prefix)}

    def as_dict(self) -> dict:
        lines_read = {s: self.get(f"lines_read.{s}") for s in SOURCES}
        events = {s: self.get(f"events.{s}") for s in SOURCES}
        dead_input = {stage: self.get(f"dead.{stage}") for stage in ("read", "parse", "normalise", "serialise")}
        written = {s: self.get(f"written.{s}") for s in SOURCES}
        present = {s: self.get(f"present.{s}") for s in SOURCES}
        dead_index = {s: self.get(f"dead.index.{s}") for s in SOURCES}
        records_read = sum(events.values()) + sum(dead_input.values())
        accounted = sum(written.values()) + sum(present.values()) + sum(dead_index.values()) + sum(dead_input.values())
        total_events = sum(events.values())
        return {
            "sink": redact_urls_in(self.sink),
            "files_read": {s: self.get(f"files_read.{s}") for s in SOURCES},
            "lines_read": lines_read,
            "blank_lines_skipped": {s: self.get(f"blank_lines.{s}") for s in SOURCES},
            "events": events,
            "hunts": self.by_prefix("hunt."),
            "incidents": {
                "written": self.get("written.incidents") + self.get("present.incidents"),
                "confirmed": self.get("incidents.confirmed"),
                "candidates": self.get("incidents.total"),
                "unresolved_alerts": self.get("alerts.unresolved"),
                "sa_sources": self.by_prefix("incidents.sa_source."),
            },
            "dead_letters": {**dead_input, "index": sum(dead_index.values()),
                             "written": self.get("written.dead_letters")},
            "written": {"indexed": written, "already_present": present},
            "records_read": records_read,
            "records_accounted": accounted,
            # Per Elasticsearch destination: documents handed to the sink = indexed + already present
            # + dead-lettered (`es.received.<kind>` is counted by transforms.elasticsearch).
            "destinations": {kind: {"received": n, "indexed": self.get(f"written.{kind}"),
                                    "already_present": self.get(f"present.{kind}"),
                                    "dead_lettered": self.get(f"dead.index.{kind}"),
                                    "balanced": n == self.get(f"written.{kind}") + self.get(f"present.{kind}")
                                    + self.get(f"dead.index.{kind}")}
                             for kind, n in self.by_prefix("es.received.").items()},
            "retries": self.get("es.retries"),
            "balanced": records_read == accounted and all(
                self.get(f"written.{k}") + self.get(f"present.{k}") + self.get(f"dead.index.{k}") == n
                for k, n in self.by_prefix("es.received.").items()),
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(total_events / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            **self.extra,
        }

    def render(self) -> str:
        d = self.as_dict()
        fmt = lambda m: "  ".join(f"{k} {v:,}" for k, v in m.items()) or "none"  # noqa: E731
        inc = d["incidents"]
        lines = [
            "kubehunt run summary",
            f"  sink              {d['sink']}",
            f"  files read        {fmt(d['files_read'])}",
            f"  lines read        {fmt(d['lines_read'])}   (blank lines skipped: {sum(d['blank_lines_skipped'].values()):,})",
            f"  events            {fmt(d['events'])}",
            f"  hunts             {sum(d['hunts'].values()):,} matches"
            + "".join(f"\n                      {count:>9,}  {hunt}"
                      for hunt, count in sorted(d["hunts"].items(), key=lambda kv: (-kv[1], kv[0]))),
            f"  incidents         {inc['written']:,} written ({inc['confirmed']:,} confirmed); "
            f"unresolved alerts {inc['unresolved_alerts']:,}",
            f"  dead letters      {fmt({k: v for k, v in d['dead_letters'].items() if k != 'written'})}",
            f"  written           indexed: {fmt(d['written']['indexed'])}; already present: "
            f"{fmt(d['written']['already_present'])}",
            *(f"  -> {kind:<15} received {b['received']:,} = indexed {b['indexed']:,} + already present "
              f"{b['already_present']:,} + dead-lettered {b['dead_lettered']:,}"
              + ("" if b["balanced"] else "  NOT BALANCED") for kind, b in d["destinations"].items()),
            *([f"  retries           {d['retries']:,} documents re-sent after 429/5xx/connection errors"]
              if d["retries"] else []),
            f"  books             read {d['records_read']:,} = written + dead {d['records_accounted']:,}: "
            + ("balanced" if d["balanced"] else "NOT BALANCED"),
            f"  elapsed           {d['elapsed_s']:.1f} s, {d['events_per_s'] or 0:,.0f} events/s",
        ]
        return "\n".join(lines)

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.as_dict(), fh, indent=2, sort_keys=True)
            fh.write("\n")


def counters_from_result(result) -> dict[str, int]:
    """All kubehunt counters of a finished pipeline, committed values (attempted when not supported)."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    out: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + int(value or 0)
    return out
