//! `vault tag`: add and remove tags on existing snapshots (owner key).
//!
//! A snapshot header is signed and content-addressed (its id is the hash of
//! the sealed object), so a header cannot be edited: a tag change writes a
//! new header, owner-signed, with every other field as it was, then
//! removes the old one. The order makes a crash safe: until the old header
//! is gone both exist (the same data under two ids, never none), and a
//! second run finds the header it already wrote instead of adding another.
//! Drill records that proved the old header are re-issued for the new one
//! (same time, host and counts; the tree they proved is the same), so a
//! retag neither loses a series' "last drill" nor its forget protection.
//!
//! Only the owner key may retag. The writer key (and a host key) can add
//! headers for its own series but not sign as the owner, and a retagged
//! header is owner-signed: letting a writer retag would let it launder
//! another host's header under the owner's signature. Headers that do not
//! count ([`crate::repo::trust`]) are refused for the same reason.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::drill::DrillRecord;
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::repo::select::resolve_ids;
use crate::repo::trust::{Signer, SnapshotRecord};
use crate::repo::{ObjectKind, Repository};

/// What to change.
#[derive(Debug, Clone, Default)]
pub struct TagOptions {
    /// Tags to add (kept in order, duplicates ignored).
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Only report what would change.
    pub dry_run: bool,
}

/// One snapshot's change.
#[derive(Debug, Clone, Serialize)]
pub struct Retagged {
    /// The header as it was.
    pub old: SnapshotId,
    /// The header with the new tags (`None` when unchanged or a dry run).
    pub new: Option<SnapshotId>,
    /// The tags before.
    pub before: Vec<String>,
    /// The tags after.
    pub after: Vec<String>,
    /// Drill records re-issued for the new header.
    pub drills_carried: u64,
    /// Why the old header is still there, if it is (Object Lock).
    pub old_kept: Option<String>,
}

/// What `vault tag` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TagReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// One entry per named snapshot.
    pub snapshots: Vec<Retagged>,
}

/// Whether `tag` may be stored as a tag: non-empty, no commas or control
/// characters (the same rule as `backup --tag` and `[backup] tags`).
pub fn tag_problem(tag: &str) -> Option<String> {
    if tag.trim().is_empty() || tag.contains(',') || tag.chars().any(char::is_control) {
        Some(format!(
            "tag {tag:?}: a tag must be non-empty, without commas or control characters"
        ))
    } else {
        None
    }
}

/// Changes the tags of the snapshots `specs` name. Everything is checked
/// (tags, ids, trust) before anything is written.
pub fn retag(
    repo: &Repository,
    specs: &[String],
    opts: &TagOptions,
    now: DateTime<Utc>,
) -> Result<TagReport> {
    repo.keys().require_owner("tag")?;
    check_options(opts)?;
    let ids = resolve_ids(repo, specs)?;
    let set = repo.verified_snapshots()?;
    let chosen = counting_records(&set.records, &ids)?;
    let drills = repo.verified_drills()?;
    let mut report = TagReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    for r in chosen {
        let after = new_tags(&r.snapshot.tags, opts);
        let mut entry = Retagged {
            old: r.id,
            new: None,
            before: r.snapshot.tags.clone(),
            after: after.clone(),
            drills_carried: 0,
            old_kept: None,
        };
        if after == r.snapshot.tags || opts.dry_run {
            report.snapshots.push(entry);
            continue;
        }
        let new = write_retagged(repo, &set.records, r, after)?;
        entry.drills_carried = carry_drills(repo, &drills.usable, r.id, new)?;
        // Last: the new header (and its drills) are stored before the old
        // one goes.
        let key = ObjectKind::Snapshot.key(&r.id);
        if let Err(e) = crate::ops::prune::delete_unless_locked(repo.storage().as_ref(), &key, now)
        {
            entry.old_kept = Some(e.to_string());
        }
        entry.new = Some(new);
        report.snapshots.push(entry);
    }
    Ok(report)
}

