#!/usr/bin/env bash
# Benchmarks vault against `tar | zstd -3 | age`, restic, borg (and rustic and
# bupstash if they are already on PATH) on one generated server-like corpus, in one run:
#
#   night 1 backup -> change the corpus -> night 2 backup -> full restore -> full verify read
#
# Corpus (the shape of issue 15): 3,000 small config files in nested directories,
# 100 random keystores (2-8 KiB) and about 1 GB of real pg_dump output of a
# pgbench database (plain SQL, custom format, and custom format -Z0), its blank
# filler replaced by text that compresses about 2x, from a PostgreSQL cluster
# the script starts itself (initdb/pg_ctl as the postgres user, a free port, a
# socket and data in a temporary directory; needs root). Night 2 edits 30
# configs, rotates one keystore, runs pgbench transactions and dumps afresh.
#
# Every step is run BENCH_RUNS times (new repositories each run, the corpus put
# back to night 1), each right after the yardstick `tar -cf - . | zstd -3 -T0`
# is timed; the report gives the median of each step's ratio to its yardstick,
# each run's ratio, median wall and CPU seconds, and the largest peak RSS.
#
# Environment:
#   BENCH_WORK      work directory (default: <repo>/bench-work, gitignored)
#   BENCH_RUNS      runs of every step (default 3)
#   BENCH_PEER_RUNS runs of restic, borg, rustic and bupstash (default: BENCH_RUNS)
#   BENCH_VERIFY    0 skips the verify-every-byte steps (the issue's small-file table has none)
#   BENCH_RESTORE_SYNC  1 (default): every tool's restore is timed until its data is on disk
#                   (`sync -f` on the restore file system ends the step; vault's restore ends
#                   with syncfs anyway, the others' leave GBs to write back); 0: as each tool
#                   leaves it
#   BENCH_COLD_REPO 1 drops every tool's repository from the page cache (untimed) before its
#                   restore, verify and check steps, as in a disaster, when no backup just wrote
#                   it (default 0: vault writes its packs around the page cache and reads them
#                   from disk, the peers write theirs through it and read them from memory)
#   BENCH_PG_SCALE  pgbench scale of the database dumped (default 40: ~1 GB of dumps)
#   BENCH_PG_TXNS   pgbench transactions between the nights (default 2000)
#   BENCH_PG_BIN    PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   BENCH_STEP_TIMEOUT  seconds any one step (or corpus command) may take (default 3600)
#   BENCH_PERF      profiling, not results: one word a run, each `record` (vault's steps run
#                   under `perf record` BENCH_PERF_ARGS, default `--call-graph dwarf,16384 -F 499`),
#                   `trace` (under `perf trace -s`: time in each system call, per thread) or
#                   `none`; e.g. "record trace". Output in <work>/logs/perf/; vault's times in
#                   those runs include perf's overhead and are left out of the medians
#   BENCH_TOOLS     tools to run, space separated (default: "tar vault restic borg rustic bupstash";
#                   add vault-base with BENCH_VAULT_BASE;
#                   rustic and bupstash are skipped unless they are on PATH: `cargo install
#                   rustic-rs --no-default-features --locked`; `apt-get install libsodium-dev
#                   pkg-config && cargo install bupstash --locked`, ~5 min each here)
#   BENCH_VAULT     a vault binary to measure instead of building one (release) from this tree
#   BENCH_VAULT_BASE  another vault binary (e.g. a release build of main) measured as the tool
#                   `vault-base` with the same commands, for a before/after in one invocation
#                   (vault and vault-base swap places every other run, so neither is always second)
#   BENCH_SMALL_FILES  N > 0: the corpus is N small config files (200 B to 7.8 KiB, 100 a
#                   directory) and nothing else, the many-small-files case; night 2 edits 30
#   BENCH_YARDSTICK 1 (default) times `tar -cf - . | zstd -3 -T0 >/dev/null` over the corpus
#                   right before every step and reports each step's wall time as a ratio to
#                   it (steadier than seconds on a shared machine); 0 skips it
#   BENCH_INSTALL   1 (default) installs missing restic/borg/age/zstd/b3sum/time with apt-get
#   BENCH_KEEP      1 keeps the corpus afterwards (default: 0, removes it)
#   BENCH_REUSE_CORPUS  1 reuses a corpus kept by BENCH_KEEP=1 if it was generated with the
#                   same settings and generator (put back to night 1); otherwise it is rebuilt
#   BENCH_RESTORE_DIR  where restores go (default: <work>/restore); keep it, the repositories
#                   and vault's --verify sandbox (<work>/tmp) on one journaled file system
#                   (scripts/bench-fs.sh makes one: BENCH_WORK=<its mount>/bench)
#   BENCH_TARGET    local (default): repositories in <work>/repos; s3: repositories on
#                   an s3s-fs server started on a free loopback port for this run (vault
#                   `-r s3://bench/vault`, restic `-r s3:http://127.0.0.1:PORT/bench/restic`);
#                   only vault and restic support it (tar, borg and rustic are skipped)
#   BENCH_S3S_FS    s3s-fs binary for BENCH_TARGET=s3 (default: `s3s-fs` on PATH, else
#                   <work>/tools/bin/s3s-fs, which BENCH_INSTALL=1 builds with
#                   `cargo install s3s-fs --version 0.14.1 --features binary`, ~5 min here)
#   BENCH_S3_TRACE  1 (default for s3) logs every request on the server and reports, per step,
#                   the requests by operation, the server's time in them, and how many were
#                   in flight; 0 turns the request log off (a few % less server CPU)
#
# Caveats printed with the results: the page cache cannot be dropped here, so
# every step runs with a warm cache; on a shared machine CPU and wall numbers
# are noisy (the load average around each step is logged). With BENCH_TARGET=s3
# client and server share the same cores and page cache: the numbers show
# what the client does per byte and how busy it keeps the server, not what a
# remote S3 over a real network would give.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench-work}
RUNS=${BENCH_RUNS:-3}
PEER_RUNS=${BENCH_PEER_RUNS:-$RUNS}
PG_SCALE=${BENCH_PG_SCALE:-40}
PG_TXNS=${BENCH_PG_TXNS:-2000}
PG_BIN=${BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}
read -r -a PERF_MODES <<<"${BENCH_PERF:-}"
PERF=0; [ ${#PERF_MODES[@]} -eq 0 ] || PERF=1
PERF_ARGS=${BENCH_PERF_ARGS:---call-graph dwarf,16384 -F 499}
VERIFY=${BENCH_VERIFY:-1}
RESTORE_SYNC=${BENCH_RESTORE_SYNC:-1}
COLD_REPO=${BENCH_COLD_REPO:-0}
case "$COLD_REPO" in 0 | 1) ;; *) echo "BENCH_COLD_REPO must be 0 or 1" >&2; exit 2 ;; esac
DELETE_GAP=65 # seconds between deleting a run's restores and the next run's restores
TOOLS=${BENCH_TOOLS:-"tar vault restic borg rustic bupstash"}
SMALL_FILES=${BENCH_SMALL_FILES:-0}
YARDSTICK=${BENCH_YARDSTICK:-1}
INSTALL=${BENCH_INSTALL:-1}
KEEP=${BENCH_KEEP:-0}
PASSWORD=bench-password-not-secret
TIMEOUT=${BENCH_STEP_TIMEOUT:-3600} # seconds; every timed step and corpus command is bounded
TARGET=${BENCH_TARGET:-local}
S3_TRACE=${BENCH_S3_TRACE:-1}
S3S_FS_VERSION=0.14.1 # 0.17 needs rustc 1.96 (see /work/shared/NOTES-deps.md)

case "$TARGET" in local | s3) ;; *) echo "BENCH_TARGET must be local or s3" >&2; exit 2 ;; esac
for v in RUNS PEER_RUNS PG_SCALE PG_TXNS TIMEOUT; do
  case "${!v}" in '' | *[!0-9]*) echo "BENCH_$v must be a number" >&2; exit 2 ;; esac
