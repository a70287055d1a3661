//! Choosing snapshots in a repository several hosts share: by host, tag
//! and source path, with `latest` and id prefixes resolved within that
//! choice (so `restore latest --host web1` never restores another host's
//! one-off backup).

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::repo::Repository;

/// Which snapshots a command considers; the default matches every one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Only snapshots of this host.
    pub host: Option<String>,
    /// Only snapshots carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only snapshots with every one of these among their sources: a
    /// backed-up path, or a source name such as a database's.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether the filter lets every snapshot through.
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.tags.is_empty() && self.paths.is_empty()
    }

    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        let trim = |p: &str| -> String {
            let t = p.trim_end_matches('/');
            if t.is_empty() { "/".into() } else { t.into() }
        };
        self.host.as_ref().is_none_or(|h| *h == s.host)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.paths.iter().all(|p| {
                let p = trim(p);
                s.sources
                    .iter()
                    .any(|src| src.name == p || src.paths.iter().any(|x| trim(x) == p))
            })
    }

    /// The filter as command-line flags, for messages (` --host web1`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(h) = &self.host {
            out.push_str(&format!(" --host {h}"));
        }
        for t in &self.tags {
            out.push_str(&format!(" --tag {t}"));
        }
        for p in &self.paths {
            out.push_str(&format!(" --path {p}"));
        }
        out
    }
}

/// Picks the snapshot `spec` names among `all` (oldest first) that pass
/// `filter`: `latest` (the newest not dated in the future), a full id, or
/// a unique id prefix.
pub fn resolve(
    all: Vec<(SnapshotId, Snapshot)>,
    spec: &str,
    filter: &SnapshotFilter,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(SnapshotId, Snapshot)> {
    let mut all: Vec<_> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    let not_found = || Error::SnapshotNotFound(format!("{spec}{}", filter.describe()));
    if spec == "latest" {
        // Not one dated ahead of the clock (skew, or a header forged with
        // the writer key): it would shadow every real snapshot.
        let current = all.iter().rposition(|(_, s)| !s.is_in_the_future(now));
        return match current {
            Some(i) => Ok(all.swap_remove(i)),
            None => all.into_iter().last().ok_or_else(not_found),
        };
    }
    let spec_l = spec.to_ascii_lowercase();
    let mut hits: Vec<_> = all
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
        .collect();
    match hits.len() {
        1 => Ok(hits.pop().expect("one hit")),
        0 => Err(not_found()),
        n => Err(Error::InvalidInput(format!(
            "snapshot prefix {spec:?} is ambiguous ({n} matches)"
        ))),
    }
}

/// Finds the snapshot `spec` names among those of `repo` that pass
/// `filter`: `latest` among the headers that count (see
/// [`Repository::find_snapshot`]), an id or prefix among every readable one.
pub fn find(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot)> {
    if filter.is_empty() {
        return repo.find_snapshot(spec);
    }
    let candidates = if spec == "latest" {
        repo.verified_snapshots()?.usable()
    } else {
        repo.snapshots()?.0
    };
    resolve(candidates, spec, filter, chrono::Utc::now())
}
