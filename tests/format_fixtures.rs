//! Frozen repositories of every format version (`fixtures/repo-v*/`), read
//! with today's code: each was written once by the vault of its version
//! (`scripts/make-fixture-vN.sh`) and is never regenerated, so these tests
//! prove that a newer vault still checks, lists, restores and dumps what an
//! older one wrote, with both of its keys. No PostgreSQL is needed: the dumps
//! are restored as files and compared byte for byte, never loaded.
//!
//! Each fixture holds `repo/`, `owner.key`, `writer.key` and `manifest.json`
//! (its layout is described in the fixture's README.md): per snapshot the
//! header facts and every entry below the snapshot's roots (path, kind, mode,
//! owner, mtime, size, BLAKE3, symlink target, device, hard-link group, user
//! xattrs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::util::*;

/// Every `fixtures/repo-v*` directory, oldest format first.
fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir(&root)
        .expect("fixtures/")
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let v = p
                .file_name()?
                .to_str()?
                .strip_prefix("repo-v")?
                .parse()
                .ok()?;
            Some((v, p))
        })
        .collect();
    dirs.sort();
    assert!(
        dirs.first().is_some_and(|(v, _)| *v == 1),
        "fixtures/repo-v1 is missing: the format v1 reference must stay"
    );
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// A fixture copied into a temporary directory, keys made 0600 (git checks
/// them out 0644, which vault rightly refuses).
struct Fixture {
    name: String,
    _dir: tempfile::TempDir,
    work: PathBuf,
    repo: PathBuf,
    owner_key: PathBuf,
    writer_key: PathBuf,
    manifest: Value,
}

impl Fixture {
    fn copy(src: &Path) -> Fixture {
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join(&name);
        copy_tree(src, &work);
        let manifest: Value =
            serde_json::from_slice(&fs::read(work.join("manifest.json")).unwrap())
                .unwrap_or_else(|e| panic!("{name}/manifest.json: {e}"));
        let file = |k: &str| work.join(manifest[k].as_str().unwrap_or_else(|| panic!("{k}")));
        let (repo, owner_key, writer_key) =
            (file("repository"), file("owner_key"), file("writer_key"));
        for key in [&owner_key, &writer_key] {
            fs::set_permissions(key, fs::Permissions::from_mode(0o600)).unwrap();
        }
        Fixture {
            name,
            _dir: dir,
            work,
            repo,
            owner_key,
            writer_key,
            manifest,
        }
    }

    /// `vault CMD -r REPO [-i KEY] ARGS`.
    fn vault(&self, cmd: &[&str], key: Option<&Path>, args: &[&str]) -> Output {
        let mut all = cmd.to_vec();
        all.extend(["-r", self.repo.to_str().unwrap()]);
        if let Some(k) = key {
            all.extend(["-i", k.to_str().unwrap()]);
        }
        all.extend(args);
        run(&all)
    }

    fn snapshots(&self) -> &[Value] {
        self.manifest["snapshots"].as_array().expect("snapshots")
    }
}

/// Copies the directories and regular files of a fixture (all it may hold).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if t.is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            assert!(
                t.is_file(),
                "{}: fixtures hold only files",
                e.path().display()
            );
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A byte string as the manifest (and docs/FORMAT.md §6) writes it.
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.starts_with("b64:") => s.to_owned(),
        _ => format!("b64:{}", B64.encode(b)),
    }
}

/// The bytes a manifest (or tree node) string stands for.
fn bytes(s: &str) -> Vec<u8> {
    match s.strip_prefix("b64:") {
        Some(b) => B64.decode(b).expect("b64: value"),
        None => s.as_bytes().to_vec(),
    }
}

fn entries(snapshot: &Value) -> &[Value] {
    snapshot["entries"].as_array().expect("entries")
}

fn roots(snapshot: &Value) -> Vec<Vec<u8>> {
    snapshot["roots"]
        .as_array()
        .expect("roots")
        .iter()
        .map(|r| bytes(r.as_str().unwrap()))
        .collect()
}

