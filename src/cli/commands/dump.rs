//! `vault dump`: a snapshot (or a path in it) as a tar archive on stdout.

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::RepoArgs;
use crate::cli::exit::ExitCode;
use vault::ops::restore;

/// `vault dump`.
#[derive(Args)]
pub struct DumpArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Snapshot id (or prefix), or `latest`.
    snapshot: String,
    /// Only this path (a file or directory) from the snapshot.
    path: Option<String>,
}

/// Runs `vault dump`; a reader that stops early (`| head`) is not an error.
pub fn run(a: DumpArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let (_, snap) = repo.find_snapshot(&a.snapshot)?;
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
