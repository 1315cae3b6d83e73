//! Which local address to use: shared by `rask scheduler --interface`, `rask worker` and
//! the zero worker.

use crate::ServerError;
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

/// The IPv4 address of network interface `name` (`--interface ib0`).
pub fn interface_ip(name: &str) -> Result<IpAddr, ServerError> {
    let addrs = if_addrs::get_if_addrs()
        .map_err(|e| ServerError::Startup(format!("cannot list network interfaces: {e}")))?;
    let mut names: Vec<String> = addrs.iter().map(|a| a.name.clone()).collect();
    names.dedup();
    addrs
        .iter()
        .filter(|a| a.name == name)
        .map(|a| a.ip())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| {
            ServerError::Startup(format!(
                "no IPv4 address on interface {name:?}; interfaces here: {}",
                names.join(", ")
            ))
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
