"""`kubehunt run` keeps its promises, checked through the CLI: exit codes, the summary (rendered and
`--summary-json`), and the observable effect of each run option.

The input is the demo's planted escalation chain cut down to eight lines (tests/data/demo, made by
scripts/gen_demo_data.py), so every expected figure below can be counted by hand:

  audit  10:00  replicaset controller creates pod shop/web-7d9f8c6b5-x2kq9 (SA `web`)
         10:17  SA shop:web gets namespace shop
         10:21  SA shop:web lists secrets in shop                 secret-access-unexpected-sa
         10:24  SA shop:web creates clusterrolebinding web-admin  rbac-modification, cluster-admin-binding
  falco  10:00  memfd_create by python3 in api-...                falco-memfd-fileless-exec
         10:05  ptrace by injector in api-...                     falco-unexpected-ptrace
         10:06  ptrace by strace in api-... (a known debugger: no hunt by default)
         10:15  terminal shell in web-7d9f8c6b5-x2kq9             falco-shell-in-container
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics

from tests.helpers import DEMO, ROOT, read_ndjson, run_cli, run_to_dir
from transforms.records import METRICS_NAMESPACE

CHAIN_AUDIT_IDS = ("b3655a99-850a-49e5-943c-92e8aa5d9bf9", "5a4da381-3ef6-4944-bc2d-89d4e37e2a19",
                   "842991d7-209b-4fb9-a70f-8b1d7fa63323", "8f3807cc-68e8-489f-bfd2-ab64889c58c4")
CHAIN_FALCO_IDS = ("aa3cd533-1f35-4a12-8ea2-acd51e4e67a4", "2164c1b8-c7dd-4dc2-9e9e-73b4074db673",
                   "a831c3da-2ef4-4096-9ef5-50c01f0baeba", "ef1525ff-94d9-4ab0-b7f0-7cb5954ecbc7")
SHELL_ALERT = "ef1525ff-94d9-4ab0-b7f0-7cb5954ecbc7"
# The chain's actions by minutes after the alert (10:15): 2 (get ns), 6 (list secrets), 9 (create CRB).
ACTIONS_BY_MINUTE = {2: "5a4da381", 6: "842991d7", 9: "8f3807cc"}
DEFAULT_HUNTS = {"cluster-admin-binding": 1, "falco-memfd-fileless-exec": 1, "falco-shell-in-container": 1,
                 "falco-unexpected-ptrace": 1, "rbac-modification": 1, "secret-access-unexpected-sa": 1}


def _pick(path, key: str, wanted: tuple[str, ...]) -> list[bytes]:
    lines = {json.loads(line)[key]: line for line in path.read_bytes().splitlines() if line.strip()}
    return [lines[w] for w in wanted]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    (d / "audit.log").write_bytes(b"\n".join(_pick(DEMO / "audit.log", "auditID", CHAIN_AUDIT_IDS)) + b"\n")
    (d / "falco.json").write_bytes(b"\n".join(_pick(DEMO / "falco.json", "uuid", CHAIN_FALCO_IDS)) + b"\n")
    return d


def chain_args(chain) -> tuple:
    return ("--audit", chain / "audit.log", "--falco", chain / "falco.json")


@pytest.fixture(scope="module")
def default_run(chain, tmp_path_factory):
    """One run with every option at its default, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("default")
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code, summary, out = run_to_dir(tmp, *chain_args(chain))
    return code, summary, out, err.getvalue()


def hunts_of(out) -> dict[str, list[str]]:
    """hunt id -> sorted event ids it tagged, from the written documents (not from the counters)."""
    tagged: dict[str, list[str]] = {}
    for doc in read_ndjson(out, "events"):
        for hunt in (doc.get("kubehunt") or {}).get("hunts") or ():
            tagged.setdefault(hunt, []).append(doc["event"]["id"])
    return {h: sorted(ids) for h, ids in tagged.items()}


# ---------------------------------------------------------------------------------------------
# exit codes, summary


def test_a_balanced_run_exits_0_and_its_summary_counts_what_was_written(default_run):
    code, summary, out, _ = default_run
    assert code == 0
    assert summary["files_read"] == {"audit": 1, "falco": 1}
    assert summary["lines_read"] == {"audit": 4, "falco": 4}
    assert summary["events"] == {"audit": 4, "falco": 4}
    assert summary["hunts"] == DEFAULT_HUNTS
    assert {h: len(ids) for h, ids in hunts_of(out).items()} == DEFAULT_HUNTS
    assert summary["incidents"]["written"] == 1 and summary["incidents"]["confirmed"] == 1
    # three alerts in pod api-... whose service account nothing tells
    assert summary["incidents"]["unresolved_alerts"] == 3
    assert summary["incidents"]["sa_sources"] == {"pod_create": 1}
    assert summary["written"]["indexed"] == {"audit": 4, "falco": 4}
    assert summary["records_read"] == summary["records_accounted"] == 8
    assert summary["balanced"] is True
    assert summary["sink"] == f"files in {out}"
    assert len(read_ndjson(out, "events")) == 8 and read_ndjson(out, "dead-letters") == []


