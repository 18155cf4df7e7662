//! HTTP/1.x requests as the endpoint reads them (request line and the
//! headers it uses; no body) and the responses it writes (always with
//! `Content-Length` and `Connection: close`).

use std::fmt;

use tokio::io::AsyncReadExt;

/// What the endpoint needs of a request.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
    /// The query string, without `?` (empty when none).
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or closed early: nobody to answer.
    Io(std::io::Error),
    /// The head is larger than the limit.
    TooLarge(usize),
    /// Not an HTTP/1.x request.
    Malformed(&'static str),
}

impl ReadError {
    /// The status code that answers it.
    pub fn status(&self) -> u16 {
        match self {
            ReadError::Io(_) => 400,
            ReadError::TooLarge(_) => 431,
            ReadError::Malformed(_) => 400,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::TooLarge(n) => write!(f, "request head larger than {n} bytes"),
            ReadError::Malformed(why) => write!(f, "bad request: {why}"),
        }
    }
}

/// Reads a request head (up to the blank line), at most `limit` bytes.
pub async fn read<R: AsyncReadExt + Unpin>(r: &mut R, limit: usize) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = r.read(&mut chunk).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        // Look for the blank line from a little before the new bytes.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i;
        }
        if buf.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
    };
    if end > limit {
        return Err(ReadError::TooLarge(limit));
    }
    parse(&buf[..end])
}

/// Parses a request head (without the final blank line).
pub fn parse(head: &[u8]) -> Result<Request, ReadError> {
    let head = std::str::from_utf8(head).map_err(|_| ReadError::Malformed("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed("only HTTP/1.x is served"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Malformed("target must be a path"));
    }
    let target = target.split('#').next().unwrap_or(target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut accept = None;
    let mut authorization = None;
    for h in lines {
        let Some((name, value)) = h.split_once(':') else {
            return Err(ReadError::Malformed("header without a colon"));
        };
        if name.eq_ignore_ascii_case("accept") {
            accept = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_string());
        }
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        accept,
        query: query.to_string(),
        authorization,
    })
}

/// A response to write.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers (`Name: value`).
    pub headers: Vec<String>,
    /// The body (left out for `HEAD`).
    pub body: Vec<u8>,
    /// Send the headers only (a `HEAD` request).
    pub head_only: bool,
}

impl Response {
    /// A response with a body of this type.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
            head_only: false,
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for h in &self.headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_request_line_and_accept() {
        let r = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: application/openmetrics-text; version=1.0.0").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(
            r.accept.as_deref(),
            Some("application/openmetrics-text; version=1.0.0")
        );
    }

    #[test]
    fn refuses_what_is_not_http1() {
        for bad in [
            &b"GET /"[..],
            b"GET / HTTP/2.0",
            b"get / HTTP/1.1",
            b"GET http://x/ HTTP/1.1",
            b"GET / HTTP/1.1\r\nno colon",
            b"\xff / HTTP/1.1",
        ] {
            assert!(
                matches!(parse(bad), Err(ReadError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        let r = read(&mut big.as_bytes(), 64).await;
        assert!(matches!(r, Err(ReadError::TooLarge(64))));
        let ok = "GET / HTTP/1.1\r\n\r\n";
        assert_eq!(read(&mut ok.as_bytes(), 64).await.unwrap().path, "/");
    }
}
