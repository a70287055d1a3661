//! `vault restore`: write a snapshot back to disk, or prove it restores
//! with `--verify`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::drill::{DrillUserArg, database_drill};
use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::ExitCode;
use crate::cli::render;
use vault::ops::restore::{self, RestoreOptions, VerifyOptions};

/// `vault restore`.
#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Snapshot id (or prefix), or `latest` (the newest that --host, --tag
    /// and --path let through).
    snapshot: String,
    /// Where to restore (required unless --verify).
    #[arg(long, required_unless_present = "verify")]
    target: Option<PathBuf>,
    /// Only restore matching paths (repeatable; relative to the snapshot root).
    #[arg(long = "include")]
    include: Vec<String>,
    /// Never restore matching paths (repeatable): `*.tmp` matches names
    /// anywhere, `var/cache/**` (with a `/`) paths from the snapshot root.
    #[arg(long = "exclude", value_name = "PATTERN", conflicts_with = "verify")]
    exclude: Vec<String>,
    /// What to do with a file, symlink or other entry that already exists
    /// in the target: `always` replace it (the default, as before),
    /// `if-changed` replace it only when its content, size, mode, mtime or
    /// owner differs from the snapshot's, `never` leave it. An existing
    /// entry is never written into: a replacement is renamed over it.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = OverwriteArg::Always, conflicts_with = "verify")]
    overwrite: OverwriteArg,
    /// List what would be written (with --target) and write nothing.
    #[arg(long, conflicts_with = "verify", requires = "target")]
    dry_run: bool,
    /// Restore into a sandbox, check every file, record a drill; exit 4 on any mismatch.
    #[arg(long)]
    verify: bool,
    /// With --verify: load database dumps into this PostgreSQL server (libpq
    /// conninfo; a scratch database is created and dropped) instead of a
    /// throwaway cluster. Its role must not be a superuser or hold
    /// CREATEROLE or the pg_*_server_* roles.
    #[arg(long, value_name = "CONNINFO", requires = "verify")]
    pg_url: Option<String>,
    #[command(flatten)]
    drill_user: DrillUserArg,
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

/// `--overwrite` values.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OverwriteArg {
    /// Replace existing entries.
    Always,
    /// Replace existing entries that differ from the snapshot's.
    IfChanged,
    /// Keep existing entries.
    Never,
}

impl From<OverwriteArg> for restore::Overwrite {
    fn from(a: OverwriteArg) -> Self {
        match a {
            OverwriteArg::Always => restore::Overwrite::Always,
            OverwriteArg::IfChanged => restore::Overwrite::IfChanged,
            OverwriteArg::Never => restore::Overwrite::Never,
        }
    }
}

