//! `vault dump`: a snapshot (or a path in it) as a tar archive on stdout.

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::ExitCode;
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
    /// Only this path (a file or directory) from the snapshot.
    path: Option<String>,
}

/// Runs `vault dump`; a reader that stops early (`| head`) is not an error.
pub fn run(a: DumpArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let (_, snap) = vault::repo::select::find(&repo, &a.snapshot, &a.select.filter())?;
    let stdout = std::io::stdout().lock();
    match restore::dump_tar(
        &repo,
        &snap,
        a.path.as_deref(),
        std::io::BufWriter::new(stdout),
    ) {
        Err(vault::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::Ok)
        }
        other => other.map(|_| ExitCode::Ok).context("dump failed"),
    }
}
