//! async-nats alone, as the NATS bridge uses it: a publisher thread and a
//! subscriber thread, each on its own current-thread tokio runtime (as in
//! `ncserver`), through one `nats-server`; with the bridge's five headers,
//! one header holding the same fields, or none. It tells how much of the
//! bridge's cost is the NATS client itself (docs/PERFORMANCE.md, "NATS
//! bridge").
//!
//! `cargo run --release -p netcluster-server --example nats_alone --
//! 127.0.0.1:4222 1000000 64 five|one|none`

use std::time::{Duration, Instant};

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;

const SUBJECT: &str = "natsalone.bench.bench";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn headers(mode: &str, seq: u64) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    match mode {
        "five" => {
            let names = ["Nc-Node", "Nc-Client", "Nc-Seq", "Nc-Channel", "Nc-Event"];
            let values = ["0123456789abcdef".to_string(), "7".into(), seq.to_string()];
            for (i, n) in names.into_iter().enumerate() {
                let v = values.get(i).cloned().unwrap_or_else(|| "bench".into());
                h.insert(HeaderName::from_static(n), v);
            }
        }
        "one" => h.insert(
            HeaderName::from_static("Nc"),
            format!("0123456789abcdef 7 {seq} bench bench"),
        ),
        _ => return None,
    }
    Some(h)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, n, size, mode] = &args[..] else {
        eprintln!("usage: nats_alone HOST:PORT COUNT SIZE five|one|none");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("COUNT");
    let size: usize = size.parse().expect("SIZE");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (sub_addr, sub_mode) = (addr.clone(), mode.clone());
    // Unconstrained, as the bridge's listener: it drains the subscription
    // queue whole each turn (else async-nats drops as a slow consumer).
    let sub = std::thread::spawn(move || {
        runtime().block_on(tokio::task::unconstrained(async move {
            let c = async_nats::ConnectOptions::new()
                .no_echo()
                .connect(sub_addr)
                .await
                .expect("connect");
            let mut s = c.subscribe(SUBJECT).await.expect("subscribe");
            c.flush().await.expect("flush");
            ready_tx.send(()).expect("main thread");
            let (mut got, mut last) = (0u64, Instant::now());
            loop {
                let next = std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(std::pin::Pin::new(&mut s), cx)
                });
                let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), next).await else {
                    break;
                };
                // Read the fields as the bridge does.
                if let Some(h) = m.headers.as_ref() {
                    for (k, v) in h.iter() {
                        let name: &str = k.as_ref();
                        std::hint::black_box((name, v.first()));
                    }
                }
                std::hint::black_box(&sub_mode);
                got += 1;
                last = Instant::now();
                if got == n {
                    break;
                }
            }
            (got, last)
        }))
    });
    ready_rx.recv().expect("subscriber ready");
    let start = Instant::now();
    runtime().block_on(async {
        let c = async_nats::ConnectOptions::new()
            .connect(addr.as_str())
            .await
            .expect("connect");
        let payload = Bytes::from(vec![b'x'; size]);
        for seq in 0..n {
            let r = match headers(mode, seq) {
                Some(h) => c.publish_with_headers(SUBJECT, h, payload.clone()).await,
                None => c.publish(SUBJECT, payload.clone()).await,
            };
            r.expect("publish");
        }
        c.flush().await.expect("flush");
    });
    let (got, last) = sub.join().expect("subscriber");
    let secs = last.duration_since(start).as_secs_f64();
    println!(
        "async-nats, {mode} header(s), {size} B: {got} of {n} in {secs:.3} s = {:.0} msg/s",
        got as f64 / secs
    );
}
