//! What a restore reports: counts, problems naming their paths, and what
//! the restore policy withheld; and the path-free drill summary kept in the
//! repository.

use serde::{Deserialize, Serialize};

use super::pgdrill::{DumpCheck, DumpFailure};
use super::policy::WithheldReport;
use crate::format::drill::DrillSummary;

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
    /// Repository data could not be read for a reason other than damage
    /// (no permission to read it, the storage failing).
    Unreadable,
}

impl ProblemKind {
    /// The kind of a failure to read repository data: damage only when
    /// the error says the data itself is bad.
    pub fn reading(e: &crate::Error) -> Self {
        if e.kind() == crate::ErrorKind::Damage {
            ProblemKind::Damaged
        } else {
            ProblemKind::Unreadable
        }
    }
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
    /// Existing entries in the target that were replaced (`--overwrite`).
    #[serde(default)]
    pub replaced: u64,
    /// Existing entries in the target that were left as they were
    /// (`--overwrite never`, or `if-changed` found them identical).
    #[serde(default)]
    pub skipped: u64,
    /// Everything that went wrong.
    pub problems: Vec<Problem>,
    /// What the restore policy kept out of the target (setuid/setgid bits,
    /// device nodes, `security.*` attributes).
    #[serde(default)]
    pub withheld: WithheldReport,
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
    /// The counts of a drill's report.
    pub fn of(r: &RestoreReport) -> Self {
        let count = |k| r.problems.iter().filter(|p| p.kind == k).count() as u64;
        DrillSummary {
            files: r.files,
            dirs: r.dirs,
            other: r.other,
            bytes: r.bytes,
            verified: r.verified,
            damaged: count(ProblemKind::Damaged),
            mismatched: count(ProblemKind::Mismatch),
            // I/O failures: writing the target, or reading the repository
            // for a reason other than damage.
            write_errors: count(ProblemKind::Write) + count(ProblemKind::Unreadable),
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
