//! Routing rules through a real daemon and real sockets: who gets a message.

use std::time::Duration;

use netcluster::{Client, Message, Subscription};
use netcluster_testkit::TestDaemon;

const CONFIG: &str = r#"{
  "channels": {
    "A":     { "propagatetochannels": "B" },
    "B":     { "propagatetochannels": true },
    "Bravo": { "propagatetochannels": false },
    "C":     { "propagatetochannels": ["^A$", "^Bravo$"] },
    "D":     { "propagatetochannels": "^B$" }
  }
}"#;

async fn client(d: &TestDaemon, ch: &str) -> Client {
    Client::builder(ch)
        .socket_dir(d.socket_dir())
        .name(format!("t-{ch}"))
        .connect()
        .await
        .expect("connect")
}

/// Receives every message that arrives within a short quiet period.
async fn drain(sub: &mut Subscription) -> Vec<Message> {
    let mut v = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        v.push(m);
    }
    v
}

fn channels(v: &[Message]) -> Vec<String> {
    v.iter().map(|m| m.channel().to_string()).collect()
}

/// One listener (subscribed to `*`) on each channel; returns them in order.
async fn listeners(d: &TestDaemon, names: &[&str]) -> Vec<(Client, Subscription)> {
    let mut out = Vec::new();
    for n in names {
        let c = client(d, n).await;
        let s = c.subscribe("*").await.unwrap();
        out.push((c, s));
    }
    out
}

#[tokio::test]
async fn server_never_echoes_and_library_echo_is_optional() {
    let d = TestDaemon::start(CONFIG);
    let quiet = Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .connect()
        .await
        .unwrap();
    let mut quiet_sub = quiet.subscribe("ev").await.unwrap();
    let echoing = client(&d, "A").await;
    let mut echo_sub = echoing.subscribe("ev").await.unwrap();

    quiet.emit("ev", &1).await.unwrap();
    quiet.flush().await.unwrap();
    let got = drain(&mut echo_sub).await;
    assert_eq!(got.len(), 1);
    assert!(
        drain(&mut quiet_sub).await.is_empty(),
        "the server echoed a message to its sender"
    );

    // The echoing client gets its own message exactly once (from the
    // library, not the daemon), and the other client gets it too.
    echoing.emit("ev", &2).await.unwrap();
    echoing.flush().await.unwrap();
    let own = drain(&mut echo_sub).await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].json::<i32>().unwrap(), 2);
    assert_eq!(own[0].origin().client, echoing.client_id());
    assert_eq!(drain(&mut quiet_sub).await.len(), 1);
}

#[tokio::test]
async fn regex_rule_is_an_unanchored_search_and_one_hop_only() {
    let d = TestDaemon::start(CONFIG);
    let mut ls = listeners(&d, &["A", "B", "Bravo", "C", "D", "control"]).await;
    let a = client(&d, "A").await;
    // "B" matches B and Bravo (unanchored). B's own rule (true) is not
    // applied again: nothing reaches C, D or control.
    a.emit("x", "from A").await.unwrap();
    a.flush().await.unwrap();
    let got: Vec<Vec<String>> = {
        let mut v = Vec::new();
        for (_, s) in ls.iter_mut() {
            v.push(channels(&drain(s).await));
        }
        v
    };
    assert_eq!(
        got,
        vec![vec!["A"], vec!["A"], vec!["A"], vec![], vec![], vec![]]
    );
}

#[tokio::test]
async fn true_false_and_list_rules() {
    let d = TestDaemon::start(CONFIG);
    let mut ls = listeners(&d, &["A", "B", "Bravo", "C", "D", "control"]).await;
    let count = |v: &Vec<Message>| v.len();

    // true: every other channel but control.
    let b = client(&d, "B").await;
    b.emit("x", &0).await.unwrap();
    b.flush().await.unwrap();
    let mut n = Vec::new();
    for (_, s) in ls.iter_mut() {
        n.push(count(&drain(s).await));
    }
    assert_eq!(n, vec![1, 1, 1, 1, 1, 0]);

    // false: only the channel itself.
    let bravo = client(&d, "Bravo").await;
    bravo.emit("x", &0).await.unwrap();
    bravo.flush().await.unwrap();
    let mut n = Vec::new();
    for (_, s) in ls.iter_mut() {
        n.push(count(&drain(s).await));
    }
    assert_eq!(n, vec![0, 0, 1, 0, 0, 0]);

    // A list of regexes: any of them.
    let c = client(&d, "C").await;
    c.emit("x", &0).await.unwrap();
    c.flush().await.unwrap();
    let mut n = Vec::new();
    for (_, s) in ls.iter_mut() {
        let got = drain(s).await;
        assert!(
            got.iter().all(|m| m.channel() == "C"),
            "channel stays the origin's"
        );
        n.push(got.len());
    }
    assert_eq!(n, vec![1, 0, 1, 1, 0, 0]);
}

#[tokio::test]
async fn subscriptions_filter_at_the_server() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "A").await;
    let mut only_a = rx.subscribe("a").await.unwrap();
    let tx = client(&d, "A").await;
    for i in 0..100 {
        tx.emit("a", &i).await.unwrap();
        tx.emit("b", &i).await.unwrap();
    }
    tx.flush().await.unwrap();
    let got = drain(&mut only_a).await;
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|m| m.event() == "a"));
    // The daemon queued only the "a" messages for this client.
    let ctl = client(&d, "control").await;
    let info = ctl
        .request(
            "nc-control-showclient",
            &serde_json::json!({"channel": "A", "client": rx.client_id()}),
        )
        .await
        .unwrap();
    assert_eq!(info["messages_out"], 100, "{info}");
    assert_eq!(info["subscriptions"], serde_json::json!(["a"]));
}