done
[ "$RUNS" -ge 1 ] && [ "$PG_SCALE" -ge 1 ] || { echo "BENCH_RUNS and BENCH_PG_SCALE must be >= 1" >&2; exit 2; }
[ "$PEER_RUNS" -le "$RUNS" ] || { echo "BENCH_PEER_RUNS must be <= BENCH_RUNS" >&2; exit 2; }
if [ "$SMALL_FILES" = 0 ]; then
  [ -x "$PG_BIN/pg_ctl" ] || { echo "no PostgreSQL binaries in $PG_BIN (set BENCH_PG_BIN)" >&2; exit 2; }
  [ "$(id -u)" = 0 ] || { echo "the pgbench corpus needs root (its cluster runs as the postgres user)" >&2; exit 2; }
fi
for m in "${PERF_MODES[@]}"; do
  case "$m" in record | trace | none) ;; *) echo "BENCH_PERF: '$m' is not record, trace or none" >&2; exit 2 ;; esac
done
[ "$PERF" != 1 ] || command -v perf >/dev/null || { echo "BENCH_PERF needs perf (apt-get install linux-perf)" >&2; exit 2; }
case "$SMALL_FILES" in '' | *[!0-9]*) echo "BENCH_SMALL_FILES must be a number" >&2; exit 2 ;; esac
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
[ "$WORK" != / ] || { echo "refusing to use / as the work dir" >&2; exit 2; }

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---------------------------------------------------------------- tools
need_pkgs=()
for pair in restic:restic borg:borgbackup age:age zstd:zstd b3sum:b3sum python3:python3; do
  cmd=${pair%%:*} pkg=${pair#*:}
  case "$cmd" in restic | borg) [[ " $TOOLS " == *" $cmd "* ]] || continue ;; esac
  command -v "$cmd" >/dev/null || need_pkgs+=("$pkg")
done
[ -x /usr/bin/time ] || need_pkgs+=(time)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$INSTALL" = 1 ] && command -v apt-get >/dev/null; then
    log "installing: ${need_pkgs[*]}"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${need_pkgs[@]}" >"$WORK/apt.log" 2>&1 || {
      $SUDO apt-get update >>"$WORK/apt.log" 2>&1
      $SUDO apt-get install -y "${need_pkgs[@]}" >>"$WORK/apt.log" 2>&1
    }
  else
    echo "missing: ${need_pkgs[*]} (set BENCH_INSTALL=1 or install them)" >&2
    exit 1
  fi
fi
active=()
for t in $TOOLS; do
  case "$t" in
    rustic)
      if [ "$TARGET" != local ]; then log "rustic is not wired for S3 here: skipped"
      elif command -v rustic >/dev/null; then active+=(rustic)
      else log "rustic not on PATH: skipped"; fi ;;
    bupstash)
      if [ "$TARGET" != local ]; then log "bupstash is not wired for S3 here: skipped"
      elif command -v bupstash >/dev/null; then active+=(bupstash)
      else log "bupstash not on PATH: skipped"; fi ;;
    tar | borg) [ "$TARGET" = local ] && active+=("$t") || log "$t has no S3 backend: skipped" ;;
    vault | restic) active+=("$t") ;;
    vault-base) [ -n "${BENCH_VAULT_BASE:-}" ] && active+=("$t") || log "vault-base needs BENCH_VAULT_BASE: skipped" ;;
    *) echo "unknown tool: $t" >&2; exit 2 ;;
  esac
done

if [ -n "${BENCH_VAULT:-}" ]; then
  [ -x "$BENCH_VAULT" ] || { echo "BENCH_VAULT=$BENCH_VAULT is not an executable" >&2; exit 2; }
  BUILT=$BENCH_VAULT
  log "measuring $BUILT (BENCH_VAULT), not a build of this tree"
else
log "building vault (release)"
# Ask cargo where the binary is: the target dir may come from a wrapper or a
# config file rather than CARGO_TARGET_DIR or <repo>/target.
BUILT=$(cd "$ROOT" && cargo build --release --message-format=json-render-diagnostics 2>"$WORK/cargo-build.log" |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "vault":
        print(m["executable"])') || { cat "$WORK/cargo-build.log" >&2; exit 1; }
[ -n "$BUILT" ] && [ -x "$BUILT" ] || { echo "no vault binary found (cargo said: '$BUILT')" >&2; exit 1; }
fi
# The target dir may be shared with other builds: run a private copy so the
# binary cannot change in the middle of the run.
mkdir -p "$WORK/bin"
cp "$BUILT" "$WORK/bin/vault"
VAULT=$WORK/bin/vault
VAULT_BASE=
if [ -n "${BENCH_VAULT_BASE:-}" ]; then
  [ -x "$BENCH_VAULT_BASE" ] || { echo "BENCH_VAULT_BASE=$BENCH_VAULT_BASE is not an executable" >&2; exit 2; }
  cp "$BENCH_VAULT_BASE" "$WORK/bin/vault-base"
  VAULT_BASE=$WORK/bin/vault-base
fi
VAULT_REV="$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' + uncommitted changes in src/')"
[ -z "${BENCH_VAULT:-}" ] || VAULT_REV="$("$VAULT" --version 2>/dev/null | head -n 1) (BENCH_VAULT=$BENCH_VAULT)"

# ---------------------------------------------------------------- layout
CORPUS=$WORK/corpus
REPOS=$WORK/repos
RESTORE=${BENCH_RESTORE_DIR:-$WORK/restore}
KEYS=$WORK/keys
LOGS=$WORK/logs
TIMES=$WORK/times
S3_DATA=$WORK/s3data
export TMPDIR=$WORK/tmp # vault's --verify sandbox goes here (same file system)
# ext4 without a journal (as on this VM) skips inodes deleted in the last
# 60-300 s when it allocates new ones, so creating files right after a mass
# delete is several times slower. Nothing is deleted between timed steps; a
# previous run's leftovers are deleted here, long before the restores.
# BENCH_REUSE_CORPUS=1 keeps a corpus an earlier run left (BENCH_KEEP=1) if it
# was generated with the same settings and generator; anything else is rebuilt.
DELETED_AT=$(cat "$WORK/deleted-at" 2>/dev/null || echo 0) # when an earlier invocation last mass-deleted
case "$DELETED_AT" in '' | *[!0-9]*) DELETED_AT=0 ;; esac
CORPUS_PARAMS="small=$SMALL_FILES scale=$PG_SCALE txns=$PG_TXNS pg=$PG_BIN"
REUSE=0
if [ "${BENCH_REUSE_CORPUS:-0}" = 1 ] && [ -f "$WORK/corpus.env" ] && [ -d "$CORPUS" ] && [ -d "$WORK/state" ] &&
  [ "$(sed -n 1p "$WORK/corpus.env")" = "# $CORPUS_PARAMS" ]; then
  REUSE=1
fi
if [ -n "$(find "$REPOS" "$RESTORE" "$TMPDIR" -mindepth 1 -print -quit 2>/dev/null)" ] || { [ "$REUSE" = 0 ] && [ -e "$CORPUS" ]; }; then
  log "removing the previous run's files (keep BENCH_KEEP=0 to have them removed at the end instead)"
  DELETED_AT=$(date +%s) # see the run loop
fi
[ "$REUSE" = 1 ] || rm -rf "$CORPUS" "$WORK/state" "$WORK/corpus.env"
rm -rf "$REPOS" "$RESTORE" "$KEYS" "$LOGS" "$TIMES" "$TMPDIR" "$S3_DATA" "$WORK"/pg.* \
  "$WORK/vault-cache" "$WORK/restic-cache" "$WORK/borg-base" "$WORK/results.md" "$WORK/bupstash.sendlog"
