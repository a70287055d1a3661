//! Careful file-system operations for restore. Everything happens relative to
//! open directory handles, one path component at a time, never following a
//! symlink; metadata is set on open handles, never by path. A user who owns
//! a directory inside the target and swaps it for a symlink while root
//! restores (issue 11, "Restore race") therefore cannot redirect a single
//! write, chmod or chown outside the target: the handle keeps pointing at the
//! directory restore created or checked, wherever it has been moved.
//!
//! Files appear under their final name only once complete and verified.
//! A new file is created unnamed (`O_TMPFILE`) in its parent directory, with
//! its final permission bits, and linked under its name only once written,
//! verified and given its metadata (`linkat`, which never replaces an entry
//! nor follows a symlink there): no temporary name, no rename, and a crash
//! leaves nothing behind. Where the file system has no `O_TMPFILE`, and
//! for an entry that replaces an existing one, the file is created under a
//! temporary name (`O_CREAT|O_EXCL|O_NOFOLLOW`) relative to its parent's
//! handle and renamed within that same handle.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat, mknodat};
use nix::unistd::{UnlinkatFlags, linkat, mkfifoat, symlinkat, unlinkat};

use crate::format::tree::{Node, NodeKind};

/// Identifies one inode: what a handle was checked against when it is
/// reopened later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The inode an open file is.
    pub fn of_file(f: &File) -> io::Result<Self> {
        Ok(FileId::of(&fstat(f.as_fd()).map_err(io_err)?))
    }

    /// The inode `st` describes.
    pub fn of(st: &FileStat) -> Self {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// An open directory.
#[derive(Debug)]
pub struct Dir {
    file: File,
    id: FileId,
    /// The owner and group new entries get (the directory's group when it
    /// is setgid).
    new_owner: (u32, u32),
    /// Restore created this directory (empty, mode 0700, ours) and holds
    /// it open: nothing was in it before this restore.
    fresh: bool,
    /// Restore made this directory out of sight: under a temporary name,
    /// or in a directory that is out of sight. Nothing in it is under its
    /// final path until the restore names the staged directory at the end.
    hidden: bool,
    /// Only its owner, the restoring user, can add, remove or rename
    /// entries in it.
    private: bool,
    /// The file system takes `O_TMPFILE` here (until it says otherwise).
    unnamed_ok: AtomicBool,
    /// A new file here gets exactly the mode it is created with less the
    /// umask (no default ACL on this directory decides otherwise).
    umask_rules: OnceLock<bool>,
}

/// Flags for opening a directory as a handle.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Resolution that stays beneath the starting handle and follows no symlink
/// (nor `/proc` magic link) anywhere on the way.
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// The error for something other than a directory where one is needed.
fn not_a_dir(found: Option<&FileStat>) -> io::Error {
    match found.map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT) {
        Some(SFlag::S_IFLNK) => {
            io::Error::other("refusing to restore through a symlink planted in the target")
        }
        _ => io::Error::other("a non-directory is in the way"),
    }
}

impl Dir {
    fn from_fd(fd: OwnedFd) -> io::Result<Dir> {
        let st = fstat(&fd).map_err(io_err)?;
        let gid = if st.st_mode & libc::S_ISGID != 0 {
            st.st_gid
        } else {
            nix::unistd::getegid().as_raw()
        };
        Ok(Dir {
            file: File::from(fd),
            id: FileId::of(&st),
            new_owner: (nix::unistd::geteuid().as_raw(), gid),
            fresh: false,
            hidden: false,
            private: st.st_uid == nix::unistd::geteuid().as_raw() && st.st_mode & 0o022 == 0,
            unnamed_ok: AtomicBool::new(proc_fd_available()),
            umask_rules: OnceLock::new(),
        })
    }

    /// Whether restore created this directory in this run (so nothing but
    /// what restore put there can be in it).
    pub fn fresh(&self) -> bool {
        self.fresh
    }

    /// Whether restore made this directory out of sight of its final path
    /// ([`Dir::ensure_child_dir_staged`]).
    pub fn hidden(&self) -> bool {
        self.hidden
    }

    /// Marks a directory restore made out of sight, closed and now reopened
    /// (and checked to be the same inode), as out of sight again: it is
    /// still beneath the staged directory, which only the restoring user
    /// can change.
    pub fn keep_hidden(&mut self) {
        self.hidden = true;
    }

