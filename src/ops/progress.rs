//! Counters a long operation advances while it runs (restore, drills,
//! check, copy, prune), for the caller to draw: the library never prints.
//! Totals are what the operation expects (a snapshot header's counts, the
//! packs it will read), so a caller can estimate the time left.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Items (files, packs) and bytes done out of the expected totals.
#[derive(Debug, Default)]
pub struct Progress {
    items_done: AtomicU64,
    items_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    unit: Mutex<&'static str>,
}

/// A reading of a [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Items done.
    pub items_done: u64,
    /// Items expected.
    pub items_total: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes expected.
    pub bytes_total: u64,
    /// What the items are (`files`, `packs`).
    pub unit: &'static str,
}

impl Progress {
    /// Starts a new phase: what its items are (`files`), the expected
    /// totals, nothing done yet.
    pub fn start(&self, unit: &'static str, items: u64, bytes: u64) {
        *self.unit.lock().expect("progress lock") = unit;
        self.items_done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
        self.items_total.store(items, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    /// Counts `items` and `bytes` more as done.
    pub fn advance(&self, items: u64, bytes: u64) {
        self.items_done.fetch_add(items, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn read(&self) -> Reading {
        Reading {
            items_done: self.items_done.load(Ordering::Relaxed),
            items_total: self.items_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            unit: *self.unit.lock().expect("progress lock"),
        }
    }
}

/// Advances `p`, when there is one.
pub fn advance(p: &Option<std::sync::Arc<Progress>>, items: u64, bytes: u64) {
    if let Some(p) = p {
        p.advance(items, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_phase_resets_what_is_done() {
        let p = Progress::default();
        p.start("files", 3, 300);
        p.advance(1, 100);
        p.advance(1, 50);
        assert_eq!(
            p.read(),
            Reading {
                items_done: 2,
                items_total: 3,
                bytes_done: 150,
                bytes_total: 300,
                unit: "files"
            }
        );
        p.start("packs", 1, 10);
        assert_eq!((p.read().items_done, p.read().bytes_total), (0, 10));
    }
}
