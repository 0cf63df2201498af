#!/usr/bin/env bash
# bench/agent-idle.sh : the agent's idle cost. Ten services (busybox httpd) run from a config with
# nightly snapshots, a drill and a check each (30 scheduled jobs, none due during the
# measurement); the agent runs for DURATION seconds (default 600) and we report its RSS and
# the CPU time it used. Run by hand as root; results go to docs/benchmarks.md.
#   bench/agent-idle.sh [WORKDIR] [DURATION]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench-agent}
duration=${2:-600}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"
if [[ -d "$LIFEBOAT_ROOT/containers" ]]; then
  ids=$("$lb" ps -aq); [[ -z $ids ]] || "$lb" rm -f $ids >/dev/null
fi
rm -rf "$work"; mkdir -p "$work"

source "$here/bench/site.sh"
site_image "$lb" "$work/site" site:1
head -c 32 /dev/urandom | base64 >"$work/pw"
"$lb" repo init --repo "$work/repo" --password-file "$work/pw" >/dev/null

conf="$work/lifeboat.toml"
cat >"$conf" <<TOML
[agent]
metrics_textfile = "$work/lifeboat.prom"
[repositories.local]
url = "$work/repo"
password_file = "$work/pw"
TOML
for i in $(seq 1 10); do
  cat >>"$conf" <<TOML
[services.site$i]
image = "site:1"
volumes = ["site$i-data:/www"]
[services.site$i.snapshot]
schedule = "0 3 * * *"
repositories = ["local"]
keep = { daily = 7, weekly = 4 }
[drills.site$i]
service = "site$i"
repository = "local"
schedule = "0 5 * * 1"
http = "http://localhost:80/"
[checks.site$i]
repository = "local"
schedule = "0 6 * * 0"
TOML
done
"$lb" config check --config "$conf"
"$lb" up --config "$conf" >/dev/null

"$lb" agent --config "$conf" 2>"$work/agent.log" &
pid=$!
sleep 2
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu)
t0=$(date +%s.%N)
peak=0
for _ in $(seq 1 "$duration"); do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  (( rss > peak )) && peak=$rss
  sleep 1
done
c1=$(cpu)
t1=$(date +%s.%N)
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid"
"$lb" down --config "$conf" >/dev/null
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" -v rss="$rss" -v peak="$peak" -v th="$threads" 'BEGIN {
  cpu = (c1 - c0) / hz; wall = t1 - t0
  printf "agent idle with 10 services / 30 jobs over %.0f s: RSS %.1f MiB (peak %.1f MiB), %d threads, CPU %.3f s (%.4f%% of one core)\n", wall, rss/1024, peak/1024, th, cpu, 100*cpu/wall }'
