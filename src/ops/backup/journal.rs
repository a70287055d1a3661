//! The upload journal: a local record of every pack this host is about to
//! upload, so that a backup killed before it wrote the index file listing
//! its packs does not lose them.
//!
//! Index files are written every few packs; without the journal, the packs
//! uploaded since the last one are in no index and the next backup stores
//! their blobs again. With it, the next backup turns the journal into an
//! index file, but only for packs it has checked: each must be stored, with
//! the recorded size, and hash (BLAKE3) to its name; an owner key also
//! checks the blob list against the pack's own trailer. A writer key cannot
//! read packs, so it trusts the blob list only because the journal is this
//! host's own record (a 0700 directory in the cache, per repository and
//! host) — the same trust an index file written by this host gets. A wrong
//! entry costs at most a failed read that falls back to another location.
//!
//! Write order: the entry is written (and synced) before the upload starts,
//! and removed only after an index file listing the pack is stored. So at
//! any kill point, every pack whose upload finished is either indexed or
//! journaled.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::PackId;
use crate::format::index::{Index, IndexFile, IndexedPack};
use crate::format::pack::decode_trailer;
use crate::repo::cache::HostDir;
use crate::repo::packer::FinishedPack;
use crate::repo::{ObjectKind, Repository, StoredPack};

/// An entry whose pack is not (yet) stored is kept this long: a backup
/// running beside this one on the same host may still be uploading it.
const UNSTORED_GRACE: Duration = Duration::from_secs(3600);

/// A temporary entry file older than this was left by a killed process.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// The largest journal entry read back (a pack's blob list; a 1 GiB pack
/// of 64-byte blobs would list 16 M blobs, far beyond what vault writes).
const MAX_ENTRY: u64 = 256 << 20;

/// One journaled pack.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The pack and its blobs, as an index file will list them.
    pack: IndexedPack,
    /// The size of the stored object in bytes.
    size: u64,
}

/// The journal directory of one repository and host.
pub struct Journal {
    dir: PathBuf,
}

/// What [`Journal::recover`] did: packs a killed backup uploaded that this
/// run indexed and reuses.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Recovered {
    /// Packs checked and indexed.
    pub packs: usize,
    /// Their stored bytes.
    pub bytes: u64,
    /// Entries dropped because their pack was missing, of another size,
    /// did not hash to its name, or did not match its trailer.
    pub dropped: usize,
}

impl Journal {
    /// Opens (creating, mode 0700) the journal in a host's cache directory
    /// ([`HostDir::uploads`]: per repository and host).
    pub fn open(host_dir: &HostDir) -> Result<Journal> {
        let dir = host_dir.uploads();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        // An existing directory keeps its mode: make sure nobody else reads
        // (or plants) entries.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&dir, e))?;
        Ok(Journal { dir })
    }

    fn path(&self, id: &PackId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Records `pack` before its upload starts (written to a temporary file,
    /// synced, then renamed into place).
    pub fn record(&self, pack: &FinishedPack) -> Result<()> {
        let entry = Entry {
            pack: IndexedPack::from_entries(pack.id, pack.kind, &pack.entries),
            size: pack.bytes.len() as u64,
        };
        let json = serde_json::to_vec(&entry).expect("journal entries serialize");
        let path = self.path(&pack.id);
        let tmp = self.dir.join(format!(".tmp-{}", pack.id));
        let io = |e| Error::io(&path, e);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&json).and_then(|()| f.sync_all()).map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)
    }

