//! Every config key's default and bounds, as named constants (the README's
//! key table and the validation in `validate` both follow them).

use std::net::{IpAddr, Ipv4Addr};

use super::SlowConsumer;

/// Default multicast group (`addr`): in the organization-local scope
/// 239.255.0.0/16, so that it never leaves the site by default.
pub const DEFAULT_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 255, 77, 54));
/// Default UDP port (`port`), the seed's.
pub const DEFAULT_PORT: u16 = 4454;
/// Default of `dumpnet`: do not print network traffic.
pub const DEFAULT_DUMPNET: bool = false;
/// Default of `connecttonet`: stay local unless asked.
pub const DEFAULT_CONNECTTONET: bool = false;
/// Default multicast `ttl`: 1 keeps datagrams on the local network.
pub const DEFAULT_TTL: u32 = 1;
/// Default `loopback`: off (a daemon does not need its own datagrams).
pub const DEFAULT_LOOPBACK: bool = false;
/// Default `mtu`: datagram budget in bytes of UDP payload, safe without IP
/// fragmentation on Ethernet.
pub const DEFAULT_MTU: usize = netcluster_proto::net::DEFAULT_MTU;
/// Default `retransmitbytes`: sent datagrams kept to answer NAKs.
pub const DEFAULT_RETRANSMITBYTES: usize = netcluster_proto::net::DEFAULT_RETRANSMIT_BYTES;
/// Largest accepted `retransmitbytes`.
pub const MAX_RETRANSMITBYTES: u64 = 1024 * 1024 * 1024;
/// Default `reassemblybytes`: receive memory of all peers together
/// (partial messages, held and missing datagrams); raised to `maxmessage`
/// if smaller.
pub const DEFAULT_REASSEMBLYBYTES: usize = netcluster_proto::net::DEFAULT_REASSEMBLY_BYTES;
/// Largest accepted `reassemblybytes`.
pub const MAX_REASSEMBLYBYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Default `retransmitrate`: bytes per second sent again per requesting peer.
pub const DEFAULT_RETRANSMITRATE: u64 = netcluster_proto::net::DEFAULT_RETRANSMIT_RATE;
/// Largest accepted `retransmitrate` (0 = no limit).
pub const MAX_RETRANSMITRATE: u64 = 1024 * 1024 * 1024;
/// Default `acceptfromnet` of a channel.
pub const DEFAULT_ACCEPTFROMNET: bool = true;
/// Default of `startcontrol`: answer control requests.
pub const DEFAULT_STARTCONTROL: bool = true;
/// Default permission bits of the channel sockets (`socketmode`):
/// owner and group may connect.
pub const DEFAULT_SOCKETMODE: u32 = 0o660;
/// Largest `socketmode`: permission bits only, no setuid/setgid/sticky.
pub const MAX_SOCKETMODE: u32 = 0o777;
/// Default largest message in bytes (`maxmessage`).
pub const DEFAULT_MAXMESSAGE: usize = 16 * 1024 * 1024;
/// Smallest accepted `maxmessage`.
pub const MIN_MAXMESSAGE: u64 = 1024;
/// Largest accepted `maxmessage`.
pub const MAX_MAXMESSAGE: u64 = 1024 * 1024 * 1024;
/// Default bytes queued for one slow client before it is dealt with
/// (`queuebytes`).
pub const DEFAULT_QUEUEBYTES: usize = 8 * 1024 * 1024;
/// Default largest shared-memory pool one client may register
/// (`shmbytes`; 0 turns shared-memory payloads off).
pub const DEFAULT_SHMBYTES: usize = 64 * 1024 * 1024;
/// Largest accepted `shmbytes`.
pub const MAX_SHMBYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Smallest accepted `queuebytes`.
pub const MIN_QUEUEBYTES: u64 = 64 * 1024;
/// Largest accepted `queuebytes`.
pub const MAX_QUEUEBYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Default of a channel's `propagatetonet`.
pub const DEFAULT_PROPAGATETONET: bool = false;
/// Default of a channel's `propagatetonats`: local messages stay off NATS.
pub const DEFAULT_PROPAGATETONATS: bool = false;
/// Default of a channel's `acceptfromnats`: deliver what comes from NATS
/// (when the daemon has a `nats` bridge at all).
pub const DEFAULT_ACCEPTFROMNATS: bool = true;
/// Default of a channel's `dumptoconsole`.
pub const DEFAULT_DUMPTOCONSOLE: bool = false;
/// Default `slowconsumer` policy of a channel.
pub const DEFAULT_SLOWCONSUMER: SlowConsumer = SlowConsumer::Block;
/// Default `blockms`: how long publishers wait for a full queue under `block`.
pub const DEFAULT_BLOCKMS: u64 = 1000;
/// Largest `blockms` (10 minutes).
pub const MAX_BLOCKMS: u64 = 600_000;
/// Default `frametimeoutms`: once the first byte of a frame (or of a seed
/// packet) has arrived, the whole of it must arrive within this time, or
/// the client gets an error and is closed. Only an unfinished frame is
/// timed: a client idle between frames may stay silent forever.
pub const DEFAULT_FRAMETIMEOUTMS: u64 = 10_000;
/// Smallest accepted `frametimeoutms`.
pub const MIN_FRAMETIMEOUTMS: u64 = 100;
/// Largest accepted `frametimeoutms` (one hour).
pub const MAX_FRAMETIMEOUTMS: u64 = 3_600_000;
/// Default `partialbytes`: the most bytes all clients' unfinished frames
/// may hold together (raised to one whole frame of `maxmessage` when that
/// is larger, see [`Config::partial_budget`]).
pub const DEFAULT_PARTIALBYTES: usize = 64 * 1024 * 1024;
/// Smallest accepted `partialbytes` (it must also hold one whole frame of
/// `maxmessage`).
pub const MIN_PARTIALBYTES: u64 = 64 * 1024;
/// Largest accepted `partialbytes`.
pub const MAX_PARTIALBYTES: u64 = 64 * 1024 * 1024 * 1024;
/// The channel that carries control requests; always present.
pub const CONTROL_CHANNEL: &str = "control";
/// File name used in diagnostics for a config sent in a reload request.
pub const RELOAD_REQUEST_FILE: &str = "<reload request>";
/// Environment variable that overrides the default socket directory.
pub const SOCKET_DIR_ENV: &str = netcluster_proto::names::SOCKET_DIR_ENV;