/// Refuses options that change nothing, a tag that may not be stored, or
/// a tag both added and removed.
fn check_options(opts: &TagOptions) -> Result<()> {
    if opts.add.is_empty() && opts.remove.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to change: give --add TAG and/or --remove TAG".into(),
        ));
    }
    if let Some(p) = opts
        .add
        .iter()
        .chain(&opts.remove)
        .find_map(|t| tag_problem(t))
    {
        return Err(Error::InvalidInput(p));
    }
    if let Some(t) = opts.add.iter().find(|t| opts.remove.contains(t)) {
        return Err(Error::InvalidInput(format!(
            "tag {t:?} is both added and removed"
        )));
    }
    Ok(())
}

/// The records of `ids`, each readable and counting; otherwise an error
/// naming the first that is not (nothing is changed).
fn counting_records<'a>(
    records: &'a [SnapshotRecord],
    ids: &[SnapshotId],
) -> Result<Vec<&'a SnapshotRecord>> {
    let mut chosen = Vec::new();
    for id in ids {
        let Some(r) = records.iter().find(|r| r.id == *id) else {
            return Err(Error::InvalidInput(format!(
                "snapshot {}: its header cannot be read, so it cannot be retagged (`vault \
                 check` says why); nothing was changed",
                id.short()
            )));
        };
        if let crate::repo::trust::Trust::Untrusted(why) = &r.trust {
            return Err(Error::InvalidInput(format!(
                "snapshot {} does not count ({why}): retagging would sign it as the owner; \
                 nothing was changed (`vault forget {}` removes it)",
                id.short(),
                id.short()
            )));
        }
        chosen.push(r);
    }
    Ok(chosen)
}

/// `before` without the removed tags, then the added ones not already
/// there, in order.
fn new_tags(before: &[String], opts: &TagOptions) -> Vec<String> {
    let mut after: Vec<String> = before
        .iter()
        .filter(|t| !opts.remove.contains(t))
        .cloned()
        .collect();
    for t in &opts.add {
        if !after.contains(t) {
            after.push(t.clone());
        }
    }
    after
}

/// Stores `r`'s header exactly as written, with its own time (not the
/// upload-bounded one), and only the tags changed to `tags`, owner-signed;
/// or finds the copy an interrupted earlier run stored. Returns its id.
fn write_retagged(
    repo: &Repository,
    records: &[SnapshotRecord],
    r: &SnapshotRecord,
    tags: Vec<String>,
) -> Result<SnapshotId> {
    let mut header: Snapshot = r.snapshot.clone();
    header.time = r.recorded_time;
    header.tags = tags;
    Ok(match existing_copy(records, r.id, &header) {
        Some(id) => id,
        None => SnapshotId(repo.put_signed_json(ObjectKind::Snapshot, &header)?),
    })
}

/// Re-issues, owner-signed, each counting drill record of `old` for `new`
/// (same time, host and counts), unless one is already there; returns how
/// many were written.
fn carry_drills(
    repo: &Repository,
    drills: &[DrillRecord],
    old: SnapshotId,
    new: SnapshotId,
) -> Result<u64> {
    let mut carried = 0;
    for d in drills.iter().filter(|d| d.snapshot == old) {
        let already = drills
            .iter()
            .any(|x| x.snapshot == new && x.time == d.time && x.host == d.host);
        if !already {
            let mut copy = d.clone();
            copy.snapshot = new;
            repo.put_signed_json(ObjectKind::Drill, &copy)?;
            carried += 1;
        }
    }
    Ok(carried)
}

/// An owner-signed header other than `old` whose content is `want`: what
/// an interrupted earlier run of the same change wrote.
fn existing_copy(
    records: &[SnapshotRecord],
    old: SnapshotId,
    want: &Snapshot,
) -> Option<SnapshotId> {
    let want = serde_json::to_value(want).ok()?;
    records
        .iter()
        .filter(|r| r.id != old && r.signer == Signer::Owner)
        .find(|r| {
            let mut s = r.snapshot.clone();
            s.time = r.recorded_time;
            serde_json::to_value(&s).ok().as_ref() == Some(&want)
        })
        .map(|r| r.id)
}
