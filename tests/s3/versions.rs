//! What a compromised backup host can destroy on S3, tried with only its
//! capabilities: write credentials to the bucket (moto checks no policy,
//! so the attacker's boto3 client holds the same access key as vault's
//! writer) and a plain PUT that leaves out `If-None-Match`. vault says at
//! `init` and `check --storage` what the bucket protects; on a bucket that
//! keeps versions it reads each object's first version, so the overwrite
//! is reported and harmless.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::faults::{Fault, Proxy};
use super::{Moto, S3Env, vault_at};
use crate::util::*;
use vault::storage::{PutOutcome, S3Options, S3Storage, Storage};

/// Runs a boto3 script as the attacker: `s3` is a client for `moto`
/// holding the writer's credentials. Returns its standard output.
fn attacker(moto: &Moto, script: &str) -> String {
    let preamble = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='testsecret')\n",
        moto.endpoint()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(preamble + script)
        .output()
        .expect("python3 with boto3 (moto[server] installs it)");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn enable_versioning(moto: &Moto, bucket: &str) {
    attacker(
        moto,
        &format!(
            "s3.put_bucket_versioning(Bucket='{bucket}', \
             VersioningConfiguration={{'Status': 'Enabled'}})"
        ),
    );
}

/// Overwrites `key` in `bucket` with `body` (a Python bytes literal),
/// without If-None-Match, as a compromised host can.
fn overwrite(moto: &Moto, bucket: &str, key: &str, body: &str) {
    attacker(
        moto,
        &format!("s3.put_object(Bucket='{bucket}', Key='{key}', Body={body})"),
    );
}

/// The current (newest) content of `key`, as a plain reader sees it.
fn current(moto: &Moto, bucket: &str, key: &str) -> String {
    attacker(
        moto,
        &format!(
            "import sys\nsys.stdout.write(s3.get_object(Bucket='{bucket}', Key='{key}')\
             ['Body'].read().decode('latin-1'))"
        ),
    )
}

#[test]
fn an_overwrite_on_a_versioned_bucket_is_reported_and_restore_reads_the_original() {
    let moto = Moto::start();
    moto.create_bucket("kept");
    enable_versioning(&moto, "kept");
    let endpoint = moto.endpoint();
    let env = S3Env::new("s3://kept/h", 3 << 20);
    let init = env.init(&endpoint, &[]);
    assert_success(&init);
    let said = stdout(&init);
    assert_contains(&said, "storage: bucket versioning: enabled");
    assert_contains(&said, "conditional writes (If-None-Match: *): honoured");
    assert_contains(&said, "lack s3:DeleteObjectVersion cannot destroy");
    assert!(!stderr(&init).contains("warning"), "{}", stderr(&init));
    assert_success(&env.backup(&endpoint, &[]));

    // The attack: overwrite a data pack, an index file, a snapshot header
    // and the config (to weaken the chunker), and hide the tree pack
    // behind a delete marker.
    let s3 = S3Storage::open("s3://kept/h", &moto.options()).unwrap();
    let first = |prefix: &str| s3.list(prefix).unwrap()[0].key.clone();
    let (pack, tree, index, snapshot) = (
        first("data/"),
        first("tree/"),
        first("index/"),
        first("snapshots/"),
    );
    for key in [&pack, &index, &snapshot] {
        overwrite(&moto, "kept", &format!("h/{key}"), "b'garbage'");
    }
    let config = String::from_utf8(s3.get("config").unwrap()).unwrap();
    let weakened = config.replace("\"compression_level\": 3", "\"compression_level\": 22");
    assert_ne!(weakened, config);
    overwrite(&moto, "kept", "h/config", &format!("{weakened:?}.encode()"));
    attacker(
        &moto,
        &format!("s3.delete_object(Bucket='kept', Key='h/{tree}')"),
    );
    // Control: the overwrite landed; a reader of current versions sees it.
    assert_eq!(current(&moto, "kept", &format!("h/{pack}")), "garbage");

    let check = env.as_owner(&endpoint, "check", &["--storage"]);
    assert_code(&check, 4);
    let report = stdout(&check);
    for key in [&pack, &index, &snapshot, &"config".to_owned()] {
        assert_contains(&report, &format!("error: {key}: overwritten: 2 versions"));
    }
    assert_contains(
        &report,
        &format!("error: {tree}: hidden by a delete marker"),
    );
    // Restore reads the original versions: nothing was lost.
    assert_success(&env.restore_and_compare(&endpoint, &[]));
    let verify = env.as_owner(&endpoint, "restore", &["latest", "--verify", "--json"]);
    assert_success(&verify);
    // The writer keeps backing up against the original config and index.
    assert_success(&env.backup(&endpoint, &[]));
    let fresh = S3Storage::open("s3://kept/h", &moto.options()).unwrap();
    assert_eq!(fresh.get("config").unwrap(), config.as_bytes());
}

