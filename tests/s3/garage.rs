//! A one-node round against Garage, a real distributed S3-compatible store
//! that ignores `If-None-Match` and keeps no versions. Runs only when
//! `garage` is on PATH (`scripts/install-test-deps.sh --garage`); the
//! 3-node cluster with a node killed is `scripts/garage-test.sh`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use vault::storage::{PutOutcome, S3Options, S3Storage, Storage};

use super::vault_at;
use crate::util::*;

/// A one-node Garage server (sqlite metadata) in a temporary directory,
/// killed on drop, with a key that may use every bucket it creates.
struct Garage {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    key: (String, String),
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Garage {
    /// Starts one, or `None` when garage is not installed.
    fn start() -> Option<Garage> {
        if Command::new("garage")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("garage is not on PATH: the Garage round is skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (port, rpc) = (free_port(), free_port());
        let d = dir.path();
        let conf = format!(
            "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{port}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            meta = d.join("meta").display(),
            data = d.join("data").display(),
            secret = hex::encode(rand::random::<[u8; 32]>()),
        );
        std::fs::write(d.join("garage.toml"), conf).unwrap();
        let child = Command::new("garage")
            .arg("-c")
            .arg(d.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("log")).unwrap())
            .spawn()
            .unwrap();
        let mut g = Garage {
            dir,
            child,
            port,
            key: Default::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = loop {
            let out = g.cli(&["node", "id", "-q"]);
            if out.status.success() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break stdout(&out).trim().to_owned();
            }
            assert!(Instant::now() < deadline, "garage did not start");
            assert!(
                g.child.try_wait().unwrap().is_none(),
                "garage exited at start"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let node = id.split('@').next().unwrap().to_owned();
        assert_success(&g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]));
        assert_success(&g.cli(&["layout", "apply", "--version", "1"]));
        let out = g.cli(&["key", "create", "vault-test"]);
        assert_success(&out);
        let text = stdout(&out);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in: {text}"))
        };
        g.key = (field("Key ID:"), field("Secret key:"));
        Some(g)
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new("garage")
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .unwrap()
    }

    fn bucket(&self, name: &str) {
        assert_success(&self.cli(&["bucket", "create", name]));
        assert_success(&self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            "vault-test",
        ]));
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint()),
            region: Some("garage".into()),
            credentials: Some(self.key.clone()),
            path_style: true,
            ..Default::default()
        }
    }

    fn vault(&self, args: &[&str]) -> Output {
        vault_at(
            &self.endpoint(),
            args,
            &[
                ("AWS_REGION", "garage"),
                ("AWS_ACCESS_KEY_ID", &self.key.0),
                ("AWS_SECRET_ACCESS_KEY", &self.key.1),
            ],
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn garage_one_node_init_backup_restore_check() {
    let Some(garage) = Garage::start() else {
        return;
    };
    garage.bucket("vault");
    let dir = tempfile::tempdir().unwrap();
    let (owner, writer) = (dir.path().join("owner.key"), dir.path().join("writer.key"));
    let recipient = generate_key(&owner);
    let repo = "s3://vault/r";
    let (o, w) = (owner.to_str().unwrap(), writer.to_str().unwrap());
    let init = garage.vault(&[
        "init",
        "-r",
        repo,
        "--owner",
        &recipient,
        "--writer-key-out",
        w,
    ]);
    assert_success(&init);
    let said = format!("{}{}", stdout(&init), stderr(&init));
    // What Garage really gives, found out by the probe and said at init.
    assert_contains(&said, "conditional writes (If-None-Match: *): IGNORED");
    assert_contains(&said, "claims/");
    let src = dir.path().join("src");
    sample_tree(&src);
    write(&src.join("big.bin"), &noise(3 << 20, 5));
    assert_success(&garage.vault(&[
        "backup",
        "-r",
        repo,
        "-i",
        w,
        "--no-cache",
        src.to_str().unwrap(),
    ]));
    let out = garage.vault(&[
        "restore", "-r", repo, "-i", o, "latest", "--verify", "--json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true, "{v}");
    let target = dir.path().join("t");
    assert_success(&garage.vault(&[
        "restore",
        "-r",
        repo,
        "-i",
        o,
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    let check = garage.vault(&["check", "-r", repo, "-i", o, "--read-data", "--storage"]);
    assert_success(&check);
    assert_contains(&stdout(&check), "no errors");
    assert_contains(&stdout(&check), "IGNORED");
    // A second init over the repository is refused, config untouched.
    let again = garage.vault(&[
        "init",
        "-r",
        repo,
        "--owner",
        &recipient,
        "--writer-key-out",
        dir.path().join("w2.key").to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "a second init succeeded");
    assert_success(&garage.vault(&["snapshots", "-r", repo, "-i", w]));
}

#[test]
fn garage_named_objects_are_written_once_by_racing_writers() {
    let Some(garage) = Garage::start() else {
        return;
    };
    garage.bucket("race");
    let s = Arc::new(S3Storage::open("s3://race/r", &garage.options()).unwrap());
    // The premise: this store overwrites an existing key despite
    // If-None-Match (a content-named key here, where that is harmless).
    let name = format!("index/{}", "ab".repeat(32));
    assert_eq!(s.put(&name, b"first").unwrap(), PutOutcome::Created);
    assert_eq!(s.put(&name, b"second").unwrap(), PutOutcome::Created);
    // Objects not named by their content: writers racing for one name,
    // released together; exactly one may see Created, and its bytes stay.
    for round in 0..8 {
        let key = format!("keys/owners/race-{round}.age");
        let gate = Arc::new(Barrier::new(3));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (s, gate, key) = (s.clone(), gate.clone(), key.clone());
                std::thread::spawn(move || {
                    let bytes = format!("writer {w} of round {round}").into_bytes();
                    gate.wait();
                    (s.put(&key, &bytes), bytes)
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|t| t.join().unwrap()).collect();
        let created: Vec<&Vec<u8>> = results
            .iter()
            .filter(|(r, _)| matches!(r, Ok(PutOutcome::Created)))
            .map(|(_, b)| b)
            .collect();
        assert_eq!(created.len(), 1, "round {round}: {results:?}");
        assert_eq!(&s.get(&key).unwrap(), created[0], "round {round}");
        for (r, _) in &results {
            assert!(
                matches!(r, Ok(PutOutcome::Created | PutOutcome::AlreadyExists)),
                "round {round}: {r:?}"
            );
        }
    }
    // Every claim was deleted once its writer was done.
    assert!(s.list("claims/").unwrap().is_empty());
}
