//! Directory trees: one JSON blob per directory, entries sorted by name.
//!
//! Names, symlink targets and xattr names are bytes on Unix. They are stored
//! as JSON strings when they are UTF-8 and do not start with `b64:`;
//! otherwise as `b64:` followed by standard base64 of the bytes.

mod encode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id, TreeId};

/// A byte string stored as UTF-8 text when possible (see module docs).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) if !t.starts_with("b64:") => s.serialize_str(t),
            _ => s.serialize_str(&format!("b64:{}", B64.encode(&self.0))),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.strip_prefix("b64:") {
            Some(b) => B64.decode(b).map(Bytes).map_err(serde::de::Error::custom),
            None => Ok(Bytes(s.into_bytes())),
        }
    }
}

/// Base64 for binary values (xattr values).
mod b64_value {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    Chardev,
    /// A block device.
    Blockdev,
    /// A Unix socket (recorded, never restored).
    Socket,
}

/// One extended attribute (POSIX ACLs travel as `system.posix_acl_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xattr {
    /// Attribute name.
    pub name: Bytes,
    /// Attribute value (base64 in JSON).
    #[serde(with = "b64_value")]
    pub value: Vec<u8>,
}

/// One directory entry and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// File name (one path component).
    pub name: Bytes,
    /// Entry kind.
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner user name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Owner group name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// File size in bytes (files only; 0 otherwise).
    #[serde(default)]
    pub size: u64,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Bytes>,
    /// Device number for device nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Hard-link group: entries with the same value are one inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<String>,
    /// Extended attributes, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// Content blob ids, in order (files only). A file of more than
    /// [`LIST_IDS`] blobs lists them in `content_lists` instead; readers of a
    /// tree from a repository see them here, filled in by
    /// the repository's blob reader (`BlobReader::read_tree`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    /// A small file stored in a **bundle** (format version 5): its one
    /// content blob holds several small files of its directory back to back,
    /// and the file is the `size` bytes from this offset. Bundles cost one
    /// compression frame, index entry and id where each file cost its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_offset: Option<u64>,
    /// Content lists (format version 4, files of more than [`LIST_IDS`]
    /// blobs): tree-kind blobs, each the concatenated 32-byte ids of up to
    /// [`LIST_IDS`] of the file's data blobs, in order. Kept after the
    /// lists are read, so that walks reach these blobs too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_lists: Vec<BlobId>,
    /// Plain BLAKE3 of the whole file content (files only), checkable with `b3sum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Id>,
    /// The directory's own tree blob (directories only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<TreeId>,
}

impl Node {
    /// An entry named `name` of `kind` with nothing else set: mode 0644,
    /// owned by root, time 0, no content. What tests and synthetic entries
    /// start from before setting the fields they care about.
    pub fn bare(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: Bytes(name.to_vec()),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime_ns: 0,
            size: 0,
            target: None,
            rdev: None,
            hardlink: None,
            xattrs: Vec::new(),
            content: Vec::new(),
            bundle_offset: None,
            content_lists: Vec::new(),
            hash: None,
            subtree: None,
        }
    }

    /// Where a file's content lies in its one content blob: the whole blob
    /// (`None`), or `size` bytes from an offset in a bundle.
    pub fn slice(&self) -> Option<std::ops::Range<usize>> {
        // Parsed trees hold both within BUNDLE_MAX; saturating all the same.
        self.bundle_offset.map(|at| {
            let end = at.saturating_add(self.size);
            usize::try_from(at).unwrap_or(usize::MAX)..usize::try_from(end).unwrap_or(usize::MAX)
        })
    }
}

/// Largest bundle of small files: the largest salted blob, so that a bundle
/// is stored, named and checked like a small file's blob (docs/FORMAT.md
/// §5.3, §6.2). Only small files are bundled (at most
/// [`SALTED_MAX`](crate::format::salt::SALTED_MAX) bytes each); 16 KiB before
/// format 6.
pub const BUNDLE_MAX: u64 = crate::format::salt::SALTED_BLOB_MAX;