/// Describes the restored tree below each of `roots` in `target` the way the
/// fixture script describes its source: one JSON object per entry, by path.
fn describe(target: &Path, roots: &[Vec<u8>]) -> BTreeMap<Vec<u8>, Value> {
    let mut paths: Vec<Vec<u8>> = Vec::new();
    for root in roots {
        let mut stack = vec![root.clone()];
        while let Some(rel) = stack.pop() {
            let full = target.join(OsStr::from_bytes(&rel));
            let m = fs::symlink_metadata(&full)
                .unwrap_or_else(|e| panic!("{} not restored: {e}", full.display()));
            if m.is_dir() {
                for e in fs::read_dir(&full).unwrap() {
                    let mut child = rel.clone();
                    child.push(b'/');
                    child.extend_from_slice(e.unwrap().file_name().as_bytes());
                    stack.push(child);
                }
            }
            paths.push(rel);
        }
    }
    paths.sort();
    let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = BTreeMap::new();
    for rel in paths {
        let full = target.join(OsStr::from_bytes(&rel));
        let m = fs::symlink_metadata(&full).unwrap();
        let t = m.file_type();
        let kind = if t.is_file() {
            "file"
        } else if t.is_dir() {
            "dir"
        } else if t.is_symlink() {
            "symlink"
        } else if t.is_fifo() {
            "fifo"
        } else if t.is_char_device() {
            "chardev"
        } else if t.is_block_device() {
            "blockdev"
        } else {
            "socket"
        };
        let path = text(&rel);
        let mut e = json!({
            "path": path,
            "kind": kind,
            "mode": format!("{:04o}", m.mode() & 0o7777),
            "uid": m.uid(),
            "gid": m.gid(),
            "mtime_ns": m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        });
        if t.is_file() {
            e["size"] = json!(m.len());
            e["blake3"] = json!(blake3::hash(&fs::read(&full).unwrap()).to_hex().to_string());
        }
        if t.is_symlink() {
            e["target"] = json!(text(fs::read_link(&full).unwrap().as_os_str().as_bytes()));
        }
        if t.is_char_device() || t.is_block_device() {
            let rdev = m.rdev();
            e["rdev"] = json!([nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)]);
        }
        if !t.is_dir() && m.nlink() > 1 {
            let first = first_of_inode
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| path.clone());
            e["hardlink"] = json!(first);
        }
        if !t.is_symlink() {
            let mut xs = serde_json::Map::new();
            for name in xattr::list(&full).unwrap() {
                let n = name.to_string_lossy().into_owned();
                if n.starts_with("user.") {
                    let v = xattr::get(&full, &name).unwrap().unwrap_or_default();
                    xs.insert(n, json!(B64.encode(v)));
                }
            }
            if !xs.is_empty() {
                e["xattrs"] = Value::Object(xs);
            }
        }
        out.insert(rel, e);
    }
    out
}

/// Whether `dir`'s file system takes `user.*` extended attributes.
fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.vault-probe", b"1").is_ok();
    fs::remove_file(&probe).unwrap();
    ok
}

