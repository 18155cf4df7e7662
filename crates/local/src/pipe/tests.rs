//! The pipe transport on its own: many clients at once, busy and missing
//! pipes, a second daemon, security from `socketmode`, peers, waits for
//! room. Run on Windows (and under Wine by `scripts/wine-test.sh`).

use std::io;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;

use crate::{connect, BindError, LocalListener, LocalStream};

/// A channel name no other test (or test process) uses.
fn channel(test: &str) -> String {
    format!("pipe-test-{test}-{}", std::process::id())
}

fn bind(ch: &str, mode: u32) -> LocalListener {
    LocalListener::bind(Path::new("ignored"), ch, mode, None).unwrap()
}

/// Reads exactly `n` bytes.
async fn read_n(s: &LocalStream, n: usize) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(n.max(1));
    while buf.len() < n {
        if buf.capacity() == buf.len() {
            buf.reserve(n - buf.len());
        }
        assert!(
            s.read_buf(&mut buf).await.unwrap() > 0,
            "early end of stream"
        );
    }
    buf.to_vec()
}

#[tokio::test(flavor = "current_thread")]
async fn many_clients_connect_at_once_and_each_gets_its_own_instance() {
    const CLIENTS: usize = 64;
    let ch = channel("many");
    let l = Rc::new(bind(&ch, 0o660));
    let path = l.path().to_path_buf();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let server = l.clone();
            tokio::task::spawn_local(async move {
                loop {
                    let (s, peer) = server.accept().await.unwrap();
                    assert_eq!(peer.pid, Some(std::process::id() as i32));
                    assert_eq!((peer.uid, peer.gid), (None, None));
                    // Echo 4 bytes back, then close.
                    tokio::task::spawn_local(async move {
                        let got = read_n(&s, 4).await;
                        s.write_all(&got).await.unwrap();
                    });
                }
            });
            let mut clients = tokio::task::JoinSet::new();
            for i in 0..CLIENTS as u32 {
                let path = path.clone();
                clients.spawn_local(async move {
                    let c = connect(&path).await.unwrap();
                    c.write_all(&i.to_le_bytes()).await.unwrap();
                    assert_eq!(read_n(&c, 4).await, i.to_le_bytes());
                    // The server closed its end: end of stream.
                    let mut rest = BytesMut::with_capacity(16);
                    assert_eq!(c.read_buf(&mut rest).await.unwrap(), 0);
                });
            }
            while let Some(r) = clients.join_next().await {
                r.unwrap();
            }
        })
        .await;
}

#[tokio::test]
async fn a_second_daemon_is_refused_and_unlink_removes_the_pipe() {
    let ch = channel("inuse");
    let l = bind(&ch, 0o660);
    match LocalListener::bind(Path::new("elsewhere"), &ch, 0o660, None) {
        Err(BindError::InUse { channel, path, .. }) => {
            assert_eq!(channel, ch);
            assert_eq!(path, l.path());
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    l.unlink();
    let e = connect(l.path()).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    // The name is free again.
    drop(bind(&ch, 0o660));
}

#[tokio::test]
async fn a_missing_pipe_is_not_found_and_names_are_checked() {
    let e = connect(&crate::channel_path(Path::new("x"), &channel("missing")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(matches!(
        LocalListener::bind(Path::new("x"), "a\\b", 0o660, None),
        Err(BindError::BadName(_))
    ));
    assert!(matches!(
        LocalListener::bind(Path::new("x"), &channel("group"), 0o660, Some(100)),
        Err(BindError::GroupsUnsupported)
    ));
    assert_eq!(
        crate::channel_path(Path::new(r"C:\any\dir"), "A"),
        Path::new(r"\\.\pipe\netcluster-A")
    );
}

#[tokio::test]
async fn the_seeds_pipe_name_reaches_the_same_pipe() {
    // The original Node.js clients used \\?\pipe\netcluster-{channel}.
    let ch = channel("seed");
    let l = bind(&ch, 0o660);
    let seed = std::path::PathBuf::from(format!(r"\\?\pipe\netcluster-{ch}"));
    let (server, client) = tokio::join!(l.accept(), connect(&seed));
    let (server, _) = server.unwrap();
    client.unwrap().write_all(b"{}\0").await.unwrap();
    assert_eq!(read_n(&server, 3).await, b"{}\0");
}

#[tokio::test]
async fn the_dacl_follows_socketmode() {
    let user = super::security::current_user_sid().unwrap();
    let l = bind(&channel("dacl"), 0o660);
    let dacl = l.dacl().unwrap();
    assert!(dacl.starts_with("D:P"), "{dacl}");
    assert!(dacl.contains(&user), "{dacl}");
    assert!(dacl.contains(";;;BA)") && dacl.contains(";;;SY)"), "{dacl}");
    assert!(!dacl.contains(";;;AU)"), "{dacl}");
    l.set_mode(0o666).unwrap();
    let dacl = l.dacl().unwrap();
    assert!(dacl.contains(";;;AU)"), "{dacl}");
    l.set_mode(0o600).unwrap();
    assert!(!l.dacl().unwrap().contains(";;;AU)"));
}

#[tokio::test]
async fn writes_wait_for_room_and_the_end_is_seen() {
    let l = bind(&channel("room"), 0o660);
    let (server, client) = tokio::join!(l.accept(), connect(l.path()));
    let (server, _) = server.unwrap();
    let client = client.unwrap();
    // Far more than the pipe buffers: the writer must wait for the reader.
    let big: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
    let reader = async {
        let got = read_n(&server, big.len()).await;
        assert!(got == big, "data differs");
    };
    // The daemon's writer pattern: a closure that reports WouldBlock when
    // it wrote only part of what it has.
    let writer = async {
        let mut off = 0;
        client
            .write_ready(|| {
                let end = (off + 100_000).min(big.len());
                match client.try_write(&big[off..end]) {
                    Ok(n) => {
                        off += n;
                        if off == big.len() {
                            Ok(())
                        } else {
                            Err(io::ErrorKind::WouldBlock.into())
                        }
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .unwrap();
    };
    tokio::join!(reader, writer);
    client.shutdown_write().unwrap();
    drop(client);
    let mut buf = BytesMut::with_capacity(16);
    assert_eq!(server.read_buf(&mut buf).await.unwrap(), 0);
    let mut full = BytesMut::new();
    assert_eq!(
        server.try_read_buf(&mut full).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}
