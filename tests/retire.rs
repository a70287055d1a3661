//! `vault status --retire HOST:SOURCE`: an owner-signed record stops a
//! source that is no longer backed up from failing `vault status` forever;
//! a new backup of it brings it back; forgetting all its snapshots retires
//! it too.

use std::fs;

use crate::util::*;

fn status(
    env: &Env,
    key: &std::path::Path,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["--json"];
    args.extend(extra);
    let out = env.vault(&["status"], key, &args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, v)
}

#[test]
fn a_retired_source_stops_failing_status_until_backed_up_again() {
    let env = Env::new();
    let (old, keep) = (env.path("old"), env.path("keep"));
    for d in [&old, &keep] {
        fs::create_dir_all(d).unwrap();
        write(&d.join("f"), b"data");
    }
    let old_id = env.backup(&[&old]);
    let keep_id = env.backup(&[&keep]);
    // Only `keep` is drilled: `old` needs attention.
    let out = env.vault(&["restore"], &env.owner_key, &[&keep_id, "--verify"]);
    assert_success(&out);
    let (out, v) = status(&env, &env.writer_key, &[]);
    assert_code(&out, 1);
    let host = v["sources"][0]["host"].as_str().unwrap().to_owned();
    let old_source = format!("paths:{}", old.display());
    let what = format!("{host}:{old_source}");

    // Bad input: no HOST:SOURCE shape, a source the host never had, the
    // writer key. Nothing is recorded.
    let (out, _) = status(&env, &env.owner_key, &["--retire", "web1"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "HOST:SOURCE");
    let (out, _) = status(
        &env,
        &env.owner_key,
        &["--retire", &format!("{host}:paths:/nope")],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), &old_source);
    let (out, _) = status(&env, &env.writer_key, &["--retire", &what]);
    assert_ne!(out.status.code(), Some(0));
    assert_contains(&stderr(&out), "owner");
    assert!(
        !env.repo.join("retired").exists()
            || fs::read_dir(env.repo.join("retired"))
                .unwrap()
                .next()
                .is_none()
    );

    // The owner retires it: status is green, for the writer key too, and
    // lists it as retired.
    let (out, v) = status(&env, &env.owner_key, &["--retire", &what]);
    assert_success(&out);
    assert_contains(&stderr(&out), "retired");
    assert_eq!(v["retired"][0]["source"], old_source.as_str());
    let (out, v) = status(&env, &env.writer_key, &[]);
    assert_success(&out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["sources"].as_array().unwrap().len(), 1);
    let text = env.vault(&["status"], &env.writer_key, &[]);
    assert_success(&text);
    assert_contains(&stdout(&text), &format!("retired: {host} {old_source}"));

    // Backed up again: judged again (no drill of the new snapshot).
    let again = env.backup(&[&old]);
    let (out, v) = status(&env, &env.writer_key, &[]);
    assert_code(&out, 1);
    assert!(v["retired"].as_array().unwrap().is_empty(), "{v}");

    // Every snapshot of it forgotten: no longer judged, nothing to retire.
    let out = env.vault(&["forget"], &env.owner_key, &[&old_id, &again]);
    assert_success(&out);
    let (out, v) = status(&env, &env.writer_key, &[]);
    assert_success(&out);
    assert_eq!(v["sources"].as_array().unwrap().len(), 1, "{v}");
}
