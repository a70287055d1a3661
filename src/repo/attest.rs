//! Owner attestation of index entries: an owner operation that has read a
//! blob (decrypted, decompressed, checked against its keyed id and length)
//! signs index files listing where it found it. Backups deduplicate only
//! against such files and their own ([`crate::repo::Repository::load_dedup_index`]).
//!
//! Because packs never change (each is named by the hash of its bytes), a
//! location verified once stays valid as long as the pack exists, so prune
//! carries attested entries forward and verifies only the new ones.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::index::{BlobLocation, Index, IndexFile, IndexedBlob, IndexedPack};
use crate::format::pack::{BlobKind, PackEntry};
use crate::repo::Repository;
use crate::repo::verify::{self, PackBuffers};

/// Blobs listed per attested index file (a pack holding more gets a file of
/// its own). About 7 MiB of JSON, 2.5 MiB stored: 153 files for 10
/// million blobs, each far below what readers accept
/// ([`crate::repo::documents`]), parsed in a few tens of milliseconds, and
/// small enough that a few at once are read and parsed in parallel within
/// [`crate::repo::documents::BATCH_JSON`].
pub const BLOBS_PER_FILE: usize = 1 << 16;

/// A location as an exact claim: blob, pack, offset, length, raw length.
pub type Claim = (BlobId, PackId, u32, u32, u32);

/// The claim `loc` makes about `blob`.
pub fn claim(blob: &BlobId, loc: &BlobLocation) -> Claim {
    (*blob, loc.pack, loc.offset, loc.length, loc.raw_length)
}

/// Whether an owner-signed index file loaded into `index` makes exactly
/// this claim (the pack's kind aside: it comes from where the pack is
/// stored).
pub fn is_attested(index: &Index, blob: &BlobId, loc: &BlobLocation) -> bool {
    index.is_attested(blob, loc)
}

/// The outcome of verifying claims.
#[derive(Debug, Default)]
pub struct Verification {
    /// Claims whose blob read back and matched.
    pub verified: u64,
    /// Claims whose bytes are not the blob they name (planted, or damage).
    pub rejected: HashSet<Claim>,
    /// Packs read (each at most once).
    pub packs_read: u64,
    /// Bytes read from storage and decrypted to verify claims: at most the
    /// stored size of each pack claimed, however many claims name it.
    pub bytes_read: u64,
}

