#!/usr/bin/env bash
# Mutation score per module: how many small deliberate bugs (mutmut's mutants: a flipped comparison,
# an off-by-one constant, a dropped argument, ...) the fast, non-Elasticsearch tests catch.
# A measurement of the suite, not a CI gate: it takes long (each surviving mutant re-runs the tests
# that reach its function), so run it by hand, niced, on the modules you care about.
#
#   bash scripts/mutation.sh                          # every module of pipeline/ and transforms/
#   bash scripts/mutation.sh pipeline/options.py pipeline/summary.py
#   MUTATION_TESTS="tests/test_cli_run.py tests/test_pipeline.py" bash scripts/mutation.sh pipeline/summary.py
#   MUTANTS='pipeline.options.x__duration* pipeline.options.x_config_from_args*' \
#     bash scripts/mutation.sh pipeline/options.py     # only the mutants of these functions (fnmatch)
#   MUTATION_SAMPLE=30 MUTATION_SEED=1 MUTATION_CHILDREN=1 nice -n 19 bash scripts/mutation.sh
#                                                     # 30 mutants per module (or package), seeded
#
# A whole run is slow (pipeline/options.py alone has ~860 mutants). MUTATION_SAMPLE=N first lets
# mutmut generate every mutant and map tests to functions (a `mutmut run` whose pattern matches no
# mutant does exactly that and stops), lists them (`mutmut results --all true`), then draws N per
# module (all of them when a module has fewer): the first N of the module's mutants shuffled by
# random.Random("SEED:module"), so one module's draw does not depend on which other modules are
# measured, and a larger N extends a smaller one's sample; with MUTANTS set, the draw is from the
# mutants that match it. Only the drawn mutants run. The score of a sample comes with its 95% Wilson
# interval (finite-population corrected: a sample of all of a module's mutants is exact) and the
# module's total. A sub-package (transforms/ecs/, split this wave from transforms/ecs.py) is one
# draw of N across its modules (MUTATION_SAMPLE_BY=package, the default), so it compares with the
# module it came from; its line is the pooled sample's score, and each of its modules' lines the
# part of that sample that fell in it. MUTATION_SAMPLE_BY=module draws N per module instead; the
# package line is then the stratified estimate (each module weighted by its share of the mutants).
#
# Works offline once mutmut is installed (it is pip-installed into .venv on first use). The project
# is copied to a scratch folder (MUTATION_WORKDIR, default a new mktemp folder) so the checkout stays
# untouched; the tests there read ../shared/data through KUBEHUNT_SHARED_DATA, and KUBEHUNT_ES_URL
# points at a closed port so no test can start or use an Elasticsearch node.
# Output: one line per module, "killed / (killed + survived + no tests + timeout)" over the mutants
# that were run (unchecked ones do not count), then the
# surviving mutants (`mutmut show NAME` in the work folder prints one as a diff).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${KUBEHUNT_PYTHON:-$ROOT/.venv/bin/python}
WORK=${MUTATION_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/kubehunt-mutation.XXXXXX")}
CHILDREN=${MUTATION_CHILDREN:-2}
SAMPLE=${MUTATION_SAMPLE:-}
SEED=${MUTATION_SEED:-0}
SAMPLE_BY=${MUTATION_SAMPLE_BY:-package}   # package: a sub-package (transforms/ecs/) is one draw of N
# The fast tests: no Elasticsearch node, no multi-second corpora. Files absent from the tree being
# measured are skipped. (More fast files exist, e.g. tests/test_backfill.py or test_read_content.py;
# each pipeline-level test file multiplies the time of every surviving mutant, so they are left out.)
TESTS=${MUTATION_TESTS:-tests/test_cli_run.py tests/test_cli_es_options.py tests/test_pipeline.py tests/test_read.py
tests/test_parse.py tests/test_ecs.py tests/test_hunts.py tests/test_correlate_extract.py
tests/test_conformance.py tests/test_validate.py tests/test_split.py
tests/test_option_values.py tests/test_summary_counts.py tests/test_index_names.py tests/test_line_limits.py
tests/test_exit_codes.py tests/test_node_reachability.py}

if ! "$PY" -c "import mutmut" 2>/dev/null; then
  "$PY" -m pip install -q 'mutmut>=3.3,<4'
fi
MUTMUT=$(dirname "$PY")/mutmut

if [ $# -gt 0 ]; then MODULES=("$@"); else
  MODULES=()
  shopt -s nullglob
  for f in "$ROOT"/pipeline/*.py "$ROOT"/transforms/*.py "$ROOT"/transforms/*/*.py; do
    f=${f#"$ROOT/"}
    [[ $f == */__init__.py ]] || MODULES+=("$f")
  done
  shopt -u nullglob
fi

# Copy what git knows (tracked and new, not ignored): the code, tests, mappings, scripts, test data.
mkdir -p "$WORK"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$WORK"
rm -rf "$WORK/mutants"
# mutmut reads [tool.mutmut] from pyproject.toml first; the copy's pyproject has none, so setup.cfg.
{
  echo "[mutmut]"
  echo "source_paths ="
  echo "    pipeline/"
  echo "    transforms/"
  echo "only_mutate ="
  for m in "${MODULES[@]}"; do echo "    $m"; done
  echo "also_copy ="
  echo "    mappings/"
  echo "    scripts/"
  echo "    docs/"
  echo "    README.md"
  echo "pytest_add_cli_args_test_selection ="
  for t in $TESTS; do [ -e "$WORK/$t" ] && echo "    $t"; done
  echo "pytest_add_cli_args ="
  echo "    -m"
  echo "    not elasticsearch and not slow"
  echo "    -p"
  echo "    no:cacheprovider"
  echo "mutate_only_covered_lines = false"
} > "$WORK/setup.cfg"

# The Python half: draws the sample (sample RESULTS SAMPLED N SEED PATTERNS MODULES...) and prints
# the scores (report RESULTS SAMPLED|- MODULES...).
cat > "$WORK/mutation_score.py" <<'EOF'
import fnmatch
import math
import random
import re
import sys
from collections import Counter, defaultdict

SCORED = ("killed", "survived", "no tests", "timeout")


def read_results(path: str) -> dict[str, str]:
    status_by_name = {}
    for line in open(path, encoding="utf-8"):
        name, _, status = line.strip().rpartition(": ")
        if name:
            status_by_name[name] = status
    return status_by_name


def module_of(name: str) -> str:
    # pipeline.options.x__duration__mutmut_3 / transforms.read.xǁReadChunksFnǁprocess__mutmut_7
    return re.split(r"\.x[_ǁ]", name, maxsplit=1)[0]


def wilson(k: int, n: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval for k of n drawn without replacement from total (z shrunk by the
    finite-population correction, so a sample of every mutant gives the exact score)."""
    if n == 0:
        return 0.0, 1.0
    if total > 1:
        z *= math.sqrt(max(total - n, 0) / (total - 1))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def unit_of(module: str, by: str) -> str:
    """What one draw of N covers: a module, or (by package) a whole sub-package such as transforms.ecs
    (so the package and the single module it was split from are sampled alike)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if by == "package" and len(parts) > 2 else module


def sample(results: str, out: str, n: int, seed: str, by: str, patterns: list[str], modules: list[str]) -> None:
    wanted = {m[:-3].replace("/", ".") for m in modules}
    names_by_unit: dict[str, list[str]] = defaultdict(list)
    for name in read_results(results):
        module = module_of(name)
        if module in wanted and (not patterns or any(fnmatch.fnmatch(name, p) for p in patterns)):
            names_by_unit[unit_of(module, by)].append(name)
    with open(out, "w", encoding="utf-8") as f:
        for unit, names in sorted(names_by_unit.items()):
            names.sort()
            # The first n of a seeded shuffle: a larger n extends a smaller one's sample.
            random.Random(f"{seed}:{unit}").shuffle(names)
            for name in sorted(names[:n]):
                f.write(f"{name}\t{unit}\t{len(names)}\n")


def report(results: str, sampled_path: str, modules: list[str]) -> None:
    status_by_name = read_results(results)
    total_by_module = Counter(module_of(name) for name in status_by_name)
    pooled = True   # a package's line: one sample over the package (or every mutant), else stratified
    if sampled_path != "-":
        rows = [line.rstrip("\n").split("\t") for line in open(sampled_path, encoding="utf-8") if line.strip()]
        run = [row[0] for row in rows]
        pooled = all(row[1] != module_of(row[0]) for row in rows if module_of(row[0]).count(".") >= 2)
    else:
        run = list(status_by_name)
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name in run:
        status = status_by_name.get(name, "not checked")
        by_module[module_of(name)][status] += 1
        if status in ("survived", "no tests", "timeout"):
            survivors[module_of(name)].append(f"{name} ({status})")
    print(f"{'module':<30} {'score':>7} {'95% interval':>14} {'killed':>7} {'survived':>9} {'no tests':>9} "
          f"{'timeout':>8} {'run':>5} {'total':>6}")
    packages: dict[str, list[str]] = defaultdict(list)

    def line(label: str, score: str, interval: str, c: Counter, run_n: int, total: int) -> None:
        print(f"{label:<30} {score:>7} {interval:>14} {c['killed']:>7} {c['survived']:>9} {c['no tests']:>9} "
              f"{c['timeout']:>8} {run_n:>5} {total:>6}")

    for path in modules:
        module = path[:-3].replace("/", ".")
        if path.count("/") >= 2:
            packages[module.rsplit(".", 1)[0]].append(module)
        c = by_module.get(module, Counter())
        scored = sum(c[s] for s in SCORED)
        total = total_by_module.get(module, 0)
        if scored:
            lo, hi = wilson(c["killed"], scored, total)
            score = f"{100 * c['killed'] / scored:.1f}%"
            # An interval only for a random sample (MUTANTS= picks mutants, it does not sample them).
            interval = f"{100 * lo:.0f}-{100 * hi:.0f}%" if sampled_path != "-" else ""
        else:
            score, interval = "n/a", ""
        line(module, score, interval, c, scored, total)
    for package, members in sorted(packages.items()):
        if not pooled:
            members = [m for m in members if sum(by_module[m][s] for s in SCORED)]
        total = sum(total_by_module[m] for m in members)
        if not total or not sum(by_module[m][s] for m in members for s in SCORED):
            continue
        c = Counter()
        for m in members:
            c += by_module[m]
        scored = sum(c[s] for s in SCORED)
        if pooled:
            # One simple random sample over the package's mutants: Wilson over the pooled counts.
            est = c["killed"] / scored
            lo, hi = wilson(c["killed"], scored, total)
        else:
            # One sample per module: each module's score weighted by its share of the package's
            # mutants; the normal interval with each module's variance from (killed+1)/(run+2), so a
            # module whose sample is all killed or all survived still counts as uncertain.
            est = var = 0.0
            for m in members:
                cm = by_module[m]
                n, k, t = sum(cm[s] for s in SCORED), cm["killed"], total_by_module[m]
                w = t / total
                est += w * k / n
                p = (k + 1) / (n + 2)
                var += w * w * p * (1 - p) / n * (max(t - n, 0) / max(t - 1, 1))
            half = 1.96 * math.sqrt(var)
            lo, hi = max(0.0, est - half), min(1.0, est + half)
        line(f"{package}/ ({len(members)} modules)", f"{100 * est:.1f}%",
             f"{100 * lo:.0f}-{100 * hi:.0f}%" if sampled_path != "-" else "", c, scored, total)
    for module, names in sorted(survivors.items()):
        print(f"\nsurviving in {module}:")
        for name in names:
            print(f"  {name}")


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        results, out, n, seed, by, patterns = sys.argv[2:8]
        sample(results, out, int(n), seed, by, patterns.split(), sys.argv[8:])
    else:
        report(sys.argv[2], sys.argv[3], sys.argv[4:])
EOF

# Existing files only (a test file another branch adds may not be here yet).
SHARED=${KUBEHUNT_SHARED_DATA:-$ROOT/../shared/data}
cd "$WORK"
export KUBEHUNT_SHARED_DATA=$SHARED KUBEHUNT_ES_URL=http://127.0.0.1:1 PYTHONDONTWRITEBYTECODE=1
fail() { echo "$1 (log: $2):" >&2; tail -30 "$2" >&2; exit 1; }
# mutmut's own time limit is CPU time: a test that waits forever (idle) never reaches it. Beam's
# multi-process DirectRunner does that in mutmut's forked workers (its gRPC is not fork-safe: the
# workers start, then nothing happens), so tests/test_incident_cli.py is not in the list above. A
# mutant process older than MUTATION_WALL_TIMEOUT seconds whose processes ran or waited to run for
# under 2 s in the last minute is taken as hung (a niced run starved by other work waits): it
# gets SIGXCPU, which mutmut records as a timeout, and the processes it started are ended.
WALL=${MUTATION_WALL_TIMEOUT:-120}
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
# Time on a CPU plus time waiting for one (ms, /proc/PID/schedstat): a starved process waits, a hung
# one does neither (its gRPC threads poll for well under a second a minute).
run_and_wait_ms() { local p; for p in "$@"; do cat "/proc/$p/schedstat" 2>/dev/null; done \
  | awk '{t += $1 + $2} END {printf "%d\n", t / 1e6}'; }
watchdog() {
  local runner=$1 child age tree
  declare -A history=()
  while kill -0 "$runner" 2>/dev/null; do
    for child in $(pgrep -P "$runner"); do
      age=$(ps -o etimes= -p "$child" 2>/dev/null | tr -d ' ')
      tree="$child $(descendants "$child")"
      # shellcheck disable=SC2086
      history[$child]="${history[$child]:-} $(run_and_wait_ms $tree)"
      read -r -a samples <<< "${history[$child]}"
      local n=${#samples[@]}
      if [ "$n" -gt 4 ] && [ -n "$age" ] && [ "$age" -gt "$WALL" ] \
         && [ $((samples[n - 1] - samples[n - 5])) -lt 2000 ]; then
        echo "hung (idle) after ${age}s: $(ps -o args= -p "$child")" >> "$WORK/watchdog.log"
        kill -XCPU "$child" 2>/dev/null; sleep 1
        # shellcheck disable=SC2086
        [ "$tree" = "$child " ] || kill ${tree#"$child"} 2>/dev/null || true
      fi
    done
    sleep "${WATCH_EVERY:-15}"
  done
}
# mutmut run ARGS... with the watchdog; its output goes to LOG.
run_mutmut() {
  local log=$1; shift
  "$MUTMUT" run --max-children "$CHILDREN" "$@" > "$log" 2>&1 &
  local pid=$!
  watchdog "$pid" &
  local dog=$! rc=0
  wait "$pid" || rc=$?
  kill "$dog" 2>/dev/null || true
  return "$rc"
}
# shellcheck disable=SC2086  # MUTANTS is a list of patterns, unquoted on purpose (set -f: no globbing)
set -f
if [ -n "$SAMPLE" ]; then
  # Generate every mutant and collect which tests reach which function, running none: mutmut stops
  # with "nothing matches" after both. The stats are kept in mutants/ for the sampled run.
  if run_mutmut "$WORK/mutmut-list.log" 'kubehunt-list-only-matches-no-mutant' \
     || ! grep -q 'nothing matches' "$WORK/mutmut-list.log"; then
    fail "mutmut could not generate the mutants" "$WORK/mutmut-list.log"
  fi
  "$MUTMUT" results --all true > "$WORK/mutmut-all.txt"
  "$PY" "$WORK/mutation_score.py" sample "$WORK/mutmut-all.txt" "$WORK/sampled.tsv" "$SAMPLE" "$SEED" "$SAMPLE_BY" \
    "${MUTANTS:-}" \
    "${MODULES[@]}"
  [ -s "$WORK/sampled.tsv" ] || { echo "no mutant to sample (modules: ${MODULES[*]})" >&2; exit 1; }
  echo "sampled $(wc -l < "$WORK/sampled.tsv") mutants (MUTATION_SAMPLE=$SAMPLE per $SAMPLE_BY, MUTATION_SEED=$SEED)" >&2
  mapfile -t DRAWN < <(cut -f1 "$WORK/sampled.tsv")
  run_mutmut "$WORK/mutmut-run.log" "${DRAWN[@]}" || fail "mutmut run failed" "$WORK/mutmut-run.log"
  SAMPLED=$WORK/sampled.tsv
else
  run_mutmut "$WORK/mutmut-run.log" ${MUTANTS:-} || fail "mutmut run failed" "$WORK/mutmut-run.log"
  SAMPLED=-
fi
set +f
"$MUTMUT" results --all true > "$WORK/mutmut-results.txt"
"$PY" "$WORK/mutation_score.py" report "$WORK/mutmut-results.txt" "$SAMPLED" "${MODULES[@]}"
echo "work folder: $WORK (cd there and run \`$MUTMUT show NAME\` to see a mutant)"
