//! Multi-host tests on one machine: network namespaces joined by a bridge.
//!
//! A [`Lan`] creates one namespace per host plus one holding a bridge
//! (multicast snooping off, so multicast floods like on a plain switch),
//! links each host to the bridge with a veth pair, gives host `i` the
//! address `10.77.0.{i+1}/24` and a route for multicast, and runs an
//! `ncserver` per host on request. Unix sockets are not namespaced, so the
//! test process talks to every host's daemon through its socket directory.
//! Everything is removed on drop. Traffic stays inside these namespaces.
//!
//! Needs root and `ip` (iproute2); `nft` (nftables) for loss injection.
//! Without them [`Lan::new`] prints why and returns `None` so the test can
//! skip — unless `NETCLUSTER_REQUIRE_NETNS=1`, where it panics instead.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Environment variable that turns a skip into a failure (set in CI).
pub const REQUIRE_ENV: &str = "NETCLUSTER_REQUIRE_NETNS";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One host of a [`Lan`].
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Its address on the LAN.
    pub ip: Ipv4Addr,
    /// Socket directory of its daemon.
    pub socket_dir: tempfile::TempDir,
    daemons: Vec<(Child, PathBuf)>,
}

impl Host {
    /// The socket directory.
    pub fn dir(&self) -> &Path {
        self.socket_dir.path()
    }
}

/// Namespaces on a bridge. See the module docs.
pub struct Lan {
    bridge: String,
    /// The hosts.
    pub hosts: Vec<Host>,
    workdir: tempfile::TempDir,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why multi-host tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not running as root".into());
        }
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

/// Environment variable naming the file a skip is recorded in; by default
/// [`default_skip_log`].
pub const SKIP_LOG_ENV: &str = "NETCLUSTER_SKIP_LOG";

/// `target/netns-skipped.txt` in this workspace: `cargo test` captures a
/// passing test's output, so a skip's reason printed there is seen only
/// with `--nocapture`; scripts/test.sh prints this file instead.
pub fn default_skip_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/netns-skipped.txt")
}

/// Skips (returns `None` after printing why, and appending it to the skip
/// log) or panics under CI.
fn skip(why: &str) -> Option<Lan> {
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("multi-host test cannot run: {why} ({REQUIRE_ENV}=1 requires it)");
    }
    let test = std::thread::current().name().unwrap_or("?").to_string();
    eprintln!("SKIPPED: multi-host test needs root and iproute2: {why}");
    let log = std::env::var_os(SKIP_LOG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(default_skip_log);
    // Best effort: a skip must not fail the test.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        use std::io::Write;
        let _ = writeln!(f, "{test}: {why}");
    }
    None
}

