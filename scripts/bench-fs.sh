#!/usr/bin/env bash
# Makes and mounts a journaled ext4 file system in an image file, for
# scripts/bench.sh to keep its repositories, restores and drill sandboxes on
# (BENCH_WORK=<mount>/bench). Needs root and a free loop device.
#
#   scripts/bench-fs.sh IMAGE MOUNTPOINT [SIZE]   (SIZE default 30G, sparse)
#   scripts/bench-fs.sh --mount IMAGE MOUNTPOINT  (an image made before, after a reboot)
#   scripts/bench-fs.sh --umount MOUNTPOINT
#
# Why: a root file system of ext4 without a journal (some cloud images) checks
# every inode it allocates against those deleted in the last 60-300 s, so a
# restore that follows any mass delete spends seconds of system time there,
# different from run to run. A journaled ext4, as on most servers, does not.
# The loop device uses direct I/O on the image (no second page cache) and the
# file system is mounted with `discard`, so deleted files give the image's
# space back. Mount an existing image with --mount, not `mount -o loop`: that
# loop device has no direct I/O, so a restore's data waits in the image file's
# page cache and its final flush writes all of it at the host's speed of the
# minute (scripts/bench.sh warns about such a restore directory).
set -euo pipefail
if [ "${1:-}" = --umount ]; then
  mp=${2:?usage: bench-fs.sh --umount MOUNTPOINT}
  dev=$(findmnt -no SOURCE "$mp")
  umount "$mp"
  losetup -d "$dev" 2>/dev/null || true
  exit 0
fi
# Attaches IMAGE with direct I/O and mounts it; refuses when the kernel
# would not give direct I/O (the loop would be buffered).
attach() {
  local dev
  dev=$(losetup -f --show --direct-io=on "$1")
  if [ "$(cat "/sys/block/${dev#/dev/}/loop/dio" 2>/dev/null)" != 1 ]; then
    losetup -d "$dev"
    echo "$dev would not take direct I/O on $1 (its file system's block size?)" >&2
    exit 2
  fi
  mkdir -p "$2"
  mount -o discard "$dev" "$2"
  echo "journaled ext4 on $dev (direct I/O) mounted at $2; remove with: scripts/bench-fs.sh --umount $2 && rm $1"
}
if [ "${1:-}" = --mount ]; then
  img=${2:?usage: bench-fs.sh --mount IMAGE MOUNTPOINT} mp=${3:?usage: bench-fs.sh --mount IMAGE MOUNTPOINT}
  [ "$(id -u)" = 0 ] || { echo "bench-fs.sh needs root (losetup, mount)" >&2; exit 2; }
  [ -f "$img" ] || { echo "$img is not an image file" >&2; exit 2; }
  if findmnt -no SOURCE "$mp" >/dev/null 2>&1; then
    echo "$mp is already a mount point" >&2
    exit 2
  fi
  attach "$img" "$mp"
  exit 0
fi
img=${1:?usage: bench-fs.sh IMAGE MOUNTPOINT [SIZE]} mp=${2:?usage: bench-fs.sh IMAGE MOUNTPOINT [SIZE]} size=${3:-30G}
[ "$(id -u)" = 0 ] || { echo "bench-fs.sh needs root (losetup, mount)" >&2; exit 2; }
if findmnt -no SOURCE "$mp" >/dev/null 2>&1; then
  echo "$mp is already a mount point" >&2
  exit 2
fi
[ -e "$img" ] && { echo "$img exists: mount it with --mount, remove it, or choose another name" >&2; exit 2; }
truncate -s "$size" "$img"
mkfs.ext4 -q -F -O has_journal "$img"
attach "$img" "$mp"
