//! Attacks on restore, each performed with only the attacker's capabilities
//! (issue 11). Expected outcomes:
//!
//! | vector | attacker holds | expected |
//! |---|---|---|
//! | `restore_race_…` | an unprivileged account owning a directory in the target | nothing created, chmod'ed or chown'ed outside the target; every file restored |
//! | `target_that_is_a_symlink_…` | a symlink where the operator restores | refused, exit 1, nothing written through it |
//! | `privileged_files_from_a_writers_snapshot_…` | the writer key (backs up a crafted source) | no setuid/setgid bit, device node or `security.capability` in the target unless the operator asks; each one reported; drills never create them |
//! | `hard_link_group_led_by_a_symlink_…` | the writer key (crafts trees) | the declared regular file is restored as a regular file with its verified content, also in `vault dump` |
//! | `repeated_subtrees_…` | the writer key (crafts trees and header) | the restore stops within the header's totals, exit 4; `vault dump` refuses |
//! | `a_drill_refuses_a_snapshot_declaring_more_…` | the writer key (declares totals) | the drill refuses before writing anything, no sandbox or drill record left |
//! | `file_content_running_past_its_size_…` | the writer key (crafts trees and a conflicting index entry) | not one byte written past the recorded size; reported, nothing left behind |
//! | `check_names_files_their_blobs_cannot_hold` | the writer key (a bundled file past its bundle, a file larger than its blobs, an index entry claiming another length for a blob) | `vault check` names all three (exit 4) from the index alone; restore refuses the first two and restores the third from what verifies, and the honest file |
//! | `read_data_names_an_index_entry_misstating_a_blobs_length` | the writer key (an index entry at a blob's true place in its pack, claiming another uncompressed length) | `check --read-data` names the false claim beside the pack's true length (exit 4); restore restores the file from what verifies; prune drops the entry and the next check is clean |
//! | `lengths_swapped_between_blobs_…` | the writer key (packs a large file, recording each pair of its blobs' lengths swapped) | the file is reported damaged and left out, nothing at its path; the honest file beside it restores byte for byte |

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use vault::format::id::{BlobId, Id};
use vault::format::index::{IndexFile, IndexedBlob, IndexedPack};
use vault::format::pack::BlobKind;
use vault::format::snapshot::{Snapshot, SourceRecord, SourceStatus, Totals};
use vault::format::tree::{Bytes, Node, NodeKind, Tree};
use vault::repo::packer::PackBuilder;
use vault::repo::{ObjectKind, Repository};

use crate::util::*;

/// The unprivileged attacker's uid and gid (`nobody`).
const NOBODY: u32 = 65534;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "restore attacks are tested as root, as the operator restores"
    );
}

/// `path` inside a target: where a source path lands when restored.
fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// Writes snapshots the way a compromised backup host can: with the writer
/// key only (it seals packs to the owner, which needs no owner secret).
struct Crafter {
    repo: Repository,
    key: [u8; 32],
    data: Option<PackBuilder>,
    trees: Option<PackBuilder>,
    /// A blob to describe a second time, with another length, in an index
    /// file of its own (pointing into the genuine pack).
    conflict: Option<BlobId>,
    /// A blob to describe a second time at its true place in the genuine
    /// pack, claiming one byte more of uncompressed length.
    misstated: Option<BlobId>,
}

impl Crafter {
    fn new(env: &Env) -> Self {
        let repo = open_repo(&env.repo, &env.writer_key);
        assert!(
            !repo.keys().is_owner(),
            "the attacker holds the writer key only"
        );
        let key = *repo.keys().chunk_key();
        let seal = repo.keys().owner_only();
        let data = PackBuilder::new(BlobKind::Data, &seal, 0).unwrap();
        let trees = PackBuilder::new(BlobKind::Tree, &seal, 0).unwrap();
        Crafter {
            key,
            data: Some(data),
            trees: Some(trees),
            repo,
            conflict: None,
            misstated: None,
        }
    }

    fn blob(builder: &mut PackBuilder, key: &[u8; 32], bytes: &[u8]) -> BlobId {
        let id = BlobId::keyed(key, bytes);
        builder
            .add(
                id,
                &zstd::bulk::compress(bytes, 3).unwrap(),
                bytes.len() as u32,
            )
            .unwrap();
        id
    }

    fn data(&mut self, bytes: &[u8]) -> BlobId {
        Self::blob(self.data.as_mut().unwrap(), &self.key, bytes)
    }

