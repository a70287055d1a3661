//! Lock objects (`locks/<id>`): which prune (or copy) holds the repository.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a lock object records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRecord {
    /// When the prune started.
    pub time: DateTime<Utc>,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Random bytes, so two locks never share a name.
    pub nonce: String,
}
