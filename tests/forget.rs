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
