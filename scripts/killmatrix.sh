#!/usr/bin/env bash
# The kill matrix: kills `backup`, `prune`, `forget`, `copy`,
# `key rotate-writer` and `init` at POINTS points in all (default 504),
# spread over the six commands and two backends (a local directory and S3
# served by moto), and after every kill checks that
#   1. `vault check --read-data` finds the repository clean,
#   2. no snapshot was lost (forget: none of those its policy keeps),
#   3. the next run of the same command succeeds.
#
#   scripts/killmatrix.sh [POINTS]
#
# Kill points are drawn from a seeded generator (KILLMATRIX_SEED, default 1),
# alternating between two kinds:
#   - time: SIGKILL after a delay drawn from [0, 1.2 x the command's
#     measured duration];
#   - syscall: strace delivers SIGKILL at the N-th write, fsync, rename,
#     link, unlink or send of some thread (N drawn from [1, 60]); used when
#     strace is installed.
# A command that finished before its kill point counts as "completed".
#
# Environment: VAULT_BIN (default: target/debug/vault, built if missing),
# KILLMATRIX_BACKENDS ("local s3"), KILLMATRIX_COMMANDS (all six),
# KILLMATRIX_WORK (a temporary directory, removed at the end unless
# KILLMATRIX_KEEP=1). Prints counts per command and backend; exits non-zero
# on any failed check, lost snapshot or failed rerun.
set -uo pipefail
cd "$(dirname "$0")/.."

points=${1:-504}
seed=${KILLMATRIX_SEED:-1}
backends=(${KILLMATRIX_BACKENDS:-local s3})
commands=(${KILLMATRIX_COMMANDS:-backup prune forget copy rotate-writer init})
vault=${VAULT_BIN:-}
if [[ -z $vault ]]; then
    vault=$PWD/target/debug/vault
    [[ -x $vault ]] || cargo build --quiet --bin vault || exit 2
fi
work=${KILLMATRIX_WORK:-$(mktemp -d /tmp/vault-killmatrix.XXXXXX)}
mkdir -p "$work"
have_strace=0
command -v strace >/dev/null && have_strace=1
RANDOM=$seed

