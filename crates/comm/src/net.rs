//! Which local address to use: shared by `rask scheduler --interface`, `rask worker` and
//! the zero worker.

use std::net::{IpAddr, ToSocketAddrs, UdpSocket};

/// The local IP that routes to `address` (`[scheme://]host:port`): what a Dask worker or
/// nanny advertises when it is given no host. Connecting a UDP socket sends nothing; it
/// only asks the kernel for the route. Loopback when there is none.
pub fn route_ip(address: &str) -> IpAddr {
    let hostport = address
        .split_once("://")
        .map_or(address, |(_, rest)| rest)
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .and_then(|target| {
            let any = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = UdpSocket::bind(any).ok()?;
            s.connect(target).ok()?;
            s.local_addr().ok()
        })
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Why `--interface NAME` names no usable address.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// The OS would not list its interfaces.
    #[error("cannot list network interfaces: {0}")]
    List(std::io::Error),
    /// No interface of that name has an IPv4 address.
    #[error("no IPv4 address on interface {name:?}; interfaces here: {available}")]
    NoAddress {
        /// the name asked for
        name: String,
        /// the interfaces there are, comma-separated
        available: String,
    },
}

/// The IPv4 address of network interface `name` (`--interface ib0`).
pub fn interface_ip(name: &str) -> Result<IpAddr, InterfaceError> {
    let addrs = if_addrs::get_if_addrs().map_err(InterfaceError::List)?;
    let mut names: Vec<String> = addrs.iter().map(|a| a.name.clone()).collect();
    names.dedup();
    addrs
        .iter()
        .filter(|a| a.name == name)
        .map(|a| a.ip())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| InterfaceError::NoAddress {
            name: name.to_string(),
            available: names.join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_ip_of_loopback_is_loopback() {
        assert_eq!(
            route_ip("tcp://127.0.0.1:8786"),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(route_ip("nonsense"), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn an_unknown_interface_is_named_with_the_ones_there_are() {
        let e = interface_ip("no-such-if0").unwrap_err().to_string();
        assert!(
            e.contains("no-such-if0") && e.contains("interfaces here"),
            "{e}"
        );
    }
}