/// Asserts two descriptions are equal, naming every path that differs.
fn assert_same_entries(
    what: &str,
    expected: &BTreeMap<Vec<u8>, Value>,
    actual: &BTreeMap<Vec<u8>, Value>,
) {
    let keys: BTreeSet<&Vec<u8>> = expected.keys().chain(actual.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| expected.get(*k) != actual.get(*k))
        .map(|k| {
            format!(
                "  {}\n    expected {}\n    restored {}",
                text(k),
                expected.get(k).map_or("nothing".into(), Value::to_string),
                actual.get(k).map_or("nothing".into(), Value::to_string)
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: differs from the manifest:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn every_fixture_checks_clean_and_lists_its_snapshots_with_both_keys() {
    for dir in fixture_dirs() {
        let fx = Fixture::copy(&dir);
        let name = &fx.name;
        let out = fx.vault(&["check"], Some(&fx.owner_key), &["--read-data"]);
        assert_success(&out);
        assert_success(&fx.vault(&["check"], None, &["--storage"]));

        let expected: Vec<&str> = fx
            .snapshots()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(expected.len(), 2, "{name}: a fixture holds two snapshots");
        for key in [&fx.owner_key, &fx.writer_key] {
            let out = fx.vault(&["snapshots"], Some(key), &["--json"]);
            assert_success(&out);
            let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            let mut by_time: Vec<&Value> = list.iter().collect();
            by_time.sort_by_key(|s| s["snapshot"]["time"].as_str().unwrap().to_owned());
            let ids: Vec<&str> = by_time.iter().map(|s| s["id"].as_str().unwrap()).collect();
            assert_eq!(
                ids,
                expected,
                "{name}: snapshots read with {}",
                key.display()
            );
            for (got, want) in by_time.iter().zip(fx.snapshots()) {
                let h = &got["snapshot"];
                let sources: Vec<Value> = h["sources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| json!({"kind": s["kind"], "name": s["name"], "status": s["status"]}))
                    .collect();
                let row_counts: serde_json::Map<String, Value> = h["sources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["kind"] == "postgres")
                    .map(|s| {
                        (
                            s["name"].as_str().unwrap().to_owned(),
                            s["details"]["row_counts"].clone(),
                        )
                    })
                    .collect();
                let id = want["id"].as_str().unwrap();
                assert_eq!(h["host"], want["host"], "{name} {id}: host");
                assert_eq!(h["tags"], want["tags"], "{name} {id}: tags");
                assert_eq!(
                    Value::from(sources),
                    want["sources"],
                    "{name} {id}: sources"
                );
                assert_eq!(
                    Value::Object(row_counts),
                    want["row_counts"],
                    "{name} {id}: row counts"
                );
                assert_eq!(
                    h["certificates"], want["certificates"],
                    "{name} {id}: certificates"
                );
                for k in ["files", "dirs", "bytes"] {
                    assert_eq!(h["totals"][k], want["totals"][k], "{name} {id}: totals.{k}");
                }
            }
        }

        // The drill record is readable with the writer key: every source of
        // the fixture has a passed drill (status exits 1 only because the
        // fixture's backups are old).
        let out = fx.vault(&["status"], Some(&fx.writer_key), &["--json"]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        let sources = status["sources"].as_array().unwrap();
        assert_eq!(
            sources.len(),
            fx.snapshots()[1]["sources"].as_array().unwrap().len()
        );
        for s in sources {
            assert!(
                s["last_passed_drill"].is_string(),
                "{name}: no passed drill for {s}"
            );
            assert_eq!(s["failed_drill_since_pass"], Value::Null, "{name}: {s}");
            assert_eq!(s["snapshots"], 2, "{name}: {s}");
        }
        assert_eq!(status["unreadable"], json!([]), "{name}");
    }
}

/// Asserts that `target` holds exactly what the manifest records for `snap`
/// (below its roots, and nothing else but their parent directories).
/// Sockets are recorded, never restored; devices and owners are restored only
/// by root; xattrs only where the file system takes them.
fn assert_restored(what: &str, snap: &Value, target: &Path, xattrs: bool) {
    let as_root = nix::unistd::geteuid().is_root();
    let keep = |e: &Value| as_root || !e["kind"].as_str().unwrap().ends_with("dev");
    let strip = |mut e: Value| {
        let o = e.as_object_mut().unwrap();
        if !as_root {
            o.remove("uid");
            o.remove("gid");
        }
        if !xattrs {
            o.remove("xattrs");
        }
        e
    };
    let expected: BTreeMap<Vec<u8>, Value> = entries(snap)
        .iter()
        .filter(|e| e["kind"] != "socket" && keep(e))
        .map(|e| (bytes(e["path"].as_str().unwrap()), strip(e.clone())))
        .collect();
    let roots = roots(snap);
    let actual = describe(target, &roots)
        .into_iter()
        .map(|(k, v)| (k, strip(v)))
        .collect();
    assert_same_entries(what, &expected, &actual);

    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(target.join(&rel)).unwrap() {
            let p = rel.join(e.unwrap().file_name());
            let under_root = roots.iter().any(|r| p.starts_with(OsStr::from_bytes(r)));
            let parent = roots
                .iter()
                .any(|r| Path::new(OsStr::from_bytes(r)).starts_with(&p));
            assert!(under_root || parent, "{what}: unexpected {}", p.display());
            if parent && !under_root {
                stack.push(p);
            }
        }
    }
}

#[test]
fn every_fixture_restores_each_snapshot_to_its_manifest() {
    for dir in fixture_dirs() {
        let fx = Fixture::copy(&dir);
        let xattrs = user_xattrs_supported(&fx.work);
        for (n, snap) in fx.snapshots().iter().enumerate() {
            let id = snap["id"].as_str().unwrap();
            let target = fx.work.join(format!("restored-{n}"));
            // The fixture is the operator's own: ask for its setuid bits
            // and device nodes too (withheld by default).
            let out = fx.vault(
                &["restore"],
                Some(&fx.owner_key),
                &[
                    id,
                    "--target",
                    target.to_str().unwrap(),
                    "--json",
                    "--allow-devices",
                    "--keep-setid",
                    "--keep-security-xattrs",
                ],
            );
            assert_success(&out);
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            if xattrs {
                assert_eq!(report["report"]["problems"], json!([]), "{} {id}", fx.name);
            }
            assert_restored(&format!("{} snapshot {id}", fx.name), snap, &target, xattrs);
        }
    }
}

/// scripts/restore-without-vault (age, zstd and Python, no vault) must read
/// every format version too: docs/FORMAT.md promises it.
#[test]
fn every_fixture_restores_without_vault() {
    crate::restore_without_vault::require_tools();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/restore-without-vault");
    for dir in fixture_dirs() {
        let fx = Fixture::copy(&dir);
        let xattrs = user_xattrs_supported(&fx.work);
        for (n, snap) in fx.snapshots().iter().enumerate() {
            let id = snap["id"].as_str().unwrap();
            let target = fx.work.join(format!("by-script-{n}"));
            let out = std::process::Command::new(&script)
                .args([&fx.repo, &fx.owner_key])
                .arg(id)
                .arg(&target)
                .env("TMPDIR", &fx.work)
                .output()
                .unwrap();
            assert_success(&out);
            let what = format!("{} snapshot {id}, restored without vault", fx.name);
            assert_restored(&what, snap, &target, xattrs);
        }
    }
}

#[test]
fn every_fixture_lists_and_dumps_what_its_manifest_records() {
    for dir in fixture_dirs() {
        let fx = Fixture::copy(&dir);
        for snap in fx.snapshots() {
            let id = snap["id"].as_str().unwrap();
            let what = format!("{} snapshot {id}", fx.name);
            let manifest: BTreeMap<String, &Value> = entries(snap)
                .iter()
                .map(|e| {
                    let p = bytes(e["path"].as_str().unwrap());
                    (format!("/{}", String::from_utf8_lossy(&p)), e)
                })
                .collect();

            // `vault ls`: the same entries with the same recorded facts.
            let out = fx.vault(&["ls"], Some(&fx.owner_key), &[id, "--json"]);
            assert_success(&out);
            let roots = roots(snap);
            let mut listed = BTreeMap::new();
            for line in stdout(&out).lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                let path = v["path"].as_str().unwrap().to_owned();
                let rel = Path::new(path.trim_start_matches('/'));
                let lossy = |r: &Vec<u8>| String::from_utf8_lossy(r).into_owned();
                if roots.iter().any(|r| rel.starts_with(lossy(r))) {
                    listed.insert(path, v["node"].clone());
                }
            }
            assert_eq!(
                listed.keys().collect::<Vec<_>>(),
                manifest.keys().collect::<Vec<_>>(),
                "{what}: vault ls"
            );
            let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for (path, node) in &listed {
                let e = manifest[path];
                let last = bytes(e["path"].as_str().unwrap());
                let last = last.rsplit(|b| *b == b'/').next().unwrap();
                assert_eq!(
                    bytes(node["name"].as_str().unwrap()),
                    last,
                    "{what}: {path} name"
                );
                assert_eq!(node["kind"], e["kind"], "{what}: {path} kind");
                let mode = u32::from_str_radix(e["mode"].as_str().unwrap(), 8).unwrap();
                assert_eq!(node["mode"], mode, "{what}: {path} mode");
                for k in ["uid", "gid", "mtime_ns"] {
                    assert_eq!(node[k], e[k], "{what}: {path} {k}");
                }
                if e["kind"] == "file" {
                    assert_eq!(node["size"], e["size"], "{what}: {path} size");
                    assert_eq!(node["hash"], e["blake3"], "{what}: {path} hash");
                }
                if let Some(t) = e["target"].as_str() {
                    assert_eq!(
                        bytes(node["target"].as_str().unwrap()),
                        bytes(t),
                        "{what}: {path}"
                    );
                }
                if let Some([major, minor]) = e["rdev"].as_array().map(Vec::as_slice) {
                    let rdev =
                        nix::sys::stat::makedev(major.as_u64().unwrap(), minor.as_u64().unwrap());
                    assert_eq!(node["rdev"], rdev, "{what}: {path} rdev");
                }
                let xattrs: serde_json::Map<String, Value> = node["xattrs"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|x| {
                        let n = String::from_utf8(bytes(x["name"].as_str().unwrap())).unwrap();
                        (n, x["value"].clone())
                    })
                    .filter(|(n, _)| n.starts_with("user."))
                    .collect();
                let want = e.get("xattrs").cloned().unwrap_or(json!({}));
                assert_eq!(Value::Object(xattrs), want, "{what}: {path} xattrs");
                assert_eq!(
                    node["hardlink"].is_string(),
                    e["hardlink"].is_string(),
                    "{what}: {path} hard link"
                );
                if let (Some(group), Some(first)) =
                    (node["hardlink"].as_str(), e["hardlink"].as_str())
                {
                    groups.entry(group).or_default().insert(first);
                }
            }
            assert!(
                groups.values().all(|firsts| firsts.len() == 1),
                "{what}: hard-link groups differ from the manifest: {groups:?}"
            );

            // `vault dump` of each PostgreSQL file, and of the largest file
            // (several chunks), yields the recorded bytes.
            let files: Vec<&Value> = entries(snap)
                .iter()
                .filter(|e| e["kind"] == "file")
                .collect();
            let mut dumped: Vec<&Value> = files
                .iter()
                .copied()
                .filter(|e| e["path"].as_str().unwrap().starts_with("postgres/"))
                .collect();
            assert!(
                !dumped.is_empty(),
                "{what}: no PostgreSQL dump in the manifest"
            );
            dumped.extend(files.iter().max_by_key(|e| e["size"].as_u64().unwrap()));
            for e in dumped {
                let path = e["path"].as_str().unwrap();
                // A single regular file comes out as its bytes, not a tar.
                let out = fx.vault(&["dump"], Some(&fx.owner_key), &[id, path]);
                assert_success(&out);
                let content = &out.stdout;
                assert_eq!(content.len() as u64, e["size"], "{what}: dump {path} size");
                assert_eq!(
                    blake3::hash(content).to_hex().as_str(),
                    e["blake3"],
                    "{what}: dump {path}"
                );
            }

            // The whole snapshot as one archive (sockets included in the
            // tree) reads back with every regular file the manifest lists
            // (hard-link members after the first are link entries).
            let out = fx.vault(&["dump"], Some(&fx.owner_key), &[id]);
            assert_success(&out);
            let all = tar_files(&out.stdout);
            for e in files.iter().filter(|e| e["hardlink"].is_null()) {
                let path = e["path"].as_str().unwrap();
                let content = all
                    .get(&bytes(path))
                    .unwrap_or_else(|| panic!("{what}: whole dump lacks {path}"));
                assert_eq!(
                    blake3::hash(content).to_hex().as_str(),
                    e["blake3"],
                    "{what}: whole dump {path}"
                );
            }
        }
    }
}

/// The regular files of a tar archive: path bytes → content.
fn tar_files(archive: &[u8]) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut out = HashMap::new();
    let mut ar = tar::Archive::new(archive);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path_bytes().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.insert(path, content);
    }
    out
}

/// The nodes `vault ls --json` lists in the first snapshot of
/// `fixtures/repo-v<version>`.
fn first_snapshot_nodes(version: u32) -> Vec<Value> {
    let name = format!("repo-v{version}");
    let dir = fixture_dirs()
        .into_iter()
        .find(|d| d.ends_with(&name))
        .unwrap_or_else(|| panic!("fixtures/{name}"));
    let fx = Fixture::copy(&dir);
    let id = fx.snapshots()[0]["id"].as_str().unwrap().to_owned();
    let out = fx.vault(&["ls"], Some(&fx.owner_key), &[&id, "--json"]);
    assert_success(&out);
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["node"].clone())
        .collect()
}

/// Each tree-format version's fixture holds what its version added, so the
/// tests above prove today's vault still reads it: version 5's has bundled
/// files (`bundle_offset`, docs/FORMAT.md §6.2).
#[test]
fn the_version_5_fixture_holds_bundled_files() {
    let bundled = first_snapshot_nodes(5)
        .iter()
        .filter(|n| n["bundle_offset"].is_u64())
        .count();
    assert!(bundled >= 2, "{bundled} bundled files");
}

/// Version 6's fixture has a bundled file that lies past the first 16 KiB
/// of its bundle (bundles of up to 64 KiB, docs/FORMAT.md §6.2), so the
/// tests above prove today's vault reads such bundles.
#[test]
fn the_version_6_fixture_holds_a_bundle_larger_than_16_kib() {
    let far = first_snapshot_nodes(6)
        .iter()
        .filter(|n| {
            n["bundle_offset"]
                .as_u64()
                .is_some_and(|at| at + n["size"].as_u64().unwrap() > 16384)
        })
        .count();
    assert!(far >= 1, "{far} bundled files past 16 KiB of their bundle");
}
