#!/usr/bin/env bash
# bench/wordpress.sh : the WordPress stack of the real-stack tests (Debian's wordpress and
# mariadb-server packages, tests/images/lamp; its secrets made at first start) measured as a
# user lives it:
#   - the frozen window of a nightly stack snapshot (mariadb recipe) while a client writes;
#   - outage (both containers and all three volumes removed) -> first correct front page,
#     with one command (`lifeboat restore db wp`), from a local repository;
#   - the same on a new host (an empty --root: image, volumes and containers all come from
#     the repository), from a local repository and from each S3 server on loopback.
# Page cache dropped before each restore; the time runs from `lifeboat restore` until the
# front page shows the last post written before the snapshot. Run by hand as root; results go
# to docs/benchmarks.md.
#   bench/wordpress.sh [WORKDIR] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench-wordpress}
runs=${2:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
LIFEBOAT="$lb" "$here/tests/images/build.sh" /var/tmp/lifeboat-images
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
cleanup_root() {  # ROOT: its containers removed, then the directory
  if [[ -d "$1/containers" ]]; then
    local ids; ids=$("$lb" --root "$1" ps -aq); [[ -z $ids ]] || "$lb" --root "$1" rm -f $ids >/dev/null
  fi
}
cleanup_root "$LIFEBOAT_ROOT"
rm -rf "$work"; mkdir -p "$work"
if [[ -z ${LIFEBOAT_TEST_S3S:-} ]]; then
  eval "$("$here/scripts/peers.sh" start /var/tmp/lifeboat-peers)"
fi

"$lb" load -i /var/tmp/lifeboat-images/lamp.tar >/dev/null
img=lifeboat-test/lamp:1
port=18081
"$lb" run -d --name db -u mysql -v wpdb:/var/lib/mysql -p "127.0.0.1:$port:8080" \
  --health-cmd 'mariadb-admin ping --silent' --health-interval 1s "$img" sh -c \
  '[ -d /var/lib/mysql/mysql ] || mariadb-install-db --skip-test-db >/dev/null; exec mariadbd --bind-address=127.0.0.1' >/dev/null
until "$lb" ps | grep -q 'db.*(healthy)\|(healthy).*db'; do sleep 0.2; done
"$lb" exec -u 0 db mariadb -e "CREATE DATABASE wordpress; CREATE USER 'wordpress'@'127.0.0.1' IDENTIFIED BY 'db-secret'; GRANT ALL ON wordpress.* TO 'wordpress'@'127.0.0.1';"
"$lb" run -d --name wp --network container:db -e WORDPRESS_DB_PASSWORD=db-secret \
  -v wpconfig:/etc/wordpress -v wpcontent:/var/lib/wordpress/wp-content \
  "$img" sh -c "$(cat "$here/tests/fixtures/wordpress/start.sh")" >/dev/null
until "$lb" exec wp test -e /etc/wordpress/config-default.php 2>/dev/null; do sleep 0.2; done
"$lb" exec wp sh -c 'cat > /usr/local/bin/wp.php' <"$here/tests/fixtures/wordpress/wp.php"
wp() { "$lb" exec wp php /usr/local/bin/wp.php "$@"; }
wp install
for i in $(seq 1 200); do wp post "Catalogue news $i"; done
page() { curl -fsS -H 'Host: localhost' "http://127.0.0.1:$port/" 2>/dev/null; }
until page | grep -q "Catalogue news 200"; do sleep 0.2; done

head -c 32 /dev/urandom | base64 >"$work/pw"
prefix=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
declare -A repos=(
  [local]="$work/repo"
  [s3s-fs]="s3://lifeboat-test/bench-wp-$prefix?endpoint=$LIFEBOAT_TEST_S3S&path-style=true&region=us-east-1&credentials-file=$LIFEBOAT_TEST_S3S_CREDENTIALS"
  [moto]="s3://lifeboat-test/bench-wp-$prefix?endpoint=$LIFEBOAT_TEST_MOTO&path-style=true&region=us-east-1&credentials-file=$LIFEBOAT_TEST_MOTO_CREDENTIALS"
)
for name in local s3s-fs moto; do
  "$lb" repo init --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
done

report() {
  local what=$1; shift
  local sorted median
  sorted=$(printf '%s\n' "$@" | sort -n | tr '\n' ' ')
  median=$(printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$what: median ${median} (runs: $sorted)"
}

# The nightly snapshot while a client writes a post every few milliseconds: the stack's
# frozen window (the first snapshot copies everything; the later ones are the nightly case).
( i=0; while true; do i=$((i+1)); wp post "Live $i" >/dev/null 2>&1 || true; done ) &
writer=$!
frozen=()
for i in $(seq 0 "$runs"); do
  out=$("$lb" snapshot db wp --consistency db=mariadb --no-image --repo "$work/repo" --password-file "$work/pw" --format json)
  ms=$(printf '%s' "$out" | python3 -c 'import json,sys; print(max(s["stats"]["frozen_ms"] for s in json.load(sys.stdin)))')
  [[ $i == 0 ]] || frozen+=("$ms")
  sleep 2
done
report "stack frozen window (ms), mariadb recipe, client writing" "${frozen[@]}"
kill "$writer"; wait "$writer" 2>/dev/null || true
"$lb" rm -f wp db >/dev/null
"$lb" volume rm wpdb wpconfig wpcontent >/dev/null
# The state the restores must show: the writer's posts stop at the last snapshot.
"$lb" restore db wp --repo "$work/repo" --password-file "$work/pw" >/dev/null
until page >/dev/null; do sleep 0.2; done
last=$(page | sed -n 's|.*<h2>\(.*\)</h2>.*|\1|p' | head -1)
echo "front page after the last snapshot starts with: $last"
for name in s3s-fs moto; do
  "$lb" snapshot db wp --consistency db=mariadb --no-image --repo "${repos[$name]}" --password-file "$work/pw" >/dev/null
done
# One snapshot of the settled state in the local repository too, so every repository holds the same.
"$lb" snapshot db wp --consistency db=mariadb --no-image --repo "$work/repo" --password-file "$work/pw" >/dev/null

now() { date +%s.%N; }
timed_restore() {  # ROOT REPO -> seconds from the restore command to the front page
  local t0 t1
  sync; echo 3 >/proc/sys/vm/drop_caches
  t0=$(now)
  "$lb" --root "$1" restore db wp --repo "$2" --password-file "$work/pw" >/dev/null
  until page | grep -qF "$last"; do sleep 0.01; done
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}'
}
outage() {  # ROOT: both containers and their volumes gone
  "$lb" --root "$1" rm -f wp db >/dev/null
  "$lb" --root "$1" volume rm wpdb wpconfig wpcontent >/dev/null
}
times=()
for _ in $(seq 1 "$runs"); do
  outage "$LIFEBOAT_ROOT"
  times+=("$(timed_restore "$LIFEBOAT_ROOT" "$work/repo")")
done
report "outage -> first correct page (s), local repository" "${times[@]}"
"$lb" rm -f wp db >/dev/null
# The new hosts' roots are deleted only at the end: this machine's root filesystem has no
# journal, and ext4 there scans past every recently deleted inode when it creates a file, so
# a restore right after deleting the last one's 40,000 files would measure that instead.
for name in local s3s-fs moto; do
  times=()
  for i in $(seq 1 "$runs"); do
    fresh="$work/newhost-$name-$i"
    times+=("$(timed_restore "$fresh" "${repos[$name]}")")
    cleanup_root "$fresh"
  done
  report "new host (empty root) -> first correct page (s), $name" "${times[@]}"
done
sleep 1 # (a removed container's shim may still touch its root's lock file for a moment)
rm -rf "$work"/newhost-*
"$lb" restore db wp --repo "$work/repo" --password-file "$work/pw" >/dev/null 2>&1 || true
cleanup_root "$LIFEBOAT_ROOT"