/// Most blob ids one content list holds (128 KiB of ids, 64 MiB of a file
/// at the default 16 KiB average chunk): a backup holds at most this many of
/// a file's ids in memory however large the file, and a tree entry names
/// one list per this many blobs.
pub const LIST_IDS: usize = 4096;

/// Most blob ids all the content lists of one tree may expand into (as many
/// as the largest tree blob could list inline, 512 MiB of JSON): a few
/// bytes of lists naming one list again and again must not inflate into
/// unbounded memory.
pub const MAX_LISTED_IDS: usize = 1 << 23;

/// A content list's bytes: the ids, 32 bytes each.
pub fn list_bytes(ids: &[BlobId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 32);
    for id in ids {
        out.extend_from_slice(&id.0.0);
    }
    out
}

/// Parses a content list blob: a non-empty whole number of 32-byte ids, at
/// most [`LIST_IDS`] of them.
pub fn parse_list(bytes: &[u8], id: &BlobId) -> Result<Vec<BlobId>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(32) || bytes.len() / 32 > LIST_IDS {
        return Err(Error::format(
            format!("content list {id}"),
            format!(
                "{} bytes is not 1 to {LIST_IDS} blob ids of 32 bytes",
                bytes.len()
            ),
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| BlobId(Id(c.try_into().expect("32 bytes"))))
        .collect())
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Entries sorted by name bytes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Serializes the tree (the blob's plaintext): the JSON of its derived
    /// `Serialize`, written directly ([`encode`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 320 * self.nodes.len());
        encode::tree(&mut out, &self.nodes);
        out
    }

    /// Parses a tree blob and checks that every name is a safe single path
    /// component and that no name appears twice: a crafted tree must never
    /// make restore write outside its target.
    pub fn from_bytes(bytes: &[u8], id: &Id) -> Result<Self> {
        Self::from_bytes_bounded(bytes, id, usize::MAX)
    }

    /// Like [`Tree::from_bytes`], but refuses a tree of more than
    /// `max_nodes` entries while parsing it, before their memory is spent:
    /// a small blob must not inflate into millions of entries.
    pub fn from_bytes_bounded(bytes: &[u8], id: &Id, max_nodes: usize) -> Result<Self> {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let tree = TreeSeed { max_nodes }
            .deserialize(&mut de)
            .and_then(|t| de.end().map(|()| t));
        Self::checked(tree, id)
    }

    /// Like [`Tree::from_bytes_bounded`], reading the JSON from `raw` as it
    /// comes (nothing but the entries and a 64 KiB buffer is held).
    pub fn from_reader_bounded(raw: impl std::io::Read, id: &Id, max_nodes: usize) -> Result<Self> {
        use serde::de::DeserializeSeed;
        // The parser takes one byte at a time. From a buffer of its own
        // each byte is a load from memory (std reads a `BufReader` byte by
        // byte without a call per byte), not a call through whatever `raw`
        // is (restore's `dyn Read`, buffered behind it): 31 % less time for
        // a 2,000-entry tree (`cargo bench --bench tree`).
        let buffered = std::io::BufReader::with_capacity(64 << 10, raw);
        let mut de = serde_json::Deserializer::from_reader(buffered);
        let tree = TreeSeed { max_nodes }
            .deserialize(&mut de)
            .and_then(|t| de.end().map(|()| t));
        Self::checked(tree, id)
    }

    /// Checks a parsed tree's names (see [`Tree::from_bytes`]).
    fn checked(tree: serde_json::Result<Tree>, id: &Id) -> Result<Self> {
        let tree = tree
            .map_err(|e| Error::format(format!("tree {id}"), format!("not a valid tree: {e}")))?;
        for (i, node) in tree.nodes.iter().enumerate() {
            check_name(&node.name.0).map_err(|why| {
                Error::format(
                    format!("tree {id}"),
                    format!("entry {:?}: {why}", node.name),
                )
            })?;
            if !node.content_lists.is_empty()
                && (node.kind != NodeKind::File || !node.content.is_empty())
            {
                return Err(Error::format(
                    format!("tree {id}"),
                    format!(
                        "entry {:?} has content lists but is not a file, or lists its \
                         content inline too",
                        node.name
                    ),
                ));
            }
            if let Some(at) = node.bundle_offset
                && (node.kind != NodeKind::File
                    || node.content.len() != 1
                    || !node.content_lists.is_empty()
                    || node.size == 0
                    || node.size > crate::format::salt::SALTED_MAX
                    || at.saturating_add(node.size) > BUNDLE_MAX)
            {
                return Err(Error::format(
                    format!("tree {id}"),
                    format!(
                        "entry {:?} is bundled but is not a small file of one blob (at most {} \
                         bytes), or its {} bytes at offset {at} are not within the {BUNDLE_MAX} \
                         bytes of a bundle",
                        node.name,
                        crate::format::salt::SALTED_MAX,
                        node.size
                    ),
                ));
            }
            if i > 0 && tree.nodes[i - 1].name >= node.name {
                return Err(Error::format(
                    format!("tree {id}"),
                    format!("entry {:?} is duplicated or out of order", node.name),
                ));
            }
        }
        Ok(tree)
    }
}

