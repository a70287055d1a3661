//! The `index` digest of the metadata cache: each index file read before,
//! as the calls its parse made into an [`IndexSink`] (and its signer and
//! deletion marks) in a compact binary record, replayed instead of parsing
//! its JSON again.
//!
//! ```text
//! signer      u8: 0 another, 1 the owner, 2 a certified host key
//!             (then its public key, 32 bytes)
//! marks       u32 LE count, each: pack id (32), seconds (i64 LE), nanoseconds (u32 LE)
//! calls       until the end, each:
//!             0, blob id (32), offset, length, raw length (u32 LE each)
//!             1, pack id (32), kind (u8: 0 data, 1 tree), blobs (u32 LE)
//! ```

use chrono::{DateTime, Utc};

use crate::format::id::{BlobId, Id, PackId};
use crate::format::index::stream::IndexSink;
use crate::format::index::{CondemnedPack, IndexFile, IndexedBlob};
use crate::format::pack::BlobKind;
use crate::repo::trust::Signer;

/// The digest's name (and the version of its records).
pub const DIGEST: &str = "index-v1";
/// Index files whose record would be larger than this (about 700 blobs)
/// are not kept in the digest: the many small files a fleet's backups
/// write are what cost a command per file, while the few large ones (a
/// first backup's, prune's compacted files) keep their records in files of
/// their own, read one at a time, so the digest never holds a large index
/// in memory besides the index being built.
pub const MAX_RECORD: usize = 32 << 10;

/// The largest record of one index file kept in a file of its own (those
/// larger than [`MAX_RECORD`]): about 6 million blobs, far more than any
/// index file vault writes holds. Larger ones are not kept (they would be
/// read, refused and written again by every command).
pub const MAX_OWN_RECORD: u64 = 256 << 20;

/// Who signed an index file, as far as loading the index cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedBy {
    /// Anyone else (unsigned, invalid, unverifiable).
    Other,
    /// The repository owner.
    Owner,
    /// A certified host key (its public key).
    Host([u8; 32]),
}

impl From<&Signer> for SignedBy {
    fn from(s: &Signer) -> Self {
        match s {
            Signer::Owner => SignedBy::Owner,
            Signer::Host(c) => SignedBy::Host(*c.key.as_bytes()),
            _ => SignedBy::Other,
        }
    }
}

impl SignedBy {
    /// The host key, for [`crate::repo::IndexTrust`].
    pub fn host_key(&self) -> Option<&[u8; 32]> {
        match self {
            SignedBy::Host(k) => Some(k),
            _ => None,
        }
    }
}

/// An [`IndexSink`] that passes every call on and records it.
pub struct Recorder<'a, S> {
    /// The sink the calls are passed on to.
    pub inner: &'a mut S,
    /// The calls recorded so far, encoded as in the module docs.
    pub calls: Vec<u8>,
}

impl<S: IndexSink> IndexSink for Recorder<'_, S> {
    fn blob(&mut self, blob: &IndexedBlob) {
        self.calls.push(0);
        self.calls.extend_from_slice(&blob.id.0.0);
        for n in [blob.offset, blob.length, blob.raw_length] {
            self.calls.extend_from_slice(&n.to_le_bytes());
        }
        self.inner.blob(blob);
    }

    fn pack(&mut self, id: PackId, kind: BlobKind, blobs: usize) {
        self.calls.push(1);
        self.calls.extend_from_slice(&id.0.0);
        self.calls.push(match kind {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        });
        self.calls
            .extend_from_slice(&u32::try_from(blobs).unwrap_or(u32::MAX).to_le_bytes());
        self.inner.pack(id, kind, blobs);
    }
}

/// The calls that parsing the JSON of `file` makes into an [`IndexSink`],
/// recorded as [`Recorder`] records them: for an index file just written,
/// without parsing what was just serialized.
pub fn calls_of(file: &IndexFile) -> Vec<u8> {
    struct Nowhere;
    impl IndexSink for Nowhere {
        fn blob(&mut self, _: &IndexedBlob) {}
        fn pack(&mut self, _: PackId, _: BlobKind, _: usize) {}
    }
    let blobs: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
    let mut recorder = Recorder {
        inner: &mut Nowhere,
        calls: Vec::with_capacity(blobs * 45 + file.packs.len() * 38),
    };
    for pack in &file.packs {
        for blob in &pack.blobs {
            recorder.blob(blob);
        }
        recorder.pack(pack.id, pack.kind, pack.blobs.len());
    }
    recorder.calls
}

/// The record of one index file: its signer, marks and recorded calls.
pub fn encode(signer: SignedBy, marks: &[CondemnedPack], calls: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 32 + 4 + marks.len() * 44 + calls.len());
    match signer {
        SignedBy::Other => out.push(0),
        SignedBy::Owner => out.push(1),
        SignedBy::Host(k) => {
            out.push(2);
            out.extend_from_slice(&k);
        }
    }
    out.extend_from_slice(&(marks.len() as u32).to_le_bytes());
    for m in marks {
        out.extend_from_slice(&m.pack.0.0);
        out.extend_from_slice(&m.since.timestamp().to_le_bytes());
        out.extend_from_slice(&m.since.timestamp_subsec_nanos().to_le_bytes());
    }
    out.extend_from_slice(calls);
    out
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.0.len() < N {
            return None;
        }
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        a.try_into().ok()
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
}

