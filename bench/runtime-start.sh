#!/usr/bin/env bash
# bench/runtime-start.sh : container start+exit of /bin/true on one busybox rootfs, Lifeboat vs
# crun, runc, podman (runc) and docker, in one run (hyperfine, then Lifeboat, runc and crun
# interleaved); then 40 idle containers: time to start all
# and memory per container (shim PSS). Run by hand as root; results go to docs/benchmarks.md.
#   bench/runtime-start.sh [WORKDIR] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/lbbench-runtime}
runs=${2:-30}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/lifeboat-target}
(cd "$here" && cargo build --release --locked -q)
lb="$CARGO_TARGET_DIR/release/lifeboat"
for p in crun runc hyperfine podman; do command -v $p >/dev/null || apt-get install -y -qq $p >/dev/null; done
# Podman leaves its overlay storage mounted: unmount what an earlier run left under $work.
awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf "$work"; mkdir -p "$work"
export LIFEBOAT_ROOT="$work/root" LIFEBOAT_RUN_ROOT="$work/run"

# One busybox rootfs for everyone.
rootfs="$work/rootfs"
mkdir -p "$rootfs/bin"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for a in $(busybox --list); do [[ $a == busybox ]] || ln -s busybox "$rootfs/bin/$a"; done
tar -C "$rootfs" -cf "$work/rootfs.tar" .
"$lb" import "$rootfs" bench:1 >/dev/null

for rt in runc crun; do
  mkdir -p "$work/$rt/rootfs"
  cp -a "$rootfs/." "$work/$rt/rootfs/"
  (cd "$work/$rt" && $rt spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json)
done

P="$work/podman"; mkdir -p "$P/tmp"
printf '[containers]\ndefault_ulimits=["nofile=1024:1024","nproc=4096:4096"]\nnetns="none"\n[engine]\nruntime="runc"\ntmp_dir="%s/tmp"\n' "$P" >"$P/containers.conf"
printf '[storage]\ndriver="overlay"\ngraphroot="%s/root"\nrunroot="%s/run"\n' "$P" "$P" >"$P/storage.conf"
export CONTAINERS_CONF="$P/containers.conf" CONTAINERS_STORAGE_CONF="$P/storage.conf"
podman import -q "$work/rootfs.tar" bench:1 >/dev/null

cmds=(
  -n lifeboat "$lb run --rm bench:1 /bin/true"
  -n runc "cd $work/runc && runc run bench-runc"
  -n crun "unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; cd $work/crun && crun run bench-crun'"
  -n podman "podman run --rm --network none localhost/bench:1 /bin/true"
)
if [[ -n ${DOCKER_HOST:-} ]]; then
  docker import "$work/rootfs.tar" lifeboat-bench:1 >/dev/null
  cmds+=(-n docker "docker run --rm --network none lifeboat-bench:1 /bin/true")
fi
hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/start.md" "${cmds[@]}" 2>&1 | tail -20 || \
  hyperfine --warmup 3 --runs "$runs" --export-markdown "$work/start.md" "${cmds[@]}"
cat "$work/start.md"

# The same starts interleaved (lifeboat, runc, crun, lifeboat, ...): the VM's speed drifts over
# a minute, which hyperfine's one-runtime-after-another order folds into the ratios.
echo "== interleaved, ${runs}x2 rounds"
python3 - "$lb" "$work" "$((runs * 2))" <<'PY'
import statistics, subprocess, sys, time
lb, work, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmds = {
    "lifeboat": [lb, "run", "--rm", "bench:1", "/bin/true"],
    "runc": ["sh", "-c", f"cd {work}/runc && runc run bench-runc"],
    "crun": ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"umount /sys/fs/cgroup/unified; cd {work}/crun && crun run bench-crun"],
}
times = {k: [] for k in cmds}
for _ in range(rounds):
    for name, cmd in cmds.items():
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times[name].append((time.perf_counter() - t) * 1000)
base = statistics.median(times["lifeboat"])
for name, ts in times.items():
    med = statistics.median(ts)
    print(f"{name:9} median {med:6.1f} ms  mean {statistics.mean(ts):6.1f} ms  ({med / base:.2f}x lifeboat's median)")
PY

echo "== 40 idle containers"
start=$(date +%s.%N)
for i in $(seq 1 40); do "$lb" run -d --name idle$i bench:1 sleep 100000 >/dev/null; done
end=$(date +%s.%N)
echo "started 40 in $(echo "$end - $start" | bc) s"
sleep 2
total=0
for id in $("$lb" ps -q --no-trunc); do
  shim=$("$lb" inspect "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["ShimPid"])')
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$shim/smaps_rollup")
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$shim/status")
  total=$((total + pss)); echo "shim $shim pss ${pss}kB rss ${rss}kB" >>"$work/mem.txt"
done
echo "shim PSS per container: $((total / 40)) kB (RSS of one: $(tail -1 "$work/mem.txt"))"
"$lb" rm -f $("$lb" ps -aq) >/dev/null
