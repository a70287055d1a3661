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

mod access;
mod commands;
mod defaults;
mod edge;
mod exit;
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
    #[command(subcommand)]
    command: commands::Command,
}

/// Parses arguments, runs the command, prints errors; returns the exit code.
pub fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // On a terminal: colours and times. Under systemd (JOURNAL_STREAM set)
    // or in a pipe: plain lines with levels; the journal adds its own time.
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(on_terminal)
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        log.without_time().init();
    } else {
        log.init();
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = <Cli as clap::CommandFactory>::command();
    // `vault config check` reports a bad file itself; everything else
    // takes its defaults from the file and stops when it is invalid.
    let checking_config = defaults::is_config_command(&args);
    match vault::settings::Settings::load_for_cli(defaults::explicit_config(&args).as_deref()) {
        Ok(Some(settings)) => {
            command = defaults::apply(command, &settings);
            edge::configure(&settings);
        }
        Ok(None) => {}
        Err(_) if checking_config => {}
        Err(e) => {
            eprintln!("vault: error: {e}");
            return ExitCode::Usage;
        }
    }
    let parsed = command
        .try_get_matches_from(&args)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
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
    // Snapshot trees are walked recursively; a large stack (committed only
    // as used) lets deep but legitimate trees through.
    let worker = std::thread::Builder::new()
        .name("vault".into())
        .stack_size(256 << 20)
        .spawn(move || commands::run(cli.command, cli.config));
    let result = match worker {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic)"))),
        Err(e) => Err(anyhow::anyhow!("cannot start: {e}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            render::error(&e);
            ExitCode::Failure
        }
    }
}
