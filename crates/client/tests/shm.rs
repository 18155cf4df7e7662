//! Shared-memory payloads through the library, a real daemon and real
//! sockets (Linux): a publisher with a pool, a subscriber that reads in
//! place and one that does not ask for shared memory, on one channel.
#![cfg(target_os = "linux")]

mod common;
use common::wait_state;
use std::time::{Duration, Instant};

use netcluster::{Client, Message, Subscription};
use netcluster_testkit::TestDaemon;

async fn client(d: &TestDaemon, name: &str, shm: Option<usize>) -> Client {
    let mut b = Client::builder("A").socket_dir(d.socket_dir()).name(name);
    if let Some(bytes) = shm {
        b = b.shared_memory(bytes);
    }
    b.connect().await.expect("connect")
}

async fn recv(sub: &mut Subscription) -> Message {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("a message within 10 s")
        .expect("subscription open")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// Waits (bounded) until the publisher's pool has `n` slots in flight.
async fn in_flight(c: &Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.shared_memory_in_flight() != n {
        assert!(
            Instant::now() < deadline,
            "slots in flight: {} (want {n})",
            c.shared_memory_in_flight()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A publisher with an 8 MiB pool and two subscriptions to "big": the
/// first maps pools, the second gets copies through its socket (with the
/// subscribing clients, kept so that the subscriptions stay open).
async fn trio(d: &TestDaemon) -> (Client, (Client, Client), Subscription, Subscription) {
    let publisher = client(d, "pub", Some(8 << 20)).await;
    let shm_sub = client(d, "shm-sub", Some(0)).await;
    let sock_sub = client(d, "sock-sub", None).await;
    let shm = shm_sub.subscribe("big").await.unwrap();
    let socket = sock_sub.subscribe("big").await.unwrap();
    (publisher, (shm_sub, sock_sub), shm, socket)
}

#[tokio::test]
async fn large_payloads_reach_shm_and_socket_subscribers_intact() {
    let d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let (publisher, _subscribers, mut a, mut b) = trio(&d).await;
    // The pool's registration is answered asynchronously; a flush orders
    // everything before it, the Ack included.
    publisher.flush().await.unwrap();

    let small = pattern(64 * 1024, 1);
    let large = pattern(1 << 20, 2);
    publisher.emit_bytes("big", &small).await.unwrap();
    publisher.emit_bytes("big", &large).await.unwrap();
    publisher.flush().await.unwrap();
    let (a1, a2) = (recv(&mut a).await, recv(&mut a).await);
    let (b1, b2) = (recv(&mut b).await, recv(&mut b).await);
    assert!(a1.payload() == small.as_slice() && a2.payload() == large.as_slice());
    assert!(b1.payload() == small.as_slice() && b2.payload() == large.as_slice());
    assert_eq!(a1.origin().client, publisher.client_id());
    // The shm subscriber holds both slots while it keeps the messages...
    in_flight(&publisher, 2).await;
    let kept = a2.bytes();
    drop((a1, a2));
    in_flight(&publisher, 1).await;
    assert!(
        kept == large.as_slice(),
        "a bytes() clone keeps the view valid"
    );
    // ...and gives them back when it drops them.
    drop(kept);
    in_flight(&publisher, 0).await;

    // Many more messages than the pool holds at once: slots are reused
    // (and a full pool falls back to the socket), all arrive intact.
    for i in 0..40u8 {
        publisher
            .emit_bytes("big", pattern(1 << 20, i))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for i in 0..40u8 {
        let m = recv(&mut a).await;
        assert!(
            m.payload() == pattern(1 << 20, i).as_slice(),
            "message {i} via shm"
        );
        let m = recv(&mut b).await;
        assert!(
            m.payload() == pattern(1 << 20, i).as_slice(),
            "message {i} via socket"
        );
    }
    in_flight(&publisher, 0).await;
    // Small payloads keep using the socket.
    publisher.emit_bytes("big", b"tiny").await.unwrap();
    assert_eq!(recv(&mut a).await.payload(), b"tiny");
    assert_eq!(publisher.shared_memory_in_flight(), 0);
}

/// Restarts the stopped daemon `d` and subscribes a socket client to
/// "big" on it before `publisher` reconnects, then waits for the
/// reconnect. The publisher's reconnect backoff (up to a second after a
/// long outage) normally lets the subscriber come first; `None` when it
/// did not.
async fn restart_behind_a_listener(
    d: &mut TestDaemon,
    publisher: &Client,
) -> Option<(Client, Subscription)> {
    use netcluster::ConnectionState::Connected;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.restart();
    let sub = client(d, "sub", Some(0)).await;
    let s = sub.subscribe("big").await.unwrap();
    sub.flush().await.unwrap();
    if *publisher.watch_state().borrow() == Connected {
        return None;
    }
    wait_state(publisher, Connected).await;
    Some((sub, s))
}

/// Shared-memory publishes queued while the daemon is away reach the
/// restarted daemon with their own payloads. (A queued descriptor names an
/// offset, not a pool: the new connection's fresh pool holds other bytes
/// there, so it must travel with its payload instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_queued_across_a_restart_keep_their_payloads() {
    use netcluster::ConnectionState::Reconnecting;
    let mut d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let publisher = client(&d, "pub", Some(8 << 20)).await;
    // The pool is registered.
    publisher.flush().await.unwrap();
    for round in 0..3u8 {
        d.stop();
        wait_state(&publisher, Reconnecting).await;
        for i in 0..8u8 {
            publisher
                .emit_bytes("big", pattern(64 * 1024, round * 8 + i))
                .await
                .unwrap();
        }
        let Some((_sub, mut s)) = restart_behind_a_listener(&mut d, &publisher).await else {
            continue; // the publisher came first: its queue went to nobody
        };
        for i in 0..8u8 {
            let m = recv(&mut s).await;
            assert!(
                m.payload() == pattern(64 * 1024, round * 8 + i).as_slice(),
                "queued message {i} arrived with other bytes"
            );
        }
        return;
    }
    panic!("the publisher reconnected before the subscriber three times");
}

/// A subscriber that keeps every message holds the publisher's pool: the
/// publisher then sends through the socket, and both subscribers still get
/// every message intact and in order (the hoarder some by shared memory,
/// the rest as copies).
#[tokio::test]
async fn a_subscriber_that_holds_the_pool_does_not_stop_the_publisher() {
    let d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let publisher = client(&d, "pub", Some(1 << 20)).await;
    let hoarder = client(&d, "hoarder", Some(0)).await;
    let other = client(&d, "other", None).await;
    let mut h = hoarder.subscribe("big").await.unwrap();
    let mut o = other.subscribe("big").await.unwrap();
    publisher.flush().await.unwrap();
    let n = 100u8;
    let started = Instant::now();
    let mut kept = Vec::new();
    for i in 0..n {
        publisher
            .emit_bytes("big", pattern(64 * 1024, i))
            .await
            .unwrap();
        // The hoarder reads as it goes and keeps everything.
        kept.push(recv(&mut h).await);
    }
    publisher.flush().await.unwrap();
    eprintln!(
        "{n} emits of 64 KiB with the pool held: {:?}, {} slots in flight",
        started.elapsed(),
        publisher.shared_memory_in_flight()
    );
    for (i, m) in kept.iter().enumerate() {
        assert!(
            m.payload() == pattern(64 * 1024, i as u8).as_slice(),
            "hoarded {i}"
        );
    }
    for i in 0..n {
        assert!(
            recv(&mut o).await.payload() == pattern(64 * 1024, i).as_slice(),
            "socket {i}"
        );
    }
    assert!(publisher.shared_memory_in_flight() <= 16, "a 1 MiB pool");
    drop(kept);
    in_flight(&publisher, 0).await;
}

/// Takes a loan of `len` bytes that must be a slot of the pool and fills
/// it with `pattern(len, seed)`.
async fn filled_slot(c: &Client, len: usize, seed: u8) -> netcluster::Loan {
    let mut loan = c.loan(len).await.unwrap();
    assert!(
        loan.is_shared(),
        "a loan of {len} bytes is a slot of the pool"
    );
    assert_eq!(loan.len(), len);
    loan.copy_from_slice(&pattern(len, seed));
    loan
}

#[tokio::test]
async fn loaned_payloads_reach_shm_and_socket_subscribers_intact() {
    let d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let (publisher, _subscribers, mut a, mut b) = trio(&d).await;
    // Echo is on: the publisher's own listener gets its messages too.
    let mut own = publisher.subscribe("big").await.unwrap();
    publisher.flush().await.unwrap(); // the pool is registered

    let sizes = [64 * 1024, 1 << 20, 100];
    for (i, &len) in sizes.iter().enumerate() {
        let loan = if len >= 16 * 1024 {
            filled_slot(&publisher, len, i as u8).await
        } else {
            // Under the threshold a loan is a heap buffer, sent through
            // the socket: the same code works.
            let mut l = publisher.loan(len).await.unwrap();
            assert!(!l.is_shared());
            l.copy_from_slice(&pattern(len, i as u8));
            l
        };
        publisher.emit_loan("big", loan).await.unwrap();
    }
    // Two slots in flight (the heap loan took none) until the subscriber
    // drops its messages.
    let got_a: Vec<_> = futures_collect(&mut a, 3).await;
    let got_b: Vec<_> = futures_collect(&mut b, 3).await;
    for (i, &len) in sizes.iter().enumerate() {
        assert!(
            got_a[i].payload() == pattern(len, i as u8).as_slice(),
            "shm {i}"
        );
        assert!(
            got_b[i].payload() == pattern(len, i as u8).as_slice(),
            "socket {i}"
        );
        assert_eq!(got_a[i].origin().client, publisher.client_id());
    }
    let got_own: Vec<_> = futures_collect(&mut own, 3).await;
    for (i, &len) in sizes.iter().enumerate() {
        assert!(
            got_own[i].payload() == pattern(len, i as u8).as_slice(),
            "echo {i}"
        );
    }
    in_flight(&publisher, 2).await;
    drop(got_a);
    in_flight(&publisher, 0).await;
    // A loan too large for the daemon is refused before anything is taken.
    let too_big = publisher.max_message() + 1;
    assert!(matches!(
        publisher.loan(too_big).await,
        Err(netcluster::EmitError::TooLarge { .. })
    ));
}

async fn futures_collect(sub: &mut Subscription, n: usize) -> Vec<Message> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(recv(sub).await);
    }
    v
}

/// A loan dropped without being emitted gives its slot back: far more
/// loans than the pool holds at once are all slots, and none stays taken.
#[tokio::test]
async fn dropped_loans_give_their_slots_back() {
    let d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let publisher = client(&d, "pub", Some(1 << 20)).await; // 16 × 64 KiB
    let sub = client(&d, "sub", Some(0)).await;
    let mut s = sub.subscribe("big").await.unwrap();
    publisher.flush().await.unwrap();
    for i in 0..1000u32 {
        let mut loan = publisher.loan(64 * 1024).await.unwrap();
        assert!(loan.is_shared(), "loan {i}: the pool leaked its slots");
        loan[..4].copy_from_slice(&i.to_le_bytes());
        assert_eq!(publisher.shared_memory_in_flight(), 1);
        drop(loan);
        assert_eq!(publisher.shared_memory_in_flight(), 0, "loan {i}");
    }
    // The pool still works, whole.
    let all: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..16u8 {
            v.push(filled_slot(&publisher, 64 * 1024, i).await);
        }
        v
    };
    for loan in all {
        publisher.emit_loan("big", loan).await.unwrap();
    }
    for i in 0..16u8 {
        assert!(recv(&mut s).await.payload() == pattern(64 * 1024, i).as_slice());
    }
    in_flight(&publisher, 0).await;
}

/// With every slot of the pool loaned out, one more loan waits the
/// bounded time and becomes a heap buffer; it is still delivered, and so
/// are the held slots afterwards, in emit order.
#[tokio::test]
async fn a_loan_from_a_full_pool_falls_back_and_still_delivers() {
    let d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let publisher = client(&d, "pub", Some(1 << 20)).await; // 16 × 64 KiB
    let shm_sub = client(&d, "shm-sub", Some(0)).await;
    let sock_sub = client(&d, "sock-sub", None).await;
    let mut a = shm_sub.subscribe("big").await.unwrap();
    let mut b = sock_sub.subscribe("big").await.unwrap();
    publisher.flush().await.unwrap();
    let mut held = Vec::new();
    for i in 0..16u8 {
        held.push(filled_slot(&publisher, 64 * 1024, i).await);
    }
    let mut extra = publisher.loan(64 * 1024).await.unwrap();
    assert!(!extra.is_shared(), "the pool is full: a heap buffer");
    extra.copy_from_slice(&pattern(64 * 1024, 99));
    publisher.emit_loan("big", extra).await.unwrap();
    for loan in held {
        publisher.emit_loan("big", loan).await.unwrap();
    }
    let want: Vec<u8> = std::iter::once(99).chain(0..16).collect();
    for (k, &seed) in want.iter().enumerate() {
        let ma = recv(&mut a).await;
        assert!(
            ma.payload() == pattern(64 * 1024, seed).as_slice(),
            "shm {k}"
        );
        let mb = recv(&mut b).await;
        assert!(
            mb.payload() == pattern(64 * 1024, seed).as_slice(),
            "socket {k}"
        );
    }
    in_flight(&publisher, 0).await;
    // Freed slots are loaned again.
    assert!(publisher.loan(64 * 1024).await.unwrap().is_shared());
}

/// Loans taken before the daemon restarts: one emitted during the break
/// (queued as a descriptor, rewritten with its payload at the reconnect)
/// and one emitted after the reconnect (its pool is retired: the new
/// pool holds other bytes at its offset, so it must travel with its
/// payload, read from the old pool the loan keeps mapped). Both deliver
/// their own bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loans_taken_before_a_restart_deliver_their_own_bytes() {
    use netcluster::ConnectionState::Reconnecting;
    let mut d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let publisher = client(&d, "pub", Some(8 << 20)).await;
    publisher.flush().await.unwrap(); // the pool is registered
    for round in 0..3u8 {
        let early = filled_slot(&publisher, 64 * 1024, round * 2).await;
        let late = filled_slot(&publisher, 64 * 1024, round * 2 + 1).await;
        d.stop();
        wait_state(&publisher, Reconnecting).await;
        publisher.emit_loan("big", early).await.unwrap();
        let Some((_sub, mut s)) = restart_behind_a_listener(&mut d, &publisher).await else {
            continue; // the publisher came first: its queue went to nobody
        };
        let _ = publisher.flush().await; // the new pool is registered
        publisher.emit_loan("big", late).await.unwrap();
        let m = recv(&mut s).await;
        assert!(
            m.payload() == pattern(64 * 1024, round * 2).as_slice(),
            "the loan emitted during the break arrived with other bytes"
        );
        let m = recv(&mut s).await;
        assert!(
            m.payload() == pattern(64 * 1024, round * 2 + 1).as_slice(),
            "the loan emitted after the reconnect arrived with other bytes"
        );
        // The new pool lends and delivers as usual.
        let fresh = filled_slot(&publisher, 64 * 1024, 200).await;
        publisher.emit_loan("big", fresh).await.unwrap();
        assert!(recv(&mut s).await.payload() == pattern(64 * 1024, 200).as_slice());
        return;
    }
    panic!("the publisher reconnected before the subscriber three times");
}

/// The blocking client lends and emits the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_client_lends_too() {
    let d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let sub = client(&d, "sub", Some(0)).await;
    let mut s = sub.subscribe("big").await.unwrap();
    let dir = d.socket_dir().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let p = netcluster::blocking::Client::builder("A")
            .with(|b| {
                b.socket_dir(dir)
                    .name("blocking-pub")
                    .shared_memory(1 << 20)
            })
            .connect()
            .unwrap();
        p.flush().unwrap();
        let mut loan = p.loan(64 * 1024).unwrap();
        assert!(loan.is_shared());
        loan.copy_from_slice(&pattern(64 * 1024, 7));
        p.emit_loan("big", loan).unwrap();
        p.flush().unwrap();
        p
    })
    .await
    .unwrap();
    assert!(recv(&mut s).await.payload() == pattern(64 * 1024, 7).as_slice());
}
