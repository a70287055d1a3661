//! `vault drill`: verify the latest snapshot of every source, a random
//! older one, and today's slice of the packs.

use anyhow::Result;
use clap::Args;

use crate::cli::access::RepoArgs;
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::drill::{self, DrillOptions};

/// `vault drill`.
#[derive(Args)]
pub struct DrillArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Re-read every pack once within this many days (one slice per day).
    #[arg(long, default_value_t = 30)]
    period_days: u32,
    /// Skip the randomly chosen older snapshot.
    #[arg(long)]
    no_random_older: bool,
    /// Load database dumps into this PostgreSQL server instead of a throwaway cluster.
    #[arg(long, value_name = "CONNINFO")]
    pg_url: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vault drill`; exits 4 when anything fails.
pub fn run(a: DrillArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let day = (chrono::Utc::now().timestamp() / 86_400).max(0) as u64;
    let opts = DrillOptions {
        period_days: a.period_days,
        day,
        random_older: !a.no_random_older,
    };
    let report = drill::run(&repo, &opts, a.pg_url.as_deref())?;
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
