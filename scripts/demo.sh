#!/usr/bin/env bash
# zfsrepl's demo: one command on a fresh Debian machine, as root, shows the
# whole system working on three file-backed pools standing in for the Open
# Food Facts estate:
#
#   zr_demo_off2  the source (off/products, off/images, off/users)
#   zr_demo_off1  the same-datacentre replica
#   zr_demo_ovh3  the remote replica, with the staging clones
#
# It makes ZFS available (kernel ZFS, else zfs-fuse: scripts/setup-zfs.sh),
# builds zfsrepl (release, --locked), creates and seeds the pools, and runs
# the real `zfsrepl daemon` with policies/demo/demo.toml for about a minute
# and a half while it changes the data: snapshots every minute, replication
# to both replicas, pruning on all three pools, and the staging clones of
# products and images refreshed (atomically swapped) from their newest
# common snapshot. Then it prints `zfsrepl status`, the replicas, the clones
# and `zfsrepl graph`, stops the daemon with SIGTERM (it must exit 0) and
# removes what it made.
#
# Usage: scripts/demo.sh [--quick] [--keep] [--bin PATH]
#        scripts/demo.sh --clean
#   --quick     stop as soon as both replicas have snapshots and the staging
#               clones exist (about 20 s; no pruning or second refresh yet)
#   --keep      keep the pools, the daemon's state and log (not the daemon)
#   --clean     remove a kept demo
#   --bin PATH  use this zfsrepl binary instead of building one
#
# Safe: it only ever creates, changes and destroys the pools named above and
# /var/tmp/zfsrepl-demo; a second run first removes what a previous one kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DIR=/var/tmp/zfsrepl-demo
SRC=zr_demo_off2
OFF1=zr_demo_off1
OVH3=zr_demo_ovh3
POOLS=("$SRC" "$OFF1" "$OVH3")
POLICY=$ROOT/policies/demo/demo.toml
SOCK=$DIR/run/control.sock # as in the policy's [daemon] section
PIDFILE=$DIR/daemon.pid
LOG=$DIR/daemon.log

