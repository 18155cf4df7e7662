//! What `emit` and `flush` promise across a daemon crash, through the real
//! binary: the daemon is killed with SIGKILL during a stream of some
//! 20 000 messages a second from the Rust library and started again; every
//! message a `flush` confirmed must have arrived, and every other one must
//! have been reported by a `flush` error with its count.
#![cfg(unix)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, Daemon};
use netcluster::{Client, ConnectionState, FlushError};

const CONFIG: &str = r#"{ "channels": { "A": {} } }"#;
/// Messages per flush window (about 10 ms of the stream).
const BATCH: u64 = 200;
const TOTAL: u64 = 30_000;

async fn wait_connected(c: &Client) {
    let mut st = c.watch_state();
    tokio::time::timeout(Duration::from_secs(20), async {
        while *st.borrow_and_update() != ConnectionState::Connected {
            st.changed().await.unwrap();
        }
    })
    .await
    .expect("reconnected");
}

#[test]
fn every_flushed_message_arrives_and_the_others_are_counted_across_a_sigkill() {
    bounded(120, "crash", || {
        let d = Daemon::start(CONFIG);
        let dir = d.dir().to_path_buf();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // The receiver: every index it gets (twice would be a duplicate).
        let got = Arc::new(Mutex::new((HashSet::new(), 0u64)));
        let rx = rt.block_on(async {
            let rx = Client::builder("A")
                .socket_dir(&dir)
                .connect()
                .await
                .unwrap();
            let mut sub = rx.subscribe("n").await.unwrap();
            let got = got.clone();
            tokio::spawn(async move {
                while let Some(m) = sub.recv().await {
                    let i = m.json::<u64>().unwrap();
                    let mut g = got.lock().unwrap();
                    if !g.0.insert(i) {
                        g.1 += 1;
                    }
                }
            });
            rx
        });
        let tx = rt.block_on(async {
            Client::builder("A")
                .socket_dir(&dir)
                .echo(false)
                .connect()
                .await
                .unwrap()
        });
        let (mut confirmed, mut reported, mut refused) = (Vec::new(), 0u64, 0u64);
        let mut unconfirmed: Vec<u64> = Vec::new();
        // The crash comes in the middle of the stream, from another thread,
        // while messages are in flight.
        // (The daemon dies with the thread that started it: this one stays
        // until the end.)
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let killer = std::thread::spawn(move || {
            let mut d = d;
            std::thread::sleep(Duration::from_millis(500));
            d.kill_and_restart();
            let _ = done_rx.recv();
            d
        });
        let mut i = 0u64;
        while i < TOTAL {
            let batch: Vec<u64> = (i..i + BATCH).collect();
            i += BATCH;
            let res = rt.block_on(async {
                let mut sent = Vec::new();
                for &k in &batch {
                    let e = tokio::time::timeout(Duration::from_secs(30), tx.emit("n", &k))
                        .await
                        .unwrap_or_else(|_| panic!("emit hung at {k}: {:?}", tx.state()));
                    // An error here is a refusal at once (offline queue
                    // full): the message was never taken.
                    if e.is_ok() {
                        sent.push(k);
                    }
                }
                let r = tokio::time::timeout(Duration::from_secs(30), tx.flush())
                    .await
                    .unwrap_or_else(|_| panic!("flush hung at {}: {:?}", batch[0], tx.state()));
                tokio::time::sleep(Duration::from_millis(10)).await;
                (sent, r)
            });
            let (sent, r) = res;
            refused += BATCH - sent.len() as u64;
            match r {
                Ok(()) => confirmed.extend(sent),
                Err(e @ FlushError::Unconfirmed { .. }) => {
                    assert_eq!(e.unconfirmed(), sent.len() as u64, "{e}");
                    reported += e.unconfirmed();
                    unconfirmed.extend(sent);
                    // Listeners get what is routed while they listen: let
                    // the receiver come back before going on.
                    rt.block_on(async {
                        wait_connected(&rx).await;
                        while rx.flush().await.is_err() {}
                        wait_connected(&tx).await;
                    });
                }
                Err(e) => panic!("flush: {e}"),
            }
        }
        assert!(!killer.is_finished(), "the killer thread died");
        rt.block_on(async {
            // The last window is clean: the receiver must have them all.
            tx.flush().await.unwrap();
            let want: HashSet<u64> = confirmed.iter().copied().collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let missing = want.difference(&got.lock().unwrap().0).count();
                if missing == 0 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{missing} messages confirmed by flush never arrived"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let g = got.lock().unwrap();
        let arrived_unconfirmed = unconfirmed.iter().filter(|k| g.0.contains(k)).count();
        assert_eq!(g.1, 0, "duplicates");
        assert_eq!(
            confirmed.len() as u64 + reported + refused,
            TOTAL,
            "every message is confirmed, reported or refused"
        );
        assert!(reported > 0, "the crash cost no window?");
        eprintln!(
            "{TOTAL} emitted: {} confirmed by flush (all arrived), {reported} reported unconfirmed \
             ({arrived_unconfirmed} of them arrived, {} lost), {refused} refused by emit; \
             0 duplicates",
            confirmed.len(),
            reported - arrived_unconfirmed as u64
        );
        drop((tx, rx));
        done_tx.send(()).unwrap();
        killer.join().unwrap();
    });
}
