//! S3 repositories against a real S3-protocol server (moto, started by the
//! harness on a free loopback port), and one storage conformance suite run
//! against both the local directory backend and S3.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vault::storage::{LocalStorage, PutOutcome, S3Options, S3Storage, Storage, StorageError};

mod cache;
mod faults;
mod garage;
mod lock;
mod versions;

use crate::util::*;

/// A moto server process, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (scripts/install-test-deps.sh installs it)");
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            assert!(
                moto.child.try_wait().unwrap().is_none(),
                "moto exited at start (is moto[server] installed?)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
    }

    /// Creates a bucket with Object Lock enabled (versioned; lock
    /// configuration can only be set while it is empty).
    pub fn create_lock_bucket(&self, name: &str) {
        let reply = self.raw(
            "PUT",
            &format!("/{name}"),
            "x-amz-bucket-object-lock-enabled: true\r\n",
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
    }

    /// One unsigned request (moto accepts them); returns the whole reply.
    pub fn raw(&self, method: &str, path: &str, headers: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            credentials: Some(("test".into(), "testsecret".into())),
            path_style: true,
            ..Default::default()
        }
    }

    /// A vault command with this server in its environment.
    pub fn vault(&self, args: &[&str]) -> std::process::Output {
        vault_at(&self.endpoint(), args, &[])
    }
}

/// Runs vault against the S3 endpoint `endpoint`, with extra environment.
pub fn vault_at(endpoint: &str, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(vault_bin())
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "testsecret")
        .env_remove("AWS_PROFILE")
        .env_remove("VAULT_REPO")
        .env_remove("VAULT_IDENTITY")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cases every backend must pass.
fn conformance(s: &dyn Storage) {
    assert_eq!(s.put("index/aa", b"first").unwrap(), PutOutcome::Created);
    assert_eq!(
        s.put("index/aa", b"second").unwrap(),
        PutOutcome::AlreadyExists,
        "write-once"
    );
    assert_eq!(
        s.get("index/aa").unwrap(),
        b"first",
        "an existing object is never overwritten"
    );
    let big = noise(9 << 20, 4);
    s.put("data/ab/big", &big).unwrap();
    s.put("data/ab/small", b"x").unwrap();
    s.put("snapshots/zz", b"s").unwrap();
    let keys: Vec<String> = s
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["data/ab/big", "data/ab/small"]);
    assert_eq!(s.list("data/ab/big").unwrap()[0].size, big.len() as u64);
    assert!(s.list("nothing/").unwrap().is_empty());
    // Streaming reads with seeks in both directions, across read windows.
    let mut r = s.open("data/ab/big").unwrap();
    let mut buf = vec![0u8; 1000];
    r.seek(SeekFrom::Start(5 << 20)).unwrap();
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf, big[5 << 20..(5 << 20) + 1000]);
    r.seek(SeekFrom::Start(10)).unwrap();
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf, big[10..1010]);
    let mut all = Vec::new();
    r.seek(SeekFrom::Start(0)).unwrap();
    r.read_to_end(&mut all).unwrap();
    assert_eq!(all, big);
    assert!(matches!(
        s.get("index/missing"),
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(s.locked_until("data/ab/small").unwrap(), None, "not locked");
    assert!(matches!(
        s.locked_until("index/missing"),
        Err(StorageError::NotFound { .. })
    ));
    assert!(s.pending_uploads().unwrap().is_empty());
    s.delete("data/ab/small").unwrap();
    assert_eq!(s.list("data/").unwrap().len(), 1);
}

#[test]
fn conformance_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&LocalStorage::new(dir.path()));
}

#[test]
fn conformance_s3() {
    let moto = Moto::start();
    moto.create_bucket("conformance");
    let s3 = S3Storage::open("s3://conformance/some/prefix", &moto.options()).unwrap();
    conformance(&s3);
    assert_eq!(s3.location(), "s3://conformance/some/prefix");
}

