//! Connections: resolve a member's address, connect with a deadline, send one message
//! in one write, and read one pickled reply; and the one [`server`] (an accept thread
//! and a thread per connection) on which the node's listener (`runtime::listener`) and
//! the coordinator (`gcd::server`) take their connections. Knows sockets and framing,
//! not the election rules.

pub mod server;

use crate::membership::Addr;
use crate::wire::{read_pickle_into, FrameError, MAX_PICKLE_BYTES};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Resolves `addr` (peers list themselves by name as well as by IP), IPv4 first, as
/// the Python peers' `socket.AF_INET` sockets would.
pub fn resolve(addr: &Addr) -> io::Result<Vec<SocketAddr>> {
    let mut all: Vec<SocketAddr> = (addr.host.as_str(), addr.port).to_socket_addrs()?.collect();
    all.sort_by_key(|a| a.is_ipv6());
    if all.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", addr.host)));
    }
    Ok(all)
}

/// Connects to the first address of `addr` that answers within `timeout`, and sets
/// `timeout` as the read and write timeout of the stream.
pub fn connect(addr: &Addr, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for sa in resolve(addr)? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("resolve returns at least one address"))
}

/// Why an exchange did not produce a reply.
#[derive(Debug)]
pub enum ExchangeError {
    /// Resolving or connecting failed (refused, unreachable, unknown host).
    Connect(io::Error),
    /// Sending failed after the connection was made.
    Send(io::Error),
    /// The reply did not come or was not one pickle. `received` holds what came, and
    /// the stream is still open to read on.
    Reply { error: FrameError, received: Vec<u8>, stream: TcpStream },
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Connect(e) => write!(f, "could not connect: {e}"),
            ExchangeError::Send(e) => write!(f, "could not send: {e}"),
            ExchangeError::Reply { error, .. } => write!(f, "{error}"),
        }
    }
}

/// Sends `message` (one pickle) in a single write and reads one pickled reply.
pub fn exchange(addr: &Addr, message: &[u8], timeout: Duration) -> Result<(TcpStream, Vec<u8>), ExchangeError> {
    let mut stream = connect(addr, timeout).map_err(ExchangeError::Connect)?;
    stream.write_all(message).map_err(ExchangeError::Send)?;
    let mut received = Vec::new();
    match read_pickle_into(&mut stream, MAX_PICKLE_BYTES, &mut received) {
        Ok(()) => Ok((stream, received)),
        Err(error) => Err(ExchangeError::Reply { error, received, stream }),
    }
}