#[test]
fn on_an_unversioned_bucket_init_warns_that_any_writer_can_destroy_and_one_does() {
    let moto = Moto::start();
    moto.create_bucket("bare");
    let endpoint = moto.endpoint();
    let env = S3Env::new("s3://bare/h", 0);
    let init = env.init(&endpoint, &[]);
    assert_success(&init);
    assert_contains(&stdout(&init), "storage: bucket versioning: off");
    assert_contains(
        &stderr(&init),
        "warning: A compromised host holding only s3:PutObject can overwrite, and so destroy",
    );
    assert_success(&env.backup(&endpoint, &[]));
    // What the warning says is true: one PUT destroys the pack.
    let s3 = S3Storage::open("s3://bare/h", &moto.options()).unwrap();
    let pack = s3.list("data/").unwrap()[0].key.clone();
    overwrite(&moto, "bare", &format!("h/{pack}"), "b'garbage'");
    let check = env.as_owner(&endpoint, "check", &["--storage"]);
    assert_code(&check, 4);
    assert_contains(
        &stdout(&check),
        &format!("error: {pack}: content does not match its name"),
    );
    assert_contains(&stdout(&check), "info: storage: bucket versioning: off");
    let restore = env.restore_and_compare(&endpoint, &[]);
    assert!(!restore.status.success(), "the pack is gone for good");
}

#[test]
fn a_store_that_ignores_if_none_match_is_found_out_and_names_stay_write_once() {
    let moto = Moto::start();
    moto.create_bucket("lax");
    // Like Garage 2.5: If-None-Match: * on an existing key is accepted.
    let proxy = Proxy::start(moto.port, |_| Fault::PassWithout("if-none-match"));
    let env = S3Env::new("s3://lax/h", 0);
    let init = env.init(&proxy.endpoint(), &[]);
    assert_success(&init);
    assert_contains(
        &stdout(&init),
        "conditional writes (If-None-Match: *): IGNORED",
    );
    assert_contains(&stderr(&init), "ignores If-None-Match");
    // Objects named by name are still written once: checked before, read back after.
    let s3 = S3Storage::open(
        "s3://lax/h",
        &S3Options {
            endpoint: Some(proxy.endpoint()),
            ..moto.options()
        },
    )
    .unwrap();
    let key = "keys/owners/mallory.age";
    assert_eq!(s3.put(key, b"first").unwrap(), PutOutcome::Created);
    assert_eq!(s3.put(key, b"second").unwrap(), PutOutcome::AlreadyExists);
    assert_eq!(s3.get(key).unwrap(), b"first");
    // A second init over the repository is refused, not merged.
    let again = env.init(&proxy.endpoint(), &[]);
    assert_code(&again, 2);
    assert_contains(&stderr(&again), "a repository already exists here");
}

/// An unsigned PUT of `body` straight to moto (the other writer).
fn raw_put(port: u16, path: &str, body: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "raw put: {reply}");
}

#[test]
fn on_a_versioned_bucket_the_first_writer_of_a_name_wins_even_when_if_none_match_is_ignored() {
    let moto = Moto::start();
    moto.create_bucket("race");
    enable_versioning(&moto, "race");
    let port = moto.port;
    let raced = Arc::new(AtomicBool::new(false));
    let flag = raced.clone();
    // Another writer's put of the same name lands between vault's check and
    // vault's put, and the store ignores If-None-Match.
    let proxy = Proxy::start(port, move |r| {
        if r.method == "PUT"
            && r.target.starts_with("/race/keys/owners/race.age")
            && !flag.swap(true, Ordering::SeqCst)
        {
            raw_put(port, "/race/keys/owners/race.age", b"the other owner");
        }
        Fault::PassWithout("if-none-match")
    });
    let s3 = S3Storage::open(
        "s3://race",
        &S3Options {
            endpoint: Some(proxy.endpoint()),
            ..moto.options()
        },
    )
    .unwrap();
    assert_eq!(
        s3.put("keys/owners/race.age", b"ours").unwrap(),
        PutOutcome::AlreadyExists,
        "the other writer was first"
    );
    assert!(raced.load(Ordering::SeqCst), "the race happened");
    assert_eq!(s3.get("keys/owners/race.age").unwrap(), b"the other owner");
    let rewritten = s3.rewritten().unwrap();
    assert_eq!(rewritten.len(), 1, "{rewritten:?}");
    assert_eq!(
        (rewritten[0].key.as_str(), rewritten[0].contents),
        ("keys/owners/race.age", 2)
    );
}