mkdir -p "$CORPUS" "$REPOS" "$RESTORE" "$KEYS" "$LOGS" "$LOGS/perf" "$TIMES" "$TMPDIR"
chmod 700 "$KEYS"
RESTORE_FS=$(df -T "$RESTORE" | awk 'NR==2{print $2}')
# ext4 without a journal checks every inode it allocates against the ones
# deleted in the last 60-300 s, so a restore right after any mass delete (the
# previous tool's restore, say) pays for it in system time, run to run. Said
# in the report; scripts/bench-fs.sh mounts a journaled ext4 to work on instead.
RESTORE_DEV=$(df "$RESTORE" | awk 'NR==2{print $1}')
if [ "$RESTORE_FS" = ext4 ] && command -v dumpe2fs >/dev/null &&
  ! dumpe2fs -h "$RESTORE_DEV" 2>/dev/null | grep -q '^Filesystem features:.*has_journal'; then
  RESTORE_FS="ext4 WITHOUT a journal (restores after a mass delete pay for it: see scripts/bench-fs.sh)"
  log "warning: $RESTORE is on $RESTORE_FS"
elif [ "$RESTORE_FS" = ext4 ] && command -v dumpe2fs >/dev/null; then
  DELETE_GAP=0 # a journaled ext4 does not look back at deleted inodes: no need to wait