#[tokio::test]
async fn order_is_kept_per_sender() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "B").await;
    let mut all = rx.subscribe("*").await.unwrap();
    let s1 = client(&d, "A").await; // reaches B by A's rule
    let s2 = client(&d, "B").await;
    const N: u64 = 20_000;
    let t1 = {
        let s1 = s1.clone();
        tokio::spawn(async move {
            for i in 0..N {
                s1.emit("n", &i).await.unwrap();
            }
            s1.flush().await.unwrap();
        })
    };
    for i in 0..N {
        s2.emit("n", &i).await.unwrap();
    }
    s2.flush().await.unwrap();
    t1.await.unwrap();
    let mut next = std::collections::HashMap::new();
    for _ in 0..2 * N {
        let m = tokio::time::timeout(Duration::from_secs(10), all.recv())
            .await
            .expect("message")
            .expect("open");
        let i: u64 = m.json().unwrap();
        let e = next.entry(m.origin().client).or_insert(0u64);
        assert_eq!(i, *e, "out of order from {}", m.origin());
        assert_eq!(m.seq(), i + 1);
        *e += 1;
    }
    assert_eq!(next.len(), 2);
}

#[tokio::test]
async fn on_once_and_remove_listener() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "A").await;
    let on_count = Arc::new(AtomicUsize::new(0));
    let once_count = Arc::new(AtomicUsize::new(0));
    let c1 = on_count.clone();
    let id = rx
        .on("log", move |_| {
            c1.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    let c2 = once_count.clone();
    let once_id = rx
        .once("log", move |_| {
            c2.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    let tx = client(&d, "A").await;
    for _ in 0..5 {
        tx.emit("log", "x").await.unwrap();
    }
    tx.flush().await.unwrap();
    netcluster_testkit::wait_until(5, "5 messages", || on_count.load(Ordering::SeqCst) == 5);
    assert_eq!(once_count.load(Ordering::SeqCst), 1);
    assert!(
        !rx.remove_listener(once_id),
        "a fired once-listener is gone"
    );
    assert!(rx.remove_listener(id));
    assert!(!rx.remove_listener(id));
    tx.emit("log", "y").await.unwrap();
    tx.flush().await.unwrap();
    // The daemon no longer sends "log" to rx: a flush from rx after the
    // unsubscribe, then a check of its counters.
    rx.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(on_count.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn payloads_large_and_binary_arrive_intact() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "A").await;
    let mut s = rx.subscribe("blob").await.unwrap();
    let rx2 = client(&d, "B").await;
    let mut s2 = rx2.subscribe("blob").await.unwrap();
    let tx = client(&d, "A").await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    tx.emit_bytes("blob", &big).await.unwrap();
    tx.emit_bytes("blob", b"\x00\xff").await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), s.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload(), &big[..]);
    assert_eq!(s.recv().await.unwrap().payload(), b"\x00\xff");
    let m2 = tokio::time::timeout(Duration::from_secs(10), s2.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m2.payload(), &big[..]);
    assert_eq!(m2.channel(), "A");
}

#[tokio::test]
async fn one_subscription_over_several_events_keeps_their_order() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "A").await;
    let mut both = rx.subscribe_many(&["a", "b"]).await.unwrap();
    let tx = client(&d, "A").await;
    for i in 0..200u32 {
        tx.emit(
            if i % 3 == 0 {
                "a"
            } else if i % 3 == 1 {
                "b"
            } else {
                "c"
            },
            &i,
        )
        .await
        .unwrap();
    }
    tx.flush().await.unwrap();
    let got: Vec<u32> = drain(&mut both)
        .await
        .iter()
        .map(|m| m.json().unwrap())
        .collect();
    let want: Vec<u32> = (0..200).filter(|i| i % 3 != 2).collect();
    assert_eq!(got, want);
    drop(both);
    // Dropping it unsubscribed both events at the daemon.
    rx.flush().await.unwrap();
    let ctl = client(&d, "control").await;
    let me = ctl
        .request(
            "nc-control-showclient",
            &serde_json::json!({"channel": "A", "client": rx.client_id()}),
        )
        .await
        .unwrap();
    assert_eq!(me["subscriptions"], serde_json::json!([]));
}

/// Rules never copy messages into `control`: not `true`, not a regex that
/// matches it. Its own clients still talk among themselves.
#[tokio::test]
async fn rules_never_feed_the_control_channel() {
    let d = TestDaemon::start(
        r#"{ "channels": {
            "A": { "propagatetochannels": true },
            "B": { "propagatetochannels": ".*" },
            "E": { "propagatetochannels": "^control$" }
        } }"#,
    );
    let mut ls = listeners(&d, &["control", "A", "B"]).await;
    for ch in ["A", "B", "E"] {
        let c = client(&d, ch).await;
        c.emit("app", &ch).await.unwrap();
        c.flush().await.unwrap();
    }
    let on_control = drain(&mut ls[0].1).await;
    assert!(
        on_control.is_empty(),
        "control got {:?}",
        channels(&on_control)
    );
    // The rules still apply to the other channels (each listener also
    // gets the message of the other client on its own channel).
    assert_eq!(channels(&drain(&mut ls[1].1).await), ["A", "B"]);
    assert_eq!(channels(&drain(&mut ls[2].1).await), ["A", "B"]);
    // And showchannel() does not list control as a target.
    let ctl = client(&d, "control").await;
    let all = ctl.request("nc-control-showchannel", &()).await.unwrap();
    for ch in all.as_array().unwrap() {
        assert!(!ch["propagatesto"].to_string().contains("control"), "{ch}");
    }
    let other = client(&d, "control").await;
    other.emit("note", "hi").await.unwrap();
    other.flush().await.unwrap();
    assert_eq!(channels(&drain(&mut ls[0].1).await), ["control"]);
}
