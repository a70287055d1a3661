//! `vault forget` and `vault prune` output.

use super::{sanitize, size};
use vault::ops::forget::ForgetReport;
use vault::ops::prune::PruneReport;
use vault::ops::tag::TagReport;

/// Prints a prune report for humans.
pub fn prune(r: &PruneReport) {
    let p = &r.plan;
    let verb = if r.dry_run { "would" } else { "did" };
    outln!(
        "{} snapshots need {} blobs in {} of {} packs ({})",
        r.snapshots,
        r.blobs_referenced,
        p.packs_in_use + p.packs_repacked + p.packs_unmarked,
        p.packs,
        size(p.bytes)
    );
    outln!(
        "prune {verb}: repack {} packs ({} blobs), mark {} unused packs, delete {} packs ({}); \
         {} marked packs wait for the grace period, {} were needed again and unmarked",
        p.packs_repacked,
        p.blobs_copied,
        p.packs_newly_marked,
        p.packs_deleted,
        size(p.bytes_deleted),
        p.packs_waiting,
        p.packs_unmarked
    );
    println!(
        "verified {} new index entries in {} packs; {} index entries no pack holds were dropped",
        r.entries_verified, r.packs_verified, r.claims_dropped
    );
    if !r.dry_run {
        outln!(
            "wrote {} packs and {} index files, replaced {} index files, removed {} leftovers",
            r.packs_written,
            r.index_files_written,
            r.index_files_removed,
            r.leftovers_removed
        );
    }
    for f in &r.foreign {
        eprintln!("vault: skipped: {}", sanitize(f));
    }
    if r.foreign_removed > 0 {
        println!("removed {} objects vault did not write", r.foreign_removed);
    } else if !r.foreign.is_empty() && !r.dry_run {
        println!(
            "{} objects vault did not write were skipped; `vault prune --remove-foreign` deletes \
             them",
            r.foreign.len()
        );
    }
    for u in &r.untrusted {
        eprintln!("vault: {}", sanitize(u));
    }
    if r.untrusted_removed > 0 {
        println!("removed {} untrusted snapshot headers", r.untrusted_removed);
    } else if !r.untrusted.is_empty() {
        println!(
            "{} snapshot headers do not count (untrusted); `vault prune --remove-foreign` deletes \
             them",
            r.untrusted.len()
        );
    }
    let l = &r.object_lock;
    if l.objects_checked > 0 {
        outln!(
            "Object Lock: {} objects checked, retention {} for {}",
            l.objects_checked,
            if r.dry_run {
                "would be lengthened"
            } else {
                "lengthened"
            },
            l.locks_extended
        );
    }
    for e in &l.problems {
        eprintln!("vault: Object Lock upkeep: {e}");
    }
    for e in &r.not_deleted {
        eprintln!("vault: not deleted (prune retries next time): {e}");
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
    outln!("kept {} snapshots, {verb} {}", r.kept, r.removed);
    for e in &r.not_removed {
        eprintln!("vault: not removed: {e}");
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
                "  {} drill record(s) carried to the new id",
                s.drills_carried
            );
        }
        if let Some(e) = &s.old_kept {
            eprintln!(
                "vault: the old header {} stays (both ids show the same snapshot): {e}",
                s.old.short()
            );
        }
    }
}
