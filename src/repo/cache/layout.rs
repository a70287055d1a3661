//! Where things live in the cache directory, and making those places
//! (0700, versioned); files of the layout before it was versioned are moved
//! into it.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The layout version: the name of the directory under each repository's.
pub const LAYOUT: &str = "v1";

/// What the version stamp holds.
const STAMP: &str = "vault cache layout 1\n";

/// Marks the cache directory as a cache for backup tools (vault's own
/// included: <https://bford.info/cachedir/>).
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by vault.\n";

/// Makes `dir` and its missing parents with mode 0700, and makes sure
/// `dir` itself is 0700 (nobody else reads or plants entries).
pub(super) fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))
}

/// Makes the cache directory itself (0700, with missing parents) unless
/// it exists, and checks that only the user running vault can change what
/// is in it: owned by that user, writable by neither group nor others. In
/// a directory someone else can write (a shared `/var/cache/…`, a
/// `--cache-dir` under `/tmp`), another local user could plant symlinks
/// there (so that vault, as root, makes directories, changes modes and
/// writes files where they point), read decrypted metadata from
/// directories they made, or plant a file cache; such a directory is
/// refused, and the command runs without a cache.
pub fn private_root(cache_dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .map_err(|e| Error::io(cache_dir, e))?;
    let m = fs::metadata(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    let me = nix::unistd::geteuid().as_raw();
    if !m.is_dir() {
        return Err(Error::InvalidInput(format!(
            "cache directory {}: not a directory",
            cache_dir.display()
        )));
    }
    if m.uid() != me {
        return Err(Error::InvalidInput(format!(
            "cache directory {}: owned by uid {}, not by the user running vault (uid {me});              use a directory of your own",
            cache_dir.display(),
            m.uid()
        )));
    }
    if m.mode() & 0o022 != 0 {
        return Err(Error::InvalidInput(format!(
            "cache directory {}: group or others can write to it (mode {:o});              run `chmod 700 {}` or use a directory of your own",
            cache_dir.display(),
            m.mode() & 0o7777,
            cache_dir.display()
        )));
    }
    Ok(())
}

/// The versioned directory of repository `repo_id` under `cache_dir`,
/// made (0700) with its version stamp. Fails for a repository id that is
/// not hexadecimal (it names a directory) or a stamp of another version.
pub fn repo_dir(cache_dir: &Path, repo_id: &str) -> Result<PathBuf> {
    if repo_id.is_empty() || repo_id.len() > 64 || !repo_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::format(
            crate::repo::CONFIG_KEY,
            "the repository id is not hexadecimal",
        ));
    }
    private_root(cache_dir)?;
    let top = cache_dir.join(repo_id);
    let dir = top.join(LAYOUT);
    private_dir(&dir)?;
    fs::set_permissions(&top, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(&top, e))?;
    let tag = cache_dir.join("CACHEDIR.TAG");
    if !tag.exists() {
        let _ = write_new(&tag, CACHEDIR_TAG.as_bytes());
    }
    let stamp = dir.join("VERSION");
    match fs::read_to_string(&stamp) {
        Ok(s) if s == STAMP => {}
        Ok(other) => {
            return Err(Error::InvalidInput(format!(
                "{}: holds {:?}, not {STAMP:?}; this cache was made by another vault \
                 (use another --cache-dir, or remove this one)",
                stamp.display(),
                other.chars().take(40).collect::<String>()
            )));
        }
        Err(_) => write_new(&stamp, STAMP.as_bytes()).map_err(|e| Error::io(&stamp, e))?,
    }
    Ok(dir)
}

/// Writes a small file through a temporary name (mode 0600).
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    fs::rename(&tmp, path)
}

/// What one host keeps about one repository: the record of the index files
/// it wrote, its upload journal, and the last snapshot it made of each set
/// of sources.
#[derive(Debug, Clone)]
pub struct HostDir {
    dir: PathBuf,
}

impl HostDir {
    /// Opens (creating, 0700) the directory of `host` in the cache of
    /// repository `repo_id`. Files the layout before `v1` kept directly
    /// under `<cache dir>/<repository id>/` (`own-index`, and
    /// `uploads-<host hash>/`) are moved here the first time: they were
    /// written by vault for this repository (and, for the journal, this
    /// host), and everything in them is checked again before use.
    pub fn open(cache_dir: &Path, repo_id: &str, host: &str) -> Result<HostDir> {
        let root = repo_dir(cache_dir, repo_id)?;
        let hash = blake3::hash(host.as_bytes()).to_hex();
        let dir = root.join(format!("host-{}", &hash[..16]));
        private_dir(&dir)?;
        let old = cache_dir.join(repo_id);
        let moved = [
            (old.join("own-index"), dir.join("own-index")),
            (
                old.join(format!("uploads-{}", &hash[..16])),
                dir.join("uploads"),
            ),
        ];
        for (from, to) in moved {
            if from.symlink_metadata().is_ok() && to.symlink_metadata().is_err() {
                match fs::rename(&from, &to) {
                    Ok(()) => tracing::info!("moved {} to {}", from.display(), to.display()),
                    Err(e) => tracing::warn!("could not move {}: {e}", from.display()),
                }
            }
        }
        Ok(HostDir { dir })
    }

    /// The record of index files this host wrote.
    pub fn own_index(&self) -> PathBuf {
        self.dir.join("own-index")
    }

    /// The upload journal's directory (made 0700 by the journal).
    pub fn uploads(&self) -> PathBuf {
        self.dir.join("uploads")
    }

    /// The file remembering the last snapshot of `sources`:
    /// `last-snapshot/<BLAKE3 of the names, each followed by a NUL>`.
    fn last_snapshot_file(&self, sources: &[String]) -> PathBuf {
        let mut h = blake3::Hasher::new();
        for s in sources {
            h.update(s.as_bytes());
            h.update(&[0]);
        }
        self.dir
            .join("last-snapshot")
            .join(&h.finalize().to_hex()[..32])
    }

    /// The snapshot this host's last backup of `sources` wrote, as
    /// remembered here (a backup's parent, without listing every header);
    /// `None` when nothing readable is remembered.
    pub fn last_snapshot(&self, sources: &[String]) -> Option<crate::format::id::Id> {
        let text = fs::read_to_string(self.last_snapshot_file(sources)).ok()?;
        text.trim().parse().ok()
    }

    /// Remembers `id` as the last snapshot of `sources` (best effort: a
    /// failure only costs the next backup a listing).
    pub fn remember_snapshot(&self, sources: &[String], id: &crate::format::id::Id) {
        let path = self.last_snapshot_file(sources);
        let written = path
            .parent()
            .map_or(Ok(()), |d| private_dir(d).map_err(std::io::Error::other))
            .and_then(|()| write_new(&path, id.to_hex().as_bytes()));
        if let Err(e) = written {
            tracing::warn!(
                "cache: could not remember the snapshot: {}: {e}",
                path.display()
            );
        }
    }
}
