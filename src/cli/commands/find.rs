//! `vault find`: entries matching a glob in every snapshot the filters let
//! through.

use anyhow::Result;
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::find::{Found, Pattern};

/// `vault find`.
#[derive(Args)]
pub struct FindArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// A glob on entry names (`*.conf`), or on whole paths when it holds a
    /// `/` (`/etc/**/nginx*`: `*` stays within a directory, `**` crosses
    /// them). Quote it so the shell does not expand it.
    pattern: String,
    /// Only these snapshots (an id, a prefix or `latest`; repeatable)
    /// [default: every snapshot the filters let through, newest first].
    #[arg(long = "snapshot", short = 's', value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Match letters of either case.
    #[arg(long)]
    ignore_case: bool,
    /// Print JSON lines, one per match.
    #[arg(long)]
    json: bool,
}

/// Runs `vault find`; exit 0 with or without matches, 4 when a tree cannot
/// be read.
pub fn run(a: FindArgs) -> Result<ExitCode> {
    let pattern = Pattern::new(&a.pattern, a.ignore_case)?;
    let repo = a.repo.open()?;
    let filter = a.select.filter();
    let mut snapshots = Vec::new();
    if a.snapshots.is_empty() {
        snapshots = repo.verified_snapshots()?.usable();
        snapshots.retain(|(_, s)| filter.matches(s));
        snapshots.reverse();
    } else {
        for spec in &a.snapshots {
            let found = vault::repo::select::find(&repo, spec, &filter)?;
            if !snapshots.iter().any(|(id, _)| *id == found.0) {
                snapshots.push(found);
            }
        }
    }
    if snapshots.is_empty() {
        render::warning(&format!(
            "no snapshot to search{}",
            if filter.is_empty() {
                String::new()
            } else {
                format!(" matches{}", filter.describe())
            }
        ));
        return Ok(ExitCode::Ok);
    }
    let (index, _) = repo.load_index()?;
    let summary = vault::ops::find::find(&repo, &index, &snapshots, &pattern, &mut |f| {
        match f {
            Found::Match {
                snapshot,
                header,
                path,
                node,
            } => {
                if a.json {
                    outln!("{}", render::find::json_line(snapshot, header, path, node));
                } else {
                    outln!("{}", render::find::line(snapshot, path, node));
                }
            }
            Found::Damaged {
                snapshot,
                path,
                error,
            } => render::error_line(&format!(
                "snapshot {}: {}: {error}",
                snapshot.short(),
                render::find::shown(path)
            )),
        }
        Ok(())
    })?;
    if !a.json {
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("{}\n", render::find::summary(&summary)),
        );
    }
    Ok(if summary.damaged > 0 {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    })
}
