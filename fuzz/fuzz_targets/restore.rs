//! Restores a repository built from the fuzzer's bytes — trees with hostile
//! names, symlinks pointing out, hard-link groups, devices, lying sizes and
//! hashes — twice into one target (the second restore meets what the first
//! left, symlinks included), and asserts that nothing outside the target
//! was created, changed or removed.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vault::format::id::{BlobId, Id, SnapshotId, TreeId};
use vault::format::index::{IndexFile, IndexedPack};
use vault::format::pack::BlobKind;
use vault::format::snapshot::{Snapshot, SourceRecord, SourceStatus, Totals};
use vault::format::tree::{Bytes, Node, NodeKind, Tree, Xattr};
use vault::ops::restore::{RestoreOptions, restore};
use vault::repo::packer::PackBuilder;
use vault::repo::{Access, InitOptions, ObjectKind, OwnerSpec, Repository};
use vault::storage::{LocalStorage, Storage};

/// Names the fuzzer picks from (besides raw bytes): the hostile ones a
/// reader must refuse and ordinary ones that collide across trees.
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b"d",
    b"..",
    b".",
    b"",
    b"a/b",
    b"/",
    b"x\0y",
    b"b64:x",
    b".vault-restore-0000000000000000",
    b"outside",
    b"target",
];

/// Symlink targets: relative and absolute escapes (`@OUT@`, `@TGT@` and
/// `@BASE@` are replaced by the absolute paths of the outside directory, the
/// target and the directory holding both). None leads above that directory,
/// so that a restore bug found here cannot write anywhere else on the
/// machine running the fuzzer.
const TARGETS: &[&str] = &[
    "..",
    "../outside",
    "../outside/victim",
    "../../outside",
    "../../outside/victim",
    "../../../outside",
    "@OUT@",
    "@OUT@/victim",
    "@TGT@",
    "@TGT@/..",
    "@BASE@",
    "a",
    "b",
    "a/b",
    "../a",
    ".",
    "../target/a",
];

const INCLUDES: &[&str] = &["a", "a/*", "*/b", "b", "**", "c/**", ".."];

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Chardev,
    Blockdev,
    Socket,
}

#[derive(Debug, Arbitrary)]
struct FNode {
    name: Name,
    kind: Kind,
    mode: u16,
    mtime_ns: i64,
    /// Index into TARGETS.
    target: Option<u8>,
    hardlink: Option<u8>,
    /// Indices into the data blobs.
    content: Vec<u8>,
    /// Record a wrong whole-file hash.
    bad_hash: bool,
    /// Added to the true size.
    size_lie: i8,
    /// A subtree among the later trees (or a random id).
    subtree: Option<Result<u8, [u8; 32]>>,
    xattr: Option<(Vec<u8>, Vec<u8>)>,
    rdev: u16,
}

#[derive(Debug, Arbitrary)]
struct FTree {
    nodes: Vec<FNode>,
    /// Sort and dedupe names (as vault writes them); otherwise keep the
    /// fuzzer's order, which readers must refuse when it is wrong.
    sorted: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    blobs: Vec<Vec<u8>>,
    trees: Vec<FTree>,
    /// Root tree of each of the two snapshots restored in turn.
    roots: (u8, u8),
    include: Option<u8>,
}

struct Template {
    dir: tempfile::TempDir,
    repo: Repository,
}

fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// One repository made once; every input's objects are removed after it.
fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("vault-fuzz-template-")
            .tempdir_in(scratch_root())
            .expect("template dir");
        let owner = age::x25519::Identity::generate();
        let identity = dir.path().join("owner.key");
        {
            use age::secrecy::ExposeSecret;
            fs::write(
                &identity,
                format!("{}\n", owner.to_string().expose_secret()),
            )
            .unwrap();
            fs::set_permissions(&identity, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let repo_dir = dir.path().join("repo");
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&repo_dir));
        Repository::init(
            storage.clone(),
            &InitOptions {
                owner: OwnerSpec::Recipients(vec![owner.to_public().to_string()]),
                owner_name: "fuzz".into(),
                writer_key_out: dir.path().join("writer.key"),
                chunker: vault::format::chunk::ChunkerParams::default(),
                pack_size: 1 << 20,
                compression_level: 1,
                object_lock: None,
            },
        )
        .expect("init");
        let repo = Repository::open(storage, Access::IdentityFile(&identity)).expect("open");
        Template { dir, repo }
    })
}

