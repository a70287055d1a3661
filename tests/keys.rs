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
    assert_eq!(cfg["version"], 3);
    assert_eq!(cfg["owner_signing_key"].as_str().unwrap().len(), 64);
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
    assert_code(&again, 2);
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
    assert_code(&bad, 2);
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
    assert_contains(&err, "wrong passphrase or key");
    assert!(!err.contains("Decryption failed"), "{err}");
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

/// `vault key list --json` with `key` (or no key); the parsed JSON.
fn key_list(env: &Env, key: Option<&std::path::Path>) -> serde_json::Value {
    let mut args = vec!["key", "list", "-r", env.repo.to_str().unwrap(), "--json"];
    if let Some(k) = key {
        args.extend(["-i", k.to_str().unwrap()]);
    }
    let out = run(&args);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn owner_names(list: &serde_json::Value) -> Vec<String> {
    list["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn add_owner_lets_a_new_identity_restore_and_refuses_writers_and_taken_names() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let bob = env.path("bob.key");
    let bob_recipient = generate_key(&bob);

    let out = env.vault(
        &["key", "add-owner"],
        &env.writer_key,
        &["--name", "eve", &bob_recipient],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "needs an owner key");
    assert!(!env.repo.join("keys/owners/eve.age").exists());

    let out = env.vault(
        &["key", "add-owner"],
        &env.owner_key,
        &["--name", "bob", &bob_recipient],
    );
    assert_success(&out);
    let out = env.vault(
        &["key", "add-owner"],
        &env.owner_key,
        &["--name", "bob", &bob_recipient],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "already exists");

    let target = env.path("t");
    let out = env.vault(
        &["restore"],
        &bob,
        &["latest", "--target", target.to_str().unwrap()],
    );
    assert_success(&out);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    // Names need no key; with one, the list says which file it opens.
    let anonymous = key_list(&env, None);
    assert_eq!(owner_names(&anonymous), ["bob", "ops"]);
    assert!(anonymous["identity"].is_null());
    let as_bob = key_list(&env, Some(&bob));
    assert_eq!(as_bob["identity"], "owner");
    assert_eq!(as_bob["owners"][0]["opened_by_you"], true);
    assert_eq!(as_bob["owners"][1]["opened_by_you"], false);
    assert!(as_bob["owners"][0]["size"].as_u64().unwrap() > 0);
    let as_writer = key_list(&env, Some(&env.writer_key));
    assert_eq!(as_writer["identity"], "writer");
}

#[test]
fn remove_owner_refuses_the_last_and_your_own_and_locks_the_removed_out() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let bob = env.path("bob.key");
    let carol = env.path("carol.key");
    for (name, key) in [("bob", &bob), ("carol", &carol)] {
        let r = generate_key(key);
        assert_success(&env.vault(&["key", "add-owner"], &env.owner_key, &["--name", name, &r]));
    }
    let restores = |key: &std::path::Path, t: &str| {
        env.vault(
            &["restore"],
            key,
            &["latest", "--target", env.path(t).to_str().unwrap()],
        )
    };
    assert_success(&restores(&bob, "t-bob"));

    let out = env.vault(&["key", "remove-owner"], &env.writer_key, &["bob"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "needs an owner key");
    let out = env.vault(&["key", "remove-owner"], &env.owner_key, &["nobody"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "no owner named");

    let out = env.vault(&["key", "remove-owner"], &env.owner_key, &["bob"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "does not revoke");
    let out = restores(&bob, "t-bob2");
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "unwraps none of the 2 owner key(s)");

    // Your own owner file only with --force.
    let out = env.vault(&["key", "remove-owner"], &env.owner_key, &["ops"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--force");
    assert!(env.repo.join("keys/owners/ops.age").exists());
    assert_success(&env.vault(
        &["key", "remove-owner"],
        &env.owner_key,
        &["ops", "--force"],
    ));
    assert_code(&restores(&env.owner_key, "t-ops"), 1);
    assert_success(&restores(&carol, "t-carol"));

    // Never the last one, not even with --force.
    let out = env.vault(&["key", "remove-owner"], &carol, &["carol", "--force"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "last owner");
    assert_eq!(owner_names(&key_list(&env, None)), ["carol"]);
}

#[test]
fn rotate_writer_retires_the_old_key_and_keeps_history_readable() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let new_writer = env.path("writer2.key");

    let out = env.vault(
        &["key", "rotate-writer"],
        &env.writer_key,
        &["--writer-key-out", new_writer.to_str().unwrap()],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "needs an owner key");
    assert!(!new_writer.exists());

    let out = env.vault(
        &["key", "rotate-writer"],
        &env.owner_key,
        &["--writer-key-out", new_writer.to_str().unwrap()],
    );
    assert_success(&out);
    assert!(!stdout(&out).contains("AGE-SECRET-KEY"), "secret printed");
    assert_eq!(
        fs::metadata(&new_writer).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(env.repo.join("keys/writers/1.age").is_file());

    // The old writer key is refused for new backups.
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--no-cache", src.to_str().unwrap()],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "replaced by writer key generation 1");

    // The new one backs up, still deduplicating against the old index (the
    // host's cache remembers the index files it wrote).
    let out = env.vault(
        &["backup"],
        &new_writer,
        &[
            "--cache-dir",
            env.cache.to_str().unwrap(),
            "--json",
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Only the trees above `src` changed (the workspace got a key file).
    let totals = &v["snapshot"]["totals"];
    assert!(totals["bytes_added"].as_u64().unwrap() < 4096, "{v}");
    assert!(totals["bytes"].as_u64().unwrap() > 1_000_000, "{v}");
    let new_id = v["id"].as_str().unwrap().to_owned();

    // The new snapshot header is sealed to the new writer, not the old one.
    let header = fs::read(env.repo.join("snapshots").join(&new_id)).unwrap();
    let old_text = fs::read_to_string(&env.writer_key).unwrap();
    let old_ring = vault::crypto::Keyring::new(
        vault::crypto::parse_identities(&old_text, &env.writer_key).unwrap(),
    );
    assert!(old_ring.decrypt(&header, "snapshot").is_err());

    // Both snapshots: listed with the new writer key, restored by an owner.
    let out = env.vault(&["snapshots"], &new_writer, &["--json"]);
    assert_success(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let target = env.path("t");
    assert_success(&env.restore(&new_id, &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    let out = env.vault(&["check"], &env.owner_key, &["--read-data"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "no errors");

    // A generation object not made by an owner is ignored by owners.
    write(
        &env.repo.join("keys/writers/7.age"),
        b"age-encryption.org/v1\nforged",
    );
    assert_eq!(
        key_list(&env, Some(&env.owner_key))["current_writer_generation"],
        1
    );
    assert_eq!(
        key_list(&env, None)["writer_generations"],
        serde_json::json!([1, 7])
    );
}

#[test]
fn add_owner_with_a_passphrase() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let pass = env.path("pass");
    fs::write(&pass, "a new owner's long passphrase\n").unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    let with_pass = |args: &[&str]| {
        std::process::Command::new(vault_bin())
            .args(args)
            .env("VAULT_PASSPHRASE_FILE", &pass)
            .env_remove("VAULT_IDENTITY")
            .output()
            .unwrap()
    };
    let repo = env.repo.to_str().unwrap();
    let out = with_pass(&[
        "key",
        "add-owner",
        "-r",
        repo,
        "-i",
        env.owner_key.to_str().unwrap(),
        "--name",
        "safe",
        "--passphrase",
    ]);
    assert_success(&out);
    // Without -i both would read the same passphrase file: refused.
    let out = with_pass(&[
        "key",
        "add-owner",
        "-r",
        repo,
        "--name",
        "x",
        "--passphrase",
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "both you and the new owner");
    let target = env.path("t");
    let out = with_pass(&[
        "restore",
        "-r",
        repo,
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}
