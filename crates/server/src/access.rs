//! Access control: who may connect to a channel.
//!
//! A channel with `allowuids` or `allowgids` accepts only peers whose
//! kernel-reported credentials (`SO_PEERCRED`) match: the user id is listed,
//! or the primary or a supplementary group is. Root is always allowed.
//! Without either list the socket's file mode and group decide alone.

use netcluster_local::PeerInfo;

/// Checks a peer against a channel's lists; `Err` says why it was refused.
pub fn check(channel: &str, peer: &PeerInfo, uids: &[u32], gids: &[u32]) -> Result<(), String> {
    if uids.is_empty() && gids.is_empty() {
        return Ok(());
    }
    let Some(uid) = peer.uid else {
        return Err(format!(
            "channel {channel:?} restricts access and the peer's credentials are unknown"
        ));
    };
    if uid == 0 || uids.contains(&uid) {
        return Ok(());
    }
    let mut groups: Vec<u32> = peer.gid.into_iter().collect();
    if let Some(pid) = peer.pid {
        groups.extend(supplementary_groups(pid));
    }
    if groups.iter().any(|g| gids.contains(g)) {
        return Ok(());
    }
    Err(format!(
        "access denied: uid {uid} (groups {groups:?}) is not allowed on channel {channel:?} \
         (allowuids {uids:?}, allowgids {gids:?})"
    ))
}

/// The supplementary groups of a process, from `/proc/{pid}/status`
/// (empty where that is not available).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> PeerInfo {
        PeerInfo {
            uid: Some(uid),
            gid: Some(gid),
            pid: None,
        }
    }

    #[test]
    fn lists() {
        assert!(check("A", &peer(1000, 1000), &[], &[]).is_ok());
        assert!(check("A", &peer(1000, 1000), &[1000], &[]).is_ok());
        assert!(check("A", &peer(1000, 50), &[], &[50]).is_ok());
        assert!(
            check("A", &peer(0, 0), &[1000], &[]).is_ok(),
            "root is always allowed"
        );
        let e = check("A", &peer(1001, 1001), &[1000], &[50]).unwrap_err();
        assert!(e.contains("uid 1001") && e.contains("channel \"A\""), "{e}");
        assert!(check("A", &PeerInfo::default(), &[1000], &[]).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn supplementary_groups_of_this_process_are_read() {
        let me = std::process::id() as i32;
        // The kernel's own list for this process, to compare with.
        // SAFETY: a zero-sized query returns the count; the buffer then has
        // room for that many gids.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut want = vec![0 as libc::gid_t; n.max(0) as usize];
        // SAFETY: `want` holds `n` writable gids.
        let got = unsafe { libc::getgroups(n, want.as_mut_ptr()) };
        want.truncate(got.max(0) as usize);
        let mut want: Vec<u32> = want.into_iter().collect();
        want.sort_unstable();
        let mut read = supplementary_groups(me);
        read.sort_unstable();
        assert_eq!(read, want);
        assert!(supplementary_groups(-1).is_empty());
    }
}
