#!/usr/bin/env bash
# Idle footprint of `zfsrepl daemon` with N datasets under policy (default
# 400): creates a file-backed pool with N filesystems, a policy with a
# snapshot job (every 15m, atomic recursive snapshot) and a prune job after
# it, triggers one run of the chain, then samples the daemon's RSS and CPU
# time while idle. Destroys the pool at the end. Needs root and ZFS.
#
#   scripts/daemon-idle-rss.sh [N] [path/to/zfsrepl]
set -euo pipefail
n="${1:-400}"
bin="${2:-${CARGO_TARGET_DIR:-target}/release/zfsrepl}"
pool="zfsrepl_rss_$$"
dir="$(mktemp -d)"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  zpool destroy -f "$pool" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
truncate -s 512M "$dir/pool.img"
zpool create -f -m none "$pool" "$dir/pool.img"
zfs create "$pool/data"
for i in $(seq 1 "$n"); do zfs create "$pool/data/ds$i"; done
cat > "$dir/policy.toml" <<POLICY
version = 1
[dataset."$pool/data"]
recursive = "atomic"
frequently = 4
hourly = 24
daily = 7
monthly = 0

[job.snap]
kind = "snapshot"
datasets = ["$pool/data"]
schedule = "every 15m"

[job.prune]
kind = "prune"
datasets = ["$pool/data"]
after = "snap"

[daemon]
control-socket = "$dir/control.sock"
state-dir = "$dir/state"
lock-dir = "$dir/locks"
metrics-address = "127.0.0.1:0"
POLICY
"$bin" daemon --policy "$dir/policy.toml" 2>"$dir/daemon.log" &
pid=$!
for _ in $(seq 1 100); do [ -S "$dir/control.sock" ] && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
echo "datasets: $n; started: RSS $(rss) KiB"
"$bin" trigger snap --socket "$dir/control.sock"
for _ in $(seq 1 600); do
  "$bin" status --json --socket "$dir/control.sock" | grep -q '"running": true' || break
  sleep 0.5
done
sleep 2
for _ in $(seq 1 600); do
  "$bin" status --json --socket "$dir/control.sock" | grep -q '"running": true' || break
  sleep 0.5
done
echo "after one snapshot+prune run over $n datasets: RSS $(rss) KiB (VmHWM $(awk '/VmHWM/ {print $2}' /proc/$pid/status) KiB)"
c0=$(cpu); sleep 30; c1=$(cpu)
echo "idle 30 s: RSS $(rss) KiB, CPU $((c1 - c0)) tick(s) of 1/$(getconf CLK_TCK) s"
"$bin" status --socket "$dir/control.sock" | head -5
