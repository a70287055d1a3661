//! `vault drill`: verify the latest snapshot of every source, a random
//! older one, and today's slice of the packs.

use anyhow::Result;
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::{ExitCode, usage};
use crate::cli::render;
use vault::ops::drill::{self, DrillOptions};
use vault::ops::restore::{DEFAULT_DRILL_USER, DatabaseDrill};

/// `vault drill`.
#[derive(Args)]
pub struct DrillArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Re-read every pack once within this many days (one slice per day).
    #[arg(long, default_value_t = 30)]
    period_days: u32,
    /// Skip the randomly chosen older snapshot.
    #[arg(long)]
    no_random_older: bool,
    /// Load database dumps into this PostgreSQL server instead of a throwaway
    /// cluster. Its role must not be a superuser or hold CREATEROLE or the
    /// pg_*_server_* roles.
    #[arg(long, value_name = "CONNINFO")]
    pg_url: Option<String>,
    #[command(flatten)]
    drill_user: DrillUserArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `--drill-user`, shared by `restore --verify` and `drill`.
#[derive(Args, Clone)]
pub struct DrillUserArg {
    /// The dedicated unprivileged user the scratch PostgreSQL cluster (and
    /// every tool reading a dump) runs as; never root or the drill's own
    /// user. Create it with `useradd --system --no-create-home --home-dir
    /// /nonexistent --shell /usr/sbin/nologin vault-drill`.
    #[arg(
        long = "drill-user",
        env = "VAULT_DRILL_USER",
        value_name = "USER",
        default_value = DEFAULT_DRILL_USER
    )]
    drill_user: String,
    /// How long loading one database dump and counting its rows may take
    /// (e.g. 30m, 4h); past it the dump fails as `timed_out` and its
    /// database is dropped.
    #[arg(
        long = "db-load-timeout",
        env = "VAULT_DB_LOAD_TIMEOUT",
        value_name = "DURATION",
        default_value = "4h",
        value_parser = parse_load_timeout
    )]
    db_load_timeout: std::time::Duration,
    /// With --pg-url: load even when its role is, or can become, a
    /// superuser or holds CREATEROLE, pg_execute_server_program,
    /// pg_read_server_files or pg_write_server_files. Dumps can then run
    /// programs and read or write files as that server's OS user (see
    /// docs/SECURITY.md).
    #[arg(long, requires = "pg_url")]
    pg_url_trust_superuser: bool,
}

/// A `--db-load-timeout`: a duration above zero.
fn parse_load_timeout(s: &str) -> Result<std::time::Duration, String> {
    match vault::format::duration::parse(s).map_err(|e| e.to_string())? {
        d if d.is_zero() => Err("the time limit must be above zero".into()),
        d => Ok(d),
    }
}

/// How drills load database dumps: `--pg-url` (reached with the drill's
/// own libpq variables, which only the CLI reads) or a scratch cluster run
/// as `--drill-user`. A `--pg-url` (or `[drill] pg_url`) the drill could
/// not use is a usage error here, before any work: otherwise it would fail
/// every database of every snapshot and record those failures as drills.
pub fn database_drill(pg_url: Option<String>, drill_user: &DrillUserArg) -> Result<DatabaseDrill> {
    if let Some(url) = &pg_url {
        if url.trim().is_empty() {
            usage!(
                "--pg-url is empty: give a libpq conninfo, e.g. \"host=/run/postgresql user=drill\""
            );
        }
        if vault::settings::conninfo_has_password(url) {
            usage!(
                "--pg-url contains a password; put it in a pgpass file (mode 0600) and set \
                 PGPASSFILE"
            );
        }
        if let Err(e) = vault::source::postgres::conninfo_env(url) {
            usage!(
                "--pg-url: {e}; write key=value settings (\"host=/run/postgresql user=drill\") \
                 or a postgresql:// URI"
            );
        }
    }
    let pg_env = match pg_url {
        Some(_) => std::env::vars()
            .filter(|(k, _)| k.starts_with("PG"))
            .collect(),
        None => Vec::new(),
    };
    Ok(DatabaseDrill {
        pg_url,
        pg_env,
        drill_user: drill_user.drill_user.clone(),
        load_timeout: drill_user.db_load_timeout,
        pg_url_trust_privileged: drill_user.pg_url_trust_superuser,
        work_dir: std::env::temp_dir(),
    })
}

/// Runs `vault drill`; exits 4 when anything fails, 130 when interrupted.
pub fn run(a: DrillArgs) -> Result<ExitCode> {
    let databases = database_drill(a.pg_url.clone(), &a.drill_user)?;
    let repo = a.repo.open()?;
    let day = (chrono::Utc::now().timestamp() / 86_400).max(0) as u64;
    let progress = std::sync::Arc::new(vault::ops::progress::Progress::default());
    let opts = DrillOptions {
        period_days: a.period_days,
        day,
        random_older: !a.no_random_older,
        filter: a.select.filter(),
        progress: Some(progress.clone()),
    };
    let meter = crate::cli::progress::Meter::start(&progress, a.json);
    let cancel = crate::cli::signals::cancel_on_signals();
    let ran = drill::run(&repo, &opts, &databases, &cancel);
    drop(meter);
    let report = match crate::cli::signals::interrupted(ran, &cancel)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if a.json {
        render::json(&report);
    } else {
        render::drill::text(&report);
    }
    Ok(if report.passed {
        ExitCode::Ok
    } else {
        ExitCode::Damage
    })
}
