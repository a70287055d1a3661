//! Which entries of a snapshot a restore writes: `--include` (a matching
//! directory brings its whole subtree) minus `--exclude` (a matching
//! directory takes its whole subtree away). Patterns are relative to the
//! snapshot root; an exclude without `/` matches a name anywhere (as
//! `backup --exclude` does), one with `/` the whole relative path.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// The include and exclude patterns of one restore.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Option<GlobSet>,
    exclude_names: Option<GlobSet>,
    exclude_paths: Option<GlobSet>,
}

fn build(what: &str, patterns: &[&str]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| Error::InvalidInput(format!("{what} pattern {p:?}: {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::InvalidInput(format!("{what} patterns: {e}")))
}

impl Selection {
    /// Compiles the patterns; a malformed one is invalid input naming it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selection> {
        let trim = |p: &String| p.trim_start_matches('/').trim_end_matches('/').to_owned();
        let include: Vec<String> = include.iter().map(trim).collect();
        let mut names = Vec::new();
        let mut paths = Vec::new();
        for p in exclude {
            if p.trim().is_empty() {
                return Err(Error::InvalidInput("an empty --exclude pattern".into()));
            }
            let t = trim(p);
            if p.trim_end_matches('/').contains('/') {
                paths.push(t);
            } else {
                names.push(t);
            }
        }
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        Ok(Selection {
            include: build("include", &refs(&include))?,
            exclude_names: build("exclude", &refs(&names))?,
            exclude_paths: build("exclude", &refs(&paths))?,
        })
    }

    /// Whether `rel` (relative to the snapshot root) is wanted by the
    /// includes: no include patterns, or it or an ancestor matches one.
    pub fn included(&self, rel: &Path) -> bool {
        match &self.include {
            None => true,
            Some(s) => rel
                .ancestors()
                .any(|a| !a.as_os_str().is_empty() && s.is_match(a)),
        }
    }

    /// Whether `rel` itself is excluded (its subtree goes with it: the
    /// walk skips an excluded directory).
    pub fn excluded(&self, rel: &Path) -> bool {
        self.exclude_paths.as_ref().is_some_and(|s| s.is_match(rel))
            || self
                .exclude_names
                .as_ref()
                .zip(rel.file_name())
                .is_some_and(|(s, name)| s.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_bring_subtrees_and_excludes_take_names_or_paths() {
        let s =
            Selection::new(&["etc".into()], &["*.tmp".into(), "etc/ssl/private".into()]).unwrap();
        assert!(s.included(Path::new("etc/app/a.conf")));
        assert!(!s.included(Path::new("var/x")));
        assert!(s.excluded(Path::new("etc/app/cache.tmp")));
        assert!(s.excluded(Path::new("etc/ssl/private")));
        assert!(!s.excluded(Path::new("etc/ssl/certs")));
        assert!(!s.excluded(Path::new("etc/app/a.conf")));
        assert!(Selection::new(&[], &["[".into()]).is_err());
        assert!(Selection::new(&[], &[" ".into()]).is_err());
    }
}
