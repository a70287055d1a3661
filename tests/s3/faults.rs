//! Faults between vault and S3, injected by a loopback proxy in front of
//! moto: throttling, refusals, connections dropped mid-upload and
//! mid-download, and a server slower than vault's timeout. Every run must
//! either complete or fail with a clear error, and leave a clean repository.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Moto, S3Env, vault_at};
use crate::util::*;
use vault::storage::{S3Options, S3Storage, Storage};

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass it to moto.
    Pass,
    /// Answer with this HTTP status and S3 error code, without asking moto.
    Answer(u16, &'static str),
    /// Read half of the request body, then drop the connection.
    CutRequest,
    /// Pass it on, but send only half of moto's response body, then drop.
    CutResponse,
    /// Wait this long, then pass it on.
    Delay(Duration),
    /// Pass a listing on with `max-keys` set to this (forcing truncated
    /// pages and continuation tokens; moto does not check signatures).
    SmallPages(usize),
    /// Pass it on without this header (a store that ignores it).
    PassWithout(&'static str),
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub fault: Fault,
}

/// The parts of a request head the rules look at.
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
    pub body_len: usize,
}

type Rule = dyn Fn(&Request<'_>) -> Fault + Send + Sync;

/// A loopback HTTP proxy in front of moto that applies `rule` to every
/// request. It serves one request per connection (answering with
/// `Connection: close`), which the SDK handles like any server that closes
/// idle connections.
pub struct Proxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    packs: Arc<InFlight>,
}

/// GETs of pack objects being answered now, and the most seen at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// One pack GET counted in [`InFlight`] until dropped.
struct Counted<'a>(&'a InFlight);

impl<'a> Counted<'a> {
    fn new(f: &'a InFlight) -> Self {
        let n = f.now.fetch_add(1, Ordering::SeqCst) + 1;
        f.peak.fetch_max(n, Ordering::SeqCst);
        Counted(f)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Proxy {
    pub fn start(
        upstream: u16,
        rule: impl Fn(&Request<'_>) -> Fault + Send + Sync + 'static,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let packs = Arc::new(InFlight::default());
        let rule: Arc<Rule> = Arc::new(rule);
        let (log, counter) = (seen.clone(), packs.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let (rule, log, counter) = (rule.clone(), log.clone(), counter.clone());
                std::thread::spawn(move || serve(client, upstream, &*rule, &log, &counter));
            }
        });
        Proxy { port, seen, packs }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The most GETs of pack objects (`data/`, `tree/`) answered at once so
    /// far; resets the count.
    pub fn take_peak_pack_gets(&self) -> usize {
        self.packs.peak.swap(0, Ordering::SeqCst)
    }

    /// Requests seen so far for which `pred` holds.
    pub fn count(&self, pred: impl Fn(&Seen) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| pred(s)).count()
    }
}

/// Reads a request or response head; None at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn serve(client: TcpStream, upstream: u16, rule: &Rule, seen: &Mutex<Vec<Seen>>, packs: &InFlight) {
    let mut out = client.try_clone().unwrap();
    let mut input = BufReader::new(client);
    let Some(head) = read_head(&mut input) else {
        return;
    };
    assert!(
        header(&head, "transfer-encoding").is_none(),
        "the proxy only relays bodies with a Content-Length: {head:?}"
    );
    let body_len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut parts = head[0].split(' ');
    let (method, target) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let fault = rule(&Request {
        method: &method,
        target: &target,
        body_len,
    });
    let is_pack = method == "GET" && (target.contains("/data/") || target.contains("/tree/"));
    let _counted = is_pack.then(|| Counted::new(packs));
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target,
        fault,
    });
    if header(&head, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        let _ = out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    if fault == Fault::CutRequest {
        let mut half = vec![0u8; body_len / 2];
        let _ = input.read_exact(&mut half);
        let _ = out.shutdown(Shutdown::Both);
        return;
    }
    let mut body = vec![0u8; body_len];
    if input.read_exact(&mut body).is_err() {
        return;
    }
    if let Fault::Answer(status, code) = fault {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>injected by the test proxy</Message></Error>"
        );
        let _ = write!(
            out,
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{xml}",
            xml.len()
        );
        return;
    }
    if let Fault::Delay(d) = fault {
        std::thread::sleep(d);
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let first = match fault {
        Fault::SmallPages(n) => with_max_keys(&head[0], n),
        _ => head[0].clone(),
    };
    let mut request = format!("{first}\r\n");
    for l in &head[1..] {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let dropped = matches!(fault, Fault::PassWithout(h) if h.eq_ignore_ascii_case(&name));
        if name != "connection" && name != "expect" && !dropped {
            request.push_str(l);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    if server.write_all(request.as_bytes()).is_err() || server.write_all(&body).is_err() {
        return;
    }
    // moto closes the connection after its response (Connection: close).
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    if fault == Fault::CutResponse {
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |i| i + 4);
        let cut = split + (response.len() - split) / 2;
        let _ = out.write_all(&response[..cut]);
        let _ = out.shutdown(Shutdown::Both);
        return;
    }
    let _ = out.write_all(&response);
    let _ = out.shutdown(Shutdown::Write);
}

/// The request line `GET /bucket?list-type=2&… HTTP/1.1` with `max-keys=n`.
fn with_max_keys(line: &str, n: usize) -> String {
    let mut parts = line.splitn(3, ' ');
    let (method, target, version) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("max-keys="))
        .map(str::to_owned)
        .collect();
    params.push(format!("max-keys={n}"));
    format!("{method} {path}?{} {version}", params.join("&"))
}

