//! S3 Object Lock retention and multipart uploads, against moto.

use chrono::Utc;
use vault::storage::{S3Storage, Storage, StorageError};

use super::{Moto, S3Env, vault_at};
use crate::util::*;

/// The value of response header `name` in a raw reply.
fn header_value(reply: &str, name: &str) -> Option<String> {
    reply.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// HeadObject through boto3 (moto refuses unsigned HEADs on a locked
/// bucket): the object's lock mode, retain-until date and ETag.
fn head_object(moto: &Moto, bucket: &str, key: &str) -> serde_json::Value {
    let script = "import boto3, json, sys\n\
        s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
            aws_access_key_id='test', aws_secret_access_key='testsecret')\n\
        h = s3.head_object(Bucket=sys.argv[2], Key=sys.argv[3])\n\
        print(json.dumps({'mode': h.get('ObjectLockMode'), 'etag': h.get('ETag'),\n\
            'class': h.get('StorageClass'),\n\
            'until': str(h.get('ObjectLockRetainUntilDate'))}))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &moto.endpoint(), bucket, key])
        .output()
        .unwrap();
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Small multipart settings, so that a normal backup goes up in parts.
const SMALL_PARTS: [(&str, &str); 2] = [
    ("VAULT_S3_MULTIPART_THRESHOLD_MIB", "6"),
    ("VAULT_S3_PART_SIZE_MIB", "5"),
];

#[test]
fn object_lock_retains_every_object_and_refuses_deletes() {
    let moto = Moto::start();
    moto.create_lock_bucket("locked");
    let env = S3Env::new("s3://locked/host1", 12 << 20);
    let out = env.init(&moto.endpoint(), &["--object-lock-days", "3"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "Object Lock (GOVERNANCE) for 3 days");
    // A large object goes multipart, so retention on CreateMultipartUpload
    // and Content-MD5 on parts are exercised too.
    assert_success(&env.backup(&moto.endpoint(), &SMALL_PARTS));

    let s3 = S3Storage::open("s3://locked/host1", &moto.options()).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&s3.get("config").unwrap()).unwrap();
    assert_eq!(
        config["object_lock"],
        serde_json::json!({ "mode": "governance", "days": 3 })
    );
    let objects = s3.list("").unwrap();
    assert!(objects.len() >= 7, "{objects:?}");
    let expected = Utc::now() + chrono::Duration::days(3);
    let mut multipart = 0;
    for obj in &objects {
        let until = s3
            .locked_until(&obj.key)
            .unwrap()
            .unwrap_or_else(|| panic!("{} is not locked", obj.key));
        assert!(
            (until - expected).num_seconds().abs() < 600,
            "{}: retained until {until}, expected about {expected}",
            obj.key
        );
        let head = head_object(&moto, "locked", &format!("host1/{}", obj.key));
        assert_eq!(head["mode"], "GOVERNANCE", "{}: {head}", obj.key);
        if head["etag"].as_str().is_some_and(|e| e.contains('-')) {
            multipart += 1;
        }
    }
    assert!(multipart >= 1, "the 12 MiB pack went up in parts");

    // vault's delete (the one prune will use) is refused with the key and the date.
    let pack = objects.iter().find(|o| o.key.starts_with("data/")).unwrap();
    match s3.delete(&pack.key) {
        Err(e @ StorageError::Refused { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&pack.key), "{msg}");
            assert_contains(&msg, "HTTP 403");
            assert_contains(&msg, "Object Lock (GOVERNANCE) until");
        }
        other => panic!("delete of a locked object: {other:?}"),
    }
    assert!(s3.get(&pack.key).is_ok(), "still there");

    // forget respects the lock: it names the object and the date, and the
    // snapshot stays. (A second backup gives forget something to remove.)
    assert_success(&env.backup(&moto.endpoint(), &[]));
    let out = env.as_owner(&moto.endpoint(), "forget", &["--keep-last", "1"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "retained by Object Lock until");
    assert_eq!(s3.list("snapshots/").unwrap().len(), 2, "nothing removed");
    env.assert_clean(&moto.endpoint());
    assert_success(&env.restore_and_compare(&moto.endpoint(), &[]));

    // Compliance mode, named explicitly.
    let env2 = S3Env::new("s3://locked/host2", 0);
    assert_success(&env2.init(
        &moto.endpoint(),
        &[
            "--object-lock-days",
            "1",
            "--object-lock-mode",
            "compliance",
        ],
    ));
    assert_eq!(
        head_object(&moto, "locked", "host2/config")["mode"],
        "COMPLIANCE"
    );
}

