#!/usr/bin/env bash
# make-fixture-v3.sh: regenerate fixtures/repo-v3/ with scripts/make-fixture.sh.
# Only meaningful with the code of format version 3 (the script refuses any
# other); the committed fixture is the frozen reference and is never regenerated.
exec "$(dirname "$0")/make-fixture.sh" 3 "$@"
