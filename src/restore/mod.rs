//! Restore a snapshot into a target directory, verifying every blob and every
//! whole-file hash; `--verify` drills restore into a sandbox and re-check
//! every file on disk.
//!
//! The snapshot is untrusted input (a compromised backup host writes its
//! trees and header): see `restorer.rs` for the phases, `fsops.rs` for how
//! nothing is created or changed outside the target even while a user who
//! owns part of it races the restore, `policy.rs` for what privileged
//! content is withheld, `budget.rs` for how a tiny snapshot cannot make a
//! restore write more than its header declares, `links.rs` for hard links.

mod budget;
mod dirs;
mod dump;
mod files;
mod fsops;
mod links;
mod pgdrill;
mod policy;
mod report;
mod restorer;

use std::fs;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

pub use dump::dump_tar;
pub use pgdrill::{DumpCheck, TableCheck};
pub use policy::{
    MAX_LISTED as WITHHELD_LISTED, RestorePolicy, Withheld, WithheldKind, WithheldReport,
};
pub use report::{DrillRecord, DrillSummary, Problem, ProblemKind, RestoreReport};
pub use restorer::Restorer;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{ObjectKind, Repository};
use crate::snapshot::Snapshot;

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
    /// What privileged content (devices, setuid/setgid bits, `security.*`
    /// attributes) may be created; nothing by default.
    pub policy: RestorePolicy,
}

fn include_set(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_start_matches('/').trim_end_matches('/');
        b.add(Glob::new(p).map_err(|e| Error::Usage(format!("include pattern {p:?}: {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::Usage(format!("include patterns: {e}")))
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
///
/// # Errors
///
/// A usage error when the target cannot be opened (or is a symlink) or the
/// include patterns match nothing; repository errors when the index cannot
/// be read. Everything that goes wrong with single entries is a
/// [`Problem`] in the report instead.
pub fn restore(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    Restorer::new(repo, id, snapshot, opts)?.run()
}

/// Loads every restored PostgreSQL dump into a scratch cluster and compares
/// row counts with the snapshot header; mismatches become problems.
fn check_databases(
    report: &mut RestoreReport,
    sandbox: &Path,
    snapshot: &Snapshot,
    pg_url: Option<&str>,
) {
    let mut restored = snapshot.clone();
    restored.sources.retain(|s| sandbox.join(&s.name).is_file());
    report.databases = pgdrill::check_dumps(sandbox, &restored, pg_url);
    for db in &report.databases {
        if let Some(e) = &db.error {
            report.problems.push(Problem {
                path: db.name.clone(),
                kind: ProblemKind::Mismatch,
                message: format!("database dump did not load: {e}"),
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

/// Restores into a sandbox (a temporary directory unless `target` is given),
/// re-checks every file, and stores a drill record in the repository.
pub fn verify_drill(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
    target: Option<&Path>,
    include: &[String],
    pg_url: Option<&str>,
) -> Result<(RestoreReport, Id)> {
    let sandbox;
    let dir = match target {
        Some(t) => t.to_owned(),
        None => {
            sandbox = tempfile::Builder::new()
                .prefix("vault-verify-")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            sandbox.path().to_owned()
        }
    };
    let opts = RestoreOptions {
        target: dir,
        include: include.to_vec(),
        threads: 0,
        verify: true,
        // A drill never creates privileged files, whatever was asked.
        policy: RestorePolicy::default(),
    };
    let mut result = restore(repo, id, snapshot, &opts);
    if let Ok(report) = &mut result {
        check_databases(report, &opts.target, snapshot, pg_url);
    }
    if target.is_none() {
        // Restored directory modes (e.g. 0555) must not stop the sandbox
        // from being removed: give the owner full access first.
        make_removable(&opts.target);
    }
    let report = result?;
    let record = DrillRecord {
        time: chrono::Utc::now(),
        host: crate::backup::hostname(),
        snapshot: *id,
        passed: !report.failed(),
        summary: DrillSummary::of(&report),
    };
    let drill_id = repo.put_shared_json(ObjectKind::Drill, &record)?;
    Ok((report, drill_id))
}
