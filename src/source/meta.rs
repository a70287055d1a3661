//! Turns `lstat` results into tree nodes: mode, owner (ids and names),
//! times, symlink target, device numbers and extended attributes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use xattr::FileExt;

use crate::format::tree::{Bytes, Node, NodeKind, Xattr};

/// Caches uid/gid → name look-ups for one backup run.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// The node kind for a file type.
pub fn kind_of(meta: &Metadata) -> NodeKind {
    let ft = meta.file_type();
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else if ft.is_block_device() {
        NodeKind::Blockdev
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Modification time in nanoseconds since the epoch.
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Change time in nanoseconds since the epoch.
pub fn ctime_ns(meta: &Metadata) -> i64 {
    meta.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.ctime_nsec())
}

/// Builds the node for `path` (content fields left empty). Problems reading
/// a symlink target or xattrs are returned as warnings, not failures.
pub fn node_for(
    path: &Path,
    name: &OsStr,
    meta: &Metadata,
    names: &mut Names,
) -> std::io::Result<Node> {
    let mut node = node_without_xattrs(path, name, meta, names)?;
    node.xattrs = read_xattrs(path);
    Ok(node)
}

/// Like [`node_for`], with no extended attributes read (the caller knows
/// there are none, or reads them itself with [`read_xattrs`]).
pub fn node_without_xattrs(
    path: &Path,
    name: &OsStr,
    meta: &Metadata,
    names: &mut Names,
) -> std::io::Result<Node> {
    let target = match kind_of(meta) {
        NodeKind::Symlink => Some(Bytes(
            std::fs::read_link(path)?
                .into_os_string()
                .into_encoded_bytes(),
        )),
        _ => None,
    };
    Ok(Node {
        target,
        ..plain_node(Bytes(name.as_bytes().to_vec()), meta, names)
    })
}

/// The node named `name` that `meta` describes, with no symlink target
/// and no extended attributes read: a regular file's whole node (content
/// fields left empty), made without a path.
pub fn plain_node(name: Bytes, meta: &Metadata, names: &mut Names) -> Node {
    let kind = kind_of(meta);
    Node {
        name,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: names.user(meta.uid()),
        group: names.group(meta.gid()),
        mtime_ns: mtime_ns(meta),
        size: if kind == NodeKind::File {
            meta.len()
        } else {
            0
        },
        target: None,
        rdev: matches!(kind, NodeKind::Chardev | NodeKind::Blockdev).then(|| meta.rdev()),
        hardlink: None,
        xattrs: Vec::new(),
        content: Vec::new(),
        bundle_offset: None,
        content_lists: Vec::new(),
        hash: None,
        subtree: None,
    }
}

/// Reads extended attributes without following symlinks; unsupported
/// filesystems simply have none.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    match xattr::list(path) {
        Ok(names) => collect_xattrs(names, |n| xattr::get(path, n)),
        Err(_) => Vec::new(),
    }
}

/// The extended attributes of an open file, read through its descriptor:
/// those of the very inode whose content is read, and no path walked again
/// (a backup of many new files looked each one's path up once more only to
/// list its attributes). Unsupported filesystems simply have none.
pub fn file_xattrs(file: &File) -> Vec<Xattr> {
    match file.list_xattr() {
        Ok(names) => collect_xattrs(names, |n| file.get_xattr(n)),
        Err(_) => Vec::new(),
    }
}

/// The extended attributes of the inode an `O_PATH` handle holds, read
/// through `/proc/self/fd/N` (attribute calls refuse such a handle
/// itself); `None` when `/proc` is not there to read them through.
pub fn handle_xattrs(handle: &impl AsFd) -> Option<Vec<Xattr>> {
    let through = format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd());
    match xattr::list_deref(&through) {
        Ok(names) => Some(collect_xattrs(names, |n| xattr::get_deref(&through, n))),
        Err(_) if !Path::new("/proc/self/fd").exists() => None,
        Err(_) => Some(Vec::new()),
    }
}

/// The attributes `names` lists with the values `get` reads, sorted by
/// name; one removed in between is left out.
fn collect_xattrs(
    names: xattr::XAttrs,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Vec<Xattr> {
    let mut out: Vec<Xattr> = names
        .filter_map(|n| {
            let value = get(&n).ok()??;
            Some(Xattr {
                name: Bytes(n.as_bytes().to_vec()),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A node with the given identity and no file behind it.
pub fn synthetic(
    name: &OsStr,
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    names: &mut Names,
) -> Node {
    Node {
        mode,
        uid,
        gid,
        user: names.user(uid),
        group: names.group(gid),
        mtime_ns,
        ..Node::bare(name.as_bytes(), kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attributes of an open file are those of the inode it opened,
    /// even once another file has been renamed over its path, where a
    /// look-up by path reads the newcomer's.
    #[test]
    fn an_open_files_xattrs_are_its_own_not_those_now_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (path, other) = (dir.path().join("f"), dir.path().join("g"));
        std::fs::write(&path, b"first").unwrap();
        std::fs::write(&other, b"second").unwrap();
        if let Err(e) = xattr::set(&path, "user.vault-b", b"1") {
            println!("SKIPPED: no user xattrs here: {e}");
            return;
        }
        xattr::set(&path, "user.vault-a", b"2").unwrap();
        xattr::set(&other, "user.vault-c", b"3").unwrap();
        let open = File::open(&path).unwrap();
        let names = |x: Vec<Xattr>| -> Vec<(Vec<u8>, Vec<u8>)> {
            x.into_iter().map(|x| (x.name.0, x.value)).collect()
        };
        let own = vec![
            (b"user.vault-a".to_vec(), b"2".to_vec()),
            (b"user.vault-b".to_vec(), b"1".to_vec()),
        ];
        // Sorted by name, whatever order the filesystem lists them in.
        assert_eq!(names(file_xattrs(&open)), own);
        assert_eq!(names(read_xattrs(&path)), own);
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(names(file_xattrs(&open)), own);
        assert_eq!(
            names(read_xattrs(&path)),
            vec![(b"user.vault-c".to_vec(), b"3".to_vec())]
        );
        // A file without any: none.
        std::fs::write(&other, b"plain").unwrap();
        assert!(file_xattrs(&File::open(&other).unwrap()).is_empty());
    }
}
