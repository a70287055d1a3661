//! `vault stats`: the size of the repository or of some snapshots, and
//! what deduplication and compression save.

use anyhow::Result;
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::{ExitCode, usage};
use crate::cli::render;

/// `vault stats`.
#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Count these snapshots from their trees (ids, prefixes or `latest`;
    /// owner key). Without them, --host/--tag/--path count every snapshot
    /// they let through; with neither, the whole repository is counted from
    /// its index and snapshot headers alone (any key).
    snapshots: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vault stats`; exits 4 when a snapshot's tree cannot be read or a
/// blob it needs is not indexed.
pub fn run(a: StatsArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let filter = a.select.filter();
    let stats = if a.snapshots.is_empty() && filter.is_empty() {
        let set = repo.verified_snapshots()?;
        for e in &set.damaged {
            render::warning(&e.to_string());
        }
        vault::ops::stats::repository(&repo, &set.usable())?
    } else {
        let mut chosen = Vec::new();
        if a.snapshots.is_empty() {
            chosen = repo.verified_snapshots()?.usable();
            chosen.retain(|(_, s)| filter.matches(s));
            if chosen.is_empty() {
                usage!(
                    "no snapshot matches{} (`vault snapshots` lists them)",
                    filter.describe()
                );
            }
        }
        for spec in &a.snapshots {
            let found = vault::repo::select::find(&repo, spec, &filter)?;
            if !chosen.iter().any(|(id, _)| *id == found.0) {
                chosen.push(found);
            }
        }
        let (index, _) = repo.load_index()?;
        vault::ops::stats::snapshots(&repo, &index, &chosen)?
    };
    if a.json {
        render::json(&stats);
    } else {
        render::stats::table(&stats);
    }
    Ok(if stats.missing_blobs > 0 {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    })
}
