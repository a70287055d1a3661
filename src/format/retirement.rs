//! Retirement records (`retired/<id>`): the repository owner's word that a
//! host's source is no longer backed up on purpose (`vault status
//! --retire`), so that `vault status` stops judging it.

use serde::{Deserialize, Serialize};

/// A retirement record stored under `retired/`, signed by the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireRecord {
    /// When the source was retired. A backup of the source after this
    /// time brings it back under `vault status`'s judgement.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The host whose source is retired.
    pub host: String,
    /// The source, `kind:name` as `vault status` shows it
    /// (`paths:/etc`, `postgres:postgres/app.dump`).
    pub source: String,
}
