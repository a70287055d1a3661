//! `vault copy --to REPO2 [SNAPSHOT...]` and `vault init --like REPO1`.

use std::path::PathBuf;

use vault::crypto::{ExposeSecret, SecretString};
use anyhow::{Context, Result, bail};
use clap::Args;

use super::output::{self, size};
use super::{ExitCode, RepoArgs};
use vault::ops::copy::{self, CopyOptions, CopyReport};
use vault::repo::{Access, Repository};

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
    /// Snapshots to copy (ids, unique prefixes or `latest`); default: all.
    snapshots: Vec<String>,
    /// Read every copied pack back from the target, decrypt it and verify
    /// every blob in it.
    #[arg(long)]
    verify_data: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// How the caller opens both repositories: one identity file or one
/// passphrase, asked for once.
enum Key {
    File(PathBuf),
    Passphrase(SecretString),
}

impl Key {
    fn obtain(identity: &Option<PathBuf>) -> Result<Key> {
        match identity {
            Some(p) => Ok(Key::File(p.clone())),
            None if super::edge::passphrase_file().is_some()
                || std::io::IsTerminal::is_terminal(&std::io::stdin()) =>
            {
                Ok(Key::Passphrase(super::edge::obtain_passphrase(
                    "the repository owner",
                )?))
            }
            None => bail!(
                "no key given: pass -i OWNER_KEY (or set VAULT_IDENTITY, or VAULT_PASSPHRASE_FILE \
                 for a passphrase owner)"
            ),
        }
    }

    fn open(&self, repo: &str) -> Result<Repository> {
        let storage = super::edge::open_storage(repo)?;
        let access = match self {
            Key::File(p) => Access::IdentityFileWithPassphrase(p, &super::edge::Passphrases),
            Key::Passphrase(p) => {
                Access::Passphrase(SecretString::from(p.expose_secret().to_owned()))
            }
        };
        Ok(Repository::open(storage, access)?)
    }
}

/// Runs `vault init -r TARGET --like SOURCE -i OWNER_KEY`.
pub fn init_like(target: &str, like: &LikeArgs) -> Result<ExitCode> {
    let source_repo = like.like.as_deref().expect("called with --like");
    let key = Key::obtain(&like.identity)?;
    let source = key
        .open(source_repo)
        .with_context(|| format!("opening repository {source_repo}"))?;
    let storage = super::edge::open_storage(target)?;
    let config = copy::init_like(&source, storage.as_ref())
        .with_context(|| format!("creating copy target {target}"))?;
    // Prove the caller's key opens the new repository as it opens the source.
    key.open(target)
        .with_context(|| format!("opening the new copy target {target}"))?;
    println!(
        "created repository {} at {target}, a copy target of {source_repo} (same keys)",
        config.id
    );
    super::commands::print_protection(storage.as_ref())?;
    println!("next: vault copy -r {source_repo} -i OWNER_KEY --to {target}");
    Ok(ExitCode::Ok)
}

/// Runs `vault copy`.
pub fn copy(a: CopyArgs) -> Result<ExitCode> {
    let key = Key::obtain(&a.repo.identity)?;
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
    let opts = CopyOptions {
        snapshots: a.snapshots.clone(),
        verify_data: a.verify_data,
    };
    let report = copy::copy(&source, &target, &opts).context("copy")?;
    if a.json {
        output::json(&report);
    } else {
        print(&report, &a.to);
    }
    Ok(ExitCode::Ok)
}

fn print(r: &CopyReport, to: &str) {
    for id in &r.snapshots_copied {
        println!("copied snapshot {}", id.short());
    }
    println!(
        "{} snapshots copied to {to}, {} already there",
        r.snapshots_copied.len(),
        r.snapshots_skipped.len()
    );
    if r.snapshots_copied.is_empty() {
        return;
    }
    println!(
        "{} of {} needed blobs were missing: copied {} packs ({}), indexed {} left by an \
         earlier copy, {} packs already there",
        r.blobs_missing,
        r.blobs_needed,
        r.packs_copied,
        size(r.pack_bytes),
        r.packs_resumed,
        r.packs_already_present
    );
    println!(
        "{} transferred in all; every object checked against its name{}",
        size(r.bytes_transferred),
        if r.packs_verified > 0 {
            format!(
                ", {} packs read back and verified blob by blob",
                r.packs_verified
            )
        } else {
            String::new()
        }
    );
}
