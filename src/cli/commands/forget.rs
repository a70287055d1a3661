//! `vault forget`: remove snapshots a retention policy does not keep, or
//! the ones named (owner key), optionally followed by prune.

use anyhow::{Context, Result};
use clap::Args;

use super::prune::{PruneFlags, prune_with};
use crate::cli::access::RepoArgs;
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::forget::{self, ForgetOptions};
use vault::ops::retention::KeepPolicy;
use vault::repo::select::SnapshotFilter;

/// `vault forget`.
#[derive(Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Remove these snapshots (ids, or unique prefixes of at least 4 hex
    /// digits) instead of applying a policy.
    #[arg(value_name = "ID", conflicts_with_all = [
        "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
        "keep_yearly", "keep_within", "host", "tags", "paths",
    ])]
    snapshots: Vec<String>,
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
    /// Only consider snapshots with this source: a backed-up path or a
    /// source name (repeatable: all must match).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
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
    let report = if a.snapshots.is_empty() {
        by_policy(&repo, &a)?
    } else {
        forget::forget_ids(&repo, &a.snapshots, a.dry_run, chrono::Utc::now()).context("forget")?
    };
    let pruned = if a.prune {
        Some(prune_with(&repo, &a.prune_flags, a.dry_run, a.json)?)
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

/// Applies the retention flags to the snapshots the filter flags choose.
fn by_policy(repo: &vault::repo::Repository, a: &ForgetArgs) -> Result<forget::ForgetReport> {
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
        filter: SnapshotFilter {
            host: a.host.clone(),
            tags: a.tags.clone(),
            paths: a.paths.clone(),
        },
        dry_run: a.dry_run,
    };
    forget::forget(repo, &opts, &chrono::Local, chrono::Utc::now()).context("forget")
}
