//! How single config values are read and checked.
//!
//! This module owns the meaning of each kind of value: booleans, the
//! multicast address, the port, the socket directory and mode (octal digits
//! in a string), sizes (`16777216`, `"16 MiB"`, `"1MB"`), and
//! `propagatetochannels` (false / true / regex / list of regexes). Each
//! reader takes the value's node and key path and returns the value or a
//! [`Problem`] located at the value. It also holds the edit distance used to
//! suggest keys.

use std::net::IpAddr;
use std::path::PathBuf;

use regex::Regex;

use super::jsonc::{join_index, Kind, Node};
use super::validate::Problem;
use super::{GroupSpec, PropagateSpec, SlowConsumer, MAX_SOCKETMODE};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Size units, lowercase, with their multipliers. `b` or no unit is bytes.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("kib", KIB),
    ("mib", MIB),
    ("gib", GIB),
];

/// A JSON boolean.
pub(super) fn boolean(v: &Node, path: &str) -> Result<bool, Problem> {
    match v.kind {
        Kind::Bool(b) => Ok(b),
        _ => Err(Problem::expected(v, path, "a boolean")),
    }
}

/// A JSON string.
fn string<'a>(v: &'a Node, path: &str) -> Result<&'a str, Problem> {
    match &v.kind {
        Kind::String(s) => Ok(s),
        _ => Err(Problem::expected(v, path, "a string")),
    }
}

/// `http.listen`: an address and port, `127.0.0.1:9454` or `[::1]:9454`.
pub(super) fn listen(v: &Node, path: &str) -> Result<std::net::SocketAddr, Problem> {
    let s = string(v, path)?;
    s.parse().map_err(|_| {
        Problem::at(
            v,
            path,
            format!(
                "{} is not an address and port such as \"127.0.0.1:9454\" or \"[::1]:9454\"",
                quote(s)
            ),
        )
    })
}

/// `addr`: an IPv4 or IPv6 address.
pub(super) fn addr(v: &Node, path: &str) -> Result<IpAddr, Problem> {
    let s = string(v, path)?;
    s.parse().map_err(|_| {
        Problem::at(
            v,
            path,
            format!("{} is not an IPv4 or IPv6 address", quote(s)),
        )
    })
}

/// `port`: an integer in 1..=65535.
pub(super) fn port(v: &Node, path: &str) -> Result<u16, Problem> {
    let Kind::Number(n) = &v.kind else {
        return Err(Problem::expected(v, path, "an integer"));
    };
    match n.as_u64().map(u16::try_from) {
        Some(Ok(p)) if p != 0 => Ok(p),
        _ => Err(Problem::at(
            v,
            path,
            format!("port must be between 1 and 65535, found {n}"),
        )),
    }
}

/// `socketdir`: a non-empty path without NUL bytes.
pub(super) fn socketdir(v: &Node, path: &str) -> Result<PathBuf, Problem> {
    let s = string(v, path)?;
    if s.is_empty() {
        return Err(Problem::at(v, path, "socketdir must not be empty"));
    }
    if s.contains('\0') {
        return Err(Problem::at(
            v,
            path,
            "socketdir must not contain a NUL byte",
        ));
    }
    Ok(PathBuf::from(s))
}

/// `socketmode`: octal digits in a string, at most `0777`. A JSON number is
/// refused because `660` would silently mean decimal 660.
pub(super) fn socketmode(v: &Node, path: &str) -> Result<u32, Problem> {
    let s = match &v.kind {
        Kind::String(s) => s,
        Kind::Number(_) => {
            return Err(Problem::at(
                v,
                path,
                "socketmode must be written as a string of octal digits, e.g. \"0660\", not as a number",
            ))
        }
        _ => return Err(Problem::expected(v, path, "a string of octal digits")),
    };
    if s.is_empty() || !s.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(Problem::at(
            v,
            path,
            format!(
                "socketmode must be a string of octal digits like \"0660\", found {}",
                quote(s)
            ),
        ));
    }
    // Saturate so that any number of digits is judged by the range check.
    let mode = s.chars().fold(0u32, |m, c| {
        m.saturating_mul(8).saturating_add(c as u32 - '0' as u32)
    });
    if mode > MAX_SOCKETMODE {
        return Err(Problem::at(
            v,
            path,
            format!(
                "socketmode must be at most {}, found {}",
                quote(&format_mode(MAX_SOCKETMODE)),
                quote(s)
            ),
        ));
    }
    Ok(mode)
}

