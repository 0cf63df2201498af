#!/usr/bin/env bash
# quickstart.sh : builds Lifeboat and runs its main job on the embedded default, on a fresh
# Debian 12 machine (as root). Uses its own root under /var/tmp so it never touches a real
# installation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
cargo build --release --locked
lifeboat="$CARGO_TARGET_DIR/release/lifeboat"

work=${LIFEBOAT_QUICKSTART_DIR:-/var/tmp/lifeboat-quickstart}
rm -rf "$work"
mkdir -p "$work"
export LIFEBOAT_ROOT="$work/root"

echo "== A sample 'library website': busybox httpd and a page"
site="$work/site"
mkdir -p "$site/bin" "$site/www"
cp "$(command -v busybox)" "$site/bin/busybox"
for applet in $(busybox --list); do [[ $applet == busybox ]] || ln -s busybox "$site/bin/$applet"; done
echo '<h1>City Library</h1><p>Opening hours: 9-17</p>' >"$site/www/index.html"

echo "== Import it as an image"
"$lifeboat" import "$site" library-website:1 \
  --change 'CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' --change 'EXPOSE 80'
"$lifeboat" images
"$lifeboat" history library-website:1

echo "== Save it as an OCI archive and load it into an empty store"
"$lifeboat" save -o "$work/library-website.tar" library-website:1
LIFEBOAT_ROOT="$work/other-host" "$lifeboat" load -i "$work/library-website.tar"
LIFEBOAT_ROOT="$work/other-host" "$lifeboat" image unpack library-website:1 "$work/restored"
diff -r "$site" "$work/restored" && echo "restored tree is identical to the original"