    fn tree(&mut self, nodes: Vec<Node>) -> Id {
        self.tree_blob(&Tree { nodes }.to_bytes())
    }

    /// Any blob in the tree pack (a tree or a content list).
    fn tree_blob(&mut self, bytes: &[u8]) -> Id {
        Self::blob(self.trees.as_mut().unwrap(), &self.key, bytes).0
    }

    /// A regular file node holding `bytes` as one blob.
    fn file(&mut self, name: &str, bytes: &[u8]) -> Node {
        let id = self.data(bytes);
        let mut n = node(name, NodeKind::File);
        n.size = bytes.len() as u64;
        n.content = vec![id];
        n.hash = Some(Id::of_bytes(bytes));
        n
    }

    /// A regular file node of several blobs, `pieces`, whose pack entries
    /// (and so the index) record `claims` as their uncompressed lengths.
    fn file_claiming(&mut self, name: &str, pieces: &[Vec<u8>], claims: &[u32]) -> Node {
        let data = self.data.as_mut().unwrap();
        // Frames without a content size: only decompressing tells a blob's
        // length.
        let mut zstd = zstd::bulk::Compressor::new(3).unwrap();
        zstd.include_contentsize(false).unwrap();
        let content = pieces
            .iter()
            .zip(claims)
            .map(|(bytes, &claim)| {
                let id = BlobId::keyed(&self.key, bytes);
                data.add(id, &zstd.compress(bytes).unwrap(), claim).unwrap();
                id
            })
            .collect();
        let whole = pieces.concat();
        let mut n = node(name, NodeKind::File);
        n.size = whole.len() as u64;
        n.content = content;
        n.hash = Some(Id::of_bytes(&whole));
        n
    }

    /// Stores the packs, their index and a header with `totals`.
    fn finish(mut self, root: Id, totals: Totals) -> String {
        let mut index = IndexFile::default();
        for b in [self.data.take(), self.trees.take()] {
            let pack = b.unwrap().finish().unwrap();
            self.repo
                .put_object(ObjectKind::Pack(pack.kind), &pack.bytes)
                .unwrap();
            index
                .packs
                .push(IndexedPack::from_entries(pack.id, pack.kind, &pack.entries));
        }
        self.repo
            .put_shared_json(ObjectKind::Index, &index)
            .unwrap();
        if let Some(blob) = self.conflict {
            let data = &index.packs[0];
            let planted = IndexFile {
                packs: vec![IndexedPack {
                    id: data.id,
                    kind: BlobKind::Data,
                    blobs: vec![IndexedBlob {
                        id: blob,
                        offset: 0,
                        length: 10,
                        raw_length: 10,
                    }],
                }],
                condemned: vec![],
            };
            self.repo
                .put_shared_json(ObjectKind::Index, &planted)
                .unwrap();
        }
        if let Some(blob) = self.misstated {
            let data = &index.packs[0];
            let mut entry = *data
                .blobs
                .iter()
                .find(|b| b.id == blob)
                .expect("the misstated blob is in the data pack");
            entry.raw_length += 1;
            let planted = IndexFile {
                packs: vec![IndexedPack {
                    id: data.id,
                    kind: BlobKind::Data,
                    blobs: vec![entry],
                }],
                condemned: vec![],
            };
            self.repo
                .put_shared_json(ObjectKind::Index, &planted)
                .unwrap();
        }
        let snap = Snapshot {
            time: chrono::Utc::now(),
            host: "web1".into(),
            user: "root".into(),
            tags: vec![],
            sources: vec![SourceRecord {
                kind: "paths".into(),
                name: "/srv".into(),
                paths: vec!["/srv".into()],
                status: SourceStatus::Ok,
                command: None,
                details: None,
            }],
            root: vault::TreeId(root),
            totals,
            errors: vec![],
            certificates: vec![],
            parent: None,
            program_version: "crafted".into(),
        };
        self.repo
            .put_shared_json(ObjectKind::Snapshot, &snap)
            .unwrap()
            .to_hex()
    }
}

fn node(name: &str, kind: NodeKind) -> Node {
    Node {
        name: Bytes(name.as_bytes().to_vec()),
        kind,
        mode: if kind == NodeKind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime_ns: 1_700_000_000_000_000_000,
        size: 0,
        target: None,
        rdev: None,
        hardlink: None,
        xattrs: vec![],
        content: vec![],
        bundle_offset: None,
        content_lists: Vec::new(),
        hash: None,
        subtree: None,
    }
}

