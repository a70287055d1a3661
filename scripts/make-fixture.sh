#!/usr/bin/env bash
# make-fixture.sh VERSION: regenerate fixtures/repo-vVERSION/, the frozen
# reference repository of format version VERSION.
#
# ONLY RUN THIS WITH THE CODE OF THAT VERSION (a vault whose `config.version`
# is VERSION; it refuses any other). The
# committed fixture is the frozen reference: tests/format_fixtures.rs restores
# it with the current code forever after, so that every later vault is proven
# to still read what that version wrote. Regenerating it with newer code would silently
# replace that proof with one about the newer format. Packs and snapshot ids
# are random-named, so every run produces a different (equally valid) fixture;
# commit one and leave it alone.
#
# What it does, as root (PostgreSQL's initdb and pg_ctl run as `postgres`):
#  1. builds a small source tree with every kind of metadata vault records:
#     modes (setuid file, setgid and sticky directories), nanosecond and
#     pre-1970 mtimes, a numeric owner without a name, symlinks (relative,
#     absolute dangling, non-UTF-8 target), a hard-link group, a fifo, a
#     character device, a socket (recorded, never restored), user.* xattrs
#     (one binary), a non-UTF-8 name, a name starting with `b64:`, an empty
#     file, an empty directory, a 200 KiB file of deterministic noise (several
#     chunks) and a certificate (.crt) whose facts land in the snapshot header;
#  2. starts a throwaway PostgreSQL cluster on a Unix socket in a temporary
#     directory with a tiny database `app` (two tables, a quoted name);
#  3. `vault init` with a fresh owner key (default chunker and pack size), then
#     `vault backup` of the tree plus `--postgres` twice, with changes between
#     the two (the second snapshot deduplicates most of the first's data);
#  4. `vault restore --verify` of the second snapshot (loads the dump into a
#     scratch cluster; stores a drill record);
#  5. writes manifest.json: for each snapshot its id, header facts, and every
#     entry (path, kind, mode, owner, mtime, size, BLAKE3, symlink target,
#     hard-link group, xattrs). Source-tree entries are described from the
#     source tree itself; the PostgreSQL files (made by vault) from what
#     scripts/restore-without-vault (age + zstd + Python, not vault's reader)
#     restores. Both restores, vault's and the script's, must match the manifest
#     before anything is written to fixtures/.
#
# Usage: scripts/make-fixture.sh VERSION [--force]   (replaces fixtures/repo-vVERSION/ only with --force)
# Needs: root, cargo, python3, b3sum, age, zstd, PostgreSQL server binaries
# (scripts/install-test-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD
ver=${1:-}
[[ $ver =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/make-fixture.sh VERSION [--force]" >&2; exit 2; }
shift
export FIXTURE_VERSION=$ver
out=fixtures/repo-v$ver

force=0
[[ ${1:-} == --force ]] && force=1
if [[ -e $out && $force -ne 1 ]]; then
    echo "error: $out exists; it is the frozen reference of format v$ver. Pass --force to replace it" >&2
    exit 2
fi
[[ $(id -u) -eq 0 ]] || { echo "error: run as root (PostgreSQL runs as postgres; the tree has a device and a foreign owner)" >&2; exit 2; }
for tool in python3 b3sum age zstd runuser pg_dump psql; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (scripts/install-test-deps.sh)" >&2; exit 2; }
done
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[[ -x $pg_bin/initdb ]] || { echo "error: no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 2; }

# Format 2's vault withholds devices, set-id bits and security xattrs
# unless asked; format 1's has no such flags.
restore_policy=()
[[ $ver -ge 2 ]] && restore_policy=(--allow-devices --keep-setid --keep-security-xattrs)

cargo build --quiet --bin vault
vault=${CARGO_TARGET_DIR:-$root_dir/target}/debug/vault
"$vault" --version

work=$(mktemp -d /tmp/vault-fixture-v$ver.XXXXXX)
chmod 0755 "$work"
pg_dir=$work/pg
cleanup() {
    if [[ -f $pg_dir/data/postmaster.pid ]]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The Python half: builds and changes the source tree, and describes a tree
# as manifest entries. Standard library only (BLAKE3 through b3sum).
py() {
    python3 - "$@" <<'PYEOF'
import base64, json, os, socket, stat, subprocess, sys, zlib

T0 = 1_700_000_000  # a fixed epoch for every mtime

def noise(n, seed):
    """Deterministic pseudo-random bytes (xorshift64, as tests/util.rs noise)."""
    x = ((seed * 0x9E3779B97F4A7C15) | 1) & 0xFFFFFFFFFFFFFFFF
    out = bytearray(n)
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        out[i] = (x >> 24) & 0xFF
    return bytes(out)

def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)

def mkdir(path, mode):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)

def mtime_ns(rel, generation):
    """A distinct, deterministic time with nanoseconds for each path."""
    h = zlib.crc32(rel)
    return (T0 + generation * 10**7 + h % 10**6) * 10**9 + zlib.crc32(rel[::-1]) % 10**9

def touch(root, rel, generation):
    os.utime(os.path.join(root, rel) if rel else root,
             ns=(mtime_ns(rel, generation),) * 2, follow_symlinks=False)

def stamp(root):
    """Every entry gets its time, deepest first (so creating children does
    not move a directory's time again); one is before 1970."""
    rels = [b""]
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            rels.append(os.path.relpath(os.path.join(d, n), root))
    for rel in sorted(rels, reverse=True):
        touch(root, rel, 0)
    os.utime(os.path.join(root, b"etc/ancient.conf"), ns=(-86_400_250_000_001,) * 2)

def build(root, crt):
    root = os.fsencode(root)
    j = lambda *p: os.path.join(root, *[os.fsencode(x) for x in p])
    mkdir(root, 0o755)
    write(j("etc/app.conf"), b"listen = 0.0.0.0:8443\nworkers = 4\n")
    os.link(j("etc/app.conf"), j("etc/app.conf.hardlink"))
    write(j("etc/ancient.conf"), b"# older than the epoch\n")
    write(j("etc/secret.key"), noise(1700, 1), 0o600)
    write(j("etc/empty"), b"")
    write(j("etc/b64:not-base64"), b"a name that starts with b64:\n")
    write(os.path.join(root, b"etc", b"odd-\xff-name"), b"non-UTF-8 name\n", 0o640)
    write(j("etc/xattrs.conf"), b"labelled = yes\n")
    os.setxattr(j("etc/xattrs.conf"), b"user.comment", f"fixture v{os.environ['FIXTURE_VERSION']}".encode())
    os.setxattr(j("etc/xattrs.conf"), b"user.binary", b"\x00\xff\x01binary")
    os.symlink(b"app.conf", j("etc/current.conf"))
    os.symlink(b"/nonexistent/vault-fixture/target", j("etc/dangling-abs"))
    os.symlink(b"odd-\xff-name", j("etc/odd-link"))
    with open(crt, "rb") as f:
        write(j("keystores/server.crt"), f.read())
    mkdir(j("shared"), 0o2775)
    write(j("shared/team.txt"), b"owned by a uid with no name\n", 0o640)
    os.chown(j("shared/team.txt"), 4242, 4242)
    mkdir(j("spool"), 0o1777)
    write(j("bin/tool"), b"#!/bin/sh\necho tool\n", 0o4755)
    mkdir(j("empty-dir"), 0o700)
    write(j("var/data.bin"), noise(200 * 1024, 7))
    if int(os.environ["FIXTURE_VERSION"]) >= 6:
        # Twelve small config files, 3 KiB each: one bundle past 16 KiB.
        for i in range(12):
            lines = b"".join(b"option_%d_%d = %d\n" % (i, k, (k * 7919 + i) % 1000) for k in range(400))
            write(j("etc/conf.d/%02d.conf" % i), lines[:3072])
    os.mkfifo(j("var/fifo"), 0o620)
    os.chmod(j("var/fifo"), 0o620)
    os.mknod(j("var/null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(j("var/null"), 0o666)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(j("var/app.sock"))
    s.close()
    os.chmod(j("var/app.sock"), 0o755)
    stamp(root)

def change(root):
    """What changed between the two snapshots."""
    root = os.fsencode(root)
    j = lambda *p: os.path.join(root, *[os.fsencode(x) for x in p])
    # 4 KiB rewritten in the middle of the large file: most chunks dedup.
    with open(j("var/data.bin"), "r+b") as f:
        f.seek(100 * 1024)
        f.write(noise(4096, 8))
    # Both names of the hard-link group see the new content.
    with open(j("etc/app.conf"), "ab") as f:
        f.write(b"workers_max = 8\n")
    write(j("etc/added.conf"), b"added in the second snapshot\n")
    os.unlink(j("etc/dangling-abs"))
    os.chmod(j("shared/team.txt"), 0o660)
    os.setxattr(j("etc/xattrs.conf"), b"user.comment", f"fixture v{os.environ['FIXTURE_VERSION']}, changed".encode())
    # New times for what was written, and for etc/, whose entries changed.
    for rel in (b"var/data.bin", b"etc/app.conf", b"etc/added.conf", b"etc"):
        touch(root, rel, 1)

KIND = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
        stat.S_IFIFO: "fifo", stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev",
        stat.S_IFSOCK: "socket"}

def text(b):
    """A byte string as in docs/FORMAT.md §6: UTF-8 as is, else b64:…"""
    try:
        s = b.decode("utf-8")
        if not s.startswith("b64:"):
            return s
    except UnicodeDecodeError:
        pass
    return "b64:" + base64.b64encode(b).decode()

def describe(top, rel_root, skip_sockets_missing=False):
    """Manifest entries for the tree at TOP, whose path in the snapshot is REL_ROOT."""
    top = os.fsencode(top)
    rel_root = os.fsencode(rel_root)
    paths = [b""]
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            paths.append(os.path.relpath(os.path.join(d, n), top))
    paths.sort()
    first_of_inode = {}
    out = []
    for p in paths:
        full = os.path.join(top, p) if p else top
        st = os.lstat(full)
        kind = KIND[stat.S_IFMT(st.st_mode)]
        e = {"path": text(os.path.join(rel_root, p) if p else rel_root), "kind": kind,
             "mode": "%04o" % stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
             "mtime_ns": st.st_mtime_ns}
        if kind == "file":
            e["size"] = st.st_size
            e["blake3"] = subprocess.run(["b3sum", "--no-names", full], check=True,
                                         capture_output=True).stdout.decode().strip()
        if kind == "symlink":
            e["target"] = text(os.readlink(full))
        if kind in ("chardev", "blockdev"):
            e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        if kind != "dir" and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first_of_inode.setdefault(key, e["path"])
            e["hardlink"] = first_of_inode[key]
        if kind != "symlink":
            names = sorted(os.listxattr(full, follow_symlinks=False))
            xs = {n: base64.b64encode(os.getxattr(full, n, follow_symlinks=False)).decode()
                  for n in names if n.startswith("user.")}
            if xs:
                e["xattrs"] = xs
        out.append(e)
    return out

cmd = sys.argv[1]
if cmd == "build":
    build(sys.argv[2], sys.argv[3])
elif cmd == "change":
    change(sys.argv[2])
elif cmd == "describe":
    # describe OUT TOP REL_ROOT [TOP REL_ROOT ...]
    entries = []
    for top, rel in zip(sys.argv[3::2], sys.argv[4::2]):
        entries += describe(top, rel)
    with open(sys.argv[2], "w") as f:
        json.dump(entries, f, indent=1, sort_keys=True)
elif cmd == "compare":
    # compare EXPECTED ACTUAL [--no-sockets]: restored trees lack sockets.
    exp = json.load(open(sys.argv[2]))
    act = json.load(open(sys.argv[3]))
    if "--no-sockets" in sys.argv:
        exp = [e for e in exp if e["kind"] != "socket"]
    ea = {e["path"]: e for e in exp}
    aa = {e["path"]: e for e in act}
    bad = sorted(set(ea) ^ set(aa))
    bad += [p for p in ea if p in aa and ea[p] != aa[p]]
    for p in bad:
        print("mismatch:", p, ea.get(p), aa.get(p), file=sys.stderr)
    sys.exit(1 if bad else 0)
elif cmd == "assemble":
    # assemble OUT SNAPSHOTS_JSON ENTRIES1 ENTRIES2 SRC_REL: the manifest.
    snaps = json.load(open(sys.argv[3]))
    snaps.sort(key=lambda s: s["snapshot"]["time"])
    out = {"format_version": int(os.environ["FIXTURE_VERSION"]), "program_version": snaps[0]["snapshot"]["program_version"],
           "owner_key": "owner.key", "writer_key": "writer.key", "repository": "repo",
           "source_root": sys.argv[6], "snapshots": []}
    for s, entries_file in zip(snaps, sys.argv[4:6]):
        h = s["snapshot"]
        out["snapshots"].append({
            "id": s["id"], "host": h["host"], "tags": h.get("tags", []),
            "roots": [sys.argv[6], "postgres"],
            "sources": [{k: src[k] for k in ("kind", "name", "status")} for src in h["sources"]],
            "row_counts": {src["name"]: src["details"]["row_counts"]
                           for src in h["sources"] if src["kind"] == "postgres"},
            "certificates": h.get("certificates", []),
            "totals": {k: h["totals"][k] for k in ("files", "dirs", "bytes")},
            "entries": json.load(open(entries_file)),
        })
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
PYEOF
}

echo "== source tree"
src=$work/srv
py build "$src" fixtures/sample-server/opt/app/keystores/server.crt
src_rel=${src#/}

echo "== PostgreSQL $(basename "$(dirname "$pg_bin")") on a Unix socket in $pg_dir"
mkdir -p "$pg_dir"
chown postgres:postgres "$pg_dir"
runuser -u postgres -- "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres --no-sync >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-k $pg_dir -c listen_addresses='' -p 5432 -c fsync=off" start >/dev/null
sql() { PGHOST=$pg_dir PGPORT=5432 PGUSER=postgres psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
sql postgres "CREATE DATABASE app"
sql app "CREATE TABLE orders (id serial PRIMARY KEY, note text);
         CREATE SCHEMA billing;
         CREATE TABLE billing.\"Invoices\" (id int, amount numeric);
         INSERT INTO orders (note) VALUES ('first'), ('second'), ('third');
         INSERT INTO billing.\"Invoices\" VALUES (1, 10.50), (2, 99.99);"
conninfo="host=$pg_dir port=5432 user=postgres dbname=app"

echo "== vault init"
new=$work/out
mkdir -m 0755 "$new"
recipient=$("$vault" key generate --output "$new/owner.key")
"$vault" init -r "$new/repo" --owner "$recipient" --owner-name ops --writer-key-out "$new/writer.key"
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$new/repo/config")
# Versions 4 (content lists), 5 (bundles) and 6 (larger bundles) change
# trees only: their repositories say config.version 3 (docs/FORMAT.md §11).
config_ver=$ver
[[ $ver -ge 4 ]] && config_ver=3
if [[ $version != "$config_ver" ]]; then
    echo "error: this vault writes format version $version; $out must be made by the v$ver code" >&2
    exit 2
fi
backup() {
    VAULT_HOST=fixture-v$ver "$vault" backup -r "$new/repo" -i "$new/writer.key" --cache-dir "$work/cache" \
        --tag fixture --tag "$1" "$src" --postgres "$conninfo"
}

echo "== snapshot 1"
backup first
py describe "$work/src1.json" "$src" "$src_rel"

echo "== changes, snapshot 2"
py change "$src"
sql app "INSERT INTO orders (note) VALUES ('fourth'), ('fifth'); DELETE FROM billing.\"Invoices\" WHERE id = 1;"
backup second
py describe "$work/src2.json" "$src" "$src_rel"

echo "== restore --verify (drill record)"
"$vault" restore -r "$new/repo" -i "$new/owner.key" latest --verify

"$vault" snapshots -r "$new/repo" -i "$new/owner.key" --json > "$work/snapshots.json"
mapfile -t ids < <(python3 -c '
import json, sys
for s in sorted(json.load(open(sys.argv[1])), key=lambda s: s["snapshot"]["time"]):
    print(s["id"])' "$work/snapshots.json")
[[ ${#ids[@]} -eq 2 ]] || { echo "error: expected 2 snapshots, got ${#ids[@]}" >&2; exit 1; }
# Version 5 stores a directory's small files in bundles: its fixture must hold some.
if [[ $ver -ge 5 ]]; then
    bundled=$("$vault" ls -r "$new/repo" -i "$new/owner.key" "${ids[0]}" --json | grep -c '"bundle_offset"' || true)
    [[ $bundled -gt 1 ]] || { echo "error: no bundled files: $out must be made by the v$ver code" >&2; exit 2; }
    echo "bundled files in snapshot 1: $bundled"
fi
# Version 6 lets a bundle grow past 16 KiB: its fixture must hold a file there.
if [[ $ver -ge 6 ]]; then
    "$vault" ls -r "$new/repo" -i "$new/owner.key" "${ids[0]}" --json | python3 -c '
import json, sys
far = [n for n in (json.loads(l)["node"] for l in sys.stdin) if (n.get("bundle_offset") or 0) + n["size"] > 16384]
sys.exit(0 if far else "error: no bundled file past 16 KiB of its bundle: the fixture must be made by the v6 code")'
fi

echo "== manifests: source tree as backed up, PostgreSQL files via restore-without-vault"
for n in 1 2; do
    id=${ids[n - 1]}
    rwv=$work/rwv$n
    bash scripts/restore-without-vault "$new/repo" "$new/owner.key" "$id" "$rwv" >/dev/null
    py describe "$work/pg$n.json" "$rwv/postgres" postgres
    python3 -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
json.dump(a + b, open(sys.argv[3], "w"))' "$work/src$n.json" "$work/pg$n.json" "$work/entries$n.json"
    # Both readers must restore exactly the manifest (sockets are never restored).
    py describe "$work/rwv$n.json" "$rwv/$src_rel" "$src_rel" "$rwv/postgres" postgres
    py compare "$work/entries$n.json" "$work/rwv$n.json" --no-sockets
    "$vault" restore -r "$new/repo" -i "$new/owner.key" "$id" --target "$work/vr$n" \
        "${restore_policy[@]}" >/dev/null
    py describe "$work/vr$n.json" "$work/vr$n/$src_rel" "$src_rel" "$work/vr$n/postgres" postgres
    py compare "$work/entries$n.json" "$work/vr$n.json" --no-sockets
    # The dump is a real custom-format archive.
    pg_restore --list "$rwv/postgres/app.dump" | grep -q 'TABLE DATA billing Invoices'
done
py assemble "$new/manifest.json" "$work/snapshots.json" "$work/entries1.json" "$work/entries2.json" "$src_rel"

echo "== check"
"$vault" check -r "$new/repo" -i "$new/owner.key" --read-data --storage

# What the test's copy from git will look like: no empty directories.
find "$new/repo" -type d -empty -print | sed 's/^/note: empty directory (git drops it): /'

cat > "$new/README.md" <<EOF
# fixtures/repo-v$ver: the frozen reference repository of format version $ver

Made by \`scripts/make-fixture.sh $ver\` with vault $("$vault" --version | awk '{print $2}') (format v$ver).
**Do not regenerate it**: tests/format_fixtures.rs restores it with the current code, so every
later vault proves it still reads what v$ver wrote. A new format version gets its own
\`fixtures/repo-vN/\` made the same way by the code of that version.

- \`repo/\`: a local repository (default chunker and pack size) with two snapshots of the source
  tree \`/$src_rel\` plus a PostgreSQL source (\`postgres/app.dump\`, \`postgres/app.globals.sql\`),
  and one drill record (\`vault restore --verify\` of the second snapshot).
- \`owner.key\`: the owner's age identity (owner \`ops\`); \`writer.key\`: the writer key. Test keys,
  public on purpose. git checks them out mode 0644: copy them and \`chmod 600\` before use.
- \`manifest.json\`: per snapshot, its id, header facts (host, tags, sources, row counts,
  certificates, totals) and every entry below its roots: \`path\` (relative to the restore target;
  non-UTF-8 bytes as \`b64:\`…, as in docs/FORMAT.md §6), \`kind\`, \`mode\` (octal), \`uid\`, \`gid\`,
  \`mtime_ns\`, and where they apply \`size\`, \`blake3\` (plain BLAKE3 of the content), \`target\`,
  \`rdev\` ([major, minor]), \`hardlink\` (the path of the group's first member) and \`xattrs\`
  (user.* name → base64 value). Sockets are recorded but never restored.
EOF

echo "== writing $out"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -a "$new" "$out"
du -sh "$out"
echo "done: review, then commit $out (git add -f is not needed; check 'git status --ignored')"
