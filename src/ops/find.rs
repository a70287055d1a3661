//! `vault find`: paths matching a glob across many snapshots (owner key
//! required).
//!
//! Memory stays bounded however many snapshots are searched: snapshots are
//! walked one after another, each with a fresh [`Walker`] bounded by its
//! header's totals, and every match is handed to the caller as it is found.
//! What carries over from one snapshot to the next is a capped set of
//! directories known to hold no match ([`MEMO_MAX`] entries): nightly
//! snapshots share most of their subtrees, so an unchanged directory
//! without a match is read once, not once per snapshot.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::format::id::{Id, SnapshotId};
use crate::format::index::Index;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repository;
use crate::repo::treewalk::{Budget, Next, Visit, Walker};

/// Directories without a match remembered across snapshots, at most
/// (32 bytes each: about 8 MiB with the set's overhead).
pub const MEMO_MAX: usize = 1 << 18;

/// What to look for: a glob on entry names, or on whole paths when it
/// holds a `/`.
pub struct Pattern {
    glob: GlobMatcher,
    whole_path: bool,
    /// A whole-path pattern cut at each `/`: one matcher per component,
    /// `None` for a component holding `**` (it spans any depth). Empty when
    /// the pattern cannot be cut (a `{a,b/c}` or `[/]` spanning a `/`):
    /// then no directory is ruled out.
    components: Vec<Option<GlobMatcher>>,
}

impl Pattern {
    /// Compiles `text`: `*`, `?`, `[abc]` and `{a,b}` as in shell globs;
    /// with a `/` it matches the whole path from the snapshot root
    /// (`/etc/**/*.conf`; `*` stays within one directory, `**` crosses
    /// them), else each entry's name (`*.conf`).
    pub fn new(text: &str, ignore_case: bool) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::InvalidInput(
                "the pattern is empty: give a glob such as '*.conf' or '/etc/**/nginx*'".into(),
            ));
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(true)
            .case_insensitive(ignore_case)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("pattern {text:?}: {}", e.kind())))?
            .compile_matcher();
        let whole_path = text.contains('/');
        let components = if whole_path {
            text.split('/')
                .map(|c| match c.contains("**") {
                    true => Some(None),
                    false => GlobBuilder::new(c)
                        .literal_separator(true)
                        .case_insensitive(ignore_case)
                        .backslash_escape(true)
                        .build()
                        .ok()
                        .map(|g| Some(g.compile_matcher())),
                })
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(Pattern {
            glob,
            whole_path,
            components,
        })
    }

    /// Whether an entry below the directory at `dir` (relative to the
    /// snapshot root) could match: false only for a whole-path pattern
    /// whose leading components rule the directory out (`/etc/*.conf`
    /// rules out `/var` and `/etc/nginx`), so the directory is not read.
    fn could_hold(&self, dir: &Path) -> bool {
        if self.components.is_empty() {
            return true;
        }
        let full = [b"".as_slice()]
            .into_iter()
            .chain(dir.as_os_str().as_bytes().split(|&b| b == b'/'));
        let mut depth = 0;
        for (name, component) in full.zip(&self.components) {
            let Some(glob) = component else {
                return true;
            };
            if !glob.is_match(Path::new(std::ffi::OsStr::from_bytes(name))) {
                return false;
            }
            depth += 1;
        }
        // The directory's own entries sit one component deeper than it.
        let dir_depth = 1 + dir.components().count();
        match self.components.get(dir_depth) {
            Some(_) => depth == dir_depth,
            None => false,
        }
    }

    /// Whether the entry at `path` (relative to the snapshot root) matches.
    fn matches(&self, path: &Path) -> bool {
        if self.whole_path {
            let mut full = Vec::with_capacity(path.as_os_str().len() + 1);
            full.push(b'/');
            full.extend_from_slice(path.as_os_str().as_bytes());
            self.glob
                .is_match(Path::new(std::ffi::OsStr::from_bytes(&full)))
        } else {
            path.file_name().is_some_and(|n| self.glob.is_match(n))
        }
    }

    /// What a directory without a match is remembered by: its tree id, and
    /// for a whole-path pattern its path too (the same tree elsewhere could
    /// match).
    fn memo_key(&self, path: &Path, node: &Node) -> Option<Id> {
        let tree = node.subtree?;
        if !self.whole_path {
            return Some(*tree.id());
        }
        let mut h = blake3::Hasher::new();
        h.update(tree.id().0.as_slice());
        h.update(path.as_os_str().as_bytes());
        Some(Id(*h.finalize().as_bytes()))
    }
}

/// What [`find`] reports as it goes.
pub enum Found<'a> {
    /// A matching entry.
    Match {
        /// The snapshot holding it.
        snapshot: &'a SnapshotId,
        /// Its header.
        header: &'a Snapshot,
        /// Its path relative to the snapshot root.
        path: &'a Path,
        /// The entry.
        node: &'a Node,
    },
    /// A directory whose tree could not be read (its contents were not
    /// searched).
    Damaged {
        /// The snapshot.
        snapshot: &'a SnapshotId,
        /// The directory's path (empty for the root).
        path: &'a Path,
        /// Why.
        error: Error,
    },
}

