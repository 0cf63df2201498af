#!/usr/bin/env bash
# bench/browse.sh : looking into snapshots, Lifeboat against restic on the reference data
# (../shared/bench: make-dataset.sh seed 42, then mutate.sh seed 1 for a second snapshot), in
# one run, page cache warm, medians of ROUNDS (default 5) with the tools alternating:
#   - a recursive listing of one snapshot (lifeboat ls -R / restic ls, both long format);
#   - find of a name pattern across both snapshots (lifeboat find / restic find);
#   - dump of the 400 MiB database file to /dev/null (lifeboat dump / restic dump).
# Run by hand as root; results go to docs/benchmarks.md.
#   bench/browse.sh [WORKDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$here/../shared/bench" && pwd)
work=${1:-/var/tmp/lbbench-browse}
rounds=${ROUNDS:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
for p in restic time; do dpkg -s "$p" >/dev/null 2>&1 || apt-get install -y -qq "$p" >/dev/null; done
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
if [[ -d "$LIFEBOAT_ROOT/containers" ]]; then
  ids=$("$lb" ps -aq); [[ -z $ids ]] || "$lb" rm -f $ids >/dev/null
fi
rm -rf "$work"; mkdir -p "$work"
trap '"$lb" rm -f svc >/dev/null 2>&1 || true' EXIT
ref=/var/tmp/lbbench/data
[[ -d $ref ]] || "$shared/make-dataset.sh" "$ref" 42 >/dev/null

site="$work/site"; mkdir -p "$site/bin"
cp "$(command -v busybox)" "$site/bin/busybox"; ln -s busybox "$site/bin/sleep"; ln -s busybox "$site/bin/sh"
"$lb" import "$site" bench:1 >/dev/null
"$lb" volume create data >/dev/null
data="$LIFEBOAT_ROOT/volumes/data/_data"
cp -a "$ref/." "$data/"
"$lb" run -d --name svc -v data:/srv bench:1 sleep 100000 >/dev/null
echo "bench-password" >"$work/pw"
export RESTIC_PASSWORD=bench-password LIFEBOAT_PASSWORD_FILE="$work/pw" LIFEBOAT_REPOSITORY="$work/lb"
"$lb" repo init >/dev/null
restic init -q -r "$work/restic"
"$lb" snapshot svc --no-image >/dev/null
restic backup -q -r "$work/restic" "$data"
"$shared/mutate.sh" "$data" 1 >/dev/null
"$lb" snapshot svc --no-image >/dev/null
restic backup -q -r "$work/restic" "$data"

db=$(cd "$data" && find . -type f -size +100M | head -1); db=${db#./}
files=$("$lb" ls -R svc:/srv | wc -l); rfiles=$(restic ls -r "$work/restic" latest | wc -l)
echo "entries listed: lifeboat $files, restic $rfiles; database file $db"

one() {  # CMD… → seconds
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  cat "$work/time"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A t m
steps=(ls find dump)
for ((i = 0; i < rounds; i++)); do
  for s in "${steps[@]}"; do
    case $s in
      ls) l=("$lb" ls -R -l svc:/srv); r=(restic ls -l -r "$work/restic" latest) ;;
      find) l=("$lb" find '*.php'); r=(restic find -r "$work/restic" '*.php') ;;
      dump) l=("$lb" dump "svc:/srv/$db"); r=(restic dump -r "$work/restic" latest "$data/$db") ;;
    esac
    # Alternate who goes first.
    if ((i % 2)); then order=(r l); else order=(l r); fi
    for who in "${order[@]}"; do
      if [[ $who == l ]]; then read -r secs kb < <(one "${l[@]}"); else read -r secs kb < <(one "${r[@]}"); fi
      t[$s-$who]+="$secs "; m[$s-$who]=$kb
    done
  done
done
printf '%-6s %12s %12s %8s %14s\n' step lifeboat restic ratio "peak RSS (MB)"
for s in "${steps[@]}"; do
  a=$(tr ' ' '\n' <<<"${t[$s-l]}" | grep . | median); b=$(tr ' ' '\n' <<<"${t[$s-r]}" | grep . | median)
  printf '%-6s %10.2f s %10.2f s %7.1fx %6d / %d\n' "$s" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {print (a > 0 ? b / a : 0)}')" \
    $((m[$s-l] / 1024)) $((m[$s-r] / 1024))
done
