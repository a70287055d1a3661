#!/usr/bin/env bash
# The fleet run against a real distributed store: a Garage cluster of 3
# nodes on 127.0.0.1-3 with replication factor 3 (scripts/lib/garage.sh),
# HOSTS hosts (default 100) backing up 10 at a time with a prune between
# waves and one meanwhile, node 3 SIGKILLed when the middle wave starts.
# Requires every snapshot, a clean `check --read-data`, every host
# restoring byte for byte, and packs within 10 % of the distinct content
# (scripts/fleet-test.sh does the checking).
#
#   scripts/garage-test.sh [HOSTS]
#
# Needs garage on PATH (`cargo install garage --locked`, about 10 minutes,
# or scripts/install-test-deps.sh --garage). Environment as for
# scripts/fleet-test.sh; FLEET_KILL_NODE= keeps every node up.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v garage >/dev/null || {
    echo "garage is not installed: cargo install garage --locked (or scripts/install-test-deps.sh --garage)" >&2
    exit 2
}
echo "garage: $(garage --version 2>&1 | head -n 1)"
FLEET_STORE=garage FLEET_GARAGE_NODES=${FLEET_GARAGE_NODES:-3} \
    FLEET_KILL_NODE=${FLEET_KILL_NODE-3} FLEET_RESTORE_EVERY=${FLEET_RESTORE_EVERY:-1} \
    exec bash scripts/fleet-test.sh "${1:-100}"
