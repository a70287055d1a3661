//! Command-line definitions (clap) and dispatch. The CLI maps flags to
//! library options, renders reports and picks exit codes; it never chunks,
//! encrypts or calls storage itself.

mod commands;
mod config;
mod copy;
mod defaults;
mod keys;
mod maintain;
mod output;
mod progress;
mod status;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Process exit codes (see README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The operation failed.
    Failure = 1,
    /// The command line was wrong.
    Usage = 2,
    /// A snapshot was made but some inputs could not be read.
    Partial = 3,
    /// Verification found damage or a mismatch.
    Damage = 4,
}

/// Encrypted, deduplicated backups that prove they restore.
#[derive(Parser)]
#[command(name = "vault", version, about, long_about = None)]
struct Cli {
    /// Configuration file (default: /etc/vault/vault.toml when it exists).
    /// Flags and VAULT_* variables override what it says.
    #[arg(long, global = true, env = "VAULT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where the repository is and which key opens it.
#[derive(Args, Clone)]
struct RepoArgs {
    /// Repository: a directory, file:///path or s3://bucket/prefix.
    #[arg(short = 'r', long = "repo", env = "VAULT_REPO")]
    repo: String,
    /// Identity file: the writer key, or an owner's age or ssh identity.
    /// Without it, VAULT_PASSPHRASE_FILE (or a terminal prompt) opens a passphrase owner.
    #[arg(short = 'i', long = "identity", env = "VAULT_IDENTITY")]
    identity: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Key management.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create a repository, its owner key and a writer key.
    Init(InitArgs),
    /// Back up paths into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot, or verify it with --verify.
    Restore(RestoreArgs),
    /// Write a snapshot (or a path in it) to stdout as a tar archive.
    Dump(DumpArgs),
    /// Check the repository's structure, data or storage.
    Check(CheckArgs),
    /// Verify the latest snapshot of every source, a random older one, and
    /// today's slice of the packs (what a weekly timer runs).
    Drill(DrillArgs),
    /// The last backup and last passed drill of every source; exit 1 when
    /// any is older than its threshold.
    Status(status::StatusArgs),
    /// Remove snapshots a retention policy does not keep (owner key).
    Forget(maintain::ForgetArgs),
    /// Repack mostly-empty packs and delete packs no snapshot needs (owner key).
    Prune(maintain::PruneArgs),
    /// Copy snapshots to a repository made with `vault init --like`, transferring
    /// only what it lacks (owner key).
    Copy(copy::CopyArgs),
    /// Write hardened systemd units for a nightly backup and a weekly drill.
    Systemd(SystemdArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the manual page, or write one page per command with --output.
    Man(ManArgs),
    /// Configuration file commands.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration file and the key files it names; exit 2
    /// with every problem (FILE:LINE:COLUMN: …) when it is not valid.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new age X25519 identity file (mode 0600) and print its recipient.
    Generate {
        /// Where to write it; an existing file is never replaced.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// List the owners (keys/owners/NAME.age) and writer key generations;
    /// names need no key, -i also shows which owner file your identity opens.
    List(keys::ListArgs),
    /// Add an owner: wrap the repository owner key for new recipients or a
    /// passphrase (owner key).
    AddOwner(keys::AddOwnerArgs),
    /// Delete an owner's copy of the repository owner key; this does not
    /// revoke what that owner could already read (owner key).
    RemoveOwner(keys::RemoveOwnerArgs),
    /// Make a new writer key for backup hosts and retire the current one;
    /// old snapshots stay readable (owner key).
    RotateWriter(keys::RotateWriterArgs),
}

#[derive(Args)]
struct InitArgs {
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
    /// Where to write the writer key (mode 0600) for backup hosts.
    #[arg(long, required_unless_present = "like")]
    writer_key_out: Option<PathBuf>,
    /// Average chunk size in KiB (min is a quarter, max four times).
    #[arg(long, default_value_t = 16)]
    chunk_avg_kib: u32,
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16)]
    pack_size_mib: u32,
    /// zstd compression level for new data (1-22).
    #[arg(long, default_value_t = 3)]
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
    like: copy::LikeArgs,
}

/// `--object-lock-mode` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LockModeArg {
    Governance,
    Compliance,
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Paths to back up.
    /// (Required unless --from-command, --postgres or the config file's
    /// [backup] section names a source.)
    paths: Vec<PathBuf>,
    /// Dump a PostgreSQL database natively (libpq conninfo, repeatable):
    /// one consistent snapshot with the exact row count of every table.
    /// A password belongs in a passfile or PGPASSWORD, not here.
    #[arg(long = "postgres", value_name = "CONNINFO")]
    postgres: Vec<String>,
    /// Also store this command's standard output as a file (repeatable); its
    /// exit status decides success. Run with `sh -c`.
    #[arg(long = "from-command", value_name = "COMMAND")]
    from_command: Vec<String>,
    /// Where each --from-command's output appears in the snapshot, in the same
    /// order (default: stdin, stdin-2, …).
    #[arg(long = "stdin-filename", value_name = "PATH")]
    stdin_filename: Vec<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record.
    #[arg(long, env = "VAULT_HOST")]
    host: Option<String>,
    /// Exclude pattern (repeatable): `*.tmp` matches names, `/var/cache/**` whole paths.
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    /// Directory of the local file cache.
    #[arg(long, env = "VAULT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Read every file, ignoring the local cache.
    #[arg(long)]
    no_cache: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SnapshotsArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LsArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Snapshot id (or prefix), or `latest`.
    snapshot: String,
    /// Only list this path and what is below it.
    path: Option<String>,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Snapshot id (or prefix), or `latest`.
    snapshot: String,
    /// Where to restore (required unless --verify).
    #[arg(long, required_unless_present = "verify")]
    target: Option<PathBuf>,
    /// Only restore matching paths (repeatable; relative to the snapshot root).
    #[arg(long = "include")]
    include: Vec<String>,
    /// Restore into a sandbox, check every file, record a drill; exit 4 on any mismatch.
    #[arg(long)]
    verify: bool,
    /// With --verify: load database dumps into this PostgreSQL server (libpq
    /// conninfo; a scratch database is created and dropped) instead of a
    /// throwaway cluster.
    #[arg(long, value_name = "CONNINFO", requires = "verify")]
    pg_url: Option<String>,
    /// Create the block and character devices the snapshot records (as
    /// root). Off by default: a device node is access to the whole disk or
    /// memory.
    #[arg(long, conflicts_with = "verify")]
    allow_devices: bool,
    /// Keep setuid and setgid bits on restored files. Off by default: the
    /// bits are cleared and reported.
    #[arg(long, conflicts_with = "verify")]
    keep_setid: bool,
    /// Restore security.* and trusted.* extended attributes (file
    /// capabilities, SELinux and IMA labels). Off by default.
    #[arg(long, conflicts_with = "verify")]
    keep_security_xattrs: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DumpArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Snapshot id (or prefix), or `latest`.
    snapshot: String,
    /// Only this path (a file or directory) from the snapshot.
    path: Option<String>,
}

