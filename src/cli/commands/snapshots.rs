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
    let set = repo.verified_snapshots()?;
    for e in &set.damaged {
        render::warning(&e.to_string());
    }
    for (r, why) in set.untrusted() {
        render::warning(&format!(
            "snapshot {} does not count for latest, retention, drills or status: {why}",
            r.id.short()
        ));
    }
    if a.json {
        render::snapshots::json(&set.records);
    } else {
        render::snapshots::table(&set.records);
    }
    Ok(if set.damaged.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Damage
    })
}