/// Runs `vault restore`; exits 4 on damage or (with `--verify`) any mismatch.
pub fn run(a: RestoreArgs) -> Result<ExitCode> {
    let databases = database_drill(a.pg_url.clone(), &a.drill_user)?;
    let repo = a.repo.open()?;
    let (id, snap) = vault::repo::select::find(&repo, &a.snapshot, &a.select.filter())?;
    let progress = std::sync::Arc::new(vault::ops::progress::Progress::default());
    let (report, drill) = if a.verify {
        let cancel = crate::cli::signals::cancel_on_signals();
        let opts = VerifyOptions {
            target: a.target.clone(),
            include: a.include.clone(),
            databases,
            cancel: cancel.clone(),
            progress: Some(progress.clone()),
        };
        let meter = crate::cli::progress::Meter::start(&progress, a.json);
        let verified = restore::verify_drill(&repo, &id, &snap, &opts);
        drop(meter);
        let (r, d) = match crate::cli::signals::interrupted(verified, &cancel)? {
            Ok(done) => done,
            Err(code) => return Ok(code),
        };
        (r, d)
    } else {
        let target = a
            .target
            .clone()
            .expect("clap requires --target without --verify");
        if a.dry_run {
            return dry_run(&repo, &id, &snap, &a, &target);
        }
        let opts = RestoreOptions {
            target,
            include: a.include.clone(),
            exclude: a.exclude.clone(),
            threads: 0,
            verify: false,
            cancel: vault::Cancel::new(),
            policy: restore::RestorePolicy {
                allow_devices: a.allow_devices,
                keep_setid: a.keep_setid,
                keep_security_xattrs: a.keep_security_xattrs,
            },
            overwrite: a.overwrite.into(),
            progress: Some(progress.clone()),
        };
        let meter = crate::cli::progress::Meter::start(&progress, a.json);
        let restored = restore::restore(&repo, &id, &snap, &opts);
        drop(meter);
        (restored?, None)
    };
    let outcome = render::restore::Outcome {
        id: &id,
        snapshot: &snap,
        report: &report,
        drill: drill.as_ref(),
        verify: a.verify,
        partial: !a.include.is_empty() || !a.exclude.is_empty(),
    };
    if a.json {
        render::restore::json(&outcome);
    } else {
        render::restore::text(&outcome);
    }
    // Damage or a mismatch (a file, a database's row counts) is 4; a
    // restore that failed for another reason (a permission, a full disk)
    // is 1, with or without --verify.
    let mismatch = report.found_damage() || report.databases.iter().any(|d| !d.passed);
    Ok(if !report.failed() && !mismatch {
        ExitCode::Ok
    } else if mismatch {
        ExitCode::Damage
    } else {
        ExitCode::Failure
    })
}

/// `--dry-run`: the entries a restore would write into `target`, one per
/// line (as `vault ls` shows them), and totals; nothing is created, not
/// even the target.
fn dry_run(
    repo: &vault::repo::Repository,
    id: &vault::format::id::SnapshotId,
    snap: &vault::format::snapshot::Snapshot,
    a: &RestoreArgs,
    target: &std::path::Path,
) -> Result<ExitCode> {
    use vault::repo::treewalk::{self, Next, Visit};
    repo.keys().require_owner("restore")?;
    let selection = restore::Selection::new(&a.include, &a.exclude)?;
    let (index, _) = repo.load_index()?;
    let mut walker =
        treewalk::Walker::new(repo, &index)?.with_budget(treewalk::Budget::of(&snap.totals));
    let (mut files, mut dirs, mut other, mut bytes, mut damaged) = (0u64, 0u64, 0u64, 0u64, false);
    walker.walk(&snap.root, &mut |v| {
        let (path, node) = match v {
            Visit::Entry { path, node } => (path, node),
            Visit::Leave { .. } => return Ok(Next::Descend),
            Visit::Damaged { path, error } => {
                damaged = true;
                render::error_line(&format!(
                    "{}: {error}",
                    render::sanitize(&path.display().to_string())
                ));
                return Ok(Next::Skip);
            }
        };
        if selection.excluded(path) {
            return Ok(Next::Skip);
        }
        if !selection.included(path) {
            return Ok(Next::Descend);
        }
        match node.kind {
            vault::format::tree::NodeKind::Dir => dirs += 1,
            vault::format::tree::NodeKind::File => {
                files += 1;
                bytes += node.size;
            }
            _ => other += 1,
        }
        if a.json {
            outln!("{}", render::ls::json_line(path, node));
        } else {
            outln!("{}", render::ls::line(path, node));
        }
        Ok(Next::Descend)
    })?;
    if files + dirs + other == 0 && !a.include.is_empty() {
        anyhow::bail!(vault::Error::NotFound(format!(
            "--include {} matched nothing in snapshot {}",
            a.include.join(", "),
            id.short()
        )));
    }
    if !a.json {
        eprintln!(
            "dry run: would restore {}, {}, {other} other ({}) of snapshot {} into {}; nothing \
             was written",
            render::count(files, "file"),
            render::count(dirs, "dir"),
            render::size(bytes),
            id.short(),
            render::sanitize(&target.display().to_string())
        );
    }
    Ok(if damaged {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    })
}
