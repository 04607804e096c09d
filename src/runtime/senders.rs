//! The node's outgoing exchanges, each on a thread of its own: [`Senders::spawn`] starts
//! a named, small-stack thread for one exchange with one member (an ELECT, a PROBE, an
//! I_AM_LEADER, a re-registration), which reports how it ended into the mailbox and
//! ends. No thread outlives its exchange, and an idle node has none.
//!
//! A counting semaphore (Mutex + Condvar) bounds how many run at once: at most
//! [`Senders::new`]'s `max_threads`. An exchange that finds every permit taken waits, as
//! a job, in a bounded list, and gets a thread of its own when a permit frees; when the
//! list is full too, [`Senders::spawn`] hands the job back at once. The main loop never
//! waits for a sender. Each exchange is bounded by the socket timeouts, so a silent
//! member holds one permit for at most about two of them while the others go on.
//! [`Senders::close_and_join`] drops what waits and joins every thread still running.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// One piece of work: an exchange with one member.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job was handed back instead of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every permit is taken and the waiting list holds its maximum.
    Full,
    /// No thread could be started and none is running to start it later.
    NoThread,
    /// The node is stopping.
    Closed,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Full => "too many sends in flight and waiting",
            Refused::NoThread => "no thread to send it from",
            Refused::Closed => "the node is stopping",
        })
    }
}

struct State {
    /// Threads running (permits taken).
    running: usize,
    /// Jobs waiting for a permit, with the name of the thread each will run on.
    waiting: VecDeque<(&'static str, Job)>,
    /// Threads that may still run; each is joined once it ended, or at close.
    threads: Vec<(u64, JoinHandle<()>)>,
    /// Ids of threads that ended and are not joined yet.
    ended: Vec<u64>,
    next_id: u64,
    closed: bool,
    /// The most threads that ran at once (for tests and figures).
    peak: usize,
}

struct Shared {
    state: Mutex<State>,
    /// A permit came free.
    freed: Condvar,
    max_threads: usize,
    max_waiting: usize,
    stack: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned state is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts a thread per exchange, at most `max_threads` at once. Dropping it is
/// [`Senders::close_and_join`].
pub struct Senders {
    shared: Arc<Shared>,
}

impl Senders {
    /// At most `max_threads` threads at once (each with a `stack`-byte stack) and at most
    /// `max_waiting` jobs waiting for one.
    pub fn new(max_threads: usize, max_waiting: usize, stack: usize) -> Senders {
        Senders {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    running: 0,
                    waiting: VecDeque::new(),
                    threads: Vec::new(),
                    ended: Vec::new(),
                    next_id: 0,
                    closed: false,
                    peak: 0,
                }),
                freed: Condvar::new(),
                max_threads: max_threads.max(1),
                max_waiting,
                stack,
            }),
        }
    }

    /// Runs `job` on a new thread named `name`, or, with every permit taken, queues it
    /// for the next one that frees. Never waits; hands the job back (with why) if it
    /// can't be taken.
    pub fn spawn(&self, name: &'static str, job: Job) -> Result<(), (Refused, Job)> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.closed {
            return Err((Refused::Closed, job));
        }
        join_ended(&mut state);
        if state.running >= shared.max_threads {
            if state.waiting.len() >= shared.max_waiting {
                return Err((Refused::Full, job));
            }
            state.waiting.push_back((name, job));
            return Ok(());
        }
        match start(shared, &mut state, name, job) {
            Ok(()) => Ok(()),
            Err(job) if state.running == 0 => Err((Refused::NoThread, job)),
            Err(job) => {
                // A running thread starts it when it ends.
                state.waiting.push_back((name, job));
                Ok(())
            }
        }
    }

    /// Threads running now.
    pub fn running(&self) -> usize {
        self.shared.lock().running
    }

    /// The most threads that ran at once.
    #[cfg(test)]
    pub fn peak(&self) -> usize {
        self.shared.lock().peak
    }

    /// Drops the jobs still waiting, refuses new ones, and joins every thread started
    /// (each ends within its exchange's socket timeouts).
    pub fn close_and_join(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.waiting.clear();
        while state.running > 0 {
            state = self.shared.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let threads = std::mem::take(&mut state.threads);
        state.ended.clear();
        drop(state);
        for (_, thread) in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.close_and_join();
    }
}

/// Starts `job` on a thread of its own, holding a permit (taken here) until it ends;
/// hands the job back if no thread could be started.
fn start(shared: &Arc<Shared>, state: &mut State, name: &'static str, job: Job) -> Result<(), Job> {
    // The job is passed through a slot so that it can be handed back if spawning fails.
    let slot = Arc::new(Mutex::new(Some(job)));
    let id = state.next_id;
    let (mine, taken) = (Arc::clone(shared), Arc::clone(&slot));
    let spawned = std::thread::Builder::new().name(name.to_string()).stack_size(shared.stack).spawn(move || {
        // The permit is given back however the job ends, a panic included.
        let _permit = Permit { shared: mine, id };
        let job = taken.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(job) = job {
            job();
        }
    });
    match spawned {
        Ok(thread) => {
            state.next_id += 1;
            state.running += 1;
            state.peak = state.peak.max(state.running);
            state.threads.push((id, thread));
            Ok(())
        }
        Err(_) => Err(slot.lock().unwrap_or_else(|e| e.into_inner()).take().expect("not run")),
    }
}

