//! `vault config check`: validate the configuration file like a compiler
//! would, then look at the key files it names.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use crate::cli::exit::ExitCode;
use crate::cli::render::{self as output, sanitize};
use vault::settings::{Problem, Settings, SettingsError};

/// `vault config …`.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file and the key files it names; exit 2
    /// with every problem (FILE:LINE:COLUMN: …) when it is not valid.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `vault config` subcommand; `explicit` is `--config` (or `VAULT_CONFIG`).
pub fn run(command: ConfigCommand, explicit: Option<PathBuf>) -> Result<ExitCode> {
    match command {
        ConfigCommand::Check { json } => check(explicit, json),
    }
}

/// Runs `vault config check`: exit 0 when valid, 2 when not (or when there
/// is no file to check), 1 when the file cannot be read.
pub fn check(explicit: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let Some(path) = Settings::locate(explicit.as_deref()) else {
        output::error(&SettingsError::NotFound.into());
        return Ok(ExitCode::Usage);
    };
    let (settings, problems) = match Settings::load_lenient(&path) {
        // The files the readable part names are looked at in the same run,
        // except on a line that already has a problem.
        Ok((Some(s), mut problems)) => {
            let lines: Vec<_> = problems
                .iter()
                .filter_map(|p| p.location.map(|l| l.line))
                .collect();
            problems.extend(
                s.check_files()
                    .into_iter()
                    .filter(|p| !p.location.is_some_and(|l| lines.contains(&l.line))),
            );
            problems.sort_by_key(|p| p.location.map(|l| (l.line, l.column)));
            let valid = problems.is_empty();
            (valid.then_some(s), problems)
        }
        Ok((None, p)) => (None, p),
        Err(e @ SettingsError::Read { .. }) => {
            let missing = matches!(&e, SettingsError::Read { error, .. }
                if error.kind() == std::io::ErrorKind::NotFound);
            output::error(&e.into());
            return Ok(if missing {
                ExitCode::Usage
            } else {
                ExitCode::Failure
            });
        }
        Err(e) => return Err(e.into()),
    };
    let summary = settings.as_ref().map(summary);
    if json {
        output::json(&json!({
            "file": path,
            "valid": problems.is_empty(),
            "problems": problems,
            "summary": summary.as_ref().map(|s| s.iter().cloned().collect::<serde_json::Map<_, _>>()),
        }));
    } else {
        report(&path, &problems, summary.as_deref());
    }
    Ok(if problems.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Usage
    })
}

/// Text output: `FILE: ok` and a summary, or every problem on stderr.
fn report(path: &Path, problems: &[Problem], summary: Option<&[(String, serde_json::Value)]>) {
    let file = sanitize(&path.display().to_string());
    if problems.is_empty() {
        outln!("{file}: ok");
        for (k, v) in summary.unwrap_or_default() {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            outln!("  {k}: {}", sanitize(&v));
        }
        return;
    }
    for p in problems {
        eprintln!("{}", output::sanitize_lines(&p.to_string()));
    }
    let n = problems.len();
    eprintln!("{file}: {n} problem{}", if n == 1 { "" } else { "s" });
}

/// A few lines saying what the file sets up.
fn summary(s: &Settings) -> Vec<(String, serde_json::Value)> {
    let repository = s
        .repository
        .clone()
        .unwrap_or_else(|| "not set (give -r or VAULT_REPO)".into());
    let sources = match &s.backup {
        None => "none ([backup] not set)".to_owned(),
        Some(b) => {
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            format!(
                "{}: {}, {}, {}",
                b.source_count(),
                plural(b.paths.len(), "path", "paths"),
                plural(b.command.len(), "command", "commands"),
                plural(b.postgres.len(), "database", "databases")
            )
        }
    };
    vec![
        ("repository".into(), repository.into()),
        ("sources".into(), sources.into()),
        ("retention".into(), s.retention.describe().into()),
    ]
}
