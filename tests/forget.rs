//! `vault forget`: retention per host and source set, dry runs, the owner
//! rule, and forget followed by prune.

use std::fs;

use crate::util::*;

fn snapshot_ids(env: &Env) -> Vec<String> {
    snapshot_ids_in(env.repo.to_str().unwrap(), &env.writer_key)
}

fn backup_as(env: &Env, host: &str, src: &std::path::Path) -> String {
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--no-cache",
            "--json",
            "--host",
            host,
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[test]
fn keep_last_removes_older_snapshots_and_prune_frees_their_data() {
    let env = Env::new();
    let src = env.path("src");
    let mut ids = Vec::new();
    for i in 0..4 {
        write(&src.join("data.bin"), &noise(500_000, i));
        ids.push(env.backup(&[&src]));
    }
    let dry = env.vault(
        &["forget"],
        &env.owner_key,
        &["--keep-last", "2", "--dry-run"],
    );
    assert_success(&dry);
    assert_contains(&stdout(&dry), "would remove 2");
    assert_eq!(snapshot_ids(&env).len(), 4, "a dry run removes nothing");

    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &["--keep-last", "2", "--json", "--prune", "--grace", "0s"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["forget"]["removed"], 2);
    assert_eq!(v["forget"]["kept"], 2);
    let kept = &v["forget"]["groups"][0]["snapshots"];
    assert_eq!(kept[0]["reasons"][0], "last");
    let mut left = snapshot_ids(&env);
    left.sort();
    let mut want = ids[2..].to_vec();
    want.sort();
    assert_eq!(left, want, "the two newest stay");
    assert!(v["prune"]["plan"]["packs_newly_marked"].as_u64().unwrap() >= 1);

    // The second prune deletes the forgotten snapshots' data.
    let size = |env: &Env| -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            fs::read_dir(p).map_or(0, |d| {
                d.flatten()
                    .map(|e| {
                        let m = e.metadata().unwrap();
                        if m.is_dir() { walk(&e.path()) } else { m.len() }
                    })
                    .sum()
            })
        }
        walk(&env.repo.join("data"))
    };
    let before = size(&env);
    let out = env.vault(&["prune"], &env.owner_key, &["--grace", "0s"]);
    assert_success(&out);
    assert!(size(&env) < before * 3 / 4, "{} -> {}", before, size(&env));
    assert_success(&env.vault(&["check"], &env.owner_key, &["--read-data"]));
    let target = env.path("restored");
    assert_success(&env.restore(&ids[3], &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn policies_apply_per_host_and_host_filters_limit_them() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    for _ in 0..2 {
        backup_as(&env, "alpha", &src);
        backup_as(&env, "beta", &src);
    }
    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &["--keep-daily", "1", "--host", "alpha", "--json"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["forget"]["groups"].as_array().unwrap().len(), 1);
    assert_eq!(v["forget"]["groups"][0]["host"], "alpha");
    let reason = v["forget"]["groups"][0]["snapshots"][0]["reasons"][0]
        .as_str()
        .unwrap();
    assert!(reason.starts_with("daily "), "{reason}");
    assert_eq!(
        snapshot_ids(&env).len(),
        3,
        "beta untouched, alpha keeps one"
    );

    let out = env.vault(&["forget"], &env.owner_key, &["--keep-last", "1"]);
    assert_success(&out);
    assert_eq!(snapshot_ids(&env).len(), 2, "one per host");
}

#[test]
fn forget_refuses_the_writer_key_and_an_empty_policy() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    let out = env.vault(&["forget"], &env.writer_key, &["--keep-last", "1"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "forget needs an owner key");
    let out = env.vault(&["forget"], &env.owner_key, &[]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--keep-last");
    assert_eq!(snapshot_ids(&env).len(), 1);
}

#[test]
fn the_newest_complete_snapshot_is_always_kept() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let night = |dump: &str| {
        env.vault(
            &["backup"],
            &env.writer_key,
            &[
                "--no-cache",
                "--json",
                "--from-command",
                dump,
                "--stdin-filename",
                "db.dump",
                src.to_str().unwrap(),
            ],
        )
    };
    let out = night("echo dump");
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let good = v["id"].as_str().unwrap().to_owned();
    // Two nights whose database dump failed: partial snapshots (exit 3).
    for _ in 0..2 {
        assert_code(&night("exit 1"), 3);
    }
    let out = env.vault(&["forget"], &env.owner_key, &["--keep-last", "1", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<&serde_json::Value> = v["forget"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["snapshots"].as_array().unwrap())
        .filter(|s| s["keep"] == true)
        .collect();
    assert!(
        kept.iter()
            .any(|s| s["id"] == good.as_str() && s["reasons"][0] == "newest complete"),
        "{v}"
    );
    assert!(snapshot_ids(&env).contains(&good));
}

fn snapshot_files(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(env.repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    v.sort();
    v
}

#[test]
fn forget_by_id_removes_only_the_named_snapshots_and_checks_every_id_first() {
    let env = Env::new();
    let src = env.path("src");
    let mut ids = Vec::new();
    for i in 0..3 {
        write(&src.join("a"), &noise(100, i));
        ids.push(env.backup(&[&src]));
    }
    // One unknown id among good ones: nothing is removed.
    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &[&ids[0][..10], "00000000deadbeef"],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "no snapshot 00000000deadbeef");
    assert_contains(&stderr(&out), "nothing was changed");
    // Too short, not hex: refused before anything.
    for bad in [&ids[0][..3], "zzzzzz", "latest"] {
        let out = env.vault(&["forget"], &env.owner_key, &[&ids[1], bad]);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), "is not a snapshot id");
    }
    // An ambiguous prefix: a second object under a name sharing 60 digits.
    let twin = format!("{}{}", &ids[2][..60], "ffff");
    let twin = if twin == ids[2] {
        format!("{}{}", &ids[2][..60], "eeee")
    } else {
        twin
    };
    fs::copy(
        env.repo.join("snapshots").join(&ids[2]),
        env.repo.join("snapshots").join(&twin),
    )
    .unwrap();
    let out = env.vault(&["forget"], &env.owner_key, &[&ids[0], &ids[2][..60]]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "ambiguous (2 matches");
    assert_eq!(snapshot_files(&env).len(), 4, "nothing removed");
    // Policies and names do not mix.
    let out = env.vault(&["forget"], &env.owner_key, &[&ids[0], "--keep-last", "1"]);
    assert_code(&out, 2);
    // The writer key may not.
    let out = env.vault(&["forget"], &env.writer_key, &[&ids[0]]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "forget needs an owner key");

    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &[&ids[0][..8], &twin, "--dry-run"],
    );
    assert_success(&out);
    assert_contains(&stdout(&out), "would remove 2");
    assert_eq!(snapshot_files(&env).len(), 4, "a dry run removes nothing");
    // A damaged header (the twin does not decrypt to its name) can be
    // named and removed too; a prefix and a full id of the same snapshot
    // count once.
    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &[&ids[0][..8], &ids[0], &twin, "--json"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["forget"]["removed"], 2, "{v}");
    let mut left = vec![ids[1].clone(), ids[2].clone()];
    left.sort();
    assert_eq!(snapshot_files(&env), left);
    let target = env.path("restored");
    assert_success(&env.restore(&ids[2], &target));
}

#[test]
fn forget_path_limits_the_policy_to_one_source() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    write(&a.join("f"), b"a");
    write(&b.join("f"), b"b");
    for _ in 0..2 {
        env.backup(&[&a]);
        env.backup(&[&b]);
    }
    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &["--keep-last", "1", "--path", a.to_str().unwrap(), "--json"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["forget"]["removed"], 1, "{v}");
    assert_eq!(v["forget"]["groups"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot_ids(&env).len(), 3, "b keeps both");
    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &["--keep-last", "1", "--path", "/nowhere", "--json"],
    );
    assert_success(&out);
    assert_eq!(snapshot_ids(&env).len(), 3);
}
