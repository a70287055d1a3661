#!/usr/bin/env bash
# Measures how much a second night's PostgreSQL backup adds after a day of
# OLTP changes: pgbench -i -s SCALE, vault backup --postgres, pgbench -n -t
# TXNS, vault backup --postgres again. Also runs restic on the same
# `pg_dump -Fc` output for comparison when restic is installed.
#
# Environment: BENCH_PG_SCALE (default 40), BENCH_PG_TXNS (default 2000),
# BENCH_WORK (default <repo>/bench-work). Needs root (the cluster runs as the
# postgres user) and the PostgreSQL server packages.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench-work}/pg
SCALE=${BENCH_PG_SCALE:-40}
TXNS=${BENCH_PG_TXNS:-2000}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

rm -rf "$WORK"
mkdir -p "$WORK"
chmod 755 "$WORK"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
vault="$ROOT/target/release/vault"

# A cluster of our own on a Unix socket in the work directory.
mkdir -p "$WORK/pg"
chown postgres: "$WORK/pg"
runuser -u postgres -- "$BIN/initdb" -D "$WORK/pg/data" -A trust -U postgres --no-sync >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
    -o "-k $WORK/pg -c listen_addresses='' -p 5432 -c fsync=off" start >/dev/null
trap 'runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true' EXIT
export PGHOST=$WORK/pg PGPORT=5432 PGUSER=postgres
createdb bench
log "pgbench -i -s $SCALE"
pgbench -q -i -s "$SCALE" bench >/dev/null 2>&1
# pgbench's filler is blank padding that compresses ~100x; real rows do not.
# Give it text that compresses about 2x, like the brief's corpus.
log "filling pgbench_accounts.filler with text"
psql -q -X bench -c "UPDATE pgbench_accounts SET filler = substr(md5(aid::text) || md5((aid * 7)::text) || repeat('ab', 20), 1, 84)" \
    -c "VACUUM FULL pgbench_accounts" >/dev/null

recipient=$("$vault" key generate --output "$WORK/owner.key")
"$vault" init -r "$WORK/repo" --owner "$recipient" --writer-key-out "$WORK/writer.key" >/dev/null
conn="host=$WORK/pg port=5432 user=postgres dbname=bench"

night() {
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.$1" \
        "$vault" backup -r "$WORK/repo" -i "$WORK/writer.key" --no-cache --json --postgres "$conn" >"$WORK/night$1.json"
    python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['snapshot']['totals']; print(t['bytes'], t['bytes_added'], t['bytes_stored'])" "$WORK/night$1.json"
}

log "vault night 1"
read -r bytes1 added1 stored1 < <(night 1)
log "pgbench -n -t $TXNS"
pgbench -n -t "$TXNS" bench >/dev/null 2>&1
log "vault night 2"
read -r bytes2 added2 stored2 < <(night 2)

restic_line="(restic not installed)"
if command -v restic >/dev/null; then
    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$WORK/restic
    restic init >/dev/null
    pg_dump -Fc -Z0 bench >"$WORK/dump1" && restic backup -q "$WORK/dump1" >/dev/null
    r1=$(du -sb "$WORK/restic" | cut -f1)
    # The second night's dump under the same name, as a nightly job would.
    pgbench -n -t "$TXNS" bench >/dev/null 2>&1
    pg_dump -Fc -Z0 bench >"$WORK/dump1" && restic backup -q "$WORK/dump1" >/dev/null
    r2=$(du -sb "$WORK/restic" | cut -f1)
    restic_line=$(python3 -c "print(f'restic: night 1 {$r1/2**20:.1f} MiB, night 2 added {($r2-$r1)/2**20:.1f} MiB = {($r2-$r1)/$r1*100:.1f} %')")
fi

python3 - "$bytes1" "$stored1" "$bytes2" "$stored2" "$WORK/time.1" "$WORK/time.2" <<PY
import sys
b1, s1, b2, s2 = map(int, sys.argv[1:5])
t1 = open(sys.argv[5]).read().split(); t2 = open(sys.argv[6]).read().split()
print(f"pgbench scale $SCALE, $TXNS transactions between nights (pg_dump custom format, uncompressed)")
print(f"vault night 1: dump {b1/2**20:.1f} MiB, stored {s1/2**20:.1f} MiB, {t1[0]} s, RSS {int(t1[3])//1024} MiB")
print(f"vault night 2: dump {b2/2**20:.1f} MiB, stored {s2/2**20:.1f} MiB = {s2/s1*100:.1f} % of night 1, {t2[0]} s")
PY
echo "$restic_line"
