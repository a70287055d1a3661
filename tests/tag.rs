//! `vault tag`: a tag change writes a new owner-signed header, carries the
//! drill records over, then removes the old header; bad input changes
//! nothing.

use std::fs;

use crate::util::*;

fn headers(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(env.repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    v.sort();
    v
}

fn count(env: &Env, dir: &str) -> usize {
    fs::read_dir(env.repo.join(dir)).map_or(0, |d| d.count())
}

fn listing(env: &Env) -> serde_json::Value {
    let out = env.vault(&["snapshots"], &env.owner_key, &["--json"]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tag_rewrites_the_header_and_keeps_its_drill() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--no-cache",
            "--json",
            "--tag",
            "nightly",
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let old = v["id"].as_str().unwrap().to_owned();
    assert_success(&env.vault(&["restore"], &env.owner_key, &[&old, "--verify"]));
    assert_eq!(count(&env, "drills"), 1);

    let out = env.vault(
        &["tag"],
        &env.owner_key,
        &[
            &old[..8],
            "--add",
            "keep",
            "--add",
            "q4",
            "--remove",
            "nightly",
            "--json",
        ],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = v["snapshots"][0]["new"].as_str().unwrap().to_owned();
    assert_eq!(
        v["snapshots"][0]["after"],
        serde_json::json!(["keep", "q4"])
    );
    assert_eq!(v["snapshots"][0]["drills_carried"], 1);
    assert_eq!(headers(&env), vec![new.clone()], "the old header is gone");
    let l = listing(&env);
    assert_eq!(l[0]["snapshot"]["tags"], serde_json::json!(["keep", "q4"]));
    assert_eq!(l[0]["signed_by"], "owner");
    // The new header is the same snapshot: same time, root and sources,
    // and the drill still counts for it (status shows a passed drill).
    let out = env.vault(&["status"], &env.owner_key, &["--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        st["sources"][0]["last_passed_drill"].is_string(),
        "the drill still counts: {st}"
    );
    assert_eq!(count(&env, "drills"), 2, "the drill record was re-issued");
    let target = env.path("restored");
    assert_success(&env.restore(&new, &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    // Tag filters see the new tags.
    let out = env.vault(&["snapshots"], &env.owner_key, &["--tag", "q4", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["id"],
        new.as_str()
    );
    // Nothing to change: reported, nothing written.
    let out = env.vault(&["tag"], &env.owner_key, &[&new, "--add", "keep"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "unchanged");
    assert_eq!(headers(&env), vec![new]);
}

#[test]
fn an_interrupted_retag_is_finished_by_running_it_again() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let old = env.backup(&[&src]);
    let saved = fs::read(env.repo.join("snapshots").join(&old)).unwrap();
    let out = env.vault(&["tag"], &env.owner_key, &[&old, "--add", "x", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = v["snapshots"][0]["new"].as_str().unwrap().to_owned();
    // A crash after the new header was stored, before the old one went:
    // both are there.
    fs::write(env.repo.join("snapshots").join(&old), &saved).unwrap();
    assert_eq!(headers(&env).len(), 2);
    let out = env.vault(&["tag"], &env.owner_key, &[&old, "--add", "x", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["snapshots"][0]["new"], new.as_str(), "no third header");
    assert_eq!(headers(&env), vec![new]);
}

#[test]
fn tag_refuses_bad_input_and_the_writer_key_before_writing() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let id = env.backup(&[&src]);
    let before = headers(&env);
    let cases: &[(&[&str], &str)] = &[
        (&[&id, "--add", "a,b"], "without commas"),
        (&[&id, "--add", ""], "non-empty"),
        (
            &[&id, "--add", "x", "--remove", "x"],
            "both added and removed",
        ),
        (&[&id], "nothing to change"),
        (&[&id, "0000000000", "--add", "x"], "no snapshot 0000000000"),
        (&["xyz", "--add", "x"], "is not a snapshot id"),
    ];
    for (args, msg) in cases {
        let out = env.vault(&["tag"], &env.owner_key, args);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), msg);
        assert_eq!(headers(&env), before, "{args:?} changed nothing");
    }
    let out = env.vault(&["tag"], &env.writer_key, &[&id, "--add", "x"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "tag needs an owner key");
    assert_eq!(headers(&env), before);
    let out = run(&[
        "tag",
        "-r",
        env.repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
}
