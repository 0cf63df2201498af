#!/usr/bin/env bash
# bench/instant.sh : outage to first correct page, `restore --instant` against a full restore.
# The quick start's "library website" (busybox httpd, SIZE_MB of 1 MiB catalogue files in a
# named volume) is snapshotted to a local repository and to an S3 server (s3s-fs) that runs in
# a network namespace of its own behind a 50 MB/s link (tc tbf on both ends of a veth pair: a
# real link, not loopback). Then, per repository: the container and its volume are removed (the
# image stays) and we time, from the restore command's start,
#   - a full restore until the page answers correctly;
#   - an instant restore until the page answers correctly, and until its volume is whole
#     (hydrated; the one switch to plain volumes is timed separately).
# Run by hand as root; results go to docs/benchmarks.md.
#   bench/instant.sh [WORKDIR] [SIZE_MB] [RATE]      (defaults: /var/tmp/lbbench-instant 1024 400mbit)
#   REPOS="s3-50MBps" bench/instant.sh …            times only those repositories
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench-instant}
size_mb=${2:-1024}
rate=${3:-400mbit}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
ns=lbbench-s3
cleanup() {
  [[ -d "$LIFEBOAT_ROOT/containers" ]] && { ids=$("$lb" ps -aq); [[ -z $ids ]] || "$lb" rm -f $ids >/dev/null; }
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del lbb-h 2>/dev/null || true
}
cleanup
trap cleanup EXIT
rm -rf "$work"; mkdir -p "$work"

# The S3 server behind its link.
ip netns add "$ns"
ip link add lbb-h type veth peer name lbb-n
ip link set lbb-n netns "$ns"
ip addr add 10.231.7.1/30 dev lbb-h; ip link set lbb-h up
ip netns exec "$ns" ip addr add 10.231.7.2/30 dev lbb-n
ip netns exec "$ns" ip link set lbb-n up
ip netns exec "$ns" ip link set lo up
tc qdisc add dev lbb-h root tbf rate "$rate" burst 256kb latency 200ms
ip netns exec "$ns" tc qdisc add dev lbb-n root tbf rate "$rate" burst 256kb latency 200ms
mkdir -p "$work/s3/lifeboat-bench"
ip netns exec "$ns" s3s-fs --host 10.231.7.2 --port 9100 --access-key bench-ak --secret-key bench-sk "$work/s3" \
  >"$work/s3.log" 2>&1 &
printf '[default]\naws_access_key_id = bench-ak\naws_secret_access_key = bench-sk\n' >"$work/s3.credentials"
for _ in $(seq 1 50); do curl -s -o /dev/null http://10.231.7.2:9100/ && break; sleep 0.1; done

source "$here/bench/site.sh"
site_image "$lb" "$work/site" library-website:1
port=18090
# --init: httpd as PID 1 would ignore the stop signal and make every stop wait 10 s.
"$lb" run -d --init --name website -p "127.0.0.1:$port:80" -v website-content:/www library-website:1 >/dev/null
vol="$LIFEBOAT_ROOT/volumes/website-content/_data"
mkdir -p "$vol/catalogue"
for i in $(seq 1 "$size_mb"); do head -c 1048576 /dev/urandom >"$vol/catalogue/part-$i"; done
echo '<p>42 books</p>' >>"$vol/index.html"

head -c 32 /dev/urandom | base64 >"$work/pw"
declare -A repos=(
  [local]="$work/repo"
  [s3-50MBps]="s3://lifeboat-bench/site?endpoint=http://10.231.7.2:9100&path-style=true&region=us-east-1&credentials-file=$work/s3.credentials"
)
for name in local s3-50MBps; do
  "$lb" repo init --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
  "$lb" snapshot website --no-image --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
done
# The hot set: what the page needs, as a drill records it, carried by the next snapshot.
"$lb" drill website --http http://localhost:80/ --repo "$work/repo" --password-file "$work/pw" >/dev/null
for name in local s3-50MBps; do
  "$lb" snapshot website --no-image --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
done

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
outage() { "$lb" rm -f website >/dev/null; "$lb" volume rm website-content >/dev/null; sync; echo 3 >/proc/sys/vm/drop_caches; }
page() { until curl -fsS "http://127.0.0.1:$port/" 2>/dev/null | grep -q "42 books"; do sleep 0.01; done; }
echo "reference site: $size_mb MiB in a volume; S3 link: $rate"
for name in ${REPOS:-local s3-50MBps}; do
  outage
  t0=$(now)
  "$lb" restore website --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
  page
  full=$(since "$t0")
  outage
  t0=$(now)
  "$lb" restore website --instant --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
  page
  first=$(since "$t0")
  id=$("$lb" ps -q --no-trunc --filter name=website)
  h="$LIFEBOAT_ROOT/containers/$id/hydration.json"
  until grep -qE '"phase": "(switching|done|failed)"' "$h"; do sleep 0.05; done
  hydrated=$(since "$t0")
  until grep -qE '"phase": "(done|failed)"' "$h"; do sleep 0.05; done
  grep -q '"phase": "done"' "$h" || { cat "$h"; exit 1; }
  switch=$(grep -o '"switch_ms": [0-9]*' "$h" | grep -o '[0-9]*$')
  echo "$name: full restore to first page ${full} s; instant: first page ${first} s, hydrated in ${hydrated} s, switch ${switch} ms"
done
