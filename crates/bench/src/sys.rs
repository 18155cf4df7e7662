//! What the benchmark reads from and sets on Linux processes: a broker's CPU
//! time and memory from `/proc`, CPU affinity of a whole process or of this
//! one, the monotonic clock shared by all processes (so a publisher's start
//! and a subscriber's last message can be compared), and the fd limit.

use std::io;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Nanoseconds on `CLOCK_MONOTONIC`: the same clock in every process of
/// the machine, unlike `Instant`, which cannot leave its process.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// User + system CPU time of all threads of `pid`, in nanoseconds
/// (`utime` + `stime` of `/proc/PID/stat`, whose unit is a clock tick,
/// usually 10 ms: measure over runs of seconds).
pub fn cpu_time_ns(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_cpu_ticks(&text).with_context(|| format!("parsing {path}"))?;
    Ok(ticks * 1_000_000_000 / clock_ticks_per_sec())
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no ')' after the command name")?;
    // After ")" come field 3 (state), 4, ...: utime is field 14 -> index 11.
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("only {} fields after the command name", fields.len());
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok(utime + stime)
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    /// `VmRSS`: resident now, in KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident, in KiB.
    pub hwm_kib: u64,
}

/// Reads [`Mem`] of `pid`.
pub fn mem(pid: u32) -> Result<Mem> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_mem(&text).with_context(|| format!("parsing {path}"))
}

/// `VmRSS` and `VmHWM` of a `/proc/PID/status` text.
pub fn parse_status_mem(status: &str) -> Result<Mem> {
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} line"))?;
        let kib = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("bad {name} line {line:?}"))?;
        Ok(kib)
    };
    Ok(Mem {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Resets the peak resident size (`VmHWM`) of `pid` to its current RSS
/// (`echo 5 > /proc/PID/clear_refs`, Linux 4.0+; needs the right to
/// write there, e.g. the same user or root).
pub fn reset_peak(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("writing 5 to {path}"))
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET only writes inside `set` (it ignores c >= CPU_SETSIZE).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

fn set_affinity(tid: i32, cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_affinity(tid: i32) -> io::Result<Vec<usize>> {
    let mut set = cpu_set(&[]);
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: reads inside `set`; c < CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins this process (the calling thread, and so every thread it starts
/// later) to `cpus`. Call before starting a runtime.
pub fn pin_self(cpus: &[usize]) -> Result<()> {
    set_affinity(0, cpus).with_context(|| format!("pinning this process to CPUs {cpus:?}"))
}

/// The CPUs this process may run on.
pub fn own_cpus() -> Result<Vec<usize>> {
    get_affinity(0).context("reading this process's CPU affinity")
}

/// Affinity of every thread of a process, to put back with [`restore`].
#[derive(Debug)]
pub struct SavedAffinity(Vec<(i32, Vec<usize>)>);

fn threads(pid: u32) -> Result<Vec<i32>> {
    let dir = format!("/proc/{pid}/task");
    let mut tids = Vec::new();
    for e in std::fs::read_dir(Path::new(&dir)).with_context(|| format!("listing {dir}"))? {
        let e = e?;
        if let Some(t) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(t);
        }
    }
    Ok(tids)
}

/// Pins every thread of `pid` to `cpus` (`taskset -a -p`); threads it
/// starts later inherit that. Returns what to restore.
pub fn pin_process(pid: u32, cpus: &[usize]) -> Result<SavedAffinity> {
    let mut saved = Vec::new();
    for tid in threads(pid)? {
        match get_affinity(tid) {
            Ok(old) => {
                set_affinity(tid, cpus)
                    .with_context(|| format!("pinning thread {tid} of {pid} to {cpus:?}"))?;
                saved.push((tid, old));
            }
            // The thread ended between listing and pinning.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e).with_context(|| format!("affinity of thread {tid}")),
        }
    }
    Ok(SavedAffinity(saved))
}

/// Puts back the affinity saved by [`pin_process`]. Threads started while
/// pinned get the union of the saved sets.
pub fn restore(pid: u32, saved: SavedAffinity) -> Result<()> {
    let mut union: Vec<usize> = saved.0.iter().flat_map(|(_, c)| c.clone()).collect();
    union.sort_unstable();
    union.dedup();
    for tid in threads(pid)? {
        let cpus = saved
            .0
            .iter()
            .find(|(t, _)| *t == tid)
            .map(|(_, c)| c.as_slice())
            .unwrap_or(&union);
        match set_affinity(tid, cpus) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e).with_context(|| format!("restoring thread {tid}")),
        }
    }
    Ok(())
}

/// Raises this process's open-file limit to `want` (or the hard limit, if
/// lower, unless we may raise that too, as root may).
pub fn raise_nofile(want: u64) -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error()).context("getrlimit(NOFILE)");
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let mut new = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: `new` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        new.rlim_cur = lim.rlim_max.min(want);
        new.rlim_max = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error()).context("setrlimit(NOFILE)");
        }
    }
    Ok(new.rlim_cur)
}

/// Parses a CPU list such as `0`, `0,1` or `0-3`.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
                if a > b {
                    bail!("bad CPU range {part:?}");
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().with_context(|| format!("bad CPU {part:?}"))?),
        }
    }
    if out.is_empty() {
        bail!("empty CPU list {s:?}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), 300);
    }

    #[test]
    fn own_stat_and_status_parse() {
        let me = std::process::id();
        cpu_time_ns(me).unwrap();
        let m = mem(me).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0").unwrap(), vec![0]);
        assert_eq!(parse_cpus("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("3-1").is_err());
    }

    #[test]
    fn clock_moves() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
    }
}
