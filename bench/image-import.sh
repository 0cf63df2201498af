#!/usr/bin/env bash
# bench/image-import.sh : import of the ~1 GB reference tree as one layer, and unpacking it
# again, for Lifeboat vs umoci (repack/unpack) and plain tar (the floor), in the same run.
# Run by hand as root; results go to docs/benchmarks.md. Needs ../shared/bench (the dataset
# generator), umoci, GNU time.
#   bench/image-import.sh [WORKDIR] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench}
runs=${2:-3}
shared=${LIFEBOAT_SHARED:-$here/../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
mkdir -p "$work"
data="$work/data"
[[ -d $data ]] || "$shared/bench/make-dataset.sh" "$data" 42
sync

# time_it LABEL CMD... : wall seconds and peak RSS (MB) of CMD, appended to results.
results="$work/import-results.txt"
: >"$results"
time_it() {
  local label=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  # Warm the source tree back into the page cache so every tool starts equal.
  tar -C "$data" -cf - . >/dev/null
  /usr/bin/time -f "%e %M" -o "$work/.time" "$@" >/dev/null
  read -r secs kb <"$work/.time"
  printf '%s %s %d\n' "$label" "$secs" $((kb / 1024)) | tee -a "$results"
}

for i in $(seq 1 "$runs"); do
  rm -rf "$work/lb-root" "$work/lb-out" "$work/umoci" "$work/tar-out" "$work/floor.tar" "$work/floor.tar.gz"
  time_it lifeboat-import "$lb" --root "$work/lb-root" import "$data" bench:1
  time_it lifeboat-unpack "$lb" --root "$work/lb-root" image unpack bench:1 "$work/lb-out"

  mkdir -p "$work/umoci"
  umoci init --layout "$work/umoci/layout"
  umoci new --image "$work/umoci/layout:base"
  umoci unpack --image "$work/umoci/layout:base" "$work/umoci/bundle" >/dev/null
  cp -a "$data/." "$work/umoci/bundle/rootfs/"
  time_it umoci-repack umoci repack --image "$work/umoci/layout:bench" "$work/umoci/bundle"
  time_it umoci-unpack umoci unpack --image "$work/umoci/layout:bench" "$work/umoci/out"

  time_it tar-create tar -C "$data" -cf "$work/floor.tar" .
  time_it tar-gzip sh -c "tar -C '$data' -cf - . | gzip -1 > '$work/floor.tar.gz'"
  mkdir -p "$work/tar-out"
  time_it tar-extract tar -C "$work/tar-out" -xf "$work/floor.tar"
done

echo "layer sizes: lifeboat $(du -sb "$work/lb-root/images/blobs" | cut -f1) umoci $(du -sb "$work/umoci/layout/blobs" | cut -f1)"
echo "medians (s, MB RSS):"
for label in lifeboat-import umoci-repack tar-create tar-gzip lifeboat-unpack umoci-unpack tar-extract; do
  grep "^$label " "$results" | sort -k2 -n | awk -v l="$label" '{a[NR]=$2; m[NR]=$3} END {i=int((NR+1)/2); printf "%-16s %6.2f s %5d MB\n", l, a[i], m[i]}'
done