/// A mode as the config writes it: `"0660"`.
pub(super) fn format_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// A size in bytes: a non-negative integer or a string with a unit; must
/// lie in `min..=max` (and fit a `usize` on this platform).
pub(super) fn size(v: &Node, path: &str, name: &str, min: u64, max: u64) -> Result<usize, Problem> {
    let bytes = match &v.kind {
        Kind::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(b), _) => Some(b),
            // Negative: judged by the range message below.
            (None, Some(_)) => None,
            (None, None) => {
                return Err(Problem::at(
                    v,
                    path,
                    format!("{name} must be a whole number of bytes, found {n}"),
                ))
            }
        },
        Kind::String(s) => Some(parse_size(s).ok_or_else(|| {
            Problem::at(
                v,
                path,
                format!(
                    "{} is not a size; write a number of bytes, optionally followed by \
                     a unit: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of 1024)",
                    quote(s)
                ),
            )
        })?),
        _ => {
            return Err(Problem::expected(
                v,
                path,
                "a size (an integer number of bytes or a string like \"16MiB\")",
            ))
        }
    };
    let found = match (bytes, &v.kind) {
        (Some(b), _) => format!("{b} bytes"),
        (None, Kind::Number(n)) => n.to_string(),
        (None, _) => unreachable!("only negative numbers have no byte count"),
    };
    match bytes.filter(|b| (min..=max).contains(b)) {
        Some(b) => usize::try_from(b).map_err(|_| {
            Problem::at(
                v,
                path,
                format!("{name} of {found} does not fit in memory on this platform"),
            )
        }),
        None => Err(Problem::at(
            v,
            path,
            format!(
                "{name} must be between {} and {}, found {found}",
                human_size(min),
                human_size(max)
            ),
        )),
    }
}

/// Parses `"64KiB"`, `"16 MiB"`, `"1MB"`, `"512"`, `"512 b"`: ASCII
/// digits, optional spaces, an optional case-insensitive unit. `None` when
/// malformed or above `u64::MAX`.
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = s[..digits_end].parse().ok()?;
    let unit = s[digits_end..].trim_start().to_ascii_lowercase();
    let (_, mult) = SIZE_UNITS.iter().find(|(u, _)| *u == unit)?;
    n.checked_mul(*mult)
}

/// `1024` → `1 KiB`; sizes that are not whole KiB/MiB/GiB stay in bytes.
fn human_size(n: u64) -> String {
    for (unit, mult) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if n >= mult && n % mult == 0 {
            return format!("{} {unit}", n / mult);
        }
    }
    format!("{n} bytes")
}

/// An integer in `min..=max`.
pub(super) fn integer(
    v: &Node,
    path: &str,
    name: &str,
    min: u64,
    max: u64,
) -> Result<u64, Problem> {
    let Kind::Number(n) = &v.kind else {
        return Err(Problem::expected(v, path, "an integer"));
    };
    match n.as_u64() {
        Some(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(Problem::at(
            v,
            path,
            format!("{name} must be an integer between {min} and {max}, found {n}"),
        )),
    }
}

/// A non-empty string without NUL bytes.
pub(super) fn nonempty_string(v: &Node, path: &str, name: &str) -> Result<String, Problem> {
    let s = string(v, path)?;
    if s.is_empty() || s.contains('\0') {
        return Err(Problem::at(
            v,
            path,
            format!("{name} must be a non-empty string without NUL bytes"),
        ));
    }
    Ok(s.to_string())
}

/// `key`: 64 hexadecimal digits (32 bytes).
pub(super) fn key(v: &Node, path: &str) -> Result<netcluster_proto::net::Key, Problem> {
    let s = string(v, path)?;
    // The message never quotes the value: it is a secret.
    netcluster_proto::net::Key::from_hex(s).map_err(|e| Problem::at(v, path, e.to_string()))
}

/// `keyfile`: a file holding the key as 64 hexadecimal digits (spaces and
/// a final newline allowed). A relative path is relative to the config
/// file's directory (`base`), or the working directory without one.
/// Returns the key and the path as resolved.
pub(super) fn keyfile(
    v: &Node,
    path: &str,
    base: Option<&std::path::Path>,
) -> Result<(netcluster_proto::net::Key, PathBuf), Problem> {
    let name = nonempty_string(v, path, "keyfile")?;
    let file = match base {
        Some(b) if std::path::Path::new(&name).is_relative() => b.join(&name),
        _ => PathBuf::from(&name),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Problem::at(
            v,
            path,
            format!("cannot read keyfile {}: {e}", file.display()),
        )
    })?;
    let key = netcluster_proto::net::Key::from_hex(&text).map_err(|e| {
        Problem::at(
            v,
            path,
            format!("keyfile {} is not a key: {e}", file.display()),
        )
    })?;
    Ok((key, file))
}

