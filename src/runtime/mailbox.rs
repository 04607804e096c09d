//! The monitor queue between the threads and the main loop: any thread pushes, the main
//! loop waits (until an item or a deadline) and takes. A Mutex guards the queue and a
//! Condvar wakes the waiter, so no push is lost between checking and waiting.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

/// What waiting on the mailbox produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    Item(T),
    /// The deadline passed with nothing queued.
    TimedOut,
    /// The mailbox was closed and is empty: the loop should end.
    Closed,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox { state: Mutex::new(State { queue: VecDeque::new(), closed: false }), ready: Condvar::new() }
    }
}

impl<T> Mailbox<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Pushing and popping can't panic halfway, so a poisoned queue is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`; returns false (dropping it) once the mailbox is closed.
    pub fn push(&self, item: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.queue.push_back(item);
        self.ready.notify_one();
        true
    }

    /// Takes the oldest item, waiting for one until `deadline` (forever with `None`).
    pub fn take(&self, deadline: Option<Instant>) -> Taken<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.queue.pop_front() {
                return Taken::Item(item);
            }
            if state.closed {
                return Taken::Closed;
            }
            match deadline {
                None => state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Taken::TimedOut;
                    }
                    state = self.ready.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }

    /// Refuses further pushes; items already queued can still be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn items_from_many_threads_all_arrive_in_per_thread_order() {
        let mb = Arc::new(Mailbox::new());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let mb = Arc::clone(&mb);
                std::thread::spawn(move || (0..1000).for_each(|i| assert!(mb.push((t, i)))))
            })
            .collect();
        let mut last = [-1i64; 4];
        for _ in 0..4000 {
            match mb.take(Some(Instant::now() + Duration::from_secs(10))) {
                Taken::Item((t, i)) => {
                    assert_eq!(last[t], i - 1);
                    last[t] = i;
                }
                other => panic!("{other:?}"),
            }
        }
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(last, [999; 4]);
    }

    #[test]
    fn deadlines_and_closing() {
        let mb: Mailbox<u8> = Mailbox::new();
        assert_eq!(mb.take(Some(Instant::now())), Taken::TimedOut);
        mb.push(1);
        mb.close();
        assert!(!mb.push(2));
        assert_eq!(mb.take(None), Taken::Item(1));
        assert_eq!(mb.take(None), Taken::Closed);
    }
}
