#!/usr/bin/env bash
# Makes ZFS available on a Debian machine, as root. Idempotent.
#
#   1. If `zpool list` already works (kernel ZFS, or a running zfs-fuse), done.
#   2. If the kernel module can be loaded and the OpenZFS tools are present, use it.
#   3. Otherwise install Debian's zfs-fuse (if missing) and start its daemon,
#      reusing one that is already running.
#
# Exits non-zero, loudly, when ZFS cannot be made available: tests that need
# real pools must fail rather than skip.
set -euo pipefail

say() { printf 'setup-zfs: %s\n' "$*" >&2; }

zfs_works() { zpool list >/dev/null 2>&1; }

if [ "$(id -u)" -ne 0 ]; then
  say "must run as root (it may install packages and start the zfs-fuse daemon)"
  exit 1
fi

if command -v zpool >/dev/null 2>&1 && zfs_works; then
  say "ZFS already available: $(command -v zfs)"
  exit 0
fi

if [ -e /dev/zfs ] || { command -v modprobe >/dev/null 2>&1 && modprobe zfs 2>/dev/null; }; then
  if command -v zpool >/dev/null 2>&1 && zfs_works; then
    say "using kernel ZFS"
    exit 0
  fi
fi

if ! command -v zfs-fuse >/dev/null 2>&1; then
  say "installing zfs-fuse"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq zfs-fuse >/dev/null
fi

if ! pgrep -x zfs-fuse >/dev/null 2>&1; then
  [ -e /dev/fuse ] || { mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true; }
  # A daemon that died (or was killed) leaves its pid file and socket
  # behind, and a new one then refuses to start: clear them.
  rm -f /var/run/zfs/zfs-fuse.pid /var/run/zfs/zfs_socket
  say "starting zfs-fuse"
  # zfs-fuse daemonizes itself; its pid file lives in /var/run/zfs.
  mkdir -p /var/run/zfs /var/lock/zfs
  zfs-fuse --pidfile /var/run/zfs/zfs-fuse.pid
fi

for _ in $(seq 1 60); do
  if zfs_works; then
    say "zfs-fuse running (pid $(pgrep -x zfs-fuse | head -n1))"
    exit 0
  fi
  sleep 0.5
done

say "ZFS is still not available after starting zfs-fuse; zpool list says:"
zpool list >&2 || true
exit 1
