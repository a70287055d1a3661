//! The repository's plain-JSON `config` object.

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkerParams;

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
}