#[test]
fn a_writer_without_delete_rights_is_told_so_and_prune_cleans_its_probe() {
    let moto = Moto::start();
    moto.create_bucket("nodel");
    enable_versioning(&moto, "nodel");
    let env = S3Env::new("s3://nodel/h", 0);
    assert_success(&env.init(&moto.endpoint(), &[]));
    let proxy = Proxy::start(moto.port, |r| {
        if r.method == "DELETE" {
            Fault::Answer(403, "AccessDenied")
        } else {
            Fault::Pass
        }
    });
    let out = vault_at(
        &proxy.endpoint(),
        &["check", "-r", &env.repo, "--storage"],
        &[],
    );
    assert_success(&out);
    let said = stdout(&out);
    assert_contains(
        &said,
        "these credentials cannot delete objects (probe probes/",
    );
    assert_contains(&said, "lack s3:DeleteObjectVersion cannot destroy");
    assert!(!said.contains("These credentials can delete"), "{said}");
    // The probe stays until an owner's prune; none of it is reported as an
    // overwrite, though it was written twice.
    let s3 = S3Storage::open("s3://nodel/h", &moto.options()).unwrap();
    assert_eq!(s3.list("probes/").unwrap().len(), 1);
    assert!(s3.rewritten().unwrap().is_empty());
    assert_eq!(s3.clean_leftovers(Duration::ZERO).unwrap(), 1);
    assert!(s3.list("probes/").unwrap().is_empty());
    // With delete rights, the probe is gone at once, and the owner is told
    // that these credentials can destroy.
    let out = env.as_owner(&moto.endpoint(), "check", &["--storage"]);
    assert_success(&out);
    assert_contains(
        &stdout(&out),
        "These credentials can delete object versions",
    );
    assert!(s3.list("probes/").unwrap().is_empty());
}

#[test]
fn conformance_s3_versioned_bucket() {
    let moto = Moto::start();
    moto.create_bucket("conformance-v");
    enable_versioning(&moto, "conformance-v");
    let s3 = S3Storage::open("s3://conformance-v/p", &moto.options()).unwrap();
    super::conformance(&s3);
    // Deleting removed every version: nothing is left to read as "first".
    assert!(s3.rewritten().unwrap().is_empty());
    let left = attacker(
        &moto,
        "print(len(s3.list_object_versions(Bucket='conformance-v', Prefix='p/data/ab/small')\
         .get('Versions', [])))",
    );
    assert_eq!(left.trim(), "0");
}

/// Claims expire by the store's clock alone: a host whose clock runs an
/// hour ahead (so that, by its clock, every claim looks long expired)
/// neither writes past another writer's live claim nor lets prune's
/// clean-up delete it.
#[test]
fn claims_expire_by_the_stores_clock_whatever_the_hosts_clock_says() {
    let moto = Moto::start();
    moto.create_bucket("skew");
    let proxy = Proxy::start(moto.port, |_| Fault::Pass);
    let options = S3Options {
        endpoint: Some(proxy.endpoint()),
        ..moto.options()
    };
    let mut s3 = S3Storage::open("s3://skew/r", &options).unwrap();
    s3.skew_host_clock_for_tests(chrono::Duration::hours(1));
    let folder = format!("claims/{}/", blake3::hash(b"keys/k").to_hex());
    let other = format!("{folder}other");
    raw_put(moto.port, &format!("/skew/r/{other}"), b"keys/k");

    // Prune's clean-up: the claim is seconds old by the store's clock.
    s3.clean_leftovers(Duration::from_secs(3600)).unwrap();
    let left: Vec<String> = s3
        .list("claims/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        left,
        vec![other.clone()],
        "a live claim was removed, or the clock object stayed"
    );

    let writer = {
        let s3 = s3.clone();
        std::thread::spawn(move || s3.put("keys/k", b"mine"))
    };
    // The writer claims, sees the live claim and backs off; it claims
    // again only after that (a host trusting its own clock would have
    // written at once).
    let claim_puts = |p: &Proxy| {
        p.count(|s| s.method == "PUT" && s.target.contains(&format!("/skew/r/{folder}")))
    };
    let key_puts =
        |p: &Proxy| p.count(|s| s.method == "PUT" && s.target.contains("/skew/r/keys/k"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while claim_puts(&proxy) < 2 && key_puts(&proxy) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never tried again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(key_puts(&proxy), 0, "written past a live claim");
    // The other writer finishes without writing: the name is free.
    S3Storage::open("s3://skew/r", &moto.options())
        .unwrap()
        .delete(&other)
        .unwrap();
    assert_eq!(writer.join().unwrap().unwrap(), PutOutcome::Created);
    assert_eq!(s3.get("keys/k").unwrap(), b"mine");
    assert!(s3.list("claims/").unwrap().is_empty());
}
