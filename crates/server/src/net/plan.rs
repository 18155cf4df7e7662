//! What the network driver works out from the config before opening
//! anything (interface, peers' addresses, the state machine's settings),
//! and `ncserver --check`'s use of it: every way opening the network can
//! fail short of binding the socket.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use netcluster_proto::net::NetConfig;

use super::{socket, NetError};
use crate::config::Config;
use crate::iface;

/// What [`super::NetDriver::open`] works out from the config before opening
/// anything; every way it can fail short of the socket itself.
pub(super) struct Plan {
    /// The group and port.
    pub group: SocketAddr,
    /// The configured interface, looked up.
    pub iface: Option<iface::Interface>,
    /// The unicast peers, resolved.
    pub peers: Vec<SocketAddr>,
    /// The name announced to peers.
    pub name: String,
    /// The state machine's settings, checked.
    pub ncfg: NetConfig,
}

impl Plan {
    /// Works it out for `cfg`; the first problem is the error.
    pub fn new(cfg: &Config, node_id: u64) -> Result<Plan, NetError> {
        let group = SocketAddr::new(cfg.addr, cfg.port);
        let fail = |reason: String| NetError { group, reason };
        let iface = cfg
            .interface
            .as_deref()
            .map(iface::find)
            .transpose()
            .map_err(fail)?;
        let mut peers = Vec::new();
        for p in &cfg.peers {
            let addr = p
                .to_socket_addrs()
                .map_err(|e| fail(format!("peer {p:?}: {e}")))?
                .find(|a| a.is_ipv4() == group.is_ipv4())
                .ok_or_else(|| fail(format!("peer {p:?} has no address of the group's family")))?;
            peers.push(addr);
        }
        let name = cfg.nodename.clone().unwrap_or_else(iface::hostname);
        let mut ncfg = NetConfig::new(node_id, name.clone());
        ncfg.mtu = cfg.mtu;
        ncfg.max_message = cfg.maxmessage;
        ncfg.key = cfg.key.clone();
        ncfg.retransmit_bytes = cfg.retransmitbytes;
        // Spreads NAK timers between daemons; any value that differs
        // between nodes does.
        ncfg.seed = crate::entropy::random_u64() ^ node_id;
        ncfg.reassembly_bytes = cfg.reassemblybytes.max(cfg.maxmessage);
        ncfg.retransmit_rate = cfg.retransmitrate;
        // Half a second's worth at once, at most the default burst, at
        // least one NAK's answer.
        ncfg.retransmit_burst = (cfg.retransmitrate / 2)
            .min(netcluster_proto::net::DEFAULT_RETRANSMIT_BURST as u64)
            .max((netcluster_proto::net::NAK_ANSWER_MAX * cfg.mtu) as u64)
            as usize;
        // No batching timer: the hub flushes after every read batch.
        ncfg.flush_delay = Duration::ZERO;
        ncfg.check().map_err(|e| fail(e.to_string()))?;
        Ok(Plan {
            group,
            iface,
            peers,
            name,
            ncfg,
        })
    }
}

/// Runs every check [`super::NetDriver::open`] makes (interface, peers' addresses,
/// network settings, and that the group can be joined, on a socket that is
/// not bound to the port) without joining the network: `ncserver --check`.
pub fn check(cfg: &Config) -> Result<(), NetError> {
    let plan = Plan::new(cfg, 1)?;
    socket::probe_join(cfg, plan.group, plan.iface.as_ref()).map_err(|e| NetError {
        group: plan.group,
        reason: e.to_string(),
    })
}
