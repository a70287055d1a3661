#!/usr/bin/env bash
# Builds a Debian package of vault with dpkg-deb (on every Debian; no
# cargo-deb): the binary, its manual pages (vault(1), vault-COMMAND(1),
# vault.toml(5)), bash/zsh/fish completions, the example configuration,
# the documentation, and the backup-host and drill-host systemd units
# (installed, not enabled; the package creates the `vault` user they run
# as). Everything is staged in a temporary directory, never in the tree.
#
#   scripts/package.sh                 # release build; prints the .deb's path
#   VAULT_PACKAGE_PROFILE=dev scripts/package.sh   # the debug build, quick compression
#   VAULT_PACKAGE_BIN=PATH             # package this binary, build nothing (the tests)
#   VAULT_PACKAGE_OUT=DIR              # where the .deb goes [target dir/debian]
#
# The binary is packaged without debug info (the release profile has none;
# other builds are stripped of it here, with strip from binutils).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in dpkg-deb dpkg strip ldd gzip; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is not installed (apt-get install dpkg binutils libc-bin gzip)" >&2
        exit 1
    fi
done
profile=${VAULT_PACKAGE_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case $profile in
    dev | test) built=$target_dir/debug/vault ;;
    *) built=$target_dir/$profile/vault ;;
esac
out=${VAULT_PACKAGE_OUT:-$target_dir/debian}

fast=false
[[ $profile == release ]] || fast=true
if [[ -n ${VAULT_PACKAGE_BIN:-} ]]; then
    built=$VAULT_PACKAGE_BIN
    fast=true
else
    cargo build --locked --profile "$profile" --bin vault >&2
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/vault-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
    "$root/usr/share/man/man5" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
    "$root/usr/lib/systemd/system" "$root/usr/share/doc/vault/examples"
bin=$root/usr/bin/vault
install -m 0755 "$built" "$bin"
strip --strip-debug "$bin"
v=("$bin" --no-config)
"${v[@]}" man --output "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1 "$root"/usr/share/man/man5/*.5
"${v[@]}" completions bash >"$root/usr/share/bash-completion/completions/vault"
"${v[@]}" completions zsh >"$root/usr/share/zsh/vendor-completions/_vault"
"${v[@]}" completions fish >"$root/usr/share/fish/vendor_completions.d/vault.fish"
# Units naming where the package installs vault (not this build's path).
for host in backup drill; do
    extra=()
    [[ $host == drill ]] && extra=(--drill)
    "${v[@]}" systemd --for-package --vault-bin /usr/bin/vault --user vault \
        "${extra[@]}" --output "$root/usr/lib/systemd/system" >/dev/null
done
install -m 0644 docs/vault.toml.example "$root/usr/share/doc/vault/examples/"
install -m 0644 docs/RECOVERY.md docs/SECURITY.md README.md "$root/usr/share/doc/vault/"
install -m 0755 pkg/debian/postinst "$root/DEBIAN/postinst"
chmod 0644 "$root"/usr/share/man/man*/* "$root"/usr/share/*/*completions*/* \
    "$root"/usr/lib/systemd/system/*

version=$("$bin" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
# Depends: the packages owning the shared libraries the binary links.
depends=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
    dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true
done | cut -d: -f1 | sort -u | paste -sd, - | sed 's/,/, /g')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: vault
Version: $version
Architecture: $arch
Maintainer: vault maintainers
Installed-Size: $size
Depends: ${depends:-libc6}
Recommends: fuse3, postgresql-client
Section: admin
Priority: optional
Description: encrypted, deduplicated backups that prove they restore
 Encrypted (age), deduplicated (BLAKE3 content addressing) and compressed (zstd)
 backups of files, PostgreSQL databases and command output to a local directory
 or S3, with restore drills that prove the backups restore.
CONTROL

mkdir -p "$out"
deb=$out/vault_${version}_${arch}.deb
level=()
$fast && level=(-z1)
dpkg-deb --root-owner-group "${level[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
