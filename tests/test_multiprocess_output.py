"""Issue 9 item 4: a multi-process run writes every line it reads. Several byte-range splits and many
chunks over two worker processes; the events written are compared line for line with the input, and
the incidents with an in-process run over the same input."""
from __future__ import annotations

import orjson

from tests.builders.corpus import write_corpus
from tests.helpers import DEMO, read_ndjson, run_to_dir


def canonical(record: dict) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def test_two_worker_processes_write_every_input_line_and_the_same_incidents(tmp_path):
    audit = tmp_path / "audit.log"
    write_corpus(audit, 6000, seed=11)
    # The demo's own events carry escalation chains for the demo's Falco alerts.
    audit.write_bytes(audit.read_bytes() + (DEMO / "audit.log").read_bytes())
    inputs = ["--audit", audit, "--falco", DEMO / "falco.json", "--chunk-lines", "100", "--split-bytes", "400000"]
    code, summary, out = run_to_dir(tmp_path / "multi", *inputs, "--direct_running_mode=multi_processing",
                                    "--direct_num_workers=2")
    assert code == 0 and summary["balanced"] is True
    events = read_ndjson(out, "events")
    written = sorted(canonical(d["kubernetes"]["audit"]) for d in events
                     if d["event"]["dataset"] == "kubernetes.audit_logs")
    expected = sorted(canonical(orjson.loads(line)) for line in audit.read_bytes().splitlines() if line.strip())
    assert len(expected) > 6000 and written == expected
    assert len(events) == len({d["event"]["id"] for d in events})
    falco_lines = [line for line in (DEMO / "falco.json").read_bytes().splitlines() if line.strip()]
    assert sum(d["event"]["dataset"] == "falco.alerts" for d in events) == len(falco_lines)

    code, _, single = run_to_dir(tmp_path / "single", *inputs)
    assert code == 0
    incidents = {d["event"]["id"]: d for d in read_ndjson(out, "incidents")}
    assert incidents and incidents == {d["event"]["id"]: d for d in read_ndjson(single, "incidents")}
