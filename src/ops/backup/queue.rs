//! The channels between a backup's stages: bounded queues whose waiting
//! threads sleep (a mutex and two condition variables) instead of spinning.
//!
//! A spinning channel (one that yields the processor in a loop before it
//! sleeps) burns the time a busy stage needs when there are more stage
//! threads than cores: a backup on two cores runs eight or more. Here a
//! sender finding the queue full, or a receiver finding it empty, sleeps
//! until the other side moves.
//!
//! Like the channels they replace: many senders and receivers; a send fails
//! once every receiver is gone, a receive once the queue is empty and every
//! sender gone; capacity 0 is a rendezvous (a send returns once its value
//! was taken).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The receiving side is gone: the value was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendError;

/// The queue is empty and every sender is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receivers: usize,
    /// Values sent and taken so far (a rendezvous sender waits for its own).
    sent: u64,
    taken: u64,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Receivers wait here for a value (or the last sender leaving).
    filled: Condvar,
    /// Senders wait here for room, or for their value to be taken.
    drained: Condvar,
    /// Most values queued (0: a rendezvous, which holds one while it waits).
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking stage holds no invariant of the queue half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'g>(&self, cv: &Condvar, g: MutexGuard<'g, State<T>>) -> MutexGuard<'g, State<T>> {
        cv.wait(g).unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side of a queue.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side of a queue.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `capacity` values (0: a rendezvous).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receivers: 1,
            sent: 0,
            taken: 0,
        }),
        filled: Condvar::new(),
        drained: Condvar::new(),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// A queue without a bound (for small values whose number is bounded
/// elsewhere).
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    bounded(usize::MAX)
}

impl<T> Sender<T> {
    /// Queues `value`, sleeping while the queue is full (for a rendezvous:
    /// until a receiver took it). Fails when every receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        while st.receivers > 0 && st.items.len() >= sh.capacity.max(1) {
            st = sh.wait(&sh.drained, st);
        }
        if st.receivers == 0 {
            return Err(SendError);
        }
        st.items.push_back(value);
        st.sent += 1;
        let ticket = st.sent;
        sh.filled.notify_one();
        if sh.capacity == 0 {
            while st.taken < ticket && st.receivers > 0 {
                st = sh.wait(&sh.drained, st);
            }
            if st.taken < ticket {
                return Err(SendError);
            }
        }
        Ok(())
    }

    /// Queues `value` if there is room now; gives it back otherwise (or
    /// when every receiver is gone).
    pub fn try_send(&self, value: T) -> Result<(), T> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        if st.receivers == 0 || sh.capacity == 0 || st.items.len() >= sh.capacity {
            return Err(value);
        }
        st.items.push_back(value);
        st.sent += 1;
        sh.filled.notify_one();
        Ok(())
    }
}

impl<T> Receiver<T> {
    /// The next value, sleeping while the queue is empty; fails once it is
    /// empty and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        loop {
            if let Some(v) = st.items.pop_front() {
                st.taken += 1;
                if sh.capacity == 0 {
                    // Wakes the sender whose value this was, whichever
                    // sender waits for room.
                    sh.drained.notify_all();
                } else {
                    sh.drained.notify_one();
                }
                return Ok(v);
            }
            if st.senders == 0 {
                return Err(RecvError);
            }
            st = sh.wait(&sh.filled, st);
        }
    }

    /// [`Receiver::recv`], waiting at most `timeout`: `Ok(None)` if no
    /// value came in that time (so the caller can look whether to stop).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Result<Option<T>, RecvError> {
        let sh = &*self.shared;
        let deadline = std::time::Instant::now() + timeout;
        let mut st = sh.lock();
        loop {
            if let Some(v) = st.items.pop_front() {
                st.taken += 1;
                sh.drained(&st);
                return Ok(Some(v));
            }
            if st.senders == 0 {
                return Err(RecvError);
            }
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return Ok(None);
            };
            st.waiting_filled += 1;
            let (g, _) = sh
                .filled
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner());
            st = g;
            st.waiting_filled -= 1;
        }
    }

    /// The next value if one is queued now.
    pub fn try_recv(&self) -> Option<T> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        let v = st.items.pop_front()?;
        st.taken += 1;
        if sh.capacity == 0 {
            sh.drained.notify_all();
        } else {
            sh.drained.notify_one();
        }
        Some(v)
    }

    /// The values queued now, without waiting.
    #[cfg(test)]
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv())
    }

    /// Every value until the queue is empty and every sender gone.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.lock().receivers += 1;
        Receiver {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.senders -= 1;
        if st.senders == 0 {
            self.shared.filled.notify_all();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.receivers -= 1;
        if st.receivers == 0 {
            // Nothing will take what is queued: free it now, and wake the
            // senders so they fail.
            let items = std::mem::take(&mut st.items);
            self.shared.drained.notify_all();
            drop(st);
            drop(items);
        }
    }
}

