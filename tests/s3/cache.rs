//! The metadata cache on S3 (moto behind the counting proxy): a second
//! `vault snapshots` fetches no header, a damaged entry costs one GET, and
//! writer and owner runs on one cache directory fetch for themselves.

use super::faults::{Fault, Proxy};
use super::{Moto, S3Env, vault_at};
use crate::util::*;

/// GETs of single objects under `snapshots/` (not listings).
fn header_gets(proxy: &Proxy) -> usize {
    proxy
        .count(|s| s.method == "GET" && s.target.split('?').next().unwrap().contains("/snapshots/"))
}

#[test]
fn a_warm_cache_fetches_no_snapshot_header() {
    let moto = Moto::start();
    moto.create_bucket("fleet");
    let env = S3Env::new("s3://fleet/h", 0);
    assert_success(&env.init(&moto.endpoint(), &[]));
    for _ in 0..3 {
        write(&env.src.join("changing"), &noise(1000, rand_seed()));
        assert_success(&env.backup(&moto.endpoint(), &[]));
    }
    let proxy = Proxy::start(moto.port, |_| Fault::Pass);
    let cache = env.dir.path().join("meta");
    let run = |key: &std::path::Path| {
        let out = vault_at(
            &proxy.endpoint(),
            &[
                "snapshots",
                "-r",
                &env.repo,
                "-i",
                key.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
                "--json",
            ],
            &[],
        );
        assert_success(&out);
        stdout(&out)
    };
    let cold = run(&env.writer);
    assert_eq!(header_gets(&proxy), 3, "a cold cache fetches every header");
    let warm = run(&env.writer);
    assert_eq!(warm, cold);
    assert_eq!(header_gets(&proxy), 3, "a warm cache fetches none");
    // The owner's view is its own: it fetches the headers itself.
    run(&env.owner);
    assert_eq!(header_gets(&proxy), 6);
    run(&env.owner);
    assert_eq!(header_gets(&proxy), 6);
    // A damaged entry: refetched (one GET), same output.
    let repo_dir = cache
        .read_dir()
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let views = std::fs::read_dir(repo_dir.join("v1")).unwrap();
    let writer_view = views
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("writer-"))
        .unwrap()
        .path();
    let entry = std::fs::read_dir(writer_view.join("snapshots"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    // (With the digest of whole headers gone too, which holds them as well.)
    std::fs::remove_dir_all(writer_view.join("digests").join("snapshots-v1")).unwrap();
    assert_eq!(run(&env.writer), cold);
    assert_eq!(header_gets(&proxy), 7);
    assert_eq!(std::fs::read(&entry).unwrap(), bytes);
    // Fetches go out in parallel, within the bound: the proxy holds each
    // header GET for a moment and records how many it holds at once.
    let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (h, p) = (held.clone(), peak.clone());
    let slow = Proxy::start(moto.port, move |r| {
        if r.method == "GET" && r.target.split('?').next().unwrap().contains("/snapshots/") {
            use std::sync::atomic::Ordering::SeqCst;
            p.fetch_max(h.fetch_add(1, SeqCst) + 1, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(300));
            h.fetch_sub(1, SeqCst);
        }
        Fault::Pass
    });
    let fresh = env.dir.path().join("fresh");
    let out = vault_at(
        &slow.endpoint(),
        &[
            "snapshots",
            "-r",
            &env.repo,
            "-i",
            env.writer.to_str().unwrap(),
            "--cache-dir",
            fresh.to_str().unwrap(),
            "--fetch-jobs",
            "2",
            "--json",
        ],
        &[],
    );
    assert_success(&out);
    assert_eq!(stdout(&out), cold);
    assert_eq!(header_gets(&slow), 3);
    assert_eq!(
        peak.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "two at once, never more"
    );
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