/// The signer and marks of a record, and its calls (not yet replayed).
pub fn open(record: &[u8]) -> Option<(SignedBy, Vec<CondemnedPack>, &[u8])> {
    let mut c = Cursor(record);
    let signer = match c.take::<1>()?[0] {
        0 => SignedBy::Other,
        1 => SignedBy::Owner,
        2 => SignedBy::Host(c.take::<32>()?),
        _ => return None,
    };
    let n = c.u32()? as usize;
    if n > c.0.len() / 44 {
        return None;
    }
    let mut marks = Vec::with_capacity(n);
    for _ in 0..n {
        let pack = PackId(Id(c.take::<32>()?));
        let secs = i64::from_le_bytes(c.take::<8>()?);
        let since = DateTime::<Utc>::from_timestamp(secs, c.u32()?)?;
        marks.push(CondemnedPack { pack, since });
    }
    Some((signer, marks, c.0))
}

/// Replays recorded calls into `sink`; `false` if they are malformed (the
/// sink may then have received some of them).
pub fn replay(calls: &[u8], sink: &mut impl IndexSink) -> bool {
    let mut c = Cursor(calls);
    while !c.0.is_empty() {
        let Some([tag]) = c.take::<1>() else {
            return false;
        };
        let Some(id) = c.take::<32>().map(Id) else {
            return false;
        };
        match tag {
            0 => {
                let (Some(offset), Some(length), Some(raw_length)) = (c.u32(), c.u32(), c.u32())
                else {
                    return false;
                };
                sink.blob(&IndexedBlob {
                    id: BlobId(id),
                    offset,
                    length,
                    raw_length,
                });
            }
            1 => {
                let kind = match c.take::<1>() {
                    Some([0]) => BlobKind::Data,
                    Some([1]) => BlobKind::Tree,
                    _ => return false,
                };
                let Some(blobs) = c.u32() else {
                    return false;
                };
                sink.pack(PackId(id), kind, blobs as usize);
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, PartialEq, Debug)]
    struct Calls(Vec<String>);

    impl IndexSink for Calls {
        fn blob(&mut self, b: &IndexedBlob) {
            self.0.push(format!(
                "b {} {} {} {}",
                b.id.short(),
                b.offset,
                b.length,
                b.raw_length
            ));
        }
        fn pack(&mut self, id: PackId, kind: BlobKind, blobs: usize) {
            self.0.push(format!("p {} {kind:?} {blobs}", id.short()));
        }
    }

    #[test]
    fn a_record_replays_the_calls_it_recorded_and_refuses_damage() {
        let mut direct = Calls::default();
        let mut rec = Recorder {
            inner: &mut direct,
            calls: Vec::new(),
        };
        for i in 0..3u8 {
            rec.blob(&IndexedBlob {
                id: BlobId(Id([i; 32])),
                offset: u32::from(i) * 10,
                length: 10,
                raw_length: 20,
            });
        }
        rec.pack(PackId(Id([9; 32])), BlobKind::Tree, 3);
        let calls = rec.calls;
        let marks = vec![CondemnedPack {
            pack: PackId(Id([4; 32])),
            since: DateTime::from_timestamp(1_700_000_000, 7).unwrap(),
        }];
        let record = encode(SignedBy::Host([5; 32]), &marks, &calls);
        let (signer, got_marks, got_calls) = open(&record).unwrap();
        assert_eq!(signer, SignedBy::Host([5; 32]));
        assert_eq!(got_marks[0].since, marks[0].since);
        let mut replayed = Calls::default();
        assert!(replay(got_calls, &mut replayed));
        assert_eq!(replayed, direct);
        // Cut anywhere inside a call, or an unknown tag: refused.
        assert!(!replay(&calls[..calls.len() - 1], &mut Calls::default()));
        let mut bad = calls.clone();
        bad[0] = 7;
        assert!(!replay(&bad, &mut Calls::default()));
        assert!(open(&record[..20]).is_none());
    }

    #[test]
    fn the_calls_of_an_index_file_are_those_parsing_its_json_records() {
        use crate::format::index::IndexedPack;
        let blob = |n: u8| IndexedBlob {
            id: BlobId(Id([n; 32])),
            offset: u32::from(n) * 100,
            length: 90 + u32::from(n),
            raw_length: 1000 + u32::from(n),
        };
        let file = IndexFile {
            packs: vec![
                IndexedPack {
                    id: PackId(Id([1; 32])),
                    kind: BlobKind::Data,
                    blobs: (10..15).map(blob).collect(),
                },
                IndexedPack {
                    id: PackId(Id([2; 32])),
                    kind: BlobKind::Tree,
                    blobs: vec![blob(20)],
                },
                IndexedPack {
                    id: PackId(Id([3; 32])),
                    kind: BlobKind::Data,
                    blobs: Vec::new(),
                },
            ],
            condemned: vec![CondemnedPack {
                pack: PackId(Id([3; 32])),
                since: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            }],
        };
        let json = serde_json::to_vec(&file).unwrap();
        let mut parsed = Calls::default();
        let mut recorder = Recorder {
            inner: &mut parsed,
            calls: Vec::new(),
        };
        let marks = crate::format::index::stream::parse(&json, &mut recorder).unwrap();
        let recorded = recorder.calls;
        assert_eq!(marks, file.condemned);
        assert_eq!(calls_of(&file), recorded);
        let mut replayed = Calls::default();
        assert!(replay(&calls_of(&file), &mut replayed));
        assert_eq!(replayed.0.len(), 5 + 1 + 1 + 1 + 1);
        assert_eq!(replayed, parsed);
    }
}
