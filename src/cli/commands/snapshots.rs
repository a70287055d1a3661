//! `vault snapshots`: list the snapshots.

use anyhow::Result;
use clap::Args;

use crate::cli::access::RepoArgs;
use crate::cli::exit::ExitCode;
use crate::cli::render;

/// `vault snapshots`.
#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vault snapshots`; exits 4 when a snapshot header is damaged.
pub fn run(a: SnapshotsArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let (list, damaged) = repo.snapshots()?;
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
