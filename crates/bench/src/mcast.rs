//! The multicast rows: netcluster between two network namespaces.
//!
//! Two namespaces joined by a veth pair (a two-host LAN, the idea of
//! `netcluster-testkit`'s `netns`), one `ncserver` in each with channel
//! `bench` propagated to the network; a publisher role on the first
//! daemon's socket directory and a subscriber role on the second's
//! (Unix sockets are not namespaced, so the roles run here). The
//! subscriber checks size, order and count of every message, as in the
//! local rows, so a run with loss only counts if every message was
//! repaired. Variants: plain, with a `key` (every datagram sealed), and
//! plain with 10% of the UDP datagrams dropped by nftables on the
//! receiving host's input (`numgen random mod 10 0 drop`).
//!
//! Needs root, `ip` and (for the loss rows) `nft`. Everything it creates
//! (namespaces, daemons, temporary files) is removed when a run ends, also
//! on error; each role has the plan's deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::child::Proc;
use crate::roles::{PubOut, SubOut};

/// The subscriber's queue on the receiving host (see `Lan::start`).
const SINK_QUEUE: &str = "2GiB";

/// A key for the sealed rows (any 64 hex digits).
const KEY: &str = "6e63626e6368206b657920666f72206d756c74696361737420726f7773212121";

/// One multicast workload.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Metric id of its row.
    pub id: &'static str,
    /// Message size.
    pub size: usize,
    /// Seal datagrams with a key.
    pub key: bool,
    /// Drop one in ten UDP datagrams at the receiver.
    pub loss: bool,
}

/// The rows, in table order.
pub const VARIANTS: &[Variant] = &[
    Variant {
        id: "mcast_64",
        size: 64,
        key: false,
        loss: false,
    },
    Variant {
        id: "mcast_64k",
        size: 64 << 10,
        key: false,
        loss: false,
    },
    Variant {
        id: "mcast_64_key",
        size: 64,
        key: true,
        loss: false,
    },
    Variant {
        id: "mcast_64k_key",
        size: 64 << 10,
        key: true,
        loss: false,
    },
    Variant {
        id: "mcast_64_loss",
        size: 64,
        key: false,
        loss: true,
    },
    Variant {
        id: "mcast_64k_loss",
        size: 64 << 10,
        key: false,
        loss: true,
    },
];

/// What a multicast run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `ncserver` binary.
    pub ncserver: PathBuf,
    /// This executable (for the roles).
    pub exe: PathBuf,
    /// Messages per 64 B run.
    pub count_small: u64,
    /// Messages per 64 KiB run.
    pub count_large: u64,
    /// Deadline of each role.
    pub timeout: Duration,
}

