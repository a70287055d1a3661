//! `vault drill`: verify the latest snapshot of every source, a random
//! older one, and today's slice of the packs.

use anyhow::Result;
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::ExitCode;
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
}

/// How drills load database dumps: `--pg-url` (reached with the drill's
/// own libpq variables, which only the CLI reads) or a scratch cluster run
/// as `--drill-user`.
pub fn database_drill(pg_url: Option<String>, drill_user: &DrillUserArg) -> DatabaseDrill {
    let pg_env = match pg_url {
        Some(_) => std::env::vars()
            .filter(|(k, _)| k.starts_with("PG"))
            .collect(),
        None => Vec::new(),
    };
    DatabaseDrill {
        pg_url,
        pg_env,
        drill_user: drill_user.drill_user.clone(),
        work_dir: std::env::temp_dir(),
    }
}

/// Runs `vault drill`; exits 4 when anything fails, 130 when interrupted.
pub fn run(a: DrillArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let day = (chrono::Utc::now().timestamp() / 86_400).max(0) as u64;
    let opts = DrillOptions {
        period_days: a.period_days,
        day,
        random_older: !a.no_random_older,
        filter: a.select.filter(),
    };
    let databases = database_drill(a.pg_url.clone(), &a.drill_user);
    let cancel = crate::cli::signals::cancel_on_signals();
    let report = match crate::cli::signals::interrupted(
        drill::run(&repo, &opts, &databases, &cancel),
        &cancel,
    )? {
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
