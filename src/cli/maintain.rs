//! Owner maintenance commands: forget and prune.

use anyhow::{Context, Result};
use clap::Args;

use super::output::sanitize;
use super::output::{self, size};
use super::{ExitCode, RepoArgs, commands::open_repo};
use vault::ops::forget::{self, ForgetOptions, ForgetReport};
use vault::ops::prune::{self, PlanRules, PruneOptions, PruneReport};
use vault::ops::retention::KeepPolicy;

/// Flags of `vault prune` (also used by `vault forget --prune`).
#[derive(Args, Clone)]
pub struct PruneFlags {
    /// How long a pack stays unused and marked before it is deleted; a backup
    /// running longer than this while prune runs twice could lose data.
    /// Units: s, h, d, w, m (30 days), y.
    #[arg(long, default_value = "24h", env = "VAULT_PRUNE_GRACE", value_parser = super::status::parse_span)]
    pub grace: chrono::Duration,
    /// Repack a pack when more than this percentage of it is unused.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub repack_unused_percent: u8,
    /// Delete snapshot headers and index files that vault provably did not
    /// write (intact, yet not sealed to the repository owner key or not a
    /// vault document: planted through the storage). Without it prune only
    /// skips and lists them.
    #[arg(long)]
    pub remove_foreign: bool,
}

/// `vault prune`.
#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    flags: PruneFlags,
    /// Only report what would be done.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_within(s: &str) -> Result<chrono::Duration, String> {
    vault::ops::retention::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs `vault prune`.
pub fn prune(a: PruneArgs) -> Result<ExitCode> {
    let repo = open_repo(&a.repo)?;
    let report = run_prune(&repo, &a.flags, a.dry_run)?;
    if a.json {
        output::json(&report);
    } else {
        print_prune(&report);
    }
    Ok(
        if report.not_deleted.is_empty() && report.object_lock.problems.is_empty() {
            ExitCode::Ok
        } else {
            ExitCode::Failure
        },
    )
}

/// Runs prune with `flags` on an open repository.
pub fn run_prune(
    repo: &vault::repo::Repository,
    flags: &PruneFlags,
    dry_run: bool,
) -> Result<PruneReport> {
    let opts = PruneOptions {
        rules: PlanRules {
            grace: flags.grace,
            repack_unused_fraction: flags.repack_unused_percent as f64 / 100.0,
            now: chrono::Utc::now(),
        },
        dry_run,
        remove_foreign: flags.remove_foreign,
    };
    prune::prune(repo, &opts).context("prune")
}

/// Prints a prune report for humans.
pub fn print_prune(r: &PruneReport) {
    let p = &r.plan;
    let verb = if r.dry_run { "would" } else { "did" };
    println!(
        "{} snapshots need {} blobs in {} of {} packs ({})",
        r.snapshots,
        r.blobs_referenced,
        p.packs_in_use + p.packs_repacked + p.packs_unmarked,
        p.packs,
        size(p.bytes)
    );
    println!(
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
        "verified {} packs blob by blob; dropped {} index entries no pack holds",
        r.packs_verified, r.claims_dropped
    );
    if !r.dry_run {
        println!(
            "wrote {} packs and {} index files, replaced {} index files, removed {} leftovers",
            r.packs_written, r.index_files_written, r.index_files_removed, r.leftovers_removed
        );
    }
    for f in &r.foreign {
        eprintln!("vault: skipped: {}", sanitize(f));
    }
    if !r.foreign.is_empty() {
        if r.foreign_removed > 0 {
            println!("removed {} objects vault did not write", r.foreign_removed);
        } else if !r.dry_run {
            println!(
                "{} objects vault did not write were skipped; `vault prune --remove-foreign` \
                 deletes them",
                r.foreign.len()
            );
        }
    }
    let l = &r.object_lock;
    if l.objects_checked > 0 {
        println!(
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

/// `vault forget`.
#[derive(Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Keep the N newest snapshots.
    #[arg(long, default_value_t = 0, env = "VAULT_KEEP_LAST")]
    keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, default_value_t = 0, env = "VAULT_KEEP_HOURLY")]
    keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, default_value_t = 0, env = "VAULT_KEEP_DAILY")]
    keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, default_value_t = 0, env = "VAULT_KEEP_WEEKLY")]
    keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, default_value_t = 0, env = "VAULT_KEEP_MONTHLY")]
    keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, default_value_t = 0, env = "VAULT_KEEP_YEARLY")]
    keep_yearly: u32,
    /// Keep every snapshot newer than this (e.g. 7d, 2w).
    #[arg(long, env = "VAULT_KEEP_WITHIN", value_parser = parse_within)]
    keep_within: Option<chrono::Duration>,
    /// Only consider snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// Only consider snapshots with this tag (repeatable: all must match).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only report what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    prune_flags: PruneFlags,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vault forget`.
pub fn forget(a: ForgetArgs) -> Result<ExitCode> {
    let repo = open_repo(&a.repo)?;
    let opts = ForgetOptions {
        policy: KeepPolicy {
            last: a.keep_last,
            hourly: a.keep_hourly,
            daily: a.keep_daily,
            weekly: a.keep_weekly,
            monthly: a.keep_monthly,
            yearly: a.keep_yearly,
            within: a.keep_within,
        },
        host: a.host.clone(),
        tags: a.tags.clone(),
        dry_run: a.dry_run,
    };
    let report =
        forget::forget(&repo, &opts, &chrono::Local, chrono::Utc::now()).context("forget")?;
    let pruned = if a.prune {
        Some(run_prune(&repo, &a.prune_flags, a.dry_run)?)
    } else {
        None
    };
    if a.json {
        output::json(&serde_json::json!({ "forget": report, "prune": pruned }));
    } else {
        print_forget(&report);
        if let Some(p) = &pruned {
            print_prune(p);
        }
    }
    let failed = !report.not_removed.is_empty()
        || pruned.as_ref().is_some_and(|p| !p.not_deleted.is_empty());
    Ok(if failed {
        ExitCode::Failure
    } else {
        ExitCode::Ok
    })
}

fn print_forget(r: &ForgetReport) {
    for g in &r.groups {
        println!(
            "host {}, sources {}:",
            sanitize(&g.host),
            sanitize(&g.sources.join(", "))
        );
        for s in &g.snapshots {
            println!(
                "  {:<6}  {}  {}  {}",
                if s.keep { "keep" } else { "remove" },
                s.id.short(),
                s.time
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S %z"),
                s.reasons.join(", ")
            );
        }
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!("kept {} snapshots, {verb} {}", r.kept, r.removed);
    for e in &r.not_removed {
        eprintln!("vault: not removed: {e}");
    }
}
