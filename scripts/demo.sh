#!/usr/bin/env bash
# One command on a fresh Debian machine (as root): installs what zfsrepl needs,
# makes ZFS available (kernel ZFS, else zfs-fuse with file-backed pools),
# builds zfsrepl, creates two sandbox pools shaped like the primary user's
# estate (a source host's datasets with snapshots, an empty backup pool), and
# shows them with `zfsrepl zfs caps` and `zfsrepl list`.
#
# Idempotent: a second run reuses the sandbox pools. Remove them with
#   scripts/demo.sh --clean
#
# Until the replication issue lands, this is the main job: probe and list.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${ZFSREPL_SANDBOX:-/var/tmp/zfsrepl-sandbox}
SRC=zr_demo_off2
DST=zr_demo_ovh3
say() { printf '\n== %s\n' "$*"; }

if [ "${1:-}" = "--clean" ]; then
  for p in "$SRC" "$DST"; do zpool destroy -f "$p" 2>/dev/null && echo "destroyed $p" || true; done
  rm -rf "$STATE"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup or Debian's cargo) first" >&2; exit 1; }

say "packages"
if ! command -v zfs >/dev/null 2>&1 && ! command -v zfs-fuse >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq zfs-fuse >/dev/null
fi

say "ZFS"
bash scripts/setup-zfs.sh

say "build"
cargo build --release --locked -p zfsrepl-cli
BIN=$PWD/target/release/zfsrepl

say "sandbox pools in $STATE"
mkdir -p "$STATE"
for p in "$SRC" "$DST"; do
  if ! zpool list -H -o name "$p" >/dev/null 2>&1; then
    truncate -s 512M "$STATE/$p.img"
    zpool create -f -m "$STATE/mnt/$p" "$p" "$STATE/$p.img"
    echo "created pool $p"
  else
    echo "reusing pool $p"
  fi
done
# off2's data: one dataset per flavor and kind, as in the Open Food Facts estate.
if ! zfs list -H -o name "$SRC/off" >/dev/null 2>&1; then
  for flavor in off obf opf opff off-pro; do
    for kind in products images users orgs html_data; do
      zfs create -p "$SRC/$flavor/$kind"
    done
  done
  zfs create -p "$DST/backups"
  for s in 2026-11-21_00:00:00_daily 2026-11-22_00:00:00_daily; do
    zfs snapshot -r "$SRC@autosnap_$s"
  done
fi

say "zfsrepl zfs caps"
"$BIN" zfs caps

say "zfsrepl list $SRC/off $DST"
"$BIN" list "$SRC/off" "$DST"

echo
echo "sandbox ready: try '$BIN list --json $SRC' ; remove with '$0 --clean'"