/// A running thread's permit: dropping it (when the exchange is done, or has panicked)
/// hands it to the next waiting job, on a thread of its own, or frees it.
struct Permit {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        finish(&self.shared, self.id);
    }
}

fn finish(shared: &Arc<Shared>, id: u64) {
    let mut state = shared.lock();
    state.ended.push(id);
    state.running -= 1;
    if let Some((name, job)) = state.waiting.pop_front() {
        if let Err(job) = start(shared, &mut state, name, job) {
            // No thread now: it waits for the next exchange to end, or is dropped with
            // the rest when none runs any more.
            if state.running > 0 {
                state.waiting.push_front((name, job));
            } else {
                state.waiting.clear();
            }
        }
    }
    drop(state);
    shared.freed.notify_all();
}

/// Joins the threads that ended (each is done with its exchange, or about to return).
fn join_ended(state: &mut State) {
    if state.ended.is_empty() {
        return;
    }
    let ended = std::mem::take(&mut state.ended);
    let (done, live): (Vec<_>, Vec<_>) =
        std::mem::take(&mut state.threads).into_iter().partition(|(id, _)| ended.contains(id));
    state.threads = live;
    for (_, thread) in done {
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::server::tests::{gone, threads_named};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

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

    fn spawn(senders: &Senders, name: &'static str, job: impl FnOnce() + Send + 'static) {
        senders.spawn(name, Box::new(job)).map_err(|(why, _)| why).unwrap();
    }

    #[test]
    fn each_exchange_runs_on_a_thread_of_its_own_that_ends_with_it() {
        let senders = Senders::new(64, 1000, 128 * 1024);
        // Members that accept and never answer: each ELECT holds its thread.
        let silent: Vec<TcpListener> = (0..40).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let (tx, rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate_rx));
        for l in &silent {
            let (port, tx, gate) = (l.local_addr().unwrap().port(), tx.clone(), Arc::clone(&gate));
            spawn(&senders, "t-elect-each", move || {
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                tx.send(()).unwrap();
                // Held, as a member that never answers would hold it, until the gate opens.
                let _ = gate.lock().unwrap().recv();
                drop(s);
            });
        }
        for _ in 0..40 {
            rx.recv_timeout(Duration::from_secs(20)).unwrap();
        }
        assert_eq!(threads_named("t-elect-each"), 40, "40 ELECTs, 40 threads");
        assert_eq!(senders.running(), 40);
        drop(gate_tx);
        senders.close_and_join();
        assert!(gone("t-elect-each"), "threads outlived close_and_join");
        assert_eq!(senders.peak(), 40);
    }

    #[test]
    fn a_fan_out_past_the_cap_waits_for_permits_and_reaches_every_member() {
        let senders = Senders::new(4, 1000, 128 * 1024);
        let count = Arc::new(AtomicUsize::new(0));
        let ports: Vec<u16> = (0..12).map(|_| answering(Arc::clone(&count))).collect();
        let (tx, rx) = mpsc::channel();
        for i in 0..60 {
            let (port, tx) = (ports[i % ports.len()], tx.clone());
            spawn(&senders, "t-fanout", move || {
                let _ = tx.send(exchange(port, TIMEOUT));
            });
        }
        let results: Vec<bool> = (0..60).map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap()).collect();
        assert!(results.iter().all(|ok| *ok), "{results:?}");
        assert_eq!(count.load(Ordering::SeqCst), 60);
        assert!(senders.peak() <= 4, "ran {} threads at once", senders.peak());
        senders.close_and_join();
        assert!(gone("t-fanout"), "threads outlived close_and_join");
    }

    #[test]
    fn a_silent_member_holds_one_thread_not_the_fan_out() {
        let senders = Senders::new(4, 1000, 128 * 1024);
        // Listens but never accepts (a stopped process): the exchange times out.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let port = answering(Arc::clone(&count));
        let (tx, rx) = mpsc::channel();
        let send = |to: u16, timeout: Duration, tx: mpsc::Sender<(u16, bool)>| {
            spawn(&senders, "t-silent", move || {
                let _ = tx.send((to, exchange(to, timeout)));
            })
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
    fn a_full_waiting_list_hands_the_job_back_and_closing_refuses_and_joins() {
        let senders = Senders::new(1, 2, 128 * 1024);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (ran_tx, ran_rx) = mpsc::channel();
        // The one permit is held until the gate opens.
        let running = ran_tx.clone();
        spawn(&senders, "t-full", move || {
            running.send(0).unwrap();
            let _ = gate_rx.recv();
        });
        assert_eq!(ran_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
        for i in 1..=2 {
            let tx = ran_tx.clone();
            spawn(&senders, "t-full", move || tx.send(i).unwrap());
        }
        let refused = senders.spawn("t-full", Box::new(|| {}));
        assert_eq!(refused.err().map(|(why, _)| why), Some(Refused::Full));
        drop(gate_tx);
        let rest: Vec<i32> = (0..2).map(|_| ran_rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(rest, vec![1, 2], "waiting jobs run in order");
        assert_eq!(senders.peak(), 1);
        senders.close_and_join();
        assert!(gone("t-full"), "threads outlived close_and_join");
        assert_eq!(senders.running(), 0);
        let refused = senders.spawn("t-full", Box::new(|| {}));
        assert_eq!(refused.err().map(|(why, _)| why), Some(Refused::Closed));
    }
}
