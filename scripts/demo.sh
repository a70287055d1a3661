#!/usr/bin/env bash
# The main job on an embedded default: make an owner key, create a local
# repository, back up the sample server tree in fixtures/ with the writer key,
# then prove it restores (`restore --verify`) with the owner key.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
vault=target/release/vault
work=$(mktemp -d -t vault-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== vault key generate"
recipient=$("$vault" key generate --output "$work/owner.key")
echo "owner recipient: $recipient"

echo "== vault init (local repository $work/repo)"
"$vault" init -r "$work/repo" --owner "$recipient" --owner-name ops --writer-key-out "$work/writer.key"

echo "== vault backup (writer key: can add backups, cannot read them)"
"$vault" backup -r "$work/repo" -i "$work/writer.key" --cache-dir "$work/cache" --tag demo fixtures/sample-server

echo "== vault snapshots"
"$vault" snapshots -r "$work/repo" -i "$work/writer.key"

echo "== vault restore latest --verify (owner key)"
"$vault" restore -r "$work/repo" -i "$work/owner.key" latest --verify

echo "== vault check --read-data --storage"
"$vault" check -r "$work/repo" -i "$work/owner.key" --read-data --storage

echo "== vault status (writer key: last backup and last passed drill per source)"
"$vault" status -r "$work/repo" -i "$work/writer.key" --prometheus "$work/vault.prom"
grep '^vault_status_ok' "$work/vault.prom"