fn dir(name: &str, subtree: Id) -> Node {
    let mut n = node(name, NodeKind::Dir);
    n.subtree = Some(vault::TreeId(subtree));
    n
}

fn totals(files: u64, dirs: u64, bytes: u64) -> Totals {
    Totals {
        files,
        dirs,
        bytes,
        ..Default::default()
    }
}

/// Every entry below `root`, as (relative path, is it a regular file).
fn entries(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            out.push((e.path().strip_prefix(root).unwrap().to_owned(), t.is_file()));
            if t.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// The racer: as `nobody`, once restore has started writing into
/// `home/sub`, swap that directory for a symlink to `outside` and back
/// until `stop` appears (bounded). Prints how many swaps it made.
const RACER: &str = r#"
use Time::HiRes qw(stat);
my ($home, $outside, $stop) = @ARGV;
chdir $home or die "chdir: $!";
# sub is root's and mode 0700: the attacker sees only its times change
# once restore writes into it.
my $first;
for (my $i = 0; $i < 20_000; $i++) {
    my @st = stat("sub");
    if (@st) { $first //= $st[9]; last if $st[9] != $first; }
    select(undef, undef, undef, 0.001);
}
my $n = 0;
for (my $i = 0; $i < 3_000_000 && !-e $stop; $i++) {
    rename("sub", "sub.real") or next;
    $n++ if symlink($outside, "sub");
    for (my $k = 0; $k < 50; $k++) {}
    unlink("sub");
    rename("sub.real", "sub") or die "rename back: $!";
}
print "$n\n";
"#;

#[test]
fn restore_race_a_user_swapping_their_directory_for_a_symlink_changes_nothing_outside() {
    require_root();
    let env = Env::new();
    // The attacker must be able to reach the directory they own.
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    const FILES: usize = 1500;
    for i in 0..FILES {
        write(
            &src.join(format!("home/sub/f{i:04}")),
            format!("file {i}\n").as_bytes(),
        );
    }
    chown(&src.join("home"), NOBODY);
    chown(&src.join("home/sub"), NOBODY);
    env.backup(&[&src]);

    // The target already holds the user's home (a restore over a live
    // system, or a second restore): the user owns it.
    let target = env.path("target");
    let home = restored(&target, &src).join("home");
    fs::create_dir_all(&home).unwrap();
    chown(&home, NOBODY);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    let before = fs::metadata(&outside).unwrap();
    let stop = env.path("stop-racing");

    let racer = Racer::start(RACER, &[&home, &outside], &stop);
    let out = env.restore("latest", &target);
    let swaps = racer.stop();
    eprintln!("the racer swapped {swaps} times");
    assert!(
        swaps > 100,
        "the racer swapped only {swaps} times: the test proved nothing"
    );

    let after = fs::metadata(&outside).unwrap();
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "restore created files outside the target"
    );
    assert_eq!(
        (after.mode(), after.uid(), after.gid()),
        (before.mode(), before.uid(), before.gid()),
        "restore changed the mode or owner of a directory outside the target"
    );
    // Every file still landed in the directory restore created, wherever
    // the attacker had moved it.
    if home.join("sub.real").exists() {
        fs::remove_file(home.join("sub")).unwrap();
        fs::rename(home.join("sub.real"), home.join("sub")).unwrap();
    }
    let sub = home.join("sub");
    assert!(fs::symlink_metadata(&sub).unwrap().is_dir());
    let restored_files = fs::read_dir(&sub)
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            let i: usize = e.file_name().to_str().unwrap()[1..].parse().unwrap();
            fs::read(e.path()).unwrap() == format!("file {i}\n").as_bytes()
        })
        .count();
    assert_eq!(restored_files, FILES, "{}", stdout(&out));
    // Only metadata of the swapped directory may be reported as not applied.
    assert!(
        out.status.code() == Some(0),
        "swaps: {swaps}\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn target_that_is_a_symlink_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let target = env.path("target");
    std::os::unix::fs::symlink(&outside, &target).unwrap();
    let out = env.restore("latest", &target);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "is a symlink");
    assert_contains(&stderr(&out), &target.display().to_string());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

/// `security.capability` granting cap_setuid=ep (VFS_CAP_REVISION_2).
fn cap_setuid() -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x0200_0001u32, 1 << 7, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

