#!/usr/bin/env bash
# bench/restore-time.sh : time from outage to the sample site answering again. The quick
# start's "library website" (busybox httpd, its pages plus SIZE_MB of catalogue files in a named
# volume) is snapshotted to a local repository and to S3 (s3s-fs and moto on loopback); then,
# RUNS times per repository, the container and its volume are removed and we time
# `lifeboat restore website` until the page answers over HTTP. Run by hand as root; results
# go to docs/benchmarks.md.
#   bench/restore-time.sh [WORKDIR] [RUNS] [SIZE_MB]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench-restore}
runs=${2:-5}
size_mb=${3:-50}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
if [[ -d "$LIFEBOAT_ROOT/containers" ]]; then
  ids=$("$lb" ps -aq); [[ -z $ids ]] || "$lb" rm -f $ids >/dev/null
fi
rm -rf "$work"; mkdir -p "$work"
if [[ -z ${LIFEBOAT_TEST_S3S:-} ]]; then
  eval "$("$here/scripts/peers.sh" start /var/tmp/lifeboat-peers)"
fi

source "$here/bench/site.sh"
site_image "$lb" "$work/site" library-website:1
port=18080
"$lb" run -d --name website -p "127.0.0.1:$port:80" -v website-content:/www library-website:1 >/dev/null
# Catalogue files: 1 MiB each, incompressible, so the restore moves real bytes.
"$lb" exec website sh -c "mkdir -p /www/catalogue; for i in \$(seq 1 $size_mb); do head -c 1048576 /dev/urandom > /www/catalogue/part-\$i; done; echo '<p>42 books</p>' >> /www/index.html"

head -c 32 /dev/urandom | base64 >"$work/pw"
prefix=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
declare -A repos=(
  [local]="$work/repo"
  [s3s-fs]="s3://lifeboat-test/bench-$prefix?endpoint=$LIFEBOAT_TEST_S3S&path-style=true&region=us-east-1&credentials-file=$LIFEBOAT_TEST_S3S_CREDENTIALS"
  [moto]="s3://lifeboat-test/bench-$prefix?endpoint=$LIFEBOAT_TEST_MOTO&path-style=true&region=us-east-1&credentials-file=$LIFEBOAT_TEST_MOTO_CREDENTIALS"
)
for name in local s3s-fs moto; do
  "$lb" repo init --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
  "$lb" snapshot website --no-image --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
done

now() { date +%s.%N; }
report() {
  local what=$1; shift
  local sorted median
  sorted=$(printf '%s\n' "$@" | sort -n | tr '\n' ' ')
  median=$(printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$what: median ${median} s (runs: $sorted)"
}
timed_restore() {  # ROOT REPO -> seconds from the restore command to the page answering
  local t0 t1
  sync; echo 3 >/proc/sys/vm/drop_caches
  t0=$(now)
  "$lb" --root "$1" restore website --repo "$2" --password-file "$work/pw" >/dev/null
  until curl -fsS "http://127.0.0.1:$port/" 2>/dev/null | grep -q "42 books"; do sleep 0.01; done
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'
}
for name in local s3s-fs moto; do
  # Outage: the container and its volume are gone; the image is still on the host.
  times=()
  for _ in $(seq 1 "$runs"); do
    "$lb" rm -f website >/dev/null
    "$lb" volume rm website-content >/dev/null
    times+=("$(timed_restore "$LIFEBOAT_ROOT" "${repos[$name]}")")
  done
  report "restore from $name after an outage ($size_mb MiB volume)" "${times[@]}"
  # New host: an empty root, so the image comes from the repository too.
  "$lb" rm -f website >/dev/null
  "$lb" volume rm website-content >/dev/null
  times=()
  for i in $(seq 1 "$runs"); do
    fresh="$work/newhost-$i"
    times+=("$(timed_restore "$fresh" "${repos[$name]}")")
    "$lb" --root "$fresh" rm -f website >/dev/null
    rm -rf "$fresh"
  done
  report "restore from $name on a new host (empty root, image fetched too)" "${times[@]}"
  "$lb" restore website --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
done
"$lb" rm -f website >/dev/null