/// Parses `{"nodes":[…]}` counting entries as they come.
struct TreeSeed {
    max_nodes: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for TreeSeed {
    type Value = Tree;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        d.deserialize_struct("Tree", &["nodes"], self)
    }
}

impl<'de> serde::de::Visitor<'de> for TreeSeed {
    type Value = Tree;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a tree object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut nodes = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "nodes" {
                return Err(serde::de::Error::unknown_field(&key, &["nodes"]));
            }
            if nodes.is_some() {
                return Err(serde::de::Error::duplicate_field("nodes"));
            }
            nodes = Some(map.next_value_seed(NodesSeed {
                max_nodes: self.max_nodes,
            })?);
        }
        Ok(Tree {
            nodes: nodes.ok_or_else(|| serde::de::Error::missing_field("nodes"))?,
        })
    }
}

struct NodesSeed {
    max_nodes: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for NodesSeed {
    type Value = Vec<Node>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Node>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NodesSeed {
    type Value = Vec<Node>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of entries")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Node>, A::Error> {
        let mut out = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            if out.len() == self.max_nodes {
                return Err(serde::de::Error::custom(format!(
                    "more than the {} entries left in the snapshot's declared totals",
                    self.max_nodes
                )));
            }
            out.push(node);
        }
        Ok(out)
    }
}

