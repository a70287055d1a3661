//! Exit codes as README documents them: 2 for usage and configuration, 3
//! for a partial backup, 4 for damage or a mismatch, 1 for other failures;
//! `vault status` uses 5 when it could not run. A closed stdout pipe ends
//! a command quietly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

#[test]
fn bad_flag_values_are_usage_errors() {
    let env = Env::new();
    for subset in ["0/3", "4/3", "x", "1/0", "1-3"] {
        let out = env.vault(&["check"], &env.owner_key, &["--read-data-subset", subset]);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), "--read-data-subset");
    }
    let out = run(&[
        "init",
        "-r",
        env.path("r2").to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--writer-key-out",
        env.path("w2").to_str().unwrap(),
        "--compression-level",
        "30",
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--compression-level");
    assert!(!env.path("r2").exists(), "nothing created");
}

#[test]
fn an_unknown_snapshot_is_a_usage_error_and_a_wrong_key_a_failure() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    let out = env.restore("ffffffff", &env.path("t"));
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "no snapshot matches");
    let stranger = env.path("stranger.key");
    assert_success(&run(&["key", "generate", "-o", stranger.to_str().unwrap()]));
    let out = env.vault(&["snapshots"], &stranger, &[]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "wrong passphrase or key");
}

/// Runs `vault ARGS` with stdout a pipe whose reader is already closed.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(vault_bin())
        .args(args)
        .env_remove("VAULT_CONFIG")
        .env_remove("VAULT_PASSPHRASE_FILE")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run vault")
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    let repo = env.repo.to_str().unwrap();
    let key = env.owner_key.to_str().unwrap();
    for args in [
        vec!["snapshots", "-r", repo, "-i", key],
        vec!["snapshots", "-r", repo, "-i", key, "--json"],
        vec!["ls", "-r", repo, "-i", key, "latest"],
        vec!["key", "list", "-r", repo],
        vec!["man"],
    ] {
        let out = with_closed_stdout(&args);
        assert_code(&out, 0);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed: {err}");
    }
}

#[test]
fn status_that_cannot_run_exits_5() {
    let env = Env::new();
    let out = run(&[
        "status",
        "-r",
        env.path("nothing-here").to_str().unwrap(),
        "-i",
        env.writer_key.to_str().unwrap(),
    ]);
    assert_code(&out, 5);
    assert_contains(&stderr(&out), "no vault repository here");

    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    // Fresh backup, no drill yet: needs attention (1), which is not "could not run".
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert_code(&out, 1);
    let prom = env.path("no-such-dir/vault.prom");
    let out = env.vault(
        &["status"],
        &env.writer_key,
        &["--prometheus", prom.to_str().unwrap()],
    );
    assert_code(&out, 5);
    assert_contains(&stderr(&out), "no-such-dir");
    // The directory is named, not a temporary file the operator never asked for.
    assert!(!stderr(&out).contains(".vault-status-"), "{}", stderr(&out));
}

/// Runs vault as an unprivileged user when the tests run as root (root
/// reads every file, so a permission problem needs another user).
fn as_unprivileged(args: &[&str]) -> std::process::Output {
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(vault_bin());
        c
    } else {
        Command::new(vault_bin())
    };
    cmd.args(args)
        .env_remove("VAULT_CONFIG")
        .env_remove("VAULT_PASSPHRASE_FILE")
        .output()
        .expect("run vault")
}

/// Gives `path` and everything below it to the unprivileged user.
fn give_away(path: &Path) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_pack_the_user_may_not_read_is_not_reported_as_damage() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("big"), &noise(300_000, 7));
    env.backup(&[&src]);
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    give_away(&env.repo);
    give_away(&env.owner_key);
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    give_away(&target);
    let data = env.repo.join("data");
    let mut packs = Vec::new();
    for dir in fs::read_dir(&data).unwrap() {
        for f in fs::read_dir(dir.unwrap().path()).unwrap() {
            packs.push(f.unwrap().path());
        }
    }
    assert!(!packs.is_empty(), "no data packs in {}", data.display());
    for p in &packs {
        fs::set_permissions(p, fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = as_unprivileged(&[
        "restore",
        "-r",
        env.repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--json",
    ]);
    assert_code(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let kinds: Vec<&str> = v["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.is_empty());
    assert!(kinds.iter().all(|k| *k == "unreadable"), "{kinds:?}");
    assert!(
        v["report"]["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ermission denied")
    );
    // A damaged pack still is damage (root's run needs its key back).
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&env.owner_key, Some(0), Some(0)).unwrap();
    }
    for p in &packs {
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(p, bytes).unwrap();
    }
    let out = env.restore("latest", &env.path("t2"));
    assert_code(&out, 4);
}

/// Runs `vault snapshots` against an S3 endpoint that counts connections,
/// with `env` and no AWS configuration from this machine.
fn s3_without(env: &[(&str, &str)]) -> (std::process::Output, usize) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k");
    assert_success(&run(&["key", "generate", "-o", key.to_str().unwrap()]));
    let mut cmd = Command::new(vault_bin());
    cmd.args(["snapshots", "-r", "s3://bucket/host1", "-i"])
        .arg(&key)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("VAULT_S3_RETRY_BASE_MS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let mut connections = 0;
    while listener.accept().is_ok() {
        connections += 1;
    }
    (out, connections)
}

/// Runs `vault snapshots` against `endpoint` with working credentials and
/// region and no AWS configuration from this machine.
fn s3_at(endpoint: &str) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k");
    assert_success(&run(&["key", "generate", "-o", key.to_str().unwrap()]));
    Command::new(vault_bin())
        .args(["snapshots", "-r", "s3://bucket/host1", "-i"])
        .arg(&key)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "example")
        .env("VAULT_S3_RETRY_BASE_MS", "1")
        .output()
        .unwrap()
}

#[test]
fn an_s3_endpoint_that_refuses_from_the_start_is_one_plain_line_not_retried() {
    // A port nothing listens on: bound, then released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // user:password in the URL must not reach the message.
    let out = s3_at(&format!("http://someone:hunter2@127.0.0.1:{port}"));
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(
        &err,
        &format!("S3 endpoint http://127.0.0.1:{port} cannot be reached"),
    );
    assert_contains(&err, "Connection refused");
    assert_contains(&err, "check AWS_ENDPOINT_URL or [s3] endpoint");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for jargon in [
        "attempts",
        "DispatchFailure",
        "ConnectorError",
        "{",
        "hunter2",
    ] {
        assert!(!err.contains(jargon), "{jargon:?} in {err}");
    }

    // A host name that does not resolve (.invalid never does, RFC 2606).
    let out = s3_at("http://vault-test.invalid:9000");
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(
        &err,
        "S3 endpoint http://vault-test.invalid:9000 cannot be reached",
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("attempts"), "{err}");
}

#[test]
fn s3_misconfiguration_is_one_plain_line_and_never_retried() {
    let (out, connections) = s3_without(&[("AWS_REGION", "us-east-1")]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(&err, "S3 has no credentials: set AWS_ACCESS_KEY_ID");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !err.contains("Error {") && !err.contains("attempts"),
        "{err}"
    );
    assert_eq!(connections, 0);

    let (out, connections) = s3_without(&[
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "example"),
    ]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(&err, "S3 has no region: set AWS_REGION");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !err.contains("DispatchFailure") && !err.contains("attempts"),
        "{err}"
    );
    assert_eq!(connections, 0);
}
