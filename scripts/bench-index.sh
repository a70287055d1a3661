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
# Then, with a real vault command: a local repository is given index files
# describing that many blobs (`examples/fleet_fill.rs` with FILL_BLOBS:
# sealed, writer-signed files of 65,536 blobs, the size prune compacts
# into), and a one-file `vault backup` into it is timed with an empty
# metadata cache (cold) and a filled one (warm, median of 3), with its CPU
# seconds and peak RSS: the whole command, index load included.
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
release="${CARGO_TARGET_DIR:-target}/release"
if [ -n "${INDEX_LOAD:-}" ]; then
    bin=$INDEX_LOAD
else
    cargo build --release --example index_load >&2
    bin="$release/examples/index_load"
fi
if [ -z "${VAULT_BIN:-}" ] || [ -z "${FLEET_FILL:-}" ]; then
    cargo build --release --bin vault --example fleet_fill >&2
fi
vault=${VAULT_BIN:-$release/vault}
fill=${FLEET_FILL:-$release/examples/fleet_fill}
[ -x "$bin" ] || { echo "no index_load binary at $bin" >&2; exit 2; }
[ -x "$vault" ] && [ -x "$fill" ] || { echo "no binary at $vault or $fill" >&2; exit 2; }
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

echo
printf '%-10s %-6s %10s %10s %10s\n' blobs cache wall_s cpu_s peak_MiB
# run NAME CMD...: one timed run; prints "wall cpu peak_MiB".
run() {
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >/dev/null 2>>"$work/stderr" ||
        { echo "failed: $*" >&2; tail -5 "$work/stderr" >&2; exit 1; }
    awk '{printf "%s %.2f %d\n", $1, $2 + $3, $4 / 1024}' "$work/time"
}
for n in "${counts[@]}"; do
    r=$work/repo-$n
    mkdir -p "$r.src"
    "$vault" key generate -o "$r.owner" >"$r.recipient"
    "$vault" init -r "$r" --owner "$(cat "$r.recipient")" --owner-name ops \
        --writer-key-out "$r.writer" >/dev/null
    echo 0 >"$r.src/file"
    "$vault" backup -r "$r" -i "$r.writer" --no-cache --host h "$r.src/file" >/dev/null
    FILL_BLOBS=$n "$fill" "$r" "$r.writer" 1
    backup() {
        date +%s%N >"$r.src/file"
        run "$vault" backup -r "$r" -i "$r.writer" --cache-dir "$r.cache" --host h "$r.src/file"
    }
    read -r wall cpu peak < <(backup)
    printf '%-10s %-6s %10s %10s %10s\n' "$n" cold "$wall" "$cpu" "$peak"
    runs=()
    for _ in 1 2 3; do runs+=("$(backup)"); done
    read -r wall cpu peak < <(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)
    printf '%-10s %-6s %10s %10s %10s\n' "$n" warm "$wall" "$cpu" "$peak"
    rm -rf "$r" "$r".*
done
