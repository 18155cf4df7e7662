//! The input path through a real daemon and real sockets: a task awaiting
//! `Subscription::recv` reads the socket itself when it may (no hop through
//! the reader task), and hands everything else on. Covers: who runs `on`
//! handlers then, a stream that is never read on a current-thread runtime
//! (the others keep going until it is full, as documented), a pending
//! `recv` that is dropped, several subscriptions read by several tasks at
//! once with handlers and flushes, a daemon restart while the
//! application's task is the one reading, and data arriving while no task
//! reads (the reader task is woken by the data itself once an application
//! task gives the reading back), also with tasks taking turns at reading.

mod common;
use common::wait_state;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netcluster::{Client, ConnectionState};
use netcluster_testkit::TestDaemon;

const CONFIG: &str = r#"{ "channels": { "A": {} } }"#;

async fn client(d: &TestDaemon, capacity: usize) -> Client {
    Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .subscription_capacity(capacity)
        .connect()
        .await
        .expect("connect")
}

fn index(p: &[u8]) -> u32 {
    u32::from_le_bytes(p[..4].try_into().unwrap())
}

const LONG: Duration = Duration::from_secs(30);

/// Answers every "ping" with a "pong" carrying the same payload.
fn spawn_ponger(c: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sub = c.subscribe("ping").await.unwrap();
        while let Some(m) = sub.recv().await {
            if c.emit_bytes("pong", m.payload()).await.is_err() {
                return;
            }
        }
    })
}

/// One ping and its pong.
async fn round_trip(pinger: &Client, pong: &mut netcluster::Subscription, i: u32) {
    pinger.emit_bytes("ping", i.to_le_bytes()).await.unwrap();
    let m = tokio::time::timeout(LONG, pong.recv())
        .await
        .expect("pong in time")
        .expect("connected");
    assert_eq!(index(m.payload()), i);
}

// Unix only: on Windows the reader task alone reads the pipe (see
// `connection/readside.rs`), so handlers always run on its thread.
#[cfg(unix)]
#[test]
fn handlers_run_in_the_task_that_awaits_recv() {
    // A blocking client's `recv` runs its future on the calling thread:
    // when that task reads the socket itself, it also calls the `on`
    // handlers of what it read, on this thread (the reader task would
    // call them on the client's runtime thread).
    let d = TestDaemon::start(CONFIG);
    let c = netcluster::blocking::Client::builder("A")
        .with(|b| b.socket_dir(d.socket_dir()).echo(false))
        .connect()
        .unwrap();
    let tx = netcluster::blocking::Client::builder("A")
        .with(|b| b.socket_dir(d.socket_dir()).echo(false))
        .connect()
        .unwrap();
    let threads = Arc::new(Mutex::new(Vec::new()));
    let t = threads.clone();
    c.on("h", move |_| {
        t.lock().unwrap().push(std::thread::current().id())
    })
    .unwrap();
    let mut sub = c.subscribe("s").unwrap();
    for i in 0..20u32 {
        tx.emit_bytes("h", i.to_le_bytes()).unwrap();
        tx.emit_bytes("s", i.to_le_bytes()).unwrap();
        let m = sub.recv_timeout(LONG).expect("a message");
        assert_eq!(index(m.payload()), i);
    }
    let me = std::thread::current().id();
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 20, "every handler call happened in order");
    assert!(
        threads.contains(&me),
        "no handler ran in the task awaiting recv: {threads:?}"
    );
}

