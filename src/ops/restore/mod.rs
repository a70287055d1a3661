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

mod batch;
mod budget;
pub mod cat;
mod direct;
mod dirs;
mod dump;
mod files;
mod fsops;
mod leftovers;
mod links;
mod overwrite;
mod pgdrill;
mod policy;
mod report;
mod restorer;
mod selection;

use std::fs;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

pub use crate::format::drill::{DrillRecord, DrillSummary};
pub use cat::{find_entry, write_file};
pub use dump::dump_tar;
pub use overwrite::{Overwrite, UnknownOverwrite};
pub use pgdrill::{
    DEFAULT_DRILL_USER, DatabaseDrill, DumpCheck, DumpFailure, TableCheck, UnsafeSourceName,
    check_source_name, useradd_line,
};
pub use policy::{
    MAX_LISTED as WITHHELD_LISTED, RestorePolicy, Withheld, WithheldKind, WithheldReport,
};
pub use report::{Problem, ProblemKind, RestoreReport};
pub use restorer::Restorer;
pub use selection::Selection;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::format::id::{Id, SnapshotId};
use crate::format::snapshot::Snapshot;
use crate::repo::{ObjectKind, Repository};

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Where to restore (created if missing).
    pub target: PathBuf,
    /// Only restore paths matching these globs (relative to the snapshot
    /// root; a matching directory brings its whole subtree).
    pub include: Vec<String>,
    /// Never restore paths matching these globs ([`Selection`]).
    pub exclude: Vec<String>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Re-read every restored file from disk and check it against its hash.
    pub verify: bool,
    /// Stops the restore between entries when cancelled.
    pub cancel: Cancel,
    /// What privileged content (devices, setuid/setgid bits, `security.*`
    /// attributes) may be created; nothing by default.
    pub policy: RestorePolicy,
    /// What to do with entries that already exist in the target.
    pub overwrite: Overwrite,
    /// Advanced per file (totals: the snapshot header's files and bytes).
    pub progress: Option<std::sync::Arc<crate::ops::progress::Progress>>,
}

/// Whether `snapshot` has a PostgreSQL dump that a drill would load.
pub fn has_dumps(snapshot: &Snapshot) -> bool {
    pgdrill::has_dumps(snapshot, &|_| true)
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
///
/// # Errors
///
/// Invalid input when the target cannot be opened (or is a symlink) or the
/// include patterns are malformed; not found when they match nothing;
/// repository errors when the index cannot be read; cancelled. Everything
/// that goes wrong with single entries is a [`Problem`] in the report.
pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let _listening = opts.cancel.listen();
    Restorer::new(repo, id, snapshot, opts)?.run()
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

/// Sandboxes are `vault-verify-PID-START-RANDOM` in TMPDIR.
const SANDBOX_PREFIX: &str = "vault-verify";

/// Removes the sandboxes of this user's drills that were killed outright:
/// they hold restored files, which must not outlive the drill.
fn remove_stale_sandboxes(work_dir: &Path) {
    let me = nix::unistd::geteuid().as_raw();
    for (dir, pid) in leftovers::stale(work_dir, SANDBOX_PREFIX, me) {
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

/// Refuses a drill whose snapshot declares more bytes than the sandbox's
/// file system has free: a drill must not fill its host's disk (a restore
/// never writes more than the header declares, so this is checked before
/// anything is written).
fn room_for(sandbox: &Path, snapshot: &Snapshot) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(sandbox)
        .map_err(|e| Error::io(sandbox, std::io::Error::from(e)))?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    let needed = snapshot.totals.bytes;
    if needed > free {
        return Err(Error::InvalidInput(format!(
            "the snapshot declares {needed} bytes of files and {} has {free} bytes free: \
             point TMPDIR at a larger file system for the drill",
            sandbox.parent().unwrap_or(sandbox).display()
        )));
    }
    Ok(())
}

/// What a `--verify` drill restores, and how it loads databases.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Where to restore (a private directory under `databases.work_dir`
    /// when `None`).
    pub target: Option<PathBuf>,
    /// Only restore paths matching these globs.
    pub include: Vec<String>,
    /// How database dumps are loaded.
    pub databases: DatabaseDrill,
    /// Stops the drill, cleaning up, when cancelled.
    pub cancel: Cancel,
    /// Advanced per restored file.
    pub progress: Option<std::sync::Arc<crate::ops::progress::Progress>>,
}

/// Restores into a sandbox (a temporary directory unless `opts.target` is
/// given), re-checks every file and database dump, and stores a drill
/// record in the repository. Refuses, before restoring anything, a
/// snapshot with database dumps when they cannot be loaded safely here
/// (see [`DatabaseDrill::preflight`]). A cancelled drill removes its
/// sandbox and scratch cluster, writes no record and returns
/// [`Error::Cancelled`]. With `include` patterns only part of the snapshot
/// is restored: that proves nothing about the rest, so no drill record is
/// written (the record id is `None`) and `vault status` does not count it.
pub fn verify_drill(
    repo: &Repository,
    id: &SnapshotId,
    snapshot: &Snapshot,
    opts: &VerifyOptions,
) -> Result<(RestoreReport, Option<Id>)> {
    let _listening = opts.cancel.listen();
    let includes = include_set(&opts.include)?;
    if pgdrill::has_dumps(snapshot, &|name| included(&includes, Path::new(name))) {
        opts.databases.preflight()?;
    }
    let sandbox;
    let dir = match &opts.target {
        Some(t) => t.clone(),
        None => {
            let work_dir = &opts.databases.work_dir;
            remove_stale_sandboxes(work_dir);
            let prefix =
                leftovers::name_prefix(SANDBOX_PREFIX).map_err(|e| Error::io(work_dir, e))?;
            sandbox = tempfile::Builder::new()
                .prefix(&prefix)
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir_in(work_dir)
                .map_err(|e| Error::io(work_dir, e))?;
            if opts.include.is_empty() {
                room_for(sandbox.path(), snapshot)?;
            }
            sandbox.path().to_owned()
        }
    };
    let restore_opts = RestoreOptions {
        target: dir,
        include: opts.include.clone(),
        exclude: Vec::new(),
        threads: 0,
        verify: true,
        cancel: opts.cancel.clone(),
        // A drill never creates privileged files, whatever was asked.
        policy: RestorePolicy::default(),
        overwrite: Overwrite::Always,
        progress: opts.progress.clone(),
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
    if !opts.include.is_empty() {
        return Ok((report, None));
    }
    let record = DrillRecord {
        time: chrono::Utc::now(),
        host: crate::source::host::hostname(),
        snapshot: *id,
        passed: !report.failed(),
        summary: DrillSummary::of(&report),
    };
    let drill_id = repo.put_signed_json(ObjectKind::Drill, &record)?;
    Ok((report, Some(drill_id)))
}
