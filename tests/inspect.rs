//! `vault diff`, `vault find` and `vault stats`: reading what snapshots
//! hold without restoring them, from the CLI, bad input included.

use std::fs;
use std::path::Path;

use crate::util::*;

/// `vault CMD ... --json` with the owner key, parsed.
fn json(env: &Env, cmd: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = env.vault(&[cmd], &env.owner_key, &all);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// Backs up `path` as `host` with `--no-cache`; returns the snapshot id.
fn backup_as(env: &Env, host: &str, path: &Path) -> String {
    let (out, v) = env.backup_json(&["--host", host, path.to_str().unwrap()]);
    assert_success(&out);
    v["id"].as_str().unwrap().to_owned()
}

/// The changes of a `diff --json` as (change, path relative to `root`).
fn changes(v: &serde_json::Value, root: &Path) -> Vec<(String, String)> {
    let root = root.to_str().unwrap();
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        // The source's ancestors (the shared /tmp among them) change under
        // other tests running beside this one: only the source is compared.
        .filter_map(|c| {
            let p = c["path"].as_str().unwrap().strip_prefix(root)?;
            Some((c["change"].as_str().unwrap().to_owned(), p.to_owned()))
        })
        .collect()
}

#[test]
fn diff_reports_each_kind_of_change_and_skips_unchanged_directories() {
    let env = Env::new();
    let src = env.path("src");
    for d in 0..30 {
        write(
            &src.join(format!("d{d:02}/file")),
            format!("{d}").as_bytes(),
        );
    }
    write(&src.join("d07/deep/inner/f"), b"old content");
    write(&src.join("gone/x"), b"x");
    write(&src.join("morph"), b"a file first");
    let first = backup_as(&env, "h", &src);

    // One file deep down changes: only the trees on its path are read.
    write(&src.join("d07/deep/inner/f"), b"new content!");
    let second = backup_as(&env, "h", &src);
    let v = json(&env, "diff", &[&first, &second]);
    assert_eq!(
        changes(&v, &src),
        vec![("modified".to_owned(), "/d07/deep/inner/f".to_owned())]
    );
    assert_eq!(v["summary"]["modified"], 1);
    assert_eq!(v["summary"]["bytes_added"], 12);
    assert_eq!(v["summary"]["bytes_removed"], 11);
    // Each side reads the root, every directory down to the file's
    // parent, and nothing else: not the other 29 directories.
    let parent = src.join("d07/deep/inner");
    let depth = parent.components().count() as u64; // "/" counts as the root
    assert_eq!(v["summary"]["trees_read"], 2 * depth, "{v}");

    // Added, removed, metadata and type changes, in path order.
    fs::remove_dir_all(src.join("gone")).unwrap();
    write(&src.join("d03/new"), b"new");
    fs::remove_file(src.join("morph")).unwrap();
    fs::create_dir(src.join("morph")).unwrap();
    write(&src.join("morph/inside"), b"i");
    let f = src.join("d05/file");
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let third = backup_as(&env, "h", &src);
    let v = json(&env, "diff", &[&second[..8], "latest"]);
    let got: Vec<(String, String)> = changes(&v, &src)
        .into_iter()
        // Directories whose listing changed get a new mtime too.
        .filter(|(c, p)| !(c == "metadata" && (p.is_empty() || p == "/d03")))
        .collect();
    let want = [
        ("added", "/d03/new"),
        ("metadata", "/d05/file"),
        ("removed", "/gone"),
        ("removed", "/gone/x"),
        ("type", "/morph"),
        ("added", "/morph/inside"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(c, p)| (c.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(v["to"], third.as_str());

    // Text output: a mark per line, then the summary; the same snapshot on
    // both sides is no change and reads nothing.
    let out = env.vault(&["diff"], &env.owner_key, &[&second, &third]);
    assert_success(&out);
    let text = stdout(&out);
    assert_contains(&text, &format!("-    {}/gone/\n", src.display()));
    assert_contains(&text, &format!("T    {}/morph/\n", src.display()));
    assert_contains(&text, "1 changed type");
    let out = env.vault(&["diff"], &env.owner_key, &[&third, "latest"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "no changes (0 trees read)\n");
}

#[test]
fn diff_latest_resolves_within_the_filters_and_bad_input_is_refused() {
    let env = Env::new();
    let a = env.path("a");
    write(&a.join("f"), b"1");
    let web1 = backup_as(&env, "web1", &a);
    write(&a.join("f"), b"22");
    let web2 = backup_as(&env, "web2", &a);
    // `latest --host web1` is web1's, not the newer web2 one.
    let v = json(&env, "diff", &["--host", "web1", &web1, "latest"]);
    assert_eq!(v["to"], web1.as_str());
    assert_eq!(v["changes"], serde_json::json!([]));
    let v = json(&env, "diff", &[&web1, &web2]);
    assert_eq!(v["summary"]["modified"], 1);

    // A snapshot the filter excludes, an unknown one, a missing argument,
    // the writer key: each a clear error, nothing printed on stdout.
    let out = env.vault(
        &["diff"],
        &env.owner_key,
        &["--host", "web1", &web2, "latest"],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), &format!("first snapshot {web2}"));
    let out = env.vault(&["diff"], &env.owner_key, &[&web1, "beefbeef"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "second snapshot beefbeef");
    assert!(out.stdout.is_empty());
    let out = env.vault(&["diff"], &env.owner_key, &[&web1]);
    assert_code(&out, 2);
    let out = env.vault(&["diff"], &env.writer_key, &[&web1, &web2]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "owner key");
    assert!(out.stdout.is_empty());
}

#[test]
fn find_searches_every_snapshot_and_reads_unchanged_directories_once() {
    let env = Env::new();
    let src = env.path("src");
    for d in 0..20 {
        // Distinct content: identical directories share one tree.
        write(
            &src.join(format!("static/d{d:02}/page.html")),
            format!("<p>{d:02}").as_bytes(),
        );
    }
    let mut ids = Vec::new();
    for n in 1..=5 {
        write(&src.join(format!("logs/app-{n}.log")), &vec![b'x'; n]);
        ids.push(backup_as(&env, "web1", &src));
    }
    let out = env.vault(&["find"], &env.owner_key, &["*.log"]);
    assert_success(&out);
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1 + 2 + 3 + 4 + 5, "{lines:?}");
    // Newest snapshot first, each line naming the snapshot and the path.
    assert!(lines[0].starts_with(&ids[4][..8]), "{}", lines[0]);
    assert!(lines[0].ends_with(&format!("{}/logs/app-1.log", src.display())));
    // The first snapshot reads its 26 directories (root, the 3 above src,
    // logs, static and its 20); each later one reads the 5 on the way to
    // logs/ and skips static/, known to hold no match.
    assert_contains(
        &stderr(&out),
        "15 matches in 5 snapshots (46 directories read, 4 unchanged without a match skipped)",
    );

    // A whole-path glob, one snapshot, JSON lines.
    let glob = format!("{}/static/d0[0-2]/*.html", src.display());
    let out = env.vault(
        &["find"],
        &env.owner_key,
        &[&glob, "--snapshot", &ids[1][..8], "--json"],
    );
    assert_success(&out);
    let found: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 3);
    // Only the directories on the way read: the root, those down to src,
    // static/ and d00 to d02; logs/ and d03 to d19 cannot hold a match.
    let above = src.components().count() as u64;
    let out = env.vault(
        &["find"],
        &env.owner_key,
        &[&glob, "--snapshot", &ids[1][..8]],
    );
    assert_success(&out);
    assert_eq!(stdout(&out).lines().count(), 3);
    assert_contains(
        &stderr(&out),
        &format!(
            "({} directories read, 0 unchanged without a match skipped, 18 ruled out by the path)",
            above + 4
        ),
    );
    assert_eq!(found[0]["snapshot"], ids[1].as_str());
    assert_eq!(found[0]["size"], 5);
    assert_eq!(found[0]["kind"], "file");
    assert!(found[0]["mtime"].as_str().unwrap().starts_with("20"));
    assert_eq!(
        found[2]["path"],
        format!("{}/static/d02/page.html", src.display())
    );
}

#[test]
fn find_takes_the_filters_and_refuses_bad_input() {
    let env = Env::new();
    let a = env.path("a");
    write(&a.join("Secret.KEY"), b"k");
    let web1 = backup_as(&env, "web1", &a);
    let _web2 = backup_as(&env, "web2", &a);
    let out = env.vault(
        &["find"],
        &env.owner_key,
        &["*.key", "--host", "web1", "--ignore-case"],
    );
    assert_success(&out);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with(&web1[..8]));
    // Case matters without --ignore-case.
    let out = env.vault(&["find"], &env.owner_key, &["*.key"]);
    assert_success(&out);
    assert!(out.stdout.is_empty());
    assert_contains(&stderr(&out), "0 matches in 2 snapshots");
    // A filter nothing passes: said, not an error.
    let out = env.vault(&["find"], &env.owner_key, &["*", "--host", "db9"]);
    assert_success(&out);
    assert_contains(&stderr(&out), "no snapshot to search matches --host db9");

    for (args, code, says) in [
        (vec!["a[b"], 2, "pattern \"a[b\""),
        (vec![""], 2, "the pattern is empty"),
        (vec!["*", "--snapshot", "beefbeef"], 2, "beefbeef"),
    ] {
        let out = env.vault(&["find"], &env.owner_key, &args);
        assert_code(&out, code);
        assert_contains(&stderr(&out), says);
        assert!(out.stdout.is_empty());
    }
    let out = env.vault(&["find"], &env.writer_key, &["*"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "owner key");
}

/// Format 3 records the blobs of small files rounded up to 64 bytes in the
/// index: counted from the trees, their content is exact (each file's size),
/// so tiny files that repeat show a ratio above 1; the repository mode,
/// which reads only the index, says its ratio is a lower bound.
#[test]
fn stats_of_tiny_files_counts_their_exact_content() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"hello");
    write(&src.join("b"), b"hello");
    write(&src.join("c"), b"world!");
    backup_as(&env, "h", &src);
    let v = json(&env, "stats", &["latest", "--no-cache"]);
    assert_eq!(v["logical_bytes"], 16);
    assert_eq!(v["content_bytes"], 11);
    assert_eq!(v["content_exact"], true);
    // One bundle (format 5) holding "hello" once and "world!".
    assert_eq!(v["data"]["count"], 1);
    assert_eq!(v["data"]["raw_bytes"], 64, "as indexed: rounded up");
    let ratio = v["dedup_ratio"].as_f64().unwrap();
    assert!((ratio - 16.0 / 11.0).abs() < 1e-9, "{ratio}");
    let text = stdout(&env.vault(&["stats"], &env.owner_key, &["latest", "--no-cache"]));
    assert_contains(&text, "content size       11 B\n");
    assert_contains(
        &text,
        "dedup ratio        1.45 (logical size / content size)\n",
    );

    let out = env.vault(&["stats"], &env.writer_key, &["--no-cache", "--json"]);
    assert_success(&out);
    let repo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(repo["content_bytes"], 64);
    assert_eq!(repo["content_exact"], false);
    let text = stdout(&env.vault(&["stats"], &env.writer_key, &["--no-cache"]));
    assert_contains(&text, "as indexed: small files' blobs rounded up to 64 B");
    assert_contains(&text, "dedup ratio        at least 0.25");
}

#[test]
fn stats_of_the_repository_reads_no_tree_and_agrees_with_the_snapshots() {
    let env = Env::new();
    let src = env.path("src");
    let noise = noise(1 << 20, 7);
    write(&src.join("a.bin"), &noise);
    write(&src.join("copy-of-a.bin"), &noise);
    write(&src.join("small"), b"small");
    let first = backup_as(&env, "h", &src);
    let second = backup_as(&env, "h", &src);
    let logical = 2 * (1u64 << 20) + 5;

    // Two snapshots of the same files: the content is stored once, and
    // each snapshot repeats a.bin, so deduplication saves 4 to 1.
    let mut args = vec!["--no-cache", "--json"];
    let out = env.vault(&["stats"], &env.writer_key, &args);
    assert_success(&out);
    let repo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(repo["mode"], "repository");
    assert_eq!(repo["snapshots"], 2);
    assert_eq!(repo["files"], 6);
    assert_eq!(repo["logical_bytes"], 2 * logical);
    let raw = repo["data"]["raw_bytes"].as_u64().unwrap();
    // The index shows the small file (salted, format 3) rounded up to 64
    // bytes: the repository mode reads only the index.
    assert_eq!(raw, (1 << 20) + 64, "each distinct byte once");
    let ratio = repo["dedup_ratio"].as_f64().unwrap();
    assert!((ratio - (2 * logical) as f64 / raw as f64).abs() < 1e-9);
    assert!(repo["packs"].as_u64().unwrap() >= 2);
    // Noise does not compress: stored is about the raw size.
    let stored = repo["data"]["stored_bytes"].as_u64().unwrap();
    assert!(
        stored >= raw && stored < raw + raw / 50,
        "{stored} vs {raw}"
    );

    // The snapshots counted from their trees need the same blobs.
    let both = json(&env, "stats", &[&first, &second[..8], "--no-cache"]);
    assert_eq!(both["mode"], "snapshots");
    assert_eq!(both["files"], 6);
    assert_eq!(both["logical_bytes"], 2 * logical);
    assert_eq!(both["data"], repo["data"]);
    assert_eq!(
        both["content_bytes"],
        (1 << 20) + 5,
        "the small file exactly"
    );
    assert_eq!(repo["content_bytes"], raw);
    assert_eq!(both["trees"]["count"], repo["trees"]["count"]);
    let one = json(&env, "stats", &["latest", "--no-cache"]);
    assert_eq!(one["snapshots"], 1);
    assert_eq!(one["logical_bytes"], logical);
    assert_eq!(one["data"]["raw_bytes"], raw);
    let text = stdout(&env.vault(&["stats"], &env.owner_key, &["--host", "h", "--no-cache"]));
    assert_contains(&text, "counted from       the snapshots' trees\n");
    assert_contains(&text, "snapshots          2\n");

    // Without the tree packs the repository figures are unchanged (none is
    // read); counting a snapshot from its trees fails as damage.
    fs::remove_dir_all(env.repo.join("tree")).unwrap();
    fs::create_dir(env.repo.join("tree")).unwrap();
    let out = env.vault(&["stats"], &env.writer_key, &args);
    assert_success(&out);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["data"], repo["data"]);
    assert_eq!(again["logical_bytes"], repo["logical_bytes"]);
    args.push("latest");
    let out = env.vault(&["stats"], &env.owner_key, &args);
    assert_code(&out, 4);
    assert!(out.stdout.is_empty());
}

#[test]
fn stats_refuses_bad_input() {
    let env = Env::new();
    let a = env.path("a");
    write(&a.join("f"), b"1");
    let id = backup_as(&env, "web1", &a);
    for (args, says) in [
        (vec!["beefbeef"], "beefbeef"),
        (vec!["--host", "db9"], "no snapshot matches --host db9"),
        (vec![&id[..8], "--host", "db9"], "--host db9"),
    ] {
        let out = env.vault(&["stats"], &env.owner_key, &args);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), says);
        assert!(out.stdout.is_empty());
    }
    // Snapshots counted from their trees need the owner key.
    let out = env.vault(&["stats"], &env.writer_key, &["latest"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "owner key");
}
