//! `vault forget`: apply a retention policy per host and source set, and
//! remove the snapshot headers it does not keep. Data goes later, with
//! `vault prune`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::format::id::SnapshotId;
use crate::ops::retention::{self, KeepPolicy};
use crate::repo::select::{SnapshotFilter, resolve_ids};
use crate::repo::trust::{SnapshotRecord, Trust};
use crate::repo::{ObjectKind, Repository};

/// What to forget.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// The retention policy, applied to each group separately.
    pub policy: KeepPolicy,
    /// Only snapshots that pass this filter (host, tags, source paths).
    pub filter: SnapshotFilter,
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

/// Removes the snapshot headers `specs` name (ids or unique prefixes,
/// [`resolve_ids`]), unless `dry_run`. Owner key required. Every spec is
/// resolved before anything is deleted: one unknown or ambiguous spec
/// removes nothing. Named snapshots go whatever their trust (this is how an
/// owner removes a forged header `vault snapshots` flags) and even when a
/// retention policy would protect them; data goes later, with prune.
pub fn forget_ids(
    repo: &Repository,
    specs: &[String],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<ForgetReport> {
    repo.keys().require_owner("forget")?;
    let ids = resolve_ids(repo, specs)?;
    let set = repo.verified_snapshots()?;
    let mut groups: BTreeMap<GroupKey, Vec<SnapshotDecision>> = BTreeMap::new();
    let mut report = ForgetReport {
        dry_run,
        ..Default::default()
    };
    for id in ids {
        let (key, time) = match set.records.iter().find(|r| r.id == id) {
            Some(r) => (r.snapshot.group_key(), r.snapshot.time),
            // Unreadable (damaged, or not vault's): removable by name.
            None => (("?".into(), vec!["unreadable header".into()]), now),
        };
        if !dry_run {
            let object = ObjectKind::Snapshot.key(&id);
            if let Err(e) =
                crate::ops::prune::delete_unless_locked(repo.storage().as_ref(), &object, now)
            {
                report.not_removed.push(e.to_string());
                continue;
            }
        }
        report.removed += 1;
        groups.entry(key).or_default().push(SnapshotDecision {
            id,
            time,
            keep: false,
            reasons: vec!["named".into()],
        });
    }
    for ((host, sources), mut snapshots) in groups {
        snapshots.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        report.groups.push(ForgetGroup {
            host,
            sources,
            snapshots,
        });
    }
    Ok(report)
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
    let drilled = drilled_snapshots(repo)?;
    let mut report = ForgetReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    for ((host, sources), all) in groups_of(set.records, opts) {
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
        protect_last_good(&mut decisions, &members, &drilled, now);
        let mut group = ForgetGroup {
            host,
            sources,
            snapshots: Vec::new(),
        };
        for r in &untrusted {
            report.kept += 1;
            group.snapshots.push(untrusted_decision(r));
        }
        for d in decisions {
            let decision = apply(repo, opts.dry_run, &members[d.index], d, now, &mut report);
            group.snapshots.push(decision);
        }
        group
            .snapshots
            .sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        report.groups.push(group);
    }
    Ok(report)
}

/// The snapshots whose restore an owner proved (a passed drill record that
/// counts): the newest of each series among them is never forgotten.
fn drilled_snapshots(repo: &Repository) -> Result<HashSet<SnapshotId>> {
    Ok(repo
        .verified_drills()?
        .usable
        .iter()
        .filter(|d| d.passed)
        .map(|d| d.snapshot)
        .collect())
}

/// The records that pass `opts.filter`, grouped by host and source set.
fn groups_of(
    records: Vec<SnapshotRecord>,
    opts: &ForgetOptions,
) -> BTreeMap<GroupKey, Vec<SnapshotRecord>> {
    let mut groups: BTreeMap<GroupKey, Vec<SnapshotRecord>> = BTreeMap::new();
    for r in records {
        let s = &r.snapshot;
        if !opts.filter.matches(s) {
            continue;
        }
        groups.entry(s.group_key()).or_default().push(r);
    }
    groups
}

/// Keeps, whatever the policy says, the group's newest complete snapshot
/// and its newest drilled one (neither dated in the future). Never forget
/// the last good backup: a week of failed dumps under `--keep-daily 7`
/// must not take the last complete snapshot along, and whatever headers a
/// compromised host adds, the last proven restore stays.
fn protect_last_good(
    decisions: &mut [retention::Decision],
    members: &[SnapshotRecord],
    drilled: &HashSet<SnapshotId>,
    now: DateTime<Utc>,
) {
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
}

/// A header that does not count: kept, with why.
fn untrusted_decision(r: &SnapshotRecord) -> SnapshotDecision {
    let why = match &r.trust {
        Trust::Untrusted(why) => why.as_str(),
        _ => "",
    };
    SnapshotDecision {
        id: r.id,
        time: r.snapshot.time,
        keep: true,
        reasons: vec![format!("untrusted ({why}); not counted")],
    }
}

/// Carries out decision `d` about `record` (deletes its header unless it
/// is kept or this is a dry run) and counts it in `report`.
fn apply(
    repo: &Repository,
    dry_run: bool,
    record: &SnapshotRecord,
    d: retention::Decision,
    now: DateTime<Utc>,
    report: &mut ForgetReport,
) -> SnapshotDecision {
    if d.keep {
        report.kept += 1;
    } else if dry_run {
        report.removed += 1;
    } else {
        let key = ObjectKind::Snapshot.key(&record.id);
        match crate::ops::prune::delete_unless_locked(repo.storage().as_ref(), &key, now) {
            Ok(()) => report.removed += 1,
            Err(e) => report.not_removed.push(e.to_string()),
        }
    }
    SnapshotDecision {
        id: record.id,
        time: record.snapshot.time,
        keep: d.keep,
        reasons: d.reasons,
    }
}