/// A source as a compromised backup host can make it: root owns the host.
fn privileged_source(src: &Path) {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    write(&src.join("bin/rootshell"), b"#!/bin/sh\nexec /bin/sh -p\n");
    fs::set_permissions(
        src.join("bin/rootshell"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    write(&src.join("bin/groupshell"), b"#!/bin/sh\n");
    fs::set_permissions(
        src.join("bin/groupshell"),
        fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
    write(&src.join("bin/capped"), b"#!/bin/sh\n");
    xattr::set(src.join("bin/capped"), "security.capability", &cap_setuid()).unwrap();
    fs::create_dir_all(src.join("dev")).unwrap();
    let all = Mode::from_bits_truncate(0o666);
    mknod(&src.join("dev/mem"), SFlag::S_IFCHR, all, makedev(1, 1)).unwrap();
    mknod(&src.join("dev/sda"), SFlag::S_IFBLK, all, makedev(8, 0)).unwrap();
    for d in ["dev/mem", "dev/sda"] {
        // mknod honours the umask; the attacker wants them world-writable.
        fs::set_permissions(src.join(d), fs::Permissions::from_mode(0o666)).unwrap();
    }
    nix::unistd::mkfifo(&src.join("dev/pipe"), Mode::from_bits_truncate(0o600)).unwrap();
    fs::create_dir(src.join("shared")).unwrap();
    fs::set_permissions(src.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
}

#[test]
fn privileged_files_from_a_writers_snapshot_are_withheld_unless_asked_for() {
    require_root();
    let env = Env::new();
    let src = env.path("src");
    privileged_source(&src);
    env.backup(&[&src]);

    let target = env.path("target");
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &["latest", "--target", target.to_str().unwrap(), "--json"],
    );
    assert_success(&out);
    let r = restored(&target, &src);
    let mode = |p: &str| fs::symlink_metadata(r.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("bin/rootshell"), 0o755);
    assert_eq!(mode("bin/groupshell"), 0o755);
    assert_eq!(mode("shared"), 0o2775, "setgid directories are kept");
    assert!(!r.join("dev/mem").exists() && !r.join("dev/sda").exists());
    assert!(
        fs::symlink_metadata(r.join("dev/pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        xattr::get(r.join("bin/capped"), "security.capability").unwrap(),
        None
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let w = &v["report"]["withheld"];
    assert_eq!(
        (&w["setid"], &w["devices"], &w["security_xattrs"]),
        (&2.into(), &2.into(), &1.into()),
        "{w}"
    );
    let listed: Vec<String> = w["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["path"].as_str().unwrap()
            )
        })
        .collect();
    for (kind, path) in [
        ("setid", "bin/rootshell"),
        ("setid", "bin/groupshell"),
        ("security_xattr", "bin/capped"),
        ("device", "dev/mem"),
        ("device", "dev/sda"),
    ] {
        assert!(
            listed
                .iter()
                .any(|l| l.starts_with(kind) && l.ends_with(path)),
            "{kind} {path} not in {listed:?}"
        );
    }

    // The text report says what was withheld and how to ask for it.
    let out = env.restore("latest", &env.path("again"));
    assert_success(&out);
    let text = stdout(&out);
    for needle in [
        "--keep-setid",
        "--allow-devices",
        "--keep-security-xattrs",
        "dev/sda",
    ] {
        assert_contains(&text, needle);
    }

    // Control: the vector is real, and the operator can ask for it all.
    let all = env.path("all");
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            "latest",
            "--target",
            all.to_str().unwrap(),
            "--allow-devices",
            "--keep-setid",
            "--keep-security-xattrs",
        ],
    );
    assert_success(&out);
    let a = restored(&all, &src);
    assert_eq!(
        fs::symlink_metadata(a.join("bin/rootshell"))
            .unwrap()
            .mode()
            & 0o7777,
        0o4755
    );
    let mem = fs::symlink_metadata(a.join("dev/mem")).unwrap();
    assert!(mem.file_type().is_char_device() && mem.mode() & 0o777 == 0o666);
    assert_eq!(mem.rdev(), nix::sys::stat::makedev(1, 1));
    assert_eq!(
        xattr::get(a.join("bin/capped"), "security.capability").unwrap(),
        Some(cap_setuid())
    );

    // A drill never creates them, and cannot be asked to.
    let sandbox = env.path("drill");
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &["latest", "--verify", "--target", sandbox.to_str().unwrap()],
    );
    assert_success(&out);
    let d = restored(&sandbox, &src);
    assert!(!d.join("dev/mem").exists());
    assert_eq!(
        fs::symlink_metadata(d.join("bin/rootshell"))
            .unwrap()
            .mode()
            & 0o7777,
        0o755
    );
    for flag in ["--allow-devices", "--keep-setid", "--keep-security-xattrs"] {
        let out = env.vault(&["restore"], &env.owner_key, &["latest", "--verify", flag]);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), flag);
    }
}

