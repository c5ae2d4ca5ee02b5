"""Parity with the playbook: its grep | jq pipelines for hunts 1-4, run verbatim, are the oracle.

The pipelines are cut out of the playbook text itself (../shared/seed), only the log path is replaced,
and run with bash (grep, then jq, exactly as written). Our side is the pipeline's own per-event path
(parse.records -> Normaliser.to_ecs -> Catalogue.tag); the events we tag are projected through the
playbook's own jq projection, so both sides print byte-identical lines per event. Events are identified
by that projection (the generated corpus makes it unique per event: a unique requestReceivedTimestamp, or
a unique name/account for legacy v1beta1 events without one).

The sets must be equal except for the intended differences, each asserted one by one below:
  A  one result per event (jq repeats a pod once per matching container); privileged init containers
  B  websocket exec (verb get on pods/exec); jq's grep also matches "subresource":"exec" inside a body
  C  namespaced roles; jq's grep also matches the resource words inside a body
  D  impersonation; precise exclusions (look-alikes); ranking by (account, verb, namespace)
  E  one match per request: a request logged at two stages is two playbook lines, one kubehunt match
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.conftest import SHARED_DATA, missing, needs_tool, shared
from transforms.ecs import NormaliseError, Normaliser
from transforms.hunts import HuntSettings, load_catalogue
from transforms.parse import ParseError, records

JQ = shutil.which("jq")
pytestmark = needs_tool("jq", "Debian package `jq` (scripts/test.sh installs it); the playbook's filters cannot run")
PLAYBOOK = SHARED_DATA.parent / "seed" / "000_1e14803f65f36fe7.txt"
LOG = "/var/log/kubernetes/audit.log"
HUNTS = {"A": "privileged-pod-create", "B": "pod-exec", "C": "rbac-modification", "D": "secret-access-unexpected-sa"}
RANKING_TAIL = " | sort | uniq -c | sort -rn | head -30"


def _load_gen_corpus():
    import tests.builders.corpus
    return tests.builders.corpus


# ---------------------------------------------------------------------------------------------
# The playbook's pipelines, cut from its text


def playbook_pipelines() -> dict[str, str]:
    """{A..D: the shell pipeline exactly as the playbook prints it (grep ... | jq ... [| sort ...])}."""
    if not PLAYBOOK.is_file():
        missing(f"playbook not found at {PLAYBOOK}")
    text = PLAYBOOK.read_text()
    blocks = re.findall(r"^grep .*?^\}'(?: \| sort \| uniq -c \| sort -rn \| head -30)?$", text, re.S | re.M)
    assert len(blocks) == 5, "expected the playbook's 4 hunt pipelines + the correlation one"
    return dict(zip("ABCD", blocks[:4]))


def projection(pipeline: str) -> str:
    """The jq projection `{...}` of a pipeline (the object after the last `) | `)."""
    program = pipeline.split("jq -c '", 1)[1].rsplit("'", 1)[0]
    return program[program.rindex(") | {") + 4:]


def run_jq_pipeline(pipeline: str, log: Path, with_ranking: bool = False) -> list[str]:
    command = pipeline.replace(LOG, f"'{log}'")
    if not with_ranking:
        command = command.replace(RANKING_TAIL, "")
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    # grep exits 1 when nothing matches; jq reports (and skips) inputs it cannot evaluate.
    assert proc.returncode in (0, 1, 5), proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def project(events: list[dict], projection_program: str, tmp: Path) -> list[str]:
    """Our tagged events printed through the playbook's own jq projection (same bytes as jq's side)."""
    if not events:
        return []
    path = tmp / "ours.ndjson"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    proc = subprocess.run([JQ, "-c", projection_program, str(path)], capture_output=True, text=True, check=True)
    return proc.stdout.splitlines()


# ---------------------------------------------------------------------------------------------
# Our side


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(HuntSettings())


@pytest.fixture(scope="module")
def normaliser():
    return Normaliser()


def tag_file(path: Path, normaliser, catalogue) -> list[tuple[int, dict, list[str]]]:
    """(line number, raw event, hunt ids) for every event of a file, through the pipeline's per-event path."""
    out = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            recs = list(records("audit", line))
        except ParseError:
            continue
        for record, envelope in recs:
            try:
                doc = normaliser.to_ecs("audit", record, envelope)
            except NormaliseError:
                continue
            out.append((number, record, catalogue.tag(doc)))
    return out


