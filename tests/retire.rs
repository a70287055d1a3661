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

/// The retirement records stored in a local repository (`retired/`): name
/// and bytes, sorted.
fn retired_objects(repo: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = fs::read_dir(repo.join("retired")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = dir
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `vault copy` carries the owner's retirement records into the copy
/// target, byte for byte, so the target's `vault status` leaves the same
/// source unjudged; a record the owner did not sign (planted with the writer
/// key) stays behind, and a rerun copies nothing again.
#[test]
fn copy_carries_retirement_records_the_owner_signed() {
    use vault::format::retirement::RetireRecord;
    use vault::repo::ObjectKind;

    let env = Env::new();
    let (old, keep) = (env.path("old"), env.path("keep"));
    for d in [&old, &keep] {
        fs::create_dir_all(d).unwrap();
        write(&d.join("f"), b"data");
    }
    env.backup(&[&old]);
    env.backup(&[&keep]);
    let (_, v) = status(&env, &env.writer_key, &[]);
    let host = v["sources"][0]["host"].as_str().unwrap().to_owned();
    let old_source = format!("paths:{}", old.display());
    let (out, _) = status(
        &env,
        &env.owner_key,
        &["--retire", &format!("{host}:{old_source}")],
    );
    // Recorded; status itself still fails (nothing is drilled).
    assert_contains(&stderr(&out), "vault status no longer judges it");
    let signed = retired_objects(&env.repo);
    assert_eq!(signed.len(), 1);
    // A writer plants a record retiring the other source.
    let w = crate::attackers::WriterAttacker::new(&env.repo, &env.writer_key);
    w.repo
        .put_shared_json(
            ObjectKind::Retirement,
            &RetireRecord {
                time: chrono::Utc::now(),
                host: host.clone(),
                source: format!("paths:{}", keep.display()),
            },
        )
        .unwrap();
    assert_eq!(retired_objects(&env.repo).len(), 2);

    let target = env.path("target");
    let t = target.to_str().unwrap();
    let owner = env.owner_key.to_str().unwrap();
    let repo = env.repo.to_str().unwrap();
    assert_success(&run(&["init", "-r", t, "--like", repo, "-i", owner]));
    let copy = |snapshots: usize| {
        let out = run(&["copy", "-r", repo, "-i", owner, "--to", t, "--json"]);
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["snapshots_copied"].as_array().unwrap().len(), snapshots);
        v
    };
    let v = copy(2);
    assert_eq!(v["retirements_copied"], 1, "{v}");
    assert_eq!(
        retired_objects(&target),
        signed,
        "the signed record, byte for byte"
    );
    let out = run(&["status", "-r", t, "-i", owner, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["retired"][0]["source"], old_source.as_str(), "{v}");
    assert_eq!(v["retired"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["untrusted"].as_array().unwrap().is_empty(), "{v}");

    // A rerun has nothing to copy.
    let v = copy(0);
    assert_eq!(v["retirements_copied"], 0, "{v}");
    assert_eq!(retired_objects(&target), signed);
    let text = run(&["copy", "-r", repo, "-i", owner, "--to", t]);
    assert_success(&text);
    assert!(!stdout(&text).contains("retirement"), "{}", stdout(&text));
}
