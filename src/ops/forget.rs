//! `vault forget`: apply a retention policy per host and source set, and
//! remove the snapshot headers it does not keep. Data goes later, with
//! `vault prune`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::format::id::SnapshotId;
use crate::ops::retention::{self, KeepPolicy};
use crate::repo::trust::{SnapshotRecord, Trust};
use crate::repo::{ObjectKind, Repository};

/// What to forget.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// The retention policy, applied to each group separately.
    pub policy: KeepPolicy,
    /// Only snapshots of this host.
    pub host: Option<String>,
    /// Only snapshots carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only report what would be removed.
    pub dry_run: bool,
}

/// One snapshot's fate.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotDecision {
    /// The snapshot id.
    pub id: SnapshotId,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Whether it stays.
    pub keep: bool,
    /// Why it stays (empty when removed).
    pub reasons: Vec<String>,
}

/// The snapshots of one host and source set, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetGroup {
    /// The host.
    pub host: String,
    /// The sources (`kind:name`), sorted.
    pub sources: Vec<String>,
    /// Every snapshot of the group, newest first.
    pub snapshots: Vec<SnapshotDecision>,
}

/// What forget did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The groups and their decisions.
    pub groups: Vec<ForgetGroup>,
    /// Snapshots kept.
    pub kept: u64,
    /// Snapshots removed (or to remove, in a dry run).
    pub removed: u64,
    /// Snapshots that could not be removed, with the reason.
    pub not_removed: Vec<String>,
}

/// A host and its sorted sources: snapshots sharing one form a group.
type GroupKey = (String, Vec<String>);

/// Plans (and unless `dry_run`, applies) `opts.policy` to `repo` with the
/// calendar of `tz` and the clock `now`. Owner key required.
///
/// Only headers that count take part ([`crate::repo::trust`]): signed by
/// the owner or the host they name, dated no later than their upload. The
/// newest complete snapshot and the newest snapshot a passed, owner-signed
/// drill proved are always kept in each group.
pub fn forget<Tz: TimeZone>(
    repo: &Repository,
    opts: &ForgetOptions,
    tz: &Tz,
    now: DateTime<Utc>,
) -> Result<ForgetReport> {
    repo.keys().require_owner("forget")?;
    if opts.policy.is_empty() {
        // The planner refuses too; checking first gives the message before
        // any listing work.
        retention::plan(&[], &opts.policy, tz, now)?;
    }
    let set = repo.verified_snapshots()?;
    let drills = repo.verified_drills()?;
    // The snapshots whose restore an owner proved: the newest of each
    // series among them is never forgotten.
    let drilled: HashSet<SnapshotId> = drills
        .usable
        .iter()
        .filter(|d| d.passed)
        .map(|d| d.snapshot)
        .collect();
    let mut groups: BTreeMap<GroupKey, Vec<SnapshotRecord>> = BTreeMap::new();
    for r in set.records {
        let s = &r.snapshot;
        if opts.host.as_ref().is_some_and(|h| *h != s.host)
            || !opts.tags.iter().all(|t| s.tags.contains(t))
        {
            continue;
        }
        groups.entry(s.group_key()).or_default().push(r);
    }
    let mut report = ForgetReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    for ((host, sources), all) in groups {
        // Headers that do not count (not signed by the owner or by the
        // host they name) take no retention slot and are never deleted
        // here: a forged header must not push real snapshots out, and an
        // owner decides about it after reading why (`vault snapshots`).
        let (members, untrusted): (Vec<SnapshotRecord>, Vec<SnapshotRecord>) =
            all.into_iter().partition(|r| r.trust.usable());
        // Times bounded by the upload: a header dated ahead of its upload
        // counts as dated at the upload.
        let times: Vec<DateTime<Utc>> = members.iter().map(|r| r.snapshot.time).collect();
        let mut decisions = retention::plan(&times, &opts.policy, tz, now)?;
        // Never forget the last good backup: a week of failed dumps under
        // `--keep-daily 7` must not take the last complete snapshot along.
        let newest = |pred: &dyn Fn(&SnapshotRecord) -> bool| {
            members
                .iter()
                .enumerate()
                .filter(|(_, r)| pred(r) && !r.snapshot.is_in_the_future(now))
                .max_by_key(|(_, r)| (r.snapshot.time, r.id))
                .map(|(i, _)| i)
        };
        let protected = [
            (newest(&|r| r.snapshot.is_complete()), "newest complete"),
            // Nor the newest snapshot whose restore a drill proved: whatever
            // headers a compromised host adds, the last proven restore stays.
            (newest(&|r| drilled.contains(&r.id)), "newest drilled"),
        ];
        for (index, reason) in protected {
            if let Some(i) = index
                && let Some(d) = decisions.iter_mut().find(|d| d.index == i)
                && !d.keep
            {
                d.keep = true;
                d.reasons.push(reason.into());
            }
        }
        let mut group = ForgetGroup {
            host,
            sources,
            snapshots: Vec::new(),
        };
        for r in &untrusted {
            report.kept += 1;
            let why = match &r.trust {
                Trust::Untrusted(why) => why.as_str(),
                _ => "",
            };
            group.snapshots.push(SnapshotDecision {
                id: r.id,
                time: r.snapshot.time,
                keep: true,
                reasons: vec![format!("untrusted ({why}); not counted")],
            });
        }
        for d in decisions {
            let (id, snap) = (&members[d.index].id, &members[d.index].snapshot);
            if d.keep {
                report.kept += 1;
            } else if opts.dry_run {
                report.removed += 1;
            } else {
                let key = ObjectKind::Snapshot.key(id);
                match crate::ops::prune::delete_unless_locked(repo.storage().as_ref(), &key, now) {
                    Ok(()) => report.removed += 1,
                    Err(e) => report.not_removed.push(e.to_string()),
                }
            }
            group.snapshots.push(SnapshotDecision {
                id: *id,
                time: snap.time,
                keep: d.keep,
                reasons: d.reasons,
            });
        }
        group
            .snapshots
            .sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        report.groups.push(group);
    }
    Ok(report)
}
