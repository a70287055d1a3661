//! `vault copy --to REPO2 [SNAPSHOT...]` and `vault init --like REPO1`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::{Key, RepoArgs, SelectArgs, open_storage};
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::copy::{self, CopyOptions};
use vault::repo::Repository;

/// The `--like` flags of `vault init`.
#[derive(Args, Clone, Default)]
pub struct LikeArgs {
    /// Make a copy target of this repository for `vault copy`: the same
    /// config and keys (owner files and wrapped writer key copied byte for
    /// byte), so the same owner identities and writer key open both.
    #[arg(
        long,
        value_name = "SOURCE_REPO",
        conflicts_with_all = ["owner", "owner_passphrase", "writer_key_out", "owner_name",
                              "chunk_avg_kib", "pack_size_mib", "compression_level"]
    )]
    pub like: Option<String>,
    /// With --like: an owner identity of the source repository.
    #[arg(short = 'i', long = "identity", env = "VAULT_IDENTITY")]
    pub identity: Option<PathBuf>,
}

/// `vault copy`.
#[derive(Args)]
pub struct CopyArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The target repository, made with `vault init -r TARGET --like SOURCE`;
    /// the same -i opens it.
    #[arg(long = "to", value_name = "REPO2", env = "VAULT_COPY_TO")]
    to: String,
    /// Snapshots to copy (ids, unique prefixes or `latest`); default: all
    /// that --host, --tag and --path let through.
    snapshots: Vec<String>,
    #[command(flatten)]
    select: SelectArgs,
    /// Read every copied pack back from the target, decrypt it and verify
    /// every blob in it.
    #[arg(long)]
    verify_data: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vault init -r TARGET --like SOURCE -i OWNER_KEY`.
pub fn init_like(target: &str, like: &LikeArgs) -> Result<ExitCode> {
    let source_repo = like.like.as_deref().expect("called with --like");
    let key = Key::resolve(like.identity.as_deref())?;
    let source = key
        .open(source_repo)
        .with_context(|| format!("opening repository {source_repo}"))?;
    let storage = open_storage(target)?;
    let config = copy::init_like(&source, storage.as_ref())
        .with_context(|| format!("creating copy target {target}"))?;
    // Prove the caller's key opens the new repository as it opens the source.
    key.open(target)
        .with_context(|| format!("opening the new copy target {target}"))?;
    outln!(
        "created repository {} at {target}, a copy target of {source_repo} (same keys)",
        config.id
    );
    super::init::print_protection(storage.as_ref())?;
    outln!("next: vault copy -r {source_repo} -i OWNER_KEY --to {target}");
    Ok(ExitCode::Ok)
}

/// The snapshots to copy as full ids when --host, --tag or --path narrow
/// the choice (`latest` resolved among those), else `specs` as given.
fn selected(source: &Repository, specs: &[String], select: &SelectArgs) -> Result<Vec<String>> {
    let filter = select.filter();
    if filter.is_empty() {
        return Ok(specs.to_vec());
    }
    let ids: Vec<String> = if specs.is_empty() {
        let (all, _) = source.snapshots()?;
        all.iter()
            .filter(|(_, s)| filter.matches(s))
            .map(|(id, _)| id.to_hex())
            .collect()
    } else {
        specs
            .iter()
            .map(|spec| vault::repo::select::find(source, spec, &filter).map(|(id, _)| id.to_hex()))
            .collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        return Err(vault::Error::SnapshotNotFound(filter.describe().trim().to_owned()).into());
    }
    Ok(ids)
}

/// Runs `vault copy`.
pub fn run(a: CopyArgs) -> Result<ExitCode> {
    let key = Key::resolve(a.repo.identity.as_deref())?;
    let source = key
        .open(&a.repo.repo)
        .with_context(|| format!("opening repository {}", a.repo.repo))?;
    source.keys().require_owner("copy")?;
    let target = key.open(&a.to).with_context(|| {
        format!(
            "opening copy target {} (make it with `vault init -r {} --like {}`)",
            a.to, a.to, a.repo.repo
        )
    })?;
    let progress = std::sync::Arc::new(vault::ops::progress::Progress::default());
    let opts = CopyOptions {
        snapshots: selected(&source, &a.snapshots, &a.select)?,
        verify_data: a.verify_data,
        progress: Some(progress.clone()),
    };
    let meter = crate::cli::progress::Meter::start(&progress, a.json);
    let copied = copy::copy(&source, &target, &opts);
    drop(meter);
    let report = copied.context("copy")?;
    if a.json {
        render::json(&report);
    } else {
        render::copy::text(&report, &a.to);
    }
    Ok(ExitCode::Ok)
}
