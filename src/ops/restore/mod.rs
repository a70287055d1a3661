//! Restore a snapshot into a target directory, verifying every blob and every
//! whole-file hash; `--verify` drills restore into a sandbox and re-check
//! every file on disk.
//!
//! Plan and execute run together, streaming: the main thread walks the trees
//! and hands files to worker threads through a bounded channel, so memory
//! does not grow with the number or size of files. Directories, symlinks and
//! hard links are finished last, so nothing is ever written through a link.

mod dump;
mod files;
mod fsops;
mod leftovers;
mod pgdrill;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::bounded;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

pub use crate::format::drill::{DrillRecord, DrillSummary};
pub use dump::dump_tar;
pub use pgdrill::{
    DEFAULT_DRILL_USER, DatabaseDrill, DumpCheck, DumpFailure, TableCheck, check_source_name,
    useradd_line,
};

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::treewalk::{self, Next, Visit};
use crate::repo::{BlobReader, ObjectKind, Repository};

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Where to restore (created if missing).
    pub target: PathBuf,
    /// Only restore paths matching these globs (relative to the snapshot
    /// root; a matching directory brings its whole subtree).
    pub include: Vec<String>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Re-read every restored file from disk and check it against its hash.
    pub verify: bool,
    /// Stops the restore between entries when cancelled.
    pub cancel: Cancel,
}

/// Whether `snapshot` has a PostgreSQL dump that a drill would load.
pub fn has_dumps(snapshot: &Snapshot) -> bool {
    pgdrill::has_dumps(snapshot, &|_| true)
}

/// What kind of problem a restore met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// Repository data is missing or damaged.
    Damaged,
    /// A restored file does not match its recorded hash or size.
    Mismatch,
    /// Writing into the target failed (full disk, permissions, something in the way).
    Write,
    /// Metadata (owner, mode, xattrs, times) could not be applied.
    Metadata,
}

/// One problem, naming the path it concerns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    /// Path relative to the snapshot root.
    pub path: String,
    /// Its kind.
    pub kind: ProblemKind,
    /// What went wrong.
    pub message: String,
}

/// The outcome of a restore or a verify drill.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: String,
    /// Where it was restored.
    pub target: String,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks, fifos, devices and hard links restored.
    pub other: u64,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Files re-read from disk and found identical to their recorded hash.
    pub verified: u64,
    /// Everything that went wrong.
    pub problems: Vec<Problem>,
    /// Database drills (`--verify` of snapshots with PostgreSQL sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DumpCheck>,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

impl RestoreReport {
    /// Whether repository damage or a content mismatch was found.
    pub fn found_damage(&self) -> bool {
        self.problems
            .iter()
            .any(|p| matches!(p.kind, ProblemKind::Damaged | ProblemKind::Mismatch))
    }

    /// Whether anything other than metadata went wrong.
    pub fn failed(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.kind != ProblemKind::Metadata)
    }
}

impl DrillSummary {
    fn of(r: &RestoreReport) -> Self {
        let count = |k| r.problems.iter().filter(|p| p.kind == k).count() as u64;
        DrillSummary {
            files: r.files,
            dirs: r.dirs,
            other: r.other,
            bytes: r.bytes,
            verified: r.verified,
            damaged: count(ProblemKind::Damaged),
            mismatched: count(ProblemKind::Mismatch),
            write_errors: count(ProblemKind::Write),
            metadata_problems: count(ProblemKind::Metadata),
            duration_ms: r.duration_ms,
            databases_checked: r.databases.len() as u64,
            databases_failed: r.databases.iter().filter(|d| !d.passed).count() as u64,
            databases_needing_superuser: r
                .databases
                .iter()
                .filter(|d| d.failure == Some(DumpFailure::NeedsSuperuser))
                .count() as u64,
        }
    }
}

fn include_set(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_start_matches('/').trim_end_matches('/');
        b.add(
            Glob::new(p).map_err(|e| Error::InvalidInput(format!("include pattern {p:?}: {e}")))?,
        );
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::InvalidInput(format!("include patterns: {e}")))
}

fn included(set: &Option<GlobSet>, rel: &Path) -> bool {
    match set {
        None => true,
        Some(s) => rel
            .ancestors()
            .any(|a| !a.as_os_str().is_empty() && s.is_match(a)),
    }
}

