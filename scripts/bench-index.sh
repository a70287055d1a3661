#!/usr/bin/env bash
# Index load benchmark: for 100 k, 1 M and 10 M blobs, writes plaintext index
# files (the JSON inside index/<id> objects: 1,024-blob packs, 64 packs a
# file), then loads them the way backup and restore do (compact), the way
# prune and check do (full), the way a warm backup does (compact, from the
# binary records of the metadata cache's digest: `digest`, whose json_MiB
# column is the digest's size; vault digests only index files of at most
# about 700 blobs, so this measures the replay, not what a backup holds),
# and the former way (every file parsed into
# structs and held; 1 M blobs at most), printing load time, index bytes per
# blob, CPU seconds (user + system: steadier than the wall clock on a shared
# machine) and peak RSS (GNU time).
#
# Usage: scripts/bench-index.sh [BLOB_COUNTS...]   (default: 100000 1000000 10000000)
# Needs about 1.2 GB of free disk for 10 M blobs (removed afterwards) and a
# release build of the example, made here with the default features, so that
# it reuses the dependencies of the release build bench-fleet.sh and
# `cargo build --release` make (without S3 the whole dependency tree is
# built again, with other features: about 15 minutes here). INDEX_LOAD=path
# uses a binary built before instead.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100000 1000000 10000000)
if [ -n "${INDEX_LOAD:-}" ]; then
    bin=$INDEX_LOAD
else
    cargo build --release --example index_load >&2
    bin="${CARGO_TARGET_DIR:-target}/release/examples/index_load"
fi
[ -x "$bin" ] || { echo "no index_load binary at $bin" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-10s %-10s %10s %10s %10s %14s %10s\n' blobs mode json_MiB load_s cpu_s index_B/blob peak_MiB
for n in "${counts[@]}"; do
    "$bin" gen "$work/idx" "$n"
    "$bin" digest "$work/idx"
    modes=(compact full digest)
    [ "$n" -gt 1000000 ] || modes+=(documents)
    for mode in "${modes[@]}"; do
        from=$work/idx
        [ "$mode" != digest ] || from=$work/idx.digest
        out=$(/usr/bin/time -v "$bin" load "$from" "$mode" 2>"$work/time")
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
        json=$(sed -E 's/.*json_mib=([0-9.]+).*/\1/' <<<"$out")
        secs=$(sed -E 's/.*load_s=([0-9.]+).*/\1/' <<<"$out")
        per=$(sed -E 's/.*index_bytes_per_blob=([0-9.]+).*/\1/' <<<"$out")
        cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$work/time")
        printf '%-10s %-10s %10s %10s %10s %14s %10d\n' "$n" "$mode" "$json" "$secs" "$cpu" "$per" $((rss / 1024))
    done
    rm -rf "$work/idx" "$work/idx.digest"
done
