#!/usr/bin/env bash
# quickstart.sh : builds Lifeboat and runs its main job on the embedded default, on a fresh
# Debian 12 machine (as root): a sample "library website" service is run, snapshotted into the
# default local repository, lost in a simulated outage (container and volume removed), and
# restored with one command. Uses its own root under /var/tmp, never a real installation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
cargo build --release --locked
lifeboat="$CARGO_TARGET_DIR/release/lifeboat"

work=${LIFEBOAT_QUICKSTART_DIR:-/var/tmp/lifeboat-quickstart}
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
if [[ -d "$LIFEBOAT_ROOT/containers" ]]; then
  ids=$("$lifeboat" ps -aq)
  [[ -z $ids ]] || "$lifeboat" rm -f $ids >/dev/null
fi
rm -rf "$work"
mkdir -p "$work"
port=${LIFEBOAT_QUICKSTART_PORT:-8080}
say() { printf '\n== %s\n' "$*"; }

say "An image for the library website: busybox httpd serving /www"
site="$work/site"
mkdir -p "$site/bin" "$site/www"
cp "$(command -v busybox)" "$site/bin/busybox"
for applet in $(busybox --list); do [[ $applet == busybox ]] || ln -s busybox "$site/bin/$applet"; done
echo '<h1>City Library</h1><p>Opening hours: 9-17</p>' >"$site/www/index.html"
"$lifeboat" import "$site" library-website:1 \
  --change 'CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' --change 'EXPOSE 80' >/dev/null
"$lifeboat" images

say "Run it, with its content in a named volume, published on port $port"
"$lifeboat" run -d --name website -p "127.0.0.1:$port:80" -v website-content:/www \
  --restart unless-stopped --health-cmd "wget -q -O /dev/null http://127.0.0.1/" library-website:1 >/dev/null
"$lifeboat" exec website sh -c 'echo "<p>New this week: 42 books</p>" >> /www/index.html'
sleep 0.3
"$lifeboat" ps
curl -fsS "http://127.0.0.1:$port/"

say "Snapshot it into the default repository ($LIFEBOAT_ROOT/repository)"
"$lifeboat" snapshot website
"$lifeboat" snapshots

say "Outage: the container and its volume are gone"
"$lifeboat" rm -f website >/dev/null
"$lifeboat" volume rm website-content >/dev/null
if curl -fsS --max-time 2 "http://127.0.0.1:$port/" >/dev/null 2>&1; then echo "site still answering?" >&2; exit 1; fi
echo "http://127.0.0.1:$port/ does not answer"

say "One command brings it back"
"$lifeboat" restore website
curl -fsS "http://127.0.0.1:$port/" | tee "$work/page.html"
grep -q "42 books" "$work/page.html" && echo "The site is back, with the change made after it was first started."
"$lifeboat" rm -f website >/dev/null