#[test]
fn object_lock_is_refused_where_objects_cannot_be_locked() {
    let moto = Moto::start();
    moto.create_bucket("plain");
    let env = S3Env::new("s3://plain/r", 0);
    let out = env.init(&moto.endpoint(), &["--object-lock-days", "7"]);
    assert_code(&out, 2);
    assert_contains(
        &stderr(&out),
        "bucket \"plain\" does not have Object Lock enabled",
    );
    assert!(!env.writer.exists(), "nothing was written");
    let s3 = S3Storage::open("s3://plain/r", &moto.options()).unwrap();
    assert!(s3.list("").unwrap().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "init",
        "-r",
        dir.path().join("repo").to_str().unwrap(),
        "--owner",
        &env.recipient,
        "--writer-key-out",
        dir.path().join("w").to_str().unwrap(),
        "--object-lock-days",
        "7",
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "this storage cannot lock objects");
    let out = run(&[
        "init",
        "-r",
        "x",
        "--owner",
        "age1x",
        "--writer-key-out",
        "w",
        "--object-lock-mode",
        "compliance",
    ]);
    assert_code(&out, 2);
}

#[test]
fn large_objects_go_up_in_parts_and_unfinished_uploads_are_reported_and_cleaned() {
    let moto = Moto::start();
    moto.create_bucket("parts");
    let env = S3Env::new("s3://parts/r", 12 << 20);
    assert_success(&env.init(&moto.endpoint(), &[]));
    assert_success(&env.backup(&moto.endpoint(), &SMALL_PARTS));
    let s3 = S3Storage::open("s3://parts/r", &moto.options()).unwrap();
    let big = s3
        .list("data/")
        .unwrap()
        .into_iter()
        .max_by_key(|o| o.size)
        .unwrap();
    assert!(big.size > 10 << 20, "{big:?}");
    let head = moto.raw("HEAD", &format!("/parts/r/{}", big.key), "");
    let etag = header_value(&head, "etag").unwrap();
    assert!(etag.ends_with("-3\""), "12 MiB in 5 MiB parts: {etag}");
    assert!(
        s3.pending_uploads().unwrap().is_empty(),
        "completed, none left"
    );
    // A second backup finds the packs already there.
    assert_success(&env.backup(&moto.endpoint(), &SMALL_PARTS));
    env.assert_clean(&moto.endpoint());

    // A completion that always fails: the upload is aborted, not left behind.
    let proxy = super::faults::Proxy::start(moto.port, |r| {
        if r.method == "POST" && r.target.contains("uploadId=") {
            super::faults::Fault::Answer(500, "InternalError")
        } else {
            super::faults::Fault::Pass
        }
    });
    write(&env.src.join("big2.bin"), &noise(11 << 20, 5));
    let mut envs = SMALL_PARTS.to_vec();
    envs.extend([
        ("VAULT_S3_RETRY_BASE_MS", "10"),
        ("VAULT_S3_MAX_ATTEMPTS", "2"),
    ]);
    let out = env.backup(&proxy.endpoint(), &envs);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "gave up after 2 attempts");
    assert_contains(
        &stderr(&out),
        "CompleteMultipartUpload: HTTP 500 InternalError",
    );
    assert!(
        s3.pending_uploads().unwrap().is_empty(),
        "aborted on failure"
    );

    // One left by a killed backup: reported, then aborted by --clean-uploads.
    let reply = moto.raw("POST", "/parts/r/data/ab/left-behind?uploads", "");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "-r", &env.repo, "--storage"];
        args.extend(extra);
        vault_at(&moto.endpoint(), &args, &[])
    };
    let out = check(&[]);
    assert_success(&out);
    assert_contains(
        &stdout(&out),
        "data/ab/left-behind: unfinished multipart upload",
    );
    assert_contains(&stdout(&out), "1 unfinished upload (0 aborted)");
    let out = check(&["--clean-uploads", "--upload-grace-hours", "0"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "1 unfinished upload (1 aborted)");
    assert!(s3.pending_uploads().unwrap().is_empty());
}

#[test]
fn the_storage_class_setting_applies_to_single_and_multipart_puts() {
    let moto = Moto::start();
    moto.create_bucket("classy");
    let env = S3Env::new("s3://classy/h", 12 << 20);
    assert_success(&env.init(&moto.endpoint(), &[]));
    let mut envs = SMALL_PARTS.to_vec();
    envs.push(("VAULT_S3_STORAGE_CLASS", "STANDARD_IA"));
    assert_success(&env.backup(&moto.endpoint(), &envs));
    let s3 = S3Storage::open("s3://classy/h", &moto.options()).unwrap();
    let packs = s3.list("data/").unwrap();
    let mut multipart = 0;
    for obj in &packs {
        let head = head_object(&moto, "classy", &format!("h/{}", obj.key));
        assert_eq!(head["class"], "STANDARD_IA", "{}: {head}", obj.key);
        multipart += head["etag"].as_str().is_some_and(|e| e.contains('-')) as u32;
    }
    assert!(multipart >= 1, "one pack went up in parts");
    let out = env.backup(
        &moto.endpoint(),
        &[("VAULT_S3_STORAGE_CLASS", "cheap please")],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "is not an S3 storage class");
}

