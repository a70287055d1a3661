//! `vault backup --files-from` / `--files-from-raw` (lists of paths, `-`
//! for standard input) and `vault backup --list` (new / changed /
//! unchanged per file), from the CLI, bad input refused before anything is
//! written.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::*;

fn listed(env: &Env, id: &str) -> String {
    let out = env.vault(&["ls"], &env.owner_key, &[id]);
    assert_success(&out);
    stdout(&out)
}

fn snapshot_count(env: &Env) -> usize {
    snapshot_ids_in(env.repo.to_str().unwrap(), &env.writer_key).len()
}

/// `vault backup ARGS` with the writer key, `stdin` on standard input.
fn backup_with_stdin(env: &Env, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(vault_bin())
        .arg("backup")
        .args(["-r", env.repo.to_str().unwrap()])
        .args([
            "-i",
            env.writer_key.to_str().unwrap(),
            "--no-cache",
            "--json",
        ])
        .args(args)
        .env_remove("VAULT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn files_from_backs_up_exactly_the_listed_paths() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write(&src.join("a.txt"), b"a");
    write(&src.join("b.txt"), b"b");
    write(&src.join("sub/x"), b"x");
    write(&src.join("we\nird"), b"w");
    let s = src.display();
    let list = env.path("list");
    write(
        &list,
        format!("# what to keep\n{s}/a.txt\n\n{s}/sub\r\n{s}/a.txt\n").as_bytes(),
    );
    let (out, v) = env.backup_json(&["--files-from", list.to_str().unwrap()]);
    assert_success(&out);
    let ls = listed(&env, v["id"].as_str().unwrap());
    assert!(ls.contains("a.txt") && ls.contains("sub/x"), "{ls}");
    assert!(!ls.contains("b.txt"), "only the listed paths: {ls}");

    // NUL-separated and verbatim (a name with a newline), from stdin,
    // together with a path on the command line.
    let raw = format!("{s}/we\nird\0{s}/sub/x\0");
    let out = backup_with_stdin(
        &env,
        &["--files-from-raw", "-", src.join("b.txt").to_str().unwrap()],
        raw.as_bytes(),
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ls = listed(&env, v["id"].as_str().unwrap());
    assert!(ls.contains("b.txt") && ls.contains("sub/x"), "{ls}");
    assert!(ls.contains("we\\nird"), "{ls}");
    assert!(!ls.contains("a.txt"), "{ls}");
}

#[test]
fn files_from_bad_lists_are_usage_errors_and_write_nothing() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("a.txt"), b"a");
    let empty = env.path("empty");
    write(&empty, b"# nothing here\n\n");
    let nul = env.path("nul");
    write(&nul, format!("{}\0/etc\n", src.display()).as_bytes());
    let missing = env.path("no-such-list");
    let cases: [(&[&str], &str); 4] = [
        (&["--files-from", missing.to_str().unwrap()], "no-such-list"),
        (&["--files-from", empty.to_str().unwrap()], "lists no path"),
        (&["--files-from", nul.to_str().unwrap()], "NUL"),
        (&["--files-from", src.to_str().unwrap()], "is a directory"),
    ];
    for (args, needle) in cases {
        let (out, _) = env.backup_json(args);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), needle);
        assert_contains(&stderr(&out), "--files-from");
    }
    let out = backup_with_stdin(
        &env,
        &["--files-from", "-", "--files-from-raw", "-"],
        src.join("a.txt").to_str().unwrap().as_bytes(),
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "standard input can be read only once");
    assert_eq!(snapshot_count(&env), 0, "no snapshot was written");
}

#[test]
fn backup_list_says_new_changed_and_unchanged() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("same"), b"same");
    write(&src.join("edited"), b"before");
    write(&src.join("touched"), b"touched");
    // The file cache only trusts timestamps over a second older than the
    // backup (a file changed within the same clock tick is re-read).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let cache = env.cache.to_str().unwrap();
    let backup = |extra: &[&str]| {
        let mut args = vec!["--cache-dir", cache, "--list"];
        args.extend(extra);
        args.push(src.to_str().unwrap());
        let out = env.vault(&["backup"], &env.writer_key, &args);
        assert_success(&out);
        out
    };
    let first = backup(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v["change_counts"]["new"], 3, "{v}");
    assert_eq!(v["changes"].as_array().unwrap().len(), 3);

    write(&src.join("edited"), b"after!");
    let f = fs::File::options()
        .write(true)
        .open(src.join("touched"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    write(&src.join("added"), b"added");
    let second = backup(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    let change_of = |name: &str| {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == src.join(name).to_str().unwrap())
            .unwrap_or_else(|| panic!("{name} listed: {v}"))["change"]
            .clone()
    };
    assert_eq!(change_of("same"), "unchanged");
    assert_eq!(change_of("edited"), "changed");
    // Re-read (its mtime moved) but the same content.
    assert_eq!(change_of("touched"), "unchanged");
    assert_eq!(change_of("added"), "new");
    assert_eq!(v["change_counts"]["unchanged"], 2, "{v}");

    // Text: one line per file, then the counts.
    let third = backup(&[]);
    let text = stdout(&third);
    assert_contains(&text, &format!("unchanged {}", src.join("same").display()));
    assert_contains(&text, "files: ");
    // Without --list, no change list in --json.
    let (out, v) = env.backup_json(&[src.to_str().unwrap()]);
    assert_success(&out);
    assert!(v.get("changes").is_none(), "{v}");
    // --list with --dry-run is refused.
    let (out, _) = env.backup_json(&["--list", "--dry-run", src.to_str().unwrap()]);
    assert_code(&out, 2);
}