#[derive(Args)]
struct CheckArgs {
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
    #[arg(long, value_name = "N/M")]
    read_data_subset: Option<String>,
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

#[derive(Args)]
struct DrillArgs {
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

#[derive(Args)]
struct SystemdArgs {
    /// The dedicated unprivileged user the services run as.
    #[arg(long)]
    user: String,
    /// The services' group (default: the user's primary group).
    #[arg(long)]
    group: Option<String>,
    /// Write vault-backup.{service,timer} and vault-drill.{service,timer}
    /// here (e.g. /etc/systemd/system) instead of printing them.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Replace unit files that already exist in --output.
    #[arg(long, requires = "output")]
    force: bool,
    /// The config file the services pass to vault.
    #[arg(long, default_value = "/etc/vault/vault.toml")]
    config: PathBuf,
    /// When the backup runs (systemd.time(7) calendar expression).
    #[arg(long, default_value = "daily")]
    on_calendar: String,
    /// When the restore drill runs.
    #[arg(long, default_value = "weekly")]
    drill_on_calendar: String,
    /// A path the backup reads, kept read-only for it (repeatable).
    #[arg(long = "read-path", value_name = "PATH")]
    read_paths: Vec<PathBuf>,
    /// A path the services may write, such as a local repository (repeatable).
    #[arg(long = "write-path", value_name = "PATH")]
    write_paths: Vec<PathBuf>,
    /// A root-owned file handed over with LoadCredential= (repeatable):
    /// writer.key, owner.key, passphrase, aws and pgpass are wired to vault's
    /// environment. Default: writer.key:/etc/vault/writer.key and
    /// owner.key:/etc/vault/owner.key.
    #[arg(long = "credential", value_name = "NAME:PATH")]
    credentials: Vec<vault::systemd::Credential>,
    /// The vault binary for ExecStart= (default: this one).
    #[arg(long, value_name = "PATH")]
    vault_bin: Option<PathBuf>,
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell, e.g. `vault completions bash > /etc/bash_completion.d/vault`.
    shell: clap_complete::Shell,
}

#[derive(Args)]
struct ManArgs {
    /// Write vault.1 and vault-COMMAND.1 pages here (e.g. /usr/local/share/man/man1).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

/// Parses arguments, runs the command, prints errors; returns the exit code.
pub fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // On a terminal: colours and times. Under systemd (JOURNAL_STREAM set)
    // or in a pipe: plain lines with levels; the journal adds its own time.
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(on_terminal)
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        log.without_time().init();
    } else {
        log.init();
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = <Cli as clap::CommandFactory>::command();
    // `vault config check` reports a bad file itself; everything else
    // takes its defaults from the file and stops when it is invalid.
    let checking_config = defaults::is_config_command(&args);
    match vault::settings::Settings::load_for_cli(defaults::explicit_config(&args).as_deref()) {
        Ok(Some(settings)) => {
            command = defaults::apply(command, &settings);
            defaults::apply_to_libraries(&settings);
        }
        Ok(None) => {}
        Err(_) if checking_config => {}
        Err(e) => {
            eprintln!("vault: error: {e}");
            return ExitCode::Usage;
        }
    }
    let parsed = command
        .try_get_matches_from(&args)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    // Snapshot trees are walked recursively; a large stack (committed only
    // as used) lets deep but legitimate trees through.
    let worker = std::thread::Builder::new()
        .name("vault".into())
        .stack_size(256 << 20)
        .spawn(move || commands::run(cli.command, cli.config));
    let result = match worker {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic)"))),
        Err(e) => Err(anyhow::anyhow!("cannot start: {e}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::Failure
        }
    }
}
