//! `--host`, `--tag` and `--path` on snapshots, ls, restore, dump, copy
//! and drill, in a repository two hosts share: `latest` is the newest
//! snapshot the filter lets through.

use crate::util::*;

/// A repository with a nightly backup of web1 and a newer one-off of web2.
fn shared() -> (Env, String, String) {
    let env = Env::new();
    let one = env.path("web1/etc");
    write(&one.join("app.conf"), b"web1 config");
    let two = env.path("web2/srv");
    write(&two.join("site.html"), b"web2 site");
    let backup = |host: &str, extra: &[&str], path: &std::path::Path| {
        let mut args = vec!["--no-cache", "--json", "--host", host];
        args.extend(extra);
        args.push(path.to_str().unwrap());
        let out = env.vault(&["backup"], &env.writer_key, &args);
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_owned()
    };
    let web1 = backup("web1", &["--tag", "nightly"], &one);
    let web2 = backup("web2", &[], &two);
    (env, web1, web2)
}

#[test]
fn snapshots_ls_restore_and_dump_take_the_filters() {
    let (env, web1, web2) = shared();
    let list = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--json"];
        all.extend(args);
        let out = env.vault(&["snapshots"], &env.writer_key, &all);
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list(&[]), vec![web1.clone(), web2.clone()]);
    assert_eq!(list(&["--host", "web1"]), vec![web1.clone()]);
    assert_eq!(list(&["--tag", "nightly"]), vec![web1.clone()]);
    let web2_path = env.path("web2/srv");
    assert_eq!(
        list(&["--path", web2_path.to_str().unwrap()]),
        vec![web2.clone()]
    );
    assert!(list(&["--host", "web1", "--tag", "other"]).is_empty());

    // latest within --host web1 is web1's nightly, not web2's newer one-off.
    let target = env.path("t1");
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            "latest",
            "--host",
            "web1",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert_contains(&stdout(&out), &web1[..8]);
    let restored = target.join(env.path("web1/etc/app.conf").strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored).unwrap(), b"web1 config");
    let web2_file = target.join(env.path("web2").strip_prefix("/").unwrap());
    assert!(!web2_file.exists());

    let out = env.vault(&["ls"], &env.owner_key, &["latest", "--tag", "nightly"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "app.conf");
    assert!(!stdout(&out).contains("site.html"));

    let out = env.vault(&["dump"], &env.owner_key, &["latest", "--host", "web1"]);
    assert_success(&out);
    let mut tar = tar::Archive::new(&out.stdout[..]);
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("app.conf")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("site.html")), "{names:?}");

    // An id outside the filter, or a filter nothing passes, matches nothing.
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            &web2[..12],
            "--host",
            "web1",
            "--target",
            env.path("t2").to_str().unwrap(),
        ],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "no snapshot matches");
    let out = env.vault(&["ls"], &env.owner_key, &["latest", "--host", "db9"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--host db9");
}

#[test]
fn drill_and_copy_take_the_filters() {
    let (env, web1, _web2) = shared();
    let out = env.vault(
        &["drill"],
        &env.owner_key,
        &["--host", "web1", "--no-random-older", "--json"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drilled: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(drilled, vec![web1.as_str()]);

    let target = env.path("offsite");
    let out = run(&[
        "init",
        "-r",
        target.to_str().unwrap(),
        "--like",
        env.repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
    ]);
    assert_success(&out);
    let copy = |args: &[&str]| {
        let mut all = vec!["--to", target.to_str().unwrap(), "--json"];
        all.extend(args);
        env.vault(&["copy"], &env.owner_key, &all)
    };
    let out = copy(&["--host", "nosuch"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--host nosuch");
    let out = copy(&["--tag", "nightly"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["snapshots_copied"], serde_json::json!([web1]));
}

#[test]
fn a_drill_with_nothing_to_drill_says_so() {
    let env = Env::new();
    let out = env.vault(&["drill"], &env.owner_key, &[]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "no snapshot to drill");
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    let out = env.vault(&["drill"], &env.owner_key, &["--host", "elsewhere"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--host elsewhere");
    // The filter is the cause: no advice to run a backup that did run.
    assert!(!stderr(&out).contains("vault backup"), "{}", stderr(&out));
}