def test_the_rendered_summary_on_stderr_says_the_same(default_run):
    _, summary, out, err = default_run
    text = err[err.index("kubehunt run summary"):]
    assert f"  sink              files in {out}\n" in text
    assert "  files read        audit 1  falco 1\n" in text
    assert "  lines read        audit 4  falco 4   (blank lines skipped: 0)\n" in text
    assert "  events            audit 4  falco 4\n" in text
    assert "  hunts             6 matches\n" in text
    for hunt in DEFAULT_HUNTS:
        assert f"{1:>9,}  {hunt}" in text
    assert "  incidents         1 written (1 confirmed); unresolved alerts 3\n" in text
    assert "  dead letters      read 0  parse 0  normalise 0  serialise 0  index 0\n" in text
    assert "  written           indexed: audit 4  falco 4; already present: audit 0  falco 0\n" in text
    assert "  books             read 8 = written + dead 8: balanced\n" in text
    assert "NOT BALANCED" not in text


def _unbalancing_build(monkeypatch):
    """Wrap the real graph with one extra step that counts a record as read that nothing writes.

    Production code has no step that loses a record (that would be the bug the exit code exists to
    report), so the imbalance is made the only way a real one shows: in the pipeline's own counters."""
    from pipeline import graph

    real_build = graph.build

    def count_one_phantom_event(chunk):
        Metrics.counter(METRICS_NAMESPACE, "events.audit").inc()
        return chunk

    def build(p, cfg):
        built = real_build(p, cfg)
        (p | "PhantomRecord" >> beam.Create([None])
         | "CountPhantomRecord" >> beam.Map(count_one_phantom_event))
        return built

    monkeypatch.setattr(graph, "build", build)


def test_books_that_do_not_balance_exit_1_and_say_so(chain, tmp_path, monkeypatch, capsys):
    _unbalancing_build(monkeypatch)
    code, summary, _ = run_to_dir(tmp_path, *chain_args(chain))
    assert code == 1
    assert summary["balanced"] is False
    assert summary["records_read"] == 9 and summary["records_accounted"] == 8
    assert "  books             read 9 = written + dead 8: NOT BALANCED" in capsys.readouterr().err


def test_a_configuration_error_exits_2_in_a_real_process_naming_the_option(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--audit", str(DEMO / "audit.log"),
                           "--output-dir", str(tmp_path), "--correlation-window", "0s"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "kubehunt: error: --correlation-window must be positive" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_nothing_to_read_exits_2(tmp_path, capsys):
    assert run_cli("run", "--output-dir", tmp_path) == 2
    assert "nothing to read" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# correlation options


def incident_of(out) -> dict | None:
    incidents = read_ndjson(out, "incidents")
    assert len(incidents) <= 1
    return incidents[0]["kubehunt"]["incident"] if incidents else None


def test_the_default_window_holds_the_whole_chain(default_run):
    inc = incident_of(default_run[2])
    assert inc["alert"] == SHELL_ALERT and inc["service_account"] == "system:serviceaccount:shop:web"
    assert [a["event_id"][:8] for a in inc["actions"]] == list(ACTIONS_BY_MINUTE.values())
    assert inc["confirmed"] is True


# Each window in every unit the option takes; the chain's last action is exactly 9 minutes after the
# alert and the window includes its end, so 540 s holds it and 539.999 s does not.
@pytest.mark.parametrize("window,minutes", [
    ("5m", [2]),
    ("539999ms", [2, 6]),
    ("540", [2, 6, 9]),
    ("0.15h", [2, 6, 9]),
    ("539s", [2, 6]),
    # just under 9 minutes in minutes and in hours: a wrong unit factor (61 s a minute, 3601 s an
    # hour: mutants that survived scripts/mutation.sh) would take the action at minute 9 in
    ("8.9999m", [2, 6]),
    ("0.14999h", [2, 6]),
])
def test_correlation_window_bounds_the_actions_in_each_unit(chain, tmp_path, window, minutes):
    code, summary, out = run_to_dir(tmp_path, *chain_args(chain), "--correlation-window", window)
    assert code == 0
    inc = incident_of(out)
    assert [a["event_id"][:8] for a in inc["actions"]] == [ACTIONS_BY_MINUTE[m] for m in minutes]
    # the list-secrets read (minute 6) is what confirms
    assert inc["confirmed"] is (6 in minutes)
    assert summary["incidents"]["confirmed"] == (1 if 6 in minutes else 0)


@pytest.mark.parametrize("value", ["0", "0s", "0ms"])
def test_a_window_that_is_not_positive_is_a_configuration_error(tmp_path, capsys, value):
    assert run_cli("run", "--audit", DEMO / "audit.log", "--output-dir", tmp_path,
                   "--correlation-window", value) == 2
    assert "--correlation-window must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--correlation-window", "--allowed-lateness", "--es-retry-deadline"])