/// Restores `snapshot` into `opts.target`.
pub fn restore(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    repo.keys().require_owner("restore")?;
    let _listening = opts.cancel.listen();
    let started = Instant::now();
    let (index, damaged_index) = repo.load_index()?;
    fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let target = fs::canonicalize(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let includes = include_set(&opts.include)?;
    let report = Mutex::new(RestoreReport {
        snapshot: id.to_hex(),
        target: target.display().to_string(),
        ..Default::default()
    });
    let problem = |path: &Path, kind, message: String| {
        report.lock().expect("report lock").problems.push(Problem {
            path: path.display().to_string(),
            kind,
            message,
        });
    };
    for e in damaged_index {
        problem(Path::new(""), ProblemKind::Damaged, e.to_string());
    }
    let as_root = nix::unistd::geteuid().is_root();
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };

    let mut dirs: Vec<(PathBuf, PathBuf, Node)> = Vec::new();
    let mut specials: Vec<(PathBuf, PathBuf, Node)> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf, String)> = Vec::new();
    let mut link_first: HashMap<String, PathBuf> = HashMap::new();
    // First members of hard-link groups that were actually committed.
    let committed: Mutex<HashSet<PathBuf>> = Mutex::new(HashSet::new());
    let mut any_included = false;

    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = bounded::<files::Segment>(64);
        for _ in 0..threads {
            let rx = rx.clone();
            let (index, report, problem, committed) = (&index, &report, &problem, &committed);
            s.spawn(move || {
                let mut reader = BlobReader::new(repo);
                for seg in rx {
                    match files::process(seg, &mut reader, index, as_root, opts.verify) {
                        None => {}
                        Some((st, files::Finished::Ok(bytes, meta_problem))) => {
                            if let Some(dest) = st.linked_dest() {
                                committed
                                    .lock()
                                    .expect("committed lock")
                                    .insert(dest.to_owned());
                            }
                            let mut r = report.lock().expect("report lock");
                            r.files += 1;
                            r.bytes += bytes;
                            r.verified += u64::from(opts.verify);
                            drop(r);
                            if let Some(m) = meta_problem {
                                problem(&st.rel, ProblemKind::Metadata, m);
                            }
                        }
                        Some((st, files::Finished::Failed((kind, message)))) => {
                            problem(&st.rel, kind, message)
                        }
                    }
                }
            });
        }
        drop(rx);
        // Directories on the current path not yet created (created lazily
        // when something inside them is included).
        let mut pending: Vec<(PathBuf, PathBuf, Node, bool)> = Vec::new();
        let mut walk_result = treewalk::walk(repo, &index, &snapshot.root, &mut |v| match v {
            Visit::Damaged { path, error } => {
                problem(
                    path,
                    ProblemKind::Damaged,
                    format!("directory not restored: {error}"),
                );
                Ok(Next::Skip)
            }
            Visit::Leave { .. } => {
                pending.pop();
                Ok(Next::Descend)
            }
            Visit::Entry { path, node } => {
                opts.cancel.check("restore")?;
                let dest = target.join(path);
                let want = included(&includes, path);
                if node.kind == NodeKind::Dir {
                    pending.push((path.to_owned(), dest, node.clone(), false));
                    if want {
                        any_included = true;
                        materialize(&mut pending, &mut dirs).map_err(|(p, e)| Error::io(p, e))?;
                    }
                    return Ok(Next::Descend);
                }
                if !want {
                    return Ok(Next::Skip);
                }
                any_included = true;
                materialize(&mut pending, &mut dirs).map_err(|(p, e)| Error::io(p, e))?;
                if let Some(link) = &node.hardlink {
                    if link_first.contains_key(link) {
                        links.push((path.to_owned(), dest, link.clone()));
                        return Ok(Next::Skip);
                    }
                    link_first.insert(link.clone(), dest.clone());
                }
                if node.kind == NodeKind::File {
                    match files::plan(path, &dest, node, &index) {
                        Ok(segments) => {
                            for seg in segments {
                                tx.send(seg).map_err(|_| Error::Cancelled {
                                    operation: "restore",
                                })?;
                            }
                        }
                        Err((kind, message)) => problem(path, kind, message),
                    }
                } else {
                    specials.push((path.to_owned(), dest, node.clone()));
                }
                Ok(Next::Skip)
            }
        });
        drop(tx);
        if let Err(Error::Io { path, error }) = &walk_result {
            // A directory could not be created: report it and stop walking.
            problem(
                path.strip_prefix(&target).unwrap_or(path.as_path()),
                ProblemKind::Write,
                error.to_string(),
            );
            walk_result = Ok(());
        }
        walk_result
    })?;

    if !any_included && !opts.include.is_empty() {
        return Err(Error::NotFound(format!(
            "--include {} matched nothing in snapshot {}",
            opts.include.join(", "),
            id.short()
        )));
    }
    for (rel, dest, node) in &specials {
        let tmp = fsops::temp_path(dest);
        match fsops::create_special(&tmp, node) {
            Ok(true) => {
                let meta = fsops::apply_metadata(&tmp, node, as_root);
                match fsops::commit(&tmp, dest) {
                    Ok(()) => {
                        report.lock().expect("report lock").other += 1;
                        if node.hardlink.is_some() {
                            committed
                                .lock()
                                .expect("committed lock")
                                .insert(dest.clone());
                        }
                    }
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        problem(rel, ProblemKind::Write, e.to_string());
                    }
                }
                if let Err(m) = meta {
                    problem(rel, ProblemKind::Metadata, m);
                }
            }
            Ok(false) => {}
            Err(e) => problem(rel, ProblemKind::Write, e.to_string()),
        }
    }
    // Hard links last: their first members (files or specials) exist now.
    let committed = committed.into_inner().expect("committed lock");
    finish_links(&links, &link_first, &committed, &report, &problem);
    for (rel, dest, node) in dirs.iter().rev() {
        if let Err(m) = fsops::apply_metadata(dest, node, as_root) {
            problem(rel, ProblemKind::Metadata, m);
        }
    }
    if !opts.verify {
        let synced = fs::File::open(&target)
            .and_then(|d| nix::unistd::syncfs(d).map_err(std::io::Error::from));
        if let Err(e) = synced {
            problem(
                Path::new(""),
                ProblemKind::Write,
                format!("flushing the restored files to disk: {e}"),
            );
        }
    }
    let mut report = report.into_inner().expect("report lock");
    report.dirs = dirs.len() as u64;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Creates every not-yet-created directory on the current path.
