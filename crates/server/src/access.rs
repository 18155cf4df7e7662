//! Access control: who may connect to a channel, and who is an admin.
//!
//! A channel with `allowuids` or `allowgids` accepts only peers whose
//! kernel-reported credentials (`SO_PEERCRED`) match: the user id is listed,
//! or the primary or a supplementary group is. Root is always allowed.
//! Without either list the socket's file mode and group decide alone.
//!
//! An admin, who may call the control functions that change the daemon,
//! is root, the daemon's own user, or a peer matching the top-level
//! `adminuids` / `admingids` the same way. Where the platform reports no
//! user for a peer (Windows named pipes, whose access list `socketmode`
//! sets), a peer is an admin only while both lists are empty, as a channel
//! without lists admits whom the pipe admits.

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
    let groups = groups(peer);
    if groups.iter().any(|g| gids.contains(g)) {
        return Ok(());
    }
    Err(format!(
        "access denied: uid {uid} (groups {groups:?}) is not allowed on channel {channel:?} \
         (allowuids {uids:?}, allowgids {gids:?})"
    ))
}

/// Checks that `peer` may call the control function `command`, which
/// changes the daemon; `Err` is the message for the caller.
pub fn admin(command: &str, peer: &PeerInfo, uids: &[u32], gids: &[u32]) -> Result<(), String> {
    let denied = |who: String| {
        format!(
            "permission denied: {command} needs admin (root, the daemon's user, or \
             adminuids/admingids); you are {who}"
        )
    };
    let Some(uid) = peer.uid else {
        if cfg!(windows) && uids.is_empty() && gids.is_empty() {
            return Ok(());
        }
        return Err(denied(
            "a peer whose user the system does not report".into(),
        ));
    };
    if uid == 0 || Some(uid) == daemon_uid() || uids.contains(&uid) {
        return Ok(());
    }
    let groups = groups(peer);
    if groups.iter().any(|g| gids.contains(g)) {
        return Ok(());
    }
    Err(denied(format!("uid {uid}, groups {groups:?}")))
}

/// The daemon's own (effective) user, where the platform has one.
fn daemon_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Some(unsafe { libc::geteuid() })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// A peer's primary group, then its supplementary groups.
fn groups(peer: &PeerInfo) -> Vec<u32> {
    let mut groups: Vec<u32> = peer.gid.into_iter().collect();
    if let Some(pid) = peer.pid {
        for g in supplementary_groups(pid) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    groups
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

    #[test]
    fn admins_are_root_the_daemons_user_and_the_lists() {
        let me = daemon_uid().unwrap_or(0);
        let other = if me == 4242 { 4343 } else { 4242 };
        assert!(admin("reloadconfig", &peer(0, 0), &[], &[]).is_ok());
        assert!(admin("reloadconfig", &peer(me, 7), &[], &[]).is_ok());
        assert!(admin("reloadconfig", &peer(other, 7), &[other], &[]).is_ok());
        assert!(admin("reloadconfig", &peer(other, 7), &[], &[7]).is_ok());
        let e = admin("reloaconfig", &peer(other, 7), &[1], &[2]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "permission denied: reloaconfig needs admin (root, the daemon's user, or \
                 adminuids/admingids); you are uid {other}, groups [7]"
            )
        );
        let unknown = admin("reloadconfig", &PeerInfo::default(), &[1], &[]);
        assert!(unknown.unwrap_err().contains("does not report"));
        assert_eq!(
            admin("reloadconfig", &PeerInfo::default(), &[], &[]).is_ok(),
            cfg!(windows)
        );
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
