//! The repository's plain-JSON `config` object.

use serde::{Deserialize, Serialize};

use crate::crypto::sign::{PublicKey, Signature};
use crate::format::chunk::ChunkerParams;

/// The format version this build writes. Version 2 signs `config`,
/// snapshot headers, index files and drill records (docs/FORMAT.md).
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format version this build reads (and backs up into, unsigned).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Default target size of a pack's plaintext, in bytes.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

/// Default zstd level for blobs.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// The `config` object: public facts about a repository, stored unencrypted
/// so that any tool can tell what it is looking at.
///
/// It holds no secret. Because anyone with write access to the storage could
/// swap it, the recipients in it are also pinned inside the writer key and
/// the owner key, and from format 2 on the whole object is signed by the
/// repository owner signing key ([`RepoConfig::signed_text`]), whose public
/// half every writer key pins: vault refuses a config that disagrees.
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
    /// Format 2: the repository owner signing key's public half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_signing_key: Option<PublicKey>,
    /// Format 2: the owner's signature over [`RepoConfig::signed_text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

impl RepoConfig {
    /// The text the config signature covers: one `name value` line per
    /// field, in this order, each ending in a newline (`object_lock` is
    /// `none` or `<mode> <days>`; `owner_signing_key` is 64 hex digits):
    ///
    /// ```text
    /// vault 2026 config
    /// version 2
    /// id <id>
    /// owner_recipient <age1…>
    /// writer_recipient <age1…>
    /// owner_signing_key <hex>
    /// chunker <min_size> <avg_size> <max_size>
    /// pack_size <bytes>
    /// compression_level <level>
    /// created <RFC 3339>
    /// object_lock <none | governance N | compliance N>
    /// ```
    pub fn signed_text(&self) -> String {
        let lock = match &self.object_lock {
            None => "none".to_owned(),
            Some(l) => format!("{} {}", l.mode.as_s3().to_ascii_lowercase(), l.days),
        };
        let key = self
            .owner_signing_key
            .map(|k| k.to_string())
            .unwrap_or_default();
        format!(
            "vault 2026 config\nversion {}\nid {}\nowner_recipient {}\nwriter_recipient {}\n\
             owner_signing_key {key}\nchunker {} {} {}\npack_size {}\ncompression_level {}\n\
             created {}\nobject_lock {lock}\n",
            self.version,
            self.id,
            self.owner_recipient,
            self.writer_recipient,
            self.chunker.min_size,
            self.chunker.avg_size,
            self.chunker.max_size,
            self.pack_size,
            self.compression_level,
            self.created,
        )
    }

    /// Checks the signature of a format-2 config against `owner_key` (the
    /// key pinned in a writer key, or derived by an owner). A format-1
    /// config has none; the caller decides whether that is acceptable.
    pub fn verify(&self, owner_key: &PublicKey) -> Result<(), String> {
        match (self.owner_signing_key, self.signature) {
            (Some(k), _) if k != *owner_key => Err(
                "its owner signing key differs from the one pinned in the repository's keys".into(),
            ),
            (Some(_), Some(sig)) if owner_key.verify(self.signed_text().as_bytes(), &sig) => Ok(()),
            (Some(_), Some(_)) => Err("its signature does not verify".into()),
            _ => Err("it is not signed".into()),
        }
    }
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

    #[test]
    fn every_security_setting_is_covered_by_the_signature() {
        let owner = crate::crypto::sign::SigningKey::generate();
        let mut c: RepoConfig = serde_json::from_str(OLD).unwrap();
        c.version = 2;
        c.owner_signing_key = Some(owner.public());
        c.signature = Some(owner.sign(c.signed_text().as_bytes()));
        assert_eq!(c.verify(&owner.public()), Ok(()));
        type Edit = Box<dyn Fn(&mut RepoConfig)>;
        let edits: Vec<Edit> = vec![
            Box::new(|c| c.chunker.min_size = 64),
            Box::new(|c| c.chunker.avg_size = 256),
            Box::new(|c| c.chunker.max_size = 1024),
            Box::new(|c| c.compression_level = 22),
            Box::new(|c| c.pack_size = 1 << 20),
            Box::new(|c| {
                c.object_lock = Some(ObjectLock {
                    mode: LockMode::Governance,
                    days: 1,
                })
            }),
            Box::new(|c| c.writer_recipient = "age1other".into()),
            Box::new(|c| c.id = "0".repeat(32)),
            Box::new(|c| c.version = 1),
        ];
        for edit in edits {
            let mut bad = c.clone();
            edit(&mut bad);
            assert!(
                bad.verify(&owner.public()).is_err(),
                "{}",
                bad.signed_text()
            );
        }
        let mut unsigned = c.clone();
        unsigned.signature = None;
        assert!(unsigned.verify(&owner.public()).is_err());
        let other = crate::crypto::sign::SigningKey::generate();
        assert!(c.verify(&other.public()).is_err());
        // Round trip through JSON keeps the signature valid.
        let again: RepoConfig =
            serde_json::from_str(&serde_json::to_string_pretty(&c).unwrap()).unwrap();
        assert_eq!(again.verify(&owner.public()), Ok(()));
    }
}
