#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test
# (unit tests, the integration suite in tests/, and the documentation
# examples) and prints a total.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh

log=$(mktemp)
# The tests' metadata caches go to a directory of their own, not the
# invoking user's (root's default is /var/cache/vault).
XDG_CACHE_HOME=$(mktemp -d)
export XDG_CACHE_HOME
trap 'rm -f "$log"; rm -rf "$XDG_CACHE_HOME"' EXIT
set +e
cargo test --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
cargo test --locked --doc 2>&1 | tee -a "$log"
doc_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$doc_status
# A short round of every fuzz target, from the committed seeds (the
# campaign, an hour of it, is `scripts/fuzz.sh 300`). VAULT_FUZZ_SECONDS=0
# skips it.
fuzz_seconds=${VAULT_FUZZ_SECONDS:-5}
if [ "$fuzz_seconds" -gt 0 ]; then
    fuzz_work=$(mktemp -d)
    FUZZ_WORK=$fuzz_work CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target/fuzz} \
        bash scripts/fuzz.sh "$fuzz_seconds" 2>&1 | tee -a "$log"
    fuzz_status=${PIPESTATUS[0]}
    rm -rf "$fuzz_work"
    [ "$status" -ne 0 ] || status=$fuzz_status
fi
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     / ok$/ && NF == 5 { fp++ } /  FAILED \(exit/ { ff++ }
     END { printf "total: %d passed, %d failed; fuzz round: %d targets ok, %d failed\n", p, f, fp, ff }' "$log"
exit "$status"
