#!/usr/bin/env bash
# A fleet sharing one S3 repository (moto): HOSTS simulated hosts (default
# 100), each with its own host key (`vault key add-host`) and a tree that overlaps the
# others' (a common base every host has, plus files of its own), back up
# FLEET_PARALLEL at a time (default 10). Then:
#   1. every backup completed, and every host has its snapshot;
#   2. a prune run while a wave of backups ran lost nothing:
#      `vault check --read-data` is clean;
#   3. a sample of hosts restores byte for byte (every host with
#      FLEET_RESTORE_EVERY=1);
#   4. the bytes stored in packs stay within 10 % of the distinct content
#      (cross-host deduplication).
#
#   scripts/fleet-test.sh [HOSTS]
#
# Deduplication between hosts needs an owner step: a backup deduplicates
# only against index files an owner attested and its own (docs/SECURITY.md,
# "Deduplication and owner attestation"). The fleet runs as an operator
# would start one: the first host backs up alone, then `vault prune` (the
# owner step: it reads back the index entries no owner attested yet and
# signs them), then the waves, with one more prune after each wave. The
# script prints what each owner step cost.
#
# Environment: FLEET_STORE (`moto`, the default, or `garage`: a Garage cluster
# of FLEET_GARAGE_NODES nodes, default 3, replication factor 3, see
# scripts/lib/garage.sh; scripts/garage-test.sh runs it), FLEET_KILL_NODE
# (garage: SIGKILL this node when the middle wave starts, default none),
# VAULT_BIN (default target/debug/vault, built if missing),
# FLEET_PARALLEL, FLEET_OWNER_STEP (`prune`, or `none`: the control, where
# hosts cannot deduplicate against each other), FLEET_BASE_KB (the common base, default 2048),
# FLEET_UNIQUE_KB (each host's own bytes, default 64), FLEET_RESTORE_EVERY
# (restore every Nth host, default 10), FLEET_WORK (kept with
# FLEET_KEEP=1). Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/moto.sh
. scripts/lib/garage.sh
store=${FLEET_STORE:-moto}
kill_node=${FLEET_KILL_NODE:-}
case $store in moto | garage) ;; *) echo "FLEET_STORE: moto or garage, not $store" >&2 && exit 2 ;; esac

hosts=${1:-100}
parallel=${FLEET_PARALLEL:-10}
base_kb=${FLEET_BASE_KB:-2048}
unique_kb=${FLEET_UNIQUE_KB:-64}
restore_every=${FLEET_RESTORE_EVERY:-10}
vault=${VAULT_BIN:-}
if [[ -z $vault ]]; then
    vault=$PWD/target/debug/vault
    [[ -x $vault ]] || cargo build --quiet --bin vault || exit 2
