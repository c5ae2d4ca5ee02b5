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
# The fast tests: no Elasticsearch node, no multi-second corpora.
TESTS=${MUTATION_TESTS:-tests/test_cli_run.py tests/test_cli_es_options.py tests/test_pipeline.py tests/test_read.py
tests/test_parse.py tests/test_ecs.py tests/test_hunts.py tests/test_correlate_extract.py tests/test_incident_cli.py
tests/test_conformance.py}

if ! "$PY" -c "import mutmut" 2>/dev/null; then
  "$PY" -m pip install -q 'mutmut>=3.3,<4'
fi
MUTMUT=$(dirname "$PY")/mutmut

if [ $# -gt 0 ]; then MODULES=("$@"); else
  mapfile -t MODULES < <(cd "$ROOT" && ls pipeline/*.py transforms/*.py | grep -v '__init__.py$')
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

# Existing files only (a test file another branch adds may not be here yet).
SHARED=${KUBEHUNT_SHARED_DATA:-$ROOT/../shared/data}
cd "$WORK"
export KUBEHUNT_SHARED_DATA=$SHARED KUBEHUNT_ES_URL=http://127.0.0.1:1 PYTHONDONTWRITEBYTECODE=1
# shellcheck disable=SC2086  # MUTANTS is a list of patterns, unquoted on purpose (set -f: no globbing)
set -f
"$MUTMUT" run --max-children "$CHILDREN" ${MUTANTS:-} > "$WORK/mutmut-run.log" 2>&1 || {
  echo "mutmut run failed (log: $WORK/mutmut-run.log):" >&2; tail -30 "$WORK/mutmut-run.log" >&2; exit 1; }
set +f
"$MUTMUT" results --all true > "$WORK/mutmut-results.txt"

"$PY" - "$WORK/mutmut-results.txt" "${MODULES[@]}" <<'EOF'
import re
import sys
from collections import Counter, defaultdict

results, modules = sys.argv[1], sys.argv[2:]
by_module: dict[str, Counter] = defaultdict(Counter)
survivors: dict[str, list[str]] = defaultdict(list)
for line in open(results, encoding="utf-8"):
    name, _, status = line.strip().rpartition(": ")
    if not name:
        continue
    # pipeline.options.x__duration__mutmut_3 / transforms.read.xǁReadChunksFnǁprocess__mutmut_7
    module = re.split(r"\.x[_ǁ]", name, maxsplit=1)[0]
    by_module[module][status] += 1
    if status in ("survived", "no tests"):
        survivors[module].append(f"{name} ({status})")
print(f"{'module':<28} {'score':>7} {'killed':>7} {'survived':>9} {'no tests':>9} {'timeout':>8} {'total':>6}")
for path in modules:
    module = path[:-3].replace("/", ".")
    c = by_module.get(module, Counter())
    scored = c["killed"] + c["survived"] + c["no tests"] + c["timeout"]
    score = f"{100 * c['killed'] / scored:.1f}%" if scored else "n/a"
    print(f"{module:<28} {score:>7} {c['killed']:>7} {c['survived']:>9} {c['no tests']:>9} {c['timeout']:>8} "
          f"{sum(c.values()):>6}")
for module, names in sorted(survivors.items()):
    print(f"\nsurviving in {module}:")
    for name in names:
        print(f"  {name}")
EOF
echo "work folder: $WORK (cd there and run \`$MUTMUT show NAME\` to see a mutant)"
