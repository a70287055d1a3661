//! Object Lock upkeep. An object is locked for `days` from its own upload,
//! so a pack stored long ago that today's snapshot still deduplicates
//! against would otherwise be deletable long before today's snapshot is
//! `days` old. Prune lengthens the retention of everything a recent
//! snapshot needs — and of the config and keys, without which nothing is
//! readable — so that the promise "no snapshot's data can be deleted before
//! it is `days` old" holds for every snapshot taken before the last prune.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::plan::StoredPack;
use crate::error::Result;
use crate::format::id::{PackId, SnapshotId};
use crate::format::index::Index;
use crate::format::snapshot::Snapshot;
use crate::repo::{CONFIG_KEY, ObjectKind, Repository};

/// Retention shorter than the target by less than this is left alone, so
/// that prune does not rewrite every lock on every run.
const SLACK: Duration = Duration::hours(12);

/// What the upkeep did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LockUpkeep {
    /// Objects whose retention was looked at.
    pub objects_checked: u64,
    /// Objects whose retention was (or, in a dry run, would be) lengthened.
    pub locks_extended: u64,
    /// Objects that could not be checked or extended, with the reason.
    pub problems: Vec<String>,
}

/// Lengthens retention where a recent snapshot needs it (no-op without
/// Object Lock in the repository config).
/// Only packs in `staying` (kept, not marked for deletion) are considered:
/// a pack being repacked or deleted must not be locked again.
pub fn keep_recent_locked(
    repo: &Repository,
    index: &Index,
    stored: &HashMap<PackId, StoredPack>,
    staying: &HashSet<PackId>,
    snapshots: &[(SnapshotId, Snapshot)],
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<LockUpkeep> {
    let mut out = LockUpkeep::default();
    let Some(lock) = repo.config().object_lock else {
        return Ok(out);
    };
    let days = Duration::days(i64::from(lock.days));
    let recent: Vec<&Snapshot> = snapshots
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.time + days > now && s.time <= now + Duration::hours(1))
        .collect();
    let mut wanted: Vec<(String, DateTime<Utc>)> = Vec::new();
    // The config and keys open everything: they stay locked a full period
    // from now.
    wanted.push((CONFIG_KEY.to_owned(), now + days));
    for obj in repo.storage().list("keys/")? {
        wanted.push((obj.key, now + days));
    }
    if let Some(newest) = recent.iter().map(|s| s.time).max() {
        let blobs = crate::repo::treewalk::reachable_blobs(repo, index, &recent)?;
        let mut packs: Vec<PackId> = blobs
            .iter()
            .flat_map(|b| index.locations(b).map(|l| l.pack).collect::<Vec<_>>())
            .filter(|p| stored.contains_key(p) && staying.contains(p))
            .collect();
        packs.sort();
        packs.dedup();
        for p in packs {
            wanted.push((ObjectKind::Pack(stored[&p].kind).key(&p), newest + days));
        }
    }
    for (key, until) in wanted {
        out.objects_checked += 1;
        let current = match repo.storage().locked_until(&key) {
            Ok(c) => c,
            Err(e) => {
                out.problems.push(e.to_string());
                continue;
            }
        };
        if current.is_some_and(|c| c + SLACK >= until) {
            continue;
        }
        out.locks_extended += 1;
        if !dry_run && let Err(e) = repo.storage().extend_lock(&key, until) {
            out.problems.push(e.to_string());
        }
    }
    Ok(out)
}