/// Every value until the queue is empty and every sender gone.
pub struct IntoIter<T>(Receiver<T>);

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.0.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_receive_says_nothing_came_a_value_or_that_senders_are_gone() {
        let (tx, rx) = bounded::<u32>(1);
        let short = std::time::Duration::from_millis(5);
        assert_eq!(rx.recv_timeout(short), Ok(None));
        let sender = std::thread::spawn(move || tx.send(7).unwrap());
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(60)),
            Ok(Some(7))
        );
        sender.join().unwrap();
        assert_eq!(rx.recv_timeout(short), Err(RecvError));
    }

    #[test]
    fn values_arrive_in_order_and_the_queue_ends_with_its_last_sender() {
        let (tx, rx) = bounded::<u32>(2);
        let rx2 = rx.clone();
        let got = std::thread::scope(|s| {
            let tx2 = tx.clone();
            s.spawn(move || (0..500).for_each(|i| tx2.send(i).unwrap()));
            s.spawn(move || (500..1000).for_each(|i| tx.send(i).unwrap()));
            let other = s.spawn(move || rx2.iter().collect::<Vec<_>>());
            let mut mine: Vec<u32> = rx.iter().collect();
            let theirs = other.join().unwrap();
            // Each sender's values keep their order whoever receives them.
            for half in [0..500, 500..1000] {
                let order = |v: &Vec<u32>| -> Vec<u32> {
                    v.iter().copied().filter(|x| half.contains(x)).collect()
                };
                let (a, b) = (order(&mine), order(&theirs));
                assert!(a.windows(2).all(|w| w[0] < w[1]));
                assert!(b.windows(2).all(|w| w[0] < w[1]));
            }
            mine.extend(theirs);
            mine
        });
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_holds_its_sender_and_a_gone_receiver_fails_it() {
        let (tx, rx) = bounded::<u32>(1);
        tx.send(1).unwrap();
        assert_eq!(tx.try_send(2), Err(2));
        std::thread::scope(|s| {
            let blocked = s.spawn(|| tx.send(3));
            // The sender can only finish once a value is taken or the
            // receiver goes; take one, then go.
            assert_eq!(rx.recv(), Ok(1));
            assert_eq!(blocked.join().unwrap(), Ok(()));
        });
        drop(rx);
        assert_eq!(tx.send(4), Err(SendError));
        assert_eq!(tx.try_send(5), Err(5));
    }

    #[test]
    fn a_rendezvous_send_returns_only_once_its_value_was_taken() {
        let (tx, rx) = bounded::<u32>(0);
        assert_eq!(tx.try_send(1), Err(1));
        let taken = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let sender = s.spawn(|| {
                tx.send(7).unwrap();
                // Returns after the receiver took the value.
                assert!(taken.load(std::sync::atomic::Ordering::SeqCst));
            });
            taken.store(true, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(rx.recv(), Ok(7));
            sender.join().unwrap();
        });
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError));
        // A rendezvous whose receiver leaves fails the waiting sender.
        let (tx, rx) = bounded::<u32>(0);
        std::thread::scope(|s| {
            let sender = s.spawn(|| tx.send(1));
            while rx.shared.lock().items.is_empty() {
                std::thread::yield_now();
            }
            drop(rx);
            assert_eq!(sender.join().unwrap(), Err(SendError));
        });
    }
}