    /// The permission bits a file created here with `mode` gets, when they
    /// are known without asking (`None`: set them after creation). The
    /// umask clears bits, a default ACL on the directory replaces the umask,
    /// and the kernel may drop setgid at creation: only plain permission
    /// bits that the umask leaves alone, in a directory without a default
    /// ACL, are known.
    pub fn created_mode(&self, mode: u32) -> Option<u32> {
        let umask = process_umask()?;
        let plain = mode & 0o7000 == 0 && mode & umask == 0;
        let rules = *self.umask_rules.get_or_init(|| {
            match xattr::FileExt::get_xattr(&self.file, "system.posix_acl_default") {
                Ok(None) => true,
                // No ACLs on this file system at all.
                Err(e) => e.raw_os_error() == Some(libc::EOPNOTSUPP),
                Ok(Some(_)) => false,
            }
        });
        (plain && rules).then_some(mode)
    }

    /// The owner and group a file created here starts with.
    pub fn new_owner(&self) -> (u32, u32) {
        self.new_owner
    }

    /// Opens the restore target, creating it (and its parents) when missing.
    /// A target that is itself a symlink is refused: restore would otherwise
    /// write wherever the link points, which whoever made it chose.
    pub fn open_target(path: &Path) -> io::Result<Dir> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::other(
                    "is a symlink; give the directory it points to as --target",
                ));
            }
            Ok(m) if !m.is_dir() => return Err(io::Error::other("is not a directory")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(path)?,
            Err(e) => return Err(e),
        }
        let fd = nix::fcntl::open(path, dir_flags(), Mode::empty()).map_err(|e| match e {
            Errno::ELOOP => io::Error::other("is a symlink; give the directory it points to"),
            e => io_err(e),
        })?;
        Dir::from_fd(fd)
    }

    /// Which inode this handle is.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The handle as a [`File`], for `fsync`, `fchmod` and the like.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Opens `rel` (one or more components) beneath this directory without
    /// following any symlink.
    fn open_beneath(&self, rel: &Path) -> io::Result<OwnedFd> {
        let how = OpenHow::new().flags(dir_flags()).resolve(beneath());
        match openat2(self.file.as_fd(), rel, how) {
            Err(Errno::ENOSYS) => self.open_by_components(rel),
            r => r.map_err(io_err),
        }
    }

    /// `openat2` is missing (Linux before 5.6, or a seccomp filter): walk
    /// one component at a time with `O_NOFOLLOW`, which is the same thing
    /// for the plain names trees are allowed to hold.
    fn open_by_components(&self, rel: &Path) -> io::Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        for c in rel.components() {
            let std::path::Component::Normal(name) = c else {
                return Err(io::Error::other("not a plain relative path"));
            };
            let at: BorrowedFd<'_> = cur.as_ref().map_or(self.file.as_fd(), |f| f.as_fd());
            let next = openat(at, name, dir_flags(), Mode::empty()).map_err(io_err)?;
            cur = Some(next);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => Ok(self.file.as_fd().try_clone_to_owned()?),
        }
    }

    /// Opens the child directory `name`, creating it (mode 0700, owned by
    /// whoever restores, so no one else can touch its contents until the
    /// final pass) when missing. An existing real directory is accepted; a
    /// symlink or anything else there is refused.
    pub fn ensure_child_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let created = match mkdirat(self.file.as_fd(), name, Mode::S_IRWXU) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(io_err(e)),
        };
        self.open_child_dir(name, created)
    }

    /// Like [`Dir::ensure_child_dir`], but a new directory in a directory
    /// that is not out of sight is made under a fresh temporary name,
    /// returned with it: everything restored beneath it stays out of sight
    /// of its final path until [`Dir::commit_new`] names it, so a restore
    /// killed outright leaves nothing under a final name there (see
    /// [`Dir::create_new_file`]). In a directory out of sight, the child is
    /// made under its name (and is out of sight too). Only where no other
    /// user can rename entries (a directory of the restoring user's that
    /// group and others cannot write): elsewhere someone could move the
    /// staged directory away before it is named, and the child is made
    /// under its name, not out of sight, as by [`Dir::ensure_child_dir`].
    pub fn ensure_child_dir_staged(&self, name: &OsStr) -> io::Result<(Dir, Option<OsString>)> {
        if self.hidden {
            let mut dir = self.ensure_child_dir(name)?;
            dir.hidden = dir.fresh;
            return Ok((dir, None));
        }
        if !self.private || self.stat_child(name)?.is_some() {
            return Ok((self.ensure_child_dir(name)?, None));
        }
        loop {
            let tmp = temp_name();
            match mkdirat(self.file.as_fd(), tmp.as_os_str(), Mode::S_IRWXU) {
                Ok(()) => {
                    return match self.open_child_dir(&tmp, true) {
                        Ok(mut dir) => {
                            dir.hidden = true;
                            Ok((dir, Some(tmp)))
                        }
                        Err(e) => {
                            let _ = unlinkat(
                                self.file.as_fd(),
                                tmp.as_os_str(),
                                UnlinkatFlags::RemoveDir,
                            );
                            Err(e)
                        }
                    };
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    /// Opens the child directory `name` beneath this one; `created`: this
    /// restore just made it (checked to be ours, and made 0700).
    fn open_child_dir(&self, name: &OsStr, created: bool) -> io::Result<Dir> {
        let fd = match self.open_beneath(Path::new(name)) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let found = fstatat(self.file.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
                return Err(not_a_dir(found.as_ref()));
            }
            Err(e) => return Err(e),
        };
        let mut dir = Dir::from_fd(fd)?;
        dir.fresh = created;
        if created {
            // What we just made must be ours: someone who swapped in a
            // directory of their own (to move it away later with our files
            // inside) is caught here.
            let st = fstat(dir.file.as_fd()).map_err(io_err)?;
            if st.st_uid != nix::unistd::geteuid().as_raw() {
                return Err(io::Error::other(
                    "the directory was replaced while it was being created",
                ));
            }
            nix::sys::stat::fchmod(dir.file.as_fd(), Mode::S_IRWXU).map_err(io_err)?;
        }
        Ok(dir)
    }

    /// Reopens the directory `rel` beneath this one (never through a
    /// symlink) and checks that it is still the inode `expect`.
    pub fn reopen(&self, rel: &Path, expect: FileId) -> io::Result<Dir> {
        let dir = match self.open_beneath(rel) {
            Ok(fd) => Dir::from_fd(fd)?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(io::Error::other(
                    "replaced by a symlink or a file during restore; not followed",
                ));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(io::Error::other("moved away or removed during restore"));
            }
            Err(e) => return Err(e),
        };
        if dir.id != expect {
            return Err(io::Error::other(
                "replaced by another directory during restore; left alone",
            ));
        }
        Ok(dir)
    }

    /// Creates a new, empty file under a fresh temporary name, open for
    /// reading and writing (never following a symlink, never reusing a name).
    pub fn create_temp_file(&self) -> io::Result<(File, OsString)> {
        loop {
            let tmp = temp_name();
            match openat(
                self.file.as_fd(),
                tmp.as_os_str(),
                OFlag::O_RDWR
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            ) {
                Ok(fd) => return Ok((File::from(fd), tmp)),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    /// Creates a new file under its final name `name` with permission bits
    /// `mode` (less the umask), open for reading and writing, never
    /// following a symlink nor reusing an entry (`O_CREAT|O_EXCL|
    /// O_NOFOLLOW`): `Ok(None)` when something has the name. Only for a
    /// directory restore made out of sight ([`Dir::hidden`]): it is under a
    /// temporary name, or beneath one, until the restore ends
    /// ([`Dir::ensure_child_dir_staged`]), and only the restoring user can
    /// add or change entries in it (0700), so a file there is complete and
    /// verified before anyone can see it under its final path, and one that
    /// fails is removed by name ([`Dir::remove_failed`]).
    pub fn create_new_file(&self, name: &OsStr, mode: u32) -> io::Result<Option<File>> {
        debug_assert!(self.hidden, "final names only in directories out of sight");
        match openat(
            self.file.as_fd(),
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode & 0o777),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::EEXIST) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Removes the file `name` that [`Dir::create_new_file`] made here and
    /// that failed.
    pub fn remove_failed(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(self.file.as_fd(), name, UnlinkatFlags::NoRemoveDir).map_err(io_err)
    }

    /// Creates a new, unnamed file in this directory (`O_TMPFILE`) with
    /// permission bits `mode` (less the umask), open for reading and
    /// writing; no one can open it until [`Dir::link_unnamed`] names it.
    /// `Ok(None)` when the file system cannot (the caller falls back to
    /// [`Dir::create_temp_file`]).
    pub fn create_unnamed(&self, mode: u32) -> io::Result<Option<File>> {
        if !self.unnamed_ok.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match openat(
            self.file.as_fd(),
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode & 0o777),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            // No O_TMPFILE on this file system or kernel.
            Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
                self.unnamed_ok.store(false, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Names the unnamed file `file` `name` in this directory. The link is
    /// made through the file's own handle (`/proc/self/fd/N`, which lands on
    /// that very inode) and never replaces an existing entry, nor follows a
    /// symlink at `name`: `Ok(false)` when something has the name.
    ///
    /// With `CAP_DAC_READ_SEARCH` (root) the handle itself is linked
    /// (`AT_EMPTY_PATH`: the same inode, without a path lookup through
    /// `/proc`); without it the kernel says `ENOENT`, and from then on this
    /// process links through `/proc`.
    pub fn link_unnamed(&self, file: &File, name: &OsStr) -> io::Result<bool> {
        static EMPTY_PATH_OK: AtomicBool = AtomicBool::new(true);
        let linked = if EMPTY_PATH_OK.load(Ordering::Relaxed) {
            match linkat(
                file.as_fd(),
                "",
                self.file.as_fd(),
                name,
                AtFlags::AT_EMPTY_PATH,
            ) {
                // No capability (or an old kernel): go through /proc.
                Err(Errno::ENOENT | Errno::EPERM | Errno::EINVAL) => {
                    EMPTY_PATH_OK.store(false, Ordering::Relaxed);
                    None
                }
                r => Some(r),
            }
        } else {
            None
        };
        let linked = match linked {
            Some(r) => r,
            None => linkat(
                nix::fcntl::AT_FDCWD,
                &Handle::proc_path(file.as_fd()),
                self.file.as_fd(),
                name,
                AtFlags::AT_SYMLINK_FOLLOW,
            ),
        };
        match linked {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Names the unnamed file `file` with a fresh temporary name here, to
    /// [`Dir::commit`] over an existing entry.
    pub fn link_unnamed_temp(&self, file: &File) -> io::Result<OsString> {
        loop {
            let tmp = temp_name();
            if self.link_unnamed(file, &tmp)? {
                return Ok(tmp);
            }
        }
    }

    /// Creates a symlink, fifo or device node under a temporary name and
    /// returns a path-only handle on it (a device is never opened), checked
    /// to be what was just created. `Ok(None)` for kinds never restored.
    pub fn create_special(&self, node: &Node) -> io::Result<Option<(Special, OsString)>> {
        let tmp = temp_name();
        let at = self.file.as_fd();
        let (kind, rdev) = match node.kind {
            NodeKind::Symlink => {
                let target = node.target.as_ref().map_or(&[][..], |t| t.0.as_slice());
                symlinkat(OsStr::from_bytes(target), at, tmp.as_os_str()).map_err(io_err)?;
                (SFlag::S_IFLNK, None)
            }
            NodeKind::Fifo => {
                mkfifoat(at, tmp.as_os_str(), Mode::S_IRUSR | Mode::S_IWUSR).map_err(io_err)?;
                (SFlag::S_IFIFO, None)
            }
            NodeKind::Chardev | NodeKind::Blockdev => {
                let kind = if node.kind == NodeKind::Chardev {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                let rdev = node.rdev.unwrap_or(0);
                mknodat(
                    at,
                    tmp.as_os_str(),
                    kind,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                    rdev,
                )
                .map_err(io_err)?;
                (kind, Some(rdev))
            }
            NodeKind::Socket | NodeKind::File | NodeKind::Dir => return Ok(None),
        };
        match self.open_created(&tmp, kind, rdev) {
            Ok(fd) => Ok(Some((Special { fd, kind }, tmp))),
            Err(e) => {
                self.remove_temp(&tmp);
                Err(e)
            }
        }
    }

    /// Opens what was just created at `tmp` (`O_PATH|O_NOFOLLOW`) and checks
    /// it is still ours: its type, our owner, one link, the device number.
    fn open_created(&self, tmp: &OsStr, kind: SFlag, rdev: Option<u64>) -> io::Result<OwnedFd> {
        let fd = openat(
            self.file.as_fd(),
            tmp,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        let st = fstat(&fd).map_err(io_err)?;
        let ours = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
            && st.st_uid == nix::unistd::geteuid().as_raw()
            && st.st_nlink == 1
            && rdev.is_none_or(|r| st.st_rdev == r);
        if !ours {
            return Err(io::Error::other("replaced while it was being created"));
        }
        Ok(fd)
    }

    /// Moves a completed temporary entry to its final name within this
    /// directory. An existing file or symlink there is replaced (the link
    /// itself, never what it points to); an existing directory is refused.
    pub fn commit(&self, tmp: &OsStr, name: &OsStr) -> io::Result<()> {
        let at = self.file.as_fd();
        renameat(at, tmp, at, name).map_err(|e| match e {
            Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST => {
                io::Error::other("a directory is in the way")
            }
            e => io_err(e),
        })
    }

    /// Like [`Dir::commit`], but never replaces an existing entry (the
    /// check and the rename are one step: `RENAME_NOREPLACE`). `Ok(false)`
    /// when something already has that name; the temporary entry is then
    /// left for the caller to remove.
    pub fn commit_new(&self, tmp: &OsStr, name: &OsStr) -> io::Result<bool> {
        let at = self.file.as_fd();
        match rustix::fs::renameat_with(at, tmp, at, name, rustix::fs::RenameFlags::NOREPLACE) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Names the staged directory `tmp` `name` in this directory, which
    /// only the restoring user can change ([`Dir::ensure_child_dir_staged`]):
    /// [`Dir::commit_new`], or, where the file system refuses
    /// `RENAME_NOREPLACE` (`EINVAL`: NFS, 9p, FUSE without it), a check
    /// that nothing has the name and a plain rename, which no one else can
    /// race in such a directory. `Ok(false)` when something has the name.
    pub fn name_staged(&self, tmp: &OsStr, name: &OsStr) -> io::Result<bool> {
        match self.commit_new(tmp, name) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.private => {
                self.rename_if_free(tmp, name)
            }
            r => r,
        }
    }

    /// Renames `tmp` to `name` unless something has that name (checked
    /// first: only for a directory no one else can change).
    fn rename_if_free(&self, tmp: &OsStr, name: &OsStr) -> io::Result<bool> {
        if self.stat_child(name)?.is_some() {
            return Ok(false);
        }
        let at = self.file.as_fd();
        rustix::fs::renameat(at, tmp, at, name)?;
        Ok(true)
    }

    /// What is at `name` in this directory (never following a symlink);
    /// `None` when nothing is.
    pub fn stat_child(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(self.file.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Opens the existing regular file `name` for reading (never following
    /// a symlink, never blocking on a fifo) and checks that it is still the
    /// inode `expect` describes.
    pub fn open_existing_file(&self, name: &OsStr, expect: &FileStat) -> io::Result<File> {
        let fd = openat(
            self.file.as_fd(),
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        let st = fstat(&fd).map_err(io_err)?;
        if FileId::of(&st) != FileId::of(expect)
            || SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG
        {
            return Err(io::Error::other("replaced while it was being compared"));
        }
        Ok(File::from(fd))
    }

    /// The target of the existing symlink `name`.
    pub fn read_link_child(&self, name: &OsStr) -> io::Result<OsString> {
        nix::fcntl::readlinkat(self.file.as_fd(), name).map_err(io_err)
    }

    /// Removes a temporary entry (best effort: it is only a leftover).
    pub fn remove_temp(&self, tmp: &OsStr) {
        let _ = unlinkat(self.file.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
    }

    /// Hard-links `name` in `from` to a temporary name here and checks that
    /// the new link is the inode `expect` (what restore committed under that
    /// name), so that an entry swapped in meanwhile is never linked into the
    /// target. Returns the temporary name, to [`Dir::commit`].
    pub fn link_from(&self, from: &Dir, name: &OsStr, expect: FileId) -> io::Result<OsString> {
        let tmp = temp_name();
        linkat(
            from.file.as_fd(),
            name,
            self.file.as_fd(),
            tmp.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(io_err)?;
        match fstatat(
            self.file.as_fd(),
            tmp.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if FileId::of(&st) == expect => Ok(tmp),
            _ => {
                self.remove_temp(&tmp);
                Err(io::Error::other(
                    "the first entry of its hard-link group was replaced during restore",
                ))
            }
        }
    }
}

/// A created symlink, fifo or device, held by an `O_PATH` handle.
pub struct Special {
    fd: OwnedFd,
    kind: SFlag,
}

impl Special {
    /// Which inode it is.
    pub fn id(&self) -> io::Result<FileId> {
        Ok(FileId::of(&fstat(&self.fd).map_err(io_err)?))
    }
}

/// Something restore holds open and sets metadata on.
pub enum Handle<'a> {
    /// A regular file or directory, opened for real.
    Open(&'a File),
    /// A symlink, fifo or device, held by an `O_PATH` handle.
    Path(&'a Special),
}

impl Handle<'_> {
    /// `/proc/self/fd/N`: how the few operations Linux offers no `O_PATH`
    /// form of (chmod, times, xattrs) reach the very inode held, without
    /// resolving any name in the target. Following this magic link lands
    /// on the held inode itself, even when that inode is a symlink.
    fn proc_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    fn is_symlink(&self) -> bool {
        matches!(self, Handle::Path(s) if s.kind == SFlag::S_IFLNK)
    }

    /// Sets the owner (lchown semantics for a symlink).
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = (
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        );
        match self {
            Handle::Open(f) => nix::unistd::fchown(f.as_fd(), uid, gid),
            Handle::Path(s) => nix::unistd::fchownat(
                s.fd.as_fd(),
                "",
                uid,
                gid,
                AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
        }
        .map_err(io_err)
    }

    /// Sets the permission bits (symlinks have none: nothing is done).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        let mode = Mode::from_bits_truncate(mode & 0o7777);
        match self {
            Handle::Open(f) => nix::sys::stat::fchmod(f.as_fd(), mode).map_err(io_err),
            Handle::Path(_) if self.is_symlink() => Ok(()),
            Handle::Path(s) => nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &Self::proc_path(s.fd.as_fd()),
                mode,
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(io_err),
        }
    }

    /// Sets one extended attribute.
    pub fn set_xattr(&self, name: &OsStr, value: &[u8]) -> io::Result<()> {
        match self {
            Handle::Open(f) => xattr::FileExt::set_xattr(*f, name, value),
            Handle::Path(s) => xattr::set_deref(Self::proc_path(s.fd.as_fd()), name, value),
        }
    }

    /// Sets the access and modification times.
    pub fn set_times(&self, mtime_ns: i64) -> io::Result<()> {
        let ts = nix::sys::time::TimeSpec::new(
            mtime_ns.div_euclid(1_000_000_000),
            mtime_ns.rem_euclid(1_000_000_000),
        );
        match self {
            Handle::Open(f) => nix::sys::stat::futimens(f.as_fd(), &ts, &ts),
            Handle::Path(s) => nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &Self::proc_path(s.fd.as_fd()),
                &ts,
                &ts,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            ),
        }
        .map_err(io_err)
    }
}

/// Whether `/proc/self/fd` is there to name unnamed files through.
fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// The process's umask, read once (from `/proc/self/status`: setting it to
/// read it would race with other threads creating files). `None` when it
/// cannot be read.
fn process_umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// A fresh, unpredictable temporary name (from the thread's CSPRNG: no
/// system call per file).
fn temp_name() -> OsString {
    let mut r = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut r);
    OsString::from_vec(format!(".vault-restore-{}", hex::encode(r)).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn node(kind: NodeKind, target: &Path) -> Node {
        Node {
            target: Some(crate::format::tree::Bytes(
                target.as_os_str().as_bytes().to_vec(),
            )),
            ..Node::bare(b"x", kind)
        }
    }

    #[test]
    fn a_symlinked_target_and_planted_symlinks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, tmp.path().join("link")).unwrap();
        let e = Dir::open_target(&tmp.path().join("link")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");

        let target = Dir::open_target(&tmp.path().join("t")).unwrap();
        symlink(&outside, tmp.path().join("t/planted")).unwrap();
        let e = target.ensure_child_dir(OsStr::new("planted")).unwrap_err();
        assert!(e.to_string().contains("symlink planted"), "{e}");
        std::fs::write(tmp.path().join("t/file"), b"").unwrap();
        let e = target.ensure_child_dir(OsStr::new("file")).unwrap_err();
        assert!(e.to_string().contains("non-directory"), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn reopening_never_follows_a_swapped_in_symlink_or_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let target = Dir::open_target(&tmp.path().join("t")).unwrap();
        let a = target.ensure_child_dir(OsStr::new("a")).unwrap();
        let b = a.ensure_child_dir(OsStr::new("b")).unwrap();
        assert_eq!(
            target.reopen(Path::new("a/b"), b.id()).unwrap().id(),
            b.id()
        );

        // The held handle still writes into the real directory, wherever it went.
        let t = tmp.path().join("t");
        std::fs::rename(t.join("a"), t.join("moved")).unwrap();
        symlink(tmp.path(), t.join("a")).unwrap();
        let (_, name) = b.create_temp_file().unwrap();
        assert!(t.join("moved/b").join(&name).exists());
        let e = target.reopen(Path::new("a/b"), b.id()).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");

        std::fs::remove_file(t.join("a")).unwrap();
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        let e = target.reopen(Path::new("a/b"), b.id()).unwrap_err();
        assert!(e.to_string().contains("another directory"), "{e}");
    }

    #[test]
    fn links_are_made_only_to_the_committed_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let target = Dir::open_target(tmp.path()).unwrap();
        let (f, tmpname) = target.create_temp_file().unwrap();
        let id = FileId::of_file(&f).unwrap();
        target.commit(&tmpname, OsStr::new("first")).unwrap();
        let link = target.link_from(&target, OsStr::new("first"), id).unwrap();
        target.commit(&link, OsStr::new("second")).unwrap();
        let m = std::fs::metadata(tmp.path().join("second")).unwrap();
        assert_eq!((m.dev(), m.ino()), (id.dev, id.ino));

        // Swapped for something else: nothing is linked.
        std::fs::remove_file(tmp.path().join("first")).unwrap();
        std::fs::write(tmp.path().join("first"), b"other").unwrap();
        let e = target
            .link_from(&target, OsStr::new("first"), id)
            .unwrap_err();
        assert!(e.to_string().contains("replaced"), "{e}");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn specials_get_metadata_through_their_handle() {
        let tmp = tempfile::tempdir().unwrap();
        let pointed = tmp.path().join("pointed-to");
        std::fs::write(&pointed, b"").unwrap();
        let before = std::fs::metadata(&pointed).unwrap();
        let target = Dir::open_target(&tmp.path().join("t")).unwrap();
        let made = target.create_special(&node(NodeKind::Symlink, &pointed));
        let (link, name) = made.unwrap().unwrap();
        Handle::Path(&link)
            .set_times(1_000_000_000_000_000_000)
            .unwrap();
        Handle::Path(&link).chmod(0o600).unwrap();
        target.commit(&name, OsStr::new("l")).unwrap();
        let m = std::fs::symlink_metadata(tmp.path().join("t/l")).unwrap();
        assert!(m.file_type().is_symlink());
        assert_eq!(m.mtime(), 1_000_000_000);
        // What the symlink points to was never touched.
        let after = std::fs::metadata(&pointed).unwrap();
        assert_eq!(
            (after.mtime(), after.mode()),
            (before.mtime(), before.mode())
        );

        let made = target.create_special(&node(NodeKind::Fifo, &pointed));
        let (fifo, name) = made.unwrap().unwrap();
        Handle::Path(&fifo).chmod(0o640).unwrap();
        target.commit(&name, OsStr::new("p")).unwrap();
        let m = std::fs::symlink_metadata(tmp.path().join("t/p")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
    }

    #[test]
    fn unnamed_files_appear_only_when_linked_and_never_replace() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"theirs").unwrap();
        let t = tmp.path().join("t");
        let target = Dir::open_target(&t).unwrap();
        let Some(f) = target.create_unnamed(0o640).unwrap() else {
            return; // no O_TMPFILE here: restore uses temporary names
        };
        std::io::Write::write_all(&mut &f, b"restored").unwrap();
        assert_eq!(
            std::fs::read_dir(&t).unwrap().count(),
            0,
            "nothing named yet"
        );
        assert!(target.link_unnamed(&f, OsStr::new("a")).unwrap());
        assert_eq!(std::fs::read(t.join("a")).unwrap(), b"restored");
        let m = std::fs::metadata(t.join("a")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640 & !process_umask().unwrap_or(0));

        // A name already taken, even by a symlink pointing outside, is
        // neither replaced nor followed.
        symlink(&outside, t.join("planted")).unwrap();
        let g = target.create_unnamed(0o600).unwrap().unwrap();
        std::io::Write::write_all(&mut &g, b"new").unwrap();
        assert!(!target.link_unnamed(&g, OsStr::new("planted")).unwrap());
        assert!(!target.link_unnamed(&g, OsStr::new("a")).unwrap());
        assert_eq!(std::fs::read(&outside).unwrap(), b"theirs");
        assert_eq!(std::fs::read(t.join("a")).unwrap(), b"restored");
        // Replacing goes through a temporary name and a rename of the link
        // itself.
        let tmpname = target.link_unnamed_temp(&g).unwrap();
        target.commit(&tmpname, OsStr::new("planted")).unwrap();
        assert_eq!(std::fs::read(t.join("planted")).unwrap(), b"new");
        assert_eq!(std::fs::read(&outside).unwrap(), b"theirs");
        assert_eq!(std::fs::read_dir(&t).unwrap().count(), 2);
    }

    #[test]
    fn a_staged_directory_is_named_only_where_the_name_is_free_also_without_noreplace() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        let target = Dir::open_target(&t).unwrap();
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = Dir::from_fd(target.file.try_clone().unwrap().into()).unwrap();
        assert!(target.private);
        for (staged, name) in [(".vault-restore-a", "a"), (".vault-restore-b", "b")] {
            std::fs::create_dir(t.join(staged)).unwrap();
            std::fs::write(t.join(staged).join("f"), name).unwrap();
        }
        std::fs::write(t.join("b"), b"was here").unwrap();
        // The fallback for file systems that refuse RENAME_NOREPLACE, and
        // the rename with it, agree: a free name is taken, a taken one is
        // left as it was.
        assert!(
            target
                .rename_if_free(OsStr::new(".vault-restore-a"), OsStr::new("a"))
                .unwrap()
        );
        assert_eq!(std::fs::read(t.join("a/f")).unwrap(), b"a");
        assert!(
            !target
                .rename_if_free(OsStr::new(".vault-restore-b"), OsStr::new("b"))
                .unwrap()
        );
        assert!(
            !target
                .name_staged(OsStr::new(".vault-restore-b"), OsStr::new("b"))
                .unwrap()
        );
        assert_eq!(std::fs::read(t.join("b")).unwrap(), b"was here");
        assert!(t.join(".vault-restore-b/f").exists());
        assert!(
            target
                .name_staged(OsStr::new(".vault-restore-b"), OsStr::new("c"))
                .unwrap()
        );
        assert_eq!(std::fs::read(t.join("c/f")).unwrap(), b"b");
    }

    #[test]
    fn new_directories_in_existing_ones_are_staged_and_final_names_never_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"theirs").unwrap();
        let t = tmp.path().join("t");
        let target = Dir::open_target(&t).unwrap();
        std::fs::create_dir(t.join("old")).unwrap();
        // An existing directory is used as it is, under its name.
        let (old, staged) = target.ensure_child_dir_staged(OsStr::new("old")).unwrap();
        assert!(staged.is_none() && !old.fresh() && !old.hidden());
        // A new one is made under a temporary name, and what goes in it
        // under its own names.
        let (new, staged) = target.ensure_child_dir_staged(OsStr::new("new")).unwrap();
        let staged = staged.unwrap();
        assert!(new.fresh() && new.hidden() && !t.join("new").exists());
        assert!(staged.to_string_lossy().starts_with(".vault-restore-"));
        let (sub, none) = new.ensure_child_dir_staged(OsStr::new("sub")).unwrap();
        assert!(none.is_none() && sub.fresh() && sub.hidden());
        let f = sub
            .create_new_file(OsStr::new("f"), 0o640)
            .unwrap()
            .unwrap();
        std::io::Write::write_all(&mut &f, b"restored").unwrap();
        let m = std::fs::metadata(t.join(&staged).join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640 & !process_umask().unwrap_or(0));
        // A name taken, even by a symlink pointing outside, is neither
        // reused nor followed.
        symlink(&outside, t.join(&staged).join("sub/planted")).unwrap();
        assert!(
            sub.create_new_file(OsStr::new("planted"), 0o600)
                .unwrap()
                .is_none()
        );
        assert!(
            sub.create_new_file(OsStr::new("f"), 0o600)
                .unwrap()
                .is_none()
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"theirs");
        assert_eq!(
            std::fs::read(t.join(&staged).join("sub/f")).unwrap(),
            b"restored"
        );
        sub.remove_failed(OsStr::new("f")).unwrap();
        assert!(!t.join(&staged).join("sub/f").exists());
        // Named at the end, never over an entry that appeared meanwhile.
        assert!(target.commit_new(&staged, OsStr::new("new")).unwrap());
        assert!(t.join("new/sub/planted").is_symlink());
        let (_, again) = target.ensure_child_dir_staged(OsStr::new("again")).unwrap();
        std::fs::create_dir(t.join("again")).unwrap();
        assert!(
            !target
                .commit_new(&again.unwrap(), OsStr::new("again"))
                .unwrap()
        );
        // Where another user could move it away, a new directory is made
        // under its name and is not out of sight.
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o777)).unwrap();
        let open = Dir::open_target(&t).unwrap();
        let (shared, staged) = open.ensure_child_dir_staged(OsStr::new("shared")).unwrap();
        assert!(staged.is_none() && shared.fresh() && !shared.hidden());
        assert!(t.join("shared").is_dir());
    }

    #[test]
    fn a_mode_is_known_at_creation_only_when_nothing_can_change_it() {
        let tmp = tempfile::tempdir().unwrap();
        let target = Dir::open_target(tmp.path()).unwrap();
        let d = target.ensure_child_dir(OsStr::new("new")).unwrap();
        assert!(d.fresh() && !target.fresh());
        let Some(umask) = process_umask() else {
            assert_eq!(d.created_mode(0o600), None);
            return;
        };
        // Set-id bits may be dropped at creation; bits the umask clears
        // must be set afterwards.
        assert_eq!(d.created_mode(0o4700), None);
        assert_eq!(d.created_mode(0o2700), None);
        assert_eq!(d.created_mode(0o1700), None);
        let all = 0o777;
        assert_eq!(d.created_mode(all), (umask & all == 0).then_some(all));
        assert_eq!(d.created_mode(0o700), (umask & 0o700 == 0).then_some(0o700));
        // A default ACL on the directory decides instead of the umask.
        let acl_dir = tmp.path().join("acl");
        std::fs::create_dir(&acl_dir).unwrap();
        // user::rwx, group::r-x, other::--- (POSIX ACL xattr, version 2).
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm) in [(0x01u16, 7u16), (0x04, 5), (0x20, 0)] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(u32::MAX.to_le_bytes());
        }
        if xattr::set(&acl_dir, "system.posix_acl_default", &acl).is_ok() {
            let a = target.ensure_child_dir(OsStr::new("acl")).unwrap();
            assert_eq!(a.created_mode(0o700), None);
        }
    }
}