#[test]
fn hard_link_group_led_by_a_symlink_cannot_turn_a_file_into_a_link() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let mut link = node("a-link", NodeKind::Symlink);
    link.target = Some(Bytes(b"/etc/shadow".to_vec()));
    link.hardlink = Some("1:1".into());
    let mut file = c.file("b-file", b"declared content\n");
    file.hardlink = Some("1:1".into());
    let root = c.tree(vec![link, file]);
    let id = c.finish(root, totals(1, 0, 17));

    let target = env.path("target");
    let out = env.restore(&id, &target);
    assert_success(&out);
    let meta = fs::symlink_metadata(target.join("b-file")).unwrap();
    assert!(meta.is_file(), "b-file restored as {:?}", meta.file_type());
    assert_eq!(
        fs::read(target.join("b-file")).unwrap(),
        b"declared content\n"
    );
    assert_eq!(
        fs::read_link(target.join("a-link")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_contains(&stdout(&out), "not hard-linked");

    let sandbox = env.path("drill");
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--verify", "--target", sandbox.to_str().unwrap()],
    );
    assert_success(&out);
    assert!(
        fs::symlink_metadata(sandbox.join("b-file"))
            .unwrap()
            .is_file()
    );
    assert_contains(&stdout(&out), "1 file re-read");

    let tar = env.vault(&["dump"], &env.owner_key, &[&id]);
    assert_success(&tar);
    let mut archive = tar::Archive::new(&tar.stdout[..]);
    let mut kinds = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        kinds.push((
            e.path().unwrap().display().to_string(),
            e.header().entry_type(),
        ));
    }
    assert!(
        kinds.contains(&("b-file".into(), tar::EntryType::Regular)),
        "{kinds:?}"
    );
}

/// A tree `depth` levels deep in which every level names the level below
/// twice: 2^depth files from depth + 1 tree blobs.
fn doubling_tree(c: &mut Crafter, depth: u32) -> Id {
    let leaf = c.file("f", b"x");
    let mut tree = c.tree(vec![leaf]);
    for _ in 0..depth {
        tree = c.tree(vec![dir("a", tree), dir("b", tree)]);
    }
    tree
}

#[test]
fn repeated_subtrees_cannot_restore_more_than_the_header_declares() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let root = doubling_tree(&mut c, 24);
    // 2^24 files, declared as three.
    let bomb = c.finish(root, totals(3, 30, 3));
    let target = env.path("target");
    let started = std::time::Instant::now();
    let out = env.restore(&bomb, &target);
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "more than the 3 files its header declares");
    let files = entries(&target).iter().filter(|(_, f)| *f).count();
    assert!(files <= 3, "{files} files restored");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let dump = env.vault(&["dump"], &env.owner_key, &[&bomb]);
    assert_ne!(dump.status.code(), Some(0));
    assert_contains(&stderr(&dump), "more than the 3 files");

    // Control: the same shape with honest totals restores in full.
    let mut c = Crafter::new(&env);
    let root = doubling_tree(&mut c, 8);
    let honest = c.finish(root, totals(256, 510, 256));
    let target = env.path("honest");
    assert_success(&env.restore(&honest, &target));
    let files = entries(&target).iter().filter(|(_, f)| *f).count();
    assert_eq!(files, 256);
}

#[test]
fn file_content_running_past_its_size_is_never_written() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let chunk = noise(64 << 10, 7);
    let mut file = c.file("big", &chunk);
    // The same 64 KiB blob 2,000 times (125 MiB), declared as 64 KiB.
    file.content = vec![file.content[0]; 2000];
    let blob = file.content[0];
    let root = c.tree(vec![file]);
    // A second index entry for the blob with another length: index files
    // now disagree, and restore cannot size the file from them.
    c.conflict = Some(blob);
    let id = c.finish(root, totals(1, 0, 64 << 10));
    let target = env.path("target");
    let out = env.restore(&id, &target);
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "runs past the 65536 bytes");
    assert!(entries(&target).is_empty(), "{:?}", entries(&target));
}