/// Applies `fault` to every other request for which `pick` holds.
fn every_other(
    fault: Fault,
    pick: impl Fn(&Request<'_>) -> bool + Send + Sync + 'static,
) -> impl Fn(&Request<'_>) -> Fault + Send + Sync + 'static {
    let n = AtomicUsize::new(0);
    move |r| {
        if pick(r) && n.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            fault
        } else {
            Fault::Pass
        }
    }
}

/// Quick retries so that the fault tests stay fast.
const FAST_RETRY: (&str, &str) = ("VAULT_S3_RETRY_BASE_MS", "20");

#[test]
fn backup_and_restore_ride_out_503_slowdown() {
    let moto = Moto::start();
    moto.create_bucket("flaky");
    let proxy = Proxy::start(
        moto.port,
        every_other(Fault::Answer(503, "SlowDown"), |_| true),
    );
    let env = S3Env::new("s3://flaky/r", 6 << 20);
    let p = proxy.endpoint();
    assert_success(&env.init(&p, &[]));
    assert_success(&env.backup(&p, &[FAST_RETRY]));
    assert_success(&env.restore_and_compare(&p, &[FAST_RETRY]));
    assert!(
        proxy.count(|s| s.fault != Fault::Pass) >= 10,
        "faults were injected"
    );
    env.assert_clean(&moto.endpoint());
}

#[test]
fn uploads_dropped_mid_body_are_retried() {
    let moto = Moto::start();
    moto.create_bucket("cutput");
    // Half of the sizeable PUTs (packs, index files) lose their connection
    // half-way through the body.
    let proxy = Proxy::start(
        moto.port,
        every_other(Fault::CutRequest, |r| {
            r.method == "PUT" && r.body_len > 2000
        }),
    );
    let env = S3Env::new("s3://cutput/r", 6 << 20);
    let p = proxy.endpoint();
    assert_success(&env.init(&moto.endpoint(), &[]));
    assert_success(&env.backup(&p, &[FAST_RETRY]));
    assert!(
        proxy.count(|s| s.fault == Fault::CutRequest) >= 2,
        "uploads were cut"
    );
    env.assert_clean(&moto.endpoint());
    assert_success(&env.restore_and_compare(&moto.endpoint(), &[]));
}

#[test]
fn downloads_dropped_mid_body_are_retried() {
    let moto = Moto::start();
    moto.create_bucket("cutget");
    let env = S3Env::new("s3://cutget/r", 6 << 20);
    assert_success(&env.init(&moto.endpoint(), &[]));
    assert_success(&env.backup(&moto.endpoint(), &[]));
    let proxy = Proxy::start(
        moto.port,
        every_other(Fault::CutResponse, |r| {
            r.method == "GET" && r.target.contains("/r/")
        }),
    );
    let p = proxy.endpoint();
    let out = env.restore_and_compare(&p, &[FAST_RETRY, ("VAULT_LOG", "info")]);
    assert_success(&out);
    assert_contains(&stderr(&out), "connection lost while reading the body");
    let check = vault_at(
        &p,
        &[
            "check",
            "-r",
            &env.repo,
            "-i",
            env.owner.to_str().unwrap(),
            "--read-data",
            "--storage",
        ],
        &[FAST_RETRY],
    );
    assert_success(&check);
    assert_contains(&stdout(&check), "no errors");
    assert!(
        proxy.count(|s| s.fault == Fault::CutResponse) >= 4,
        "downloads were cut"
    );
}

#[test]
fn a_server_slower_than_the_timeout_is_retried() {
    let moto = Moto::start();
    moto.create_bucket("slow");
    let env = S3Env::new("s3://slow/r", 0);
    assert_success(&env.init(&moto.endpoint(), &[]));
    // Every fourth request answers after 3 s; vault gives up on it after 1 s.
    let n = AtomicUsize::new(0);
    let proxy = Proxy::start(moto.port, move |_| {
        if n.fetch_add(1, Ordering::SeqCst) % 4 == 1 {
            Fault::Delay(Duration::from_secs(3))
        } else {
            Fault::Pass
        }
    });
    let p = proxy.endpoint();
    let envs = [
        FAST_RETRY,
        ("VAULT_S3_TIMEOUT_SECS", "1"),
        ("VAULT_LOG", "info"),
    ];
    let started = Instant::now();
    let out = env.backup(&p, &envs);
    assert_success(&out);
    assert_contains(
        &stderr(&out),
        "attempt 1 failed (timed out waiting for the server); retrying",
    );
    assert_success(&env.restore_and_compare(&p, &envs));
    assert!(proxy.count(|s| matches!(s.fault, Fault::Delay(_))) >= 3);
    eprintln!(
        "slow server: backup and restore took {:?}",
        started.elapsed()
    );
    env.assert_clean(&moto.endpoint());
}

#[test]
fn spent_retries_name_the_key_the_attempts_and_the_last_status() {
    let moto = Moto::start();
    moto.create_bucket("down");
    let env = S3Env::new("s3://down/r", 0);
    assert_success(&env.init(&moto.endpoint(), &[]));
    let proxy = Proxy::start(moto.port, |_| Fault::Answer(503, "SlowDown"));
    let out = env.snapshots(
        &proxy.endpoint(),
        &[FAST_RETRY, ("VAULT_S3_MAX_ATTEMPTS", "3")],
    );
    assert_code(&out, 1);
    let err = stderr(&out);
    assert_contains(&err, "config: gave up after 3 attempts");
    assert_contains(&err, "HTTP 503 SlowDown");
    assert!(!err.contains("testsecret"), "{err}");
    assert_eq!(proxy.count(|_| true), 3, "exactly the configured attempts");
}

#[test]
fn a_refusal_is_not_retried() {
    let moto = Moto::start();
    moto.create_bucket("denied");
    let env = S3Env::new("s3://denied/r", 0);
    assert_success(&env.init(&moto.endpoint(), &[]));
    let proxy = Proxy::start(moto.port, |_| Fault::Answer(403, "AccessDenied"));
    let started = Instant::now();
    let out = env.snapshots(&proxy.endpoint(), &[]);
    assert_code(&out, 1);
    assert_contains(
        &stderr(&out),
        "config: the storage refused the request (HTTP 403)",
    );
    assert_eq!(proxy.count(|_| true), 1, "a 403 is final: one request");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_backup_host_without_delete_permission_backs_up_and_lists() {
    let moto = Moto::start();
    moto.create_bucket("nodelete");
    let env = S3Env::new("s3://nodelete/host1", 9 << 20);
    assert_success(&env.init(&moto.endpoint(), &[]));
    // The server refuses every DELETE, as a bucket policy without
    // s3:DeleteObject / s3:AbortMultipartUpload would.
    let proxy = Proxy::start(moto.port, |r| {
        if r.method == "DELETE" {
            Fault::Answer(403, "AccessDenied")
        } else {
            Fault::Pass
        }
    });
    let p = proxy.endpoint();
    // Multipart too (a small threshold), since aborting an upload is a DELETE.
    let envs = [
        ("VAULT_S3_MULTIPART_THRESHOLD_MIB", "6"),
        ("VAULT_S3_PART_SIZE_MIB", "5"),
    ];
    assert_success(&env.backup(&p, &envs));
    assert_success(&env.backup(&p, &envs));
    let list = env.snapshots(&p, &[]);
    assert_success(&list);
    assert_eq!(
        stdout(&list).lines().count(),
        3,
        "a header and two snapshots"
    );
    assert_eq!(
        proxy.count(|s| s.method == "DELETE"),
        0,
        "vault never deletes in a backup"
    );
    assert!(
        proxy.count(|s| s.target.contains("uploadId=")) >= 2,
        "went multipart"
    );
    env.assert_clean(&moto.endpoint());
}

#[test]
fn a_restore_fetches_each_pack_window_about_once() {
    let moto = Moto::start();
    moto.create_bucket("reads");
    // ~40 MiB of incompressible data: three 16 MiB packs, read by two
    // restore workers in parallel and partly out of order.
    let env = S3Env::new("s3://reads/r", 40 << 20);
    assert_success(&env.init(&moto.endpoint(), &[]));
    assert_success(&env.backup(&moto.endpoint(), &[]));
    let s3 = S3Storage::open("s3://reads/r", &moto.options()).unwrap();
    let packs = s3.list("data/").unwrap();
    let windows: u64 = packs.iter().map(|p| p.size.div_ceil(4 << 20)).sum();
    let proxy = Proxy::start(moto.port, |_| Fault::Pass);
    assert_success(&env.restore_and_compare(&proxy.endpoint(), &[]));
    let gets = proxy.count(|s| s.method == "GET" && s.target.contains("/r/data/")) as u64;
    eprintln!(
        "{} packs, {windows} windows of 4 MiB, {gets} ranged GETs",
        packs.len()
    );
    assert!(
        gets <= windows + packs.len() as u64,
        "{gets} GETs for {windows} windows in {} packs",
        packs.len()
    );
}

#[test]
fn restore_reads_ahead_a_bounded_number_of_pack_windows() {
    use vault::storage::s3::{MAX_READ_AHEAD, READ_AHEAD};
    let moto = Moto::start();
    moto.create_bucket("ahead");
    // ~40 MiB of incompressible data: three 16 MiB packs of four windows.
    let env = S3Env::new("s3://ahead/r", 40 << 20);
    assert_success(&env.init(&moto.endpoint(), &[]));
    assert_success(&env.backup(&moto.endpoint(), &[]));
    // Slow answers, so that requests made one after another never overlap
    // and those in flight together are seen together.
    let proxy = Proxy::start(moto.port, |r| {
        if r.method == "GET" && r.target.contains("/r/data/") {
            Fault::Delay(Duration::from_millis(100))
        } else {
            Fault::Pass
        }
    });
    let options = S3Options {
        endpoint: Some(proxy.endpoint()),
        ..moto.options()
    };
    let s3 = S3Storage::open("s3://ahead/r", &options).unwrap();
    let pack = s3
        .list("data/")
        .unwrap()
        .into_iter()
        .max_by_key(|p| p.size)
        .unwrap();
    assert!(pack.size > 3 * (4 << 20), "a pack of four windows");
    // One stream read front to back: a single reader, so every GET beyond
    // one in flight is read-ahead.
    let mut bytes = Vec::new();
    s3.open(&pack.key).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, s3.get(&pack.key).unwrap());
    let one = proxy.take_peak_pack_gets();
    assert!(
        one > 1 && one <= 1 + READ_AHEAD,
        "{one} GETs at once for one stream"
    );
    // A whole restore: each worker and the tree walk read one window at a
    // time themselves, plus at most MAX_READ_AHEAD ahead for the storage.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_success(&env.restore_and_compare(&proxy.endpoint(), &[]));
    let all = proxy.take_peak_pack_gets();
    eprintln!("pack GETs at once: {one} for one stream, {all} in a restore");
    assert!(
        all > 1 && all <= workers + 1 + MAX_READ_AHEAD,
        "{all} GETs at once in a restore with {workers} workers"
    );
}

fn is_listing(r: &Request<'_>) -> bool {
    r.method == "GET" && r.target.contains("list-type=2")
}

#[test]
fn listings_answered_500_are_retried() {
    let moto = Moto::start();
    moto.create_bucket("list500");
    let proxy = Proxy::start(
        moto.port,
        every_other(Fault::Answer(500, "InternalError"), is_listing),
    );
    let env = S3Env::new("s3://list500/r", 1 << 20);
    let p = proxy.endpoint();
    assert_success(&env.init(&p, &[]));
    assert_success(&env.backup(&p, &[FAST_RETRY]));
    assert_success(&env.restore_and_compare(&p, &[FAST_RETRY]));
    assert!(
        proxy.count(|s| s.fault != Fault::Pass) >= 4,
        "listings were refused"
    );
    env.assert_clean(&moto.endpoint());
}

#[test]
fn a_connection_reset_in_the_middle_of_a_multipart_part_is_retried() {
    let moto = Moto::start();
    moto.create_bucket("cutpart");
    let proxy = Proxy::start(
        moto.port,
        every_other(Fault::CutRequest, |r| {
            r.method == "PUT" && r.target.contains("partNumber=")
        }),
    );
    // A 12 MiB pack goes up in three 5 MiB parts.
    let env = S3Env::new("s3://cutpart/r", 12 << 20);
    let p = proxy.endpoint();
    assert_success(&env.init(&moto.endpoint(), &[]));
    let multipart = [
        FAST_RETRY,
        ("VAULT_S3_MULTIPART_THRESHOLD_MIB", "5"),
        ("VAULT_S3_PART_SIZE_MIB", "5"),
    ];
    assert_success(&env.backup(&p, &multipart));
    assert!(
        proxy.count(|s| s.fault == Fault::CutRequest) >= 2,
        "parts were cut"
    );
    assert!(
        proxy.count(|s| s.method == "POST" && s.target.contains("uploadId=")) >= 1,
        "a multipart upload was completed"
    );
    env.assert_clean(&moto.endpoint());
    assert_success(&env.restore_and_compare(&moto.endpoint(), &[]));
}

#[test]
fn an_object_missing_on_its_first_read_is_asked_for_again() {
    // An eventually consistent store: a PUT answered 200, then a 404 on
    // the first GET of that object.
    let moto = Moto::start();
    moto.create_bucket("eventual");
    let env = S3Env::new("s3://eventual/r", 1 << 20);
    assert_success(&env.init(&moto.endpoint(), &[]));
    let seen = Mutex::new(std::collections::HashSet::new());
    let proxy = Proxy::start(moto.port, move |r| {
        let object = r.method == "GET" && !is_listing(r) && r.target.contains("/r/");
        if object && seen.lock().unwrap().insert(r.target.to_owned()) {
            Fault::Answer(404, "NoSuchKey")
        } else {
            Fault::Pass
        }
    });
    let p = proxy.endpoint();
    let backup = env.backup(&p, &[FAST_RETRY]);
    let restore = env.restore_and_compare(&p, &[FAST_RETRY]);
    assert!(
        proxy.count(|s| s.fault != Fault::Pass) >= 1,
        "reads were refused"
    );
    // Every GET answered "not found" is asked again after a backoff, so
    // both commands ride out the lag: the backup stored everything and the
    // restore compared the whole tree.
    assert_success(&backup);
    assert_success(&restore);
    // Each object was refused once and read on the second try: a fault
    // for every object restore read (config, keys, header, tree, packs).
    let refused = proxy.count(|s| s.fault != Fault::Pass);
    let passed_reads = proxy
        .count(|s| s.fault == Fault::Pass && s.method == "GET" && !s.target.contains("list-type"));
    assert!(refused >= 4, "only {refused} reads were refused");
    assert!(
        passed_reads >= refused,
        "{passed_reads} reads for {refused} refusals"
    );
    env.assert_clean(&moto.endpoint());
    assert_success(&env.restore_and_compare(&moto.endpoint(), &[]));
}

/// Puts a one-byte object under `bucket_prefix/KEY` for every key,
/// straight into moto (8 connections at once, no SDK).
fn put_straight_into_moto(port: u16, bucket_prefix: &str, keys: &[String]) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                while let Some(key) = keys.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let path: String = key
                        .bytes()
                        .map(|b| match b {
                            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' => {
                                (b as char).to_string()
                            }
                            _ => format!("%{b:02X}"),
                        })
                        .collect();
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    write!(
                        s,
                        "PUT /{bucket_prefix}/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                         Content-Length: 1\r\nConnection: close\r\n\r\nx"
                    )
                    .unwrap();
                    let mut reply = String::new();
                    s.read_to_string(&mut reply).unwrap();
                    assert!(reply.starts_with("HTTP/1.1 200"), "{key}: {reply}");
                }
            });
        }
    });
}

