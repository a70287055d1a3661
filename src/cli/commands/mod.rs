//! One module per command: each holds its clap arguments and turns them
//! into library options, calls the library, hands the report to
//! [`super::render`] and picks the exit code.

pub mod backup;
pub mod check;
pub mod completions;
pub mod config;
pub mod copy;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod man;
pub mod mount;
pub mod prune;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod status;
pub mod systemd;
pub mod tag;

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::exit::ExitCode;

/// vault's commands.
#[derive(Subcommand)]
pub enum Command {
    /// Key management.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Create a repository, its owner key and a writer key.
    Init(init::InitArgs),
    /// Back up paths into a new snapshot.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(ls::LsArgs),
    /// What changed between two snapshots: added, removed and modified paths.
    Diff(diff::DiffArgs),
    /// Entries whose name (or path) matches a glob, in every snapshot the
    /// filters let through.
    Find(find::FindArgs),
    /// Files, sizes, blob counts and the deduplication ratio of the
    /// repository (from its index) or of some snapshots.
    Stats(stats::StatsArgs),
    /// Serve the snapshots as a read-only file system (FUSE) until
    /// unmounted or interrupted (owner key).
    Mount(mount::MountArgs),
    /// Restore a snapshot, or verify it with --verify.
    Restore(restore::RestoreArgs),
    /// Write a snapshot (or a path in it) to stdout as a tar archive.
    Dump(dump::DumpArgs),
    /// Check the repository's structure, data or storage.
    Check(check::CheckArgs),
    /// Verify the latest snapshot of every source, a random older one, and
    /// today's slice of the packs (what a weekly timer runs).
    Drill(drill::DrillArgs),
    /// The last backup and last passed drill of every source; exit 1 when
    /// any is older than its threshold.
    Status(status::StatusArgs),
    /// Remove snapshots a retention policy does not keep, or the ones named
    /// (owner key).
    Forget(forget::ForgetArgs),
    /// Add or remove tags on snapshots (owner key).
    Tag(tag::TagArgs),
    /// Repack mostly-empty packs and delete packs no snapshot needs (owner key).
    Prune(prune::PruneArgs),
    /// Copy snapshots to a repository made with `vault init --like`, transferring
    /// only what it lacks (owner key).
    Copy(copy::CopyArgs),
    /// Write hardened systemd units for a nightly backup and a weekly drill.
    Systemd(systemd::SystemdArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one page per command with --output.
    Man(man::ManArgs),
    /// Configuration file commands.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

/// Runs one command; `config` is the `--config` file (or `VAULT_CONFIG`).
pub fn run(command: Command, config: Option<PathBuf>) -> Result<ExitCode> {
    match command {
        Command::Key(k) => key::run(k),
        Command::Init(a) => init::run(a),
        Command::Backup(a) => backup::run(a),
        Command::Snapshots(a) => snapshots::run(a),
        Command::Ls(a) => ls::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Find(a) => find::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Check(a) => check::run(a),
        Command::Drill(a) => drill::run(a),
        Command::Status(a) => status::run(a),
        Command::Forget(a) => forget::run(a),
        Command::Tag(a) => tag::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Copy(a) => copy::run(a),
        Command::Systemd(a) => systemd::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
        Command::Config(c) => config::run(c, config),
    }
}
