//! The command-line edge: the only part of vault that reads the process
//! environment, prompts, and picks exit codes. It maps flags to library
//! options and renders reports; it never chunks, encrypts or calls storage
//! itself.
//!
//! - [`access`]: `-r`/`-i` and the one key resolution every command uses.
//! - [`commands`]: one module per command (its flags and its run function).
//! - [`render`]: everything printed (tables, JSON, errors).
//! - [`defaults`]: the configuration file as flag defaults.
//! - [`exit`]: the exit codes.
//! - [`progress`]: live progress lines on a terminal.
//! - [`signals`]: SIGINT/SIGTERM turned into a cancellation the library checks.

/// `println!` for command output: a closed pipe (`vault snapshots | head
/// -n 1`) ends the process quietly with exit 0, as other Unix tools do.
macro_rules! outln {
    () => {
        $crate::cli::render::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::render::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod access;
mod commands;
mod defaults;
mod edge;
mod exit;
mod log;
mod manual;
mod progress;
mod render;
mod signals;

use std::path::PathBuf;

use clap::Parser;

pub use exit::ExitCode;

/// Encrypted, deduplicated backups that prove they restore.
#[derive(Parser)]
#[command(name = "vault", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: /etc/vault/vault.toml when it exists).
    /// Flags and VAULT_* variables override what it says.
    #[arg(long, global = true, env = "VAULT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read no configuration file (not even /etc/vault/vault.toml).
    #[arg(long, global = true)]
    no_config: bool,
    #[command(subcommand)]
    command: commands::Command,
}

/// Parses arguments, runs the command, prints errors; returns the exit code.
pub fn main() -> ExitCode {
    // The AWS SDK warns with nested debug structures about what vault then
    // reports in one plain line (no credentials, an unreadable profile):
    // its warnings show only with VAULT_LOG.
    log::init();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = <Cli as clap::CommandFactory>::command();
    // `vault config check` reports a bad file itself; everything else
    // takes its defaults from the file and stops when it is invalid.
    let checking_config = defaults::is_config_command(&args);
    let loaded = if defaults::no_config(&args) {
        Ok(None)
    } else {
        vault::settings::Settings::load_for_cli(defaults::explicit_config(&args).as_deref())
    };
    match loaded {
        Ok(Some(settings)) => {
            command = defaults::apply(command, &settings);
            edge::configure(&settings);
        }
        Ok(None) => {}
        Err(_) if checking_config => {}
        // Restoring from a host whose config is broken must still work.
        Err(e) if defaults::can_do_without(&args) => {
            render::warning(&format!(
                "{e}\nvault: warning: the configuration file is not used: give every setting on \
                 the command line (or --no-config); `vault config check` lists every problem"
            ));
        }
        Err(e) => {
            render::error_line(&format!(
                "{e}\nvault: hint: `vault config check` lists every problem; --no-config runs \
                 without the file"
            ));
            return ExitCode::Usage;
        }
    }
    let parsed = command.try_get_matches_from(&args).and_then(|m| {
        let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m)?;
        if let (commands::Command::Backup(a), Some(("backup", sub))) =
            (&mut cli.command, m.subcommand())
        {
            a.only_given_sources(sub)?;
        }
        Ok(cli)
    });
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    // Every tree walk is iterative (snapshot trees and the backup's
    // directory walk alike), so the command runs on the main thread's
    // ordinary stack.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        commands::run(cli.command, cli.config)
    }))
    .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic)")));
    match result {
        Ok(code) => code,
        // `vault snapshots | head -n 1`: the reader has all it wanted.
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::Ok,
        Err(e) => {
            render::error(&e);
            exit::for_error(&e)
        }
    }
}
