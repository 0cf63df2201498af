#!/usr/bin/env bash
# bench/snapshot.sh : Lifeboat's repository against restic and borg on the reference data
# (../shared/bench: make-dataset.sh seed 42, mutate.sh seed 1), in one run: cold snapshot,
# incremental after the nightly change, restore to an empty directory, check with a full data
# read; wall time, peak RSS, repository size, bytes added by the incremental. Lifeboat snapshots
# a running container whose volume holds the tree; restic and borg back up the same directory.
# Run by hand as root; results go to docs/benchmarks.md.
#   bench/snapshot.sh [WORKDIR]
# CACHE=cold (default) drops the page cache before every step, so reads come from disk;
# CACHE=warm reads the data tree once before each backup instead, so the figures show the
# tools' own speed (as the reference figures in ../shared/bench/README.md do).
# FS=loop (default) runs everything on a fresh ext4 filesystem with a journal, as hosts
# usually have, in a 16 GiB image file beside WORKDIR: the root filesystem of the machine
# these figures come from has no journal, and there ext4 scans past every recently deleted
# inode on each file it creates, a cost that swamps what the tools themselves do when they
# write 20,000 files. FS=host runs on WORKDIR's own filesystem.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$here/../shared/bench" && pwd)
work=${1:-/var/tmp/lbbench-snapshot}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
for p in restic borgbackup time; do dpkg -s "$p" >/dev/null 2>&1 || apt-get install -y -qq "$p" >/dev/null; done
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
if [[ -d "$LIFEBOAT_ROOT/containers" ]]; then
  ids=$("$lb" ps -aq); [[ -z $ids ]] || "$lb" rm -f $ids >/dev/null
fi
if mountpoint -q "$work"; then umount "$work"; fi
rm -rf "$work"; mkdir -p "$work"
if [[ ${FS:-loop} == loop ]]; then
  # Inode tables and journal initialised now: left to ext4's lazy-init thread, they are
  # written in the background during the first minutes, under whichever tool runs first.
  rm -f "$work.img"; truncate -s 16G "$work.img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work.img"
  mount -o loop "$work.img" "$work"
  # The shims may still be leaving the filesystem when rm returns: retry, then detach lazily.
  trap 'cd /; "$lb" rm -f svc r1 >/dev/null 2>&1
        for _ in 1 2 3 4 5; do umount "$work" 2>/dev/null && break; sleep 1; done
        if mountpoint -q "$work"; then umount -l "$work"; fi
        rm -f "$work.img"' EXIT
fi
ref=/var/tmp/lbbench/data
[[ -d $ref ]] || "$shared/make-dataset.sh" "$ref" 42 >/dev/null

# The service: busybox, its data in a volume.
site="$work/site"; mkdir -p "$site/bin"
cp "$(command -v busybox)" "$site/bin/busybox"; ln -s busybox "$site/bin/sleep"; ln -s busybox "$site/bin/sh"
"$lb" import "$site" bench:1 >/dev/null
"$lb" volume create data >/dev/null
data="$LIFEBOAT_ROOT/volumes/data/_data"
cp -a "$ref/." "$data/"
"$lb" run -d --name svc -v data:/srv bench:1 sleep 100000 >/dev/null

echo "bench-password" >"$work/pw"
export RESTIC_PASSWORD=bench-password BORG_PASSPHRASE=bench-password BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
"$lb" repo init --repo "$work/lb" --password-file "$work/pw" >/dev/null
restic init -q -r "$work/restic"
borg init -e repokey-blake2 "$work/borg" 2>/dev/null
borg init -e repokey-blake2 "$work/borg32" 2>/dev/null

cache=${CACHE:-cold}
# The reference database is a file of 8 KiB pages with no real InnoDB header: Lifeboat is told
# its page size, as a user with such a file would (real SQLite, InnoDB and PostgreSQL files are
# known by their headers). PAGES= (empty) measures plain content-defined chunking instead.
pages=(); [[ -n ${PAGES-'*.ibd=8k'} ]] && pages=(--pages "${PAGES-*.ibd=8k}")
measure() {  # LABEL CMD… → prints "LABEL seconds peakMB"
  local label=$1; shift
  sync
  if [[ $cache == cold ]]; then echo 3 >/proc/sys/vm/drop_caches; else tar -C "$data" -cf - . >/dev/null; fi
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  read -r secs kb <"$work/time"
  printf '%-34s %7.2f s %6d MB\n' "$label" "$secs" $((kb / 1024))
}
size() { du -sb "$1" | cut -f1; }

echo "== cold"
measure "lifeboat snapshot" "$lb" snapshot svc --no-image "${pages[@]}" --repo "$work/lb" --password-file "$work/pw"
measure "restic backup" restic backup -q -r "$work/restic" "$data"
measure "borg create (lz4)" borg create --compression lz4 "$work/borg::a" "$data"
measure "borg create (zstd,3, 32 KiB)" borg create --compression zstd,3 --chunker-params buzhash,12,20,15,4095 "$work/borg32::a" "$data"
declare -A before
for r in lb restic borg borg32; do before[$r]=$(size "$work/$r"); done
printf 'repository size: lifeboat %d MB, restic %d MB, borg lz4 %d MB, borg zstd/32K %d MB\n' \
  $((before[lb] / 1000000)) $((before[restic] / 1000000)) $((before[borg] / 1000000)) $((before[borg32] / 1000000))

"$shared/mutate.sh" "$data" 1 >/dev/null
echo "== incremental after mutate.sh"
measure "lifeboat snapshot" "$lb" snapshot svc --no-image "${pages[@]}" --repo "$work/lb" --password-file "$work/pw"
measure "restic backup" restic backup -q -r "$work/restic" "$data"
measure "borg create (lz4)" borg create --compression lz4 "$work/borg::b" "$data"
measure "borg create (zstd,3, 32 KiB)" borg create --compression zstd,3 --chunker-params buzhash,12,20,15,4095 "$work/borg32::b" "$data"
for r in lb restic borg borg32; do
  printf 'bytes added by the incremental, %s: %.1f MB\n' "$r" "$(awk -v a="${before[$r]}" -v b="$(size "$work/$r")" 'BEGIN {print (b - a) / 1e6}')"
done

echo "== restore to an empty directory"
measure "lifeboat restore" "$lb" restore svc --as r1 --no-start --repo "$work/lb" --password-file "$work/pw"
measure "restic restore" restic restore -q -r "$work/restic" latest --target "$work/restic-out"
mkdir -p "$work/borg-out"
measure "borg extract (lz4)" bash -c "cd '$work/borg-out' && borg extract '$work/borg::b'"
h1=$("$shared/treehash.sh" "$data"); h2=$("$shared/treehash.sh" "$LIFEBOAT_ROOT/volumes/r1-data/_data")
[[ $h1 == "$h2" ]] && echo "lifeboat restore is byte-identical" || { echo "lifeboat restore DIFFERS" >&2; exit 1; }

echo "== check with a full data read"
measure "lifeboat check --read-data" "$lb" check --read-data --repo "$work/lb" --password-file "$work/pw"
measure "restic check --read-data" restic check -q --read-data -r "$work/restic"
measure "borg check --verify-data (lz4)" borg check --verify-data "$work/borg"
"$lb" rm -f svc r1 >/dev/null 2>&1 || true
