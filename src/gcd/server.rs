//! The coordinator's sockets: one thread per connection, one request per connection,
//! like gcd2.py but concurrent, so one slow client can't hold up everyone's HOWDY.

use super::coordinator::{Answer, Coordinator, REQUEST_LIMIT};
use crate::wire::{Framer, Progress};
use log::{debug, info, warn};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its request. gcd2.py waits forever; a waiting
/// thread costs little, but a connection that never sends must not cost one for good.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until it fails. The listener is bound by the caller, so tests can
/// bind `127.0.0.1:0` and read the port back.
pub fn serve(listener: TcpListener, coordinator: Arc<Coordinator>) -> io::Result<()> {
    serve_observed(listener, coordinator, Arc::new(|_: &Answer| {}))
}

/// Something told of every answer the coordinator gives (the checker records its peer's
/// registrations this way: a re-registration changes no membership, so it shows only here).
pub type Observer = Arc<dyn Fn(&Answer) + Send + Sync>;

/// [`serve`], telling `observe` of each answer before it is sent.
pub fn serve_observed(listener: TcpListener, coordinator: Arc<Coordinator>, observe: Observer) -> io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            // Running out of descriptors or a client resetting mid-accept is not fatal.
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let coordinator = Arc::clone(&coordinator);
        let observe = Arc::clone(&observe);
        let spawned = std::thread::Builder::new()
            .name(format!("gcd-{peer}"))
            .spawn(move || handle(stream, &coordinator, &peer.to_string(), &*observe));
        if let Err(e) = spawned {
            warn!("no thread for {peer}: {e}");
        }
    }
}

/// Serves `listener` one connection at a time, as gcd2.py's single-threaded
/// socketserver does (`bully-node gcd --serial`): each request waits for every one before
/// it, which is the load a group must keep low on the course's GCD.
pub fn serve_serially(listener: TcpListener, coordinator: Arc<Coordinator>) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => handle(stream, &coordinator, &peer.to_string(), &|_: &Answer| {}),
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn handle(mut stream: TcpStream, coordinator: &Coordinator, peer: &str, observe: &(dyn Fn(&Answer) + Send + Sync)) {
    let raw = match read_request(&mut stream) {
        Ok(raw) => raw,
        Err(e) => {
            warn!("reading from {peer} failed: {e}");
            return;
        }
    };
    let answer = coordinator.answer(&raw);
    let name = coordinator.config().accept;
    match &answer {
        Answer::Joined { pid, addr, .. } => {
            let n = coordinator.members().len();
            let s = if n == 1 { "" } else { "s" };
            info!("{name} from {pid} listening at {addr}: accepted, the group has {n} member{s}");
        }
        Answer::Refused { reason, .. } => info!("request from {peer} refused: {reason:?}"),
        Answer::NotAPickle { .. } if raw.is_empty() => {
            debug!("{peer} closed without sending a request")
        }
        Answer::NotAPickle { .. } => info!("{} bytes from {peer} are not a pickle", raw.len()),
        Answer::NoReply { reason } => {
            info!("request from {peer} dropped without a reply: {reason}")
        }
    }
    observe(&answer);
    if let Some(reply) = answer.reply_bytes() {
        if let Err(e) = stream.write_all(reply) {
            warn!("answering {peer} failed: {e}");
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// What gcd2.py's `recv(1024)` would have seen: whatever arrives, up to 1024 bytes,
/// except that we wait for a whole pickle rather than taking the first segment.
fn read_request(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut buf = vec![0u8; REQUEST_LIMIT];
    let mut len = 0;
    let mut framer = Framer::new();
    while len < REQUEST_LIMIT {
        let n = match stream.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A timeout answers with what arrived, as a cut-short request.
            Err(e) if crate::wire::is_timeout(&e) => break,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        len += n;
        match framer.advance(&buf[..len]) {
            Ok(Progress::NeedMore(_)) => {}
            Ok(Progress::Complete { .. }) | Err(_) => break,
        }
    }
    buf.truncate(len);
    Ok(buf)
}
