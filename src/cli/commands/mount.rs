//! `vault mount`: browse snapshots as a read-only file system.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::{RepoArgs, SelectArgs};
use crate::cli::exit::{ExitCode, usage};

/// `vault mount`.
#[derive(Args)]
pub struct MountArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// An empty directory to mount on. The mount holds `snapshots/ID/…`
    /// and `latest`, with each entry's extended attributes but
    /// `security.*` (read-only); it ends with Ctrl-C, SIGTERM or
    /// `fusermount -u MOUNTPOINT`.
    mountpoint: PathBuf,
    /// Let other users (root included) enter the mount; needs
    /// `user_allow_other` in /etc/fuse.conf unless run as root. The file
    /// modes stored in the snapshots then decide who reads what.
    #[arg(long)]
    allow_other: bool,
}

/// Runs `vault mount` in the foreground until the file system is unmounted.
pub fn run(a: MountArgs) -> Result<ExitCode> {
    let meta = std::fs::metadata(&a.mountpoint)
        .with_context(|| format!("mount point {}", a.mountpoint.display()));
    match meta {
        Ok(m) if !m.is_dir() => usage!("mount point {}: not a directory", a.mountpoint.display()),
        Ok(_) => {}
        Err(e) => usage!("{e:#}"),
    }
    if std::fs::read_dir(&a.mountpoint)?.next().is_some() {
        usage!(
            "mount point {}: not empty (mount on an empty directory)",
            a.mountpoint.display()
        );
    }
    let repo = a.repo.open()?;
    repo.keys().require_owner("mounting snapshots")?;
    let filter = a.select.filter();
    let mut snapshots = repo.verified_snapshots()?.usable();
    snapshots.retain(|(_, s)| filter.matches(s));
    if snapshots.is_empty() && !filter.is_empty() {
        usage!(
            "no snapshot matches{} (`vault snapshots` lists them)",
            filter.describe()
        );
    }
    let (index, _) = repo.load_index()?;
    let count = snapshots.len();
    let fs = vault::ops::mount::SnapshotFs::new(
        repo,
        index,
        snapshots,
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoExec,
        fuser::MountOption::FSName("vault".into()),
        fuser::MountOption::Subtype("vault".into()),
    ];
    if a.allow_other {
        config.acl = fuser::SessionACL::All;
        config
            .mount_options
            .push(fuser::MountOption::DefaultPermissions);
    }
    let cancel = crate::cli::signals::cancel_on_signals();
    let session = fuser::spawn_mount(fs, &a.mountpoint, &config).with_context(|| {
        format!(
            "mounting on {} (FUSE needs /dev/fuse and fusermount3 or fusermount: apt-get \
             install fuse3)",
            a.mountpoint.display()
        )
    })?;
    eprintln!(
        "vault: {count} snapshot{} mounted read-only on {}; Ctrl-C or `fusermount -u {}` ends it",
        if count == 1 { "" } else { "s" },
        a.mountpoint.display(),
        a.mountpoint.display()
    );
    // A signal unmounts before the process ends (no stale mount point).
    let _listening = cancel.listen();
    // Ends when the kernel ends the session (fusermount -u) or on a signal.
    while !session.guard.is_finished() && !cancel.is_cancelled() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if session.guard.is_finished() {
        session.join().context("serving the mount")?;
    } else {
        session
            .umount_and_join()
            .with_context(|| format!("unmounting {}", a.mountpoint.display()))?;
    }
    eprintln!("vault: {} unmounted", a.mountpoint.display());
    Ok(ExitCode::Ok)
}