@pytest.mark.parametrize("value", ["30 minutes", "-5m", "m", "1.2.3s"])
def test_a_malformed_duration_is_refused_by_name(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        run_cli("run", "--audit", DEMO / "audit.log", "--output-dir", tmp_path, f"{option}={value}")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "is not a duration" in err


def test_no_correlation_writes_no_incidents_but_every_event(chain, tmp_path):
    code, summary, out = run_to_dir(tmp_path, *chain_args(chain), "--no-correlation")
    assert code == 0
    assert read_ndjson(out, "incidents") == []
    assert summary["incidents"]["written"] == 0 and summary["incidents"]["candidates"] == 0
    assert len(read_ndjson(out, "events")) == 8 and summary["balanced"] is True


# ---------------------------------------------------------------------------------------------
# hunt settings


def test_hunt_settings_replace_the_default_lists(chain, tmp_path, default_run):
    code, summary, out = run_to_dir(tmp_path, *chain_args(chain), "--secret-reader-exclusions", "vault,web",
                                    "--known-memfd-users", "python3", "--known-debugger-procs", "gdb,injector")
    assert code == 0
    tagged = hunts_of(out)
    default = hunts_of(default_run[2])
    # the SA shop:web is now a known secret reader; python3 a known memfd user
    assert "secret-access-unexpected-sa" not in tagged and "falco-memfd-fileless-exec" not in tagged
    # the debugger list replaces the default (gdb, lldb, strace, ltrace): strace is now unexpected,
    # injector is not
    assert tagged["falco-unexpected-ptrace"] == ["a831c3da-2ef4-4096-9ef5-50c01f0baeba"]
    assert default["falco-unexpected-ptrace"] == ["2164c1b8-c7dd-4dc2-9e9e-73b4074db673"]
    assert summary["hunts"] == {"cluster-admin-binding": 1, "falco-shell-in-container": 1,
                                "falco-unexpected-ptrace": 1, "rbac-modification": 1}


def test_a_secret_reader_exclusion_matches_a_fragment_of_another_account_only_when_it_is_one(chain, tmp_path):
    # `vault` is no fragment of shop:web: the read is still unexpected
    code, summary, out = run_to_dir(tmp_path, *chain_args(chain), "--secret-reader-exclusions", "vault")
    assert code == 0 and summary["hunts"]["secret-access-unexpected-sa"] == 1


def test_run_hunts_dir_loads_only_that_folder(chain, tmp_path):
    hunts = tmp_path / "hunts"
    hunts.mkdir()
    shutil.copy(ROOT / "mappings" / "hunts" / "falco-memfd-fileless-exec.yaml", hunts)
    code, summary, out = run_to_dir(tmp_path, *chain_args(chain), "--hunts-dir", hunts)
    assert code == 0
    assert summary["hunts"] == {"falco-memfd-fileless-exec": 1}
    assert hunts_of(out) == {"falco-memfd-fileless-exec": ["aa3cd533-1f35-4a12-8ea2-acd51e4e67a4"]}


def test_hunts_list_and_test_take_the_same_settings(capsys, tmp_path):
    hunts = tmp_path / "hunts"
    hunts.mkdir()
    shutil.copy(ROOT / "mappings" / "hunts" / "pod-exec.yaml", hunts)
    shutil.copy(ROOT / "mappings" / "hunts" / "falco-memfd-fileless-exec.yaml", hunts)
    assert run_cli("hunts", "list", "--hunts-dir", hunts) == 0
    listed = capsys.readouterr().out
    assert "pod-exec" in listed and "privileged-pod-create" not in listed
    assert run_cli("hunts", "test", "--hunts-dir", hunts, "--known-memfd-users", "x") == 0
    # A list no hunt of this catalogue declares is a configuration error, for `list` as for `run`.
    (hunts / "falco-memfd-fileless-exec.yaml").unlink()
    assert run_cli("hunts", "test", "--hunts-dir", hunts, "--known-memfd-users", "x") == 2


# ---------------------------------------------------------------------------------------------
# options that shape the graph: checked on the graph `kubehunt run` builds from its own parser


def config_for(*argv):
    """The RunConfig `kubehunt run ARGV` would run with, built by the CLI's own parser."""
    from pipeline.cli import _parser
    from pipeline.options import config_from_args

    args, extra = _parser().parse_known_args(["run", *map(str, argv)])
    assert not extra
    return config_from_args(args)


@pytest.fixture(scope="module")
def eight_lines(tmp_path_factory):
    path = tmp_path_factory.mktemp("eight") / "audit.log"
    path.write_bytes(b"".join((DEMO / "audit.log").read_bytes().splitlines(keepends=True)[:8]))
    return path


@pytest.mark.parametrize("chunk_lines,sizes", [("3", [2, 3, 3]), ("7", [1, 7]), ("8", [8]), ("1", [1] * 8)])
def test_chunk_lines_sizes_the_work_items(tmp_path, eight_lines, chunk_lines, sizes):
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline import graph

    cfg = config_for("--audit", eight_lines, "--output-dir", tmp_path, "--chunk-lines", chunk_lines)
    with TestPipeline() as p:
        built = graph.build(p, cfg)
        assert_that(built.documents["audit"] | beam.Map(len), equal_to(sizes))


def test_spread_chunks_adds_a_shuffle_and_changes_no_document(tmp_path, eight_lines):
    from pipeline import graph

    def reshuffles(*extra):
        p = beam.Pipeline()
        graph.build(p, config_for("--audit", eight_lines, "--output-dir", tmp_path, *extra))
        return sum("Reshuffle" in t.unique_name for t in p.to_runner_api().components.transforms.values())

    assert reshuffles("--spread-chunks") > reshuffles()
    plain = run_to_dir(tmp_path / "plain", "--audit", eight_lines)
    spread = run_to_dir(tmp_path / "spread", "--audit", eight_lines, "--spread-chunks")
    assert plain[0] == spread[0] == 0
    key = lambda d: d["event"]["id"]  # noqa: E731
    assert sorted(read_ndjson(plain[2], "events"), key=key) == sorted(read_ndjson(spread[2], "events"), key=key)


def _correlate_transform(cfg):
    """The CorrelateByServiceAccount instance graph.build wires for `cfg`."""
    from apache_beam.pipeline import PipelineVisitor

    from pipeline import graph
    from transforms.correlate import CorrelateByServiceAccount

    found = []

    class Find(PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, CorrelateByServiceAccount):
                found.append(node.transform)

    p = beam.Pipeline()
    graph.build(p, cfg)
    p.visit(Find())
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("lateness,resolved", [("10m", True), ("1m", False), ("600000ms", True), ("60", False)])
def test_allowed_lateness_decides_whether_a_late_pod_create_still_resolves_the_alert(chain, tmp_path, lateness,
                                                                                    resolved):
    """Streaming: the pod create (10:00) that names the alerting pod's service account arrives when the
    watermark is already at 10:50, 35 minutes after the alert (10:15; window 30m). The resolver keeps
    an alert until alert + window + lateness: with 10 minutes it is still there (10:55), with one
    minute (10:46) it was given up as unresolved."""
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.testing.util import assert_that
    from apache_beam.transforms.window import TimestampedValue

    from tests.helpers import ecs_docs, streaming_options, time_of
    from transforms import correlate

    cfg = config_for(*chain_args(chain), "--output-dir", tmp_path, "--allowed-lateness", lateness)
    transform = _correlate_transform(cfg)
    audit = [json.loads(line) for line in (chain / "audit.log").read_bytes().splitlines()]
    falco = [json.loads(line) for line in (chain / "falco.json").read_bytes().splitlines()]
    elements = [e for doc in ecs_docs(audit, falco) for e in correlate.extract(doc)]
    # Only the pod create may tell the pod's SA: the pod-claim facts of the SA's own tokens are left out.
    create = [e for e in elements if isinstance(e, correlate.PodFact) and e.source == "pod_create"]
    assert len(create) == 1
    on_time = [e for e in elements if not isinstance(e, correlate.PodFact)]
    alert_ms = next(e.t_ms for e in on_time if isinstance(e, correlate.AlertSeen) and e.alert_id == SHELL_ALERT)
    stream = (TestStream()
              .add_elements([TimestampedValue(e, time_of(e) / 1000) for e in sorted(on_time, key=time_of)])
              .advance_watermark_to((alert_ms + 35 * 60_000) / 1000)
              .add_elements([TimestampedValue(create[0], time_of(create[0]) / 1000)])
              .advance_watermark_to_infinity())
    with TestPipeline(options=streaming_options()) as p:
        incidents = p | stream | transform
        want = {SHELL_ALERT} if resolved else set()

        def the_alert_is_resolved_or_not(docs):
            got = {d["kubehunt"]["incident"]["alert"] for d in docs}
            assert got == want, got

        assert_that(incidents, the_alert_is_resolved_or_not)