def ours_by_hunt(tagged) -> dict[str, list[dict]]:
    return {key: [raw for _, raw, ids in tagged if hunt in ids] for key, hunt in HUNTS.items()}


# ---------------------------------------------------------------------------------------------
# The real third-party samples

def _sample_files() -> list[Path]:
    root = SHARED_DATA / "audit"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def test_playbook_pipelines_are_cut_verbatim_from_the_playbook():
    pipelines = playbook_pipelines()
    text = PLAYBOOK.read_text()
    for key, pipeline in pipelines.items():
        assert pipeline in text
        assert pipeline.startswith("grep ") and LOG in pipeline
    assert pipelines["D"].endswith(RANKING_TAIL)


@pytest.fixture(scope="module")
def sample_results(normaliser, catalogue, tmp_path_factory):
    files = _sample_files()
    if not files:
        shared("audit")
        missing(f"no audit samples in {SHARED_DATA}")
    pipelines = playbook_pipelines()
    tmp = tmp_path_factory.mktemp("samples")
    jq_lines = {k: Counter() for k in HUNTS}
    our_lines = {k: Counter() for k in HUNTS}
    for path in files:
        ours = ours_by_hunt(tag_file(path, normaliser, catalogue))
        for key, pipeline in pipelines.items():
            jq_lines[key].update(run_jq_pipeline(pipeline, path))
            our_lines[key].update(project(ours[key], projection(pipeline), tmp))
    return jq_lines, our_lines


def test_playbook_counts_on_the_real_samples_match_provenance(sample_results):
    jq_lines, _ = sample_results
    # PROVENANCE.md, per folder: A 4 + 5, B 1, C 11, D 0 (as the playbook's filters define them). Three psp
    # files duplicate files of the other folder, so some lines appear twice, once per file.
    assert {k: sum(v.values()) for k, v in jq_lines.items()} == {"A": 4 + 5, "B": 1, "C": 11, "D": 0}


@pytest.mark.parametrize("key", list(HUNTS))
def test_real_samples_tagged_set_equals_the_playbooks(sample_results, key):
    jq_lines, our_lines = sample_results
    # Multisets, file by file: no sample has a case where the playbook is wrong, so they agree exactly.
    assert our_lines[key] == jq_lines[key]


# ---------------------------------------------------------------------------------------------
# The generated corpus (>= 10,000 events with edge cases)

CORPUS_EVENTS = 12_000


