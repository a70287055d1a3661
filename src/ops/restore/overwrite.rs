//! What a restore does with an entry that already exists in the target
//! (`--overwrite`). Whatever the choice, an existing inode is never written
//! to, chmod'ed or chown'ed: a replacement is a new file renamed over the
//! old name (so a hard link or symlink planted in the target leads nowhere),
//! and `never` commits with `RENAME_NOREPLACE`, so an entry that appears
//! while the file is being written is kept too.

use std::ffi::OsStr;
use std::str::FromStr;

use nix::sys::stat::{FileStat, SFlag};

use super::files::hash_reader;
use super::fsops::Dir;
use super::policy::MetaWriter;
use crate::format::tree::{Node, NodeKind};

/// What to do with an entry that already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it (what restore always did, and restic's default).
    #[default]
    Always,
    /// Replace it only when its content or metadata (type, size, BLAKE3,
    /// mode, mtime, owner when restoring as root, symlink target) differs
    /// from the snapshot's; an identical entry is left as it is.
    IfChanged,
    /// Leave it as it is.
    Never,
}

impl Overwrite {
    /// The names `--overwrite` accepts.
    pub const NAMES: [&'static str; 3] = ["always", "if-changed", "never"];
}

/// A name that is not one of [`Overwrite::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown overwrite mode {0:?}: expected one of {names}", names = Overwrite::NAMES.join(", "))]
pub struct UnknownOverwrite(pub String);

impl FromStr for Overwrite {
    type Err = UnknownOverwrite;

    fn from_str(s: &str) -> Result<Self, UnknownOverwrite> {
        match s {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "never" => Ok(Overwrite::Never),
            _ => Err(UnknownOverwrite(s.to_owned())),
        }
    }
}

/// What restore does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing has its name: create it.
    Create,
    /// Something has its name: write the entry and rename it over.
    Replace,
    /// Something has its name and stays (`never`, or `if-changed` found it
    /// identical); `Some` holds the existing inode's stat when it is
    /// identical to the snapshot's entry.
    Keep(Option<FileStat>),
}

/// Decides what to do with `node`, to be restored as `name` in `dir`.
///
/// # Errors
///
/// When what is at `name` cannot be looked at.
pub fn decide(
    mode: Overwrite,
    dir: &Dir,
    name: &OsStr,
    node: &Node,
    meta: &MetaWriter,
) -> std::io::Result<Decision> {
    let Some(st) = dir.stat_child(name)? else {
        return Ok(Decision::Create);
    };
    Ok(match mode {
        Overwrite::Always => Decision::Replace,
        Overwrite::Never => Decision::Keep(None),
        Overwrite::IfChanged if identical(dir, name, &st, node, meta) => Decision::Keep(Some(st)),
        Overwrite::IfChanged => Decision::Replace,
    })
}

/// Whether the existing entry `st` at `name` is what restoring `node` would
/// produce. Anything that cannot be compared counts as different.
fn identical(dir: &Dir, name: &OsStr, st: &FileStat, node: &Node, meta: &MetaWriter) -> bool {
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let want = match node.kind {
        NodeKind::File => SFlag::S_IFREG,
        NodeKind::Symlink => SFlag::S_IFLNK,
        NodeKind::Fifo => SFlag::S_IFIFO,
        NodeKind::Chardev => SFlag::S_IFCHR,
        NodeKind::Blockdev => SFlag::S_IFBLK,
        _ => return false,
    };
    if kind != want {
        return false;
    }
    if meta.as_root && meta.owner_of(node) != (st.st_uid, st.st_gid) {
        return false;
    }
    if node.kind == NodeKind::Symlink {
        return dir.read_link_child(name).is_ok_and(|t| {
            node.target
                .as_ref()
                .is_some_and(|n| t.as_encoded_bytes() == n.0)
        });
    }
    let mtime_ns = st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128;
    if st.st_mode & 0o7777 != meta.policy.screen(node).mode || mtime_ns != node.mtime_ns as i128 {
        return false;
    }
    match node.kind {
        // A file with other names is shared with something outside this
        // restore (or a hard-link group): always replaced, never compared.
        NodeKind::File => {
            st.st_nlink == 1
                && st.st_size as u64 == node.size
                && node.hash.is_some()
                && dir
                    .open_existing_file(name, st)
                    .and_then(|mut f| hash_reader(&mut f))
                    .is_ok_and(|(h, n)| Some(h) == node.hash && n == node.size)
        }
        NodeKind::Chardev | NodeKind::Blockdev => node.rdev == Some(st.st_rdev),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_ones_name_the_choices() {
        assert_eq!("always".parse(), Ok(Overwrite::Always));
        assert_eq!("if-changed".parse(), Ok(Overwrite::IfChanged));
        assert_eq!("never".parse(), Ok(Overwrite::Never));
        let e = "sometimes".parse::<Overwrite>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown overwrite mode \"sometimes\": expected one of always, if-changed, never"
        );
        assert!(
            e.contains("\"sometimes\"") && e.contains("if-changed"),
            "{e}"
        );
        assert_eq!(Overwrite::default(), Overwrite::Always);
    }
}
