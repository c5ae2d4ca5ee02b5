#!/usr/bin/env bash
# Set up everything and run the main job on the demo data that ships with kubehunt:
# virtualenv + dependencies, a local Elasticsearch (installed and started on 127.0.0.1:9200 unless
# KUBEHUNT_ES_URL points at a reachable cluster), then `kubehunt run` over tests/data/demo.
#   bash scripts/demo.sh [extra kubehunt run options...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/elasticsearch.sh start
URL=${KUBEHUNT_ES_URL:-$(bash scripts/elasticsearch.sh url)}
export KUBEHUNT_ES_URL=$URL
mkdir -p out
.venv/bin/kubehunt run \
  --audit tests/data/demo/audit.log \
  --falco tests/data/demo/falco.json \
  --pods tests/data/demo/pods.json \
  --summary-json out/demo-summary.json "$@"
cat <<TXT

Done. Where to look:
  summary (JSON)      out/demo-summary.json
  audit events        curl -s '$URL/logs-kubernetes.audit_logs-default/_count'
  Falco alerts        curl -s '$URL/logs-falco.alerts-default/_count'
  hunt matches        curl -s '$URL/logs-*/_search?q=kubehunt.hunts:*&size=5&pretty'
  incidents           curl -s '$URL/kubehunt-incidents/_search?pretty'
  dead letters        curl -s '$URL/kubehunt-dead-letters/_search?pretty'
  rank a hunt         .venv/bin/kubehunt report secret-access --top 30
  search a hunt       .venv/bin/kubehunt search pod-exec; .venv/bin/kubehunt incidents --confirmed
  Kibana              .venv/bin/kubehunt kibana import --kibana-url URL (or kibana export --out FILE)
TXT
