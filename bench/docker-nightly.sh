#!/usr/bin/env bash
# bench/docker-nightly.sh : a service run by Docker, its ~1 GB volume the reference data
# (../shared/bench: make-dataset.sh seed 42, mutate.sh seed 1), backed up two ways in one run:
#   - Lifeboat: `lifeboat snapshot docker://svc` (Docker pauses it for the capture);
#   - the usual script of the Docker backup tools: stop the container, tar the volume into
#     `restic backup --stdin`, start it again.
# For the first backup and for the nightly after mutate.sh: the service's unavailable time
# (Lifeboat: the frozen window it reports; the script: from the stop to the start's return)
# and the whole backup's time. Run by hand as root with a Docker engine (DOCKER_HOST, e.g. the
# one scripts/peers.sh starts); results go to docs/benchmarks.md.
#   bench/docker-nightly.sh [WORKDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$here/../shared/bench" && pwd)
work=${1:-/var/tmp/lbbench-docker}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
for p in restic time; do dpkg -s "$p" >/dev/null 2>&1 || apt-get install -y -qq "$p" >/dev/null; done
docker version >/dev/null 2>&1 || { echo "no Docker engine answers (set DOCKER_HOST)" >&2; exit 1; }
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"

cleanup() { docker rm -f lbbench-svc >/dev/null 2>&1 || true; docker volume rm -f lbbench-data >/dev/null 2>&1 || true; }
cleanup; trap cleanup EXIT
rm -rf "$work"; mkdir -p "$work"
ref=/var/tmp/lbbench/data
[[ -d $ref ]] || "$shared/make-dataset.sh" "$ref" 42 >/dev/null

# The service: busybox under Docker, the reference tree in its volume.
site="$work/site"; mkdir -p "$site/bin"
cp "$(command -v busybox)" "$site/bin/busybox"; ln -s busybox "$site/bin/sleep"; ln -s busybox "$site/bin/sh"
tar -C "$site" -cf "$work/site.tar" .
docker import "$work/site.tar" lbbench:1 >/dev/null
docker volume create lbbench-data >/dev/null
data=$(docker volume inspect -f '{{.Mountpoint}}' lbbench-data)
cp -a "$ref/." "$data/"
docker run -d --name lbbench-svc --network none -v lbbench-data:/srv lbbench:1 sleep 100000 >/dev/null

echo "bench-password" >"$work/pw"
export RESTIC_PASSWORD=bench-password
"$lb" repo init --repo "$work/lb" --password-file "$work/pw" >/dev/null
restic init -q -r "$work/restic"

lifeboat_run() {  # LABEL → "LABEL: frozen X ms, total Y s"
  sync; echo 3 >/proc/sys/vm/drop_caches
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$("$lb" snapshot docker://lbbench-svc --no-image --pages '*.ibd=8k' --repo "$work/lb" --password-file "$work/pw" --format json)
  t1=$(date +%s.%N)
  printf '%-30s unavailable %8.3f s   whole backup %7.2f s\n' "lifeboat snapshot ($1)" \
    "$(jq -r '.stats.frozen_ms / 1000' <<<"$out")" "$(echo "$t1 - $t0" | bc)"
}
script_run() {  # LABEL → "LABEL: unavailable X s, whole backup Y s" (the same: it is down throughout)
  sync; echo 3 >/proc/sys/vm/drop_caches
  local t0 t1
  t0=$(date +%s.%N)
  docker stop -t 10 lbbench-svc >/dev/null
  tar -C "$data" -cf - . | restic backup -q -r "$work/restic" --stdin --stdin-filename data.tar
  docker start lbbench-svc >/dev/null
  t1=$(date +%s.%N)
  printf '%-30s unavailable %8.3f s   whole backup %7.2f s\n' "stop, tar, restic ($1)" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t1 - $t0" | bc)"
}
for p in jq bc; do dpkg -s "$p" >/dev/null 2>&1 || apt-get install -y -qq "$p" >/dev/null; done

echo "== first backup"
lifeboat_run first
script_run first
"$shared/mutate.sh" "$data" 1 >/dev/null
echo "== nightly after mutate.sh"
lifeboat_run nightly
script_run nightly
# The Lifeboat snapshot holds exactly the volume (checked by a restore beside it).
"$lb" restore lbbench-svc --as check --no-start --repo "$work/lb" --password-file "$work/pw" >/dev/null
h1=$("$shared/treehash.sh" "$data"); h2=$("$shared/treehash.sh" "$LIFEBOAT_ROOT/volumes/check-lbbench-data/_data")
[[ $h1 == "$h2" ]] && echo "lifeboat's snapshot is byte-identical to the volume" || { echo "lifeboat's snapshot DIFFERS" >&2; exit 1; }
"$lb" rm -f check >/dev/null
