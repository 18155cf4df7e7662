//! Network interfaces by name or address, for the `interface` key: the
//! index (for IPv6 and `ip_mreqn`) and the IPv4 address (for
//! `IP_MULTICAST_IF`) of the interface a user names.

use std::net::{IpAddr, Ipv4Addr};

/// An interface as the multicast setup needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name, e.g. `eth0`.
    pub name: String,
    /// Its index (0 if unknown).
    pub index: u32,
    /// Its first IPv4 address, if any.
    pub ipv4: Option<Ipv4Addr>,
}

/// Finds the interface named `spec`, or the one holding address `spec`.
pub fn find(spec: &str) -> Result<Interface, String> {
    // Interfaces cannot be listed here: an address is taken as given.
    #[cfg(not(unix))]
    if let Ok(addr) = spec.parse::<IpAddr>() {
        return Ok(Interface {
            name: spec.to_string(),
            index: 0,
            ipv4: match addr {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            },
        });
    }
    let all = list().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let by_addr: Option<IpAddr> = spec.parse().ok();
    let mut names: Vec<String> = Vec::new();
    for (name, addr) in &all {
        if !names.contains(name) {
            names.push(name.clone());
        }
        if Some(*addr) == by_addr || name == spec {
            return Ok(Interface {
                name: name.clone(),
                index: index_of(name),
                ipv4: all.iter().find_map(|(n, a)| match a {
                    IpAddr::V4(v4) if n == name => Some(*v4),
                    _ => None,
                }),
            });
        }
    }
    Err(format!(
        "interface {spec:?}: no interface has that name or address (interfaces: {})",
        names.join(", ")
    ))
}

#[cfg(unix)]
fn index_of(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

#[cfg(not(unix))]
fn index_of(_name: &str) -> u32 {
    0
}

/// Every (interface name, address) pair of this host.
#[cfg(unix)]
fn list() -> std::io::Result<Vec<(String, IpAddr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive
        // until freeifaddrs; its fields are valid C data as documented.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: ifa_addr is non-null and points to a sockaddr whose
            // family tells its real type, checked before each cast.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                // SAFETY: family is AF_INET, so this is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push((
                    name,
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                ));
            } else if family == libc::AF_INET6 {
                // SAFETY: family is AF_INET6, so this is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push((
                    name,
                    IpAddr::V6(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                ));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(not(unix))]
fn list() -> std::io::Result<Vec<(String, IpAddr)>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "interface names are not supported on this platform; give the interface's address",
    ))
}

/// This host's name, for the default `nodename`.
pub fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is writable for its whole length.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            if end > 0 {
                return String::from_utf8_lossy(&buf[..end]).into_owned();
            }
        }
    }
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "netcluster".into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_by_name_and_address() {
        let lo = find("lo").unwrap();
        assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
        assert!(lo.index > 0);
        assert_eq!(find("127.0.0.1").unwrap().name, "lo");
        let e = find("nope0").unwrap_err();
        assert!(e.contains("no interface") && e.contains("lo"), "{e}");
        assert!(!hostname().is_empty());
    }
}