fn materialize(
    pending: &mut [(PathBuf, PathBuf, Node, bool)],
    dirs: &mut Vec<(PathBuf, PathBuf, Node)>,
) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    for (rel, dest, node, created) in pending.iter_mut() {
        if !*created {
            fsops::ensure_dir(dest).map_err(|e| (dest.clone(), e))?;
            *created = true;
            dirs.push((rel.clone(), dest.clone(), node.clone()));
        }
    }
    Ok(())
}

fn finish_links(
    links: &[(PathBuf, PathBuf, String)],
    first: &HashMap<String, PathBuf>,
    committed: &HashSet<PathBuf>,
    report: &Mutex<RestoreReport>,
    problem: &dyn Fn(&Path, ProblemKind, String),
) {
    for (rel, dest, link) in links {
        let src = &first[link];
        if !committed.contains(src) {
            problem(
                rel,
                ProblemKind::Write,
                "not restored: the first entry of its hard-link group failed".into(),
            );
            continue;
        }
        let tmp = fsops::temp_path(dest);
        match fs::hard_link(src, &tmp).and_then(|_| fsops::commit(&tmp, dest)) {
            Ok(()) => report.lock().expect("report lock").other += 1,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                problem(rel, ProblemKind::Write, format!("hard link: {e}"));
            }
        }
    }
}

