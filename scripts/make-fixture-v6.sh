#!/usr/bin/env bash
# make-fixture-v6.sh: regenerate fixtures/repo-v6/ with scripts/make-fixture.sh.
# Only meaningful with the code of format version 6 (the script refuses any
# other); the committed fixture is the frozen reference and is never regenerated.
exec "$(dirname "$0")/make-fixture.sh" 6 "$@"
