//! The node's listening side: one thread per connection. Each connection carries one
//! message; ELECT and PROBE are answered GOT_IT from the connection's own thread, at
//! once, so a reply never waits for the main loop. Every message is then handed on.

use crate::wire::{self, decode, read_pickle, Message, Reply, Style};
use log::{debug, warn};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a peer may take to send its one message. Python peers send it at once;
/// this only limits what a silent or trickling connection can cost.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A message that arrived, and from where.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub from: SocketAddr,
    pub message: Message,
}

/// A running listener; [`ListenerHandle::shutdown`] closes its socket.
pub struct ListenerHandle {
    stop: Arc<AtomicBool>,
    local: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl ListenerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting and closes the listening socket (peers then get refused
    /// connections). Connections already accepted finish on their own threads.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: wake it with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake_addr(self.local), Duration::from_secs(1));
        let _ = thread.join();
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Where to connect to reach a listener bound to `local` (a wildcard means loopback).
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let mut a = local;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
    }
    a
}

/// Accepts connections on `listener` until shut down, calling `deliver` with each
/// protocol message from its connection's thread. While `ignoring` is set, messages are
/// read and dropped without a reply (a feigned failure that keeps the port open).
pub fn spawn(
    listener: TcpListener,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
) -> std::io::Result<ListenerHandle> {
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new().name("listener".into()).spawn(move || loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return; // drops the listener: the port closes
        }
        match accepted {
            Ok((stream, from)) => {
                let deliver = Arc::clone(&deliver);
                let ignoring = Arc::clone(&ignoring);
                let spawned = std::thread::Builder::new()
                    .name(format!("conn-{from}"))
                    .spawn(move || serve_connection(stream, from, &*deliver, &ignoring));
                if let Err(e) = spawned {
                    warn!("no thread for the connection from {from}: {e}");
                }
            }
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    })?;
    Ok(ListenerHandle { stop, local, thread: Some(thread) })
}

fn serve_connection(mut stream: TcpStream, from: SocketAddr, deliver: &dyn Fn(Incoming), ignoring: &AtomicBool) {
    if let Err(e) = stream.set_read_timeout(Some(READ_TIMEOUT)) {
        debug!("connection from {from}: {e}");
        return;
    }
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let bytes = match read_pickle(&mut stream, wire::MAX_PICKLE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!("connection from {from}: {e}");
            return;
        }
    };
    let message = match decode(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|v| Message::from_value(&v).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            warn!("connection from {from}: not a protocol message: {e}");
            return;
        }
    };
    if ignoring.load(Ordering::SeqCst) {
        debug!("connection from {from}: {} dropped without a reply (feigning failure)", message.name());
        return;
    }
    debug!("connection from {from}: {} ({} bytes)", message.name(), bytes.len());
    if matches!(message, Message::Elect { .. } | Message::Probe) {
        if let Err(e) = stream.write_all(&wire::encode(&Reply::got_it(), Style::Compact)) {
            debug!("GOT_IT to {from} failed: {e}");
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    deliver(Incoming { from, message });
}
