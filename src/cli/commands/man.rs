//! `vault man`: the manual page, or one page per command.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use crate::cli::exit::ExitCode;
use crate::cli::{Cli, render};

/// `vault man`.
#[derive(Args)]
pub struct ManArgs {
    /// Write vault.1 and vault-COMMAND.1 pages here (e.g. /usr/local/share/man/man1).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

/// Prints `vault(1)`, or writes every page to `--output`.
pub fn run(a: ManArgs) -> Result<ExitCode> {
    let cmd = Cli::command();
    match a.output {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            render::raw(&page).context("writing the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing manual pages to {}", dir.display()))?;
            println!("wrote manual pages to {}", dir.display());
        }
    }
    Ok(ExitCode::Ok)
}
