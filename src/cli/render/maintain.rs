//! `vault forget` and `vault prune` output.

use super::{count, plural, sanitize, size};
use vault::ops::forget::ForgetReport;
use vault::ops::prune::PruneReport;
use vault::ops::tag::TagReport;

/// Prints a prune report for humans.
pub fn prune(r: &PruneReport) {
    let p = &r.plan;
    let verb = if r.dry_run { "would" } else { "did" };
    outln!(
        "{} {} {} in {} of {} ({})",
        count(r.snapshots, "snapshot"),
        if r.snapshots == 1 { "needs" } else { "need" },
        count(r.blobs_referenced, "blob"),
        p.packs_in_use + p.packs_repacked + p.packs_unmarked,
        count(p.packs, "pack"),
        size(p.bytes)
    );
    outln!(
        "prune {verb}: repack {} ({}), mark {} unused, delete {} ({}); \
         {} marked {} for the grace period, {} needed again and unmarked",
        count(p.packs_repacked, "pack"),
        count(p.blobs_copied, "blob"),
        count(p.packs_newly_marked, "pack"),
        count(p.packs_deleted, "pack"),
        size(p.bytes_deleted),
        count(p.packs_waiting, "pack"),
        if p.packs_waiting == 1 {
            "waits"
        } else {
            "wait"
        },
        plural(p.packs_unmarked, "pack was", "packs were"),
    );
    outln!(
        "verified {} in {}; {} no pack holds {} dropped",
        plural(r.entries_verified, "new index entry", "new index entries"),
        count(r.packs_verified, "pack"),
        plural(r.claims_dropped, "index entry", "index entries"),
        if r.claims_dropped == 1 { "was" } else { "were" },
    );
    if !r.dry_run {
        outln!(
            "wrote {} and {}, replaced {}, removed {}",
            count(r.packs_written, "pack"),
            count(r.index_files_written, "index file"),
            count(r.index_files_removed, "index file"),
            count(r.leftovers_removed, "leftover")
        );
    }
    for f in &r.foreign {
        super::warning(&format!("skipped: {f}"));
    }
    if r.foreign_removed > 0 {
        outln!(
            "removed {} vault did not write",
            count(r.foreign_removed, "object")
        );
    } else if !r.foreign.is_empty() && !r.dry_run {
        outln!(
            "{} vault did not write {} skipped; `vault prune --remove-foreign` deletes them",
            count(r.foreign.len() as u64, "object"),
            if r.foreign.len() == 1 { "was" } else { "were" }
        );
    }
    for u in &r.untrusted {
        super::warning(u);
    }
    if r.untrusted_removed > 0 {
        outln!(
            "removed {}",
            count(r.untrusted_removed, "untrusted snapshot header")
        );
    } else if !r.untrusted.is_empty() {
        outln!(
            "{} {} not count (untrusted); `vault prune --remove-foreign` deletes {}",
            count(r.untrusted.len() as u64, "snapshot header"),
            if r.untrusted.len() == 1 { "does" } else { "do" },
            if r.untrusted.len() == 1 { "it" } else { "them" }
        );
    }
    let l = &r.object_lock;
    if l.objects_checked > 0 {
        outln!(
            "Object Lock: {} checked, retention {} for {}",
            count(l.objects_checked, "object"),
            if r.dry_run {
                "would be lengthened"
            } else {
                "lengthened"
            },
            count(l.locks_extended, "object")
        );
    }
    for e in &l.problems {
        super::warning(&format!("Object Lock upkeep: {e}"));
    }
    for e in &r.not_deleted {
        super::warning(&format!("not deleted (prune retries next time): {e}"));
    }
}

/// Prints a forget report: each group, what is kept and why.
pub fn forget(r: &ForgetReport) {
    for g in &r.groups {
        outln!(
            "host {}, sources {}:",
            sanitize(&g.host),
            sanitize(&g.sources.join(", "))
        );
        for s in &g.snapshots {
            outln!(
                "  {:<6}  {}  {}  {}",
                if s.keep { "keep" } else { "remove" },
                s.id.short(),
                super::time(s.time),
                s.reasons.join(", ")
            );
        }
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    outln!("kept {}, {verb} {}", count(r.kept, "snapshot"), r.removed);
    for e in &r.not_removed {
        super::warning(&format!("not removed: {e}"));
    }
}

/// Prints a tag report: each snapshot's tags before and after.
pub fn tag(r: &TagReport) {
    let list = |t: &[String]| {
        if t.is_empty() {
            "(none)".to_owned()
        } else {
            sanitize(&t.join(","))
        }
    };
    for s in &r.snapshots {
        let what = match (&s.new, s.before == s.after, r.dry_run) {
            (_, true, _) => format!("{}  unchanged  {}", s.old.short(), list(&s.after)),
            (_, false, true) => format!(
                "{}  would retag  {} -> {}",
                s.old.short(),
                list(&s.before),
                list(&s.after)
            ),
            (Some(new), false, false) => format!(
                "{} -> {}  {} -> {}",
                s.old.short(),
                new.short(),
                list(&s.before),
                list(&s.after)
            ),
            (None, false, false) => format!("{}  not changed", s.old.short()),
        };
        outln!("{what}");
        if s.drills_carried > 0 {
            outln!(
                "  {} carried to the new id",
                count(s.drills_carried, "drill record")
            );
        }
        if let Some(e) = &s.old_kept {
            super::warning(&format!(
                "the old header {} stays (both ids show the same snapshot): {e}",
                s.old.short()
            ));
        }
    }
}
