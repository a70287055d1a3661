//! Careful file-system operations for restore: nothing is written outside
//! the target, nothing is followed through a symlink, and files appear under
//! their final name only once complete and verified.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, User, fchownat, mkfifo};

use crate::format::tree::{Node, NodeKind};

/// Creates `path` as a directory, or accepts an existing real directory.
/// A symlink (or anything else) planted there is refused.
pub fn ensure_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let m = fs::symlink_metadata(path)?;
            if m.file_type().is_dir() {
                Ok(())
            } else if m.file_type().is_symlink() {
                Err(io::Error::other(
                    "refusing to restore through a symlink planted in the target",
                ))
            } else {
                Err(io::Error::other("a non-directory is in the way"))
            }
        }
        Err(e) => Err(e),
    }
}

/// A temporary name next to `final_path`.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut r);
    final_path.with_file_name(format!(".vault-restore-{}", hex::encode(r)))
}

/// Creates a new, empty temporary file (never following a symlink).
pub fn create_temp_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Moves a completed temporary entry to its final name. An existing file or
/// symlink there is replaced; an existing directory is refused.
pub fn commit(tmp: &Path, final_path: &Path) -> io::Result<()> {
    if let Ok(m) = fs::symlink_metadata(final_path)
        && m.is_dir()
    {
        return Err(io::Error::other("a directory is in the way"));
    }
    fs::rename(tmp, final_path)
}

/// Creates a non-file, non-directory entry at the temporary path `tmp`.
/// Returns `Ok(false)` for kinds that are not restored (sockets, devices
/// when not root).
pub fn create_special(tmp: &Path, node: &Node) -> io::Result<bool> {
    match node.kind {
        NodeKind::Symlink => {
            let target = node
                .target
                .as_ref()
                .map(|t| t.0.as_slice())
                .unwrap_or_default();
            std::os::unix::fs::symlink(OsStr::from_bytes(target), tmp)?;
        }
        NodeKind::Fifo => mkfifo(tmp, Mode::from_bits_truncate(0o600)).map_err(io::Error::from)?,
        NodeKind::Chardev | NodeKind::Blockdev => {
            if !nix::unistd::geteuid().is_root() {
                return Ok(false);
            }
            let kind = if node.kind == NodeKind::Chardev {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            mknod(
                tmp,
                kind,
                Mode::from_bits_truncate(0o600),
                node.rdev.unwrap_or(0),
            )
            .map_err(io::Error::from)?;
        }
        NodeKind::Socket | NodeKind::File | NodeKind::Dir => return Ok(false),
    }
    Ok(true)
}

/// Applies ownership (when root), mode, xattrs and mtime to `path`, without
/// following a symlink. Returns a description of what could not be applied.
pub fn apply_metadata(path: &Path, node: &Node, as_root: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    let is_link = node.kind == NodeKind::Symlink;
    if as_root {
        let uid = node
            .user
            .as_deref()
            .and_then(|n| User::from_name(n).ok().flatten())
            .map_or(Uid::from_raw(node.uid), |u| u.uid);
        let gid = node
            .group
            .as_deref()
            .and_then(|n| Group::from_name(n).ok().flatten())
            .map_or(Gid::from_raw(node.gid), |g| g.gid);
        if let Err(e) = fchownat(
            AT_FDCWD,
            path,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            problems.push(format!("owner: {e}"));
        }
    }
    if !is_link
        && let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(node.mode & 0o7777))
    {
        problems.push(format!("mode: {e}"));
    }
    for x in &node.xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(&x.name.0), &x.value) {
            problems.push(format!("xattr {:?}: {e}", x.name));
        }
    }
    let ts = TimeSpec::new(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000),
    );
    if let Err(e) = utimensat(AT_FDCWD, path, &ts, &ts, UtimensatFlags::NoFollowSymlink) {
        problems.push(format!("mtime: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
