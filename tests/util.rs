//! Shared helpers: a temporary workspace with an initialised repository and
//! functions that run the `vault` binary.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The vault binary under test.
pub fn vault_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vault"))
}

/// A workspace: temp dir, repository, owner identity and writer key.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub owner_key: PathBuf,
    pub writer_key: PathBuf,
    pub owner_recipient: String,
    pub cache: PathBuf,
}

impl Env {
    /// Generates an owner identity and initialises a repository.
    pub fn new() -> Env {
        Env::with_init(&[])
    }

    /// [`Env::new`] with more `vault init` options (`--chunk-avg-kib 1`, …).
    pub fn with_init(options: &[&str]) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let owner_key = dir.path().join("owner.key");
        let writer_key = dir.path().join("writer.key");
        let out = run(&["key", "generate", "--output", owner_key.to_str().unwrap()]);
        assert_success(&out);
        let owner_recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let mut init = vec![
            "init",
            "-r",
            repo.to_str().unwrap(),
            "--owner",
            &owner_recipient,
            "--owner-name",
            "ops",
            "--writer-key-out",
            writer_key.to_str().unwrap(),
        ];
        init.extend(options);
        let out = run(&init);
        assert_success(&out);
        let cache = dir.path().join("cache");
        Env {
            dir,
            repo,
            owner_key,
            writer_key,
            owner_recipient,
            cache,
        }
    }

    /// A path inside the workspace.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `vault CMD -r REPO -i KEY ARGS...`.
    pub fn vault(&self, cmd: &[&str], key: &Path, args: &[&str]) -> Output {
        let mut all: Vec<&str> = cmd.to_vec();
        all.extend([
            "-r",
            self.repo.to_str().unwrap(),
            "-i",
            key.to_str().unwrap(),
        ]);
        all.extend(args);
        run(&all)
    }

    /// Backs up `paths` with the writer key and the workspace cache; returns the snapshot id.
    pub fn backup(&self, paths: &[&Path]) -> String {
        let mut args = vec!["--cache-dir", self.cache.to_str().unwrap(), "--json"];
        args.extend(paths.iter().map(|p| p.to_str().unwrap()));
        let out = self.vault(&["backup"], &self.writer_key, &args);
        assert_success(&out);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("backup --json output");
        v["id"].as_str().unwrap().to_owned()
    }

    /// `vault backup --no-cache --json ARGS` with the writer key; returns the
    /// output and the parsed JSON (null when the run printed none).
    pub fn backup_json(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let mut all = vec!["--no-cache", "--json"];
        all.extend(args);
        let out = self.vault(&["backup"], &self.writer_key, &all);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, v)
    }

    /// Restores `snapshot` with the owner key into `target`.
    pub fn restore(&self, snapshot: &str, target: &Path) -> Output {
        self.vault(
            &["restore"],
            &self.owner_key,
            &[snapshot, "--target", target.to_str().unwrap()],
        )
    }
}

/// Runs the vault binary with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(vault_bin())
        .args(args)
        .env_remove("VAULT_REPO")
        .env_remove("VAULT_IDENTITY")
        .env_remove("VAULT_PASSPHRASE_FILE")
        .env_remove("VAULT_CONFIG")
        .output()
        .expect("run vault")
}