/// Why multicast rows cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (network namespaces need it)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Two namespaces on a veth pair, with a daemon in each; removed on drop.
struct Lan {
    ns: [String; 2],
    daemons: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Lan {
    fn drop(&mut self) {
        crate::child::kill_all(&mut self.daemons);
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Environment variable naming the namespaces' prefix (`bench/run.sh`
/// sets it, to remove them if this process is killed).
pub const NETNS_PREFIX_ENV: &str = "NCBENCH_NETNS_PREFIX";

impl Lan {
    fn new() -> Result<Lan> {
        let prefix = std::env::var(NETNS_PREFIX_ENV)
            .unwrap_or_else(|_| format!("ncbench{}", std::process::id()));
        let lan = Lan {
            ns: [format!("{prefix}a"), format!("{prefix}b")],
            daemons: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("ncbench-mcast")
                .tempdir()
                .context("temporary directory")?,
        };
        let [a, b] = &lan.ns;
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&[
            "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b,
        ])?;
        for (i, ns) in [a, b].into_iter().enumerate() {
            let cidr = format!("10.78.0.{}/24", i + 1);
            ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(lan)
    }

    /// Socket directory of host `i`'s daemon.
    fn sockets(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("host{i}"))
    }

    /// Starts a daemon on each host and waits until each hears the other.
    fn start(&mut self, ncserver: &Path, key: bool, timeout: Duration) -> Result<()> {
        for i in 0..2 {
            let dir = self.sockets(i);
            std::fs::create_dir_all(&dir)?;
            let key = if key {
                format!(r#""key": "{KEY}","#)
            } else {
                String::new()
            };
            let cfg = self.dir.path().join(format!("host{i}.json"));
            // Messages from the network are never waited for (a local
            // client too slow for them misses them, with an nc-gap): the
            // receiving host's subscriber, sharing two CPUs with both
            // daemons and the publisher, gets a queue as large as a run,
            // so the row measures the daemons' transport, not that race.
            std::fs::write(
                &cfg,
                format!(
                    r#"{{ "connecttonet": true, "nodename": "bench{i}", {key}
                       "socketdir": "{}", "queuebytes": "{SINK_QUEUE}",
                       "channels": {{ "bench": {{ "propagatetonet": true }} }} }}"#,
                    dir.display()
                ),
            )?;
            let log = std::fs::File::create(self.dir.path().join(format!("host{i}.log")))?;
            let mut cmd = Command::new("ip");
            // `ip netns exec` execs the daemon: if this process dies, the
            // kernel kills it too, so no daemon outlives a killed run.
            // SAFETY: prctl is async-signal-safe and touches no memory.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd
                .args(["netns", "exec", &self.ns[i]])
                .arg(ncserver)
                .args(["--log", "warn"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", ncserver.display()))?;
            self.daemons.push(child);
        }
        let deadline = Instant::now() + timeout;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for i in 0..2 {
            let dir = self.sockets(i);
            rt.block_on(async {
                loop {
                    if peer_up(&dir).await {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        let log =
                            std::fs::read_to_string(self.dir.path().join(format!("host{i}.log")))
                                .unwrap_or_default();
                        bail!("the daemons never saw each other; host {i} log:\n{log}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })?;
        }
        Ok(())
    }

    /// Drops one in ten UDP datagrams arriving at host `i`.
    fn add_loss(&self, i: usize) -> Result<()> {
        let path = self.dir.path().join("loss.nft");
        std::fs::write(
            &path,
            "table inet ncbenchloss {\n  chain input {\n    \
             type filter hook input priority 0; policy accept;\n    \
             meta l4proto udp numgen random mod 10 0 drop\n  }\n}\n",
        )?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns[i], "nft", "-f"])
            .arg(&path)
            .output()
            .context("running nft")?;
        if !out.status.success() {
            bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}

/// True once the daemon in `dir` has a peer up.
async fn peer_up(dir: &Path) -> bool {
    let Ok(c) = netcluster::Client::builder("control")
        .socket_dir(dir)
        .connect()
        .await
    else {
        return false;
    };
    let Ok(v) = c.request("nc-control-showpeers", &()).await else {
        return false;
    };
    v["peers"]
        .as_array()
        .is_some_and(|p| p.iter().any(|x| x["up"] == true))
}

/// Runs one variant on a fresh pair of hosts; returns messages per second
/// and bytes per second, counted at the subscriber.
pub fn run_one(o: &Options, v: &Variant) -> Result<(f64, f64)> {
    let mut lan = Lan::new()?;
    lan.start(&o.ncserver, v.key, o.timeout)?;
    if v.loss {
        lan.add_loss(1)?;
    }
    let count = if v.size > 1024 {
        o.count_large
    } else {
        o.count_small
    };
    let at = |i: usize| lan.sockets(i).display().to_string();
    let common = |role: &str, i: usize| {
        vec![
            role.to_string(),
            "--system".into(),
            "nc".into(),
            "--at".into(),
            at(i),
            "--count".into(),
            count.to_string(),
            "--size".into(),
            v.size.to_string(),
        ]
    };
    let mut sub_args = common("sub", 1);
    sub_args.extend(["--timeout-s".into(), o.timeout.as_secs().to_string()]);
    let mut sub = Proc::spawn(&o.exe, &sub_args, format!("{} subscriber", v.id))?;
    sub.ready(o.timeout)?;
    let mut publ = Proc::spawn(&o.exe, &common("pub", 0), format!("{} publisher", v.id))?;
    let got = publ
        .result::<PubOut>(o.timeout)
        .and_then(|p| Ok((p, sub.result::<SubOut>(o.timeout)?)));
    let (p, s) = match got {
        Ok(x) => x,
        Err(e) => {
            // Say what the daemons saw: loss, NAKs, gaps, rejections.
            let totals = |i: usize| {
                let dir = lan.sockets(i);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let c = netcluster::Client::builder("control")
                        .socket_dir(&dir)
                        .connect()
                        .await
                        .ok()?;
                    let v: serde_json::Value = c.request("nc-control-showpeers", &()).await.ok()?;
                    Some(v["totals"].to_string())
                })
            };
            return Err(e.context(format!(
                "sender totals: {}\nreceiver totals: {}",
                totals(0).unwrap_or_default(),
                totals(1).unwrap_or_default()
            )));
        }
    };
    anyhow::ensure!(s.count == count, "subscriber got {} of {count}", s.count);
    let secs = s.last_ns.saturating_sub(p.start_ns).max(1) as f64 / 1e9;
    let rate = count as f64 / secs;
    Ok((rate, rate * v.size as f64))
}
