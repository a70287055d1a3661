//! Command sources: a command's standard output stored as a file, its exit
//! status deciding success.

use std::fs;

use crate::util::*;

#[test]
fn command_output_is_stored_and_restores_byte_for_byte() {
    let env = Env::new();
    let (out, v) = env.backup_json(&[
        "--from-command",
        "seq 1 300000",
        "--stdin-filename",
        "db/numbers.txt",
    ]);
    assert_success(&out);
    let src = &v["snapshot"]["sources"][0];
    assert_eq!(src["kind"], "command");
    assert_eq!(src["name"], "db/numbers.txt");
    assert_eq!(src["command"], "seq 1 300000");
    assert_eq!(src["status"], "ok");
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    let expected = std::process::Command::new("seq")
        .args(["1", "300000"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(fs::read(target.join("db/numbers.txt")).unwrap(), expected);

    // The same output again stores no content: only the two directory
    // trees are new (command output is stamped with the backup time).
    let (out, v) = env.backup_json(&[
        "--from-command",
        "seq 1 300000",
        "--stdin-filename",
        "db/numbers.txt",
    ]);
    assert_success(&out);
    assert_eq!(v["snapshot"]["totals"]["blobs_added"], 2, "{v}");
}

#[test]
fn failing_command_is_never_a_good_backup() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let (out, v) = env.backup_json(&[
        "--from-command",
        "echo partial-dump; echo 'pg_dump: error: connection refused' >&2; exit 3",
        "--stdin-filename",
        "db/app.dump",
        src.to_str().unwrap(),
    ]);
    assert_code(&out, 3);
    let sources = v["snapshot"]["sources"].as_array().unwrap();
    let cmd = sources.iter().find(|s| s["kind"] == "command").unwrap();
    assert_eq!(cmd["status"], "failed");
    let paths = sources.iter().find(|s| s["kind"] == "paths").unwrap();
    assert_eq!(paths["status"], "ok");
    let err = &v["snapshot"]["errors"][0];
    assert_eq!(err["path"], "/db/app.dump");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("exited with status 3") && msg.contains("connection refused"),
        "{msg}"
    );
    assert_contains(&stderr(&out), "connection refused");
    // The partial output is not in the snapshot.
    let ls = env.vault(&["ls"], &env.owner_key, &["latest"]);
    assert_success(&ls);
    assert!(!stdout(&ls).contains("app.dump"), "{}", stdout(&ls));
    assert!(stdout(&ls).contains("app.conf"));
}

#[test]
fn failing_command_alone_makes_no_snapshot() {
    let env = Env::new();
    let (out, _) = env.backup_json(&["--from-command", "exit 1", "--stdin-filename", "x.dump"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "nothing could be read");
    assert!(
        !env.repo.join("snapshots").exists()
            || fs::read_dir(env.repo.join("snapshots")).unwrap().count() == 0
    );
}

#[test]
fn command_killed_mid_stream_fails() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let (out, v) = env.backup_json(&[
        "--from-command",
        "seq 1 200000; kill -9 $$",
        "--stdin-filename",
        "big.txt",
        src.to_str().unwrap(),
    ]);
    assert_code(&out, 3);
    let msg = v["snapshot"]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("killed"), "{msg}");
}

#[test]
fn stdin_filename_must_stay_inside_the_snapshot() {
    let env = Env::new();
    for bad in ["../escape", "a/../../b", ""] {
        let (out, _) = env.backup_json(&["--from-command", "echo hi", "--stdin-filename", bad]);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), "--stdin-filename");
    }
}

#[test]
fn compressed_command_output_is_stored_with_a_warning_to_stop_compressing() {
    let env = Env::new();
    let plain = env.path("plain.sql");
    let mut sql = Vec::new();
    for i in 0..40_000 {
        sql.extend_from_slice(format!("INSERT INTO t VALUES ({i}, 'row {i}');\n").as_bytes());
    }
    write(&plain, &sql);
    let random = env.path("random.bin");
    write(&random, &noise(2 << 20, 77));
    let cases = [
        (
            format!("gzip -c {}", plain.display()),
            Some("gzip-compressed"),
        ),
        (
            format!("cat {}", random.display()),
            Some("does not compress"),
        ),
        (format!("cat {}", plain.display()), None),
    ];
    for (command, warning) in cases {
        let (out, v) = env.backup_json(&[
            "--from-command",
            &command,
            "--stdin-filename",
            "db/app.dump",
        ]);
        assert_success(&out);
        let err = stderr(&out);
        let listed = v["compressed_outputs"].as_array().unwrap();
        match warning {
            Some(what) => {
                assert_contains(&err, "/db/app.dump");
                assert_contains(&err, what);
                assert_contains(&err, "pg_dump -Z0");
                assert_contains(&err, "--postgres");
                assert_eq!(listed.len(), 1, "{v}");
                assert_eq!(listed[0]["path"], "/db/app.dump");
            }
            None => {
                assert!(!err.contains("compress"), "{command}: {err}");
                assert!(listed.is_empty(), "{v}");
            }
        }
        // Stored all the same, byte for byte.
        let target = env.path(&format!("t-{}", v["id"].as_str().unwrap()));
        assert_success(&env.restore("latest", &target));
        let expected = std::process::Command::new("sh")
            .args(["-c", &command])
            .output()
            .unwrap()
            .stdout;
        assert_eq!(fs::read(target.join("db/app.dump")).unwrap(), expected);
    }
}
