#!/usr/bin/env bash
# Start a single-node Elasticsearch on 127.0.0.1 for tests and for trying Tunnelhound.
#
# The node comes from Maven Central's integ-test-zip distribution (no bundled JDK: it runs on
# the machine's Java 17+). It is fetched with `mvn dependency:get` (kept in ~/.m2), unpacked
# once into a cache dir, and started in the background as a non-root user (Elasticsearch
# refuses root) with a fresh data dir. Idempotent: a node already answering on the port is
# left as it is. See docs/elasticsearch.md.
#
# usage: scripts/start-elasticsearch.sh [--port N] [--version V] [--setting key=value]...
#                                       [--heap SIZE] [--timeout SECONDS] [--keep-data]
#                                       [--security]
#   --port N             HTTP port on 127.0.0.1 (default 9200)
#   --version V          Elasticsearch version (default 8.19.21; 8.x runs on Java 17)
#   --setting key=value  extra elasticsearch.yml setting, repeatable; a later one wins
#                        (e.g. --setting thread_pool.write.queue_size=1)
#   --heap SIZE          JVM heap, -Xms and -Xmx (default 512m)
#   --timeout SECONDS    how long to wait for yellow health (default 120)
#   --keep-data          reuse the data dir of a previous start on this port (a restart)
#                        instead of starting empty
#   --security           x-pack security on: TLS on HTTP with a CA made here, user `elastic`
#                        with password $TUNNELHOUND_ES_PASSWORD (default tunnelhound-es);
#                        the URL is then https://127.0.0.1:PORT and the CA is RUN_DIR/certs/ca.crt
# environment:
#   TUNNELHOUND_ES_VERSION   default for --version
#   TUNNELHOUND_ES_HOME      where the distribution is unpacked (default
#                            ~/.cache/tunnelhound/elasticsearch-V, or
#                            /var/cache/tunnelhound/elasticsearch-V when run as root)
#   TUNNELHOUND_ES_RUN_DIR   config, data, logs and pid file (default /tmp/tunnelhound-es-PORT)
#   TUNNELHOUND_ES_PASSWORD  the `elastic` user's password with --security
#   TUNNELHOUND_ES_USER      the user that runs the node when started as root (default tunnelhound-es)
#   TUNNELHOUND_M2_REPO      the local Maven repository (default ~/.m2/repository)
#   ES_JAVA_HOME             the JDK (default: the one `java` on PATH belongs to)
# On success prints the URL (http://127.0.0.1:PORT) on stdout and exits 0; on failure prints
# the log tail on stderr and exits non-zero.
set -euo pipefail

port=9200
version=${TUNNELHOUND_ES_VERSION:-8.19.21}
heap=512m
timeout=120
keep_data=0
security=0
settings=()

die() {
  echo "start-elasticsearch: $*" >&2
  exit 1
}
log() { echo "start-elasticsearch: $*" >&2; }

while (($#)); do
  case "$1" in
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --version=*) version=${1#*=}; shift ;;
    --setting) settings+=("${2:?--setting needs key=value}"); shift 2 ;;
    --setting=*) settings+=("${1#*=}"); shift ;;
    --heap) heap=${2:?--heap needs a value}; shift 2 ;;
    --heap=*) heap=${1#*=}; shift ;;
    --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --keep-data) keep_data=1; shift ;;
    --security) security=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
  die "bad --port: $port"
fi
[[ $timeout =~ ^[0-9]+$ ]] || die "bad --timeout: $timeout"
for s in "${settings[@]}"; do
  [[ $s == ?*=* ]] || die "bad --setting (want key=value): $s"
done

run_dir=${TUNNELHOUND_ES_RUN_DIR:-/tmp/tunnelhound-es-${port}}
password=${TUNNELHOUND_ES_PASSWORD:-tunnelhound-es}
if ((security)); then
  url="https://127.0.0.1:${port}"
else
  url="http://127.0.0.1:${port}"
fi
es_user=${TUNNELHOUND_ES_USER:-tunnelhound-es}
artifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${version}:zip"
if [ "$(id -u)" -eq 0 ]; then
  # /root is not readable by the node's user, so root's cache lives where it can read it.
  es_home=${TUNNELHOUND_ES_HOME:-/var/cache/tunnelhound/elasticsearch-${version}}
else
  es_home=${TUNNELHOUND_ES_HOME:-${HOME}/.cache/tunnelhound/elasticsearch-${version}}
fi

# HTTP status of GET _cluster/health on a base URL (000 when nothing answers). 401 is a
# node with security on that refused us: it answers all the same.
health_code() { # base_url [query] [max_time]
  local auth=()
  [[ $1 == https:* ]] && auth=(-k -u "elastic:${password}")
  curl -s "${auth[@]}" -o /dev/null -w '%{http_code}' --max-time "${3:-5}" \
    "$1/_cluster/health${2:-}" 2>/dev/null || true
}
answers() { # base_url
  local code
  code=$(health_code "$1")
  [ "$code" = 200 ] || [ "$code" = 401 ]
}

