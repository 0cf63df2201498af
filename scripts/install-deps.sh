#!/usr/bin/env bash
# install-deps.sh [--test] : installs what Lifeboat needs on Debian 12, idempotently.
#   always:  a C toolchain, pkg-config, libseccomp, busybox-static (the sample service's base)
#   --test:  the real peers the tests run against (skopeo, umoci, podman, runc, docker.io,
#            docker-registry)
set -euo pipefail

need=(build-essential pkg-config libseccomp-dev busybox-static tini ca-certificates curl)
if [[ "${1:-}" == "--test" ]]; then
  need+=(skopeo umoci podman runc docker.io zstd b3sum tar util-linux systemd man-db docker-registry apache2-utils debootstrap)
fi

missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
