//! Rules for channel and event names, shared by the server (config, frames)
//! and the client library so both refuse the same names with the same words.

use crate::frame::{MAX_EVENT_LEN, WILDCARD};

/// Longest channel name in bytes (the wire carries it with a one-byte length).
/// The socket path limit usually binds first; the server checks that too.
pub const MAX_CHANNEL_LEN: usize = 255;

/// The channel of the daemon's control requests (`nc-control-*`). It always
/// exists, and routing rules never copy other channels' messages into it.
pub const CONTROL_CHANNEL: &str = "control";

/// Prefix of each channel's socket file (and Windows pipe) name.
pub const SOCKET_PREFIX: &str = "netcluster-";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty {
        /// "channel" or "event".
        kind: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{kind} name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// "channel" or "event".
        kind: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character it may not.
    #[error("{kind} name {name:?} contains {what}, which is not allowed")]
    BadChar {
        /// "channel" or "event".
        kind: &'static str,
        /// The name.
        name: String,
        /// Description of the character.
        what: &'static str,
    },
    /// The name is reserved.
    #[error("{kind} name {name:?} is reserved: {why}")]
    Reserved {
        /// "channel" or "event".
        kind: &'static str,
        /// The name.
        name: String,
        /// Why.
        why: &'static str,
    },
}

/// Checks a channel name: it becomes part of a file or pipe name, so it may
/// not be empty, `.`/`..`, or hold `/`, `\`, NUL or control characters.
pub fn check_channel(name: &str) -> Result<(), NameError> {
    let kind = "channel";
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
            max: MAX_CHANNEL_LEN,
        });
    }
    if name == "." || name == ".." {
        return Err(NameError::Reserved {
            kind,
            name: name.into(),
            why: "it names a directory",
        });
    }
    for c in name.chars() {
        let what = match c {
            '/' => "'/'",
            '\\' => "'\\'",
            '\0' => "a NUL byte",
            c if c.is_control() => "a control character",
            _ => continue,
        };
        return Err(NameError::BadChar {
            kind,
            name: name.into(),
            what,
        });
    }
    Ok(())
}

/// Checks an event name used to emit: non-empty, at most
/// [`MAX_EVENT_LEN`] bytes, and not the wildcard `*`.
pub fn check_event(name: &str) -> Result<(), NameError> {
    check_subscription(name)?;
    if name == WILDCARD {
        return Err(NameError::Reserved {
            kind: "event",
            name: name.into(),
            why: "'*' subscribes to all events and cannot be emitted",
        });
    }
    Ok(())
}

/// Checks an event name used to subscribe (`*` allowed).
pub fn check_subscription(name: &str) -> Result<(), NameError> {
    let kind = "event";
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_EVENT_LEN {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
            max: MAX_EVENT_LEN,
        });
    }
    Ok(())
}

/// Environment variable that overrides the socket directory.
pub const SOCKET_DIR_ENV: &str = "NETCLUSTER_SOCKET_DIR";

/// The socket directory when the config does not set one: the environment
/// variable `NETCLUSTER_SOCKET_DIR` (if non-empty), else `/var/run` for root
/// (the seed's path), else `$XDG_RUNTIME_DIR` (if non-empty), else `/tmp`.
/// Daemon and clients use this same rule so they meet without configuration.
/// `env` reads a variable; `is_root` tells whether the process is root.
pub fn default_socket_dir(
    env: impl Fn(&str) -> Option<String>,
    is_root: bool,
) -> std::path::PathBuf {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(d) = nonempty(SOCKET_DIR_ENV) {
        return d.into();
    }
    if is_root {
        return "/var/run".into();
    }
    nonempty("XDG_RUNTIME_DIR")
        .unwrap_or_else(|| "/tmp".into())
        .into()
}

/// The file name of a channel's socket inside the socket directory.
pub fn socket_file_name(channel: &str) -> String {
    format!("{SOCKET_PREFIX}{channel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert!(check_channel("A").is_ok());
        assert!(check_channel("sensors.temp-1 ü").is_ok());
        assert!(matches!(check_channel(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            check_channel("a/b"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            check_channel("a\\b"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            check_channel("a\0"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            check_channel("a\nb"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            check_channel(".."),
            Err(NameError::Reserved { .. })
        ));
        assert!(matches!(
            check_channel(&"x".repeat(256)),
            Err(NameError::TooLong { .. })
        ));
        let e = check_channel("a/b").unwrap_err().to_string();
        assert_eq!(e, "channel name \"a/b\" contains '/', which is not allowed");
    }

    #[test]
    fn socket_dir_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = &[(SOCKET_DIR_ENV, "/s"), ("XDG_RUNTIME_DIR", "/x")];
        assert_eq!(
            default_socket_dir(env(all), true),
            std::path::PathBuf::from("/s")
        );
        let xdg = &[(SOCKET_DIR_ENV, ""), ("XDG_RUNTIME_DIR", "/x")];
        assert_eq!(
            default_socket_dir(env(xdg), true),
            std::path::PathBuf::from("/var/run")
        );
        assert_eq!(
            default_socket_dir(env(xdg), false),
            std::path::PathBuf::from("/x")
        );
        assert_eq!(
            default_socket_dir(env(&[]), false),
            std::path::PathBuf::from("/tmp")
        );
    }

    #[test]
    fn event_names() {
        assert!(check_event("log").is_ok());
        assert!(check_event("*").is_err());
        assert!(check_subscription("*").is_ok());
        assert!(check_event("").is_err());
        assert!(check_event(&"e".repeat(MAX_EVENT_LEN + 1)).is_err());
    }
}