/// Asserts exit 0, showing stderr otherwise.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "vault failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a specific exit code.
#[track_caller]
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "unexpected exit\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a file, creating parents.
pub fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small server-like tree: configs, a keystore, a dump-like file, a
/// symlink, a hard link, an empty dir, odd modes and a non-UTF-8 name.
pub fn sample_tree(root: &Path) {
    write(
        &root.join("etc/app/app.conf"),
        b"listen = 0.0.0.0:8443\nworkers = 4\n",
    );
    write(
        &root.join("etc/app/conf.d/10-tls.conf"),
        b"cert = /etc/app/tls/server.pem\n",
    );
    write(&root.join("etc/app/tls/server.key"), &noise(1700, 1));
    fs::set_permissions(
        root.join("etc/app/tls/server.key"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    write(&root.join("opt/keystores/keystore.p12"), &noise(4000, 2));
    let mut dump = Vec::new();
    for i in 0..20000 {
        dump.extend_from_slice(
            format!(
                "INSERT INTO orders VALUES ({i}, 'customer {}', {});\n",
                i * 7 % 1000,
                i % 97
            )
            .as_bytes(),
        );
    }
    write(&root.join("var/backups/app.sql"), &dump);
    std::os::unix::fs::symlink("app.conf", root.join("etc/app/current.conf")).unwrap();
    fs::hard_link(
        root.join("etc/app/app.conf"),
        root.join("etc/app/app.conf.hardlink"),
    )
    .unwrap();
    fs::create_dir_all(root.join("var/empty")).unwrap();
    let odd = std::ffi::OsStr::from_encoded_bytes_checked(b"odd-\xff-name");
    write(&root.join("etc").join(odd), b"non-utf8 name\n");
    fs::set_permissions(
        root.join("etc/app/conf.d"),
        fs::Permissions::from_mode(0o750),
    )
    .unwrap();
}

trait FromBytes {
    fn from_encoded_bytes_checked(b: &[u8]) -> &Self;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_checked(b: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// Compares two trees: names, kinds, contents, modes, symlink targets and mtimes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mut entries_a: Vec<_> = walk(a);
    let mut entries_b: Vec<_> = walk(b);
    entries_a.sort();
    entries_b.sort();
    assert_eq!(entries_a, entries_b, "different file lists");
    for rel in entries_a {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{rel:?} kind");
        if ma.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&pa).unwrap(),
                fs::read_link(&pb).unwrap(),
                "{rel:?} target"
            );
            continue;
        }
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{rel:?} mode");
        if ma.is_file() {
            assert_eq!(
                fs::read(&pa).unwrap(),
                fs::read(&pb).unwrap(),
                "{rel:?} content"
            );
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "{rel:?} mtime"
            );
        }
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Makes a new age identity at `path`; returns its recipient.
pub fn generate_key(path: &Path) -> String {
    let out = run(&["key", "generate", "--output", path.to_str().unwrap()]);
    assert_success(&out);
    stdout(&out).trim().to_owned()
}

/// Backs up `src` into `repo` with `key`, without the file cache.
pub fn backup_no_cache(repo: &Path, key: &Path, src: &Path) {
    assert_success(&run(&[
        "backup",
        "-r",
        repo.to_str().unwrap(),
        "-i",
        key.to_str().unwrap(),
        "--no-cache",
        src.to_str().unwrap(),
    ]));
}

/// Asserts that `text` contains `needle`, showing `text` otherwise.
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

/// The source of `kind` in a `backup --json` result.
pub fn source_of_kind<'a>(v: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    v["snapshot"]["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} source in {v}"))
}

/// The snapshot ids `vault snapshots --json` lists for `repo`, read with `key`.
pub fn snapshot_ids_in(repo: &str, key: &Path) -> Vec<String> {
    let out = run(&[
        "snapshots",
        "-r",
        repo,
        "-i",
        key.to_str().unwrap(),
        "--json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Opens the local repository at `repo` with the key file at `key`, as a
/// test that plays an attacker or inspects objects does.
pub fn open_repo(repo: &Path, key: &Path) -> vault::repo::Repository {
    vault::repo::Repository::open(
        std::sync::Arc::new(vault::storage::LocalStorage::new(repo)),
        vault::repo::Access::IdentityFile(key),
    )
    .expect("open the repository")
}

/// A Perl script racing vault as `nobody` (uid and gid 65534, no groups):
/// it runs until the stop file appears and prints how many swaps it made.
pub struct Racer {
    child: std::process::Child,
    stop: PathBuf,
}

impl Racer {
    /// Starts `script` with `args` and then `stop`, the file whose
    /// appearance ends it.
    pub fn start(script: &str, args: &[&Path], stop: &Path) -> Racer {
        let _ = fs::remove_file(stop);
        let child = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "perl",
                "-e",
                script,
            ])
            .args(args)
            .arg(stop)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the racer (setpriv and perl)");
        Racer {
            child,
            stop: stop.to_path_buf(),
        }
    }

    /// Stops the racer; returns how many swaps it made.
    pub fn stop(self) -> u64 {
        fs::write(&self.stop, b"").unwrap();
        let raced = self.child.wait_with_output().unwrap();
        assert!(raced.status.success(), "racer failed: {raced:?}");
        String::from_utf8_lossy(&raced.stdout)
            .trim()
            .parse()
            .unwrap()
    }
}

/// The entries of directory `dir` (an absolute path that was backed up) in
/// snapshot `snapshot`, as the owner reads them.
pub fn dir_nodes(env: &Env, snapshot: &str, dir: &Path) -> Vec<vault::format::tree::Node> {
    let repo = open_repo(&env.repo, &env.owner_key);
    let (index, _) = repo.load_index().unwrap();
    let mut reader = vault::repo::BlobReader::new(&repo);
    let tree_id = dir_tree(env, snapshot, dir);
    repo.read_tree(&index, &mut reader, &tree_id).unwrap().nodes
}

/// The tree of directory `dir` (an absolute path that was backed up) in
/// snapshot `snapshot`, found by the owner.
pub fn dir_tree(env: &Env, snapshot: &str, dir: &Path) -> vault::TreeId {
    let repo = open_repo(&env.repo, &env.owner_key);
    let (index, _) = repo.load_index().unwrap();
    let mut reader = vault::repo::BlobReader::new(&repo);
    let (_, snap) = repo.find_snapshot(snapshot).unwrap();
    let mut tree_id = snap.root;
    for part in dir.strip_prefix("/").unwrap().components() {
        let tree = repo.read_tree(&index, &mut reader, &tree_id).unwrap();
        let name = part.as_os_str().as_encoded_bytes();
        let node = tree.nodes.iter().find(|n| n.name.0 == name).unwrap();
        tree_id = node.subtree.unwrap();
    }
    tree_id
}
