#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test
# (unit tests, the integration suite in tests/, and the documentation
# examples) and prints a total.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
cargo test --locked --doc 2>&1 | tee -a "$log"
doc_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$doc_status
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