impl Lan {
    /// Creates `n` hosts on a bridge, or `None` (after printing why) when
    /// this machine cannot; panics instead under `NETCLUSTER_REQUIRE_NETNS=1`.
    pub fn new(n: usize) -> Option<Lan> {
        if let Some(why) = unavailable() {
            return skip(&why);
        }
        let id = format!(
            "nc{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let bridge = format!("{id}br");
        let mut lan = Lan {
            bridge: bridge.clone(),
            hosts: Vec::new(),
            workdir: crate::tempdir(),
        };
        if let Err(e) = lan.build(&id, n) {
            return skip(&e);
        }
        Some(lan)
    }

    fn build(&mut self, id: &str, n: usize) -> Result<(), String> {
        let br = self.bridge.clone();
        ip(&["netns", "add", &br])?;
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{id}h{i}");
            ip(&["netns", "add", &ns])?;
            let host = Host {
                ns: ns.clone(),
                ip: Ipv4Addr::new(10, 77, 0, i as u8 + 1),
                socket_dir: crate::tempdir(),
                daemons: Vec::new(),
            };
            self.hosts.push(host);
            let peer = format!("v{i}");
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns",
                &br,
            ])?;
            ip(&["-n", &br, "link", "set", &peer, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &peer, "up"])?;
            let cidr = format!("10.77.0.{}/24", i + 1);
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(())
    }

    /// Runs a command inside host `i`'s namespace.
    pub fn exec(&self, i: usize, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(cmd)
            .output()
            .expect("run ip netns exec")
    }

    /// Runs `f` on a thread whose network namespace is host `i`'s, and
    /// returns its result: sockets it opens live on that host (to capture
    /// or inject datagrams like another machine on the LAN would).
    #[cfg(target_os = "linux")]
    pub fn run_in<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.hosts[i].ns);
        std::thread::scope(|s| {
            s.spawn(move || {
                use std::os::fd::AsRawFd;
                let ns = std::fs::File::open(&path).expect("open the namespace");
                // SAFETY: setns with a valid namespace fd; it changes the
                // network namespace of this thread only.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in the namespace panicked")
        })
    }

    /// Removes host `i`'s multicast route: multicast sends then fail there.
    pub fn remove_multicast_route(&self, i: usize) {
        ip(&[
            "-n",
            &self.hosts[i].ns,
            "route",
            "del",
            "224.0.0.0/4",
            "dev",
            "eth0",
        ])
        .expect("remove route");
    }

    /// Drops one in `modulo` UDP datagrams on host `i`'s `hook` ("input"
    /// or "output") with nftables (`numgen random mod N 0 drop`).
    pub fn drop_udp(&self, i: usize, hook: &str, modulo: u32) {
        // One statement per line: nft refuses `drop; }` on one line.
        let rules = format!(
            "table inet ncloss {{\n  chain {hook} {{\n    \
             type filter hook {hook} priority 0; policy accept;\n    \
             meta l4proto udp numgen random mod {modulo} 0 drop\n  }}\n}}\n"
        );
        let path = self.workdir.path().join(format!("nft-{i}-{hook}.conf"));
        std::fs::write(&path, rules).expect("write nft rules");
        let out = self.exec(i, &["nft", "-f", path.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `ncserver` (at `bin`) on host `i` with `config` (JSON text,
    /// written to a file); waits until it serves. Returns its index among
    /// the host's daemons (several may run on one host with `loopback`).
    pub fn start_daemon(&mut self, i: usize, bin: &Path, config: &str) -> usize {
        let k = self.hosts[i].daemons.len();
        let cfg = self.workdir.path().join(format!("host{i}-{k}.json"));
        std::fs::write(&cfg, config).expect("write config");
        let log = self.workdir.path().join(format!("host{i}-{k}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .arg(bin)
            .arg(&cfg)
            .env("NETCLUSTER_SOCKET_DIR", self.hosts[i].dir())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ncserver");
        self.hosts[i].daemons.push((child, log.clone()));
        let host = &mut self.hosts[i];
        crate::wait_until(20, "ncserver to serve in its namespace", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(st)) = host.daemons[k].0.try_wait() {
                panic!("ncserver on {} exited with {st}:\n{text}", host.ns);
            }
            text.contains("ncserver serving")
        });
        k
    }

    /// The process id of daemon `k` on host `i` (`ip netns exec` execs
    /// it, so this is the daemon itself), e.g. to read its memory use.
    pub fn daemon_pid(&self, i: usize, k: usize) -> u32 {
        self.hosts[i].daemons[k].0.id()
    }

    /// The log of daemon `k` on host `i` so far.
    pub fn log(&self, i: usize, k: usize) -> String {
        std::fs::read_to_string(&self.hosts[i].daemons[k].1).unwrap_or_default()
    }

    /// Stops every daemon of host `i` (SIGKILL) and waits for them.
    pub fn kill_daemons(&mut self, i: usize) {
        for (c, _) in &mut self.hosts[i].daemons {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.hosts[i].daemons.clear();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill_daemons(i);
        }
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.bridge]);
    }
}
