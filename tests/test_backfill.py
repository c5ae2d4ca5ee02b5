"""`kubehunt backfill` into files: exactly the range's events, rotated-file skipping, the join past
`--until`, re-runs, exit codes and time parsing (Elasticsearch behaviour: tests/test_backfill_es.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.backfill_corpus import SINCE, UNTIL, build, oracle
from pipeline.cli import main
from transforms.timerange import TimeRange, TimeRangeError, parse_when, plan_files, rotation_time, to_ms
from transforms.timerange import FileInfo


def _read(out: Path, kind: str) -> list[dict]:
    docs = []
    for path in sorted(out.glob(f"{kind}-*.ndjson")):
        docs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return docs


def _backfill(corpus: Path, out: Path, *extra: str) -> int:
    return main(["backfill", "--since", SINCE, "--until", UNTIL, "--audit", str(corpus / "audit*"),
                 "--falco", str(corpus / "falco*"), "--output-dir", str(out), "--rotation-slack", "2m",
                 "--summary-json", str(out.parent / "summary.json"), *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("three-days")
    planted = build(directory)
    return directory, planted


@pytest.fixture(scope="module")
def backfilled(corpus, tmp_path_factory):
    directory, planted = corpus
    out = tmp_path_factory.mktemp("run") / "out"
    assert _backfill(directory, out) == 0
    summary = json.loads((out.parent / "summary.json").read_text())
    return out, summary


def test_backfill_writes_exactly_the_events_whose_own_time_is_in_the_range(corpus, backfilled):
    directory, _ = corpus
    out, _ = backfilled
    expected = oracle(directory, SINCE, UNTIL)
    events = _read(out, "events")
    audit = [d["kubernetes"]["audit"]["auditID"] for d in events if d["event"]["dataset"] == "kubernetes.audit_logs"]
    falco = [d["falco"]["uuid"] for d in events if d["event"]["dataset"] == "falco.alerts"]
    assert sorted(audit) == sorted(expected["audit"])        # each once, none missing, none extra
    assert sorted(falco) == sorted(expected["falco"])
    lo, hi = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (SINCE, UNTIL))
    for doc in events:   # written with the event's own time, not the read time
        assert lo <= datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00")) < hi


def test_files_that_cannot_hold_the_range_are_skipped_and_the_summary_says_why(backfilled):
    _, summary = backfilled
    b = summary["backfill"]
    # 9 rotated audit files + audit.log + 2 rotated Falco files + falco.json
    assert b["files"]["total"] == 13
    assert b["files"]["skipped"] == {"ends before --since": 3, "starts after --until + window": 4}
    assert b["files"]["tail_only"] == 1            # audit-2026-01-16T00-00-00 holds only the join's tail
    outside = sum(sum(v.values()) for v in b["outside_range"].values())
    read = sum(summary["lines_read"].values())
    written = sum(summary["written"]["indexed"].values())
    assert read == written + outside               # no dead letters in this corpus
    assert summary["balanced"]


def test_an_alert_just_before_until_lists_its_accounts_actions_after_until(corpus, backfilled):
    _, planted = corpus
    out, _ = backfilled
    incidents = {i["kubehunt"]["incident"]["alert"]: i for i in _read(out, "incidents")}
    incident = incidents[planted["planted_alert"]]["kubehunt"]["incident"]
    ids = set(incident["audit_event_ids"])
    assert {planted["in_range_action"], *planted["after_until"]} <= ids
    assert planted["too_late"] not in ids
    assert incident["confirmed"]
    written = {d["event"]["id"] for d in _read(out, "events")}
    assert planted["in_range_action"] in written
    assert not set(planted["after_until"]) & written     # read for the join, not written


def test_rerun_of_a_finished_backfill_reads_nothing_and_keeps_the_output(corpus, backfilled):
    directory, _ = corpus
    out, _ = backfilled
    before = {p.name: p.read_bytes() for p in out.glob("*.ndjson")}
    assert _backfill(directory, out) == 0
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["backfill"]["files"]["skipped"]["finished in an earlier run"] == 6 - 1  # in-range files
    assert {p.name: p.read_bytes() for p in out.glob("*.ndjson")} == before


def test_dead_letters_above_the_ratio_exit_3_and_the_books_still_balance(tmp_path):
    src = tmp_path / "audit.log"
    good = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a1", "stage": "ResponseComplete",
            "verb": "get", "user": {"username": "alice"}, "objectRef": {"resource": "pods", "namespace": "x"},
            "requestReceivedTimestamp": "2026-01-15T10:00:00.000000Z", "stageTimestamp": "2026-01-15T10:00:00.1Z"}
    src.write_text(json.dumps(good) + "\n{not json\n")
    args = ["backfill", "--since", "2026-01-15", "--until", "2026-01-16", "--audit", str(src),
            "--output-dir", str(tmp_path / "out"), "--summary-json", str(tmp_path / "s.json")]
    assert main(args + ["--max-dead-letter-ratio", "0.1"]) == 3
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["dead_letters"]["parse"] == 1 and summary["balanced"]
    # A ratio the run stays under: done (the same range again: files output is replaced as a whole).
    (tmp_path / "out" / ".kubehunt-checkpoint.json").unlink()
    assert main(args + ["--max-dead-letter-ratio", "0.6"]) == 0


@pytest.mark.parametrize("args, option", [
    (["--since", "last tuesday", "--until", "now"], "--since"),
    (["--since", "-2h", "--until", "-3h"], "--until"),
    (["--since", "today", "--until", "now", "--tz", "Mars/Olympus"], "--tz"),
])
def test_unreadable_times_are_a_configuration_error_naming_the_option(tmp_path, capsys, args, option):
    src = tmp_path / "audit.log"
    src.write_text("")
    assert main(["backfill", *args, "--audit", str(src), "--output-dir", str(tmp_path / "o")]) == 2
    assert option in capsys.readouterr().err


NOW = datetime(2026, 1, 15, 3, 30, tzinfo=timezone.utc)


def test_relative_times_and_days_in_a_zone():
    assert parse_when("-24h", now=NOW) == datetime(2026, 1, 14, 3, 30, tzinfo=timezone.utc)
    assert parse_when("today", now=NOW) == datetime(2026, 1, 15, tzinfo=timezone.utc)
    assert parse_when("yesterday", now=NOW) == datetime(2026, 1, 14, tzinfo=timezone.utc)
    # 03:30Z is still the 14th in New York (UTC-5): its midnight is 05:00Z.
    assert parse_when("today", tz="America/New_York", now=NOW) == datetime(2026, 1, 14, 5, tzinfo=timezone.utc)
    assert parse_when("2026-01-15T10:00:00+01:00") == datetime(2026, 1, 15, 9, tzinfo=timezone.utc)
    assert parse_when("2026-01-15T10:00:00", tz="Europe/Paris") == datetime(2026, 1, 15, 9, tzinfo=timezone.utc)
    with pytest.raises(TimeRangeError):
        parse_when("soon")


def test_the_range_is_half_open_at_millisecond_precision():
    rng = TimeRange(to_ms(parse_when(SINCE)), to_ms(parse_when(UNTIL)), tail_ms=30 * 60_000)
    assert rng.place({"@timestamp": "2026-01-15T06:00:00Z"}) == ""
    assert rng.place({"@timestamp": "2026-01-15T05:59:59.999999999Z"}) == "before"
    assert rng.place({"@timestamp": "2026-01-15T22:29:59.999999999Z"}) == ""
    assert rng.place({"@timestamp": "2026-01-15T22:30:00Z"}) == "tail"
    assert rng.place({"@timestamp": "2026-01-15T23:00:00.001Z"}) == "after"


def test_rotation_names_of_kube_apiserver_and_logrotate():
    family, kind, at, _ = rotation_time("audit-2026-01-15T14-22-00.000.log.gz")
    assert (family, kind, at) == ("audit.log", "lumberjack", to_ms(datetime(2026, 1, 15, 14, 22, tzinfo=timezone.utc)))
    assert rotation_time("falco.json-20260115.gz")[:3] == ("falco.json", "dateext",
                                                           to_ms(datetime(2026, 1, 15, tzinfo=timezone.utc)))
    assert rotation_time("events.json-2026011514")[3] == 3600_000
    assert rotation_time("events.json.1") is None and rotation_time("audit.log") is None


def test_a_numbered_rotation_is_bounded_by_its_first_and_last_lines():
    rng = TimeRange(to_ms(parse_when(SINCE)), to_ms(parse_when(UNTIL)))
    day = 86400_000
    peeks = {"old.1": (rng.since_ms - 2 * day, rng.since_ms - day), "new.1": (rng.until_ms + day, None),
             "mid.1.gz": (rng.since_ms - day, None)}
    plans = plan_files("falco", [FileInfo(p, 1, 0.0) for p in peeks], rng, slack_ms=0,
                       peek=lambda source, path: peeks[path])
    assert {p.file.path: p.role for p in plans} == {"old.1": "skip", "new.1": "skip", "mid.1.gz": "range"}


def test_backfill_reads_through_a_beam_filesystem_other_than_the_local_one(corpus, tmp_path):
    """`mem://` stands for `gs://` / `s3://`: matching, rotation names, peeking and reading all go
    through Beam's FileSystems, so the result is the same as from local files."""
    from tests.memfs import InMemoryFileSystem

    directory, _ = corpus
    for path in directory.iterdir():
        InMemoryFileSystem.put(f"mem://logs/{path.name}", path.read_bytes())
    out = tmp_path / "out"
    assert main(["backfill", "--since", SINCE, "--until", UNTIL, "--audit", "mem://logs/audit*",
                 "--falco", "mem://logs/falco*", "--output-dir", str(out), "--rotation-slack", "2m",
                 "--summary-json", str(tmp_path / "s.json")]) == 0
    expected = oracle(directory, SINCE, UNTIL)
    events = _read(out, "events")
    assert sorted(d["kubernetes"]["audit"]["auditID"] for d in events if "kubernetes" in d) == sorted(expected["audit"])
    assert sorted(d["falco"]["uuid"] for d in events if "falco" in d) == sorted(expected["falco"])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["backfill"]["files"]["skipped"] == {"ends before --since": 3, "starts after --until + window": 4}


