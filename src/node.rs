//! Starting a node: bind the listener first (so our address is real before the GCD
//! hands it out), register with the GCD, then serve peers.

use crate::cli::NodeConfig;
use crate::gcd::{self, GcdError};
use crate::listener::{self, Incoming};
use crate::membership::{Addr, Members};
use log::info;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// How long the GCD may take to answer a registration.
pub const GCD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum NodeError {
    Bind { addr: Addr, cause: std::io::Error },
    Gcd(GcdError),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Bind { addr, cause } => write!(
                f,
                "cannot listen on {addr}: {cause}; pick another --listen HOST:PORT (port 0 takes any free one)"
            ),
            NodeError::Gcd(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// The local IP this machine uses to reach `gcd` (no packet is sent: connecting a UDP
/// socket only picks a route), or loopback when there is no route.
pub fn local_ip_towards(gcd: &Addr) -> IpAddr {
    let route = || -> std::io::Result<IpAddr> {
        let target = crate::net::resolve(gcd)?[0];
        let any: IpAddr = if target.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind((any, 0))?;
        socket.connect(target)?;
        Ok(socket.local_addr()?.ip())
    };
    route().unwrap_or(Ipv4Addr::LOCALHOST.into())
}

/// Binds the listener and works out the address to give the GCD: the host as the user
/// wrote it (peers resolve names), the IP that reaches the GCD when none was given or
/// it was a wildcard, and the port actually bound.
pub fn bind(config: &NodeConfig) -> Result<(TcpListener, Addr), NodeError> {
    let towards_gcd = || local_ip_towards(&config.gcd).to_string();
    let wanted = config
        .listen
        .clone()
        .unwrap_or_else(|| Addr::new(towards_gcd(), 0));
    let listener = TcpListener::bind((wanted.host.as_str(), wanted.port)).map_err(|cause| {
        NodeError::Bind {
            addr: wanted.clone(),
            cause,
        }
    })?;
    let port = listener
        .local_addr()
        .map_err(|cause| NodeError::Bind {
            addr: wanted.clone(),
            cause,
        })?
        .port();
    let wildcard = matches!(wanted.host.parse::<IpAddr>(), Ok(ip) if ip.is_unspecified());
    let host = if wildcard { towards_gcd() } else { wanted.host };
    Ok((listener, Addr::new(host, port)))
}

/// Shows the group as a person reads it: highest first, marking ourselves.
pub fn describe_members(members: &Members, me: crate::identity::ProcessId) -> String {
    let mut sorted: Vec<_> = members.iter().collect();
    sorted.sort_by_key(|m| std::cmp::Reverse(m.pid));
    sorted
        .iter()
        .map(|m| {
            format!(
                "{}{} at {}",
                m.pid,
                if m.pid == me { " (us)" } else { "" },
                m.addr
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs a node: registers and then serves peers until the process ends.
pub fn run(config: NodeConfig) -> Result<(), NodeError> {
    let (listener, addr) = bind(&config)?;
    info!("listening at {addr}");
    let registration = gcd::register(
        &config.gcd,
        config.gcd_message,
        config.pid,
        &addr,
        GCD_TIMEOUT,
    )
    .map_err(NodeError::Gcd)?;
    info!(
        "{} to the GCD at {}: joined a group of {}: {}",
        registration.name,
        config.gcd,
        registration.members.len(),
        describe_members(&registration.members, config.pid)
    );
    let deliver =
        Arc::new(|incoming: Incoming| info!("{} from {}", incoming.message.name(), incoming.from));
    let handle =
        listener::spawn(listener, deliver).map_err(|cause| NodeError::Bind { addr, cause })?;
    let _ = handle.join();
    Ok(())
}
