//! `vault prune`: repack mostly-empty packs and delete packs no snapshot
//! needs (owner key).

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::RepoArgs;
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::prune::{self, PlanRules, PruneOptions, PruneReport};
use vault::repo::Repository;

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

/// Runs `vault prune`; exits 1 when something could not be deleted.
pub fn run(a: PruneArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let report = prune_with(&repo, &a.flags, a.dry_run, a.json)?;
    if a.json {
        render::json(&report);
    } else {
        render::maintain::prune(&report);
    }
    Ok(
        if report.not_deleted.is_empty() && report.object_lock.problems.is_empty() {
            ExitCode::Ok
        } else {
            ExitCode::Failure
        },
    )
}

/// Runs prune with `flags` on an open repository, drawing its progress on a
/// terminal unless `quiet` (`--json`).
pub fn prune_with(
    repo: &Repository,
    flags: &PruneFlags,
    dry_run: bool,
    quiet: bool,
) -> Result<PruneReport> {
    let progress = std::sync::Arc::new(vault::ops::progress::Progress::default());
    let opts = PruneOptions {
        rules: PlanRules {
            grace: flags.grace,
            repack_unused_fraction: flags.repack_unused_percent as f64 / 100.0,
            now: chrono::Utc::now(),
        },
        dry_run,
        remove_foreign: flags.remove_foreign,
        progress: Some(progress.clone()),
    };
    let meter = crate::cli::progress::Meter::start(&progress, quiet);
    let report = prune::prune(repo, &opts).context("prune");
    drop(meter);
    report
}
