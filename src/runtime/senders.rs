//! The node's senders: a bounded pool of worker threads with a bounded queue, so a
//! fan-out to a group of any size costs at most [`Senders::new`]'s `workers` threads,
//! however many members it reaches.
//!
//! Workers are started as work arrives (an idle node has none) and end after
//! [`IDLE_EXIT`] without work. Each job is one exchange with one member (connect, send,
//! maybe read GOT_IT), bounded by the socket timeout, so a silent member holds one
//! worker for at most about two timeouts while the others go on. When the queue is full,
//! [`Senders::submit`] hands the job back at once: the main loop never waits for a
//! sender.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a worker waits for work before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(5);

/// One piece of work: an exchange with one member.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job was handed back instead of queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its maximum already.
    Full,
    /// No worker could be started and none is running.
    NoThread,
    /// The pool is shutting down.
    Closed,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Full => "the send queue is full",
            Refused::NoThread => "no thread to send it from",
            Refused::Closed => "the node is stopping",
        })
    }
}

struct State {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
    closed: bool,
    /// The most workers that ran at once (for tests and figures).
    peak: usize,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    name: String,
    max_workers: usize,
    max_queue: usize,
    stack: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned state is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded pool of sender threads. Dropping it lets running jobs finish, drops the
/// queued ones, and lets the workers end (they are not joined: each ends within its
/// job's socket timeouts, and a stopping node need not wait for them).
pub struct Senders {
    shared: Arc<Shared>,
}

impl Senders {
    /// A pool of at most `workers` threads (each with a `stack`-byte stack) and at most
    /// `queue` jobs waiting.
    pub fn new(name: &str, workers: usize, queue: usize, stack: usize) -> Senders {
        Senders {
            shared: Arc::new(Shared {
                state: Mutex::new(State { queue: VecDeque::new(), workers: 0, idle: 0, closed: false, peak: 0 }),
                ready: Condvar::new(),
                name: name.to_string(),
                max_workers: workers.max(1),
                max_queue: queue,
                stack,
            }),
        }
    }

    /// Queues `job` for the next free worker, starting one if all are busy and the pool
    /// is below its size. Never waits; hands the job back (with why) if it can't be taken.
    pub fn submit(&self, job: Job) -> Result<(), (Refused, Job)> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.closed {
            return Err((Refused::Closed, job));
        }
        if state.queue.len() >= shared.max_queue {
            return Err((Refused::Full, job));
        }
        state.queue.push_back(job);
        if state.idle >= state.queue.len() || state.workers >= shared.max_workers {
            shared.ready.notify_one();
            return Ok(());
        }
        state.workers += 1;
        state.peak = state.peak.max(state.workers);
        drop(state);
        let worker = Arc::clone(shared);
        let spawned =
            std::thread::Builder::new().name(shared.name.clone()).stack_size(shared.stack).spawn(move || work(&worker));
        if spawned.is_err() {
            let mut state = shared.lock();
            state.workers -= 1;
            if state.workers == 0 {
                // Nobody will ever take it: hand the newest job (this one) back. A worker
                // that ended meanwhile may have run it already: then there is nothing to hand back.
                if let Some(job) = state.queue.pop_back() {
                    return Err((Refused::NoThread, job));
                }
            }
        }
        Ok(())
    }

    /// Worker threads running now.
    pub fn workers(&self) -> usize {
        self.shared.lock().workers
    }

    /// The most worker threads that ran at once.
    #[cfg(test)]
    pub fn peak(&self) -> usize {
        self.shared.lock().peak
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.queue.clear();
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            drop(state);
            job();
            state = shared.lock();
            continue;
        }
        if state.closed {
            break;
        }
        state.idle += 1;
        let (next, waited) = shared.ready.wait_timeout(state, IDLE_EXIT).unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if waited.timed_out() && state.queue.is_empty() {
            break;
        }
    }
    state.workers -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// Only a failing exchange waits this long: generous for a loaded machine.
    const TIMEOUT: Duration = Duration::from_secs(5);
    /// Long enough that 30 loopback exchanges finish first on any loaded machine.
    const SILENT_TIMEOUT: Duration = Duration::from_secs(10);

    /// One exchange as the runtime does it: connect, send a byte, wait for one back.
    fn exchange(port: u16, timeout: Duration) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout) else {
            return false;
        };
        s.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 1];
        s.write_all(&[1]).is_ok() && s.read_exact(&mut b).is_ok()
    }

    /// A member that answers every connection: counts each exchange it received. The count
    /// goes up before the answer is written, so a sender that got its answer is counted.
    fn answering(count: Arc<AtomicUsize>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = s.write_all(&b);
                }
            }
        });
        port
    }

    #[test]
    fn a_fan_out_to_more_members_than_workers_reaches_all_on_a_bounded_pool() {
        let pool = Senders::new("t", 4, 1000, 128 * 1024);
        let count = Arc::new(AtomicUsize::new(0));
        let ports: Vec<u16> = (0..12).map(|_| answering(Arc::clone(&count))).collect();
        let (tx, rx) = mpsc::channel();
        for i in 0..60 {
            let (port, tx) = (ports[i % ports.len()], tx.clone());
            pool.submit(Box::new(move || tx.send(exchange(port, TIMEOUT)).unwrap())).map_err(|(why, _)| why).unwrap();
        }
        let results: Vec<bool> = (0..60).map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap()).collect();
        assert!(results.iter().all(|ok| *ok), "{results:?}");
        assert_eq!(count.load(Ordering::SeqCst), 60);
        assert!(pool.peak() <= 4, "ran {} workers", pool.peak());
    }

    #[test]
    fn a_silent_member_holds_one_worker_not_the_fan_out() {
        let pool = Senders::new("t", 4, 1000, 128 * 1024);
        // Listens but never accepts (a stopped process): the exchange times out.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let port = answering(Arc::clone(&count));
        let (tx, rx) = mpsc::channel();
        let send = |to: u16, timeout: Duration, tx: mpsc::Sender<(u16, bool)>| {
            pool.submit(Box::new(move || tx.send((to, exchange(to, timeout))).unwrap()))
                .map_err(|(why, _)| why)
                .unwrap()
        };
        send(silent_port, SILENT_TIMEOUT, tx.clone());
        for _ in 0..30 {
            send(port, TIMEOUT, tx.clone());
        }
        // All 30 answering exchanges come back while the silent one still waits.
        for answered in 0..30 {
            let (to, ok) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_ne!(to, silent_port, "the silent member held up the others: {answered} of 30 answered first");
            assert!(ok);
        }
        assert_eq!(count.load(Ordering::SeqCst), 30);
        drop(silent);
    }

    #[test]
    fn a_full_queue_hands_the_job_back_without_waiting() {
        let pool = Senders::new("t", 1, 2, 128 * 1024);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (ran_tx, ran_rx) = mpsc::channel();
        // The one worker is held until the gate opens.
        let running = ran_tx.clone();
        pool.submit(Box::new(move || {
            running.send(0).unwrap();
            let _ = gate_rx.recv();
        }))
        .map_err(|(why, _)| why)
        .unwrap();
        assert_eq!(ran_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
        for i in 1..=2 {
            let tx = ran_tx.clone();
            pool.submit(Box::new(move || tx.send(i).unwrap())).map_err(|(why, _)| why).unwrap();
        }
        let refused = pool.submit(Box::new(|| {}));
        assert_eq!(refused.err().map(|(why, _)| why), Some(Refused::Full));
        drop(gate_tx);
        let rest: Vec<i32> = (0..2).map(|_| ran_rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(rest, vec![1, 2]);
        assert_eq!(pool.workers(), 1);
    }
}