/// Checks that `name` is one safe path component.
pub fn check_name(name: &[u8]) -> std::result::Result<(), &'static str> {
    match name {
        b"" => Err("empty name"),
        b"." | b".." => Err("name is . or .., which would escape the directory"),
        n if n.contains(&b'/') => Err("name contains '/', which would escape the directory"),
        n if n.contains(&0) => Err("name contains a NUL byte"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &[u8]) -> Node {
        Node {
            mtime_ns: 1,
            ..Node::bare(name, NodeKind::File)
        }
    }

    #[test]
    fn non_utf8_names_round_trip() {
        let t = Tree {
            nodes: vec![node(b"a"), node(b"b64:x"), node(&[0xff, 0xfe])],
        };
        let bytes = t.to_bytes();
        let back = Tree::from_bytes(&bytes, &Id([0; 32])).unwrap();
        assert_eq!(back, t);
        assert!(String::from_utf8_lossy(&bytes).contains("\"a\""));
    }

    #[test]
    fn a_tree_is_refused_while_parsing_once_it_exceeds_its_bound() {
        let t = Tree {
            nodes: vec![node(b"a"), node(b"b"), node(b"c")],
        };
        let bytes = t.to_bytes();
        assert_eq!(
            Tree::from_bytes_bounded(&bytes, &Id([0; 32]), 3).unwrap(),
            t
        );
        let err = Tree::from_bytes_bounded(&bytes, &Id([0; 32]), 2).unwrap_err();
        assert!(err.to_string().contains("more than the 2 entries"), "{err}");
        let extra = br#"{"nodes":[],"other":1}"#;
        assert!(Tree::from_bytes(extra, &Id([0; 32])).is_err());
        assert!(Tree::from_bytes(br#"{"nodes":[]} x"#, &Id([0; 32])).is_err());
    }

    #[test]
    fn content_lists_hold_whole_ids_and_only_files_name_them() {
        let ids: Vec<BlobId> = (0..3u8).map(|i| BlobId(Id([i; 32]))).collect();
        let list = BlobId(Id([9; 32]));
        assert_eq!(parse_list(&list_bytes(&ids), &list).unwrap(), ids);
        for bad in [
            vec![],
            vec![0u8; 33],
            list_bytes(&vec![BlobId(Id([1; 32])); LIST_IDS + 1]),
        ] {
            let err = parse_list(&bad, &list).unwrap_err();
            assert!(err.to_string().contains("blob ids of 32 bytes"), "{err}");
        }
        let mut file = node(b"f");
        file.content_lists = vec![list];
        let t = Tree { nodes: vec![file] };
        assert_eq!(Tree::from_bytes(&t.to_bytes(), &Id([0; 32])).unwrap(), t);
        // Lists beside inline ids, or on a directory, are refused.
        for change in [
            (|n: &mut Node| n.content = vec![BlobId(Id([1; 32]))]) as fn(&mut Node),
            |n: &mut Node| n.kind = NodeKind::Dir,
        ] {
            let mut bad = t.clone();
            change(&mut bad.nodes[0]);
            let err = Tree::from_bytes(&bad.to_bytes(), &Id([0; 32])).unwrap_err();
            assert!(err.to_string().contains("content lists"), "{err}");
        }
    }

    #[test]
    fn only_a_file_of_one_blob_within_a_bundle_is_bundled() {
        let mut file = node(b"f");
        file.size = 10;
        file.content = vec![BlobId(Id([1; 32]))];
        file.bundle_offset = Some(BUNDLE_MAX - 10);
        let t = Tree { nodes: vec![file] };
        let back = Tree::from_bytes(&t.to_bytes(), &Id([0; 32])).unwrap();
        assert_eq!(back, t);
        let at = BUNDLE_MAX as usize - 10;
        assert_eq!(back.nodes[0].slice(), Some(at..at + 10));
        for change in [
            (|n: &mut Node| n.kind = NodeKind::Dir) as fn(&mut Node),
            |n: &mut Node| n.content.push(BlobId(Id([2; 32]))),
            |n: &mut Node| n.content.clear(),
            |n: &mut Node| {
                n.content.clear();
                n.content_lists = vec![BlobId(Id([3; 32]))];
            },
            |n: &mut Node| n.size = 0,
            |n: &mut Node| n.size = 11,
            |n: &mut Node| n.bundle_offset = Some(u64::MAX),
        ] {
            let mut bad = t.clone();
            change(&mut bad.nodes[0]);
            let err = Tree::from_bytes(&bad.to_bytes(), &Id([0; 32])).unwrap_err();
            assert!(err.to_string().contains("is bundled but"), "{err}");
        }
        // Out of any parsed tree, a slice still never overflows.
        let mut wild = node(b"w");
        wild.size = u64::MAX;
        wild.bundle_offset = Some(u64::MAX);
        assert!(wild.slice().is_some_and(|r| r.is_empty()));
    }

    #[test]
    fn crafted_names_are_refused() {
        for bad in [&b".."[..], b".", b"a/b", b"/etc", b""] {
            let t = Tree {
                nodes: vec![node(bad)],
            };
            let err = Tree::from_bytes(&t.to_bytes(), &Id([0; 32])).unwrap_err();
            assert!(err.to_string().contains("entry"), "{err}");
        }
        let dup = Tree {
            nodes: vec![node(b"x"), node(b"x")],
        };
        assert!(Tree::from_bytes(&dup.to_bytes(), &Id([0; 32])).is_err());
    }
}
