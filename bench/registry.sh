#!/usr/bin/env bash
# bench/registry.sh : push and pull of a ~500 MB image to/from the loopback reference registry,
# Lifeboat vs skopeo (and podman pull, which also unpacks) on the same image, in one run.
# Each push goes to a fresh repository (no mounts: Lifeboat's record of blob sources is
# cleared); each pull goes into an empty store. Run by hand as root; results go to
# docs/benchmarks.md.
#   bench/registry.sh [WORKDIR] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench-registry}
runs=${2:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf "$work"; mkdir -p "$work"
if [[ -z ${LIFEBOAT_TEST_REGISTRY:-} ]]; then
  eval "$("$here/scripts/peers.sh" start /var/tmp/lifeboat-peers)"
fi
reg=$LIFEBOAT_TEST_REGISTRY
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"

# ~500 MB: the benchmark dataset's mix of small files and a database, scaled down.
N_SMALL=10000 DB_MIB=200 /work/shared/bench/make-dataset.sh "$work/data" 42 >/dev/null
du -sh "$work/data"
"$lb" import "$work/data" bench:1 >/dev/null
"$lb" save -o "$work/bench.tar" bench:1
size=$(du -sm "$work/bench.tar" | cut -f1)

P="$work/podman"; mkdir -p "$P/tmp"
printf '[containers]\nnetns="none"\n[engine]\nruntime="runc"\ntmp_dir="%s/tmp"\n' "$P" >"$P/containers.conf"
printf '[storage]\ndriver="overlay"\ngraphroot="%s/root"\nrunroot="%s/run"\n' "$P" "$P" >"$P/storage.conf"
export CONTAINERS_CONF="$P/containers.conf" CONTAINERS_STORAGE_CONF="$P/storage.conf"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lp=(); sp=(); ll=(); sl=(); pl=()
for i in $(seq 1 "$runs"); do
  rm -f "$LIFEBOAT_ROOT/registry-sources.json"
  t=$(now); "$lb" push -q bench:1 "$reg/lb-$i-$$/bench:1" >/dev/null; lp+=("$(since "$t")")
  # skopeo remembers where blobs live and would mount them from the previous run's repository.
  rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb "$HOME/.local/share/containers/cache/blob-info-cache-v1.boltdb"
  t=$(now); skopeo copy -q --dest-tls-verify=false "oci-archive:$work/bench.tar" "docker://$reg/sk-$i-$$/bench:1"; sp+=("$(since "$t")")
  sync; echo 3 >/proc/sys/vm/drop_caches
  t=$(now); "$lb" --root "$work/pull-$i" pull -q "$reg/lb-$i-$$/bench:1" >/dev/null; ll+=("$(since "$t")")
  t=$(now); skopeo copy -q --src-tls-verify=false "docker://$reg/sk-$i-$$/bench:1" "oci:$work/sk-pull-$i:bench"; sl+=("$(since "$t")")
  t=$(now); podman pull -q --tls-verify=false "$reg/sk-$i-$$/bench:1" >/dev/null; pl+=("$(since "$t")")
  podman rmi -f "$reg/sk-$i-$$/bench:1" >/dev/null
  rm -rf "$work/pull-$i" "$work/sk-pull-$i"
done
echo "image: ${size} MB (gzip layer), runs: $runs, medians:"
echo "  push: lifeboat $(median "${lp[@]}") s, skopeo $(median "${sp[@]}") s   (lifeboat: ${lp[*]}; skopeo: ${sp[*]})"
echo "  pull: lifeboat $(median "${ll[@]}") s (download, verify; unpacked on first use), skopeo $(median "${sl[@]}") s (download to an OCI layout), podman $(median "${pl[@]}") s (download + unpack)"