#[test]
fn a_drill_refuses_a_snapshot_declaring_more_than_its_disk_holds() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let file = c.file("f", b"x");
    let root = c.tree(vec![file]);
    // Declared large enough to fill any disk: the drill must not start.
    let id = c.finish(root, totals(1, 0, 1 << 60));
    let tmpdir = env.path("tmp");
    fs::create_dir(&tmpdir).unwrap();
    let out = Command::new(vault_bin())
        .args(["restore", "-r", env.repo.to_str().unwrap(), "-i"])
        .arg(&env.owner_key)
        .args([&id, "--verify"])
        .env("TMPDIR", &tmpdir)
        .env_remove("VAULT_CONFIG")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "point TMPDIR at a larger file system");
    assert_eq!(
        fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "sandbox left behind"
    );
    assert!(
        !env.repo.join("drills").exists()
            || fs::read_dir(env.repo.join("drills")).unwrap().count() == 0
    );
}

/// The compact index (backup, restore) finds blobs by the first 24 bytes of
/// their id; a location found that way that holds another blob fails the
/// reader's full-id check: never another blob's bytes, silently.
#[test]
fn a_blob_found_by_its_id_key_is_checked_against_the_full_id() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.bin"), &noise(50_000, 9));
    env.backup(&[&src]);
    let repo = open_repo(&env.repo, &env.owner_key);
    let full = repo.load_index_files().unwrap().index;
    let (blob, _) = full
        .blobs()
        .find(|(_, l)| l.kind == BlobKind::Data)
        .unwrap();
    let mut other = blob;
    other.0.0[31] ^= 1;
    let (compact, damaged) = repo.load_index().unwrap();
    assert!(damaged.is_empty());
    assert!(!compact.is_full() && !full.contains(&other));
    assert!(compact.contains(&other), "the same 24-byte key");
    let mut reader = vault::repo::BlobReader::new(&repo);
    let genuine = reader.read_indexed(&blob, &compact).unwrap();
    assert_eq!(genuine.len() as u32, compact.get(&blob).unwrap().raw_length);
    let err = reader.read_indexed(&other, &compact).unwrap_err();
    assert!(err.to_string().contains(&other.to_string()), "{err}");
}

/// Content lists (format version 4) cannot inflate: a list named again and
/// again must not make a few bytes of tree expand into more blob ids than
/// the file has bytes, or than one tree may list.
#[test]
fn content_lists_cannot_name_more_blobs_than_the_file_has_bytes() {
    use vault::format::tree::{LIST_IDS, MAX_LISTED_IDS, list_bytes};
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let x = c.data(b"x");
    let list = BlobId(c.tree_blob(&list_bytes(&vec![x; LIST_IDS])));
    let file = |name: &str, lists: usize, size: u64| {
        let mut n = node(name, NodeKind::File);
        n.size = size;
        n.content_lists = vec![list; lists];
        n.hash = Some(Id::of_bytes(&vec![b'x'; size as usize]));
        n
    };
    // Three lists of 4,096 one-byte blobs for a file declared as 4,096 bytes;
    // and lists past the per-tree bound for a file declared large enough.
    let over = LIST_IDS * 3;
    let past = MAX_LISTED_IDS / LIST_IDS + 1;
    for (lists, size) in [(3, LIST_IDS as u64), (past, 2 * MAX_LISTED_IDS as u64)] {
        let mut c2 = Crafter::new(&env);
        let x2 = c2.data(b"x");
        let list2 = BlobId(c2.tree_blob(&list_bytes(&vec![x2; LIST_IDS])));
        assert_eq!(list2, list);
        let root = c2.tree(vec![file("f", lists, size)]);
        let id = c2.finish(root, totals(1, 0, size));
        let target = env.path(&format!("target-{lists}"));
        let out = env.restore(&id, &target);
        assert_code(&out, 4);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert_contains(&said, "content lists name more blobs");
        let files = entries(&target).iter().filter(|(_, f)| *f).count();
        assert_eq!(files, 0, "{over} ids for {size} bytes: nothing written");
    }
    // Control: one list for 4,096 bytes restores.
    let root = c.tree(vec![file("f", 1, LIST_IDS as u64)]);
    let id = c.finish(root, totals(1, 0, LIST_IDS as u64));
    let target = env.path("honest");
    assert_success(&env.restore(&id, &target));
    let got: Vec<_> = walkdir(&target);
    assert_eq!(got, vec![vec![b'x'; LIST_IDS]]);
}

/// The contents of every regular file under `root`.
fn walkdir(root: &Path) -> Vec<Vec<u8>> {
    entries(root)
        .into_iter()
        .filter(|(_, f)| *f)
        .map(|(p, _)| std::fs::read(root.join(p)).unwrap())
        .collect()
}

