#!/usr/bin/env bash
# bench/build.sh : rebuild after a one-line change near the end of a Dockerfile (the seed
# article's: Debian 12 + pandoc + python3, then the article), Lifeboat vs podman build (buildah)
# vs docker build, same Dockerfile, same Debian base (debootstrap, cached), in one run. Each
# tool first builds once (not timed); then the article changes RUNS times and each rebuild is
# timed. Run by hand as root; results go to docs/benchmarks.md.
#   bench/build.sh [WORKDIR] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench-build}
runs=${2:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf "$work"; mkdir -p "$work/ctx"
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
if [[ -z ${DOCKER_HOST:-} ]]; then
  eval "$("$here/scripts/peers.sh" start /var/tmp/lifeboat-peers)"
fi

base=/var/tmp/lifeboat-cache/debian-12-minbase.tar
if [[ ! -f $base ]]; then
  mkdir -p /var/tmp/lifeboat-cache
  debootstrap --variant=minbase bookworm "$work/debian" http://deb.debian.org/debian >/dev/null
  tar -C "$work/debian" -cf "$base.partial" . && mv "$base.partial" "$base"
fi
"$lb" import "$base" debian:12 >/dev/null
P="$work/podman"; mkdir -p "$P/tmp"
printf '[containers]\nnetns="host"\n[engine]\nruntime="runc"\ntmp_dir="%s/tmp"\n' "$P" >"$P/containers.conf"
printf '[storage]\ndriver="overlay"\ngraphroot="%s/root"\nrunroot="%s/run"\n' "$P" "$P" >"$P/storage.conf"
export CONTAINERS_CONF="$P/containers.conf" CONTAINERS_STORAGE_CONF="$P/storage.conf"
podman import -q "$base" debian:12 >/dev/null
docker import "$base" debian:12 >/dev/null

cat >"$work/ctx/Dockerfile" <<'DF'
FROM debian:12
RUN apt-get update && apt-get install -y --no-install-recommends pandoc python3 && rm -rf /var/lib/apt/lists/*
ADD start.sh /start.sh
ADD article.md /article.md
EXPOSE 8888
CMD ["/bin/bash", "/start.sh"]
DF
printf '#!/bin/bash\nmkdir -p /www\npandoc /article.md -o /www/index.html\ncd /www && exec python3 -m http.server 8888\n' >"$work/ctx/start.sh"
cp /work/shared/seed/docker-article.txt "$work/ctx/article.md"

lb_build() { "$lb" build -q -t article:1 "$work/ctx" >/dev/null; }
podman_build() { podman build -q --network host -t article:1 "$work/ctx" >/dev/null; }
docker_build() { DOCKER_BUILDKIT=0 docker build -q --network host -t article:1 "$work/ctx" >/dev/null; }
for tool in lb podman docker; do "${tool}_build"; done   # first builds: fill each cache

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A t
for i in $(seq 1 "$runs"); do
  echo "edit $i" >>"$work/ctx/article.md"
  for tool in lb podman docker; do
    s=$(now); "${tool}_build"; t[$tool]+="$(since "$s") "
  done
done
echo "rebuild after editing the article (last ADD), $runs runs, medians:"
for tool in lb podman docker; do
  # shellcheck disable=SC2086
  echo "  $tool: $(median ${t[$tool]}) s   (${t[$tool]})"
done
