//! The index files this host wrote, remembered in its cache directory:
//! besides owner-attested index files, the only ones a backup deduplicates
//! against.
//!
//! An index file is a claim ("blob X is at offset 0 of pack P") that anyone
//! holding the writer key can make. A host trusts its own claims because it
//! made them after uploading the packs; other hosts' claims become usable
//! once an owner has read the blobs and signed them (prune, `check
//! --read-data`, drills). Losing this file costs only deduplication.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::format::id::Id;
use crate::repo::cache::HostDir;

/// The record of index files written by this host for one repository.
pub struct OwnIndex {
    file: Option<PathBuf>,
    ids: HashSet<Id>,
    out: Mutex<Option<fs::File>>,
}

impl OwnIndex {
    /// Loads the record in this host's cache directory (one index id per
    /// line, [`HostDir::own_index`]); no cache directory means no record.
    pub fn load(host_dir: Option<&HostDir>) -> Self {
        let file = host_dir.map(HostDir::own_index);
        let ids = file
            .as_ref()
            .and_then(|f| fs::read_to_string(f).ok())
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        OwnIndex {
            file,
            ids,
            out: Mutex::new(None),
        }
    }

    /// Whether this host wrote index file `id`.
    pub fn contains(&self, id: &Id) -> bool {
        self.ids.contains(id)
    }

    /// Keeps only the ids in `existing` (index files prune replaced are gone
    /// for good), rewriting the record when it shrinks.
    pub fn retain(&mut self, existing: &HashSet<Id>) {
        let before = self.ids.len();
        self.ids.retain(|id| existing.contains(id));
        if self.ids.len() == before {
            return;
        }
        let Some(file) = &self.file else { return };
        let mut lines: Vec<String> = self.ids.iter().map(Id::to_hex).collect();
        lines.sort();
        let tmp = file.with_extension("tmp");
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(
                    lines
                        .iter()
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                        .as_bytes(),
                )?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, file));
        if let Err(e) = written {
            tracing::warn!("{}: could not rewrite: {e}", file.display());
        }
    }

    /// Appends `id` (an index file this run just stored). Failures only
    /// cost deduplication and are logged.
    pub fn record(&self, id: &Id) {
        let Some(file) = &self.file else { return };
        let mut out = self.out.lock().expect("own-index lock");
        if out.is_none() {
            let opened = file
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| {
                    fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .mode(0o600)
                        .open(file)
                });
            match opened {
                Ok(f) => *out = Some(f),
                Err(e) => {
                    tracing::warn!("{}: {e}", file.display());
                    return;
                }
            }
        }
        if let Some(f) = out.as_mut()
            && let Err(e) = writeln!(f, "{id}").and_then(|()| f.sync_data())
        {
            tracing::warn!("{}: {e}", file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reload_and_shrink_to_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let host = |repo: &str| HostDir::open(dir.path(), repo, "web1").unwrap();
        let own = OwnIndex::load(Some(&host("aa")));
        assert!(!own.contains(&Id([1; 32])));
        own.record(&Id([1; 32]));
        own.record(&Id([2; 32]));
        let mut again = OwnIndex::load(Some(&host("aa")));
        assert!(again.contains(&Id([1; 32])) && again.contains(&Id([2; 32])));
        again.retain(&HashSet::from([Id([2; 32])]));
        let third = OwnIndex::load(Some(&host("aa")));
        assert!(!third.contains(&Id([1; 32])) && third.contains(&Id([2; 32])));
        // Another repository's record is separate; no cache, no record.
        assert!(!OwnIndex::load(Some(&host("bb"))).contains(&Id([2; 32])));
        let none = OwnIndex::load(None);
        none.record(&Id([3; 32]));
        assert!(!none.contains(&Id([3; 32])));
    }
}
