//! `/metrics`: the hub's counters as Prometheus metrics, sampled at scrape
//! time (the message path keeps its plain per-connection `Cell` counters
//! and does nothing for metrics). Every name starts with `netcluster_`;
//! labels are bounded: `channel` (configured channels only), `cause`,
//! `reason`, `version`. docs/METRICS.md describes each metric.
//!
//! A registry of `prometheus-client` is filled per scrape and encoded as
//! OpenMetrics text; [`to_classic`] turns that into the classic Prometheus
//! text format (0.0.4) for clients that do not ask for OpenMetrics.

use std::time::SystemTime;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::hub::Hub;
use crate::stats::{ChannelTotals, CAUSES};

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// Builds metric families into a registry with short calls. (The crate
/// ends every help text with a period itself, so ours lose theirs.)
struct Builder {
    registry: Registry,
}

impl Builder {
    fn counter(&mut self, name: &str, help: &str, samples: Vec<(Labels, u64)>) {
        let family = Family::<Labels, Counter>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).inc_by(v);
        }
        self.registry
            .register(name, help.trim_end_matches('.'), family);
    }

    fn counter1(&mut self, name: &str, help: &str, v: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        self.registry.register(name, help.trim_end_matches('.'), c);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: Vec<(Labels, i64)>) {
        let family = Family::<Labels, Gauge>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).set(v);
        }
        self.registry
            .register(name, help.trim_end_matches('.'), family);
    }

    fn gauge1(&mut self, name: &str, help: &str, v: i64) {
        let g = Gauge::<i64>::default();
        g.set(v);
        self.registry.register(name, help.trim_end_matches('.'), g);
    }

    fn gauge_f64(&mut self, name: &str, help: &str, v: f64) {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(v);
        self.registry.register(name, help.trim_end_matches('.'), g);
    }
}

/// One channel's sample: live clients' counters plus departed ones'.
struct ChannelSample {
    name: String,
    clients: i64,
    queued: i64,
    totals: ChannelTotals,
}

fn sample_channels(hub: &Hub) -> Vec<ChannelSample> {
    let cfg = hub.config();
    let mut out: Vec<ChannelSample> = cfg
        .channels
        .iter()
        .map(|c| ChannelSample {
            name: c.name.clone(),
            clients: 0,
            queued: 0,
            totals: hub.ops.retired(&c.name),
        })
        .collect();
    // By name, so that a scrape stays linear in channels plus clients.
    let index: rustc_hash::FxHashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    for conn in hub.clients() {
        if let Some(s) = index.get(&*conn.channel).map(|&i| &mut out[i]) {
            s.clients += 1;
            s.queued += conn.out.borrow().len() as i64;
            s.totals.add_conn(&conn);
        }
    }
    out
}