/// Verifies every claim in `claims` by reading each pack they name once,
/// whole: a claim holds only if it is exactly one of the pack's trailer
/// entries (blob, offset, length, raw length) and that blob verifies
/// ([`crate::repo::verify`]). So what verification costs is bounded by the
/// size of the packs, never by the number of claims: a planted index of
/// hundreds of claims on one pack costs one read of it (it used to cost one
/// decryption of up to the claimed length per claim). A storage or transport
/// error stops everything: an owner must not sign, nor drop, what it could
/// not read. A pack that is damaged (its bytes, its decryption, its trailer)
/// holds none of its claims.
///
/// `read_one(pack, bytes)` is called as each pack has been read (from
/// several threads), for a caller's progress; [`verify_claims`] passes a
/// no-op.
pub fn verify_claims_reporting(
    repo: &Repository,
    claims: Vec<(BlobId, BlobLocation)>,
    read_one: &(dyn Fn(&PackId, u64) + Sync),
) -> Result<Verification> {
    let mut by_pack: HashMap<(PackId, BlobKind), HashSet<Claim>> = HashMap::new();
    for (blob, loc) in &claims {
        by_pack
            .entry((loc.pack, loc.kind))
            .or_default()
            .insert(claim(blob, loc));
    }
    let mut packs: Vec<((PackId, BlobKind), HashSet<Claim>)> = by_pack.into_iter().collect();
    packs.sort_by_key(|((pack, _), _)| *pack);
    let results = verify::parallel(
        &packs,
        PackBuffers::default,
        |bufs, ((pack, kind), wanted)| {
            let held =
                |e: &PackEntry| wanted.contains(&(e.id, *pack, e.offset, e.length, e.raw_length));
            let verdicts = verify::verify_stored_pack_entries(repo, pack, *kind, bufs, held);
            read_one(pack, bufs.stored_len());
            (verdicts, bufs.stored_len())
        },
    );
    let mut out = Verification::default();
    for (((pack, _), wanted), (verdicts, read)) in packs.iter().zip(results) {
        let good: HashSet<Claim> = match verdicts {
            Ok(v) => v
                .into_iter()
                .filter_map(|(e, verdict)| match verdict {
                    Ok(()) => Some((e.id, *pack, e.offset, e.length, e.raw_length)),
                    Err(err) => {
                        tracing::warn!("index entry does not hold up: {err}");
                        None
                    }
                })
                .collect(),
            Err(e @ (Error::Storage(_) | Error::Io { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!("index entries of a damaged pack do not hold up: {e}");
                HashSet::new()
            }
        };
        out.packs_read += 1;
        out.bytes_read += read;
        for c in wanted {
            if good.contains(c) {
                out.verified += 1;
            } else {
                out.rejected.insert(*c);
            }
        }
    }
    // Every claim of `claims` was counted once per distinct claim; exact
    // duplicates (the same claim in two files) count as one.
    Ok(out)
}

/// [`verify_claims_reporting`] without progress.
pub fn verify_claims(
    repo: &Repository,
    claims: Vec<(BlobId, BlobLocation)>,
) -> Result<Verification> {
    verify_claims_reporting(repo, claims, &|_, _| {})
}

/// The distinct packs `claims` name: what [`verify_claims`] will read.
pub fn packs_named(claims: &[(BlobId, BlobLocation)]) -> HashSet<PackId> {
    claims.iter().map(|(_, loc)| loc.pack).collect()
}

/// Signs and stores `packs` (every entry of which the caller verified or
/// found already attested) as owner-attested index files, with `condemned`
/// marks in the first. Returns how many files were written.
pub fn write_attested(
    repo: &Repository,
    packs: &[IndexedPack],
    condemned: Vec<crate::format::index::CondemnedPack>,
) -> Result<u64> {
    repo.keys().require_owner("attesting index entries")?;
    let mut written = 0;
    let mut files = split_files(packs).into_iter();
    let mut file = IndexFile {
        packs: files.next().unwrap_or_default(),
        condemned,
    };
    loop {
        if !file.packs.is_empty() || !file.condemned.is_empty() {
            repo.put_index_file(&file)?;
            written += 1;
        }
        match files.next() {
            Some(packs) => {
                file = IndexFile {
                    packs,
                    condemned: Vec::new(),
                }
            }
            None => break,
        }
    }
    Ok(written)
}

/// Splits `packs` into files of at most [`BLOBS_PER_FILE`] blobs (a larger
/// pack alone in its own), in order.
fn split_files(packs: &[IndexedPack]) -> Vec<Vec<IndexedPack>> {
    let mut files: Vec<Vec<IndexedPack>> = Vec::new();
    let mut blobs = 0;
    for p in packs {
        if files.is_empty() || blobs + p.blobs.len() > BLOBS_PER_FILE {
            files.push(Vec::new());
            blobs = 0;
        }
        blobs += p.blobs.len();
        files.last_mut().expect("just pushed").push(p.clone());
    }
    files
}

/// Groups claims into index packs (kind as given), blobs in offset order.
pub fn group_by_pack(claims: impl IntoIterator<Item = (BlobId, BlobLocation)>) -> Vec<IndexedPack> {
    let mut packs: std::collections::BTreeMap<PackId, IndexedPack> = Default::default();
    let mut seen = HashSet::new();
    for (blob, loc) in claims {
        if !seen.insert(claim(&blob, &loc)) {
            continue;
        }
        packs
            .entry(loc.pack)
            .or_insert_with(|| IndexedPack {
                id: loc.pack,
                kind: loc.kind,
                blobs: Vec::new(),
            })
            .blobs
            .push(IndexedBlob {
                id: blob,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
            });
    }
    let mut out: Vec<IndexedPack> = packs.into_values().collect();
    for p in &mut out {
        p.blobs.sort_by_key(|b| b.offset);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobKind;

    #[test]
    fn files_hold_at_most_the_blob_budget_and_every_pack_once() {
        let pack = |n: u8, blobs: usize| IndexedPack {
            id: PackId(crate::format::id::Id([n; 32])),
            kind: BlobKind::Data,
            blobs: vec![
                IndexedBlob {
                    id: BlobId(crate::format::id::Id([0; 32])),
                    offset: 0,
                    length: 1,
                    raw_length: 1,
                };
                blobs
            ],
        };
        let packs = [
            pack(1, BLOBS_PER_FILE / 2),
            pack(2, BLOBS_PER_FILE / 2),
            pack(3, 1),
            pack(4, BLOBS_PER_FILE + 1),
            pack(5, 3),
        ];
        let files = split_files(&packs);
        let ids: Vec<Vec<u8>> = files
            .iter()
            .map(|f| f.iter().map(|p| p.id.0.0[0]).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 2], vec![3], vec![4], vec![5]]);
        assert!(split_files(&[]).is_empty());
    }
}