#[tokio::test]
async fn an_unread_stream_on_a_current_thread_runtime_holds_the_others_only_once_full() {
    const CAP: usize = 8;
    let d = TestDaemon::start(CONFIG);
    let pinger = client(&d, CAP).await;
    let other = client(&d, CAP).await;
    let ponger = spawn_ponger(client(&d, CAP).await);
    let mut pong = pinger.subscribe("pong").await.unwrap();
    // Never read with recv in the first part.
    let mut unread = pinger.subscribe("other").await.unwrap();
    // Fewer messages for the unread stream than it holds: round trips go on.
    let mut sent_other = 0u32;
    for i in 0..300u32 {
        if i % 50 == 0 {
            other
                .emit_bytes("other", sent_other.to_le_bytes())
                .await
                .unwrap();
            sent_other += 1;
        }
        round_trip(&pinger, &mut pong, i).await;
    }
    assert!((sent_other as usize) < CAP);
    // Fill it past its capacity while this task waits in `recv`, so that
    // this task reads the frame that finds the stream full (it leaves it to
    // the reader task, which waits for room): reading pauses for the whole
    // connection (documented: `subscription_capacity`), so the next pong
    // waits...
    let fill = async {
        while (sent_other as usize) < CAP + 5 {
            other
                .emit_bytes("other", sent_other.to_le_bytes())
                .await
                .unwrap();
            sent_other += 1;
        }
        other.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (waited, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(400), pong.recv()),
        fill
    );
    assert!(waited.is_err(), "no pong without a ping");
    pinger
        .emit_bytes("ping", 1000u32.to_le_bytes())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), pong.recv())
            .await
            .is_err(),
        "a pong arrived while another stream of the connection was full"
    );
    // ... until the full stream is read: everything arrives, in order.
    let mut got = 0u32;
    let deadline = tokio::time::Instant::now() + LONG;
    while got < sent_other {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{got} of {sent_other} reached the full stream"
        );
        match unread.try_recv() {
            Some(m) => {
                assert_eq!(index(m.payload()), got);
                got += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    let m = tokio::time::timeout(LONG, pong.recv())
        .await
        .expect("the pong once the full stream was read")
        .unwrap();
    assert_eq!(index(m.payload()), 1000);
    round_trip(&pinger, &mut pong, 1001).await;
    ponger.abort();
}

#[tokio::test]
async fn a_dropped_pending_recv_gives_the_reading_back() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, 16).await;
    let tx = client(&d, 16).await;
    let mut quiet = rx.subscribe("quiet").await.unwrap();
    let mut busy = rx.subscribe("busy").await.unwrap();
    // This recv takes the reading role and waits; the timeout drops it.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), quiet.recv())
            .await
            .is_err()
    );
    // Another task's stream is fed by the reader task again (nobody awaits
    // `busy` with recv: the Stream face never reads itself).
    let reader = tokio::spawn(async move {
        use tokio_stream_next::next;
        for i in 0..100u32 {
            let m = next(&mut busy).await.expect("connected");
            assert_eq!(index(m.payload()), i);
        }
    });
    for i in 0..100u32 {
        tx.emit_bytes("busy", i.to_le_bytes()).await.unwrap();
    }
    tokio::time::timeout(LONG, reader)
        .await
        .expect("the stream was fed after the recv was dropped")
        .unwrap();
}

/// `StreamExt::next` without the dependency.
mod tokio_stream_next {
    use std::pin::Pin;

