#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: the age and zstd
# command-line tools (for scripts/restore-without-vault), b3sum, ssh-keygen,
# the util-linux tools the root-only tests use (mount, runuser, setpriv), perl, and a
# PostgreSQL server and client (the tests start their own cluster),
# systemd-analyze (the tests verify the units `vault systemd` writes; it works
# offline, without systemd as PID 1), moto, the S3-protocol server the S3
# tests start, PL/Perl (a dump using an untrusted language is one of the
# drill's attack vectors), GNU time (peak memory under the attack vectors),
# strace (the kill matrix kills commands at a chosen syscall), fuse3 (the
# `vault mount` tests), and the users
# drills switch between: `vault` (the service user of `vault systemd`) and
# `vault-drill` (the scratch cluster's).
#
# `scripts/install-test-deps.sh --garage` also installs Garage 2.5 (a
# distributed S3-compatible store, AGPL, used only as a test server) with
# `cargo install garage --locked`: about 10 minutes of building, so only on
# request (CI does not). With garage on PATH the test suite adds a one-node
# Garage round and scripts/garage-test.sh runs the 3-node fleet.
set -euo pipefail

garage=0
for arg in "$@"; do
    case $arg in
    --garage) garage=1 ;;
    *)
        echo "usage: $0 [--garage]" >&2
        exit 2
        ;;
    esac
done

missing=()
command -v age >/dev/null || missing+=(age)
command -v zstd >/dev/null || missing+=(zstd)
command -v b3sum >/dev/null || missing+=(b3sum)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v runuser >/dev/null || missing+=(util-linux)
command -v setpriv >/dev/null || missing+=(util-linux)
# The progress tests run vault on a pseudo-terminal with script(1).
command -v script >/dev/null || missing+=(bsdutils)
# The restore race test's unprivileged racer is a perl loop (Time::HiRes).
perl -MTime::HiRes -e1 >/dev/null 2>&1 || missing+=(perl)
command -v tar >/dev/null || missing+=(tar)
command -v openssl >/dev/null || missing+=(openssl)
command -v strace >/dev/null || missing+=(strace)
command -v pgrep >/dev/null || missing+=(procps)
command -v python3 >/dev/null || missing+=(python3)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v pg_dump >/dev/null || missing+=(postgresql-client)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# `vault mount` mounts through fusermount3 (or the older fusermount).
command -v fusermount3 >/dev/null || command -v fusermount >/dev/null || missing+=(fuse3)
# GNU time measures the peak memory of vault under the attack vectors.
[[ -x /usr/bin/time ]] || missing+=(time)

# PL/Perl for the server version installed (or about to be).
pgversion=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
if [[ -n $pgversion && ! -e /usr/lib/postgresql/$pgversion/lib/plperl.so ]]; then
    missing+=("postgresql-plperl-$pgversion")
fi

if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
# The S3 tests run a real S3-protocol server: moto (5.2.5 or newer fixes
# CompleteMultipartUpload for the Rust SDK).
if ! python3 -c 'import moto.server, moto, sys
v = tuple(int(x) for x in moto.__version__.split(".")[:3] if x.isdigit())
sys.exit(0 if v >= (5, 2, 5) else 1)' >/dev/null 2>&1; then
    echo "installing: moto[server]"
    python3 -m pip install --quiet 'moto[server]>=5.2.5'
fi
# PostgreSQL installed just now: PL/Perl for its version too.
pgversion=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if [[ ! -e /usr/lib/postgresql/$pgversion/lib/plperl.so ]]; then
    echo "installing: postgresql-plperl-$pgversion"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-plperl-$pgversion"
fi
# The PostgreSQL tests run initdb and pg_ctl as this user.
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
# Drills run as `vault` in the non-root tests, and switch to `vault-drill`
# for the scratch cluster (the line `vault` prints when it is missing).
id vault >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/vault --shell /usr/sbin/nologin vault
id vault-drill >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vault-drill
if ((garage)) && ! command -v garage >/dev/null; then
    echo "installing: garage 2.5 (cargo install, about 10 minutes)"
    cargo install garage --version '~2.5' --locked
fi
