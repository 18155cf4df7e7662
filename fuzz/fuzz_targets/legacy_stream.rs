//! Fuzzes the seed's JSON framing as the daemon drives it: a byte stream
//! split into NUL-terminated packets (`legacy::split`), each parsed
//! (`legacy::parse`) unless blank.
//!
//! The input is processed whole and in chunks whose sizes come from the
//! input; both must give the same packets and end the same way. Every
//! packet that parses is encoded again for a legacy client and must parse
//! to the same event and data. Nothing may panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use netcluster_proto::legacy;

/// A small limit, so the too-large path is reached with small inputs.
const MAX: usize = 4096;

#[derive(Debug, PartialEq)]
enum End {
    Error(String),
    Incomplete(usize),
}

/// What one packet gave: the event and data, or the parse error.
fn handle(packet: &[u8], out: &mut Vec<Result<(String, Vec<u8>), String>>) {
    if legacy::is_blank(packet) {
        return;
    }
    match legacy::parse(packet) {
        Ok(p) => {
            check_reencode(&p.event, p.data);
            out.push(Ok((p.event.into_owned(), p.data.to_vec())));
        }
        Err(e) => out.push(Err(e.to_string())),
    }
}

fn whole(data: &[u8]) -> (Vec<Result<(String, Vec<u8>), String>>, End) {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        match legacy::split(rest, MAX) {
            Ok(Some((p, n))) => {
                handle(p, &mut out);
                rest = &rest[n..];
            }
            Ok(None) => return (out, End::Incomplete(rest.len())),
            Err(e) => return (out, End::Error(e.to_string())),
        }
    }
}

fn chunked(data: &[u8]) -> (Vec<Result<(String, Vec<u8>), String>>, End) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut pos = 0;
    let mut k = 0usize;
    while pos < data.len() {
        let size = 1 + (data[k % data.len()] as usize % 64);
        k += 1;
        let end = (pos + size).min(data.len());
        buf.extend_from_slice(&data[pos..end]);
        pos = end;
        loop {
            match legacy::split(&buf, MAX) {
                Ok(Some((p, n))) => {
                    handle(p, &mut out);
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (out, End::Error(e.to_string())),
            }
        }
    }
    (out, End::Incomplete(buf.len()))
}

/// A packet the daemon would send with this event and data parses back
/// to them.
fn check_reencode(event: &str, data: &[u8]) {
    let mut b = BytesMut::new();
    legacy::encode(
        &mut b,
        "0123456789abcdef:1",
        "A",
        event,
        data,
        legacy::is_json(data),
    );
    let (p, n) = legacy::split(&b, usize::MAX)
        .unwrap()
        .expect("a whole packet");
    assert_eq!(n, b.len());
    let again = legacy::parse(p).expect("an encoded packet parses");
    assert_eq!(again.event, event);
    assert_eq!(again.data, data);
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        whole(data),
        chunked(data),
        "chunked splitting differs from whole"
    );
});
