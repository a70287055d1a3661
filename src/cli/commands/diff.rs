//! `vault diff`: what changed between two snapshots.

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::ExitCode;
use crate::cli::render;

/// `vault diff`.
#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// The first snapshot: an id (or prefix), or `latest` (the newest that
    /// --host, --tag and --path let through).
    from: String,
    /// The second snapshot, chosen the same way.
    to: String,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

/// Runs `vault diff`: one line per changed path, then a summary; exit 0
/// whether or not anything changed, 4 when a tree cannot be read.
pub fn run(a: DiffArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let filter = a.select.filter();
    let (from_id, from) = vault::repo::select::find(&repo, &a.from, &filter)
        .with_context(|| format!("first snapshot {}", a.from))?;
    let (to_id, to) = vault::repo::select::find(&repo, &a.to, &filter)
        .with_context(|| format!("second snapshot {}", a.to))?;
    let (index, _) = repo.load_index()?;
    let mut changes = Vec::new();
    let summary = vault::ops::diff::diff(&repo, &index, &from, &to, &mut |d| {
        if a.json {
            changes.push(render::diff::json_change(&d));
        } else {
            outln!("{}", render::diff::line(&d));
        }
        Ok(())
    })
    .with_context(|| format!("comparing {} with {}", from_id.short(), to_id.short()))?;
    if a.json {
        render::diff::json(&from_id, &to_id, changes, &summary);
    } else {
        outln!("{}", render::diff::summary(&summary));
    }
    Ok(ExitCode::Ok)
}
