//! `vault completions SHELL`: a shell completion script.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use crate::cli::exit::ExitCode;
use crate::cli::{Cli, render};

/// `vault completions`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell, e.g. `vault completions bash > /etc/bash_completion.d/vault`.
    shell: clap_complete::Shell,
}

/// Prints the completion script for the shell asked for.
pub fn run(a: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "vault", &mut script);
    render::raw(&script).context("writing the completion script")?;
    Ok(ExitCode::Ok)
}
