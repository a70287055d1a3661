//! `vault snapshots`: list the snapshots.

use anyhow::Result;
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::ExitCode;
use crate::cli::render;

/// `vault snapshots`.
#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vault snapshots`; exits 4 when a snapshot header is damaged.
pub fn run(a: SnapshotsArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let (mut list, damaged) = repo.snapshots()?;
    let filter = a.select.filter();
    list.retain(|(_, s)| filter.matches(s));
    for e in &damaged {
        render::warning(&e.to_string());
    }
    if a.json {
        render::snapshots::json(&list);
    } else {
        render::snapshots::table(&list);
    }
    Ok(if damaged.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Damage
    })
}
