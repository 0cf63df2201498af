#!/usr/bin/env bash
# test.sh : the whole test suite on a fresh Debian 12 machine (as root).
# Installs what the tests need, starts the real peers on loopback/private sockets, then runs
# formatting and lint checks, the unit tests and the integration tests. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}

peers=${LIFEBOAT_PEERS_DIR:-/var/tmp/lifeboat-peers}
eval "$(scripts/peers.sh start "$peers")"
trap 'scripts/peers.sh stop "$peers"' EXIT

# Peers are required: a missing one fails its tests instead of skipping them.
export LIFEBOAT_TEST_REQUIRE_PEERS=1
export LIFEBOAT_TEST_TMP=${LIFEBOAT_TEST_TMP:-/var/tmp/lifeboat-tests}
mkdir -p "$LIFEBOAT_TEST_TMP"

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# The real services' images (a Debian base and packages, built by Lifeboat itself), cached
# in /var/tmp: rebuilt only when tests/images changes.
cargo build --locked
export LIFEBOAT_TEST_IMAGES=${LIFEBOAT_TEST_IMAGES:-/var/tmp/lifeboat-images}
LIFEBOAT="$CARGO_TARGET_DIR/debug/lifeboat" tests/images/build.sh "$LIFEBOAT_TEST_IMAGES"
cargo test --locked --all-targets
