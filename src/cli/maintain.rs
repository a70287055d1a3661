//! Owner maintenance commands: prune (and forget, which can run it).

use anyhow::{Context, Result};
use clap::Args;

use super::output::{self, size};
use super::{ExitCode, RepoArgs, commands::open_repo};
use vault::prune::{self, PlanRules, PruneOptions, PruneReport};

/// Flags of `vault prune` (also used by `vault forget --prune`).
#[derive(Args, Clone)]
pub struct PruneFlags {
    /// How long a pack stays unused and marked before it is deleted; a backup
    /// running longer than this while prune runs twice could lose data.
    /// Units: s, m, h, d, w.
    #[arg(long, default_value = "24h", env = "VAULT_PRUNE_GRACE", value_parser = parse_grace)]
    pub grace: chrono::Duration,
    /// Repack a pack when more than this percentage of it is unused.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub repack_unused_percent: u8,
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

fn parse_grace(s: &str) -> Result<chrono::Duration, String> {
    vault::retention::parse_duration(s).map_err(|e| e.to_string())
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
    Ok(if report.not_deleted.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    })
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
    if !r.dry_run {
        println!(
            "wrote {} packs and {} index files, replaced {} index files, removed {} leftovers",
            r.packs_written, r.index_files_written, r.index_files_removed, r.leftovers_removed
        );
    }
    for e in &r.not_deleted {
        eprintln!("vault: not deleted (prune retries next time): {e}");
    }
}
