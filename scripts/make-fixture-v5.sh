#!/usr/bin/env bash
# make-fixture-v5.sh: regenerate fixtures/repo-v5/ with scripts/make-fixture.sh.
# Only meaningful with the code of format version 5 (the script refuses any
# other); the committed fixture is the frozen reference and is never regenerated.
exec "$(dirname "$0")/make-fixture.sh" 5 "$@"