/// The metrics text and its content type.
pub fn render(hub: &Hub, openmetrics: bool) -> (String, &'static str) {
    let mut b = Builder {
        registry: Registry::with_prefix("netcluster"),
    };
    let channels = sample_channels(hub);
    let per = |f: &dyn Fn(&ChannelSample) -> u64| -> Vec<(Labels, u64)> {
        channels
            .iter()
            .map(|s| (vec![("channel", s.name.clone())], f(s)))
            .collect()
    };
    b.counter(
        "channel_messages_received",
        "Messages emitted by the channel's local clients.",
        per(&|s| s.totals.msgs_in),
    );
    b.counter(
        "channel_messages_delivered",
        "Messages queued for the channel's clients (from the channel itself, propagation and the network).",
        per(&|s| s.totals.msgs_out),
    );
    b.counter(
        "channel_received_bytes",
        "Bytes read from the channel's clients (frames, as on the socket).",
        per(&|s| s.totals.bytes_in),
    );
    b.counter(
        "channel_delivered_bytes",
        "Bytes written to the channel's clients (frames, as on the socket).",
        per(&|s| s.totals.bytes_out),
    );
    b.counter(
        "channel_slow_consumer_drops",
        "Messages not delivered to a full client of the channel (slowconsumer drop).",
        per(&|s| s.totals.dropped),
    );
    b.counter(
        "channel_publisher_waits",
        "Times publishers waited for a full client of the channel (slowconsumer block).",
        per(&|s| s.totals.blocked),
    );
    let mut disconnects = Vec::new();
    for s in &channels {
        for (i, cause) in CAUSES.iter().enumerate() {
            disconnects.push((
                vec![("channel", s.name.clone()), ("cause", cause.to_string())],
                s.totals.disconnects[i],
            ));
        }
    }
    b.counter(
        "channel_disconnects",
        "Clients of the channel that left, by cause: left (closed by the client), slow_consumer, protocol_error, channel_removed, shutdown.",
        disconnects,
    );
    b.gauge(
        "channel_clients",
        "Clients connected to the channel.",
        channels
            .iter()
            .map(|s| (vec![("channel", s.name.clone())], s.clients))
            .collect(),
    );
    b.gauge(
        "channel_queued_bytes",
        "Bytes waiting in the queues of the channel's clients.",
        channels
            .iter()
            .map(|s| (vec![("channel", s.name.clone())], s.queued))
            .collect(),
    );
    network(&mut b, hub);
    nats(&mut b, hub);
    process(&mut b, hub);
    let mut text = String::new();
    encode(&mut text, &b.registry).expect("writing to a String cannot fail");
    if openmetrics {
        (text, OPENMETRICS)
    } else {
        (to_classic(&text), CLASSIC)
    }
}

fn nats(b: &mut Builder, hub: &Hub) {
    let Some(m) = crate::nats::bridge(hub).map(|n| n.metrics()) else {
        return;
    };
    b.gauge1(
        "nats_connected",
        "1 if the NATS bridge is connected to a server, else 0.",
        m.connected as i64,
    );
    b.counter1(
        "nats_reconnects",
        "Reconnections of the NATS bridge.",
        m.reconnects,
    );
    b.counter1(
        "nats_sent_messages",
        "Local messages published to NATS.",
        m.messages_out,
    );
    b.counter1(
        "nats_received_messages",
        "Messages from NATS delivered to local clients.",
        m.messages_in,
    );
    b.counter1(
        "nats_dropped_messages",
        "Local messages not published (bridge buffer full, or over the server's max_payload).",
        m.dropped,
    );
    b.gauge1(
        "nats_buffered_bytes",
        "Bytes waiting in the bridge's buffer.",
        m.buffered_bytes as i64,
    );
    b.counter1(
        "nats_refused_messages",
        "Messages from NATS refused (malformed headers, unknown channel, too large).",
        m.refused,
    );
    b.counter1(
        "nats_duplicate_messages",
        "Messages from NATS dropped as already delivered.",
        m.duplicates,
    );
    b.counter1(
        "nats_gaps",
        "Gaps in an origin's sequence on the NATS path (each one an nc-gap event).",
        m.gaps,
    );
    b.counter1(
        "nats_lost_messages",
        "Messages covered by NATS gaps.",
        m.lost,
    );
    b.counter1(
        "nats_publish_errors",
        "Publishes the NATS client refused.",
        m.publish_errors,
    );
}

