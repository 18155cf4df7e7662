//! `nats.narrow` against a real `nats-server`: the bridge subscribes only
//! to the events local clients listen to, follows them as clients
//! subscribe and leave, and falls back to the channel wildcard for a
//! client on `*` or `nc-gap` and past the bound of subjects per channel.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::nats::{status, NatsServer, RawNats};
use common::{Daemon, Got};
use serde_json::{json, Value};

/// Waits until the bridge is connected and subscribed to exactly `want`
/// (all confirmed by the server).
fn wait_subjects(d: &Daemon, want: Value) {
    let n = want.as_array().unwrap().len() as u64;
    netcluster_testkit::wait_until(30, &format!("NATS subjects {want}"), || {
        let s = &status(d)["nats"];
        s["state"] == "connected" && s["subjects"] == want && s["subscriptions"] == n
    });
}

#[test]
fn narrow_subscribes_to_the_events_local_clients_listen_to() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let d = Daemon::start(&format!(
        r#"{{"nats": {{"servers": ["{}"], "narrow": true}},
            "channels": {{"A": {{"propagatetonats": true}}, "B": {{}}}}}}"#,
        nats.url()
    ));
    // Nobody listens: nothing is subscribed (B accepts too, but is idle).
    wait_subjects(&d, json!([]));
    let mut l = d.raw("A", "l");
    l.subscribe(&["x", "y z"]);
    let events = json!(["netcluster.A.x", "netcluster.A.~y%20z"]);
    wait_subjects(&d, events.clone());

    // Only what is listened to leaves the NATS server for this daemon.
    let mut plain = RawNats::connect(nats.port);
    plain.publish("netcluster.A.x", b"1");
    plain.publish("netcluster.A.other", b"not subscribed");
    plain.publish("netcluster.A.~y%20z", b"3");
    plain.sync();
    for (event, payload) in [("x", &b"1"[..]), ("y z", b"3")] {
        match l.next() {
            Some(Got::Deliver {
                event: e,
                payload: p,
                ..
            }) => assert_eq!((e.as_str(), p.as_slice()), (event, payload)),
            other => panic!("{other:?}"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let s = status(&d);
    // With the channel wildcard "other" would have reached the bridge.
    assert_eq!(s["nats"]["messages_in"], 2, "{s}");
    assert_eq!(s["nats"]["refused"], 0, "{s}");

    // A client on `*`: the whole channel; when it leaves, the events again.
    let mut all = d.raw("A", "all");
    all.subscribe(&["*"]);
    wait_subjects(&d, json!(["netcluster.A.*"]));
    drop(all);
    wait_subjects(&d, events.clone());

    // A client on `nc-gap` needs every message of an origin: whole too.
    let mut gaps = d.raw("A", "gaps");
    gaps.subscribe(&["nc-gap"]);
    wait_subjects(&d, json!(["netcluster.A.*"]));
    drop(gaps);
    wait_subjects(&d, events);

    // Past the bound of subjects per channel (32): whole.
    let names: Vec<String> = (0..33).map(|i| format!("e{i}")).collect();
    let mut many = d.raw("A", "many");
    many.subscribe(&names.iter().map(String::as_str).collect::<Vec<_>>());
    wait_subjects(&d, json!(["netcluster.A.*"]));
    drop(many);
    drop(l);
    wait_subjects(&d, json!([]));
}
