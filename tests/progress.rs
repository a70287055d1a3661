//! Progress on restore and drills: drawn on a terminal (run under
//! script(1), which gives vault a pseudo-terminal) with file counts and an
//! estimate of the time left; never with `--json` or when stderr is not a
//! terminal.

use std::fs;
use std::process::Command;

use crate::util::*;

/// Runs `vault ARGS` on a pseudo-terminal; returns everything it drew.
fn on_a_terminal(args: &[&str]) -> (bool, String) {
    let line = std::iter::once(vault_bin().display().to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env_remove("VAULT_CONFIG")
        .output()
        .expect("script(1) from bsdutils (scripts/install-test-deps.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn restore_and_drill_show_progress_on_a_terminal_only() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        write(&src.join(format!("f{i}")), &noise(64 << 10, i));
    }
    let id = env.backup(&[&src]);
    let (repo, key) = (env.repo.to_str().unwrap(), env.owner_key.to_str().unwrap());
    let target = env.path("t");
    let t = target.to_str().unwrap();
    let (ok, drawn) = on_a_terminal(&["restore", "-r", repo, "-i", key, &id, "--target", t]);
    assert!(ok, "{drawn}");
    assert_contains(&drawn, "/20 files");
    assert_contains(&drawn, "left");
    // --json on a terminal: the JSON only.
    let (ok, drawn) = on_a_terminal(&[
        "restore", "-r", repo, "-i", key, &id, "--target", t, "--json",
    ]);
    assert!(ok, "{drawn}");
    assert!(!drawn.contains("files,"), "{drawn}");
    // A drill draws too; its last phase, the pack slice, is always drawn
    // (a phase that ends between two redraws may not be).
    let (ok, drawn) = on_a_terminal(&["drill", "-r", repo, "-i", key]);
    assert!(ok, "{drawn}");
    assert_contains(&drawn, " packs, ");
    // check --read-data and copy count packs.
    let (ok, drawn) = on_a_terminal(&["check", "-r", repo, "-i", key, "--read-data"]);
    assert!(ok, "{drawn}");
    assert_contains(&drawn, " packs, ");
    let to = env.path("copy");
    let out = run(&[
        "init",
        "-r",
        to.to_str().unwrap(),
        "--like",
        repo,
        "-i",
        key,
    ]);
    assert_success(&out);
    let (ok, drawn) = on_a_terminal(&["copy", "-r", repo, "-i", key, "--to", to.to_str().unwrap()]);
    assert!(ok, "{drawn}");
    assert_contains(&drawn, " packs, ");
    assert_contains(&drawn, "left");
    // Not a terminal: nothing drawn on stderr.
    let out = env.restore(&id, &target);
    assert_success(&out);
    assert!(!stderr(&out).contains("files,"), "{}", stderr(&out));
}

#[test]
fn prune_shows_progress_on_a_terminal_only() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        write(&src.join(format!("f{i}")), &noise(100_000, i));
    }
    let first = env.backup(&[&src]);
    for i in 2..20 {
        fs::remove_file(src.join(format!("f{i}"))).unwrap();
    }
    env.backup(&[&src]);
    fs::remove_file(env.repo.join("snapshots").join(&first)).unwrap();
    let (repo, key) = (env.repo.to_str().unwrap(), env.owner_key.to_str().unwrap());
    // Verifying the writer's index entries reads packs, then the mostly
    // empty packs are repacked blob by blob: the last phase is drawn.
    let (ok, drawn) = on_a_terminal(&["prune", "-r", repo, "-i", key, "--grace", "0s"]);
    assert!(ok, "{drawn}");
    assert_contains(&drawn, " blobs, ");
    assert_contains(&drawn, "left");
    assert_contains(&drawn, "prune did: repack 1 pack (");
    // A new backup's entries are read back before the owner signs them:
    // packs, with their bytes.
    write(&src.join("new"), &noise(300_000, 99));
    env.backup(&[&src]);
    let (ok, drawn) = on_a_terminal(&["prune", "-r", repo, "-i", key, "--grace", "0s"]);
    assert!(ok, "{drawn}");
    assert_contains(&drawn, "/2 packs, ");
    assert_contains(&drawn, "KiB/");
    assert_contains(&drawn, "left");
    // --json on a terminal: the JSON only.
    write(&src.join("newer"), &noise(300_000, 98));
    env.backup(&[&src]);
    let (ok, drawn) = on_a_terminal(&["prune", "-r", repo, "-i", key, "--json"]);
    assert!(ok, "{drawn}");
    assert!(!drawn.contains("packs,"), "{drawn}");
    let report: serde_json::Value = serde_json::from_str(drawn.trim()).expect(&drawn);
    assert!(report["packs_verified"].as_u64().unwrap() >= 1, "{report}");
    // Not a terminal: nothing drawn; a bad flag is refused before anything.
    write(&src.join("newest"), &noise(300_000, 97));
    env.backup(&[&src]);
    let out = env.vault(&["prune"], &env.owner_key, &[]);
    assert_success(&out);
    assert!(!stderr(&out).contains("packs,"), "{}", stderr(&out));
    let out = env.vault(
        &["prune"],
        &env.owner_key,
        &["--repack-unused-percent", "0"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