fn network(b: &mut Builder, hub: &Hub) {
    let net = crate::net::driver(hub).map(|n| n.metrics());
    b.gauge1(
        "net_connected",
        "1 if the daemon is on the network (connecttonet), else 0.",
        net.is_some() as i64,
    );
    let Some(m) = net else { return };
    let s = &m.stats;
    b.counter1(
        "net_sent_datagrams",
        "UDP datagrams sent (data, retransmissions, control).",
        s.datagrams_out,
    );
    b.counter1(
        "net_sent_bytes",
        "Bytes of the UDP datagrams sent.",
        s.bytes_out,
    );
    b.counter1(
        "net_received_datagrams",
        "netcluster datagrams received from peers and decoded.",
        s.datagrams_in,
    );
    b.counter1(
        "net_received_bytes",
        "Bytes of all UDP datagrams received.",
        s.bytes_in,
    );
    b.counter1(
        "net_sent_messages",
        "Messages sent to the network.",
        s.messages_out,
    );
    b.counter1(
        "net_received_messages",
        "Messages received from the network and delivered.",
        s.messages_in,
    );
    b.counter1(
        "net_retransmitted_datagrams",
        "DATA datagrams sent again after a NAK.",
        s.retransmitted,
    );
    b.counter1(
        "net_sent_naks",
        "NAK datagrams sent (asking a peer to retransmit).",
        s.naks_out,
    );
    b.counter1(
        "net_received_naks",
        "NAK datagrams received asking this node.",
        s.naks_in,
    );
    b.counter1(
        "net_gaps",
        "Gaps reported: runs of a peer's datagrams given up on.",
        s.gaps,
    );
    b.counter1(
        "net_lost_datagrams",
        "Peers' DATA datagrams never received (given up on).",
        s.lost,
    );
    b.counter1(
        "net_send_errors",
        "Sends that failed other than for a full buffer (e.g. no route).",
        m.send_errors,
    );
    let reasons: [(&str, u64); 6] = [
        ("malformed", s.malformed),
        ("foreign", s.foreign),
        ("duplicate", s.duplicates),
        ("unauthenticated", s.rejected),
        ("replayed", s.replayed),
        ("peer_table_full", s.peers_refused),
    ];
    b.counter(
        "net_rejected_datagrams",
        "Datagrams dropped, by reason: malformed, foreign (not netcluster's), duplicate, unauthenticated (wrong or no key), replayed, peer_table_full.",
        reasons
            .iter()
            .map(|(r, v)| (vec![("reason", r.to_string())], *v))
            .collect(),
    );
    b.counter(
        "net_refused_messages",
        "Messages from the network not delivered, by reason: unknown_channel, acceptfromnet (the channel refuses them).",
        vec![
            (vec![("reason", "unknown_channel".to_string())], m.unknown_channel),
            (vec![("reason", "acceptfromnet".to_string())], m.refused),
        ],
    );
    b.gauge1(
        "net_peers_up",
        "Peers heard from recently.",
        m.peers_up as i64,
    );
    b.gauge1(
        "net_peers",
        "Peers in the peer table (up or down).",
        m.peers as i64,
    );
}

fn process(b: &mut Builder, hub: &Hub) {
    let uptime = SystemTime::now()
        .duration_since(hub.started)
        .unwrap_or_default()
        .as_secs_f64();
    b.gauge_f64(
        "uptime_seconds",
        "Seconds since the daemon started.",
        uptime,
    );
    b.gauge(
        "build_info",
        "Always 1; the label says which version runs.",
        vec![(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1)],
    );
    #[cfg(target_os = "linux")]
    {
        if let Some(rss) = resident_bytes() {
            b.gauge1(
                "resident_memory_bytes",
                "Resident memory of the daemon process.",
                rss,
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            b.gauge1(
                "open_fds",
                "Open file descriptors of the daemon process (sockets included).",
                fds.count() as i64,
            );
        }
    }
}

/// Resident set size from /proc/self/statm (pages × page size).
#[cfg(target_os = "linux")]
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page as i64)
}

/// OpenMetrics text to the classic text format: counters' `# HELP` and
/// `# TYPE` lines name the `_total` series the samples use, and the
/// `# EOF` and `# UNIT` lines go (classic parsers reject or ignore them).
pub fn to_classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_classic;

    #[test]
    fn classic_names_counters_by_their_total_series() {
        let om = "# HELP x_msgs Messages.\n# TYPE x_msgs counter\nx_msgs_total{channel=\"A\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# EOF\n";
        assert_eq!(
            to_classic(om),
            "# HELP x_msgs_total Messages.\n# TYPE x_msgs_total counter\nx_msgs_total{channel=\"A\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }
}