/// A file large enough to be restored in segments (read and placed in
/// pack order, each blob where the index's lengths say it goes), whose
/// every pair of neighbouring blobs has its recorded lengths swapped: the
/// lengths still add up to the file's size and every index entry agrees,
/// so only the check of each blob's exact length stands between the lie
/// and a file of misplaced bytes.
#[test]
fn lengths_swapped_between_blobs_of_a_large_file_restore_nothing_of_it() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    // 300 blobs (two segments by count, over 2 MiB), 9,000 and 7,000 bytes.
    let pieces: Vec<Vec<u8>> = (0..300)
        .map(|i| noise(if i % 2 == 0 { 9000 } else { 7000 }, 40 + i as u64))
        .collect();
    let lying: Vec<u32> = pieces
        .iter()
        .enumerate()
        .map(|(i, _)| pieces[i ^ 1].len() as u32)
        .collect();
    let honest: Vec<u32> = pieces.iter().map(|p| p.len() as u32).collect();
    let bad = c.file_claiming("lying", &pieces, &lying);
    let other: Vec<Vec<u8>> = (0..300)
        .map(|i| noise(if i % 2 == 0 { 9000 } else { 7000 }, 900 + i as u64))
        .collect();
    let good = c.file_claiming("honest", &other, &honest);
    let size = bad.size + good.size;
    let root = c.tree(vec![good, bad]);
    let id = c.finish(root, totals(2, 0, size));
    let target = env.path("target");
    let out = env.restore(&id, &target);
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "Damaged: /lying");
    let found = entries(&target);
    assert!(
        !found.iter().any(|(p, _)| p.ends_with("lying")),
        "{found:?}"
    );
    assert_eq!(fs::read(target.join("honest")).unwrap(), other.concat());
}

/// A writer key's snapshot whose files cannot be where it says: `vault
/// check` names each from the index alone (no data read), before anyone
/// needs the restore: a bundled file's bytes past its bundle, and a large
/// file whose blobs add up to less than its size. An index file planted to
/// claim another length for a file's blob (which would hide both) is named
/// too. A slice within the 64 bytes a salted blob's indexed length is
/// rounded to is left to restore (which reads the bundle, as the vector
/// below shows).
#[test]
fn check_names_files_their_blobs_cannot_hold() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let bundle = c.data(b"first file;second");
    let mut past = node("past", NodeKind::File);
    past.size = 1;
    past.content = vec![bundle];
    past.bundle_offset = Some(4000);
    past.hash = Some(Id::of_bytes(b"x"));
    let pieces = [noise(20_000, 1), noise(20_000, 2)];
    let mut short = c.file_claiming("short", &pieces, &[20_000, 20_000]);
    short.size = 50_000;
    let good = c.file("good", &noise(30_000, 3));
    let disputed = c.file("disputed", &noise(20_000, 4));
    c.conflict = Some(disputed.content[0]);
    let blob = disputed.content[0];
    let root = c.tree(vec![disputed, good, past, short]);
    let snap = c.finish(root, totals(4, 0, 100_001));
    let out = env.vault(&["check"], &env.owner_key, &[]);
    assert_code(&out, 4);
    let said = stdout(&out);
    assert_contains(
        &said,
        &format!("/past: its bytes 4000 to 4001 lie past the end of bundle {bundle} (17 bytes)"),
    );
    assert_contains(
        &said,
        "/short: its blobs add up to 40000 bytes, the snapshot says 50000",
    );
    assert_contains(
        &said,
        &format!("/disputed: index files disagree on the length of its blob {blob}"),
    );
    assert!(!said.contains("/good"), "{said}");
    // Each says what to do about it.
    assert_eq!(
        said.matches("restore refuses this file").count(),
        2,
        "{said}"
    );
    assert_eq!(
        said.matches("`vault backup --no-cache`").count(),
        2,
        "{said}"
    );
    assert_contains(&said, "`vault prune` drops the other");
    // Restore refuses the first two files, and restores the disputed one
    // from the location that verifies, and the honest one.
    let target = env.path("target");
    let out = env.restore(&snap, &target);
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "blobs add up to 40000 bytes");
    assert_eq!(fs::read(target.join("good")).unwrap(), noise(30_000, 3));
    assert_eq!(fs::read(target.join("disputed")).unwrap(), noise(20_000, 4));
}

