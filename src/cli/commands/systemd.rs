//! `vault systemd`: hardened units for the nightly backup and weekly drill.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cli::exit::ExitCode;
use vault::deploy::systemd::{self, Credential, UnitOptions};

/// `vault systemd`.
#[derive(Args)]
pub struct SystemdArgs {
    /// The dedicated unprivileged user the services run as.
    #[arg(long)]
    user: String,
    /// The services' group (default: the user's primary group).
    #[arg(long)]
    group: Option<String>,
    /// Write vault-backup.{service,timer} and vault-drill.{service,timer}
    /// here (e.g. /etc/systemd/system) instead of printing them.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Replace unit files that already exist in --output.
    #[arg(long, requires = "output")]
    force: bool,
    /// The config file the services pass to vault.
    #[arg(long, default_value = "/etc/vault/vault.toml")]
    config: PathBuf,
    /// When the backup runs (systemd.time(7) calendar expression).
    #[arg(long, default_value = "daily")]
    on_calendar: String,
    /// When the restore drill runs.
    #[arg(long, default_value = "weekly")]
    drill_on_calendar: String,
    /// A path the backup reads, kept read-only for it (repeatable).
    #[arg(long = "read-path", value_name = "PATH")]
    read_paths: Vec<PathBuf>,
    /// A path the services may write, such as a local repository (repeatable).
    #[arg(long = "write-path", value_name = "PATH")]
    write_paths: Vec<PathBuf>,
    /// A root-owned file handed over with LoadCredential= (repeatable):
    /// writer.key, owner.key, passphrase, aws and pgpass are wired to vault's
    /// environment. Default: writer.key:/etc/vault/writer.key and
    /// owner.key:/etc/vault/owner.key.
    #[arg(long = "credential", value_name = "NAME:PATH")]
    credentials: Vec<Credential>,
    /// The vault binary for ExecStart= (default: this one).
    #[arg(long, value_name = "PATH")]
    vault_bin: Option<PathBuf>,
}

/// Runs `vault systemd`: prints the units, or writes them to `--output`.
pub fn run(a: SystemdArgs) -> Result<ExitCode> {
    let vault_bin = match a.vault_bin {
        Some(p) => p,
        None => std::env::current_exe().context("finding this vault binary (pass --vault-bin)")?,
    };
    let units = systemd::render(&UnitOptions {
        vault_bin,
        user: a.user,
        group: a.group,
        config: a.config,
        on_calendar: a.on_calendar,
        drill_on_calendar: a.drill_on_calendar,
        read_paths: a.read_paths,
        write_paths: a.write_paths,
        credentials: a.credentials,
    })?;
    let Some(dir) = a.output else {
        for u in &units {
            println!("# {}\n{}", u.name, u.text);
        }
        return Ok(ExitCode::Ok);
    };
    if !a.force
        && let Some(u) = units.iter().find(|u| dir.join(u.name).exists())
    {
        bail!(
            "{} exists; pass --force to replace the vault units in {}",
            dir.join(u.name).display(),
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for u in &units {
        let path = dir.join(u.name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .create_new(!a.force)
            .open(&path)
            .and_then(|mut f| f.write_all(u.text.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!(
        "next: systemctl daemon-reload && systemctl enable --now vault-backup.timer vault-drill.timer"
    );
    Ok(ExitCode::Ok)
}
