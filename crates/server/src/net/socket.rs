//! The network driver's UDP socket: created with `socket2`, bound to the
//! group's port with `SO_REUSEADDR`/`SO_REUSEPORT` (several daemons may
//! share a host), joined to the group on the chosen interface, with TTL,
//! multicast loopback and large kernel buffers.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdp};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::Config;
use crate::iface;

/// Kernel buffer size asked for both directions, so bursts of thousands of
/// datagrams are absorbed rather than dropped.
const SOCKET_BUFFER: usize = 16 * 1024 * 1024;

/// Creates, configures and binds the UDP socket and joins the group.
pub(super) fn setup_socket(
    cfg: &Config,
    group: SocketAddr,
    iface: Option<&iface::Interface>,
) -> io::Result<StdUdp> {
    let domain = if group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    set_buffers(&s);
    s.set_nonblocking(true)?;
    let any: IpAddr = if group.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    if group.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&SockAddr::from(SocketAddr::new(any, group.port())))?;
    match group.ip() {
        IpAddr::V4(g) => {
            if g.is_multicast() {
                joined(s.join_multicast_v4_n(&g, &join_on(iface)), cfg, group)?;
            }
            if let Some(addr) = iface.and_then(|i| i.ipv4) {
                s.set_multicast_if_v4(&addr)?;
            }
            s.set_multicast_ttl_v4(cfg.ttl)?;
            s.set_multicast_loop_v4(cfg.loopback)?;
        }
        IpAddr::V6(g) => {
            let index = iface.map_or(0, |i| i.index);
            if g.is_multicast() {
                joined(s.join_multicast_v6(&g, index), cfg, group)?;
            }
            if index > 0 {
                s.set_multicast_if_v6(index)?;
            }
            s.set_multicast_hops_v6(cfg.ttl)?;
            s.set_multicast_loop_v6(cfg.loopback)?;
        }
    }
    Ok(s.into())
}

/// Joins the group on a fresh socket that is not bound to any port, and
/// leaves it at once: whether start-up could join, for `ncserver --check`.
pub(super) fn probe_join(
    cfg: &Config,
    group: SocketAddr,
    iface: Option<&iface::Interface>,
) -> io::Result<()> {
    let domain = if group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    match group.ip() {
        IpAddr::V4(g) if g.is_multicast() => {
            joined(s.join_multicast_v4_n(&g, &join_on(iface)), cfg, group)
        }
        IpAddr::V6(g) if g.is_multicast() => joined(
            s.join_multicast_v6(&g, iface.map_or(0, |i| i.index)),
            cfg,
            group,
        ),
        _ => Ok(()),
    }
}

/// The interface an IPv4 group is joined on: the configured one, else the
/// one the routing table picks.
fn join_on(iface: Option<&iface::Interface>) -> socket2::InterfaceIndexOrAddress {
    match iface {
        Some(i) if i.index > 0 => socket2::InterfaceIndexOrAddress::Index(i.index),
        Some(i) => {
            socket2::InterfaceIndexOrAddress::Address(i.ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED))
        }
        None => socket2::InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
    }
}

/// Joining the group may fail where there is no multicast (no route, a
/// cloud network): with unicast `peers` configured that is only a warning.
fn joined(r: io::Result<()>, cfg: &Config, group: SocketAddr) -> io::Result<()> {
    match r {
        Err(e) if !cfg.peers.is_empty() => {
            tracing::warn!(%group, "cannot join the multicast group ({e}); using the unicast peers only");
            Ok(())
        }
        // The usual cause is a host without a multicast route, where the
        // kernel answers "No such device": say what fixes it.
        Err(e) => {
            let (range, example) = if group.is_ipv4() {
                ("224.0.0.0/4", "ip route add 224.0.0.0/4 dev eth0")
            } else {
                ("ff00::/8", "ip -6 route add ff00::/8 dev eth0 table local")
            };
            Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot join multicast group {}: {e}. Multicast needs a route for {range} \
                     (e.g. `{example}`) or the config's `interface` naming the network \
                     interface to use; where there is no multicast, list the other daemons \
                     in `peers`",
                    group.ip()
                ),
            ))
        }
        Ok(()) => Ok(()),
    }
}

/// Asks for large kernel buffers; as root past the system maximum.
fn set_buffers(s: &Socket) {
    #[cfg(target_os = "linux")]
    if crate::is_root() {
        use std::os::fd::AsRawFd;
        let size = SOCKET_BUFFER as libc::c_int;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // SAFETY: setsockopt with a valid fd and a c_int option value
            // of the size given.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        return;
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
}
