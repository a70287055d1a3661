#!/usr/bin/env bash
# How vault's everyday commands scale with a fleet's history: a one-file
# backup, `vault snapshots` and `vault status`, with a cold and a warm
# metadata cache, on repositories holding 1, 1,000 and 10,000 snapshots (and
# as many index files: a fleet's backups each write one), on a local
# directory and on S3 (moto, started here on a free loopback port).
#
# The repositories are made by one real backup, then grown by
# `examples/fleet_fill.rs`: copies of that backup's header and index file,
# each a real sealed and signed document written with the writer key (as a
# backup writes it), dated a minute apart over 100 host names. Only the data
# they point at is shared, so making 10,000 takes a minute, not hours.
#
# Cold: the cache directory is removed first (a new host, or --no-cache).
# Warm: the same command ran once before with the same cache directory.
# Times are wall-clock milliseconds of the whole command, median of
# FLEET_RUNS runs.
#
# Environment:
#   FLEET_WORK      work directory (default: <repo>/bench-work/fleet, removed afterwards)
#   FLEET_LOCAL     snapshot counts on a local directory (default: "1 1000 10000")
#   FLEET_S3        snapshot counts on moto (default: "1 1000"; empty skips S3)
#   FLEET_GARAGE    snapshot counts on a one-node Garage (a real S3-compatible
#                   store, scripts/lib/garage.sh; default: none; needs `garage`)
#   FLEET_RUNS      runs per measurement (default 3)
#   VAULT_BIN       the vault binary (default: `cargo build --release` into
#                   $CARGO_TARGET_DIR or target/)
#   FLEET_FILL      the fleet_fill example binary (default: built like VAULT_BIN)
#   FLEET_KEEP      1 keeps the repositories afterwards
#   FLEET_COMPACT   1 runs the owner's `vault prune` after growing each
#                   repository: it compacts the N index files into a few
#                   owner-signed ones (what an operator's scheduled prune
#                   does); its time is printed to stderr
#
# Caveats: on a shared machine the numbers are noisy (the load average is
# printed); moto runs on the same cores as vault, so S3 numbers show round
# trips and server CPU, not a remote store's latency.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${FLEET_WORK:-$ROOT/bench-work/fleet}
LOCAL_SIZES=${FLEET_LOCAL-"1 1000 10000"}
S3_SIZES=${FLEET_S3-"1 1000"}
GARAGE_SIZES=${FLEET_GARAGE-}
RUNS=${FLEET_RUNS:-3}
KEEP=${FLEET_KEEP:-0}
COMPACT=${FLEET_COMPACT:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

for n in $LOCAL_SIZES $S3_SIZES $GARAGE_SIZES; do
    case "$n" in '' | *[!0-9]*) echo "snapshot counts must be numbers, not $n" >&2; exit 2 ;; esac
    [ "$n" -ge 1 ] || { echo "snapshot counts must be >= 1" >&2; exit 2; }
done
case "$RUNS" in '' | *[!0-9]* | 0) echo "FLEET_RUNS must be a positive number" >&2; exit 2 ;; esac

if [ -z "${VAULT_BIN:-}" ] || [ -z "${FLEET_FILL:-}" ]; then
    log "building vault and examples/fleet_fill.rs (release)"
    (cd "$ROOT" && cargo build --quiet --release --bin vault --example fleet_fill)
