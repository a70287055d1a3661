//! The repository's plain-JSON `config` object.

use serde::{Deserialize, Serialize};

use crate::format::chunk::ChunkerParams;

/// The format version this build writes and understands.
pub const FORMAT_VERSION: u32 = 1;

/// Default target size of a pack's plaintext, in bytes.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

/// Default zstd level for blobs.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// The `config` object: public facts about a repository, stored unencrypted
/// so that any tool can tell what it is looking at.
///
/// It holds no secret. Because anyone with write access to the storage could
/// swap it, the recipients in it are also pinned inside the writer key and
/// the owner key, and vault refuses a config that disagrees with them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Random repository id (32 hex digits).
    pub id: String,
    /// The repository owner key's X25519 recipient: data and trees are encrypted to it.
    pub owner_recipient: String,
    /// The writer key's X25519 recipient: index files and snapshot headers are
    /// encrypted to it and to the owner recipient.
    pub writer_recipient: String,
    /// Content-defined chunking parameters.
    pub chunker: ChunkerParams,
    /// Target plaintext size of a pack, in bytes.
    pub pack_size: u32,
    /// zstd level used for new blobs.
    pub compression_level: i32,
    /// When the repository was made (RFC 3339).
    pub created: String,
    /// S3 Object Lock retention that every object is put with (absent: none).
    /// Absent from configs written before it existed, and from repositories
    /// made without `--object-lock-days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// The longest Object Lock retention `vault init` accepts, in days (100 years).
pub const MAX_LOCK_DAYS: u32 = 36_500;

/// S3 Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Nobody without `s3:BypassGovernanceRetention` can delete or shorten
    /// the retention; an administrator holding that permission can.
    Governance,
    /// Nobody, not even the account root, can delete an object or shorten its
    /// retention before it ends.
    Compliance,
}

impl LockMode {
    /// The S3 spelling (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// Object Lock retention that a storage applies to every object it puts:
/// each object is retained until `days` days after its own put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    /// Retention mode.
    pub mode: LockMode,
    /// Retention period in days, counted from each object's put (1–36500).
    pub days: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{
  "version": 1,
  "id": "4b83bc6fd381159c87346409af835208",
  "owner_recipient": "age1a",
  "writer_recipient": "age1b",
  "chunker": { "min_size": 4096, "avg_size": 16384, "max_size": 65536 },
  "pack_size": 16777216,
  "compression_level": 3,
  "created": "2026-11-23T16:02:04Z"
}"#;

    #[test]
    fn configs_without_object_lock_still_parse_and_round_trip() {
        let c: RepoConfig = serde_json::from_str(OLD).unwrap();
        assert_eq!(c.object_lock, None);
        assert!(!serde_json::to_string(&c).unwrap().contains("object_lock"));
    }

    #[test]
    fn object_lock_is_recorded_and_unknown_fields_are_refused() {
        let with = OLD.replace(
            "\"created\"",
            "\"object_lock\": {\"mode\": \"compliance\", \"days\": 30},\n  \"created\"",
        );
        let c: RepoConfig = serde_json::from_str(&with).unwrap();
        assert_eq!(
            c.object_lock,
            Some(ObjectLock {
                mode: LockMode::Compliance,
                days: 30
            })
        );
        let bad = with.replace("\"days\": 30", "\"days\": 30, \"extra\": 1");
        assert!(serde_json::from_str::<RepoConfig>(&bad).is_err());
        let bad = OLD.replace("\"created\"", "\"surprise\": 1, \"created\"");
        assert!(serde_json::from_str::<RepoConfig>(&bad).is_err());
    }
}