/// Removes every object an input added (keys and config stay).
fn clear_objects(repo_dir: &Path) {
    for sub in ["data", "tree", "index", "snapshots"] {
        let _ = fs::remove_dir_all(repo_dir.join(sub));
    }
}

/// Everything under `dir` (not following symlinks) with what could change.
fn survey(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let p = e.unwrap().path();
        if p == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let xattrs: Vec<_> = xattr::list(&p).map(|l| l.collect()).unwrap_or_default();
        out.insert(
            p.clone(),
            format!(
                "{:o} {} {} {} {} {}.{} {:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.nlink(),
                m.mtime(),
                m.mtime_nsec(),
                xattrs
            ),
        );
        if m.is_dir() {
            survey(&p, skip, out);
        }
    }
}

fn name_of(n: &Name) -> Vec<u8> {
    match n {
        Name::Known(i) => NAMES[*i as usize % NAMES.len()].to_vec(),
        Name::Raw(b) => b.iter().take(16).copied().collect(),
    }
}

fn build(
    repo: &Repository,
    input: &Input,
    out_dir: &Path,
    target: &Path,
) -> vault::Result<Vec<(SnapshotId, Snapshot)>> {
    let key = *repo.keys().chunk_key();
    let seal = repo.keys().owner_only();
    let blobs: Vec<&[u8]> = input
        .blobs
        .iter()
        .take(6)
        .map(|b| &b[..b.len().min(512)])
        .collect();
    let blob_ids: Vec<BlobId> = blobs.iter().map(|b| BlobId::keyed(&key, b)).collect();
    let mut data = PackBuilder::new(BlobKind::Data, &seal, 0)?;
    for (b, id) in blobs.iter().zip(&blob_ids) {
        let z = zstd::bulk::compress(b, 1).expect("zstd");
        data.add(*id, &z, b.len() as u32)?;
    }
    let trees: Vec<&FTree> = input.trees.iter().take(8).collect();
    let mut tree_ids = vec![Id([0; 32]); trees.len()];
    let mut tree_pack = PackBuilder::new(BlobKind::Tree, &seal, 0)?;
    // Bottom-up: tree i may only point at trees after it (content
    // addressing makes cycles impossible anyway).
    for i in (0..trees.len()).rev() {
        let mut nodes = Vec::new();
        for f in trees[i].nodes.iter().take(6) {
            let content: Vec<BlobId> = if blob_ids.is_empty() {
                Vec::new()
            } else {
                f.content
                    .iter()
                    .take(4)
                    .map(|c| blob_ids[*c as usize % blob_ids.len()])
                    .collect()
            };
            let mut whole = Vec::new();
            for c in f.content.iter().take(content.len()) {
                whole.extend_from_slice(blobs[*c as usize % blobs.len()]);
            }
            let mut hash = Id::of_bytes(&whole);
            if f.bad_hash {
                hash.0[0] ^= 1;
            }
            let kind = match f.kind {
                Kind::File => NodeKind::File,
                Kind::Dir => NodeKind::Dir,
                Kind::Symlink => NodeKind::Symlink,
                Kind::Fifo => NodeKind::Fifo,
                Kind::Chardev => NodeKind::Chardev,
                Kind::Blockdev => NodeKind::Blockdev,
                Kind::Socket => NodeKind::Socket,
            };
            let later = trees.len() - i - 1;
            let subtree = match &f.subtree {
                Some(Ok(k)) if later > 0 => Some(TreeId(tree_ids[i + 1 + *k as usize % later])),
                Some(Err(raw)) => Some(TreeId(Id(*raw))),
                _ => None,
            };
            let target_bytes = f.target.map(|k| {
                TARGETS[k as usize % TARGETS.len()]
                    .replace("@OUT@", &out_dir.display().to_string())
                    .replace("@TGT@", &target.display().to_string())
                    .replace("@BASE@", &target.parent().unwrap().display().to_string())
                    .into_bytes()
            });
            nodes.push(Node {
                name: Bytes(name_of(&f.name)),
                kind,
                mode: u32::from(f.mode) & 0o7777,
                uid: 0,
                gid: 0,
                user: None,
                group: None,
                mtime_ns: f.mtime_ns,
                size: (whole.len() as i64 + i64::from(f.size_lie)).max(0) as u64,
                target: target_bytes.map(Bytes),
                rdev: Some(u64::from(f.rdev)),
                hardlink: f.hardlink.map(|h| format!("1:{}", h % 4)),
                xattrs: f
                    .xattr
                    .iter()
                    .map(|(n, v)| Xattr {
                        name: Bytes([b"user.".as_slice(), &n[..n.len().min(16)]].concat()),
                        value: v.iter().take(32).copied().collect(),
                    })
                    .collect(),
                content: if kind == NodeKind::File {
                    content
                } else {
                    Vec::new()
                },
                bundle_offset: None,
                content_lists: Vec::new(),
                hash: (kind == NodeKind::File).then_some(hash),
                subtree,
            });
        }
        if trees[i].sorted {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
        }
        let bytes = Tree { nodes }.to_bytes();
        tree_ids[i] = Id::keyed(&key, &bytes);
        let z = zstd::bulk::compress(&bytes, 1).expect("zstd");
        tree_pack.add(BlobId(tree_ids[i]), &z, bytes.len() as u32)?;
    }
    let mut index = IndexFile::default();
    for pack in [data, tree_pack] {
        if pack.is_empty() {
            continue;
        }
        let p = pack.finish()?;
        repo.put_object(ObjectKind::Pack(p.kind), &p.bytes)?;
        index
            .packs
            .push(IndexedPack::from_entries(p.id, p.kind, &p.entries));
    }
    repo.put_shared_json(ObjectKind::Index, &index)?;
    let mut snaps = Vec::new();
    for r in [input.roots.0, input.roots.1] {
        let root = TreeId(if tree_ids.is_empty() {
            Id([7; 32])
        } else {
            tree_ids[r as usize % tree_ids.len()]
        });
        let s = Snapshot {
            time: chrono::Utc::now(),
            host: "fuzz".into(),
            user: "root".into(),
            tags: Vec::new(),
            sources: vec![SourceRecord {
                kind: "paths".into(),
                name: "/".into(),
                paths: vec!["/".into()],
                status: SourceStatus::Ok,
                command: None,
                details: None,
            }],
            root,
            totals: Totals::default(),
            errors: Vec::new(),
            certificates: Vec::new(),
            parent: None,
            program_version: "fuzz".into(),
        };
        let id = repo.put_shared_json(ObjectKind::Snapshot, &s)?;
        snaps.push((SnapshotId(id), s));
    }
    Ok(snaps)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let t = template();
    let repo = &t.repo;
    let repo_dir = t.dir.path().join("repo");
    clear_objects(&repo_dir);
    let base = tempfile::Builder::new()
        .prefix("vault-fuzz-restore-")
        .tempdir_in(scratch_root())
        .expect("base dir");
    let base_path = fs::canonicalize(base.path()).unwrap();
    let outside = base_path.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"must stay as it is").unwrap();
    let target = base_path.join("target");
    fs::create_dir(&target).unwrap();
    let snaps = build(repo, &input, &outside, &target).expect("build");

    // Everything beside the target, and the repository, must stay as is.
    let mut before = BTreeMap::new();
    survey(&base_path, &target, &mut before);
    survey(&repo_dir, &target, &mut before);
    let opts = RestoreOptions {
        target: target.clone(),
        include: input
            .include
            .map(|i| vec![INCLUDES[i as usize % INCLUDES.len()].to_owned()])
            .unwrap_or_default(),
        exclude: Vec::new(),
        threads: 1,
        verify: false,
        cancel: Default::default(),
        // What an operator gets by default: no devices, no set-id bits.
        policy: Default::default(),
        overwrite: Default::default(),
        progress: None,
    };
    for (id, s) in &snaps {
        // Errors and problems are fine; escaping is not.
        let _ = restore(repo, id, s, &opts);
        let m = fs::symlink_metadata(&target).expect("target still exists");
        assert!(m.is_dir(), "the target was replaced");
        let mut after = BTreeMap::new();
        survey(&base_path, &target, &mut after);
        survey(&repo_dir, &target, &mut after);
        assert_eq!(before, after, "something outside the target changed");
        assert_eq!(
            fs::read(outside.join("victim")).unwrap(),
            b"must stay as it is"
        );
    }
});