/// Loads every restored PostgreSQL dump into a scratch cluster and compares
/// row counts with the snapshot header; failures become problems.
fn check_databases(
    report: &mut RestoreReport,
    sandbox: &Path,
    snapshot: &Snapshot,
    opts: &VerifyOptions,
) -> Result<()> {
    report.databases = pgdrill::check_dumps(sandbox, snapshot, &opts.databases, &opts.cancel)?;
    for db in &report.databases {
        if let Some(e) = &db.error {
            let what = db.failure.unwrap_or(DumpFailure::LoadFailed).describe();
            report.problems.push(Problem {
                path: db.name.clone(),
                kind: ProblemKind::Mismatch,
                message: format!("database dump {what}: {e}"),
            });
        }
        for t in db.tables.iter().filter(|t| t.expected != t.found) {
            let show = |n: Option<u64>| n.map_or("no table".to_owned(), |n| format!("{n} rows"));
            report.problems.push(Problem {
                path: db.name.clone(),
                kind: ProblemKind::Mismatch,
                message: format!(
                    "table {}: expected {}, found {}",
                    t.table,
                    show(t.expected),
                    show(t.found)
                ),
            });
        }
    }
    Ok(())
}

/// Gives the owner rwx on every directory under `root` (never following links).
fn make_removable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

/// BLAKE3 and size of a file on disk.
pub fn hash_file(path: &Path) -> std::io::Result<(Id, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().into(), n))
}

/// Sandboxes are `vault-verify-PID-START-RANDOM` in TMPDIR.
const SANDBOX_PREFIX: &str = "vault-verify";

/// Removes the sandboxes of this user's drills that were killed outright:
/// they hold restored files, which must not outlive the drill.
fn remove_stale_sandboxes() {
    let me = nix::unistd::geteuid().as_raw();
    for (dir, pid) in leftovers::stale(&std::env::temp_dir(), SANDBOX_PREFIX, me) {
        make_removable(&dir);
        match fs::remove_dir_all(&dir) {
            Ok(()) => tracing::warn!(
                "removed drill sandbox {} left behind by drill process {pid}, which is gone",
                dir.display()
            ),
            Err(e) => tracing::warn!(
                "could not remove stale drill sandbox {}: {e}",
                dir.display()
            ),
        }
    }
}

/// What a `--verify` drill restores, and how it loads databases.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Where to restore (a private temporary directory when `None`).
    pub target: Option<PathBuf>,
    /// Only restore paths matching these globs.
    pub include: Vec<String>,
    /// How database dumps are loaded.
    pub databases: DatabaseDrill,
    /// Stops the drill, cleaning up, when cancelled.
    pub cancel: Cancel,
}

/// Restores into a sandbox (a temporary directory unless `opts.target` is
/// given), re-checks every file and database dump, and stores a drill
/// record in the repository. Refuses, before restoring anything, a
/// snapshot with database dumps when they cannot be loaded safely here
/// (see [`DatabaseDrill::preflight`]). A cancelled drill removes its
/// sandbox and scratch cluster, writes no record and returns
/// [`Error::Cancelled`].
pub fn verify_drill(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
    opts: &VerifyOptions,
) -> Result<(RestoreReport, Id)> {
    let _listening = opts.cancel.listen();
    let includes = include_set(&opts.include)?;
    if pgdrill::has_dumps(snapshot, &|name| included(&includes, Path::new(name))) {
        opts.databases.preflight()?;
    }
    let sandbox;
    let dir = match &opts.target {
        Some(t) => t.clone(),
        None => {
            remove_stale_sandboxes();
            let prefix = leftovers::name_prefix(SANDBOX_PREFIX)
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            sandbox = tempfile::Builder::new()
                .prefix(&prefix)
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            sandbox.path().to_owned()
        }
    };
    let restore_opts = RestoreOptions {
        target: dir,
        include: opts.include.clone(),
        threads: 0,
        verify: true,
        cancel: opts.cancel.clone(),
    };
    let mut result = restore(repo, id, snapshot, &restore_opts);
    if let Ok(report) = &mut result
        && let Err(e) = check_databases(report, &restore_opts.target, snapshot, opts)
    {
        result = Err(e);
    }
    if opts.target.is_none() {
        // Restored directory modes (e.g. 0555) must not stop the sandbox
        // from being removed: give the owner full access first.
        make_removable(&restore_opts.target);
    }
    let report = result?;
    opts.cancel.check("drill")?;
    let record = DrillRecord {
        time: chrono::Utc::now(),
        host: crate::source::host::hostname(),
        snapshot: *id,
        passed: !report.failed(),
        summary: DrillSummary::of(&report),
    };
    let drill_id = repo.put_signed_json(ObjectKind::Drill, &record)?;
    Ok((report, drill_id))
}