/// Counts of what [`find`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FindSummary {
    /// Snapshots searched.
    pub snapshots: u64,
    /// Matching entries reported.
    pub matches: u64,
    /// Trees read.
    pub trees_read: u64,
    /// Directories not read again: known from an earlier snapshot to hold
    /// no match.
    pub skipped: u64,
    /// Directories that could not be read.
    pub damaged: u64,
    /// Directories not read because a whole-path pattern rules out every
    /// path below them.
    pub ruled_out: u64,
}

/// Searches `snapshots` in the order given for entries matching `pattern`,
/// calling `report` for each match and each unreadable directory.
pub fn find(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, Snapshot)],
    pattern: &Pattern,
    report: &mut dyn FnMut(Found<'_>) -> Result<()>,
) -> Result<FindSummary> {
    repo.keys().require_owner("searching snapshots")?;
    let mut summary = FindSummary::default();
    let mut no_match: HashSet<Id> = HashSet::new();
    for (id, snap) in snapshots {
        summary.snapshots += 1;
        summary.trees_read += 1;
        // One flag per directory being walked: whether a match lies below.
        let mut below: Vec<bool> = Vec::new();
        let mut walker = Walker::new(repo, index)?.with_budget(Budget::of(&snap.totals));
        walker.walk(&snap.root, &mut |v| match v {
            Visit::Entry { path, node } => {
                if pattern.matches(path) {
                    summary.matches += 1;
                    below.iter_mut().for_each(|b| *b = true);
                    report(Found::Match {
                        snapshot: id,
                        header: snap,
                        path,
                        node,
                    })?;
                }
                if node.kind != NodeKind::Dir {
                    return Ok(Next::Descend);
                }
                if !pattern.could_hold(path) {
                    summary.ruled_out += 1;
                    return Ok(Next::Skip);
                }
                if pattern
                    .memo_key(path, node)
                    .is_some_and(|k| no_match.contains(&k))
                {
                    summary.skipped += 1;
                    return Ok(Next::Skip);
                }
                summary.trees_read += 1;
                below.push(false);
                Ok(Next::Descend)
            }
            Visit::Leave { path, node } => {
                let matched = below.pop().unwrap_or(true);
                if !matched
                    && no_match.len() < MEMO_MAX
                    && let Some(k) = pattern.memo_key(path, node)
                {
                    no_match.insert(k);
                }
                Ok(Next::Descend)
            }
            Visit::Damaged { path, error } => {
                summary.damaged += 1;
                // Never remember a directory that was not fully read.
                below.iter_mut().for_each(|b| *b = true);
                report(Found::Damaged {
                    snapshot: id,
                    path,
                    error,
                })?;
                Ok(Next::Skip)
            }
        })?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_or_whole_paths() {
        let p = Pattern::new("*.conf", false).unwrap();
        assert!(p.matches(Path::new("etc/nginx/site.conf")));
        assert!(!p.matches(Path::new("etc/nginx.conf/x")));
        let p = Pattern::new("/etc/*.conf", false).unwrap();
        assert!(p.matches(Path::new("etc/a.conf")));
        assert!(
            !p.matches(Path::new("etc/nginx/a.conf")),
            "* stays in one directory"
        );
        let p = Pattern::new("/etc/**/*.conf", false).unwrap();
        assert!(p.matches(Path::new("etc/nginx/a.conf")));
        let p = Pattern::new("README*", true).unwrap();
        assert!(p.matches(Path::new("x/readme.md")));
    }

    #[test]
    fn whole_path_patterns_rule_out_directories_that_cannot_hold_a_match() {
        let p = Pattern::new("/etc/*.conf", false).unwrap();
        assert!(p.could_hold(Path::new("etc")));
        assert!(!p.could_hold(Path::new("var")));
        assert!(!p.could_hold(Path::new("etc/nginx")), "too deep");
        let p = Pattern::new("/etc/**/*.conf", false).unwrap();
        assert!(p.could_hold(Path::new("etc/nginx/sites")));
        assert!(!p.could_hold(Path::new("usr/share")));
        let p = Pattern::new("/e*/n?inx/*", false).unwrap();
        assert!(p.could_hold(Path::new("etc/nginx")));
        assert!(!p.could_hold(Path::new("etc/apache")));
        let p = Pattern::new("/ETC/*", true).unwrap();
        assert!(p.could_hold(Path::new("etc")));
        // Not cut at a `/` inside braces or a class: nothing ruled out.
        let p = Pattern::new("/{etc/a,var}/*", false).unwrap();
        assert!(p.could_hold(Path::new("etc/a")) && p.could_hold(Path::new("usr")));
        // Name patterns never rule out a directory.
        let p = Pattern::new("*.conf", false).unwrap();
        assert!(p.could_hold(Path::new("var/lib")));
    }

    #[test]
    fn bad_patterns_are_refused_naming_them() {
        assert!(matches!(
            Pattern::new("", false),
            Err(Error::InvalidInput(_))
        ));
        let e = Pattern::new("a[", false).err().unwrap();
        assert!(e.to_string().contains("\"a[\""), "{e}");
    }
}