/// `peers`: a list of `host:port` strings (`[v6addr]:port` for IPv6). The
/// host is resolved when the network starts.
pub(super) fn peers(v: &Node, path: &str) -> Result<Vec<String>, Problem> {
    let Kind::Array(items) = &v.kind else {
        return Err(Problem::expected(
            v,
            path,
            "an array of \"host:port\" strings",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = join_index(path, i);
            let s = string(item, &p)?;
            let bad = || {
                Problem::at(
                    item,
                    &p,
                    format!(
                        "{} is not \"host:port\" (write IPv6 addresses as \"[addr]:port\")",
                        quote(s)
                    ),
                )
            };
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            let host_ok = !host.is_empty()
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
            match port.parse::<u16>() {
                Ok(p) if p != 0 && host_ok => Ok(s.to_string()),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// `slowconsumer`: `"block"`, `"drop"` or `"disconnect"`.
pub(super) fn slow_consumer(v: &Node, path: &str) -> Result<SlowConsumer, Problem> {
    let s = string(v, path)?;
    match s {
        "block" => Ok(SlowConsumer::Block),
        "drop" => Ok(SlowConsumer::Drop),
        "disconnect" => Ok(SlowConsumer::Disconnect),
        _ => Err(Problem::at(
            v,
            path,
            format!(
                "{} is not a slow-consumer policy; use \"block\", \"drop\" or \"disconnect\"",
                quote(s)
            ),
        )),
    }
}

/// A list of user or group ids (`allowuids`, `allowgids`).
pub(super) fn id_list(v: &Node, path: &str) -> Result<Vec<u32>, Problem> {
    let Kind::Array(items) = &v.kind else {
        return Err(Problem::expected(v, path, "an array of numeric ids"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = join_index(path, i);
            match &item.kind {
                Kind::Number(n) => n
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| Problem::at(item, &p, format!("{n} is not a valid numeric id"))),
                _ => Err(Problem::expected(item, &p, "a numeric id")),
            }
        })
        .collect()
}

/// `socketgroup`: a group name or a numeric group id.
pub(super) fn group(v: &Node, path: &str) -> Result<GroupSpec, Problem> {
    match &v.kind {
        Kind::String(s) if !s.is_empty() && !s.contains('\0') => Ok(GroupSpec::Name(s.clone())),
        Kind::Number(n) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(GroupSpec::Id)
            .ok_or_else(|| Problem::at(v, path, format!("{n} is not a valid group id"))),
        _ => Err(Problem::expected(
            v,
            path,
            "a group name or a numeric group id",
        )),
    }
}

/// `propagatetochannels`: `false`, `true`, a regex, or an array of regexes.
pub(super) fn propagation(v: &Node, path: &str) -> Result<PropagateSpec, Problem> {
    match &v.kind {
        Kind::Bool(false) => Ok(PropagateSpec::None),
        Kind::Bool(true) => Ok(PropagateSpec::All),
        Kind::String(_) => Ok(PropagateSpec::Pattern(pattern(v, path)?)),
        Kind::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| pattern(item, &join_index(path, i)))
            .collect::<Result<_, _>>()
            .map(PropagateSpec::Patterns),
        _ => Err(Problem::expected(
            v,
            path,
            "a boolean, a regex string or an array of regex strings",
        )),
    }
}

/// One non-empty regex string, compiled.
fn pattern(v: &Node, path: &str) -> Result<Regex, Problem> {
    let Kind::String(s) = &v.kind else {
        return Err(Problem::expected(v, path, "a regex string"));
    };
    if s.is_empty() {
        return Err(Problem::at(
            v,
            path,
            "the regex must not be empty; use true to propagate to every channel",
        ));
    }
    Regex::new(s).map_err(|e| {
        Problem::at(
            v,
            path,
            format!(
                "invalid regex {}: {}; note that JavaScript-only features \
                 (lookaround, backreferences) are not supported",
                quote(s),
                regex_reason(&e)
            ),
        )
    })
}

/// The useful line of a regex error: the regex crate renders syntax errors
/// as several lines (`regex parse error:`, the pattern, a caret line,
/// `error: why`), which do not fit a one-line diagnostic.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("error: "))
        .or_else(|| text.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("invalid regex")
        .trim_end_matches('.')
        .to_string()
}

/// A string as a JSON literal, for messages.
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Levenshtein distance between two strings, in characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // prev[j]: distance between the first i-1 chars of a and the first j of b.
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("512B"), Some(512));
        assert_eq!(parse_size("64KiB"), Some(64 * 1024));
        assert_eq!(parse_size("16 MiB"), Some(16 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1gib"), Some(1 << 30));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("2kb"), Some(2_000));
        assert_eq!(parse_size(" 3 GB "), Some(3_000_000_000));
        for bad in [
            "", "MiB", "1.5MiB", "-1", "+1", "1 XB", "1 MiBs", "0x10", "1 M",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size("18446744073709551616"), None);
        assert_eq!(parse_size("20000000000GiB"), None);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(1024), "1 KiB");
        assert_eq!(human_size(64 * 1024), "64 KiB");
        assert_eq!(human_size(4 * GIB), "4 GiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }

    #[test]
    fn modes() {
        assert_eq!(format_mode(0o660), "0660");
        assert_eq!(format_mode(0o7), "0007");
        assert_eq!(format_mode(0o777), "0777");
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            edit_distance("propagatetochanels", "propagatetochannels"),
            1
        );
        assert_eq!(edit_distance("prot", "port"), 2);
        assert_eq!(edit_distance("üx", "ux"), 1);
    }
}
