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

/// Runs `vault backup --list` (plus `extra`) on `src` and a command that
/// waits for a file to exist: the command's output is stored after every
/// file of `src` (walk order), and the test creates that file only once the
/// last file of `src` is listed on stdout. So the backup completes only if
/// the list streams as the walk goes; otherwise the command gives up after
/// 30 s, says so, and the backup is partial.
fn streamed_list(env: &Env, src: &std::path::Path, last: &str, extra: &[&str]) -> (String, i32) {
    let go = env.path("go");
    let wait = format!(
        "for i in $(seq 600); do [ -e '{g}' ] && break; sleep 0.05; done; \
         [ -e '{g}' ] && echo released || {{ echo 'never released' >&2; exit 1; }}",
        g = go.display()
    );
    let mut child = Command::new(vault_bin())
        .args(["backup", "-r", env.repo.to_str().unwrap()])
        .args(["-i", env.writer_key.to_str().unwrap()])
        .args(["--cache-dir", env.cache.to_str().unwrap(), "--list"])
        .args(extra)
        .args(["--from-command", &wait, "--stdin-filename", "/zzz/waited"])
        .arg(src)
        .env_remove("VAULT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0 {
        if line.contains(last) && !go.exists() {
            fs::write(&go, b"").unwrap();
        }
        seen.push_str(&line);
        line.clear();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("never released"), "{seen}\n{err}");
    (seen, out.status.code().unwrap_or(-1))
}

#[test]
fn backup_list_streams_each_file_as_the_walk_goes() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..50 {
        write(
            &src.join(format!("f{i:02}")),
            format!("file {i}").as_bytes(),
        );
    }
    // The file cache only remembers files over a second older than the
    // backup (see backup_list_says_new_changed_and_unchanged).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (text, code) = streamed_list(&env, &src, "f49", &[]);
    assert_eq!(code, 0, "{text}");
    assert_contains(&text, &format!("new       {}", src.join("f00").display()));
    assert_contains(&text, "files: 50 new, 0 changed, 0 unchanged");
    assert_eq!(text.lines().filter(|l| l.starts_with("new ")).count(), 50);
    // The command's output is not a file of the paths: not listed.
    assert!(!text.contains("/zzz/waited"), "{text}");
    // --json streams the `changes` array of one valid document (an
    // entry's line ends when the next entry is written).
    fs::remove_file(env.path("go")).unwrap();
    write(&src.join("f07"), b"edited");
    let (json, code) = streamed_list(&env, &src, "f48", &["--json"]);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect(&json);
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 50, "{v}");
    assert_eq!(v["change_counts"]["changed"], 1, "{v}");
    assert_eq!(v["complete"], true, "{v}");
    assert!(v["id"].is_string(), "{v}");
}

#[test]
fn a_failed_backup_still_closes_its_json_list() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    // The repository's data directory cannot be written: the backup fails
    // after the walk started, and stdout is still one JSON document.
    let data = env.repo.join("data");
    let _ = fs::remove_dir_all(&data);
    fs::write(&data, b"not a directory").unwrap();
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--list", "--json", src.to_str().unwrap()],
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stdout(&out)));
    assert_eq!(v["complete"], false, "{v}");
    assert_contains(v["error"].as_str().unwrap(), "no snapshot was written");
    assert_contains(&stderr(&out), "no snapshot was written");
}
