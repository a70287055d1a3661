//! `vault ls`: list the files in a snapshot.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::repo::treewalk::{self, Next, Visit};

/// `vault ls`.
#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Snapshot id (or prefix), or `latest` (the newest that --host, --tag
    /// and --path let through).
    snapshot: String,
    /// Only list this path and what is below it.
    path: Option<String>,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
}

/// Runs `vault ls`; exits 4 when part of the tree is damaged.
pub fn run(a: LsArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let (_, snap) = vault::repo::select::find(&repo, &a.snapshot, &a.select.filter())?;
    let (index, _) = repo.load_index()?;
    let prefix = a
        .path
        .as_deref()
        .map(|p| PathBuf::from(p.trim_matches('/')))
        .filter(|p| !p.as_os_str().is_empty());
    let mut damaged = false;
    // Every entry counts against the header's totals: a tree reusing its
    // subtrees cannot list 2^depth entries, nor one blob millions.
    let mut walker =
        treewalk::Walker::new(&repo, &index)?.with_budget(treewalk::Budget::of(&snap.totals));
    walker.walk(&snap.root, &mut |v| {
        let (path, node) = match v {
            Visit::Entry { path, node } => (path, node),
            Visit::Leave { .. } => return Ok(Next::Descend),
            Visit::Damaged { path, error } => {
                damaged = true;
                render::error_line(&format!(
                    "/{}: {error}",
                    vault::format::escape::escape_bytes(path.as_os_str().as_bytes())
                ));
                return Ok(Next::Skip);
            }
        };
        if let Some(p) = &prefix
            && !path.starts_with(p)
        {
            return Ok(if p.starts_with(path) {
                Next::Descend
            } else {
                Next::Skip
            });
        }
        let line = if a.json {
            render::ls::json_line(path, node)
        } else {
            render::ls::line(path, node)
        };
        outln!("{line}");
        Ok(Next::Descend)
    })?;
    Ok(if damaged {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    })
}