def test_logrotate_date_names_hold_events_up_to_the_end_of_the_day_after_the_name():
    """dateext names the rotation day; with `dateyesterday` it names the day before the rotation, so a
    file named the 14th can still hold events of the 15th until the rotation ran."""
    rng = TimeRange(to_ms(parse_when(SINCE)), to_ms(parse_when(UNTIL)), tail_ms=30 * 60_000)
    names = ["x.json-20260113.gz", "x.json-20260114.gz", "x.json-20260116.gz", "x.json-20260117.gz"]
    plans = plan_files("falco", [FileInfo(f"/logs/{n}", 1, 0.0) for n in names], rng, slack_ms=0,
                       peek=lambda source, path: pytest.fail(f"{path} has a date in its name: no peek"))
    assert [p.role for p in plans] == ["skip", "range", "range", "skip"]


def test_run_also_exits_3_when_dead_letters_pass_the_ratio(tmp_path):
    src = tmp_path / "audit.log"
    src.write_text("{not json\n")
    args = ["run", "--audit", str(src), "--output-dir", str(tmp_path / "out")]
    assert main(args + ["--max-dead-letter-ratio", "0.5"]) == 3
    assert main(args + ["--max-dead-letter-ratio", "1"]) == 0
    with pytest.raises(SystemExit) as exit_:   # argparse: the option's name and exit 2
        main(args + ["--max-dead-letter-ratio", "lots"])
    assert exit_.value.code == 2
