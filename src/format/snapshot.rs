//! Snapshot headers: what was backed up, when, from where, and how it went.

use serde::{Deserialize, Serialize};

use crate::format::id::{SnapshotId, TreeId};

/// How far past `now` a snapshot may be dated before it counts as "in the future".
pub const FUTURE_SLACK_HOURS: i64 = 1;

/// One certificate found in a keystore (no file name: snapshot headers are
/// readable with the writer key, which must not learn file names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number (hex).
    pub serial: String,
    /// End of validity.
    pub not_after: chrono::DateTime<chrono::Utc>,
}

/// How a source fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Everything was read.
    Ok,
    /// Some entries could not be read; they are listed in the header's errors.
    Partial,
    /// Nothing usable was read.
    Failed,
}

/// One source of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    /// `paths` for file trees, `command` for a command's output.
    pub kind: String,
    /// A name for the source (for paths: the paths joined).
    pub name: String,
    /// The absolute paths backed up.
    #[serde(default)]
    pub paths: Vec<String>,
    /// How it went.
    pub status: SourceStatus,
    /// For command sources: the command line that was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Facts about the source, e.g. for PostgreSQL the server version, the
    /// exported snapshot and the exact row count of every table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Totals of a backup run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Bytes of file content in the snapshot.
    pub bytes: u64,
    /// Files read this run (the rest came from the local cache).
    pub files_read: u64,
    /// New blobs stored.
    pub blobs_added: u64,
    /// Uncompressed bytes of new blobs.
    pub bytes_added: u64,
    /// Bytes of new packs written to the repository.
    pub bytes_stored: u64,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

/// An input that could not be read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputError {
    /// The path (or source) that failed.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The content of one `snapshots/<id>` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// When the backup started.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The host it ran on.
    pub host: String,
    /// The user it ran as.
    pub user: String,
    /// User tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The sources and how each fared.
    pub sources: Vec<SourceRecord>,
    /// The root tree blob.
    pub root: TreeId,
    /// Counts and sizes.
    pub totals: Totals,
    /// Inputs that could not be read.
    #[serde(default)]
    pub errors: Vec<InputError>,
    /// Certificates found in keystores and truststores (no file names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertInfo>,
    /// The previous snapshot of the same host and paths.
    #[serde(default)]
    pub parent: Option<SnapshotId>,
    /// The vault version that wrote it.
    pub program_version: String,
}

impl Snapshot {
    /// What it backed up, as a backup asks for it: the paths of path
    /// sources and the names of the others, in order (a backup's parent is
    /// the newest snapshot of the same host with the same list).
    pub fn source_names(&self) -> Vec<String> {
        self.sources
            .iter()
            .flat_map(|s| {
                if s.kind == "paths" {
                    s.paths.clone()
                } else {
                    vec![s.name.clone()]
                }
            })
            .collect()
    }

    /// The host and the sorted `kind:name` of its sources: snapshots sharing
    /// it form one series (for retention, drills and status).
    pub fn group_key(&self) -> (String, Vec<String>) {
        let mut sources: Vec<String> = self
            .sources
            .iter()
            .map(|x| format!("{}:{}", x.kind, x.name))
            .collect();
        sources.sort();
        sources.dedup();
        (self.host.clone(), sources)
    }

    /// Whether it is dated more than
    /// [`FUTURE_SLACK_HOURS`](FUTURE_SLACK_HOURS) after
    /// `now`: clock skew, or a header forged with the writer key.
    pub fn is_in_the_future(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.time > now + chrono::Duration::hours(FUTURE_SLACK_HOURS)
    }

    /// Whether every source was read completely.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty() && self.sources.iter().all(|s| s.status == SourceStatus::Ok)
    }
}

/// A snapshot header of one `paths` source, for unit tests elsewhere.
#[cfg(test)]
pub(crate) fn test_snapshot(
    time: chrono::DateTime<chrono::Utc>,
    host: &str,
    path: &str,
    status: SourceStatus,
) -> Snapshot {
    Snapshot {
        time,
        host: host.into(),
        user: "root".into(),
        tags: vec![],
        sources: vec![SourceRecord {
            kind: "paths".into(),
            name: path.into(),
            paths: vec![path.into()],
            status,
            command: None,
            details: None,
        }],
        root: TreeId(crate::format::id::Id([0; 32])),
        totals: Totals::default(),
        errors: vec![],
        certificates: vec![],
        parent: None,
        program_version: "test".into(),
    }
}
