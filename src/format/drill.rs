//! Drill records (`drills/<id>`): proof that a restore of a snapshot was
//! tested, with counts only.

use serde::{Deserialize, Serialize};

use crate::format::id::SnapshotId;

/// A drill record stored under `drills/`: proof that a restore was tested.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    /// When the drill ran.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Where it ran.
    pub host: String,
    /// The snapshot drilled.
    pub snapshot: SnapshotId,
    /// Whether every check passed.
    pub passed: bool,
    /// Counts only: drill records are readable with the writer key, which
    /// must never learn file names.
    pub summary: DrillSummary,
}

/// The counts of a drill, without any path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrillSummary {
    /// Files restored and checked.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries restored.
    pub other: u64,
    /// Bytes restored.
    pub bytes: u64,
    /// Files re-read and matched.
    pub verified: u64,
    /// Problems by kind.
    pub damaged: u64,
    /// Content mismatches.
    pub mismatched: u64,
    /// Write failures.
    pub write_errors: u64,
    /// Metadata that could not be applied.
    pub metadata_problems: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Database dumps loaded into a scratch cluster.
    #[serde(default)]
    pub databases_checked: u64,
    /// Database dumps that failed to load or whose row counts differed.
    #[serde(default)]
    pub databases_failed: u64,
    /// Of those, dumps that cannot be loaded without superuser (drills
    /// never load as superuser). Absent in older records: 0.
    #[serde(default)]
    pub databases_needing_superuser: u64,
}
