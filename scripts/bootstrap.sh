#!/usr/bin/env bash
# Set up everything kubehunt needs on this machine, idempotently and fast on the second run:
# a virtualenv in .venv with kubehunt installed (editable, with test extras), and jq (the playbook's
# own tool, used as the parity oracle by the tests). Sourced or run by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${KUBEHUNT_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "bootstrap: Python >= 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating virtualenv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.kubehunt-installed"
want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing kubehunt and its dependencies into $VENV" >&2
  log="$VENV/pip-install.log"
  if ! "$VENV/bin/python" -m pip install -e "$ROOT[test]" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bootstrap: pip install failed (full log: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# jq runs the playbook's own filters (the parity oracle); sysdig's filter compiler checks that the
# shipped Falco rules compile (Falco's condition language). Tests that need them skip, saying why,
# when they cannot be installed.
missing=()
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v sysdig >/dev/null 2>&1 || missing+=(sysdig)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]} from Debian" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
      >/dev/null 2>&1 || echo "bootstrap: warning: could not install ${missing[*]}; tests that need them will skip" >&2
  else
    echo "bootstrap: warning: ${missing[*]} not found; tests that need them will skip" >&2
  fi
fi
