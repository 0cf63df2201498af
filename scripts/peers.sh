#!/usr/bin/env bash
# peers.sh start|stop DIR : the real servers the integration tests talk to, on loopback or on
# private unix sockets only. `start` prints `export` lines for the test run to eval.
#   docker engine: private data/exec roots and socket, no iptables, no bridge (TESTING.md)
set -euo pipefail
cmd=${1:?usage: peers.sh start|stop DIR}
dir=${2:?usage: peers.sh start|stop DIR}
mkdir -p "$dir"

start_docker() {
  local d="$dir/docker"
  mkdir -p "$d"
  if [[ -S "$d/docker.sock" ]] && DOCKER_HOST="unix://$d/docker.sock" DOCKER_API_VERSION=1.41 docker version >/dev/null 2>&1; then
    return
  fi
  dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" -H "unix://$d/docker.sock" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --storage-driver overlay2 >"$d/log" 2>&1 &
  for _ in $(seq 1 60); do
    DOCKER_HOST="unix://$d/docker.sock" DOCKER_API_VERSION=1.41 docker version >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "dockerd did not start; its log:" >&2
  tail -20 "$d/log" >&2
  exit 1
}

case "$cmd" in
  start)
    start_docker
    echo "export DOCKER_HOST=unix://$dir/docker/docker.sock DOCKER_API_VERSION=1.41"
    ;;
  stop)
    if [[ -f "$dir/docker/pid" ]]; then
      kill "$(cat "$dir/docker/pid")" 2>/dev/null || true
    fi
    ;;
  *) echo "usage: peers.sh start|stop DIR" >&2; exit 2 ;;
esac
