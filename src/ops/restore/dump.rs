//! `vault dump`: a snapshot or subtree as a POSIX (pax) tar stream.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::budget::Budget;
use super::links;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id};
use crate::format::index::Index;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::treewalk::{self, Next, Visit};
use crate::repo::{BlobReader, Repository};

/// Streams a file's blobs in order, checking the whole-file hash at the end.
struct ContentReader<'r, 'a> {
    reader: &'r mut BlobReader<'a>,
    index: &'r Index,
    ids: &'r [BlobId],
    /// A bundled file's bytes in its one blob.
    slice: Option<std::ops::Range<usize>>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    hasher: blake3::Hasher,
    expected: Option<Id>,
    produced: u64,
    size: u64,
}

impl Read for ContentReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.get(self.next) else {
                if self.produced != self.size {
                    return Err(io::Error::other(format!(
                        "file content is {} bytes, the snapshot says {}",
                        self.produced, self.size
                    )));
                }
                if Some(Id::from(self.hasher.finalize())) != self.expected {
                    return Err(io::Error::other(
                        "file content does not match its recorded hash",
                    ));
                }
                return Ok(0);
            };
            self.buf = self
                .reader
                .read_file_blob(id, self.slice.clone(), self.index)
                .map_err(io::Error::other)?;
            self.produced += self.buf.len() as u64;
            if self.produced > self.size {
                // Never let content run past the tar header's size: that
                // would smuggle entries past the tree's name checks.
                return Err(io::Error::other(format!(
                    "file content exceeds the {} bytes the snapshot records",
                    self.size
                )));
            }
            self.hasher.update(&self.buf);
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn header_for(node: &Node) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_mode(node.mode);
    h.set_uid(node.uid as u64);
    h.set_gid(node.gid as u64);
    h.set_mtime(node.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
    if let Some(u) = &node.user {
        let _ = h.set_username(u);
    }
    if let Some(g) = &node.group {
        let _ = h.set_groupname(g);
    }
    h.set_size(0);
    h.set_entry_type(match node.kind {
        NodeKind::File => tar::EntryType::Regular,
        NodeKind::Dir => tar::EntryType::Directory,
        NodeKind::Symlink => tar::EntryType::Symlink,
        NodeKind::Fifo => tar::EntryType::Fifo,
        NodeKind::Chardev => tar::EntryType::Char,
        NodeKind::Blockdev => tar::EntryType::Block,
        NodeKind::Socket => tar::EntryType::Regular,
    });
    if let Some(rdev) = node.rdev {
        let _ = h.set_device_major(nix::sys::stat::major(rdev) as u32);
        let _ = h.set_device_minor(nix::sys::stat::minor(rdev) as u32);
    }
    h
}

/// Writes pax records for the path, link target, nanosecond mtime and xattrs.
fn pax_records(path: &[u8], link: Option<&[u8]>, node: &Node) -> Vec<(String, Vec<u8>)> {
    let mut recs = vec![("path".to_owned(), path.to_vec())];
    if let Some(l) = link {
        recs.push(("linkpath".to_owned(), l.to_vec()));
    }
    recs.push(("mtime".to_owned(), pax_time(node.mtime_ns).into_bytes()));
    for x in &node.xattrs {
        recs.push((
            format!("SCHILY.xattr.{}", String::from_utf8_lossy(&x.name.0)),
            x.value.clone(),
        ));
    }
    recs
}

