#!/usr/bin/env bash
# run.sh [SECONDS] [TARGET…] : runs each fuzz target for SECONDS (default 3600), two at a time,
# at the lowest priority, keeping the corpus in fuzz/corpus/TARGET and any crash in
# fuzz/artifacts/TARGET. Needs cargo-fuzz (cargo install cargo-fuzz); runs on stable Rust.
# The corpus is kept in git as corpus.tar.zst (minimised with -merge=1), unpacked here when
# fuzz/corpus is absent; after a run, refresh it with
#   tar --sort=name --mtime=@0 --owner=0 --group=0 -cf - corpus | zstd -12 -o corpus.tar.zst -f
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-3600}; shift || true
targets=("$@")
((${#targets[@]})) || targets=(layer_apply dockerfile config repo_objects registry_documents)
[[ -d corpus ]] || zstd -dc corpus.tar.zst | tar -xf -
export RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-fuzz-target}
run() {
  mkdir -p "corpus/$1" "artifacts/$1"
  nice -n 19 cargo fuzz run -O --sanitizer none "$1" "corpus/$1" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 -artifact_prefix="artifacts/$1/" \
    >"artifacts/$1.log" 2>&1 || echo "$1: stopped with findings, see fuzz/artifacts/$1"
  tail -3 "artifacts/$1.log"
}
i=0
for t in "${targets[@]}"; do
  run "$t" &
  i=$((i + 1))
  if ((i % 2 == 0)); then wait; fi
done
wait
