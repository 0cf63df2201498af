#!/usr/bin/env bash
# build.sh [OUT] : the images of the real-stack tests, as OCI archives in OUT (default
# /var/tmp/lifeboat-images): a Debian 12 base made with debootstrap from this host's apt
# sources, and the services of tests/images/*/Dockerfile built on it by Lifeboat itself.
# Cached: nothing is rebuilt while this script and the Dockerfiles are unchanged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out=${1:-/var/tmp/lifeboat-images}
lifeboat=${LIFEBOAT:-$here/../../target/debug/lifeboat}
mkdir -p "$out"
stamp=$(cat "$here/build.sh" "$here"/*/Dockerfile | sha256sum | cut -c1-16)
if [[ -f "$out/stamp" && "$(cat "$out/stamp")" == "$stamp" ]]; then
  exit 0
fi
rm -f "$out/stamp" "$out"/*.tar
root="$out/root"
rm -rf "$root" "$out/rootfs"
lb() { "$lifeboat" --root "$root" --run-root "$out/run" "$@"; }

mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
if [[ -z "$mirror" ]]; then
  mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
fi
echo "debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase bookworm "$out/rootfs" "$mirror" >"$out/debootstrap.log" 2>&1 \
  || { tail -20 "$out/debootstrap.log" >&2; exit 1; }
# The host's apt sources, so builds install from the same mirror.
cp /etc/apt/sources.list.d/debian.sources "$out/rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
lb import "$out/rootfs" debian:12 --change 'CMD ["/bin/bash"]' >/dev/null
rm -rf "$out/rootfs"
for dir in "$here"/*/; do
  name=$(basename "$dir")
  echo "building $name" >&2
  lb build -q -t "lifeboat-test/$name:1" "$dir" >/dev/null
  lb save -o "$out/$name.tar" "lifeboat-test/$name:1"
done
lb save -o "$out/debian.tar" debian:12
rm -rf "$root" "$out/run"
echo "$stamp" > "$out/stamp"
