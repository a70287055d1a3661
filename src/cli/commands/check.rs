//! `vault check`: the repository's structure, data or storage.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::cli::access::{RepoArgs, open_storage};
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::check::{self, CheckOptions, CheckReport};

/// `vault check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Repository.
    #[arg(short = 'r', long = "repo", env = "VAULT_REPO")]
    repo: String,
    /// Identity file (not needed for --storage alone).
    #[arg(short = 'i', long = "identity", env = "VAULT_IDENTITY")]
    identity: Option<PathBuf>,
    /// Decrypt and verify every blob (owner key).
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Verify subset N of M of the packs, e.g. 2/7.
    #[arg(long, value_name = "N/M", value_parser = parse_subset)]
    read_data_subset: Option<(u32, u32)>,
    /// Hash every object against its name and list multipart uploads left
    /// unfinished (no key needed).
    #[arg(long)]
    storage: bool,
    /// With --storage: abort unfinished multipart uploads older than
    /// --upload-grace-hours (they hold billed parts and are never completed).
    #[arg(long, requires = "storage")]
    clean_uploads: bool,
    /// Unfinished uploads younger than this may belong to a running backup
    /// and are left alone by --clean-uploads.
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    upload_grace_hours: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Parses `--read-data-subset N/M` (1 <= N <= M).
fn parse_subset(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected N/M with 1 <= N <= M, e.g. 1/7");
    let (n, m) = s.split_once('/').ok_or_else(bad)?;
    let (n, m): (u32, u32) = (
        n.trim().parse().map_err(|_| bad())?,
        m.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || n > m {
        return Err(bad());
    }
    Ok((n, m))
}

/// Runs `vault check`; exits 4 when it finds damage.
pub fn run(a: CheckArgs) -> Result<ExitCode> {
    let read_data = match (a.read_data_subset, a.read_data) {
        (Some(subset), _) => Some(subset),
        (None, true) => Some((1, 1)),
        (None, false) => None,
    };
    let storage = open_storage(&a.repo)?;
    let mut report = CheckReport::default();
    if a.storage {
        check::check_storage(storage.as_ref(), &mut report)?;
        let grace = a
            .clean_uploads
            .then(|| chrono::Utc::now() - chrono::Duration::hours(i64::from(a.upload_grace_hours)));
        check::check_uploads(storage.as_ref(), grace, &mut report)?;
    }
    let keyed = a.identity.is_some() || read_data.is_some() || !a.storage;
    if keyed {
        let repo = RepoArgs {
            repo: a.repo.clone(),
            identity: a.identity.clone(),
            // `check` reads what storage holds, never the cache.
            cache_dir: None,
            no_cache: true,
            fetch_jobs: None,
        }
        .open()?;
        let progress = std::sync::Arc::new(vault::ops::progress::Progress::default());
        let meter =
            (read_data.is_some()).then(|| crate::cli::progress::Meter::start(&progress, a.json));
        let checked = check::check(
            &repo,
            &CheckOptions {
                structure: true,
                read_data,
                storage: false,
                progress: Some(progress.clone()),
            },
            &mut report,
        );
        drop(meter);
        checked?;
    }
    if a.json {
        render::json(&report);
    } else {
        render::check::text(&report);
    }
    Ok(if report.has_errors() {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    })
}