fi
work=${FLEET_WORK:-$(mktemp -d /tmp/vault-fleet.XXXXXX)}
mkdir -p "$work"
cleanup() {
    stop_moto
    stop_garage
    [[ ${FLEET_KEEP:-0} == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >>"$work/log"; }
failures=0
fail() {
    failures=$((failures + 1))
    echo "FAIL: $*" | tee -a "$work/log" >&2
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

if [[ $store == garage ]]; then
    start_garage "$work/garage" "${FLEET_GARAGE_NODES:-3}" || exit 2
    garage_bucket fleet || exit 2
else
    start_moto "$work/moto.log" || exit 2
    make_bucket fleet || exit 2
fi
repo=s3://fleet/r
owner=$work/owner.key
v() { "$vault" "$@" </dev/null; }
v key generate --output "$owner" >"$work/owner.pub" 2>>"$work/log" || exit 2
v init -r "$repo" --owner "$(cat "$work/owner.pub")" --owner-name ops \
    --writer-key-out "$work/writer.key" >>"$work/log" 2>&1 || {
    echo "init failed; log: $work/log" >&2
    exit 2
}

# The content: a base every host has (a distribution's files, say), in
# files of a few sizes, and each host's own files.
mkdir -p "$work/base"
left=$base_kb
i=0
while ((left > 0)); do
    kb=$((16 + (i * 37) % 240))
    ((kb > left)) && kb=$left
    head -c $((kb * 1024)) /dev/urandom >"$work/base/file-$i"
    left=$((left - kb))
    i=$((i + 1))
done
make_host() { # N
    local dir=$work/hosts/h$1
    mkdir -p "$dir"
    cp -al "$work/base" "$dir/base"
    head -c $((unique_kb * 1024)) /dev/urandom >"$dir/own.bin"
    printf 'hostname = h%d\nrole = %s\n' "$1" "$((RANDOM % 7))" >"$dir/host.conf"
}
distinct=$((base_kb * 1024))
for n in $(seq 0 $((hosts - 1))); do
    make_host "$n"
    distinct=$((distinct + unique_kb * 1024 + $(stat -c %s "$work/hosts/h$n/host.conf")))
done

mkdir -p "$work/keys"
# Each host has a key of its own (`vault key add-host`), as a fleet should:
# a compromised host can then forge only its own series, and its index
# files are not a deduplication source for the others.
for n in $(seq 0 $((hosts - 1))); do
    v key add-host "h$n" -r "$repo" -i "$owner" --writer-key-out "$work/keys/h$n.key" \
        >>"$work/log" 2>&1 || fail "key add-host h$n failed"
done

backup() { # N
    v backup -r "$repo" -i "$work/keys/h$1.key" --no-cache \
        "$work/hosts/h$1" >"$work/backup-h$1.log" 2>&1
}

owner_steps=()
owner_step() { # LABEL
    [[ ${FLEET_OWNER_STEP:-prune} == none ]] && return
    local t0 t1
    t0=$(now_ms)
    if ! v prune -r "$repo" -i "$owner" >>"$work/log" 2>&1; then
        fail "prune ($1) failed"
    fi
    t1=$(now_ms)
    owner_steps+=("$1: $((t1 - t0)) ms")
}

# The first host alone, then the owner step that lets the others
# deduplicate against it.
t0=$(now_ms)
backup 0 || fail "backup of h0 failed: $(tail -n 3 "$work/backup-h0.log")"
owner_step "after h0"
next=1
wave=0
prune_pid=
while ((next < hosts)); do
    pids=()
    names=()
    for _ in $(seq "$parallel"); do
        ((next < hosts)) || break
        backup "$next" &
        pids+=($!)
        names+=("$next")
        next=$((next + 1))
    done
    # A prune running meanwhile, in the middle of the fleet (and on
    # Garage, a node killed).
    if ((wave == (hosts / parallel) / 2)); then
        if [[ $store == garage && -n $kill_node ]]; then
            kill_garage_node "$kill_node"
            log "killed garage node $kill_node during wave $wave"
            echo "killed garage node $kill_node during wave $wave"
        fi
        v prune -r "$repo" -i "$owner" >"$work/prune-meanwhile.log" 2>&1 &
        prune_pid=$!
    fi
    for k in "${!pids[@]}"; do
        wait "${pids[$k]}" || fail "backup of h${names[$k]} failed: $(tail -n 3 "$work/backup-h${names[$k]}.log")"
    done
    if [[ -n $prune_pid ]]; then
        # A prune that found another one running may refuse; it must not
        # damage anything (checked below).
        wait "$prune_pid" || log "the concurrent prune ended with an error: $(tail -n 2 "$work/prune-meanwhile.log")"
        prune_pid=
    fi
    owner_step "after wave $wave"
    wave=$((wave + 1))
done
t1=$(now_ms)

# 1. Every host has its snapshot.
count=$(v snapshots -r "$repo" -i "$owner" --json 2>>"$work/log" |
    python3 -c 'import json,sys; print(len({s["snapshot"]["host"] for s in json.load(sys.stdin)}))')
((count == hosts)) || fail "$count of $hosts hosts have a snapshot"

# 2. Nothing lost.
if ! v check -r "$repo" -i "$owner" --read-data >>"$work/log" 2>&1; then
    fail "check --read-data is not clean"
fi

# 3. A sample restores byte for byte.
restored=0
for n in $(seq 0 "$restore_every" $((hosts - 1))); do
    target=$work/restore-h$n
    if ! v restore -r "$repo" -i "$owner" --host "h$n" latest --target "$target" >>"$work/log" 2>&1; then
        fail "restore of h$n failed"
        continue
    fi
    if ! diff -r "$work/hosts/h$n" "$target/${work#/}/hosts/h$n" >>"$work/log" 2>&1; then
        fail "h$n restored different content"
    fi
    rm -rf "$target"
    restored=$((restored + 1))
done

# 4. Cross-host deduplication.
stored=$(python3 - <<'EOF'
import boto3, os
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                  region_name=os.environ["AWS_REGION"],
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
total = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="fleet", Prefix="r/data/"):
    total += sum(o["Size"] for o in page.get("Contents", []))
print(total)
EOF
)
ratio=$(python3 -c "print(f'{$stored / $distinct:.3f}')")
python3 -c "import sys; sys.exit(0 if $stored <= 1.10 * $distinct else 1)" ||
    fail "packs hold $stored bytes for $distinct distinct bytes (ratio $ratio, over 1.10)"

printf 'hosts %d, %d at a time, %d ms for every backup and owner step\n' "$hosts" "$parallel" $((t1 - t0))
printf 'snapshots of %d hosts; %d restored and compared\n' "$count" "$restored"
printf 'distinct content %d bytes, packs %d bytes, ratio %s\n' "$distinct" "$stored" "$ratio"
printf 'owner steps (vault prune):'
printf ' [%s]' "${owner_steps[@]}"
printf '\n'
if ((failures)); then
    echo "fleet: $failures failure(s); log: $work/log" >&2
    FLEET_KEEP=1
    exit 1
fi
echo "fleet: ok"