#[test]
fn a_long_listing_split_into_parallel_ranges_returns_every_key_once() {
    let moto = Moto::start();
    moto.create_bucket("ranges");
    // Hex names spread over every first digit, and names that are not hex
    // at all, around and between the ranges' bounds.
    let mut keys: Vec<String> = (0..1_500u32)
        .map(|i| {
            format!(
                "index/{}",
                vault::format::id::Id::of_bytes(&i.to_le_bytes())
            )
        })
        .collect();
    for odd in [
        "0",
        "1",
        "f",
        "ff",
        "g-not-hex",
        "A",
        "Z",
        "~",
        "9~",
        "a",
        "e\u{e9}",
    ] {
        keys.push(format!("index/{odd}"));
    }
    put_straight_into_moto(moto.port, "ranges/p", &keys);
    let mut expected = keys;
    expected.sort();
    // Pages of 97 keys: the first page, then 16 ranges of several pages.
    let proxy = Proxy::start(moto.port, |r| {
        if is_listing(r) {
            Fault::SmallPages(97)
        } else {
            Fault::Pass
        }
    });
    let mut options = moto.options();
    options.endpoint = Some(proxy.endpoint());
    let s3 = S3Storage::open("s3://ranges/p", &options).unwrap();
    let listed: Vec<String> = s3
        .list("index/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, expected, "every key once, in order");
    let pages = proxy.count(|s| s.method == "GET" && s.target.contains("list-type=2"));
    assert!(pages >= 16, "the rest was listed as ranges ({pages} pages)");
    assert!(
        proxy.count(|s| s.target.contains("start-after=")) >= 15,
        "ranges start after their bounds"
    );
}

#[test]
fn listings_over_ten_thousand_keys_follow_every_continuation_token() {
    let moto = Moto::start();
    moto.create_bucket("many");
    // 10,001 objects under one prefix, put straight into moto in parallel.
    let keys: Vec<String> = (0..=10_000).map(|i| format!("index/{i:064x}")).collect();
    put_straight_into_moto(moto.port, "many/p", &keys);
    // Pages of 1,000 keys as moto serves them, and pages of 997 forced by
    // the proxy: every key comes back once, in order.
    for page in [None, Some(997)] {
        let proxy = Proxy::start(moto.port, move |r| match page {
            Some(n) if is_listing(r) => Fault::SmallPages(n),
            _ => Fault::Pass,
        });
        let mut options = moto.options();
        options.endpoint = Some(proxy.endpoint());
        let s3 = S3Storage::open("s3://many/p", &options).unwrap();
        let listed = s3.list("index/").unwrap();
        assert_eq!(listed.len(), 10_001);
        assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
        assert_eq!(listed[0].key, format!("index/{:064x}", 0));
        assert_eq!(listed[10_000].key, format!("index/{:064x}", 10_000));
        assert!(
            proxy.count(|s| s.method == "GET" && s.target.contains("list-type=2")) >= 11,
            "the listing came in pages"
        );
    }
}