fi
# A loop device without direct I/O (`mount -o loop` makes one) puts a second
# page cache, the image file's, under the restores: what they write waits
# there and goes to disk only in the step's final flush, at whatever speed
# the host's write-back has that minute. scripts/bench-fs.sh turns it on.
case "$RESTORE_DEV" in
  /dev/loop*)
    if [ "$(cat "/sys/block/${RESTORE_DEV#/dev/}/loop/dio" 2>/dev/null)" = 0 ]; then
      RESTORE_FS="$RESTORE_FS on $RESTORE_DEV WITHOUT direct I/O (restores are flushed through the image file's page cache: see scripts/bench-fs.sh)"
      log "warning: $RESTORE is on a loop device without direct I/O; remount it with scripts/bench-fs.sh"
    fi
    ;;
esac
RESTORE_BASE=$RESTORE # each run restores into $RESTORE_BASE/runN

# ---------------------------------------------------------------- S3 server
# BENCH_TARGET=s3: one s3s-fs process on a free loopback port, data under
# $S3_DATA, stopped on any exit. With BENCH_S3_TRACE=1 it logs every request
# (method, URI, start time, time to respond) for the per-step request report.
S3_PID='' S3_ENDPOINT='' S3_BUCKET=bench S3_LOG=$LOGS/s3s-fs.log S3S_FS_REV=''
stop_server() {
  if [ -n "$S3_PID" ]; then
    kill "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=
  fi
}
PG_DIR= # the PostgreSQL cluster's directory while one runs (see pg_start)
cleanup() { stop_server; pg_stop; }
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$TARGET" = s3 ]; then
  S3S_FS=${BENCH_S3S_FS:-$(command -v s3s-fs || echo "$WORK/tools/bin/s3s-fs")}
  if [ ! -x "$S3S_FS" ]; then
    [ "$INSTALL" = 1 ] || { echo "no s3s-fs at $S3S_FS (set BENCH_S3S_FS or BENCH_INSTALL=1)" >&2; exit 1; }
    log "building s3s-fs $S3S_FS_VERSION into $WORK/tools (takes ~5 min on 2 cores; log: $WORK/s3s-fs-install.log)"
    # Outside the repository so that a per-worktree cargo wrapper does not
    # mix it into vault's target dir; its own target dir is kept for reuse.
    (cd / && nice cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked \
      --root "$WORK/tools" --target-dir "$WORK/s3s-fs-target") >"$WORK/s3s-fs-install.log" 2>&1 ||
      { tail -n 20 "$WORK/s3s-fs-install.log" >&2; exit 1; }
    S3S_FS=$WORK/tools/bin/s3s-fs
  fi
  S3S_FS_REV=$("$S3S_FS" --version)
  mkdir -p "$S3_DATA"
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-not-secret AWS_REGION=us-east-1
  export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  s3_filter=info; [ "$S3_TRACE" = 1 ] && s3_filter=info,s3s::service=debug
  RUST_LOG=$s3_filter NO_COLOR=1 "$S3S_FS" --host 127.0.0.1 --port 0 \
    --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$S3_DATA" >"$S3_LOG" 2>&1 &
  S3_PID=$!
  for _ in $(seq 100); do # up to 10 s
    S3_ENDPOINT=$(grep -o -m1 'server is running at http://127\.0\.0\.1:[0-9]*' "$S3_LOG" | grep -o 'http://.*' || true)
    [ -n "$S3_ENDPOINT" ] || ! kill -0 "$S3_PID" 2>/dev/null || { sleep 0.1; continue; }
    break
  done
  [ -n "$S3_ENDPOINT" ] || { echo "s3s-fs did not start; its log:" >&2; cat "$S3_LOG" >&2; exit 1; }
  export AWS_ENDPOINT_URL=$S3_ENDPOINT
  # CreateBucket through the API (UNSIGNED-PAYLOAD: curl does not hash the body).
  curl -fsS -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$S3_ENDPOINT/$S3_BUCKET" >/dev/null
  log "s3s-fs ($S3S_FS_REV) pid $S3_PID at $S3_ENDPOINT, data in $S3_DATA, request log: $S3_TRACE"
fi
# CPU seconds the server has used so far (0 without a server).
CLK_TCK=$(getconf CLK_TCK)
server_cpu() {
  if [ -n "$S3_PID" ] && [ -r "/proc/$S3_PID/stat" ]; then
    awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$S3_PID/stat"
  else echo 0; fi
}

# ---------------------------------------------------------------- corpus
# Night 1 is generated into $CORPUS. Night 2's version of every file that
# changes goes to $STATE/n2 and night 1's version of the same files to
# $STATE/n1, so that every run can put the corpus back to night 1 (a fresh
# copy renamed into place, as a nightly job writes its files) and then to
# night 2. Unchanged files keep their inodes and times across runs.
GEN=$WORK/corpus.py
cat >"$GEN" <<'PY'
"""Deterministic corpus generator and night-2 mutator for scripts/bench.sh."""
import os, random, sys

VOCAB = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu account order "
         "invoice payment refund customer shipped pending cancelled active inactive premium standard "
         "basic north south east west central region warehouse berlin paris london madrid rome vienna "
         "prague warsaw oslo dublin lisbon athens widget gadget sprocket gizmo bolt nut screw panel "
         "cable sensor motor pump valve filter bracket housing cover seal spring gear shaft "
         "bearing").split()


def config_text(rng, i):
    lines = ["# managed by config-management; do not edit by hand", "[service]",
             "name = svc-%d" % i, "enabled = %s" % rng.choice(["true", "false"])]
    target = rng.randrange(200, 6000)
    size = sum(len(l) + 1 for l in lines)
    section = 0
    while size < target:
        if rng.random() < 0.1:
            section += 1
            l = "\n[%s_%d]" % (rng.choice(VOCAB), section)
        else:
            l = "%s_%s = %s" % (rng.choice(VOCAB), rng.choice(VOCAB), rng.choice([
                str(rng.randrange(65536)), rng.choice(VOCAB), "/var/lib/%s/%s" % (rng.choice(VOCAB), rng.choice(VOCAB)),
                "%d.%d.%d.%d" % tuple(rng.randrange(256) for _ in range(4)), "%016x" % rng.getrandbits(64)]))
        lines.append(l)
        size += len(l) + 1
    return "\n".join(lines) + "\n"


def config_paths():
    out = []
    for a in range(30):
        for b in range(10):
            for c in range(10):
                out.append(os.path.join("etc", "app%02d" % a, "conf.d%d" % b, "unit%02d.conf" % c))
    return out  # 3000 files, 330 directories


def gen(root):
    rng = random.Random(20261123)
    for i, p in enumerate(config_paths()):
        p = os.path.join(root, p)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(config_text(rng, i))
    ks = os.path.join(root, "keystores")
    os.makedirs(ks, exist_ok=True)
    for i in range(100):
        with open(os.path.join(ks, "host%03d.p12" % i), "wb") as f:
            f.write(rng.randbytes(rng.randrange(2048, 8193)))


def small_paths(n):
    return [os.path.join("etc", "svc%03d" % (i // 2000), "conf%02d" % ((i // 100) % 20),
                         "file%06d.conf" % i) for i in range(n)]


def gen_small(root, n):
    rng = random.Random(20261129)
    for i, p in enumerate(small_paths(n)):
        p = os.path.join(root, p)
        if i % 100 == 0:
            os.makedirs(os.path.dirname(p), exist_ok=True)
        text = config_text(rng, i)
        with open(p, "w") as f:
            f.write(text[: rng.randrange(200, 7800)])


def write_changed(root, out, rel, data):
    with open(os.path.join(root, rel), "rb") as f:
        old = f.read()
    for base, content in ((os.path.join(out, "n1"), old), (os.path.join(out, "n2"), data(old))):
        p = os.path.join(base, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content)


def mutate(root, out):
    """Writes night 1's and night 2's versions of the files that change to out/n1 and out/n2."""
    rng = random.Random(424242)
    small = int(os.environ.get("BENCH_SMALL_FILES", "0"))
    paths = small_paths(small)[7::max(1, small // 30)][:30] if small else config_paths()[7::100][:30]
    for p in paths:
        line = b"# changed on night 2: %016x\n" % rng.getrandbits(64)
        write_changed(root, out, p, lambda old: old + line)
    if small:
        print("30 of %d small files edited" % small)
        return
    ks = os.path.join("keystores", "host042.p12")
    write_changed(root, out, ks, lambda old: rng.randbytes(len(old)))
    print("30 configs edited, 1 keystore rotated", end="")


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    elif sys.argv[1] == "gen-small":
        gen_small(sys.argv[2], int(sys.argv[3]))
    else:
        mutate(sys.argv[2], sys.argv[3])
PY

# A PostgreSQL cluster of our own (BENCH_SMALL_FILES=0): a private directory, a
# free port, a Unix socket in that directory; stopped and deleted on any exit.
pg_stop() {
  if [ -n "$PG_DIR" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    cp "$PG_DIR/server.log" "$LOGS/pg.server.log" 2>/dev/null || true
    rm -rf "$PG_DIR"
    PG_DIR=
  fi
}
pg_start() {
  PG_DIR=$(mktemp -d "$WORK/pg.XXXXXX")
  chmod 755 "$PG_DIR"
  chown postgres: "$PG_DIR"
  export PGHOST=$PG_DIR PGUSER=postgres PGDATABASE=bench
  PGPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export PGPORT
  timeout "$TIMEOUT" runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync \
    >"$LOGS/pg.initdb.log" 2>&1
  timeout "$TIMEOUT" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-k $PG_DIR -p $PGPORT -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_wal_size=4GB" \
    start >/dev/null
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PGPORT, socket and data in $PG_DIR"
}
pg_dumps() { # directory: plain SQL, custom format, custom format uncompressed, written in parallel
  local d=$1 pids=() p rc=0
  mkdir -p "$d"
  timeout "$TIMEOUT" "$PG_BIN/pg_dump" -f "$d/bench.sql" & pids+=($!)
  timeout "$TIMEOUT" "$PG_BIN/pg_dump" -Fc -f "$d/bench.dump" & pids+=($!)
  timeout "$TIMEOUT" "$PG_BIN/pg_dump" -Fc -Z0 -f "$d/bench-z0.dump" & pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  [ "$rc" = 0 ] || { echo "pg_dump failed (rc=$rc)" >&2; return 1; }
}

STATE=$WORK/state
export BENCH_SMALL_FILES=$SMALL_FILES
GEN_T0=$(date +%s)
GEN_SUM=$(sha256sum "$GEN" | cut -c1-16)
if [ "$REUSE" = 1 ] && [ "$(sed -n 2p "$WORK/corpus.env")" = "# generator $GEN_SUM" ]; then
  log "reusing the corpus in $CORPUS (BENCH_REUSE_CORPUS=1, same settings and generator)"
  # shellcheck source=/dev/null
  . "$WORK/corpus.env"
elif [ "$SMALL_FILES" -gt 0 ]; then
  rm -rf "$CORPUS" "$STATE" && mkdir -p "$CORPUS"
  log "generating corpus in $CORPUS ($SMALL_FILES small files)"
  python3 "$GEN" gen-small "$CORPUS" "$SMALL_FILES"
  NIGHT2=$(python3 "$GEN" mutate "$CORPUS" "$STATE")
  dump_bytes=0 dump_ratio=–
else
  rm -rf "$CORPUS" "$STATE" && mkdir -p "$CORPUS"
  log "generating corpus in $CORPUS (3,000 configs, 100 keystores, pgbench -s $PG_SCALE dumps)"
  python3 "$GEN" gen "$CORPUS"
  NIGHT2=$(python3 "$GEN" mutate "$CORPUS" "$STATE")
  pg_start
  timeout "$TIMEOUT" "$PG_BIN/createdb" bench
  log "pgbench -i -s $PG_SCALE"
  timeout "$TIMEOUT" "$PG_BIN/pgbench" -q -i -s "$PG_SCALE" >"$LOGS/pg.init.log" 2>&1
  # pgbench's filler is blank padding that compresses ~100x; real rows do not.
  # Give it text that compresses about 2x (as scripts/bench-pg.sh does).
  log "filling pgbench_accounts.filler with text"
  timeout "$TIMEOUT" "$PG_BIN/psql" -q -X -v ON_ERROR_STOP=1 \
    -c "UPDATE pgbench_accounts SET filler = substr(md5(aid::text) || md5((aid * 7)::text) || repeat('ab', 20), 1, 84)" \
    -c "VACUUM FULL ANALYZE pgbench_accounts" >"$LOGS/pg.filler.log" 2>&1
  log "night 1 dumps"
  pg_dumps "$CORPUS/db"
  log "night 2: pgbench -n -t $PG_TXNS, dumps"
  timeout "$TIMEOUT" "$PG_BIN/pgbench" -n -t "$PG_TXNS" >"$LOGS/pg.txns.log" 2>&1
  pg_dumps "$STATE/n2/db"
  pg_stop
  mkdir -p "$STATE/n1/db"
  cp "$CORPUS"/db/* "$STATE/n1/db/"
  NIGHT2="$NIGHT2, $PG_TXNS pgbench transactions and fresh dumps"
  dump_bytes=$(cat "$CORPUS"/db/* | wc -c)
  dump_z3=$(cat "$CORPUS"/db/* | zstd -3 -T0 -q -c | wc -c)
  dump_ratio=$(awk -v a="$dump_bytes" -v b="$dump_z3" 'BEGIN{printf "%.2f", a/b}')
  DUMP_SIZES=$(cd "$CORPUS/db" && for f in bench.sql bench.dump bench-z0.dump; do
    printf '%s %s MiB, ' "$f" "$(awk -v b="$(stat -c %s "$f")" 'BEGIN{printf "%.0f", b/1048576}')"; done)
fi
if [ "$REUSE" = 0 ]; then
  { echo "# $CORPUS_PARAMS"; echo "# generator $GEN_SUM"
    declare -p NIGHT2 dump_bytes dump_ratio; [ -z "${DUMP_SIZES:-}" ] || declare -p DUMP_SIZES; } >"$WORK/corpus.env"
fi
corpus_bytes=$(du -sb "$CORPUS" | cut -f1)
corpus_files=$(find "$CORPUS" -type f | wc -l)
log "corpus: $corpus_files files, $corpus_bytes bytes, generated in $(($(date +%s) - GEN_T0)) s; dumps zstd -3 ratio $dump_ratio"
log "night 2: $NIGHT2 ($(find "$STATE/n2" -type f | wc -l) files)"

# Puts night N's version (n1 or n2) of every file that changes into the corpus:
# a new copy renamed over the old file, as a nightly job writes its output.
apply_night() {
  local src=$STATE/$1 f
  while IFS= read -r -d '' f; do
    cp "$src/$f" "$CORPUS/$f.bench-new"
    mv -f "$CORPUS/$f.bench-new" "$CORPUS/$f"
  done < <(cd "$src" && find . -type f -print0)
}
if [ "$REUSE" = 1 ]; then
  apply_night n1
  corpus_bytes=$(du -sb "$CORPUS" | cut -f1)
fi

# ---------------------------------------------------------------- keys & repos
OWNER_KEY=$KEYS/owner.key
RECIPIENT=$("$VAULT" key generate --output "$OWNER_KEY")
export RESTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD RUSTIC_PASSWORD=$PASSWORD
export BORG_BASE_DIR=$WORK/borg-base BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no
export RESTIC_CACHE_DIR=$WORK/restic-cache

repo() { # where a tool's repository is, in its own syntax
  case "$TARGET:$1" in
    s3:vault) echo "s3://$S3_BUCKET/vault" ;;
    s3:restic) echo "s3:$S3_ENDPOINT/$S3_BUCKET/restic" ;;
    *) echo "$REPOS/$1" ;;
  esac
}
init_repos() { # tools: new, empty repositories (and caches) for one run
  local t
  for t in "$@"; do
    case "$t" in
      tar) mkdir -p "$(repo tar)" ;;
      vault) rm -f "$KEYS/writer.key"
        "$VAULT" init -r "$(repo vault)" --owner "$RECIPIENT" --owner-name ops \
        --writer-key-out "$KEYS/writer.key" >"$LOGS/vault.init.log" 2>&1 ;;
      vault-base) rm -f "$KEYS/writer-base.key"
        "$VAULT_BASE" init -r "$(repo vault-base)" --owner "$RECIPIENT" --owner-name ops \
        --writer-key-out "$KEYS/writer-base.key" >"$LOGS/vault-base.init.log" 2>&1 ;;
      restic) restic -r "$(repo restic)" init --repository-version 2 >"$LOGS/restic.init.log" 2>&1 ;;
      borg) borg init --encryption repokey-blake2 "$(repo borg)" >"$LOGS/borg.init.log" 2>&1 ;;
      rustic) rustic -r "$(repo rustic)" init >"$LOGS/rustic.init.log" 2>&1 ;;
      bupstash) # backups with a put-only key (cannot decrypt), like vault's writer key
        rm -f "$KEYS/bupstash.key" "$KEYS/bupstash-put.key"
        { bupstash init -r "$(repo bupstash)" &&
          bupstash new-key -o "$KEYS/bupstash.key" &&
          bupstash new-sub-key --put -k "$KEYS/bupstash.key" -o "$KEYS/bupstash-put.key"; } \
          >"$LOGS/bupstash.init.log" 2>&1 ;;
    esac
  done
}

# ---------------------------------------------------------------- step commands
# Each prints nothing on stdout that matters; all output goes to the step log.
run_step() { # tool step
  local tool=$1 step=$2 r rt=$RESTORE/$1 cache=$WORK/vault-cache wkey=$KEYS/writer.key
  r=$(repo "$tool")
  VAULT_BIN=$VAULT
  if [ "$tool" = vault-base ]; then # another vault binary (BENCH_VAULT_BASE), same commands
    VAULT_BIN=$VAULT_BASE cache=$WORK/vault-base-cache wkey=$KEYS/writer-base.key tool=vault
  fi
  case "$tool:$step" in
    tar:backup1 | tar:backup2)

      tar -C "$CORPUS" -cf - . | zstd -3 -T0 -q | age -r "$RECIPIENT" >"$r/$step.tar.zst.age" ;;
    tar:restore)
      age -d -i "$OWNER_KEY" "$r/backup2.tar.zst.age" | zstd -d -q | tar -C "$RESTORE/tar" -xf - ;;
    tar:verify)
      age -d -i "$OWNER_KEY" "$r/backup2.tar.zst.age" | zstd -d -q >/dev/null ;;
    vault:backup1 | vault:backup2)
      vault_cmd backup -r "$r" -i "$wkey" --cache-dir "$cache" "$CORPUS" ;;
    vault:restore)
      vault_cmd restore -r "$r" -i "$OWNER_KEY" latest --target "$rt" ;;
    vault:verify)
      vault_cmd restore -r "$r" -i "$OWNER_KEY" latest --verify ;;
    vault:check)
      vault_cmd check -r "$r" -i "$OWNER_KEY" --read-data ;;
    restic:backup1 | restic:backup2)
      (cd "$CORPUS" && restic -r "$r" backup --compression auto --host bench .) ;;
    restic:restore)
      restic -r "$r" restore latest --target "$RESTORE/restic" ;;
    restic:verify)
      restic -r "$r" check --read-data ;;
    borg:backup1 | borg:backup2)
      (cd "$CORPUS" && borg create --compression zstd,3 --stats "$r::$step" .) ;;
    borg:restore)
      (cd "$RESTORE/borg" && borg extract "$r::backup2") ;;
    borg:verify)
      borg check --verify-data "$r" ;;
    rustic:backup1 | rustic:backup2)
      (cd "$CORPUS" && rustic -r "$r" backup --host bench .) ;;
    rustic:restore)
      rustic -r "$r" restore latest "$RESTORE/rustic" ;;
    rustic:verify)
      rustic -r "$r" check --read-data ;;
    bupstash:backup1 | bupstash:backup2)
      bupstash put -r "$r" -k "$KEYS/bupstash-put.key" --send-log "$WORK/bupstash.sendlog" \
        step="$step" "$CORPUS" ;;
    bupstash:restore)
      bupstash restore -r "$r" -k "$KEYS/bupstash.key" --into "$RESTORE/bupstash" step=backup2 ;;
    bupstash:verify)
      bupstash get -r "$r" -k "$KEYS/bupstash.key" step=backup2 >/dev/null ;;
    *) echo "no command for $tool:$step" >&2; return 1 ;;
  esac
  # BENCH_RESTORE_SYNC: a restore is done when its data is on disk, whichever tool wrote it.
  if [ "$step" = restore ] && [ "$RESTORE_SYNC" = 1 ]; then sync -f "$RESTORE"; fi
}
# BENCH_PERF: vault runs under `perf record` or `perf trace -s` (output in $LOGS/perf/), for
# profiling only: the wall times and RSS of such a run include perf's overhead.
vault_cmd() {
  # shellcheck disable=SC2086 # PERF_ARGS is a list of options
  case "${BENCH_PERF_MODE:-none}" in
    record) perf record -q $PERF_ARGS -o "$BENCH_PERF_OUT.data" -- "$VAULT_BIN" "$@" ;;
    trace) perf trace -s -o "$BENCH_PERF_OUT.trace" -- "$VAULT_BIN" "$@" ;;
    *) "$VAULT_BIN" "$@" ;;
  esac
}
export -f run_step repo vault_cmd
export CORPUS REPOS RESTORE RESTORE_SYNC KEYS WORK VAULT VAULT_BASE RECIPIENT OWNER_KEY TARGET S3_BUCKET S3_ENDPOINT PERF_ARGS

declare -A WALL CPU RSS STATUS LOAD SCPU REQS YARD
yardstick() { # seconds `tar -cf - . | zstd -3 -T0` takes over the corpus now
  local t0 t1
  t0=$(date +%s.%N)
  tar -C "$CORPUS" -cf - . | zstd -3 -T0 -q >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'
}
# Drops a local repository's files from the page cache (BENCH_COLD_REPO=1), so that a step reads
# them from disk whichever way the tool wrote them. Only clean pages go: sync first.
evict_repo() { # tool
  [ "$COLD_REPO" = 1 ] && [ "$TARGET" = local ] || return 0
  local dir
  dir=$(repo "$1")
  sync
  python3 - "$dir" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}

timed() { # tool step run
  local tool=$1 step=$2 run=$3 k="$1:$2:$3" tf="$TIMES/$1.$2.$3" lf="$LOGS/$1.$2.$3.log" rc=0 load0 scpu0 off0=0
  case "$step" in restore | verify | check) evict_repo "$tool" ;; esac
  [ "$YARDSTICK" != 1 ] || YARD[$k]=$(yardstick)
  log "run $run: $tool $step${YARD[$k]:+ (yardstick ${YARD[$k]} s)}"
  if [ "$tool" = vault ] && [ "$(perf_mode "$run")" != none ]; then
    BENCH_PERF_MODE=$(perf_mode "$run")
    export BENCH_PERF_OUT=$LOGS/perf/vault.$step.$run BENCH_PERF_MODE
  else
    unset BENCH_PERF_OUT BENCH_PERF_MODE
  fi
  load0=$(cut -d' ' -f1 /proc/loadavg)
  { echo "# loadavg before: $(cat /proc/loadavg)"; } >"$lf"
  scpu0=$(server_cpu)
  [ -z "$S3_PID" ] || off0=$(stat -c %s "$S3_LOG")
  timeout "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$tf" \
    bash -c 'set -euo pipefail; run_step "$@"' _ "$tool" "$step" >>"$lf" 2>&1 || rc=$?
  echo "# loadavg after: $(cat /proc/loadavg)" >>"$lf"
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$tf" 2>/dev/null || echo "0 0 0 0")
  WALL[$k]=$wall
  CPU[$k]=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
  RSS[$k]=$(awk -v k="$rss" 'BEGIN{printf "%.0f", k/1024}')
  LOAD[$k]="$load0 → $(cut -d' ' -f1 /proc/loadavg)"
  if [ -n "$S3_PID" ]; then
    SCPU[$k]=$(awk -v a="$scpu0" -v b="$(server_cpu)" 'BEGIN{printf "%.2f", b-a}')
    if [ "$S3_TRACE" = 1 ]; then
      sleep 0.2 # let the server flush the last responses' lines
      REQS[$k]=$(python3 "$WORK/s3reqs.py" "$S3_LOG" "$off0" "$(stat -c %s "$S3_LOG")" "$wall" 2>>"$lf" || echo "| (log not parsed) |")
    fi
  fi
  if [ "$rc" = 0 ]; then
    STATUS[$k]=ok
  else
    STATUS[$k]="FAILED(rc=$rc)"
    log "  $tool $step FAILED (rc=$rc); last lines of $lf:"
    tail -n 5 "$lf" >&2
  fi
  log "  wall ${WALL[$k]} s, cpu ${CPU[$k]} s, rss ${RSS[$k]} MiB, load ${LOAD[$k]}${SCPU[$k]:+, server cpu ${SCPU[$k]} s}"
  [ -z "${REQS[$k]:-}" ] || log "  requests: ${REQS[$k]}"
}

# Per-step request report from the s3s-fs debug log: one markdown row tail.
cat >"$WORK/s3reqs.py" <<'PY'
"""Summarises the requests an s3s-fs debug log records between two byte offsets.

s3s logs `req: Request { method, uri, headers }` when a request arrives and
`duration: D, resp: Response { status }` when its response is ready, both inside
a span carrying the request's start time. For PUTs the duration covers
receiving the body; for GETs it ends before the body is sent, so GET time is
undercounted (on loopback a 4 MiB body takes a few ms).
"""
import re, sys
from datetime import datetime

path, start, end, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
with open(path, "rb") as f:
    f.seek(start)
    text = f.read(end - start).decode("utf-8", "replace")

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
START = re.compile(r"start_time: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))?")
reqs = {}  # start_time string -> dict
for rec in re.split(r"\n\s*\n", text):
    m = START.search(rec)
    if not m:
        continue
    key = m.group(0)
    r = reqs.setdefault(key, {})
    if "t0" not in r:
        frac = (m.group(2) or "0")
        r["t0"] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + float("0." + frac)
    q = re.search(r"req: Request \{ method: (\w+), uri: (\S+),", rec)
    if q:
        r["method"], r["uri"] = q.group(1), q.group(2)
        cl = re.search(r'"content-length": "(\d+)"', rec)
        r["bytes"] = int(cl.group(1)) if cl else 0
    d = re.search(r"duration: ([0-9.]+)(ns|µs|us|ms|s)\b", rec)
    if d:
        r["dur"] = float(d.group(1)) * UNITS[d.group(2)]
        st = re.search(r"status: (\d+)", rec)
        r["status"] = int(st.group(1)) if st else 0
        cl = re.search(r'resp: Response .*?"content-length": "(\d+)"', rec)
        r["out"] = int(cl.group(1)) if cl and r["status"] < 300 else 0


def op(r):
    m, u = r["method"], r["uri"]
    path, _, query = u.partition("?")
    bucket_only = path.strip("/").count("/") == 0
    if m == "PUT":
        return "UploadPart" if "partNumber=" in query else ("CreateBucket" if bucket_only else "PUT")
    if m == "POST":
        return "Complete" if "uploadId=" in query else ("CreateMPU" if "uploads" in query else "POST")
    if m == "GET":
        return "LIST" if bucket_only else "GET"
    return m


done = [r for r in reqs.values() if "method" in r and "dur" in r]
if not done:
    print("| 0 | – | – | – | – |")
    sys.exit()
counts, nbytes, nout = {}, 0, 0
for r in done:
    counts[op(r)] = counts.get(op(r), 0) + 1
    nbytes += r["bytes"]
    nout += r.get("out", 0) if r["method"] == "GET" else 0
errors = sum(1 for r in done if r.get("status", 0) >= 400)
events = sorted([(r["t0"], 1) for r in done] + [(r["t0"] + r["dur"], -1) for r in done])
cur = peak = 0
busy = 0.0
last = events[0][0]
for t, delta in events:
    if cur > 0:
        busy += t - last
    cur += delta
    peak = max(peak, cur)
    last = t
total = sum(r["dur"] for r in done)
puts = [r for r in done if op(r) in ("PUT", "UploadPart") and r["bytes"] >= 1 << 20]
put_note = ""
if puts:
    pt = sum(r["dur"] for r in puts)
    put_note = ", %d PUTs ≥1 MiB at %.0f MiB/s each" % (len(puts), sum(r["bytes"] for r in puts) / 1048576 / pt)
ops = " ".join("%s %d" % (k, v) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
print("| %d (%s%s%s) | %.1f / %.1f | %.2f | %d | %.0f %% |" % (
    len(done), ops, (", %d errors" % errors) if errors else "", put_note, nbytes / 1048576, nout / 1048576,
    total / wall if wall > 0 else 0, peak, 100 * busy / wall if wall > 0 else 0))
PY

declare -A SIZE1 SIZE2
size_of() { # s3s-fs keeps each object as one file (its metadata sits outside the bucket)
  if [ "$TARGET" = s3 ]; then du -sb "$S3_DATA/$S3_BUCKET/$1" | cut -f1; else du -sb "$(repo "$1")" | cut -f1; fi
}

# Manifest of the corpus as of night 2, to check every restore.
manifest() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b3sum); }
restored_root() { # where a tool put the corpus inside its restore target
  local t=$RESTORE/$1
  if [ -d "$t$CORPUS" ]; then echo "$t$CORPUS"; else echo "$t"; fi
}
declare -A RESTORE_OK

# ---------------------------------------------------------------- the run
# Each run: new repositories, corpus back to night 1, first backup by every
# tool, night 2, second backup, full restore (checked against the corpus),
# verify read. ext4 without a journal (as on this VM) skips inodes deleted in
# the last 60 s (300 s while their inode table block is dirty) when it
# allocates new ones, so creating files right after a mass delete is several
# times slower: the previous run's restores are deleted (and synced) at the
# start of a run, and its restores wait until DELETE_GAP seconds have passed.
perf_mode() { # run: how vault is profiled in it (record, trace or none)
  if [ "$1" -le ${#PERF_MODES[@]} ]; then echo "${PERF_MODES[$(($1 - 1))]}"; else echo none; fi
}
runs_of() { case "$1" in vault | vault-base | tar) echo "$RUNS" ;; *) echo "$PEER_RUNS" ;; esac; }
clear_run() {
  # The small-file restores stay until the end: deleting 200,000 files takes minutes here
  # (the file system is mounted with `discard`) and slows the next file creations (above).
  rm -rf "${REPOS:?}"/* "$WORK/vault-cache" "$WORK/vault-base-cache" "$WORK/restic-cache" "$WORK/borg-base" \
    "$WORK/bupstash.sendlog"
  [ "$TARGET" != s3 ] || rm -rf "${S3_DATA:?}/$S3_BUCKET"/*
  sync
  date +%s >"$WORK/deleted-at" # for the next run, or the next invocation on the same work dir
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$RUNS"); do
  tools=()
  for t in "${active[@]}"; do [ "$run" -gt "$(runs_of "$t")" ] || tools+=("$t"); done
  # vault and vault-base swap places every other run: run second in a pair, either was up to
  # 10 % faster on a shared machine, whatever the change (A/B pairs in both orders, session notes
  # of 2026-12-01).
  # Only when both run: alone, vault stays vault.
  if [ $((run % 2)) = 0 ] && [[ " ${tools[*]} " == *" vault "* && " ${tools[*]} " == *" vault-base "* ]]; then
    for i in "${!tools[@]}"; do
      case ${tools[$i]} in vault) tools[i]=vault-base ;; vault-base) tools[i]=vault ;; esac
    done
  fi
  if [ "$run" -gt 1 ]; then
    clear_run
    apply_night n1
  fi
  RESTORE=$RESTORE_BASE/run$run
  mkdir -p "$RESTORE"
  init_repos "${tools[@]}"
  for t in "${tools[@]}"; do
    timed "$t" backup1 "$run"
    [ "$run" != 1 ] || SIZE1[$t]=$(size_of "$t")
  done
  log "run $run: night 2 ($NIGHT2)"
  apply_night n2
  sleep 1 # let mtimes settle past the backup tools' "too recent" windows
  [ "$run" != 1 ] || manifest "$CORPUS" >"$WORK/manifest.b3"
  for t in "${tools[@]}"; do
    timed "$t" backup2 "$run"
    [ "$run" != 1 ] || SIZE2[$t]=$(size_of "$t")
  done
  wait_s=$((DELETED_AT + DELETE_GAP - $(date +%s)))
  if [ "$wait_s" -gt 0 ] && [ "$SMALL_FILES" -gt 0 ]; then # ~3,100 inodes of the dump corpus do not matter
    log "run $run: waiting ${wait_s} s so that no restore allocates inodes freed in the last $DELETE_GAP s"
    sleep "$wait_s"
  fi
  for t in "${tools[@]}"; do
    mkdir -p "$RESTORE/$t"
    # Untimed: the repositories the backups just wrote (GBs with several tools) are written out
    # now, not during the restore (a loop-mounted restore file system shares the disk with them).
    sync
    timed "$t" restore "$run"
    # Untimed: what a tool left in the page cache is written out now, not during the next tool's
    # restore (vault's ends with syncfs, which would wait for it: ~0.3 s after tar's restore).
    sync
    if diff -q <(manifest "$(restored_root "$t")") "$WORK/manifest.b3" >/dev/null; then
      RESTORE_OK[$t]=${RESTORE_OK[$t]:-identical}
    else
      RESTORE_OK[$t]="DIFFERS in run $run"
      log "  $t restore differs from the corpus"
    fi
    # Disk: the dump corpus's restores (1 GB each, ~3,100 files) go as soon as they are checked;
    # the small-file trees stay until the next run (see DELETE_GAP).
    # On a journaled ext4 (DELETE_GAP 0) deleting them costs the next restores nothing: they go too,
    # and the deletion is synced untimed: unsynced, the next tool's restore paid for it (vault's
    # final syncfs waited for the 1 GB deleted before it: 2.8-3.6 s against 1.4-1.8 s synced).
    { [ "$SMALL_FILES" -gt 0 ] && [ "$DELETE_GAP" -gt 0 ]; } || { rm -rf "${RESTORE:?}/$t" && sync; }
  done
  for t in "${tools[@]}"; do
    [ "$VERIFY" = 1 ] || continue
    timed "$t" verify "$run"
    # vault's --verify deletes its sandbox restore at the end
    [[ "$t" != vault* ]] || [ "$SMALL_FILES" = 0 ] || { DELETED_AT=$(date +%s); date +%s >"$WORK/deleted-at"; }
  done
  for t in "${tools[@]}"; do
    [ "$VERIFY" = 1 ] || continue
    [[ "$t" != vault* ]] || timed "$t" check "$run"
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
clear_run

# ---------------------------------------------------------------- report
MD=$WORK/results.md
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f×", a/b; else print "–" }'; }
label() {
  case "$1" in
    backup1) echo "first backup" ;; backup2) echo "second backup" ;;
    restore) echo "full restore" ;; verify) echo "full verify read" ;;
    check) echo "full verify read" ;;
  esac
}
median() { # numbers, one per argument (empty ones ignored): their median, or – if none
  printf '%s\n' "$@" | awk '/^[0-9.]+$/' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "–"; else if (NR % 2) printf "%.2f", v[(NR + 1) / 2];
      else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# Sets S_N (runs measured), S_WALL, S_YARD, S_YR (medians), S_YRS (each run's ratio),
# S_CPU, S_SCPU (medians), S_RSS (largest), S_LOAD, S_STATUS for one tool and step.
summarize() {
  local t=$1 s=$2 r k walls=() yards=() yrs=() cpus=() scpus=() rsss=() loads=() bad=
  S_N=0
  for r in $(seq 1 "$RUNS"); do
    k="$t:$s:$r"
    [ -n "${WALL[$k]:-}" ] || continue
    # vault's profiled runs are not results (their times are in the logs)
    [ "$t" != vault ] || [ "$(perf_mode "$r")" = none ] || continue
    S_N=$((S_N + 1))
    walls+=("${WALL[$k]}"); cpus+=("${CPU[$k]}"); rsss+=("${RSS[$k]}"); scpus+=("${SCPU[$k]:-}")
    yards+=("${YARD[$k]:-}"); loads+=("${LOAD[$k]}")
    yrs+=("$(awk -v a="${WALL[$k]}" -v b="${YARD[$k]:-0}" 'BEGIN{ if (b > 0) printf "%.2f", a/b }')")
    [ "${STATUS[$k]}" = ok ] || bad="$bad ${STATUS[$k]} in run $r"
  done
  S_WALL=$(median "${walls[@]}"); S_YARD=$(median "${yards[@]}"); S_YR=$(median "${yrs[@]}")
  S_CPU=$(median "${cpus[@]}"); S_SCPU=$(median "${scpus[@]}")
  S_RSS=$(printf '%s\n' "${rsss[@]}" | sort -g | tail -n 1)
  S_YRS=$(IFS=,; echo "${yrs[*]}" | sed 's/,/, /g')
  S_LOAD=$(IFS=';'; echo "${loads[*]}" | sed 's/;/; /g')
  S_STATUS=${bad:-ok}
  S_STATUS=${S_STATUS# }
}
how() {
  case "$1:$2" in
    vault*:verify) echo "restore --verify" ;; vault*:check) echo "check --read-data" ;;
    restic:verify) echo "check --read-data" ;; borg:verify) echo "check --verify-data" ;;
    rustic:verify) echo "check --read-data" ;; tar:verify) echo "age -d \\| zstd -d >/dev/null" ;;
    *) echo "" ;;
  esac
}
{
  echo "# vault benchmark results"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); host: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
  echo "- vault: $VAULT_REV, release build"
  [ -z "$VAULT_BASE" ] || echo "- vault-base: $BENCH_VAULT_BASE (BENCH_VAULT_BASE), the same commands with another vault binary"
  echo "- versions: $(restic version 2>/dev/null | cut -d' ' -f1-2 || true); $(borg --version 2>/dev/null || true); age $(age --version 2>/dev/null || true); $(zstd --version 2>/dev/null | sed 's/\*\*\* //; s/ \*\*\*//; s/, by.*//' || true)$(command -v rustic >/dev/null && echo "; $(rustic --version)" || true)$(command -v bupstash >/dev/null && echo "; $(bupstash version)" || true)"
  if [ "$SMALL_FILES" -gt 0 ]; then
    echo "- corpus: $corpus_files small files, $(mib "$corpus_bytes") MiB (BENCH_SMALL_FILES)"
  else
    echo "- corpus: $corpus_files files, $(mib "$corpus_bytes") MiB ($(find "$CORPUS/etc" -type f | wc -l) configs, 100 keystores, pg_dump of a \`pgbench -i -s $PG_SCALE\` database with a text filler: ${DUMP_SIZES%, }; zstd -3 ratio of the dumps **$dump_ratio**)"
  fi
  [ "$YARDSTICK" != 1 ] || echo "- **× yardstick**: the step's wall time over that of \`tar -cf - . | zstd -3 -T0 >/dev/null\` on the corpus, timed right before the step (lower is better)"
  echo "- night 2: $NIGHT2"
  echo "- runs: $RUNS of every step for vault and tar, $PEER_RUNS for the other tools (BENCH_RUNS, BENCH_PEER_RUNS); medians below"
  [ "$PERF" != 1 ] || echo "- BENCH_PERF=\"${PERF_MODES[*]}\": vault ran under perf in the first ${#PERF_MODES[@]} runs, which are left out of its medians and RSS"
  echo "- **warm page cache** for the corpus (it cannot be dropped here); repositories $([ "$COLD_REPO" = 1 ] && echo "**dropped from the page cache before each restore, verify and check** (BENCH_COLD_REPO=1)" || echo "as their backups left them in the page cache"); load average at start $LOAD_START, at end $LOAD_END"
  echo "  (other work shares this machine, so CPU and wall times are noisy; compare ratios$([ "$TARGET" = s3 ] && echo " between tools" || echo " to tar"))"
  echo "- peak RSS is the largest single process of the step (GNU time over a shell pipeline for tar)"
  echo "- restores go to $RESTORE_FS under $RESTORE_BASE; vault's --verify sandbox is under $TMPDIR"
  [ "$RESTORE_SYNC" != 1 ] || echo "- every restore is timed until its data is on disk (\`sync -f\` on that file system ends the step; BENCH_RESTORE_SYNC=1)"
  echo "- MiB/s is the corpus size over the wall time (for night 2: the corpus scanned, not the bytes sent)"
  if [ "$TARGET" = s3 ]; then
    echo "- target: **S3**, $S3S_FS_REV on $S3_ENDPOINT (same machine: client and server share the 2 cores"
    echo "  and the page cache, so this shows what the client costs and how busy it keeps the server, not"
    echo "  what a remote S3 over a real network gives); server CPU is s3s-fs's user+sys during the step"
    if [ -n "${STATUS[restic:verify]:-}" ] && [ "${STATUS[restic:verify]}" != ok ]; then
      echo "- restic check fails against s3s-fs 0.14.1 as expected: the server treats restic's empty"
      echo "  \`delimiter=\` as a delimiter, so the recursive listing of data/ returns only prefixes and"
      echo "  check reports every pack missing (backup and restore do not list data/ and are unaffected)"
    fi
  fi
  echo
  echo "Median over the runs of each step's × yardstick (wall time over the yardstick's, timed right"
  echo "before it; lower is better), then the largest peak RSS of any run, in MiB:"
  echo
  hdr="| step |"; sep="|---|"
  for t in "${active[@]}"; do hdr="$hdr $t |"; sep="$sep---:|"; done
  echo "$hdr"; echo "$sep"
  for s in backup1 backup2 restore verify check; do
    row="| $(label "$s")$([ "$s" != check ] || echo " (check)") |"; any=
    for t in "${active[@]}"; do
      summarize "$t" "$s"
      if [ "$S_N" -gt 0 ]; then any=1; row="$row ${S_YR}× |"; else row="$row – |"; fi
    done
    [ -z "$any" ] || echo "$row"
  done
  row="| peak RSS backup / restore MiB |"
  for t in "${active[@]}"; do
    summarize "$t" backup1; b1=$S_RSS; summarize "$t" backup2; b2=$S_RSS; summarize "$t" restore
    row="$row $(printf '%s\n' "$b1" "$b2" | sort -g | tail -n 1) / $S_RSS |"
  done
  echo "$row"
  echo
  if [ "$TARGET" = s3 ]; then
    echo "| step | tool | runs | wall s | × yardstick (each run) | yardstick s | MiB/s | CPU s (user+sys) | server CPU s | peak RSS MiB | load 1-min before → after | status |"
    echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|"
  else
    echo "| step | tool | runs | wall s | × yardstick (each run) | yardstick s | MiB/s | × tar | CPU s (user+sys) | peak RSS MiB | load 1-min before → after | status |"
    echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|"
  fi
  for s in backup1 backup2 restore verify check; do
    for t in "${active[@]}"; do
      summarize "$t" "$s"
      [ "$S_N" -gt 0 ] || continue
      note=$(how "$t" "$s"); [ -z "$note" ] || note=" ($note)"
      st=$S_STATUS
      [ "$s" != restore ] || st="$st, ${RESTORE_OK[$t]:-?}"
      speed=$(awk -v b="$corpus_bytes" -v w="$S_WALL" 'BEGIN{ if (w > 0) printf "%.0f", b/1048576/w; else print "–" }')
      if [ "$TARGET" = s3 ]; then
        cols="$S_CPU | $S_SCPU"
      else
        summarize tar "${s/check/verify}"; tar_wall=$S_WALL
        summarize "$t" "$s"
        cols="$(ratio "$S_WALL" "$tar_wall") | $S_CPU"
      fi
      echo "| $(label "$s") | $t$note | $S_N | $S_WALL | **${S_YR}×** ($S_YRS) | $S_YARD | $speed | $cols | $S_RSS | $S_LOAD | $st |"
    done
  done
  if [ "$TARGET" = s3 ] && [ "$S3_TRACE" = 1 ]; then
    echo
    echo "Requests seen by the server per step (from its debug log). *In flight* is the time-weighted"
    echo "mean number of requests open (sum of request durations / wall) and the maximum; *busy* is the"
    echo "share of the wall time with at least one request open. A request ends when the server has its"
    echo "response ready: for a PUT that includes receiving the body, for a GET it excludes sending it."
    echo
    echo "| step | tool | requests | MiB up / down | in flight, mean | in flight, max | busy |"
    echo "|---|---|---|---:|---:|---:|---:|"
    for s in backup1 backup2 restore verify check; do
      for t in "${active[@]}"; do
        [ -n "${REQS[$t:$s]:-}" ] || continue
        note=$(how "$t" "$s"); [ -z "$note" ] || note=" ($note)"
        echo "| $(label "$s") | $t$note | ${REQS[$t:$s]#| }"
      done
    done
  fi
  echo
  echo "| tool | repo after night 1 MiB | repo after night 2 MiB | added by night 2 MiB | added / night 1 |"
  echo "|---|---:|---:|---:|---:|"
  for t in "${active[@]}"; do
    [ -n "${SIZE1[$t]:-}" ] && [ -n "${SIZE2[$t]:-}" ] || continue
    added=$((SIZE2[$t] - SIZE1[$t]))
    echo "| $t | $(mib "${SIZE1[$t]}") | $(mib "${SIZE2[$t]}") | $(mib "$added") | $(awk -v a="$added" -v b="${SIZE1[$t]}" 'BEGIN{printf "%.3f", a/b}') |"
  done
} >"$MD"
echo
cat "$MD"
echo
log "results written to $MD; logs in $LOGS"

stop_server
log "deleting the restores"
rm -rf "${RESTORE_BASE:?}"/*
date +%s >"$WORK/deleted-at"
if [ "$KEEP" != 1 ]; then
  rm -rf "$CORPUS" "$REPOS" "$RESTORE" "$TMPDIR" "$WORK/vault-cache" "$WORK/restic-cache" "$WORK/borg-base" \
    "${WORK:?}/bin" "$S3_DATA" "$WORK/bupstash.sendlog" "$STATE" "$WORK/corpus.env"
fi
