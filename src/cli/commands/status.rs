//! `vault status`: the last backup and last passed drill of every source,
//! for humans, as JSON, or as a node_exporter textfile.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::RepoArgs;
use crate::cli::exit::{ExitCode, usage};
use crate::cli::render;
use vault::ops::status::{self, Thresholds};

/// `vault status`.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// A source's last complete backup must be younger than this.
    #[arg(long, default_value = "26h", env = "VAULT_MAX_BACKUP_AGE", value_parser = parse_span)]
    max_backup_age: chrono::Duration,
    /// A source's last passed restore drill must be younger than this.
    #[arg(long, default_value = "8d", env = "VAULT_MAX_DRILL_AGE", value_parser = parse_span)]
    max_drill_age: chrono::Duration,
    /// Report certificates that expire within this span.
    #[arg(long, default_value = "30d", env = "VAULT_CERTIFICATE_WARNING", value_parser = parse_span)]
    certificate_warning: chrono::Duration,
    /// Also write the figures to this file (atomically) in the Prometheus
    /// text format, for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE", env = "VAULT_PROMETHEUS_FILE")]
    prometheus: Option<PathBuf>,
    /// Retire a host's source, HOST:SOURCE as this report lists it (e.g.
    /// `web1:paths:/etc`, `db1:postgres:postgres/app.dump`), with the owner
    /// key: an owner-signed record in the repository makes status stop
    /// judging it until it is backed up again. Then reports as usual.
    #[arg(long, value_name = "HOST:SOURCE")]
    retire: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Parses a span such as `26h` or `8d`.
pub fn parse_span(s: &str) -> Result<chrono::Duration, String> {
    let span = vault::format::duration::parse(s).map_err(|e| e.to_string())?;
    chrono::Duration::from_std(span).map_err(|_| format!("{s:?} is too long a duration"))
}

/// Runs `vault status`; exits 1 when anything is past its threshold, and 5
/// when it could not find out (so that a monitor tells "stale backups"
/// from "the check itself is broken").
pub fn run(a: StatusArgs) -> Result<ExitCode> {
    // Retiring is an owner's action, not a check: its errors (a usage
    // error, a source that does not exist) take the ordinary exit codes.
    if let Some(what) = &a.retire {
        retire(&a, what)?;
    }
    match report(a) {
        Ok(code) => Ok(code),
        Err(e) if crate::cli::exit::is_broken_pipe(&e) => Ok(ExitCode::Ok),
        Err(e) => {
            render::error(&e);
            Ok(ExitCode::CouldNotRun)
        }
    }
}

/// `--retire HOST:SOURCE`: records the retirement and says so on stderr.
fn retire(a: &StatusArgs, what: &str) -> Result<()> {
    let Some((host, source)) = what
        .split_once(':')
        .filter(|(h, s)| !h.is_empty() && s.contains(':'))
    else {
        usage!(
            "--retire {what:?}: give HOST:SOURCE as `vault status` lists them, e.g. web1:paths:/etc"
        );
    };
    let repo = a.repo.open()?;
    let id = status::retire(&repo, host, source, chrono::Utc::now())
        .with_context(|| format!("retiring {}", render::sanitize(what)))?;
    eprintln!(
        "retired {} {} (record {}); vault status no longer judges it until it is backed up again",
        render::sanitize(host),
        render::sanitize(source),
        id.short()
    );
    Ok(())
}

fn report(a: StatusArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let thresholds = Thresholds {
        max_backup_age: a.max_backup_age,
        max_drill_age: a.max_drill_age,
        certificate_warning: a.certificate_warning,
    };
    let report = status::status(&repo, &thresholds, chrono::Utc::now()).context("status")?;
    if let Some(path) = &a.prometheus {
        write_atomically(path, status::prometheus(&report).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        render::json(&report);
    } else {
        render::status::text(&report);
    }
    Ok(if report.ok {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    })
}

/// Writes `data` to `path` through a temporary file in the same directory
/// and a rename, so a collector never reads half a file.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Name the directory, not the temporary file the operator never asked for.
    let mut tmp = tempfile::Builder::new()
        .prefix(".vault-status-")
        .tempfile_in(dir)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create a file in {} ({})", dir.display(), e.kind()),
            )
        })?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
