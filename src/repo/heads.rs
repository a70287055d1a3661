//! Snapshot heads: the few fields of every header a backup needs to find
//! its parent, read through the metadata cache's `heads` digest, so that a
//! backup into a long history decodes only the headers it has not seen.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::format::id::{Id, SnapshotId};
use crate::format::snapshot::Snapshot;
use crate::repo::{ObjectKind, Repository};

/// The digest's name (and the version of its records).
const DIGEST: &str = "heads-v1";

/// What a backup needs of a snapshot header to find its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHead {
    /// The header.
    pub id: SnapshotId,
    /// Its recorded time.
    pub time: DateTime<Utc>,
    /// Its host.
    pub host: String,
    /// [`Snapshot::source_names`].
    pub sources: Vec<String>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&s.time.timestamp().to_le_bytes());
    out.extend_from_slice(&s.time.timestamp_subsec_nanos().to_le_bytes());
    put_str(&mut out, &s.host);
    let names = s.source_names();
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for n in &names {
        put_str(&mut out, n);
    }
    out
}

/// A reader of a record that stops at its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn decode(id: Id, record: &[u8]) -> Option<SnapshotHead> {
    let mut c = Cursor(record);
    let secs = i64::from_le_bytes(c.take(8)?.try_into().ok()?);
    let nanos = c.u32()?;
    let time = DateTime::from_timestamp(secs, nanos)?;
    let host = c.string()?;
    let n = c.u32()? as usize;
    // Each name costs at least its 4-byte length.
    if n > c.0.len() / 4 {
        return None;
    }
    let sources = (0..n).map(|_| c.string()).collect::<Option<Vec<_>>>()?;
    c.0.is_empty().then_some(SnapshotHead {
        id: SnapshotId(id),
        time,
        host,
        sources,
    })
}

impl Repository {
    /// The head of every readable snapshot header, oldest first (by time,
    /// then id, as [`Repository::snapshots`] sorts). With a metadata cache,
    /// headers summed up by an earlier run are not decoded again; the
    /// others are read (cache entry or storage) and added to the digest.
    pub fn snapshot_heads(&self) -> Result<Vec<SnapshotHead>> {
        let listed = self.list_document_keys(ObjectKind::Snapshot)?;
        let digest = self.cached().map(|c| c.digest(DIGEST));
        let mut heads = Vec::with_capacity(listed.len());
        let mut unseen = Vec::new();
        for (obj, id) in &listed {
            match digest
                .as_ref()
                .and_then(|d| d.records.get(id))
                .and_then(|r| decode(*id, r))
            {
                Some(h) => heads.push(h),
                None => unseen.push((obj.clone(), *id)),
            }
        }
        let docs = self.read_listed::<Snapshot>(&unseen, None);
        let mut added = Vec::with_capacity(docs.read.len());
        for (_, id, (s, _)) in docs.read {
            let record = encode(&s);
            if let Some(h) = decode(id, &record) {
                heads.push(h);
                added.push((id, record));
            }
        }
        if let (Some(c), Some(d)) = (self.cached(), digest) {
            let ids: HashSet<Id> = listed.iter().map(|(_, id)| *id).collect();
            c.save_digest(d, added, &ids);
        }
        heads.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(heads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_records_do_not_decode() {
        let id = Id([3; 32]);
        let mut r = Vec::new();
        r.extend_from_slice(&1_700_000_000i64.to_le_bytes());
        r.extend_from_slice(&5u32.to_le_bytes());
        put_str(&mut r, "web1");
        r.extend_from_slice(&1u32.to_le_bytes());
        put_str(&mut r, "/etc");
        let h = decode(id, &r).expect("a well-formed record");
        assert_eq!(
            (h.host.as_str(), h.sources.as_slice()),
            ("web1", &["/etc".to_owned()][..])
        );
        for cut in 0..r.len() {
            assert!(decode(id, &r[..cut]).is_none(), "cut at {cut}");
        }
        let mut long = r.clone();
        long.push(0);
        assert!(decode(id, &long).is_none());
        let mut huge = r[..16].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(id, &huge).is_none());
    }
}
