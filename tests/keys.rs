//! The key model: generated identities, owners of every supported kind, and
//! the writer key's limits.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn key_generate_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("me.key");
    let out = run(&["key", "generate", "--output", key.to_str().unwrap()]);
    assert_success(&out);
    let recipient = stdout(&out).trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = fs::read_to_string(&key).unwrap();
    assert!(text.contains(&recipient) && text.contains("AGE-SECRET-KEY-1"));
    assert!(!stdout(&out).contains("AGE-SECRET-KEY"), "secret printed");
    let again = run(&["key", "generate", "--output", key.to_str().unwrap()]);
    assert_code(&again, 1);
    assert_eq!(
        fs::read_to_string(&key).unwrap(),
        text,
        "existing key untouched"
    );
}

#[test]
fn init_writes_keys_and_refuses_an_existing_repository() {
    let env = Env::new();
    assert_eq!(
        fs::metadata(&env.writer_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for obj in ["config", "keys/owners/ops.age", "keys/writer.age"] {
        assert!(env.repo.join(obj).is_file(), "{obj}");
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&fs::read(env.repo.join("config")).unwrap()).unwrap();
    assert_eq!(cfg["version"], 1);
    assert!(cfg["owner_recipient"].as_str().unwrap().starts_with("age1"));
    assert_ne!(
        cfg["owner_recipient"],
        env.owner_recipient.as_str(),
        "the repository owner key is its own key, wrapped for the owner"
    );
    let again = run(&[
        "init",
        "-r",
        env.repo.to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--writer-key-out",
        env.path("w2.key").to_str().unwrap(),
    ]);
    assert_code(&again, 1);
    assert_contains(&stderr(&again), "already exists");
    let bad = run(&[
        "init",
        "-r",
        env.path("r2").to_str().unwrap(),
        "--owner",
        "age1garbage",
        "--writer-key-out",
        env.path("w3.key").to_str().unwrap(),
    ]);
    assert_code(&bad, 1);
    assert_contains(&stderr(&bad), "not a valid age recipient");
}

#[test]
fn ssh_ed25519_owner_restores() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(st.success());
    let public = fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    let public = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let repo = dir.path().join("repo");
    let writer = dir.path().join("writer.key");
    let second = dir.path().join("second.key");
    let out = run(&["key", "generate", "--output", second.to_str().unwrap()]);
    let second_recipient = stdout(&out).trim().to_owned();
    let owners = format!("{public},{second_recipient}");
    assert_success(&run(&[
        "init",
        "-r",
        repo.to_str().unwrap(),
        "--owner",
        &owners,
        "--owner-name",
        "alice",
        "--writer-key-out",
        writer.to_str().unwrap(),
    ]));
    let src = dir.path().join("src");
    sample_tree(&src);
    backup_no_cache(&repo, &writer, &src);
    for (i, k) in [&key, &second].iter().enumerate() {
        let target = dir.path().join(format!("t{i}"));
        let out = run(&[
            "restore",
            "-r",
            repo.to_str().unwrap(),
            "-i",
            k.to_str().unwrap(),
            "latest",
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_success(&out);
        assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    }
}

#[test]
fn passphrase_owner_restores_with_the_passphrase_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    let repo = dir.path().join("repo");
    let writer = dir.path().join("writer.key");
    let vault = |args: &[&str], pass_file: &std::path::Path| {
        std::process::Command::new(vault_bin())
            .args(args)
            .env("VAULT_PASSPHRASE_FILE", pass_file)
            .output()
            .unwrap()
    };
    let out = vault(
        &[
            "init",
            "-r",
            repo.to_str().unwrap(),
            "--owner-passphrase",
            "--owner-name",
            "safe",
            "--writer-key-out",
            writer.to_str().unwrap(),
        ],
        &pass,
    );
    assert_success(&out);
    assert!(
        !String::from_utf8_lossy(&fs::read(repo.join("keys/owners/safe.age")).unwrap())
            .contains("correct horse")
    );
    let src = dir.path().join("src");
    sample_tree(&src);
    backup_no_cache(&repo, &writer, &src);
    let target = dir.path().join("t");
    let out = vault(
        &[
            "restore",
            "-r",
            repo.to_str().unwrap(),
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
        &pass,
    );
    assert_success(&out);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    let wrong = dir.path().join("wrong");
    fs::write(&wrong, "not it\n").unwrap();
    fs::set_permissions(&wrong, fs::Permissions::from_mode(0o600)).unwrap();
    let out = vault(
        &[
            "restore",
            "-r",
            repo.to_str().unwrap(),
            "latest",
            "--target",
            dir.path().join("t2").to_str().unwrap(),
        ],
        &wrong,
    );
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("passphrase") || err.contains("decrypt"),
        "{err}"
    );
    assert!(
        !err.contains("not it"),
        "passphrase echoed in an error: {err}"
    );
}

#[test]
fn owner_key_from_the_repository_opens_it_too() {
    // The unwrapped repository owner identity (what `age -d -i me.key
    // keys/owners/ops.age` prints) is itself an owner key: the disaster path.
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let text = fs::read_to_string(&env.owner_key).unwrap();
    let ring = vault::crypto::Keyring::new(
        vault::crypto::parse_identities(&text, &env.owner_key).unwrap(),
    );
    let unwrapped = ring
        .decrypt(
            &fs::read(env.repo.join("keys/owners/ops.age")).unwrap(),
            "owner",
        )
        .unwrap();
    let repo_key = env.path("repo-owner.key");
    vault::crypto::write_key_file(&repo_key, std::str::from_utf8(&unwrapped).unwrap()).unwrap();
    let repo_ring = vault::crypto::Keyring::new(
        vault::crypto::parse_identities(std::str::from_utf8(&unwrapped).unwrap(), &repo_key)
            .unwrap(),
    );
    let pack = walkdir_first(&env.repo.join("data"));
    repo_ring
        .decrypt(&fs::read(pack).unwrap(), "pack")
        .expect("the repository owner key decrypts data packs");
    let target = env.path("t");
    let out = env.vault(
        &["restore"],
        &repo_key,
        &["latest", "--target", target.to_str().unwrap()],
    );
    assert_success(&out);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

fn walkdir_first(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { return p }
        }
    }
    panic!("no object under {}", dir.display());
}
