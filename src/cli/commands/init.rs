//! `vault init`: create a repository, its owner key and a writer key (or,
//! with `--like`, a copy target of another repository).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::copy::LikeArgs;
use crate::cli::access::{key_parent, open_storage};
use crate::cli::exit::{ExitCode, usage};
use vault::format::chunk::ChunkerParams;
use vault::repo::{InitOptions, Repository};
use vault::storage::{LockMode, ObjectLock};

/// `vault init`.
#[derive(Args)]
pub struct InitArgs {
    /// Repository to create.
    #[arg(short = 'r', long = "repo", env = "VAULT_REPO")]
    repo: String,
    /// Owner recipients (age1…, "ssh-ed25519 …", "ssh-rsa …"), comma-separated or repeated.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present_any = ["owner_passphrase", "like"]
    )]
    owner: Vec<String>,
    /// Make a passphrase owner (from VAULT_PASSPHRASE_FILE or a prompt).
    #[arg(long, conflicts_with = "owner")]
    owner_passphrase: bool,
    /// Name of this owner (keys/owners/NAME.age).
    #[arg(long, default_value = "owner")]
    owner_name: String,
    /// Where to write the writer key (mode 0600) for backup hosts; missing
    /// directories are made, mode 0700.
    #[arg(long, required_unless_present = "like")]
    writer_key_out: Option<PathBuf>,
    /// Average chunk size in KiB (min is a quarter, max four times).
    #[arg(long, default_value_t = 16)]
    chunk_avg_kib: u32,
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16)]
    pack_size_mib: u32,
    /// zstd compression level for new data (1-22).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    compression_level: i32,
    /// Put every object under S3 Object Lock retention for this many days
    /// from its upload (needs a bucket created with Object Lock enabled).
    #[arg(long, value_name = "DAYS")]
    object_lock_days: Option<u32>,
    /// Object Lock mode: governance (an administrator holding
    /// s3:BypassGovernanceRetention can still delete; the default) or
    /// compliance (nobody can, not even the account root).
    #[arg(long, value_enum, value_name = "MODE", requires = "object_lock_days")]
    object_lock_mode: Option<LockModeArg>,
    #[command(flatten)]
    like: LikeArgs,
}

/// `--object-lock-mode` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LockModeArg {
    Governance,
    Compliance,
}

/// Says what the storage protects against a compromised host (S3: found
/// out by asking the bucket and probing it); a storage any writer can
/// destroy is a warning on stderr.
pub fn print_protection(storage: &dyn vault::storage::Storage) -> Result<()> {
    use crate::cli::render::sanitize;
    let Some(p) = storage
        .protection()
        .context("finding out what the storage protects against")?
    else {
        return Ok(());
    };
    for line in p.facts() {
        outln!("storage: {}", sanitize(&line));
    }
    for line in p.verdict() {
        if p.destroyable_by_writers() {
            crate::cli::render::warning(&line);
        } else {
            outln!("{}", sanitize(&line));
        }
    }
    Ok(())
}

/// Runs `vault init`.
pub fn run(a: InitArgs) -> Result<ExitCode> {
    if a.like.like.is_some() {
        return super::copy::init_like(&a.repo, &a.like);
    }
    let Some(writer_key_out) = a.writer_key_out.clone() else {
        usage!("--writer-key-out is required");
    };
    let owner = super::key::owner_spec(&a.owner, a.owner_passphrase)?;
    key_parent(&writer_key_out)?;
    let avg = a.chunk_avg_kib.saturating_mul(1024);
    let opts = InitOptions {
        owner,
        owner_name: a.owner_name.clone(),
        writer_key_out: writer_key_out.clone(),
        chunker: ChunkerParams {
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg.saturating_mul(4),
        },
        pack_size: a.pack_size_mib.saturating_mul(1 << 20),
        compression_level: a.compression_level,
        object_lock: a.object_lock_days.map(|days| ObjectLock {
            mode: match a.object_lock_mode {
                Some(LockModeArg::Compliance) => LockMode::Compliance,
                Some(LockModeArg::Governance) | None => LockMode::Governance,
            },
            days,
        }),
    };
    let storage = open_storage(&a.repo)?;
    let config = Repository::init(storage.clone(), &opts)
        .with_context(|| format!("creating repository {}", a.repo))?;
    outln!("created repository {} at {}", config.id, a.repo);
    print_protection(storage.as_ref())?;
    if let Some(lock) = config.object_lock {
        outln!(
            "every object is retained with S3 Object Lock ({}) for {} days after its upload",
            lock.mode.as_s3(),
            lock.days
        );
    }
    outln!(
        "owner {:?} can read everything; writer key for backup hosts: {}",
        a.owner_name,
        writer_key_out.display()
    );
    Ok(ExitCode::Ok)
}
