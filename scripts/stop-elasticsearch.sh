#!/usr/bin/env bash
# Stop a node started by scripts/start-elasticsearch.sh and remove its run dir.
#
# usage: scripts/stop-elasticsearch.sh [--port N] [--timeout SECONDS] [--keep-data]
#   --port N           the node's HTTP port (default 9200)
#   --timeout SECONDS  how long to wait after SIGTERM before SIGKILL (default 60)
#   --keep-data        keep the run dir (data, certs, logs), for start-elasticsearch.sh --keep-data
# environment: TUNNELHOUND_ES_RUN_DIR as for start-elasticsearch.sh (default /tmp/tunnelhound-es-PORT)
# Exits 0 when no node of ours is running on that port.
set -euo pipefail

port=9200
timeout=60
keep_data=0

die() {
  echo "stop-elasticsearch: $*" >&2
  exit 1
}
log() { echo "stop-elasticsearch: $*" >&2; }

while (($#)); do
  case "$1" in
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --keep-data) keep_data=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
  die "bad --port: $port"
fi
[[ $timeout =~ ^[0-9]+$ ]] || die "bad --timeout: $timeout"

run_dir=${TUNNELHOUND_ES_RUN_DIR:-/tmp/tunnelhound-es-${port}}
pid_file="${run_dir}/elasticsearch.pid"

# Never race a start on the same port.
lock="/tmp/tunnelhound-es-${port}.lock"
if [ -e "$lock" ]; then
  exec 9<"$lock" # read-only: flock needs no more, and it may belong to another user
else
  exec 9>"$lock"
fi
flock 9

# Only a JVM running Elasticsearch with this run dir's config is ours to stop.
is_our_node() { # pid
  local cmdline
  [ -r "/proc/$1/cmdline" ] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline")
  [[ $cmdline == *org.elasticsearch.bootstrap.Elasticsearch* ]] &&
    [[ $(tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null) == *"ES_PATH_CONF=${run_dir}/config"* ]]
}

pid=""
if [ -s "$pid_file" ]; then
  pid=$(cat "$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] || die "bad pid file ${pid_file}"
  if ! kill -0 "$pid" 2>/dev/null; then
    log "pid ${pid} from ${pid_file} is not running"
    pid=""
  elif ! is_our_node "$pid"; then
    die "pid ${pid} from ${pid_file} is not an Elasticsearch node of ${run_dir}; not stopping it"
  fi
fi

if [ -n "$pid" ]; then
  log "stopping pid ${pid} (port ${port})"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  log "stopped"
else
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${port}/_cluster/health" || true)
  if [ "$code" != 000 ]; then
    log "something answers on port ${port} but ${pid_file} names no running node: left alone"
  else
    log "no node running on port ${port}"
  fi
fi

if ((keep_data)); then
  rm -f "$pid_file"
else
  rm -rf "$run_dir"
fi
