//! `vault forget`: remove snapshots a retention policy does not keep
//! (owner key), optionally followed by prune.

use anyhow::{Context, Result};
use clap::Args;

use super::prune::{PruneFlags, prune_with};
use crate::cli::access::RepoArgs;
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::forget::{self, ForgetOptions};
use vault::ops::retention::KeepPolicy;

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

fn parse_within(s: &str) -> Result<chrono::Duration, String> {
    vault::ops::retention::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs `vault forget`; exits 1 when something could not be removed.
pub fn run(a: ForgetArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
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
        Some(prune_with(&repo, &a.prune_flags, a.dry_run)?)
    } else {
        None
    };
    if a.json {
        render::json(&serde_json::json!({ "forget": report, "prune": pruned }));
    } else {
        render::maintain::forget(&report);
        if let Some(p) = &pruned {
            render::maintain::prune(p);
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
