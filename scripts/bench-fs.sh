#!/usr/bin/env bash
# Makes and mounts a journaled ext4 file system in an image file, for
# scripts/bench.sh to keep its repositories, restores and drill sandboxes on
# (BENCH_WORK=<mount>/bench). Needs root and a free loop device.
#
#   scripts/bench-fs.sh IMAGE MOUNTPOINT [SIZE]   (SIZE default 30G, sparse)
#   scripts/bench-fs.sh --umount MOUNTPOINT
#
# Why: a root file system of ext4 without a journal (some cloud images) checks
# every inode it allocates against those deleted in the last 60-300 s, so a
# restore that follows any mass delete spends seconds of system time there,
# different from run to run. A journaled ext4, as on most servers, does not.
# The loop device uses direct I/O on the image (no second page cache) and the
# file system is mounted with `discard`, so deleted files give the image's
# space back.
set -euo pipefail
if [ "${1:-}" = --umount ]; then
  mp=${2:?usage: bench-fs.sh --umount MOUNTPOINT}
  dev=$(findmnt -no SOURCE "$mp")
  umount "$mp"
  losetup -d "$dev" 2>/dev/null || true
  exit 0
fi
img=${1:?usage: bench-fs.sh IMAGE MOUNTPOINT [SIZE]} mp=${2:?usage: bench-fs.sh IMAGE MOUNTPOINT [SIZE]} size=${3:-30G}
[ "$(id -u)" = 0 ] || { echo "bench-fs.sh needs root (losetup, mount)" >&2; exit 2; }
if findmnt -no SOURCE "$mp" >/dev/null 2>&1; then
  echo "$mp is already a mount point" >&2
  exit 2
fi
[ -e "$img" ] && { echo "$img exists: remove it or choose another name" >&2; exit 2; }
truncate -s "$size" "$img"
mkfs.ext4 -q -F -O has_journal "$img"
dev=$(losetup -f --show --direct-io=on "$img")
mkdir -p "$mp"
mount -o discard "$dev" "$mp"
echo "journaled ext4 on $dev mounted at $mp; remove with: scripts/bench-fs.sh --umount $mp && rm $img"
