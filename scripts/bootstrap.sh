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

if ! command -v jq >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing jq (the playbook's filters are the tests' oracle)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq) >/dev/null 2>&1 \
      || echo "bootstrap: warning: could not install jq; the playbook parity tests will be skipped" >&2
  else
    echo "bootstrap: warning: jq not found; install it to run the playbook parity tests" >&2
  fi
fi
