//! The operator's surface: the snapshots table, key files in new
//! directories, `key generate -o -`, and `-i` naming a directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn snapshots_show_tags_and_every_source() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.conf"), b"a");
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--no-cache",
            "--tag",
            "nightly",
            "--tag",
            "web",
            "--from-command",
            "echo dump",
            "--stdin-filename",
            "db/app.dump",
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let out = env.vault(&["snapshots"], &env.writer_key, &[]);
    assert_success(&out);
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    assert!(
        header.contains("tags") && header.contains("sources"),
        "{text}"
    );
    let row = text.lines().nth(1).unwrap();
    assert_contains(row, "nightly,web");
    assert_contains(row, src.to_str().unwrap());
    assert_contains(row, "command:db/app.dump");
}

#[test]
fn key_files_go_into_new_private_directories_or_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("keys/owner/owner.key");
    let out = run(&["key", "generate", "-o", owner.to_str().unwrap()]);
    assert_success(&out);
    let recipient = stdout(&out).trim().to_owned();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("keys")), 0o700);
    assert_eq!(mode(&dir.path().join("keys/owner")), 0o700);
    assert_eq!(mode(&owner), 0o600);

    let writer = dir.path().join("etc/vault/writer.key");
    let out = run(&[
        "init",
        "-r",
        dir.path().join("repo").to_str().unwrap(),
        "--owner",
        &recipient,
        "--writer-key-out",
        writer.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert_eq!(mode(&dir.path().join("etc/vault")), 0o700);
    assert_eq!(mode(&writer), 0o600);

    let out = run(&["key", "generate", "-o", "-"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("AGE-SECRET-KEY-1"),
        "identity on stdout"
    );
    assert_contains(&stderr(&out), "public key: age1");
    assert!(!stderr(&out).contains("AGE-SECRET-KEY"));
    assert!(!dir.path().join("-").exists());
}

#[test]
fn identity_naming_a_directory_is_refused_plainly() {
    let env = Env::new();
    let out = env.vault(&["snapshots"], env.dir.path(), &[]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "is a directory");
}

#[test]
fn dump_streams_one_file_refuses_a_terminal_and_writes_nothing_for_a_missing_path() {
    let env = Env::new();
    let src = env.path("src");
    let dump = noise(200_000, 3);
    write(&src.join("db/app.dump"), &dump);
    env.backup(&[&src]);
    let file = src.join("db/app.dump");
    let rel = file.to_str().unwrap();
    let out = env.vault(&["dump"], &env.owner_key, &["latest", rel]);
    assert_success(&out);
    assert!(out.stdout == dump, "the file's bytes, not a tar");

    let out = env.vault(&["dump"], &env.owner_key, &["latest", "/no/such/file"]);
    assert_code(&out, 2);
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
    assert_contains(&stderr(&out), "not in the snapshot");

    // A tar archive is never written to a terminal (`script` gives vault one).
    let line = format!(
        "{} dump -r {} -i {} latest {}",
        vault_bin().display(),
        env.repo.display(),
        env.owner_key.display(),
        src.join("db").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("VAULT_CONFIG")
        .output()
        .expect("script (util-linux)");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_contains(&stdout(&out), "writes a tar archive");
}

/// A passphrase owner made at a prompt: the passphrase is asked twice, an
/// empty one and two that differ are refused before anything is written,
/// and a confirmed one opens the repository.
#[test]
fn a_new_passphrase_is_asked_twice_and_an_empty_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let init = |repo: &std::path::Path, typed: &str| {
        let line = format!(
            "{} init -r {} --owner-passphrase --owner-name ops --writer-key-out {}",
            vault_bin().display(),
            repo.display(),
            repo.with_extension("writer.key").display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env_remove("VAULT_CONFIG")
            .env_remove("VAULT_PASSPHRASE_FILE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            // The terminal keeps what is typed ahead until each prompt reads a line.
            stdin.write_all(typed.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let empty = dir.path().join("empty");
    let out = init(&empty, "\n");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_contains(&stdout(&out), "an empty passphrase is refused");
    assert!(!empty.join("config").exists(), "nothing written");

    let differ = dir.path().join("differ");
    let out = init(&differ, "one horse\nanother horse\n");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_contains(&stdout(&out), "the two passphrases differ");
    assert!(!differ.join("config").exists(), "nothing written");

    let good = dir.path().join("good");
    let out = init(&good, "correct horse\ncorrect horse\n");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(good.join("config").exists());
    // The confirmed passphrase opens the repository; another does not.
    let open_with = |passphrase: &str| {
        let pass = dir.path().join("pass");
        fs::write(&pass, format!("{passphrase}\n")).unwrap();
        fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
        std::process::Command::new(vault_bin())
            .args(["snapshots", "-r"])
            .arg(&good)
            .env("VAULT_PASSPHRASE_FILE", &pass)
            .env_remove("VAULT_CONFIG")
            .output()
            .unwrap()
    };
    assert_success(&open_with("correct horse"));
    assert!(!open_with("wrong horse").status.success());
}

/// One time convention in every table and listing: UTC, marked `Z`, to the
/// second (RFC 3339), whatever the local time zone.
#[test]
fn every_listing_prints_times_in_utc_marked_with_z() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("old.conf"), b"old");
    // 2020-01-02T03:04:05Z
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_577_934_245);
    fs::File::options()
        .write(true)
        .open(src.join("old.conf"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let id = env.backup(&[&src]);
    let zoned = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "-r",
            env.repo.to_str().unwrap(),
            "-i",
            env.owner_key.to_str().unwrap(),
        ]);
        // Half an hour off the hour, so a local time cannot pass for UTC.
        let out = std::process::Command::new(vault_bin())
            .args(&all)
            .env("TZ", "Asia/Kolkata")
            .env_remove("VAULT_CONFIG")
            .output()
            .unwrap();
        assert_success(&out);
        stdout(&out) + &stderr(&out)
    };
    let listed: serde_json::Value = serde_json::from_str(&zoned(&["snapshots", "--json"])).unwrap();
    let time: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(listed[0]["snapshot"]["time"].clone()).unwrap();
    let when = time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(when.ends_with('Z'), "{when}");

    let table = zoned(&["snapshots"]);
    assert_contains(&table, &when);
    assert!(!table.contains("UTC"), "the Z says it: {table}");
    let ls = zoned(&["ls", &id]);
    assert_contains(&ls, " 2020-01-02T03:04:05Z ");
    let found = zoned(&["find", "old.conf"]);
    assert_contains(&found, " 2020-01-02T03:04:05Z ");
    let forget = zoned(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_contains(&forget, &format!("keep    {}  {when}", &id[..8]));
    // No local time (+05:30) anywhere.
    for out in [&table, &ls, &found, &forget] {
        assert!(!out.contains("+0530") && !out.contains("+05:30"), "{out}");
        assert!(!out.contains("08:34:05"), "local time printed: {out}");
    }
}

/// Counts take their noun in the right number, and every warning, the
/// library's included, is one `vault: warning:` line naming what it is
/// about, without a log timestamp.
#[test]
fn reports_say_one_snapshot_and_warnings_have_one_style() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("only"), b"one file");
    // A cache directory others can write is refused (the backup goes on
    // without it): the library's warning names the directory.
    let cache = env.path("shared-cache");
    fs::create_dir_all(&cache).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let err = stderr(&out);
    assert_contains(&err, "vault: warning: ");
    assert_contains(&err, cache.to_str().unwrap());
    for line in err.lines() {
        assert!(line.starts_with("vault: "), "one style: {err}");
        assert!(!line.contains(" WARN "), "no tracing level word: {err}");
    }
    let text = stdout(&out);
    assert_contains(&text, "  1 file, 3 dirs, 8 B (1 file read,");
    assert!(!text.contains("1 files"), "{text}");

    let out = env.vault(&["prune"], &env.owner_key, &[]);
    assert_success(&out);
    let text = stdout(&out);
    assert_contains(&text, "1 snapshot needs ");
    assert_contains(&text, "repack 0 packs (0 blobs)");
    assert_contains(&text, "wrote 0 packs and 1 index file, replaced ");
    let out = env.vault(&["check"], &env.owner_key, &[]);
    assert_success(&out);
    assert_contains(&stdout(&out), "checked 1 snapshot, ");
    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &["--keep-last", "1", "--dry-run"],
    );
    assert_success(&out);
    assert_contains(&stdout(&out), "kept 1 snapshot, would remove 0");
    // A bad count is still refused plainly.
    let out = env.vault(&["forget"], &env.owner_key, &["--keep-last", "-1"]);
    assert_code(&out, 2);
}
