//! `vault drill`: latest snapshot per source set, one random older, and a
//! rotating slice of packs that covers the repository within the period.

use crate::util::*;

#[test]
fn drill_verifies_latest_per_source_and_writes_records() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    sample_tree(&a);
    sample_tree(&b);
    env.backup(&[&a]);
    write(&a.join("etc/app/app.conf"), b"changed\n");
    let latest_a = env.backup(&[&a]);
    let latest_b = env.backup(&[&b]);
    let out = env.vault(&["drill"], &env.owner_key, &["--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true);
    let snaps = v["snapshots"].as_array().unwrap();
    let latest: Vec<&str> = snaps
        .iter()
        .filter(|s| s["reason"] == "latest")
        .map(|s| s["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(latest.len(), 2);
    assert!(latest.contains(&latest_a.as_str()) && latest.contains(&latest_b.as_str()));
    assert_eq!(
        snaps
            .iter()
            .filter(|s| s["reason"] == "random older")
            .count(),
        1
    );
    for s in snaps {
        assert!(
            env.repo
                .join("drills")
                .join(s["record"].as_str().unwrap())
                .is_file()
        );
        assert_eq!(s["report"]["verified"], s["report"]["files"]);
    }
    assert!(v["pack_slice"].as_str().unwrap().ends_with("/30"));

    let writer = env.vault(&["drill"], &env.writer_key, &[]);
    assert_code(&writer, 1);
    assert_contains(&stderr(&writer), "needs an owner key");
}

#[test]
fn pack_slices_cover_every_pack_within_the_period() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    for i in 0..6 {
        write(&src.join(format!("blob{i}.bin")), &noise(3 << 20, 50 + i));
    }
    let small = env.path("repo-small");
    assert_success(&run(&[
        "init",
        "-r",
        small.to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--writer-key-out",
        env.path("w2.key").to_str().unwrap(),
        "--pack-size-mib",
        "1",
    ]));
    backup_no_cache(&small, &env.path("w2.key"), &src);
    let repo = open_repo(&small, &env.owner_key);
    let (index, _) = repo.load_index().unwrap();
    let total = index.packs().count() as u64;
    assert!(total >= 10, "{total} packs");
    let mut read = 0;
    for day in 0..5 {
        let opts = vault::ops::drill::DrillOptions {
            period_days: 5,
            day,
            random_older: false,
            ..Default::default()
        };
        let report = vault::ops::drill::run(
            &repo,
            &opts,
            &vault::ops::restore::DatabaseDrill::default(),
            &vault::Cancel::new(),
        )
        .unwrap();
        assert!(report.passed);
        read += report.packs.packs_read;
    }
    assert_eq!(
        read, total,
        "five daily slices re-read every pack exactly once"
    );
}

#[test]
fn drill_fails_on_damage() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("big.bin"), &noise(4 << 20, 9));
    env.backup(&[&src]);
    let mut biggest = None;
    for d in std::fs::read_dir(env.repo.join("data")).unwrap().flatten() {
        for p in std::fs::read_dir(d.path()).unwrap().flatten() {
            let len = p.metadata().unwrap().len();
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, p.path()));
            }
        }
    }
    let pack = biggest.unwrap().1;
    let mut bytes = std::fs::read(&pack).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    let out = env.vault(&["drill"], &env.owner_key, &["--period-days", "1"]);
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "result: FAILED");
    assert_contains(&stdout(&out), "big.bin");
}

#[test]
fn a_verify_of_part_of_a_snapshot_is_not_recorded_as_a_drill() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("one.txt"), b"one");
    write(&src.join("two.txt"), b"two");
    let id = env.backup(&[&src]);
    let drills = || std::fs::read_dir(env.repo.join("drills")).map_or(0, |d| d.count());
    let status = || {
        let out = env.vault(&["status"], &env.owner_key, &["--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["sources"][0]["last_passed_drill"].clone()
    };
    let rel = format!("{}/one.txt", src.strip_prefix("/").unwrap().display());
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--verify", "--include", &rel],
    );
    assert_success(&out);
    assert_contains(&stdout(&out), "verified: 1 file,");
    assert_contains(&stdout(&out), "no drill record");
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--verify", "--include", &rel, "--json"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["drill"].is_null(), "{v}");
    assert_eq!(drills(), 0);
    assert!(status().is_null(), "a partial verify is not a drill");
    // The whole snapshot verified: a drill record that status counts.
    let out = env.vault(&["restore"], &env.owner_key, &[&id, "--verify"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "drill record");
    assert_eq!(drills(), 1);
    assert!(status().is_string());
}