@pytest.fixture(scope="module")
def corpus(normaliser, catalogue, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    path = tmp / "audit.log"
    labels = _load_gen_corpus().write_corpus(path, CORPUS_EVENTS, seed=20260115)
    tagged = tag_file(path, normaliser, catalogue)
    assert len(tagged) == CORPUS_EVENTS, "every generated event normalises"
    pipelines = playbook_pipelines()
    raw = [r for _, r, _ in tagged]
    result = {}
    for key, pipeline in pipelines.items():
        prog = projection(pipeline)
        jq_lines = Counter(run_jq_pipeline(pipeline, path))
        ours = ours_by_hunt(tagged)[key]
        our_lines = Counter(project(ours, prog, tmp))
        # Key -> label, for every event of the corpus (the projection identifies an event).
        all_lines = project(raw, prog, tmp)
        by_line: dict[str, list[str | None]] = {}
        for line, label in zip(all_lines, labels):
            by_line.setdefault(line, []).append(label)
        result[key] = (jq_lines, our_lines, by_line)
    return {"labels": labels, "hunts": result, "path": path, "tagged": tagged, "tmp": tmp}


def _diff(corpus, key):
    jq_lines, our_lines, by_line = corpus["hunts"][key]
    ours_only = set(our_lines) - set(jq_lines)
    jq_only = set(jq_lines) - set(our_lines)
    return ours_only, jq_only, by_line


def _labels(lines, by_line) -> Counter:
    out = Counter()
    for line in lines:
        for label in by_line[line]:
            out[(label or "background").split("+")[0]] += 1
    return out


def test_corpus_is_large_and_has_every_edge_case(corpus):
    labels = Counter((label or "background").split("+")[0] for label in corpus["labels"])
    assert sum(labels.values()) >= 10_000
    for case in ("impersonated-secret-read", "lookalike-exclusion", "group-lookalike-user", "privileged-2nd-container",
                 "multi-match-pod", "rbac-deletecollection", "generatename-pod", "websocket-exec", "namespaced-role",
                 "ssar-rbac-word", "ssar-exec-word", "privileged-init-container"):
        assert labels[case] > 0, case
    assert any(label and label.endswith("+v1beta1-legacy") for label in corpus["labels"])


@pytest.mark.parametrize("key", list(HUNTS))
def test_corpus_projections_identify_events(corpus, key):
    """Every line either side prints belongs to exactly one corpus event (so sets compare events)."""
    jq_lines, our_lines, by_line = corpus["hunts"][key]
    for line in set(jq_lines) | set(our_lines):
        assert len(by_line.get(line, [])) == 1, line


@pytest.mark.parametrize("key", list(HUNTS))
def test_corpus_agrees_with_the_playbook_outside_the_intended_differences(corpus, key):
    intended = {
        "A": ({"privileged-init-container"}, set()),
        "B": ({"websocket-exec"}, {"ssar-exec-word"}),
        "C": ({"namespaced-role"}, {"ssar-rbac-word"}),
        "D": ({"impersonated-secret-read", "lookalike-exclusion"}, set()),
    }[key]
    ours_only, jq_only, by_line = _diff(corpus, key)
    assert set(_labels(ours_only, by_line)) <= intended[0]
    assert set(_labels(jq_only, by_line)) <= intended[1]
    jq_lines, our_lines, _ = corpus["hunts"][key]
    assert len(set(jq_lines) & set(our_lines)) > 20, "the hunts overlap on many events"


# -- A: privileged pod -------------------------------------------------------------------------

def test_privileged_pod_is_reported_once_per_event_not_once_per_container(corpus):
    jq_lines, our_lines, by_line = corpus["hunts"]["A"]
    repeated = {line for line, n in jq_lines.items() if n > 1}
    assert repeated, "the corpus has pods the playbook reports more than once"
    # jq repeats exactly the pods with several containers that each make the select true ...
    assert set(_labels(repeated, by_line)) == {"multi-match-pod"}
    # ... while we tag each of those events once.
    assert repeated <= set(our_lines) and all(our_lines[line] == 1 for line in repeated)


def test_privileged_second_container_is_found_by_both(corpus):
    jq_lines, our_lines, by_line = corpus["hunts"]["A"]
    second = {line for line, labels in by_line.items()
              if any((label or "").startswith("privileged-2nd-container") for label in labels)}
    assert second and second <= set(jq_lines) and second <= set(our_lines)


def test_privileged_init_container_is_ours_only(corpus):
    ours_only, jq_only, by_line = _diff(corpus, "A")
    init = {line for line, labels in by_line.items() if any((l or "").startswith("privileged-init-container")
                                                            for l in labels)}
    assert init and ours_only == init and not jq_only


def test_generatename_pods_are_found_by_both(corpus):
    jq_lines, our_lines, by_line = corpus["hunts"]["A"]
    generated = {line for line, labels in by_line.items() if any((l or "").startswith("generatename-pod")
                                                                 for l in labels)}
    assert generated and generated <= set(jq_lines) and generated <= set(our_lines)


# -- B: pod exec -------------------------------------------------------------------------------

def test_websocket_exec_is_ours_only(corpus):
    ours_only, _, by_line = _diff(corpus, "B")
    websocket = {line for line, labels in by_line.items() if any((l or "").startswith("websocket-exec") for l in labels)}
    assert websocket and ours_only == websocket


def test_exec_word_inside_an_access_review_is_a_playbook_false_positive(corpus):
    _, jq_only, by_line = _diff(corpus, "B")
    reviews = {line for line, labels in by_line.items() if "ssar-exec-word" in labels}
    assert reviews and jq_only == reviews


# -- C: RBAC -----------------------------------------------------------------------------------

def test_namespaced_roles_are_ours_only(corpus):
    ours_only, _, by_line = _diff(corpus, "C")
    roles = {line for line, labels in by_line.items() if any((l or "").startswith("namespaced-role") for l in labels)}
    assert roles and ours_only == roles


def test_rbac_words_inside_an_access_review_are_a_playbook_false_positive(corpus):
    _, jq_only, by_line = _diff(corpus, "C")
    reviews = {line for line, labels in by_line.items() if "ssar-rbac-word" in labels}
    assert reviews and jq_only == reviews


def test_rbac_deletecollection_is_found_by_both(corpus):
    jq_lines, our_lines, by_line = corpus["hunts"]["C"]
    dc = {line for line, labels in by_line.items() if "rbac-deletecollection" in labels}
    assert dc and dc <= set(jq_lines) and dc <= set(our_lines)


# -- D: secret access --------------------------------------------------------------------------

def test_secret_read_through_impersonation_is_ours_only(corpus):
    ours_only, _, by_line = _diff(corpus, "D")
    imp = {line for line in ours_only if any((l or "").startswith("impersonated-secret-read") for l in by_line[line])}
    assert imp
    assert all((l or "").startswith("impersonated-secret-read")
               for line, labels in by_line.items() if line in imp for l in labels)


def test_lookalike_of_an_excluded_consumer_is_ours_only(corpus):
    ours_only, jq_only, by_line = _diff(corpus, "D")
    lookalikes = {line for line, labels in by_line.items() if any((l or "").startswith("lookalike-exclusion")
                                                                  for l in labels)}
    assert lookalikes and lookalikes <= ours_only and not jq_only
    assert ours_only - lookalikes == {line for line in ours_only
                                      if any((l or "").startswith("impersonated-secret-read") for l in by_line[line])}


def test_group_lookalike_username_is_not_a_service_account_for_either(corpus):
    jq_lines, our_lines, by_line = corpus["hunts"]["D"]
    groups = {line for line, labels in by_line.items() if any((l or "").startswith("group-lookalike-user")
                                                              for l in labels)}
    assert groups and not groups & (set(jq_lines) | set(our_lines))


def test_playbook_secret_ranking_never_groups_while_ours_ranks_account_verb_namespace(corpus):
    """The playbook's `sort | uniq -c` counts whole lines, each with its own timestamp: every count is 1."""
    ranked = run_jq_pipeline(playbook_pipelines()["D"], corpus["path"], with_ranking=True)
    counts = [int(line.split(None, 1)[0]) for line in ranked]
    assert len(ranked) == 30 and set(counts) == {1}
    # Ours: the report's ranking fields over the same tagged events group them (oracle: a plain Counter).
    from transforms.hunts import load_hunts
    hunt = {h.id: h for h in load_hunts()}["secret-access-unexpected-sa"]
    assert hunt.ranking == ("user.name", "user.effective.name", "event.action", "orchestrator.namespace")
    groups = Counter()
    for _, raw, ids in corpus["tagged"]:
        if HUNTS["D"] in ids:
            groups[(raw["user"]["username"], (raw.get("impersonatedUser") or {}).get("username"), raw["verb"],
                    raw["objectRef"].get("namespace"))] += 1
    assert max(groups.values()) > 1, "(account, verb, namespace) groups repeated reads"


# ---------------------------------------------------------------------------------------------
# E  one match per request: the playbook counts log lines, kubehunt counts requests


def test_request_logged_at_two_stages_is_two_playbook_lines_and_one_kubehunt_match(tmp_path):
    """API servers log RequestReceived and ResponseComplete with one auditID: jq prints both lines,
    kubehunt's per-chunk stage (ProcessChunkFn, as `kubehunt run`) tags the final stage only."""
    import apache_beam as beam

    from transforms.hunts import load_hunts
    from transforms.process import ProcessChunkFn, ProcessSettings

    base = next(h for h in load_hunts() if h.id == HUNTS["C"]).example_events("match")[0]
    lines = []
    for n in range(3):
        stamp = f"2026-01-15T14:3{n}:00.000000Z"
        for stage in ("RequestReceived", "ResponseComplete"):
            lines.append(orjson.dumps(dict(base, auditID=f"req-{n}", stage=stage, requestReceivedTimestamp=stamp)))
    log = tmp_path / "staged.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    jq_lines = run_jq_pipeline(playbook_pipelines()["C"], log)
    fn = ProcessChunkFn(ProcessSettings(correlate=False))
    fn.setup()
    docs = [orjson.loads(body) for element in fn.process(("audit", str(log), 1, lines))
            if not isinstance(element, beam.pvalue.TaggedOutput) for item in element for body in [item.body]]
    ours = [d for d in docs if HUNTS["C"] in d.get("kubehunt", {}).get("hunts", [])]
    assert len(jq_lines) == 6 and len(set(jq_lines)) == 3, "the playbook prints each request once per stage"
    assert len(ours) == 3 and {d["kubernetes"]["audit"]["stage"] for d in ours} == {"ResponseComplete"}
    assert sorted(project([d["kubernetes"]["audit"] for d in ours], projection(playbook_pipelines()["C"]),
                          tmp_path)) == sorted(set(jq_lines))
