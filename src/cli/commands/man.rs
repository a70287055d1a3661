//! `vault man`: the manual pages: vault(1) with its EXIT STATUS,
//! ENVIRONMENT, FILES and EXAMPLES, one page per command, and vault.toml(5).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use crate::cli::exit::ExitCode;
use crate::cli::{Cli, manual, render};

/// `vault man`.
#[derive(Args)]
pub struct ManArgs {
    /// Write vault.1 and vault-COMMAND.1 pages here (e.g.
    /// /usr/local/share/man/man1), and vault.toml.5 beside them in ../man5
    /// (here when this directory is not named man1).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// The page to print: `vault` (vault(1)) or `vault.toml` (vault.toml(5)).
    #[arg(value_parser = ["vault", "vault.toml"], default_value = "vault")]
    page: String,
}

/// vault(1): clap's sections, then vault's own before VERSION.
fn vault_page() -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend_from_slice(manual::vault_sections().as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Where vault.toml.5 goes for `--output DIR`.
fn section5_dir(dir: &Path) -> PathBuf {
    match (dir.file_name(), dir.parent()) {
        (Some(n), Some(parent)) if n == "man1" => parent.join("man5"),
        _ => dir.to_owned(),
    }
}

/// Prints a page, or writes every page to `--output`.
pub fn run(a: ManArgs) -> Result<ExitCode> {
    let config_page = manual::config_page(env!("CARGO_PKG_VERSION"));
    let Some(dir) = a.output else {
        let page = if a.page == "vault.toml" {
            config_page.into_bytes()
        } else {
            vault_page()?
        };
        render::raw(&page).context("writing the manual page")?;
        return Ok(ExitCode::Ok);
    };
    let five = section5_dir(&dir);
    for d in [&dir, &five] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &dir)
        .with_context(|| format!("writing manual pages to {}", dir.display()))?;
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write(dir.join("vault.1"), &vault_page()?)?;
    write(five.join("vault.toml.5"), config_page.as_bytes())?;
    outln!(
        "wrote manual pages to {} and vault.toml.5 to {}",
        dir.display(),
        five.display()
    );
    Ok(ExitCode::Ok)
}
