//! `vault drill`: what a weekly timer runs to prove the repository restores.
//!
//! It verifies the latest snapshot of every source set (host + sources),
//! one randomly chosen older snapshot, and today's slice of the packs, so
//! that every byte in the repository is re-read within `period_days`.

use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::format::id::{Id, SnapshotId};
use crate::format::snapshot::Snapshot;
use crate::ops::check::{self, CheckOptions, CheckReport};
use crate::ops::restore::{self, DatabaseDrill, RestoreReport, VerifyOptions};
use crate::repo::Repository;

/// What a drill covers.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Every pack is re-read once within this many days (one slice a day).
    pub period_days: u32,
    /// The day number that picks today's slice (days since the epoch).
    pub day: u64,
    /// Also verify one randomly chosen older snapshot.
    pub random_older: bool,
    /// Only snapshots that pass this filter (host, tags, paths).
    pub filter: crate::repo::select::SnapshotFilter,
    /// Advanced per restored file of each snapshot drilled.
    pub progress: Option<std::sync::Arc<crate::ops::progress::Progress>>,
}

/// One snapshot verified by the drill.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotDrill {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// Why it was chosen (`latest` or `random older`).
    pub reason: &'static str,
    /// The drill record written for it.
    pub record: Option<Id>,
    /// The verify report.
    pub report: RestoreReport,
    /// Certificates in the snapshot that expire within 30 days.
    pub expiring_certificates: Vec<crate::format::snapshot::CertInfo>,
}

/// The outcome of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// Snapshots restored and verified.
    pub snapshots: Vec<SnapshotDrill>,
    /// Today's pack slice, as `n/m`.
    pub pack_slice: String,
    /// The pack check of that slice.
    pub packs: CheckReport,
    /// Whether everything passed.
    pub passed: bool,
}

/// Picks the snapshots a drill verifies: the latest of each source set and,
/// if asked, one random older one.
pub fn choose(
    all: &[(SnapshotId, Snapshot)],
    random_older: bool,
) -> Vec<(SnapshotId, &'static str)> {
    let mut latest: std::collections::BTreeMap<(String, Vec<String>), SnapshotId> =
        Default::default();
    for (id, s) in all {
        // `all` is oldest first, so the last one seen per group is the latest.
        latest.insert(s.group_key(), *id);
    }
    let mut chosen: Vec<(SnapshotId, &'static str)> =
        latest.into_values().map(|id| (id, "latest")).collect();
    if random_older {
        let older: Vec<&SnapshotId> = all
            .iter()
            .map(|(id, _)| id)
            .filter(|id| !chosen.iter().any(|(c, _)| c == *id))
            .collect();
        if !older.is_empty() {
            let pick = rand::Rng::gen_range(&mut rand::thread_rng(), 0..older.len());
            chosen.push((*older[pick], "random older"));
        }
    }
    chosen
}

/// Runs a drill (owner key required). Database dumps load as `databases`
/// says; when any chosen snapshot has one that cannot be loaded safely
/// here, the drill refuses before restoring anything. `cancel` stops it
/// between steps, cleaning up ([`crate::Error::Cancelled`]).
pub fn run(
    repo: &Repository,
    opts: &DrillOptions,
    databases: &DatabaseDrill,
    cancel: &Cancel,
) -> Result<DrillReport> {
    repo.keys().require_owner("drill")?;
    // Only headers that count: a header forged with a writer key (another
    // host's series, or dated ahead) must not stand in for a series' latest
    // and take its drill. `vault status` names the others.
    let set = repo.verified_snapshots()?;
    for (r, why) in set.untrusted() {
        tracing::warn!("snapshot {} is not drilled: {why}", r.id.short());
    }
    let mut all = set.usable();
    let now = chrono::Utc::now();
    all.retain(|(_, s)| !s.is_in_the_future(now) && opts.filter.matches(s));
    if all.is_empty() && set.damaged.is_empty() {
        // Nothing restored is nothing proven: a drill timer that "passes"
        // on an empty repository would hide a backup that never ran.
        return Err(Error::NotFound(if opts.filter.is_empty() {
            "no snapshot to drill; run `vault backup` first (and `vault drill` once after it)"
                .to_owned()
        } else {
            // The filter is the cause, not a backup that never ran.
            format!(
                "no snapshot to drill matches{}; `vault snapshots` lists what there is",
                opts.filter.describe()
            )
        }));
    }
    let mut passed = set.damaged.is_empty();
    let mut snapshots = Vec::new();
    let chosen = choose(&all, opts.random_older);
    let snapshot = |id: SnapshotId| {
        &all.iter()
            .find(|(i, _)| *i == id)
            .expect("chosen from all")
            .1
    };
    if chosen
        .iter()
        .any(|(id, _)| restore::has_dumps(snapshot(*id)))
    {
        databases.preflight()?;
    }
    let verify = VerifyOptions {
        databases: databases.clone(),
        cancel: cancel.clone(),
        progress: opts.progress.clone(),
        ..Default::default()
    };
    for (id, reason) in chosen {
        cancel.check("drill")?;
        let snap = snapshot(id);
        let (report, record) = restore::verify_drill(repo, &id, snap, &verify)?;
        passed &= !report.failed();
        let expiring_certificates =
            crate::source::keystore::expiring(&snap.certificates, chrono::Utc::now(), 30);
        snapshots.push(SnapshotDrill {
            snapshot: id,
            reason,
            record,
            report,
            expiring_certificates,
        });
    }
    cancel.check("drill")?;
    let period = opts.period_days.max(1);
    let n = (opts.day % period as u64) as u32 + 1;
    let mut packs = CheckReport::default();
    check::check(
        repo,
        &CheckOptions {
            structure: true,
            read_data: Some((n, period)),
            storage: false,
            progress: opts.progress.clone(),
        },
        &mut packs,
    )?;
    passed &= !packs.has_errors();
    Ok(DrillReport {
        snapshots,
        pack_slice: format!("{n}/{period}"),
        packs,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::SourceStatus;

    fn snap(host: &str, path: &str, secs: i64) -> Snapshot {
        crate::format::snapshot::test_snapshot(
            chrono::DateTime::from_timestamp(secs, 0).unwrap(),
            host,
            path,
            SourceStatus::Ok,
        )
    }

    #[test]
    fn chooses_latest_per_source_set_and_one_older() {
        let all = vec![
            (SnapshotId(Id([1; 32])), snap("a", "/etc", 1)),
            (SnapshotId(Id([2; 32])), snap("b", "/etc", 2)),
            (SnapshotId(Id([3; 32])), snap("a", "/etc", 3)),
            (SnapshotId(Id([4; 32])), snap("a", "/srv", 4)),
        ];
        let chosen = choose(&all, false);
        let ids: Vec<SnapshotId> = chosen.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids.len(), 3);
        for want in [Id([2; 32]), Id([3; 32]), Id([4; 32])] {
            assert!(ids.contains(&SnapshotId(want)));
        }
        let with_older = choose(&all, true);
        assert_eq!(with_older.len(), 4);
        assert_eq!(with_older[3], (SnapshotId(Id([1; 32])), "random older"));
    }
}