/// A writer key plants an index entry for a genuine blob at its true place
/// (pack, offset, stored length) that claims another uncompressed length:
/// `vault check --read-data` compares every claim with the pack and names
/// this one (exit 4), restore restores the file from the claim that
/// verifies, and a prune drops the false entry so that the next check
/// --read-data is clean.
#[test]
fn read_data_names_an_index_entry_misstating_a_blobs_length() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let bytes = noise(20_000, 5);
    let file = c.file("misstated", &bytes);
    let blob = file.content[0];
    c.misstated = Some(blob);
    let root = c.tree(vec![file]);
    let snap = c.finish(root, totals(1, 0, 20_000));
    let out = env.vault(&["check"], &env.owner_key, &["--read-data"]);
    assert_code(&out, 4);
    let said = stdout(&out);
    assert_contains(
        &said,
        &format!("index claims blob {blob} is 20001 bytes uncompressed; the pack holds 20000"),
    );
    assert_contains(
        &said,
        "`vault prune` drops the entry when another copy verifies",
    );
    let target = env.path("target");
    assert_success(&env.restore(&snap, &target));
    assert_eq!(fs::read(target.join("misstated")).unwrap(), bytes);
    assert_success(&env.vault(&["prune"], &env.owner_key, &[]));
    let out = env.vault(&["check"], &env.owner_key, &["--read-data"]);
    assert_success(&out);
    assert!(!stdout(&out).contains("index claims"), "{}", stdout(&out));
}

/// A writer key's snapshot names bundled files (format 5) whose bytes are
/// not in their bundle: each such file is reported damaged and nothing is
/// written under its name, while a file truly in the bundle restores; a
/// tree that places a file past the largest bundle is refused as a whole.
#[test]
fn vector_bundle_offsets_past_the_bundle_restore_nothing_of_the_file() {
    let env = Env::new();
    let mut c = Crafter::new(&env);
    let bundle = b"first file;second".to_vec();
    let id = c.data(&bundle);
    let bundled = |name: &str, at: u64, bytes: &[u8]| {
        let mut n = node(name, NodeKind::File);
        n.size = bytes.len() as u64;
        n.content = vec![id];
        n.bundle_offset = Some(at);
        n.hash = Some(Id::of_bytes(bytes));
        n
    };
    let honest = bundled("a-honest", 0, b"first file");
    // Past the bundle's 17 bytes (within the 64 KiB any bundle may hold),
    // and a slice that starts inside it and runs past its end.
    let past = bundled("b-past", 4000, b"x");
    let across = bundled("c-across", 11, b"second and more");
    let root = c.tree(vec![honest, past, across]);
    let snap = c.finish(root, totals(3, 0, 26));
    let target = env.path("target");
    let out = env.restore(&snap, &target);
    assert_code(&out, 4);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_contains(&said, "a file in it claims bytes 4000 to 4001");
    assert_contains(&said, "claims bytes 11 to 26");
    assert_eq!(fs::read(target.join("a-honest")).unwrap(), b"first file");
    let names: Vec<_> = entries(&target)
        .into_iter()
        .filter(|(_, f)| *f)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(names.len(), 1, "only the honest file: {names:?}");
    // Past the largest bundle: the tree itself is refused.
    let mut c = Crafter::new(&env);
    let id2 = c.data(&bundle);
    assert_eq!(id2, id);
    let mut far = bundled("far", vault::format::tree::BUNDLE_MAX, b"x");
    far.content = vec![id2];
    let root = c.tree(vec![far]);
    let snap = c.finish(root, totals(1, 0, 1));
    // The tree refused as a whole: nothing restored, the reason named.
    let refused = |snap: &str, target: &str, why: &str| {
        let target = env.path(target);
        let out = env.restore(snap, &target);
        assert_code(&out, 4);
        assert_contains(&format!("{}{}", stdout(&out), stderr(&out)), why);
        assert!(entries(&target).iter().all(|(_, f)| !f));
    };
    refused(
        &snap,
        "target-far",
        "is bundled but is not a small file of one blob",
    );
    // A bundled file larger than a small file (16 KiB), though within the
    // 64 KiB of a bundle: readers treat bundled files as small, so the
    // tree is refused too.
    let mut c = Crafter::new(&env);
    let big_bytes = vec![b'y'; vault::format::salt::SALTED_MAX as usize + 1];
    let big_id = c.data(&big_bytes);
    let mut big = bundled("big", 0, &big_bytes);
    big.content = vec![big_id];
    let root = c.tree(vec![big]);
    let snap = c.finish(root, totals(1, 0, big_bytes.len() as u64));
    refused(
        &snap,
        "target-big",
        "is bundled but is not a small file of one blob (at most 16384 bytes)",
    );
}
