//! One entry of a snapshot by its path: finding it, and streaming a
//! regular file's bytes (`vault dump latest postgres/app.dump | pg_restore`).

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Node;
use crate::repo::treewalk::{self, Next, Visit};
use crate::repo::{BlobReader, Repository};

/// The entry at `subpath` (relative to the snapshot root; `/` and the
/// empty path name the root, which has no entry), if the snapshot has one.
pub fn find_entry(repo: &Repository, snapshot: &Snapshot, subpath: &str) -> Result<Option<Node>> {
    repo.keys().require_owner("dump")?;
    let want = Path::new(subpath.trim_matches('/'));
    if want.as_os_str().is_empty() {
        return Ok(None);
    }
    let (index, _) = repo.load_index()?;
    let mut found = None;
    treewalk::walk(repo, &index, &snapshot.root, &mut |v| match v {
        Visit::Entry { path, node } => {
            if path == want {
                found = Some(node.clone());
                Ok(Next::Skip)
            } else if want.starts_with(path) {
                Ok(Next::Descend)
            } else {
                Ok(Next::Skip)
            }
        }
        Visit::Leave { .. } => Ok(Next::Descend),
        // Damage on the way to the entry stops; damage elsewhere is not ours.
        Visit::Damaged { path, error } if want.starts_with(path) => Err(error),
        Visit::Damaged { .. } => Ok(Next::Skip),
    })?;
    Ok(found)
}

/// Writes the content of the regular file `node` (found at `path`) to
/// `out`, blob by blob, checking its size and whole-file hash. Returns the
/// bytes written. The checks end the stream: a damaged file fails after
/// what was written, never silently.
pub fn write_file(repo: &Repository, path: &str, node: &Node, mut out: impl Write) -> Result<u64> {
    repo.keys().require_owner("dump")?;
    let (index, _) = repo.load_index()?;
    let mut reader = BlobReader::new(repo);
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    let stdout = Path::new("standard output");
    for id in &node.content {
        let data = reader.read_file_blob(id, node.slice(), &index)?;
        written += data.len() as u64;
        if written > node.size {
            return Err(Error::format(
                path,
                format!(
                    "content exceeds the {} bytes the snapshot records",
                    node.size
                ),
            ));
        }
        hasher.update(&data);
        out.write_all(&data).map_err(|e| Error::io(stdout, e))?;
    }
    out.flush().map_err(|e| Error::io(stdout, e))?;
    if written != node.size {
        return Err(Error::format(
            path,
            format!(
                "content is {written} bytes, the snapshot says {}",
                node.size
            ),
        ));
    }
    if Some(Id::from(hasher.finalize())) != node.hash {
        return Err(Error::format(
            path,
            "file content does not match its recorded hash",
        ));
    }
    Ok(written)
}
