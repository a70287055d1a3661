//! Cooperative cancellation: the CLI turns SIGINT/SIGTERM into a request,
//! the library checks it and cleans up (scratch clusters, sandboxes) before
//! returning.
//!
//! The library never installs signal handlers or exits the process. A
//! [`Cancel`] is shared between the two: the CLI calls [`Cancel::cancel`]
//! from its handler, and the library calls [`Cancel::check`] where stopping
//! is safe, returning [`Error::Cancelled`]. Work that has something to
//! clean up holds a [`Listening`] guard
//! from [`Cancel::listen`]: a signal that arrives while nobody listens has
//! nothing to clean up, and the CLI may simply exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct State {
    cancelled: AtomicBool,
    listeners: AtomicUsize,
}

/// A cancellation token, cheap to clone; every clone sees the same request.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<State>);

impl Cancel {
    /// A token that nothing has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop. Returns whether some work was listening
    /// (and so will stop and clean up by itself).
    pub fn cancel(&self) -> bool {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.listeners.load(Ordering::SeqCst) > 0
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// [`Error::Cancelled`] for `operation` once cancellation was asked for.
    pub fn check(&self, operation: &'static str) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled { operation })
        } else {
            Ok(())
        }
    }

    /// Marks the caller as watching this token until the guard is dropped:
    /// it promises to notice a cancellation promptly and clean up.
    pub fn listen(&self) -> Listening {
        self.0.listeners.fetch_add(1, Ordering::SeqCst);
        Listening(self.clone())
    }
}

/// Returned by [`Cancel::listen`]; stops listening when dropped.
#[derive(Debug)]
pub struct Listening(Cancel);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.0.listeners.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_request_and_listeners_are_counted() {
        let c = Cancel::new();
        let other = c.clone();
        assert!(c.check("drill").is_ok());
        {
            let _l = other.listen();
            assert!(c.cancel(), "a listener was there");
        }
        assert!(other.is_cancelled());
        assert!(matches!(
            other.check("drill"),
            Err(Error::Cancelled { operation: "drill" })
        ));
        assert!(!c.cancel(), "nobody listens any more");
    }
}