/// A pax time: seconds and nanoseconds as a signed decimal, so that a time
/// before 1970 is written `-86400.250000001`, not a wrapped positive fraction.
fn pax_time(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

fn tar_err(path: &Path, e: io::Error) -> Error {
    Error::io(path, e)
}

/// Writes `snapshot` (or the subtree at `subpath`) to `out` as a tar stream.
pub fn dump_tar(
    repo: &Repository,
    snapshot: &Snapshot,
    subpath: Option<&str>,
    out: impl Write,
) -> Result<()> {
    repo.keys().require_owner("dump")?;
    let (index, _) = repo.load_index()?;
    let prefix = subpath
        .map(|p| Path::new(p.trim_matches('/')).to_owned())
        .filter(|p| !p.as_os_str().is_empty());
    let mut builder = tar::Builder::new(out);
    let mut reader = BlobReader::new(repo);
    let mut links: HashMap<String, (links::Key, Vec<u8>)> = HashMap::new();
    let mut found = prefix.is_none();
    let mut budget = Budget::new(&snapshot.totals);
    treewalk::walk(repo, &index, &snapshot.root, &mut |v| {
        let (path, node) = match v {
            Visit::Entry { path, node } => (path, node),
            Visit::Leave { .. } => return Ok(Next::Descend),
            Visit::Damaged { error, .. } => return Err(error),
        };
        // The same bound as restore: a tree that repeats its subtrees must
        // not stream more than the header declares.
        budget.spend(node).map_err(|why| {
            Error::format(format!("snapshot tree {}", snapshot.root), why.to_string())
        })?;
        if let Some(p) = &prefix {
            if let Some(next) = outside_prefix(p, path) {
                return Ok(next);
            }
            found = true;
        }
        if node.kind == NodeKind::Socket {
            // A socket cannot be archived: no header at all (a pax header
            // without its member would make readers take the next entry's name).
            return Ok(Next::Descend);
        }
        let name = path.as_os_str().as_bytes();
        let mut h = header_for(node);
        let link_target = link_target(&mut links, node, name, &mut h);
        let member = Member {
            path,
            node,
            header: h,
            link_target: link_target.as_deref(),
        };
        append_member(&mut builder, &mut reader, &index, member)?;
        Ok(Next::Descend)
    })?;
    if !found {
        return Err(Error::NotFound(format!(
            "{:?} is not in the snapshot",
            subpath.unwrap_or_default()
        )));
    }
    builder
        .into_inner()
        .map_err(|e| Error::io("<tar output>", e))?
        .flush()
        .map_err(|e| Error::io("<tar output>", e))
}

/// Where `path` stands against the subpath `p`: None when it is inside
/// (archived), else the walk's next step: descend toward `p`, or skip.
fn outside_prefix(p: &Path, path: &Path) -> Option<Next> {
    if path.starts_with(p) {
        return None;
    }
    Some(if p.starts_with(path) {
        Next::Descend
    } else {
        Next::Skip
    })
}

/// The link target `node` (archived as `name`) is written with: its
/// symlink target, or, for a member of a hard-link group that agrees with
/// the group's first member, that member's name, `h` becoming a link entry
/// (see links.rs). The first member of each group is remembered in
/// `links`; any other is written out as recorded.
fn link_target(
    links: &mut HashMap<String, (links::Key, Vec<u8>)>,
    node: &Node,
    name: &[u8],
    h: &mut tar::Header,
) -> Option<Vec<u8>> {
    let mut target = node.target.as_ref().map(|t| t.0.clone());
    if let Some(l) = &node.hardlink {
        match links.get(l) {
            Some((key, first)) if *key == links::key(node) => {
                h.set_entry_type(tar::EntryType::Link);
                target = Some(first.clone());
            }
            Some(_) => {}
            None => {
                links.insert(l.clone(), (links::key(node), name.to_vec()));
            }
        }
    }
    target
}

/// One archive member about to be written.
struct Member<'a> {
    path: &'a Path,
    node: &'a Node,
    header: tar::Header,
    link_target: Option<&'a [u8]>,
}

/// Appends `m`: its pax records, its ustar header (names cut to fit: the
/// pax records rule) and, for a regular file, its content, verified as it
/// streams.
fn append_member<W: Write>(
    builder: &mut tar::Builder<W>,
    reader: &mut BlobReader<'_>,
    index: &Index,
    m: Member<'_>,
) -> Result<()> {
    let Member {
        path,
        node,
        header: mut h,
        link_target,
    } = m;
    let name = path.as_os_str().as_bytes();
    let recs = pax_records(name, link_target, node);
    builder
        .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
        .map_err(|e| tar_err(path, e))?;
    // The ustar name field is a fallback; the pax `path` record rules.
    let short = &name[name.len().saturating_sub(99)..];
    h.as_old_mut().name[..short.len()].copy_from_slice(short);
    if let Some(t) = link_target {
        let short = &t[..t.len().min(99)];
        h.as_old_mut().linkname[..short.len()].copy_from_slice(short);
    }
    if node.kind == NodeKind::File && h.entry_type() == tar::EntryType::Regular {
        h.set_size(node.size);
        h.set_cksum();
        let content = ContentReader {
            reader,
            index,
            ids: &node.content,
            slice: node.slice(),
            next: 0,
            buf: Vec::new(),
            pos: 0,
            hasher: blake3::Hasher::new(),
            expected: node.hash,
            produced: 0,
            size: node.size,
        };
        builder.append(&h, content).map_err(|e| tar_err(path, e))?;
    } else {
        h.set_cksum();
        builder
            .append(&h, io::empty())
            .map_err(|e| tar_err(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pax_time;

    #[test]
    fn pax_times_before_1970_keep_their_fraction() {
        assert_eq!(pax_time(1_500_000_000_123_456_789), "1500000000.123456789");
        assert_eq!(pax_time(0), "0.000000000");
        assert_eq!(pax_time(-86_400_250_000_001), "-86400.250000001");
        assert_eq!(pax_time(-1), "-0.000000001");
    }
}
