//! Reloading a changed `nats` section: the bridge reconnects with the new
//! settings (another server, prefix and name) and messages flow there both
//! ways, none to or from the server it left.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::nats::{config, status, wait_bridged, NatsServer, RawNats};
use common::{Daemon, Got};

#[test]
fn reload_of_the_nats_section_reconnects_to_the_new_server() {
    let (Some(n1), Some(n2)) = (NatsServer::start(), NatsServer::start()) else {
        return;
    };
    let d = Daemon::start(&config(&n1.url(), ""));
    wait_bridged(&d, 1);
    let mut l = d.raw("A", "l");
    l.subscribe(&["*"]);
    let mut p = d.raw("A", "p");
    let mut plain1 = RawNats::connect(n1.port);
    plain1.subscribe("netcluster.>", 1);
    p.publish("before", b"to n1");
    assert_eq!(plain1.next_msg().subject, "netcluster.A.before");

    // Another server, another prefix, another name: the bridge reconnects.
    let moved = serde_json::json!({
        "nats": {"servers": [n2.url()], "prefix": "site2", "name": "moved"},
        "channels": {"A": {"propagatetonats": true}}
    });
    d.control()
        .request("nc-control-reloadconfig", &moved)
        .unwrap();
    let there = format!("127.0.0.1:{}", n2.port);
    netcluster_testkit::wait_until(30, "the bridge to reconnect to the second server", || {
        let s = status(&d)["nats"].clone();
        s["server"] == there.as_str() && s["prefix"] == "site2" && s["subscriptions"] == 1
    });
    let mut plain2 = RawNats::connect(n2.port);
    plain2.subscribe("site2.>", 1);
    // Local messages go to the second server, under the new prefix.
    p.publish("after", b"to n2");
    let m = plain2.next_msg();
    assert_eq!(m.subject, "site2.A.after");
    assert_eq!(m.payload, b"to n2");
    assert_eq!(m.origin().unwrap()[4], "after");
    // What a client of the second server publishes reaches local clients.
    plain2.publish("site2.A.back", b"from n2");
    plain2.sync();
    let mut events = Vec::new();
    while events.last().map(String::as_str) != Some("back") {
        match l.next() {
            Some(Got::Deliver { event, payload, .. }) => {
                if event == "back" {
                    assert_eq!(payload, b"from n2");
                }
                events.push(event);
            }
            other => panic!("{other:?} after {events:?}"),
        }
    }
    assert_eq!(events, ["before", "after", "back"]);
    // The first server is left: nothing from it arrives, nothing goes there.
    plain1.publish("netcluster.A.old", b"not wanted");
    plain1.sync();
    p.publish("later", b"n2 only");
    assert_eq!(plain2.next_msg().subject, "site2.A.later");
    std::thread::sleep(Duration::from_millis(300));
    let got: Vec<_> = l
        .ping()
        .into_iter()
        .filter(|g| matches!(g, Got::Deliver { event, .. } if event != "later"))
        .collect();
    assert!(got.is_empty(), "{got:?}");
    plain1.sync();
    let s = status(&d)["nats"].clone();
    assert_eq!(s["dropped"], 0, "{s}");
    assert_eq!(s["servers"], serde_json::json!([n2.url()]), "{s}");
}
