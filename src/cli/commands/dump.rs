//! `vault dump`: a regular file's bytes, or a snapshot (or a directory in
//! it) as a tar archive, on stdout.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::{ExitCode, usage};
use vault::format::tree::NodeKind;
use vault::ops::restore;

/// `vault dump`.
#[derive(Args)]
pub struct DumpArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Snapshot id (or prefix), or `latest` (the newest that --host, --tag
    /// and --path let through).
    snapshot: String,
    /// Only this path from the snapshot: a regular file is written as it
    /// is (`vault dump latest db/app.dump | pg_restore …`), a directory as
    /// a tar archive.
    path: Option<String>,
}

/// Runs `vault dump`; a reader that stops early (`| head`) is not an error.
pub fn run(a: DumpArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let (_, snap) = vault::repo::select::find(&repo, &a.snapshot, &a.select.filter())?;
    let entry = match a.path.as_deref() {
        Some(p) => restore::find_entry(&repo, &snap, p)?,
        None => None,
    };
    let named_root = a
        .path
        .as_deref()
        .is_some_and(|p| p.trim_matches('/').is_empty());
    if let (Some(p), None) = (a.path.as_deref(), &entry)
        && !named_root
    {
        // Nothing is written: not even an empty archive.
        return Err(vault::Error::NotFound(format!(
            "{p:?} is not in the snapshot (`vault ls` lists it)"
        ))
        .into());
    }
    let stdout = std::io::stdout().lock();
    if let (Some(p), Some(node)) = (a.path.as_deref(), &entry)
        && node.kind == NodeKind::File
    {
        restore::write_file(&repo, p, node, std::io::BufWriter::new(stdout))
            .context("dump failed")?;
        return Ok(ExitCode::Ok);
    }
    if stdout.is_terminal() {
        usage!(
            "vault dump writes a tar archive: redirect it to a file (> dump.tar) or a \
             program (| tar -tv)"
        );
    }
    restore::dump_tar(
        &repo,
        &snap,
        a.path.as_deref(),
        std::io::BufWriter::new(stdout),
    )
    .context("dump failed")?;
    Ok(ExitCode::Ok)
}