#[test]
fn backup_to_s3_and_disaster_restore_with_only_the_owner_key() {
    let moto = Moto::start();
    moto.create_bucket("offsite");
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner.key");
    let writer = dir.path().join("writer.key");
    let recipient = generate_key(&owner);
    let repo = "s3://offsite/hosts/web1";
    assert_success(&moto.vault(&[
        "init",
        "-r",
        repo,
        "--owner",
        &recipient,
        "--writer-key-out",
        writer.to_str().unwrap(),
    ]));
    let src = dir.path().join("src");
    sample_tree(&src);
    write(&src.join("var/big.bin"), &noise(12 << 20, 8));
    let cache = dir.path().join("cache");
    let out = moto.vault(&[
        "backup",
        "-r",
        repo,
        "-i",
        writer.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert!(!stdout(&out).contains("testsecret") && !stderr(&out).contains("testsecret"));
    assert_success(&moto.vault(&["snapshots", "-r", repo, "-i", writer.to_str().unwrap()]));

    // Disaster recovery: a new machine with the owner key and the bucket URL.
    let fresh = tempfile::tempdir().unwrap();
    let out = moto.vault(&[
        "restore",
        "-r",
        repo,
        "-i",
        owner.to_str().unwrap(),
        "latest",
        "--verify",
        "--json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true);
    let target = fresh.path().join("t");
    assert_success(&moto.vault(&[
        "restore",
        "-r",
        repo,
        "-i",
        owner.to_str().unwrap(),
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    let check = moto.vault(&[
        "check",
        "-r",
        repo,
        "-i",
        owner.to_str().unwrap(),
        "--read-data",
        "--storage",
    ]);
    assert_success(&check);
    assert_contains(&stdout(&check), "no errors");
    // A second backup dedupes against what is in the bucket.
    let out = moto.vault(&[
        "backup",
        "-r",
        repo,
        "-i",
        writer.to_str().unwrap(),
        "--no-cache",
        "--json",
        src.to_str().unwrap(),
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap() < 4096,
        "{v}"
    );
}

#[test]
fn a_missing_bucket_is_named_clearly() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner.key");
    let recipient = generate_key(&owner);
    let out = moto.vault(&[
        "init",
        "-r",
        "s3://no-such-bucket/x",
        "--owner",
        &recipient,
        "--writer-key-out",
        dir.path().join("w").to_str().unwrap(),
    ]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "bucket does not exist");
}

/// A workspace for one S3 repository: owner and writer keys and a source tree.
pub struct S3Env {
    pub dir: tempfile::TempDir,
    pub owner: std::path::PathBuf,
    pub writer: std::path::PathBuf,
    pub recipient: String,
    pub repo: String,
    pub src: std::path::PathBuf,
}

impl S3Env {
    /// Keys and a sample tree (plus `big` bytes of noise in `big.bin`) for `repo`.
    pub fn new(repo: &str, big: usize) -> S3Env {
        let dir = tempfile::tempdir().unwrap();
        let owner = dir.path().join("owner.key");
        let recipient = generate_key(&owner);
        let src = dir.path().join("src");
        sample_tree(&src);
        if big > 0 {
            write(&src.join("big.bin"), &noise(big, 77));
        }
        S3Env {
            writer: dir.path().join("writer.key"),
            owner,
            recipient,
            repo: repo.to_owned(),
            src,
            dir,
        }
    }

    /// `vault init` with `extra` flags.
    pub fn init(&self, endpoint: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "init",
            "-r",
            &self.repo,
            "--owner",
            &self.recipient,
            "--writer-key-out",
            self.writer.to_str().unwrap(),
        ];
        args.extend(extra);
        vault_at(endpoint, &args, &[])
    }

    /// `vault backup --no-cache` of the source tree with the writer key.
    pub fn backup(&self, endpoint: &str, envs: &[(&str, &str)]) -> std::process::Output {
        let args = [
            "backup",
            "-r",
            &self.repo,
            "-i",
            self.writer.to_str().unwrap(),
            "--no-cache",
            self.src.to_str().unwrap(),
        ];
        vault_at(endpoint, &args, envs)
    }

    /// `vault COMMAND -r REPO -i OWNER ARGS…` against `endpoint`.
    pub fn as_owner(&self, endpoint: &str, command: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec![
            command,
            "-r",
            &self.repo,
            "-i",
            self.owner.to_str().unwrap(),
        ];
        all.extend(args);
        vault_at(endpoint, &all, &[])
    }

    /// `vault snapshots` with the writer key.
    pub fn snapshots(&self, endpoint: &str, envs: &[(&str, &str)]) -> std::process::Output {
        let args = [
            "snapshots",
            "-r",
            &self.repo,
            "-i",
            self.writer.to_str().unwrap(),
        ];
        vault_at(endpoint, &args, envs)
    }

    /// Restores the latest snapshot with the owner key into a new directory
    /// and compares it with the source when that succeeds.
    pub fn restore_and_compare(
        &self,
        endpoint: &str,
        envs: &[(&str, &str)],
    ) -> std::process::Output {
        let target = tempfile::tempdir_in(self.dir.path()).unwrap();
        let args = [
            "restore",
            "-r",
            &self.repo,
            "-i",
            self.owner.to_str().unwrap(),
            "latest",
            "--target",
            target.path().to_str().unwrap(),
        ];
        let out = vault_at(endpoint, &args, envs);
        if out.status.success() {
            assert_same_tree(
                &self.src,
                &target.path().join(self.src.strip_prefix("/").unwrap()),
            );
        }
        out
    }

    /// `vault check --read-data --storage` with the owner key; asserts it is clean.
    pub fn assert_clean(&self, endpoint: &str) {
        let args = [
            "check",
            "-r",
            &self.repo,
            "-i",
            self.owner.to_str().unwrap(),
            "--read-data",
            "--storage",
        ];
        let out = vault_at(endpoint, &args, &[]);
        assert_success(&out);
        assert_contains(&stdout(&out), "no errors");
    }
}

#[test]
fn forget_and_prune_work_on_s3() {
    let moto = Moto::start();
    moto.create_bucket("maint");
    let env = S3Env::new("s3://maint/h", 2_000_000);
    let endpoint = moto.endpoint();
    assert_success(&env.init(&endpoint, &[]));
    assert_success(&env.backup(&endpoint, &[]));
    write(&env.src.join("big.bin"), &noise(2_000_000, 78));
    assert_success(&env.backup(&endpoint, &[]));
    let maint = |args: &[&str]| {
        let out = env.as_owner(&endpoint, args[0], &args[1..]);
        assert_success(&out);
        out
    };
    maint(&["forget", "--keep-last", "1", "--prune", "--grace", "0s"]);
    let s3 = S3Storage::open("s3://maint/h", &moto.options()).unwrap();
    let data_before: u64 = s3.list("data/").unwrap().iter().map(|o| o.size).sum();
    let out = maint(&["prune", "--grace", "0s", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["plan"]["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    let data_after: u64 = s3.list("data/").unwrap().iter().map(|o| o.size).sum();
    assert!(data_after < data_before, "{data_before} -> {data_after}");
    assert_eq!(s3.list("snapshots/").unwrap().len(), 1);
    assert!(
        s3.list("locks/").unwrap().is_empty(),
        "the prune lock is released"
    );
    env.assert_clean(&endpoint);
    assert_success(&env.restore_and_compare(&endpoint, &[]));
}

#[test]
fn the_config_file_names_the_s3_endpoint_region_and_credentials_file() {
    let moto = Moto::start();
    moto.create_bucket("cfg");
    let env = S3Env::new("s3://cfg/h", 0);
    assert_success(&env.init(&moto.endpoint(), &[]));
    let dir = env.dir.path();
    let creds = dir.join("aws-credentials");
    write(
        &creds,
        b"[default]\naws_access_key_id = test\naws_secret_access_key = testsecret\n",
    );
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = dir.join("vault.toml");
    std::fs::write(
        &file,
        format!(
            "repository = \"s3://cfg/h\"\nidentity = \"{}\"\n\n[s3]\nendpoint = \"{}\"\n\
             region = \"us-east-1\"\npath_style = true\ncredentials_file = \"{}\"\n\n\
             [backup]\npaths = [\"{}\"]\n",
            env.writer.display(),
            moto.endpoint(),
            creds.display(),
            env.src.display()
        ),
    )
    .unwrap();
    // No AWS_* variables at all: everything comes from the file.
    let vault = |args: &[&str]| {
        Command::new(vault_bin())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", dir)
            .output()
            .unwrap()
    };
    let cfg = file.to_str().unwrap();
    assert_success(&vault(&["--config", cfg, "backup", "--no-cache"]));
    let out = vault(&["--config", cfg, "snapshots", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    // Without the file's credentials the SDK finds none (HOME has no ~/.aws).
    std::fs::remove_file(&creds).unwrap();
    let out = vault(&["--config", cfg, "snapshots"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "S3 credentials cannot be loaded");
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
}