QUICK=0 KEEP=0 CLEAN=0 BIN=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --clean) CLEAN=1 ;;
    --bin)
      [ $# -ge 2 ] || { echo "--bin needs a path" >&2; exit 2; }
      BIN=$2
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

T0=$(date +%s)
say() { printf '\n== [%3ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf '\ndemo FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo bash $0" >&2; exit 1; }

pool_exists() { zpool list -H -o name "$1" >/dev/null 2>&1; }

# A daemon a previous (interrupted) run left behind: stopped by its pid,
# only if that pid is a zfsrepl daemon running the demo policy.
stop_old_daemon() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid=$(cat "$PIDFILE")
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "daemon --policy $POLICY"; then
    note "stopping the demo daemon left running (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

remove_demo() {
  stop_old_daemon
  local p
  for p in "${POOLS[@]}"; do
    # zfs-fuse can say "pool is busy" for a while after the last use (up
    # to about a minute on a loaded machine): unmount its datasets first,
    # deepest first, then retry for up to two minutes.
    for try in $(seq 1 20); do
      pool_exists "$p" || break
      zfs list -H -o name -r "$p" 2>/dev/null | sort -r | while IFS= read -r ds; do
        zfs unmount -f "$ds" 2>/dev/null || true
      done
      if zpool destroy -f "$p" 2>/dev/null; then
        note "destroyed pool $p"
        break
      fi
      sleep $((try < 6 ? try : 6))
    done
    if pool_exists "$p"; then
      echo "could not destroy pool $p: kept $DIR (its image is there); retry with: bash $0 --clean" >&2
      return 1
    fi
  done
  if [ -d "$DIR" ]; then
    if grep -q " $DIR/" /proc/mounts; then
      echo "something is still mounted under $DIR: not removing it" >&2
      return 1
    fi
    # zfs-fuse may still hold a mount under it for a moment.
    rm -rf "$DIR" 2>/dev/null || { sleep 2; rm -rf "$DIR"; }
    note "removed $DIR"
  fi
}

if [ "$CLEAN" = 1 ]; then
  say "removing the demo (pools ${POOLS[*]}, $DIR)"
  command -v zpool >/dev/null 2>&1 || { note "no zpool: nothing to remove"; exit 0; }
  remove_demo
  exit 0
fi

# ---------------------------------------------------------------- setup
say "ZFS"
bash scripts/setup-zfs.sh

if [ -z "$BIN" ]; then
  say "building zfsrepl (release, --locked)"
  # Debian's own cargo is too old (rust-version in Cargo.toml): rustup's.
  command -v cargo >/dev/null 2>&1 || [ ! -x "$HOME/.cargo/bin/cargo" ] || PATH=$HOME/.cargo/bin:$PATH
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) or newer (https://rustup.rs), or pass --bin PATH"
  cargo build --release --locked -p zfsrepl-cli
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/zfsrepl
fi
[ -x "$BIN" ] || die "no zfsrepl binary at $BIN"
BIN=$(readlink -f "$BIN")
note "zfsrepl: $BIN"

DAEMON_PID=
cleanup() {
  local rc=$?
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$LOG" ]; then
    printf '\n-- the last lines of the daemon log (%s):\n' "$LOG" >&2
    tail -n 30 "$LOG" >&2
  fi
  if [ "$KEEP" = 1 ]; then
    printf '\nkept: pools %s, %s (remove with: bash %s --clean)\n' "${POOLS[*]}" "$DIR" "$0"
  else
    say "cleaning up (--keep keeps everything)"
    remove_demo
  fi
  exit "$rc"
}

if pool_exists "$SRC" || pool_exists "$OFF1" || pool_exists "$OVH3" || [ -e "$DIR" ]; then
  say "removing the previous demo"
  remove_demo
fi
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- pools
say "pools: file-backed, images in $DIR"
mkdir -p "$DIR/run" "$DIR/mnt"
for p in "${POOLS[@]}"; do
  truncate -s 256M "$DIR/$p.img"
  zpool create -f -m "$DIR/mnt/$p" "$p" "$DIR/$p.img"
done
note "created ${POOLS[*]} (mounted under $DIR/mnt only)"

say "seeding $SRC/off (products, images, users)"
MNT=$DIR/mnt/$SRC/off
zfs create -p "$SRC/off/products"
zfs create "$SRC/off/images"
zfs create "$SRC/off/users"
zfs create -p "$OFF1/backups/off2"
zfs create -p "$OVH3/backups/off2"
zfs create -p "$OVH3/staging/off"
for i in $(seq 1 20); do
  printf '{"code":"30000000%05d","product_name":"demo product %d","rev":1}\n' "$i" "$i" >"$MNT/products/$i.json"
done
mkdir -p "$MNT/images/products"
for i in 1 2 3 4; do
  head -c 262144 /dev/urandom >"$MNT/images/products/$i.jpg"
done
echo '{"userid":"demo"}' >"$MNT/users/demo.json"
note "$(find "$MNT" -type f | wc -l) files, $(du -sh "$MNT" | cut -f1)"

REV=1
change_data() {
  REV=$((REV + 1))
  local i=$((20 + REV))
  printf '{"code":"30000000%05d","product_name":"demo product %d","rev":%d}\n' "$i" "$i" "$REV" >"$MNT/products/$i.json"
  sed -i "s/\"rev\":[0-9]*/\"rev\":$REV/" "$MNT/products/1.json"
  head -c 262144 /dev/urandom >"$MNT/images/products/$i.jpg"
  note "data changed: products/$i.json and images/products/$i.jpg added, products/1.json at rev $REV"
}

# ---------------------------------------------------------------- daemon
say "policy: $POLICY"
"$BIN" policy check "$POLICY" | sed 's/^/   /'

say "starting the daemon: zfsrepl daemon --policy policies/demo/demo.toml"
NO_COLOR=1 ZFSREPL_LOG=info "$BIN" daemon --policy "$POLICY" </dev/null >"$LOG" 2>&1 &
DAEMON_PID=$!
echo "$DAEMON_PID" >"$PIDFILE"
for _ in $(seq 1 80); do
  "$BIN" status --socket "$SOCK" >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited at start"
  sleep 0.25
done
"$BIN" status --socket "$SOCK" >/dev/null || die "the daemon's control socket does not answer"
note "running (pid $DAEMON_PID, log $LOG, socket $SOCK)"

snaps() { zfs list -H -t snapshot -o name -r "$1" 2>/dev/null | grep -c @ || true; }
frequents() { zfs list -H -t snapshot -o name -s createtxg -r -d 1 "$1" 2>/dev/null | sed -n 's/.*@//p' | grep '_frequently$' || true; }
origin() { zfs get -H -o value origin "$1" 2>/dev/null | sed 's/.*@//' || true; }

if [ "$QUICK" = 1 ]; then MIN=10 MAX=60; else MIN=75 MAX=160; fi
say "watching the daemon (${MIN}s at least; data changes every 25s)"
START=$(date +%s)
FIRST_FREQ= FIRST_ORIGIN= ORIGINS=0 LAST_ORIGIN= PRUNED=0 NEXT_CHANGE=$((START + 15))
while :; do
  sleep 5
  now=$(date +%s)
  el=$((now - START))
  if [ "$now" -ge "$NEXT_CHANGE" ]; then
    change_data
    NEXT_CHANGE=$((now + 25))
  fi
  kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon died"
  o=$(origin "$OVH3/staging/off/products")
  if [ -n "$o" ] && [ "$o" != "-" ] && [ "$o" != "$LAST_ORIGIN" ]; then
    ORIGINS=$((ORIGINS + 1))
    LAST_ORIGIN=$o
    [ -n "$FIRST_ORIGIN" ] || FIRST_ORIGIN=$o
  fi
  [ -n "$FIRST_FREQ" ] || FIRST_FREQ=$(frequents "$SRC/off/products" | head -n1)
  if [ -n "$FIRST_FREQ" ] && [ "$PRUNED" = 0 ] && [ "$(snaps "$OFF1")" -gt 0 ] && [ "$(snaps "$OVH3")" -gt 0 ] &&
    ! zfs list -H -t snapshot -o name -r "$SRC" "$OFF1/backups" "$OVH3/backups" 2>/dev/null | grep -q "@$FIRST_FREQ\$"; then
    PRUNED=1
  fi
  printf '   [%3ss] snapshots: off2 %2s, off1 %2s, ovh3 %2s | staging clone of: %s%s\n' \
    "$el" "$(snaps "$SRC")" "$(snaps "$OFF1")" "$(snaps "$OVH3")" "${LAST_ORIGIN:-none yet}" \
    "$([ "$PRUNED" = 1 ] && echo " | pruned $FIRST_FREQ everywhere")"
  replicated=0
  [ "$(snaps "$OFF1")" -gt 0 ] && [ "$(snaps "$OVH3")" -gt 0 ] && replicated=1
  if [ "$el" -ge "$MIN" ] && [ "$replicated" = 1 ] && [ "$ORIGINS" -ge 1 ]; then
    [ "$QUICK" = 1 ] && break
    [ "$PRUNED" = 1 ] && [ "$ORIGINS" -ge 2 ] && break
  fi
  [ "$el" -lt "$MAX" ] || break
done

# ---------------------------------------------------------------- results
say "zfsrepl status"
"$BIN" status --socket "$SOCK"

say "zfsrepl list $OFF1/backups $OVH3/backups (the replicas)"
"$BIN" list "$OFF1/backups" "$OVH3/backups"

say "zfsrepl clone list $OVH3"
"$BIN" clone list "$OVH3"
CLONE_MNT=$(zfs get -H -o value mountpoint "$OVH3/staging/off/products" 2>/dev/null || true)
if [ -d "$CLONE_MNT" ]; then
  note "the staging clone $OVH3/staging/off/products ($CLONE_MNT): $(find "$CLONE_MNT" -name '*.json' | wc -l) products, products/1.json: $(cat "$CLONE_MNT/1.json" 2>/dev/null)"
fi

say "zfsrepl graph policies/demo/demo.toml"
"$BIN" graph "$POLICY"

say "stopping the daemon (SIGTERM)"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
rm -f "$PIDFILE"
[ "$rc" -eq 0 ] || die "the daemon exited with status $rc"
[ ! -e "$SOCK" ] || die "the daemon left its control socket behind"
note "the daemon exited cleanly (status 0, socket removed)"

# ---------------------------------------------------------------- verdict
say "result"
n1=$(snaps "$OFF1")
n3=$(snaps "$OVH3")
ok=1
if [ "$n1" -gt 0 ] && [ "$n3" -gt 0 ]; then
  note "replicated: $n1 snapshot(s) on off1 ($OFF1), $n3 on ovh3 ($OVH3)"
else
  note "NOT replicated: $n1 snapshot(s) on off1, $n3 on ovh3"
  ok=0
fi
if [ "$ORIGINS" -ge 2 ]; then
  note "staging clones refreshed: made from $FIRST_ORIGIN, swapped $((ORIGINS - 1)) time(s) since, now from $LAST_ORIGIN"
elif [ "$ORIGINS" -ge 1 ]; then
  note "staging clones refreshed: made from $LAST_ORIGIN"
else
  note "NO staging clone was made"
  ok=0
fi
if [ "$QUICK" = 0 ]; then
  if [ "$PRUNED" = 1 ]; then
    note "pruned: $FIRST_FREQ is gone from off2 and both replicas"
  else
    note "NOT pruned: ${FIRST_FREQ:-the first frequent snapshot} is still there"
    ok=0
  fi
  [ "$ORIGINS" -ge 2 ] || { note "the staging clones were never swapped to a newer snapshot"; ok=0; }
fi
errors=$(grep -c ' ERROR ' "$LOG" || true)
retried=$(grep -c 'retrying in' "$LOG" || true)
note "daemon log: $(wc -l <"$LOG") lines, $errors error(s), $retried transient failure(s) retried ($LOG)"
if [ "$retried" -gt 0 ]; then
  # The FAILED column of `zfsrepl status` counts these attempts.
  grep 'transient=true' "$LOG" | sed 's/^.*failed: /     retried: /; s/ job=.*//' | sort | uniq -c | head -n 5
fi
[ "$ok" = 1 ] || die "see above"
printf '\ndemo OK in %ss\n' "$(($(date +%s) - T0))"
