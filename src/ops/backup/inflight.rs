//! The bytes of small files read but not yet taken into a bundle, bounded.
//!
//! A reader hands a small file's bytes back to the assembler, which bundles
//! them in walk order ([`super::assemble`]); files read ahead of the
//! assembler wait with their bytes. The walker reserves a small file's size
//! before it hands the file to a reader, and the assembler gives it back once
//! it took the file: in walk order both, so the walker waits only for the
//! assembler, which needs nothing the walker still holds (it sends its
//! events before it waits).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Most bytes of small files held between the readers and the assembler:
/// 256 files of 16 KiB, more than the queues hold of typical small files
/// (about 1,200 files of 2.4 KiB, 3 MiB), so it binds only on trees of
/// files near the bundle size. Measured on 20,000 files of 15-16 KiB: peak
/// RSS 65 MiB unbounded, 57 MiB at 8 MiB, 52 MiB at 4 MiB, as fast.
pub const IN_FLIGHT_MAX: u64 = 4 << 20;

/// A budget of bytes in flight ([`IN_FLIGHT_MAX`]).
///
/// The walker reserves and the assembler gives back once per small file:
/// both are a compare-and-swap on a counter. The lock is taken only around
/// a wait: by a walker that found the budget full, and by a release or a
/// close that finds a walker waiting (or closes). A lock and a wake-up call
/// per file made the assembler call `futex` 200,001 times to wake nobody,
/// and the walker wait 55,477 times for the lock, in a backup of 200,000
/// files.
#[derive(Default)]
pub struct InFlight {
    held: AtomicU64,
    /// The assembler is gone: nothing waits any more.
    closed: AtomicBool,
    /// Threads waiting in [`InFlight::reserve`].
    waiting: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
}

impl InFlight {
    /// Reserves `n` bytes if that fits now (or nothing is held, or the
    /// budget is closed).
    pub fn try_reserve(&self, n: u64) -> bool {
        let fits = |held: u64| {
            (self.closed.load(SeqCst) || held == 0 || held.saturating_add(n) <= IN_FLIGHT_MAX)
                .then(|| held.saturating_add(n))
        };
        self.held.fetch_update(SeqCst, SeqCst, fits).is_ok()
    }

    /// Reserves `n` bytes, waiting until they fit (or nothing is held, or
    /// the budget is closed).
    pub fn reserve(&self, n: u64) {
        if self.try_reserve(n) {
            return;
        }
        let mut guard = self.lock.lock().expect("in-flight lock");
        // Counted before the budget is looked at again (all SeqCst): a
        // release or close before this count is seen by the look below; one
        // after it sees the waiter and wakes it under the lock, so not
        // before the wait has begun. The timed wait is only a safety margin.
        self.waiting.fetch_add(1, SeqCst);
        while !self.try_reserve(n) {
            guard = self
                .freed
                .wait_timeout(guard, Duration::from_millis(100))
                .expect("in-flight lock")
                .0;
        }
        self.waiting.fetch_sub(1, SeqCst);
    }

    /// Gives back `n` bytes reserved earlier.
    pub fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        let _ = self
            .held
            .fetch_update(SeqCst, SeqCst, |held| Some(held.saturating_sub(n)));
        if self.waiting.load(SeqCst) > 0 {
            self.wake();
        }
    }

    /// The taker is gone: reservations no longer wait.
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let _guard = self.lock.lock().expect("in-flight lock");
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_waits_until_bytes_are_given_back_or_the_budget_closes() {
        let budget = InFlight::default();
        assert!(budget.try_reserve(IN_FLIGHT_MAX - 10));
        assert!(!budget.try_reserve(11), "past the bound");
        assert!(budget.try_reserve(10));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| budget.reserve(100));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "it waits while the bytes are held");
            budget.release(IN_FLIGHT_MAX);
            waiter.join().unwrap();
        });
        // One reservation alone always fits, whatever its size.
        budget.release(100);
        assert!(budget.try_reserve(IN_FLIGHT_MAX * 2));
        budget.close();
        budget.reserve(1);
    }

    #[test]
    fn closing_the_budget_lets_a_waiting_reservation_through() {
        let budget = InFlight::default();
        assert!(budget.try_reserve(IN_FLIGHT_MAX));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| budget.reserve(1));
            // Until the waiter counts itself, there is nothing to close for.
            while budget.waiting.load(SeqCst) == 0 {
                std::thread::yield_now();
            }
            assert!(!waiter.is_finished(), "the budget is full");
            budget.close();
            waiter.join().unwrap();
        });
        assert_eq!(budget.held.load(SeqCst), IN_FLIGHT_MAX + 1);
    }

    #[test]
    fn reservations_and_releases_from_many_threads_balance() {
        let budget = InFlight::default();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let budget = &budget;
                s.spawn(move || {
                    for i in 0..2_000u64 {
                        let n = 1 + (i * 7919 + t) % (16 << 10);
                        budget.reserve(n);
                        let held = budget.held.load(SeqCst);
                        assert!(held <= IN_FLIGHT_MAX + (16 << 10), "held {held}");
                        budget.release(n);
                    }
                });
            }
        });
        assert_eq!(budget.held.load(SeqCst), 0);
        assert_eq!(budget.waiting.load(SeqCst), 0);
    }
}
