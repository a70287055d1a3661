#!/usr/bin/env bash
# Builds a Debian package of vault with cargo-deb: the binary, its manual
# pages (vault(1), vault-COMMAND(1), vault.toml(5)), bash/zsh/fish
# completions, the example configuration, and the backup-host and
# drill-host systemd units (installed, not enabled; the package creates the
# `vault` user they run as).
#
#   scripts/package.sh                 # release build; prints the .deb's path
#   VAULT_PACKAGE_PROFILE=dev scripts/package.sh   # the debug build, quick compression
#   VAULT_PACKAGE_BIN=PATH             # package this binary, build nothing (the tests)
#   VAULT_PACKAGE_OUT=DIR              # where the .deb goes [target dir/debian]
#
# The binary is packaged without debug info (the release profile has none;
# other builds are stripped of it here). Needs cargo-deb (`cargo install
# --locked cargo-deb`), dpkg-dev and binutils.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
    echo "error: cargo-deb is not installed: cargo install --locked cargo-deb" >&2
    exit 1
fi
profile=${VAULT_PACKAGE_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case $profile in
    dev | test) built=$target_dir/debug/vault ;;
    *) built=$target_dir/$profile/vault ;;
esac
out=${VAULT_PACKAGE_OUT:-$target_dir/debian}

fast=()
[[ $profile == release ]] || fast=(--fast)
if [[ -n ${VAULT_PACKAGE_BIN:-} ]]; then
    built=$VAULT_PACKAGE_BIN
    fast=(--fast)
else
    cargo build --locked --profile "$profile" --bin vault >&2
fi

stage=.deb-stage
rm -rf "$stage"
mkdir -p "$stage/man/man1" "$stage/man/man5" "$stage/completions" "$stage/units"
install -m 0755 "$built" "$stage/vault"
strip --strip-debug "$stage/vault"
v=("$stage/vault" --no-config)
"${v[@]}" man --output "$stage/man/man1" >/dev/null
gzip -9n "$stage"/man/man1/*.1 "$stage"/man/man5/*.5
"${v[@]}" completions bash >"$stage/completions/vault"
"${v[@]}" completions zsh >"$stage/completions/_vault"
"${v[@]}" completions fish >"$stage/completions/vault.fish"
# Units naming where the package installs vault (not this build's path).
for host in backup drill; do
    extra=()
    [[ $host == drill ]] && extra=(--drill)
    "${v[@]}" systemd --for-package --vault-bin /usr/bin/vault --user vault \
        "${extra[@]}" --output "$stage/units" >/dev/null
done

mkdir -p "$out"
deb=$(cargo deb --no-build --no-strip "${fast[@]}" --output "$out" 2>&1 | tail -n 1)
rm -rf "$stage"
if [[ ! -f $deb ]]; then
    echo "error: cargo deb did not write a package: $deb" >&2
    exit 1
fi
echo "$deb"