# One start at a time per port (parallel test processes may all call this script).
lock="/tmp/tunnelhound-es-${port}.lock"
if [ -e "$lock" ]; then
  exec 9<"$lock" # read-only: flock needs no more, and it may belong to another user
else
  exec 9>"$lock"
fi
flock 9

if answers "$url"; then
  echo "$url"
  exit 0
fi
if ((security)); then other="http://127.0.0.1:${port}"; else other="https://127.0.0.1:${port}"; fi
if answers "$other"; then
  die "a node already answers on ${other}; stop it first (scripts/stop-elasticsearch.sh --port ${port})"
fi

pid_file="${run_dir}/elasticsearch.pid"
alive_pid() {
  local pid
  [ -s "$pid_file" ] || return 1
  pid=$(cat "$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_ready() {
  local deadline=$((SECONDS + timeout)) code
  while ((SECONDS < deadline)); do
    code=$(health_code "$url" "?wait_for_status=yellow&timeout=5s" 10)
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then
      return 0
    fi
    if ! alive_pid >/dev/null; then
      # The launcher writes the pid file only once the node runs; before that, give it time.
      if [ -s "$pid_file" ]; then
        log "the node exited during start-up"
        return 1
      fi
    fi
    sleep 1
  done
  log "no yellow health on ${url} within ${timeout}s"
  return 1
}

fail_with_logs() {
  local f="${run_dir}/logs/tunnelhound-test.log"
  if [ -s "$f" ]; then
    echo "---- errors in $f" >&2
    grep -E '\]\[(ERROR|FATAL) *\]|^[A-Za-z0-9_.$]+(Exception|Error)(: |$)|^Caused by: ' "$f" | head -n 10 >&2 || true
    echo "---- last lines of $f" >&2
    grep -v -E '^\s+(at |\.\.\. [0-9]+ more)' "$f" | tail -n 15 >&2 || true
  fi
  f="${run_dir}/logs/stdout.log"
  if [ -s "$f" ]; then
    echo "---- last lines of $f" >&2
    grep -v -E '^\s+(at |\.\.\. [0-9]+ more)' "$f" | tail -n 10 >&2 || true
  fi
  exit 1
}

# A node of ours that is still starting up: wait for it rather than start a second one.
if pid=$(alive_pid); then
  log "node pid $pid is starting; waiting for it"
  wait_ready || fail_with_logs
  echo "$url"
  exit 0
fi

command -v java >/dev/null || [ -n "${ES_JAVA_HOME:-}" ] || die "no java on PATH and no ES_JAVA_HOME (Elasticsearch 8.x needs Java 17+)"
if [ -z "${ES_JAVA_HOME:-}" ]; then
  ES_JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
fi
export ES_JAVA_HOME

# ---- fetch (into ~/.m2) and unpack (once) ----
if [ ! -x "${es_home}/bin/elasticsearch" ]; then
  command -v mvn >/dev/null || die "mvn not found (needed to fetch ${artifact})"
  m2_repo=${TUNNELHOUND_M2_REPO:-${HOME}/.m2/repository}
  zip="${m2_repo}/org/elasticsearch/distribution/integ-test-zip/elasticsearch/${version}/elasticsearch-${version}.zip"
  if [ ! -s "$zip" ]; then
    log "fetching ${artifact} from Maven Central"
    t0=$SECONDS
    mvn -q -B dependency:get -Dartifact="$artifact" -Dtransitive=false >&2 ||
      die "mvn could not fetch ${artifact}"
    log "fetched in $((SECONDS - t0))s"
  fi
  [ -s "$zip" ] || die "${zip} missing after mvn dependency:get"
  command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
  log "unpacking into ${es_home}"
  tmp_home="${es_home}.tmp.$$"
  rm -rf "$tmp_home"
  mkdir -p "$tmp_home"
  unzip -q "$zip" -d "$tmp_home"
  [ -x "${tmp_home}/elasticsearch-${version}/bin/elasticsearch" ] || die "unexpected zip layout in ${zip}"
  chmod -R a+rX "$tmp_home"
  rm -rf "$es_home"
  mv "${tmp_home}/elasticsearch-${version}" "$es_home"
  rmdir "$tmp_home"
fi

# ---- the user that runs the node ----
run_as=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id -u "$es_user" >/dev/null 2>&1; then
    log "creating system user ${es_user}"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$es_user"
  fi
  run_as=(runuser -u "$es_user" --)
  "${run_as[@]}" test -r "${es_home}/lib/elasticsearch-${version}.jar" ||
    die "${es_user} cannot read ${es_home}: set TUNNELHOUND_ES_HOME to a readable place"
  "${run_as[@]}" test -x "${ES_JAVA_HOME}/bin/java" ||
    die "${es_user} cannot run ${ES_JAVA_HOME}/bin/java"
fi

# ---- run dir: config, data, logs, tmp, pid ----
if ((keep_data)) && [ -d "${run_dir}/data" ]; then
  rm -rf "${run_dir}/config" "${run_dir}/tmp" "$pid_file"
else
  rm -rf "$run_dir"
fi
mkdir -p "$run_dir"/{data,logs,tmp}
cp -r "${es_home}/config" "${run_dir}/config"
if ((security)); then
  # A CA and a node certificate for 127.0.0.1/localhost, kept with --keep-data so that
  # clients holding the CA still trust the restarted node.
  command -v openssl >/dev/null || die "openssl not found (needed for --security)"
  certs="${run_dir}/certs"
  if [ ! -s "${certs}/node.crt" ]; then
    mkdir -p "$certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tunnelhound test CA" \
      -keyout "${certs}/ca.key" -out "${certs}/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "${certs}/node.key" -out "${certs}/node.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"${certs}/ext.cnf"
    openssl x509 -req -in "${certs}/node.csr" -CA "${certs}/ca.crt" -CAkey "${certs}/ca.key" \
      -CAcreateserial -days 3650 -extfile "${certs}/ext.cnf" -out "${certs}/node.crt" 2>/dev/null
    rm -f "${certs}/node.csr" "${certs}/ext.cnf" "${certs}/ca.srl"
  fi
  mkdir -p "${run_dir}/config/certs"
  cp "${certs}/ca.crt" "${certs}/node.crt" "${certs}/node.key" "${run_dir}/config/certs/"
  chmod a+r "${certs}/ca.crt"
  # the built-in `elastic` user's password comes from the keystore's bootstrap.password
  printf '%s' "$password" | ES_PATH_CONF="${run_dir}/config" \
    "${es_home}/bin/elasticsearch-keystore" add -f -x bootstrap.password >/dev/null 2>&1 ||
    die "could not write bootstrap.password into the keystore"
fi
{
  echo "# written by scripts/start-elasticsearch.sh"
  echo "cluster.name: tunnelhound-test"
  echo "node.name: tunnelhound-es-${port}"
  echo "network.host: 127.0.0.1"
  echo "http.port: ${port}"
  echo "discovery.type: single-node"
  echo "path.data: ${run_dir}/data"
  echo "path.logs: ${run_dir}/logs"
  if ((security)); then
    echo "xpack.security.enabled: true"
    echo "xpack.security.http.ssl.enabled: true"
    echo "xpack.security.http.ssl.key: certs/node.key"
    echo "xpack.security.http.ssl.certificate: certs/node.crt"
    echo "xpack.security.http.ssl.certificate_authorities: [certs/ca.crt]"
    echo "xpack.security.authc.api_key.enabled: true"
  else
    echo "xpack.security.enabled: false"
  fi
  echo "cluster.routing.allocation.disk.threshold_enabled: false"
  echo "action.auto_create_index: true"
  echo "action.destructive_requires_name: false"
  for s in "${settings[@]}"; do
    key=${s%%=*}
    value=${s#*=}
    # the value is written as a YAML string unless it is a plain number or boolean
    if [[ $value =~ ^(-?[0-9]+(\.[0-9]+)?|true|false)$ ]]; then
      echo "${key}: ${value}"
    else
      value=${value//\\/\\\\}
      echo "${key}: \"${value//\"/\\\"}\""
    fi
  done
} >"${run_dir}/config/elasticsearch.yml"
# GC log and heap dumps into the run dir, not the working directory.
echo "-Xlog:gc*:file=${run_dir}/logs/gc.log:utctime,level,pid,tags:filecount=2,filesize=16m" \
  >"${run_dir}/config/jvm.options.d/tunnelhound.options"
echo "-XX:HeapDumpPath=${run_dir}/logs" >>"${run_dir}/config/jvm.options.d/tunnelhound.options"
sed -i '/^-Xlog:gc/d' "${run_dir}/config/jvm.options"
if ((${#run_as[@]})); then
  chown -R "${es_user}:" "$run_dir"
fi

# ---- start ----
log "starting Elasticsearch ${version} on ${url} (run dir ${run_dir})"
t0=$SECONDS
(
  cd "$run_dir"
  export ES_PATH_CONF="${run_dir}/config" ES_TMPDIR="${run_dir}/tmp"
  export ES_JAVA_OPTS="-Xms${heap} -Xmx${heap} ${ES_JAVA_OPTS:-}"
  unset JAVA_HOME
  # -d: the launcher daemonizes the node and returns once it has started (or failed)
  "${run_as[@]}" env ES_PATH_CONF="$ES_PATH_CONF" ES_TMPDIR="$ES_TMPDIR" ES_JAVA_OPTS="$ES_JAVA_OPTS" \
    ES_JAVA_HOME="$ES_JAVA_HOME" "${es_home}/bin/elasticsearch" -d -p "$pid_file" \
    >"${run_dir}/logs/stdout.log" 2>&1
) || {
  log "the launcher failed"
  fail_with_logs
}
wait_ready || fail_with_logs
log "up in $((SECONDS - t0))s, pid $(cat "$pid_file")"
if ((security)); then
  log "user elastic, password ${password}, CA ${run_dir}/certs/ca.crt"
fi
echo "$url"