    /// Removes the entries of `packs` (they are now listed in a stored
    /// index file). A failure only leaves an entry the next run re-checks.
    pub fn forget(&self, packs: impl IntoIterator<Item = PackId>) {
        for id in packs {
            match fs::remove_file(self.path(&id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("upload journal: could not remove {id}: {e}"),
            }
        }
    }

    /// Every readable entry with its file's age. Unreadable entries (a
    /// torn write cannot leave one: entries are renamed into place) are
    /// reported and removed.
    fn entries(&self) -> Vec<(Entry, Duration)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with(".tmp-") {
                // Left by a process killed while writing it (or being
                // written right now: only old ones go).
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TEMP);
                if old {
                    let _ = fs::remove_file(e.path());
                }
                continue;
            }
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<PackId>().ok())
            else {
                continue;
            };
            let path = e.path();
            let parsed = fs::File::open(&path)
                .and_then(|f| {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_ENTRY), &mut buf)
                        .map(|_| buf)
                })
                .ok()
                .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
                .filter(|entry| entry.pack.id == id);
            match parsed {
                Some(entry) => {
                    let age = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    out.push((entry, age));
                }
                None => {
                    tracing::warn!(
                        "upload journal: dropping unreadable entry {}",
                        path.display()
                    );
                    self.forget([id]);
                }
            }
        }
        out.sort_by_key(|(entry, _)| entry.pack.id);
        out
    }

    /// Turns the journal into an index file for the packs it can confirm
    /// (see the module docs), adds them to `index` and removes their
    /// entries. `stored` is what storage lists; packs `index` already
    /// lists only lose their entry.
    pub fn recover(
        &self,
        repo: &Repository,
        stored: &HashMap<PackId, StoredPack>,
        index: &mut Index,
        own: &super::own_index::OwnIndex,
    ) -> Result<Recovered> {
        let indexed: HashSet<PackId> = index.packs().map(|(id, _)| id).collect();
        let mut report = Recovered::default();
        let mut file = IndexFile::default();
        let mut gone = Vec::new();
        for (entry, age) in self.entries() {
            let id = entry.pack.id;
            if indexed.contains(&id) {
                gone.push(id);
                continue;
            }
            let Some(found) = stored.get(&id) else {
                if age > UNSTORED_GRACE {
                    gone.push(id);
                    report.dropped += 1;
                }
                continue;
            };
            match check(repo, &entry, found) {
                Ok(()) => {
                    report.packs += 1;
                    report.bytes += entry.size;
                    file.packs.push(entry.pack);
                }
                Err(why) => {
                    tracing::warn!("upload journal: not reusing pack {id}: {why}");
                    gone.push(id);
                    report.dropped += 1;
                }
            }
        }
        if !file.packs.is_empty() {
            // The killed run may not have synced them (the indexer syncs
            // packs just before their index file).
            repo.sync_objects(file.packs.iter().map(|p| (ObjectKind::Pack(p.kind), p.id)))?;
            // Signed and recorded like the indexer's own files, so later
            // backups of this host deduplicate against it too.
            let id = repo.put_index_file(&file)?;
            own.record(&id);
            for p in &file.packs {
                index.add_pack(p);
            }
            index.finish();
            gone.extend(file.packs.iter().map(|p| p.id));
        }
        self.forget(gone);
        Ok(report)
    }
}

/// Why a journaled pack is not reused ([`check`]).
#[derive(Debug, thiserror::Error)]
enum NotReused {
    #[error("stored as a {} pack", .0.folder())]
    OtherKind(crate::format::pack::BlobKind),
    #[error("stored with {stored} bytes, journaled with {journaled}")]
    OtherSize { stored: u64, journaled: u64 },
    #[error("a journaled blob lies outside the pack")]
    BlobOutside,
    #[error("its content does not hash to its name")]
    NotItsName,
    #[error("its trailer lists other blobs than the journal")]
    OtherBlobs,
    /// Reading, decrypting or parsing it failed.
    #[error("{0}")]
    Unreadable(#[from] Error),
}

/// Checks one journaled pack against storage; says why it fails.
fn check(
    repo: &Repository,
    entry: &Entry,
    found: &StoredPack,
) -> std::result::Result<(), NotReused> {
    let pack = &entry.pack;
    if found.kind != pack.kind {
        return Err(NotReused::OtherKind(found.kind));
    }
    if found.size != entry.size {
        return Err(NotReused::OtherSize {
            stored: found.size,
            journaled: entry.size,
        });
    }
    if pack.blobs.iter().any(|b| {
        b.offset as u64 + b.length as u64 > entry.size || b.raw_length > crate::repo::MAX_BLOB
    }) {
        return Err(NotReused::BlobOutside);
    }
    let key = ObjectKind::Pack(pack.kind).key(&pack.id);
    let bytes = repo.storage().get(&key).map_err(Error::from)?;
    if bytes.len() as u64 != entry.size || PackId::of_bytes(&bytes) != pack.id {
        return Err(NotReused::NotItsName);
    }
    if repo.keys().is_owner() {
        let plain = repo
            .keys()
            .keyring()
            .decrypt(&bytes, &key)
            .map_err(Error::from)?;
        let trailer = decode_trailer(&plain, &key)?;
        let same = trailer.len() == pack.blobs.len()
            && trailer.iter().zip(&pack.blobs).all(|(t, b)| {
                t.id == b.id
                    && t.offset == b.offset
                    && t.length == b.length
                    && t.raw_length == b.raw_length
                    && t.kind == pack.kind
            });
        if !same {
            return Err(NotReused::OtherBlobs);
        }
    }
    Ok(())
}