fi
VAULT=${VAULT_BIN:-$TARGET_DIR/release/vault}
FILL=${FLEET_FILL:-$TARGET_DIR/release/examples/fleet_fill}
[ -x "$VAULT" ] && [ -x "$FILL" ] || { echo "no binary at $VAULT or $FILL" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
MOTO_PID=
# shellcheck source=lib/garage.sh
. "$ROOT/scripts/lib/garage.sh"
cleanup() {
    [ -z "$MOTO_PID" ] || kill "$MOTO_PID" 2>/dev/null || true
    stop_garage
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# Milliseconds of one run of "$@"; exit codes 0 and 1 count (status says
# "stale" with 1), anything else stops the benchmark.
ms() {
    local start end rc=0
    start=$(date +%s%N)
    "$@" >/dev/null 2>>"$WORK/stderr.log" || rc=$?
    end=$(date +%s%N)
    if [ "$rc" -gt 1 ]; then
        echo "failed ($rc): $*" >&2
        tail -5 "$WORK/stderr.log" >&2
        exit 1
    fi
    echo $(((end - start) / 1000000))
}

median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure COLD|WARM CACHE_DIR CMD...: median of RUNS runs.
measure() {
    local mode=$1 cache=$2 times=()
    shift 2
    for _ in $(seq "$RUNS"); do
        if [ "$mode" = cold ]; then
            rm -rf "$cache"
        else
            "$@" >/dev/null 2>&1 || true
        fi
        times+=("$(ms "$@")")
    done
    echo "${times[*]}" | median
}

ROWS=()

# bench LABEL REPO N: make a repository of N snapshots at REPO and time it.
bench() {
    local label=$1 repo=$2 n=$3 dir="$WORK/$1-$3"
    mkdir -p "$dir/src"
    local owner=$dir/owner.key writer=$dir/writer.key
    "$VAULT" key generate -o "$owner" >"$dir/recipient"
    "$VAULT" init -r "$repo" --owner "$(cat "$dir/recipient")" --owner-name ops \
        --writer-key-out "$writer" >/dev/null
    echo "first" >"$dir/src/file"
    "$VAULT" backup -r "$repo" -i "$writer" --no-cache --host fleet-000 "$dir/src/file" >/dev/null
    if [ "$n" -gt 1 ]; then
        log "$label: growing to $n snapshots and $n index files"
        local t0=$SECONDS
        "$FILL" "$repo" "$writer" "$n" "$n"
        log "$label: made in $((SECONDS - t0)) s"
        if [ "$COMPACT" = 1 ]; then
            t0=$SECONDS
            "$VAULT" prune -r "$repo" -i "$owner" --no-cache >/dev/null 2>>"$WORK/stderr.log"
            local left=""
            [ -d "$repo/index" ] && left=", $(find "$repo/index" -type f | wc -l) index files left"
            log "$label: compacted by prune in $((SECONDS - t0)) s$left"
        fi
    fi
    local cache=$dir/cache i=0
    local common=(-r "$repo" --cache-dir "$cache")
    local snaps=("$VAULT" snapshots "${common[@]}" -i "$writer")
    local status=("$VAULT" status "${common[@]}" -i "$owner")
    backup_once() {
        i=$((i + 1))
        echo "change $i" >"$dir/src/file"
        "$VAULT" backup "${common[@]}" -i "$writer" --host fleet-000 "$dir/src/file"
    }
    log "$label $n: measuring"
    local bc bw sc sw tc tw
    bc=$(measure cold "$cache" backup_once)
    bw=$(measure warm "$cache" backup_once)
    sc=$(measure cold "$cache" "${snaps[@]}")
    sw=$(measure warm "$cache" "${snaps[@]}")
    tc=$(measure cold "$cache" "${status[@]}")
    tw=$(measure warm "$cache" "${status[@]}")
    ROWS+=("$(printf '%-6s %7s %10s %10s %10s %10s %10s %10s' "$label" "$n" "$bc" "$bw" "$sc" "$sw" "$tc" "$tw")")
    [ "$KEEP" = 1 ] || rm -rf "$dir" "${repo#file://}"
}

for n in $LOCAL_SIZES; do
    bench local "$WORK/repo-local-$n" "$n"
done

if [ -n "$S3_SIZES" ]; then
    python3 -c 'import moto.server' 2>/dev/null || {
        echo "moto[server] is not installed (scripts/install-test-deps.sh)" >&2
        exit 1
    }
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.1
    done
    export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=testsecret
    for n in $S3_SIZES; do
        curl -s -X PUT "$AWS_ENDPOINT_URL/fleet-$n" >/dev/null
        bench s3 "s3://fleet-$n/repo" "$n"
    done
fi

if [ -n "$GARAGE_SIZES" ]; then
    [ -z "$MOTO_PID" ] || { kill "$MOTO_PID"; MOTO_PID=; }
    start_garage "$WORK/garage" 1 >"$WORK/garage.log" 2>&1 ||
        { cat "$WORK/garage.log" >&2; exit 1; }
    for n in $GARAGE_SIZES; do
        garage_bucket "fleet-$n" >>"$WORK/garage.log" 2>&1
        bench garage "s3://fleet-$n/repo" "$n"
    done
fi

echo
echo "vault fleet benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $VAULT"
echo "milliseconds, median of $RUNS; backup = one changed file; cold = empty cache$(
    [ "$COMPACT" = 1 ] && echo "; index compacted by prune")"
printf '%-6s %7s %10s %10s %10s %10s %10s %10s\n' where snaps backup/c backup/w snaps/c snaps/w status/c status/w
printf '%s\n' "${ROWS[@]}"
