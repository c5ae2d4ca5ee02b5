#!/usr/bin/env bash
# Set up everything and run the whole test suite, including the tests against a real Elasticsearch
# (KUBEHUNT_ES_URL if set and reachable, else the local node this script installs and starts).
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/elasticsearch.sh start
exec .venv/bin/python -m pytest "$@"