    pub async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
        std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn several_tasks_reading_keep_each_stream_and_handler_in_order() {
    const N: u32 = 20_000;
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, 64).await;
    let tx = client(&d, 64).await;
    let handled = Arc::new(AtomicU32::new(0));
    let h = handled.clone();
    rx.on("h", move |m| {
        assert_eq!(
            index(m.payload()),
            h.load(Ordering::Relaxed),
            "handler order"
        );
        h.fetch_add(1, Ordering::Relaxed);
    })
    .await
    .unwrap();
    let mut readers = Vec::new();
    for event in ["a", "b", "c"] {
        let mut sub = rx.subscribe(event).await.unwrap();
        readers.push(tokio::spawn(async move {
            for i in 0..N {
                let m = sub.recv().await.expect("connected");
                assert_eq!(index(m.payload()), i, "order of {event}");
            }
        }));
    }
    // Flush barriers of the reading client, answered while its
    // application tasks may be the ones reading.
    let flusher = tokio::spawn({
        let rx = rx.clone();
        async move {
            for _ in 0..50 {
                rx.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    for i in 0..N {
        for event in ["a", "b", "c", "h"] {
            tx.emit_bytes(event, i.to_le_bytes()).await.unwrap();
        }
    }
    tx.flush().await.unwrap();
    for r in readers {
        tokio::time::timeout(LONG, r)
            .await
            .expect("every stream got everything")
            .unwrap();
    }
    tokio::time::timeout(LONG, flusher).await.unwrap().unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    while handled.load(Ordering::Relaxed) < N {
        assert!(tokio::time::Instant::now() < deadline, "handler calls");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_restart_while_the_application_task_reads() {
    let mut d = TestDaemon::start(CONFIG);
    let rx = client(&d, 16).await;
    let tx = client(&d, 16).await;
    let mut sub = rx.subscribe("n").await.unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let reader = tokio::spawn({
        let got = got.clone();
        async move {
            while let Some(m) = sub.recv().await {
                let i = index(m.payload());
                got.lock().unwrap().push(i);
                if i >= 1 {
                    return;
                }
            }
        }
    });
    tx.emit_bytes("n", 0u32.to_le_bytes()).await.unwrap();
    tx.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    while got.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "first message");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The reader task is back in recv, reading the socket itself (nothing
    // else on this runtime awaits it): the daemon goes away under it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    d = tokio::task::spawn_blocking(move || {
        d.restart();
        d
    })
    .await
    .unwrap();
    wait_state(&rx, ConnectionState::Connected).await;
    wait_state(&tx, ConnectionState::Connected).await;
    // Messages emitted around the restart may be lost (at most once):
    // emit until one reaches the recv that was waiting all along.
    let mut k = 1u32;
    let done = loop {
        tx.emit_bytes("n", k.to_le_bytes()).await.ok();
        k += 1;
        if reader.is_finished() {
            break true;
        }
        if tokio::time::Instant::now() > deadline + LONG {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        done,
        "no message after the restart reached the waiting recv"
    );
    reader.await.unwrap();
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], 0);
    assert!(got[1] >= 1);
    drop(d);
}

/// Registers a handler for `event` that checks the messages' indices
/// arrive in order, and counts them.
async fn count_in_order(rx: &Client, event: &str) -> Arc<AtomicU32> {
    let handled = Arc::new(AtomicU32::new(0));
    let h = handled.clone();
    rx.on(event, move |m| {
        assert_eq!(index(m.payload()), h.load(Ordering::Relaxed));
        h.fetch_add(1, Ordering::Relaxed);
    })
    .await
    .unwrap();
    handled
}

/// Waits (bounded) until `n` reaches `want`, without awaiting any `recv`.
async fn wait_count(n: &AtomicU32, want: u32, what: &str) {
    let deadline = tokio::time::Instant::now() + LONG;
    while n.load(Ordering::Relaxed) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} of {want}",
            n.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn data_arriving_while_no_task_reads_wakes_the_reader_task() {
    // After each `recv` (this task reads the socket itself, then gives the
    // reading back), a message for a handler arrives while nobody awaits
    // `recv`: only the reader task can read it, and nothing but the data
    // wakes it.
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, 16).await;
    let tx = client(&d, 16).await;
    let handled = count_in_order(&rx, "h").await;
    let mut sub = rx.subscribe("s").await.unwrap();
    for i in 0..50u32 {
        tx.emit_bytes("s", i.to_le_bytes()).await.unwrap();
        let m = tokio::time::timeout(LONG, sub.recv())
            .await
            .expect("a message in time")
            .unwrap();
        assert_eq!(index(m.payload()), i);
        tx.emit_bytes("h", i.to_le_bytes()).await.unwrap();
        wait_count(&handled, i + 1, "handler calls while nobody reads").await;
    }
}

/// Two tasks read their own subscription in turns, with pauses in which
/// neither reads while messages for a handler and for both keep coming.
async fn take_turns(rx: Client, tx: Client) {
    const N: u32 = 2_000;
    let handled = count_in_order(&rx, "h").await;
    let mut readers = Vec::new();
    for (k, event) in ["a", "b"].into_iter().enumerate() {
        let mut sub = rx.subscribe(event).await.unwrap();
        readers.push(tokio::spawn(async move {
            for i in 0..N {
                let m = sub.recv().await.expect("connected");
                assert_eq!(index(m.payload()), i, "order of {event}");
                // Out of `recv` for a while, at different moments.
                match (i as usize + k) % 7 {
                    0 => tokio::time::sleep(Duration::from_micros(50)).await,
                    1 | 4 => tokio::task::yield_now().await,
                    _ => {}
                }
            }
        }));
    }
    for i in 0..N {
        for event in ["a", "h", "b"] {
            tx.emit_bytes(event, i.to_le_bytes()).await.unwrap();
        }
        if i % 64 == 0 {
            tx.flush().await.unwrap();
        }
    }
    tx.flush().await.unwrap();
    for r in readers {
        tokio::time::timeout(LONG, r)
            .await
            .expect("both streams got everything (a lost wake-up hangs here)")
            .unwrap();
    }
    wait_count(&handled, N, "handler calls").await;
}

#[tokio::test]
async fn tasks_taking_turns_at_reading_on_a_current_thread_runtime() {
    let d = TestDaemon::start(CONFIG);
    take_turns(client(&d, 16).await, client(&d, 16).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_taking_turns_at_reading_on_two_threads() {
    let d = TestDaemon::start(CONFIG);
    take_turns(client(&d, 16).await, client(&d, 16).await).await;
}
