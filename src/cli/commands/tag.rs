//! `vault tag`: add and remove tags on existing snapshots (owner key).

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::RepoArgs;
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::tag::{self, TagOptions};

/// `vault tag`.
#[derive(Args)]
pub struct TagArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The snapshots to change (ids, or unique prefixes of at least 4 hex
    /// digits).
    #[arg(value_name = "ID", required = true)]
    snapshots: Vec<String>,
    /// Add this tag (repeatable).
    #[arg(long = "add", value_name = "TAG")]
    add: Vec<String>,
    /// Remove this tag (repeatable).
    #[arg(long = "remove", value_name = "TAG")]
    remove: Vec<String>,
    /// Only report what would change.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vault tag`; exits 1 when an old header could not be removed.
pub fn run(a: TagArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let opts = TagOptions {
        add: a.add,
        remove: a.remove,
        dry_run: a.dry_run,
    };
    let report = tag::retag(&repo, &a.snapshots, &opts, chrono::Utc::now()).context("tag")?;
    if a.json {
        render::json(&report);
    } else {
        render::maintain::tag(&report);
    }
    Ok(if report.snapshots.iter().any(|s| s.old_kept.is_some()) {
        ExitCode::Failure
    } else {
        ExitCode::Ok
    })
}