. scripts/lib/moto.sh
cleanup() {
    stop_moto
    [[ ${KILLMATRIX_KEEP:-0} == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT

per_cell=$(((points + ${#commands[@]} * ${#backends[@]} - 1) / (${#commands[@]} * ${#backends[@]})))

log() { printf '%s\n' "$*" >>"$work/log"; }

# --- backends ---------------------------------------------------------------

start_matrix_moto() {
    start_moto || exit 2
    make_bucket matrix || exit 2
}

# A repository location for NAME on BACKEND.
location() {
    case $1 in
        local) echo "$work/repos/$2" ;;
        s3) echo "s3://matrix/$2" ;;
    esac
}

# --- vault helpers ----------------------------------------------------------

owner=$work/owner.key
v() { "$vault" "$@" </dev/null; }

snapshot_ids() { # REPO
    v snapshots -r "$1" -i "$owner" --json 2>>"$work/log" |
        python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)]'
}

new_repo() { # REPO [extra init args]
    local repo=$1
    shift
    v init -r "$repo" --owner "$(cat "$work/owner.pub")" --owner-name ops \
        --writer-key-out "$work/keys/$(date +%s%N).writer" "$@" >>"$work/log" 2>&1
}

# Changes the source a little so each backup has something new to store.
touch_source() {
    head -c 300000 /dev/urandom >"$work/src/changing-$((RANDOM % 4))"
}

backup() { # REPO
    touch_source
    v backup -r "$1" -i "$owner" --no-cache --host matrix "$work/src" >>"$work/log" 2>&1
}

# --- one kill -----------------------------------------------------------------

# The syscalls a kill by syscall count lands on: those that change files
# or send requests.
SYSCALLS=write,pwrite64,writev,fsync,fdatasync,rename,renameat,renameat2,link,linkat,unlink,unlinkat,sendto,sendmsg

# Runs "$@" and kills it at a seeded point: after a delay in [0, 1.2 x
# budget_ms], or at the N-th call (N in [1, max_calls]) of one of SYSCALLS
# in one thread. Sets kind (time|syscall) and status (its exit status; 137
# when killed).
killed_run() {
    local budget_ms=$1 max_calls=$2
    shift 2
    if ((have_strace && RANDOM % 2)); then
        kind=syscall
        local n=$((1 + (RANDOM * 32768 + RANDOM) % max_calls))
        # In a subshell that is not replaced by strace, so that the
        # "Killed" notice goes to /dev/null.
        (
            strace -f -qq -o /dev/null -e trace=$SYSCALLS \
                -e inject=$SYSCALLS:signal=KILL:when=$n "$@" </dev/null >>"$work/log" 2>&1
            exit $?
        ) 2>/dev/null
        status=$?
    else
        kind=time
        local ms=$((RANDOM * budget_ms * 12 / 10 / 32767))
        # --foreground: timeout kills only vault and reaps it. Without it,
        # timeout kills its whole process group, itself included, and the
        # orphaned vault is a zombie until init reaps it, which a rerun
        # checking for a live lock holder would count as alive.
        (
            timeout --foreground -s KILL "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))" "$@" \
                </dev/null >>"$work/log" 2>&1
            exit $?
        ) 2>/dev/null
        status=$?
    fi
}

# Measures the command "$@" (an executable, not a shell function) run
# twice; @N@ in an argument becomes a new number each time. Sets budget_ms
# (milliseconds of a plain run) and max_calls (the most calls of any one of
# SYSCALLS by one thread, under strace).
measure() {
    local t0 t1 a
    fresh_args() {
        args=()
        for a in "$@"; do args+=("${a//@N@/$(date +%s%N)}"); done
    }
    fresh_args "$@"
    t0=$(date +%s%N)
    "${args[@]}" </dev/null >>"$work/log" 2>&1
    t1=$(date +%s%N)
    budget_ms=$(((t1 - t0) / 1000000 + 1))
    max_calls=60
    if ((have_strace)); then
        fresh_args "$@"
        strace -f -qq -o "$work/strace.out" -e trace=$SYSCALLS "${args[@]}" </dev/null >>"$work/log" 2>&1
        max_calls=$(awk '{ split($2, a, "("); c[$1 " " a[1]]++ }
                         END { m = 1; for (k in c) if (c[k] > m) m = c[k]; print m }' "$work/strace.out")
    fi
    log "measured: ${budget_ms} ms, at most $max_calls calls: $*"
}

# --- the checks -----------------------------------------------------------------

declare -A count
bump() { count[$1]=$((${count[$1]:-0} + 1)); }
fail() { # CELL WHAT MESSAGE
    bump "$1 $2"
    echo "FAIL [$1] $2: $3" | tee -a "$work/log" >&2
}

check_clean() { # CELL REPO
    if ! v check -r "$2" -i "$owner" --read-data >>"$work/log" 2>&1; then
        fail "$1" check "check --read-data failed on $2 after a $kind kill"
        return 1
    fi
}

check_kept() { # CELL REPO IDS...
    local cell=$1 repo=$2
    shift 2
    local now
    now=$(snapshot_ids "$repo")
    for id in "$@"; do
        if ! grep -qx "$id" <<<"$now"; then
            fail "$cell" lost "snapshot $id is gone from $repo after a $kind kill"
        fi
    done
}

# A preparation step (making a repository, adding snapshots): when it fails
# the matrix did not test what it says, which counts as a failure too.
setup() {
    if ! "$@" </dev/null >>"$work/log" 2>&1; then
        fail "$cell" setup "a preparation step failed: $*"
    fi
}

rerun() { # CELL COMMAND...
    local cell=$1
    shift
    if ! "$@" </dev/null >>"$work/log" 2>&1; then
        fail "$cell" rerun "the next run failed: $*"
    fi
}

# --- the commands ---------------------------------------------------------------

cell_backup() { # BACKEND
    local cell="backup $1" repo
    repo=$(location "$1" backup)
    setup new_repo "$repo"
    setup backup "$repo"
    touch_source
    measure "$vault" backup -r "$repo" -i "$owner" --no-cache --host matrix "$work/src"
    for _ in $(seq "$per_cell"); do
        local before
        mapfile -t before < <(snapshot_ids "$repo")
        touch_source
        killed_run "$budget_ms" "$max_calls" "$vault" backup -r "$repo" -i "$owner" --no-cache --host matrix "$work/src"
        tally "$cell"
        check_clean "$cell" "$repo"
        check_kept "$cell" "$repo" "${before[@]}"
        rerun "$cell" backup "$repo"
    done
}

cell_prune() {
    local cell="prune $1" repo
    repo=$(location "$1" prune)
    setup new_repo "$repo"
    for _ in 1 2 3 4; do setup backup "$repo"; done
    setup backup "$repo"
    setup v forget -r "$repo" -i "$owner" --keep-last 3
    measure "$vault" prune -r "$repo" -i "$owner" --grace 0s
    for _ in $(seq "$per_cell"); do
        # Something to prune: a new snapshot, an old one forgotten.
        setup backup "$repo"
        setup v forget -r "$repo" -i "$owner" --keep-last 3
        local before
        mapfile -t before < <(snapshot_ids "$repo")
        killed_run "$budget_ms" "$max_calls" "$vault" prune -r "$repo" -i "$owner" --grace 0s
        tally "$cell"
        check_clean "$cell" "$repo"
        check_kept "$cell" "$repo" "${before[@]}"
        rerun "$cell" v prune -r "$repo" -i "$owner" --grace 0s
    done
}

cell_forget() {
    local cell="forget $1" repo
    repo=$(location "$1" forget)
    setup new_repo "$repo"
    for _ in 1 2 3; do setup backup "$repo"; done
    setup backup "$repo"
    measure "$vault" forget -r "$repo" -i "$owner" --keep-last 3
    for _ in $(seq "$per_cell"); do
        setup backup "$repo"
        setup backup "$repo"
        # The policy keeps the three newest: those must survive.
        local keep
        mapfile -t keep < <(snapshot_ids "$repo" | tail -n 3)
        killed_run "$budget_ms" "$max_calls" "$vault" forget -r "$repo" -i "$owner" --keep-last 3
        tally "$cell"
        check_clean "$cell" "$repo"
        check_kept "$cell" "$repo" "${keep[@]}"
        rerun "$cell" v forget -r "$repo" -i "$owner" --keep-last 3
    done
}

cell_copy() {
    local cell="copy $1" src dst
    src=$(location "$1" copy-source)
    dst=$(location "$1" copy-target)
    setup new_repo "$src"
    setup backup "$src"
    setup v init -r "$dst" --like "$src" -i "$owner"
    setup backup "$src"
    measure "$vault" copy -r "$src" -i "$owner" --to "$dst"
    for _ in $(seq "$per_cell"); do
        setup backup "$src"
        local before
        mapfile -t before < <(snapshot_ids "$dst")
        killed_run "$budget_ms" "$max_calls" "$vault" copy -r "$src" -i "$owner" --to "$dst"
        tally "$cell"
        check_clean "$cell" "$dst"
        check_kept "$cell" "$dst" "${before[@]}"
        rerun "$cell" v copy -r "$src" -i "$owner" --to "$dst"
    done
    check_clean "$cell" "$src"
}

cell_rotate-writer() {
    local cell="rotate-writer $1" repo
    repo=$(location "$1" rotate)
    setup new_repo "$repo"
    setup backup "$repo"
    measure "$vault" key rotate-writer -r "$repo" -i "$owner" --writer-key-out "$work/keys/m.@N@"
    for _ in $(seq "$per_cell"); do
        local before
        mapfile -t before < <(snapshot_ids "$repo")
        killed_run "$budget_ms" "$max_calls" "$vault" key rotate-writer -r "$repo" -i "$owner" \
            --writer-key-out "$work/keys/k.$(date +%s%N)"
        tally "$cell"
        check_clean "$cell" "$repo"
        check_kept "$cell" "$repo" "${before[@]}"
        local next=$work/keys/k.$(date +%s%N)
        rerun "$cell" v key rotate-writer -r "$repo" -i "$owner" --writer-key-out "$next"
        # The new writer key backs up.
        rerun "$cell" v backup -r "$repo" -i "$next" --no-cache --host matrix "$work/src"
    done
}

cell_init() {
    local cell="init $1" n=0
    measure "$vault" init -r "$(location "$1" init-measure-@N@)" --owner "$(cat "$work/owner.pub")" \
        --owner-name ops --writer-key-out "$work/keys/m.@N@"
    for i in $(seq "$per_cell"); do
        local repo key
        repo=$(location "$1" "init-$i")
        key=$work/keys/init-$1-$i.writer
        init() {
            v init -r "$repo" --owner "$(cat "$work/owner.pub")" --owner-name ops \
                --writer-key-out "$key"
        }
        killed_run "$budget_ms" "$max_calls" "$vault" init -r "$repo" \
            --owner "$(cat "$work/owner.pub")" --owner-name ops --writer-key-out "$key"
        tally "$cell"
        if v snapshots -r "$repo" -i "$owner" >/dev/null 2>&1; then
            # It got as far as `config`: a whole repository.
            check_clean "$cell" "$repo"
        else
            # Not a repository: the same command line again must work.
            rerun "$cell" init
        fi
        rerun "$cell" backup "$repo"
        check_clean "$cell" "$repo"
    done
}

tally() { # CELL
    bump "$1 points"
    if ((status == 0)); then
        bump "$1 completed"
    else
        bump "$1 $kind"
    fi
    log "[$1] $kind kill, exit $status"
}

# --- main -------------------------------------------------------------------------

mkdir -p "$work/src" "$work/keys" "$work/repos"
"$vault" key generate --output "$owner" >"$work/owner.pub" 2>>"$work/log" || exit 2
head -c 2000000 /dev/urandom >"$work/src/base"
for i in 0 1 2 3; do head -c 300000 /dev/urandom >"$work/src/changing-$i"; done

for b in "${backends[@]}"; do
    [[ $b == s3 ]] && start_matrix_moto
    for c in "${commands[@]}"; do
        "cell_$c" "$b"
    done
done

total_fail=0
printf '%-22s %6s %6s %8s %9s %6s %5s %6s %6s\n' command points time syscall completed check lost rerun setup
for b in "${backends[@]}"; do
    for c in "${commands[@]}"; do
        k="$c $b"
        printf '%-22s %6d %6d %8d %9d %6d %5d %6d %6d\n' "$k" "${count[$k points]:-0}" \
            "${count[$k time]:-0}" "${count[$k syscall]:-0}" "${count[$k completed]:-0}" \
            "${count[$k check]:-0}" "${count[$k lost]:-0}" "${count[$k rerun]:-0}" "${count[$k setup]:-0}"
        total_fail=$((total_fail + ${count[$k check]:-0} + ${count[$k lost]:-0} + ${count[$k rerun]:-0} + ${count[$k setup]:-0}))
    done
done
if ((total_fail)); then
    echo "kill matrix: $total_fail failure(s); log: $work/log" >&2
    KILLMATRIX_KEEP=1
    exit 1
fi
echo "kill matrix: no loss"
