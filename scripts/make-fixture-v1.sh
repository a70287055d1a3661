#!/usr/bin/env bash
# make-fixture-v1.sh: regenerate fixtures/repo-v1/ with scripts/make-fixture.sh.
# Only meaningful with the code of format version 1 (the script refuses any
# other); the committed fixture is the frozen reference and is never regenerated.
exec "$(dirname "$0")/make-fixture.sh" 1 "$@"
