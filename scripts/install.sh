#!/usr/bin/env bash
# install.sh : builds Lifeboat and installs it on this host (as root), idempotently:
#   /usr/local/bin/lifeboat, man pages, bash/zsh/fish completions, the systemd units and tmpfiles
#   entry, and /etc/lifeboat/ with an example configuration (an existing lifeboat.toml is
#   never touched). Enabling the agent stays your decision:
#     systemctl enable --now lifeboat-agent
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
cargo build --release --locked
prefix=${PREFIX:-/usr/local}

install -D -m 0755 "$CARGO_TARGET_DIR/release/lifeboat" "$prefix/bin/lifeboat"
"$prefix/bin/lifeboat" manpages "$prefix/share/man/man1" >/dev/null
install -d /usr/share/bash-completion/completions /usr/share/zsh/vendor-completions
"$prefix/bin/lifeboat" completions bash >/usr/share/bash-completion/completions/lifeboat
"$prefix/bin/lifeboat" completions zsh >/usr/share/zsh/vendor-completions/_lifeboat
install -d /usr/share/fish/vendor_completions.d
"$prefix/bin/lifeboat" completions fish >/usr/share/fish/vendor_completions.d/lifeboat.fish

for unit in systemd/*.service; do
  sed "s#/usr/local/bin/lifeboat#$prefix/bin/lifeboat#g" "$unit" >"/etc/systemd/system/$(basename "$unit")"
done
install -D -m 0644 systemd/lifeboat.tmpfiles.conf /usr/lib/tmpfiles.d/lifeboat.conf
install -d -m 0700 /etc/lifeboat /var/lib/lifeboat
install -m 0600 config/lifeboat.toml /etc/lifeboat/lifeboat.toml.example
if [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/lifeboat.conf
fi
echo "installed $("$prefix/bin/lifeboat" --version) to $prefix/bin"
echo "next: write /etc/lifeboat/lifeboat.toml (see lifeboat.toml.example), then"
echo "      lifeboat config check && lifeboat up && systemctl enable --now lifeboat-agent"