/// Shortens an object's governance retention to end `left` from now (as an
/// administrator with s3:BypassGovernanceRetention could), to stand for a
/// pack stored long ago.
fn shorten_retention(moto: &Moto, bucket: &str, key: &str, left: chrono::Duration) {
    let until = (Utc::now() + left).to_rfc3339();
    let script = "import boto3, sys, datetime\n\
        s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
            aws_access_key_id='test', aws_secret_access_key='testsecret')\n\
        s3.put_object_retention(Bucket=sys.argv[2], Key=sys.argv[3],\n\
            Retention={'Mode': 'GOVERNANCE',\n\
                'RetainUntilDate': datetime.datetime.fromisoformat(sys.argv[4])},\n\
            BypassGovernanceRetention=True)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &moto.endpoint(), bucket, key, &until])
        .output()
        .unwrap();
    assert_success(&out);
}

#[test]
fn prune_keeps_what_recent_snapshots_need_locked_for_the_full_period() {
    let moto = Moto::start();
    moto.create_lock_bucket("upkeep");
    let env = S3Env::new("s3://upkeep/h", 0);
    assert_success(&env.init(&moto.endpoint(), &["--object-lock-days", "3"]));
    assert_success(&env.backup(&moto.endpoint(), &[]));
    let s3 = S3Storage::open("s3://upkeep/h", &moto.options()).unwrap();
    let pack = s3.list("data/").unwrap().remove(0).key;
    // As if the pack had been stored (and locked) long ago.
    shorten_retention(
        &moto,
        "upkeep",
        &format!("h/{pack}"),
        chrono::Duration::hours(1),
    );
    let short = s3.locked_until(&pack).unwrap().unwrap();
    assert!(short < Utc::now() + chrono::Duration::hours(2), "{short}");

    let prune = |extra: &[&str]| {
        let mut args = vec!["--json"];
        args.extend(extra);
        let out = env.as_owner(&moto.endpoint(), "prune", &args);
        let v = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        // The first run signs the backup's index entries (format 2) in a
        // new index file; the one it replaces stays under retention.
        let only_index_retained = v["not_deleted"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e.as_str().unwrap().starts_with("index/")));
        assert!(out.status.success() || only_index_retained, "{v}");
        v
    };
    let dry = prune(&["--dry-run"]);
    assert_eq!(dry["object_lock"]["locks_extended"], 1, "{dry}");
    assert!(s3.locked_until(&pack).unwrap().unwrap() < Utc::now() + chrono::Duration::hours(2));
    let r = prune(&[]);
    assert_eq!(r["object_lock"]["locks_extended"], 1, "{r}");
    assert!(
        r["object_lock"]["objects_checked"].as_u64().unwrap() >= 4,
        "{r}"
    );
    let until = s3.locked_until(&pack).unwrap().unwrap();
    let expected = Utc::now() + chrono::Duration::days(3);
    assert!(
        (until - expected).num_minutes().abs() < 10,
        "{until} vs {expected}"
    );
    // Nothing left to lengthen on the next run.
    assert_eq!(prune(&[])["object_lock"]["locks_extended"], 0);
}

#[test]
fn prune_deletes_expired_packs_even_while_locked_index_files_list_them() {
    let moto = Moto::start();
    moto.create_lock_bucket("expiry");
    let env = S3Env::new("s3://expiry/h", 3 << 20);
    let ep = moto.endpoint();
    assert_success(&env.init(&ep, &["--object-lock-days", "3"]));
    assert_success(&env.backup(&ep, &[]));
    write(&env.src.join("big.bin"), &noise(3 << 20, 78));
    assert_success(&env.backup(&ep, &[]));
    let run = |args: &[&str]| env.as_owner(&ep, args[0], &args[1..]);
    let s3 = S3Storage::open("s3://expiry/h", &moto.options()).unwrap();
    // The old snapshot and the packs come out of retention (as after
    // `days`); the index files stay locked.
    let mut expiring: Vec<String> = s3
        .list("snapshots/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    expiring.sort();
    expiring.extend(s3.list("data/").unwrap().into_iter().map(|o| o.key));
    expiring.extend(s3.list("tree/").unwrap().into_iter().map(|o| o.key));
    for key in &expiring {
        shorten_retention(
            &moto,
            "expiry",
            &format!("h/{key}"),
            chrono::Duration::seconds(2),
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while expiring
        .iter()
        .any(|k| s3.locked_until(k).unwrap().is_some())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_success(&run(&["forget", "--keep-last", "1"]));
    let first = run(&["prune", "--grace", "0s", "--json"]);
    assert_code(&first, 1); // the replaced index files are retained
    let second = run(&["prune", "--grace", "0s", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(r["plan"]["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    assert_contains(
        &r["not_deleted"].to_string(),
        "retained by Object Lock until",
    );
    // The index files that still list the deleted packs do not make the
    // repository look damaged, and the kept snapshot restores.
    let check = run(&["check", "--read-data", "--json"]);
    assert_success(&check);
    assert_contains(&stdout(&check), "deleted by prune are still listed");
    assert_success(&env.restore_and_compare(&ep, &[]));
}
