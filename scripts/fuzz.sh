#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for SECONDS each (default 60), one after
# another in one process each (one core: no -jobs/-workers), and exits non-zero on any crash, hang (a unit slower
# than FUZZ_TIMEOUT seconds, default 10) or out-of-memory (FUZZ_RSS_MB,
# default 2048).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Installs cargo-fuzz when it is missing. Uses a nightly toolchain when one is
# installed, otherwise stable with RUSTC_BOOTSTRAP=1 (libFuzzer's sanitizer
# flags are nightly-only). The S3 backend is left out of the build.
#
# The committed seeds are in fuzz/seeds/TARGET (read-only to the fuzzer); the
# corpus it grows goes to $FUZZ_WORK/corpus/TARGET (default target/fuzz-work),
# crashes to $FUZZ_WORK/artifacts/TARGET, one log per target to $FUZZ_WORK/logs.
# Reproduce a crash with: cargo fuzz run --fuzz-dir fuzz TARGET ARTIFACT.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
work=${FUZZ_WORK:-$PWD/target/fuzz-work}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list --fuzz-dir fuzz)
fi
# Built once, optimized with debug assertions (cargo-fuzz's -O); the runs
# below use these binaries, so editing the sources meanwhile changes nothing.
cargo "${toolchain[@]}" fuzz build --fuzz-dir fuzz -O
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
host=$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')
bin_dir=${CARGO_TARGET_DIR:-fuzz/target}/$host/release

mkdir -p "$work/logs"
failed=()
printf '%-14s %12s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    log="$work/logs/$t.log"
    set +e
    "$bin_dir/$t" "$corpus" "fuzz/seeds/$t" \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    units=$(find "$corpus" -type f | wc -l)
    if ((status == 0)); then
        result=ok
    else
        result="FAILED (exit $status): $(grep -m1 -E 'ERROR: libFuzzer|panicked at|SUMMARY' "$log" || echo "see $log")"
        failed+=("$t")
    fi
    printf '%-14s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$units" "$result"
done
if ((${#failed[@]})); then
    echo "fuzzing found problems in: ${failed[*]} (inputs in $work/artifacts/, logs in $work/logs/)" >&2
    exit 1
fi
