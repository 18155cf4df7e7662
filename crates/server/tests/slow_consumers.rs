//! Slow consumers through the `ncserver` binary: for each `slowconsumer`
//! policy, clients that stop reading while more than 100 MB pass must not
//! cost the other listeners a message, must not grow the daemon's memory
//! past what the config allows, and must be told what happened to them.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::slow::*;
use common::{bounded, Daemon, Got};
use serde_json::{json, Value};

#[test]
fn disconnect_closes_stalled_clients_at_the_limit_and_others_get_everything() {
    let _g = serial();
    bounded(120, "slowconsumer disconnect", || {
        let t = Instant::now();
        let Setup {
            mut d,
            mut ctl,
            base,
            native,
            legacy,
            listeners: [l1, l2],
        } = setup("disconnect");
        let ids = [native.client, legacy.id];
        let [native, legacy] = watch_stalled(native, legacy, d.path("control"));
        let _p = publish(&d, MESSAGES, &[&l1, &l2], true);
        assert_eq!(l1.join(), MESSAGES);
        assert_eq!(l2.join(), MESSAGES);
        for (_, (n, why)) in [native.join().unwrap(), legacy.join().unwrap()] {
            assert_eq!(
                why, "slow consumer: queue reached queuebytes (1048576 bytes)",
                "the error names the limit"
            );
            // It got what fit in its queue (and the socket buffers) first.
            assert!(n * PAYLOAD as u64 >= QUEUE && n < MESSAGES, "{n} messages");
        }
        assert_gone(&mut ctl, &ids);
        report("slowconsumer disconnect", &d, MESSAGES, base, t);
        d.assert_alive();
    });
}

#[test]
fn block_waits_then_closes_stalled_clients_after_blockms_and_others_get_everything() {
    let _g = serial();
    bounded(120, "slowconsumer block", || {
        let t = Instant::now();
        let Setup {
            mut d,
            mut ctl,
            base,
            native,
            legacy,
            listeners: [l1, l2],
        } = setup("block");
        let ids = [native.client, legacy.id];
        let [native, legacy] = watch_stalled(native, legacy, d.path("control"));
        // Not paced: under block the daemon holds the publisher back.
        let _p = publish(&d, MESSAGES, &[], false);
        assert_eq!(l1.join(), MESSAGES);
        assert_eq!(l2.join(), MESSAGES);
        for (full, (n, why)) in [native.join().unwrap(), legacy.join().unwrap()] {
            assert_eq!(
                why, "slow consumer: queue stayed above queuebytes (1048576 bytes) for 1000 ms",
                "the error names the limit"
            );
            assert!(n * PAYLOAD as u64 >= QUEUE && n < MESSAGES, "{n} messages");
            // While the publisher waited, showclient showed the full queue
            // and the wait. A queue passes the limit by the message that
            // crossed it, and by one more when the publisher waited for the
            // other stalled client first.
            let full = full.expect("showclient showed the queue over queuebytes");
            let q = full["queued_bytes"].as_u64().unwrap();
            assert!((QUEUE..QUEUE + 3 * PAYLOAD as u64).contains(&q), "{full}");
            assert!(full["blocked"].as_u64().unwrap() >= 1, "{full}");
            assert_eq!(full["dropped"], 0, "{full}");
        }
        assert_gone(&mut ctl, &ids);
        report("slowconsumer block", &d, MESSAGES, base, t);
        d.assert_alive();
    });
}

#[test]
fn drop_counts_what_stalled_clients_miss_and_tells_them_with_one_gap_event() {
    let _g = serial();
    bounded(120, "slowconsumer drop", || {
        let t = Instant::now();
        let Setup {
            mut d,
            mut ctl,
            base,
            mut native,
            mut legacy,
            listeners: [l1, l2],
        } = setup("drop");
        let p = publish(&d, MESSAGES, &[&l1, &l2], true);
        assert_eq!(l1.join(), MESSAGES);
        assert_eq!(l2.join(), MESSAGES);
        report("slowconsumer drop", &d, MESSAGES, base, t);

        // showclient: a full queue and the drops, for both stalled clients.
        // (Once a client misses messages it gets none until its queue is
        // down to half, so a queue that shrank a little after the first
        // drop — the legacy client's, held while it was still silent and
        // written when it turned out to be a seed client — stays there.)
        let mut dropped = Vec::new();
        for id in [native.client, legacy.id] {
            let v = ctl.show_client("S", id).unwrap();
            let q = v["queued_bytes"].as_u64().unwrap();
            assert!((QUEUE / 2..QUEUE + 2 * PAYLOAD as u64).contains(&q), "{v}");
            let n = v["dropped"].as_u64().unwrap();
            assert!(n > 0 && n < MESSAGES, "{v}");
            assert_eq!(v["blocked"], 0, "{v}");
            dropped.push(n);
        }

        // Reading again, each gets a gapless prefix, then one nc-gap with
        // the count of the rest: every message is accounted for.
        let mut k = 0;
        let gap = loop {
            let next = native
                .try_next()
                .unwrap_or_else(|e| panic!("native: after {k} messages, no nc-gap event: {e}"));
            match next.expect("native: more frames") {
                Got::Deliver { event, payload, .. } if event == "bulk" => {
                    assert_eq!(index_of(&payload), k, "native: gapless prefix");
                    k += 1;
                }
                Got::Deliver {
                    event,
                    payload,
                    client: 0,
                    ..
                } if event == "nc-gap" => {
                    break serde_json::from_slice::<Value>(&payload).unwrap();
                }
                other => panic!("native: unexpected {other:?}"),
            }
        };
        assert_eq!(
            gap,
            json!({"cause": "slowconsumer", "dropped": MESSAGES - k, "queuebytes": QUEUE})
        );
        assert_eq!(dropped[0], MESSAGES - k);

        let mut k = 0;
        let gap = loop {
            let p = legacy.next().expect("legacy: more packets");
            match p["event"].as_str().unwrap() {
                "bulk" => {
                    let data = p["data"].as_str().unwrap();
                    assert_eq!(
                        data[..8].parse::<u64>().unwrap(),
                        k,
                        "legacy: gapless prefix"
                    );
                    k += 1;
                }
                "nc-gap" => break p,
                other => panic!("legacy: unexpected event {other}"),
            }
        };
        assert_eq!(gap["emmiteruuid"], "ncserver");
        assert_eq!(
            gap["data"],
            json!({"cause": "slowconsumer", "dropped": MESSAGES - k, "queuebytes": QUEUE})
        );
        assert_eq!(dropped[1], MESSAGES - k);

        // Caught up: the next message arrives, and there is only one gap event.
        p.emit("after", &1).unwrap();
        p.flush().unwrap();
        match native.next() {
            Some(Got::Deliver { event, .. }) => assert_eq!(event, "after"),
            other => panic!("native: expected the next message, got {other:?}"),
        }
        assert_eq!(native.ping(), vec![], "nothing else queued");
        assert_eq!(legacy.next().unwrap()["event"], "after");
        for id in [native.client, legacy.id] {
            let v = ctl.show_client("S", id).unwrap();
            assert_eq!(v["queued_bytes"], 0, "{v}");
        }
        d.assert_alive();
    });
}

#[test]
fn a_listener_a_little_slower_than_the_publisher_loses_nothing_under_block() {
    let _g = serial();
    bounded(120, "slightly slower listener", || {
        // 512 × 64 KiB = 32 MiB.
        const COUNT: u64 = 512;
        let t = Instant::now();
        let mut d = Daemon::start(r#"{ "queuebytes": "1MiB", "channels": { "S": {} } }"#);
        let mut ctl = d.control();
        // Buffers only 16 messages in the library, so its pace shows at the
        // daemon, and sleeps 40 ms per 16 messages (1 MiB): at most ~25 MB/s,
        // slower than the publisher even on a loaded machine, so the
        // publisher is held back now and then; far from blockms, so the
        // listener is never closed.
        let slow = listener(&d, COUNT, 16, 16, Duration::from_millis(40));
        let fast = listener(&d, COUNT, 1024, 0, Duration::ZERO);
        let slow_id = slow.id;
        let base = d.peak_rss();
        let _p = publish(&d, COUNT, &[], false);
        let v = ctl.show_client("S", slow_id).unwrap();
        assert_eq!(slow.join(), COUNT);
        assert_eq!(fast.join(), COUNT);
        assert_eq!(v["dropped"], 0, "{v}");
        assert!(
            v["blocked"].as_u64().unwrap() > 0,
            "the publisher never had to wait, so the listener was not slower: {v}"
        );
        report("slightly slower listener", &d, COUNT, base, t);
        d.assert_alive();
    });
}

#[test]
fn drop_puts_each_gap_right_before_the_first_message_after_the_hole() {
    let _g = serial();
    bounded(120, "slowconsumer drop, gap position", || {
        const COUNT: u64 = 600;
        let d = Daemon::start(&config("drop"));
        // A reader slower than the publisher that never stops: it misses
        // runs of messages and catches up again, many times.
        let mut slow = d.raw("S", "slow-reader");
        slow.subscribe(&["*"]);
        let reader = std::thread::spawn(move || {
            // (index of the message it follows, dropped) per nc-gap.
            let (mut next, mut gaps, mut got) = (0u64, Vec::new(), 0u64);
            while next < COUNT {
                match slow.next().expect("slow reader: more frames") {
                    Got::Deliver { event, payload, .. } if event == "bulk" => {
                        let i = index_of(&payload);
                        assert_eq!(
                            i, next,
                            "message {i} where {next} was due: a hole with no nc-gap right before it"
                        );
                        next = i + 1;
                        got += 1;
                    }
                    Got::Deliver {
                        event,
                        payload,
                        client: 0,
                        ..
                    } if event == "nc-gap" => {
                        let v: Value = serde_json::from_slice(&payload).unwrap();
                        assert_eq!(v["cause"], "slowconsumer", "{v}");
                        let n = v["dropped"].as_u64().unwrap();
                        assert!(n > 0, "{v}");
                        gaps.push((next, n));
                        // The messages it stands for: the next one due is
                        // the first after the hole.
                        next += n;
                    }
                    other => panic!("slow reader: unexpected {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(next, COUNT, "the gaps count more messages than were sent");
            (got, gaps)
        });
        let p = publish(&d, COUNT, &[], false);
        let (got, gaps) = reader.join().unwrap();
        let dropped: u64 = gaps.iter().map(|g| g.1).sum();
        eprintln!(
            "slow reader: {got} of {COUNT} messages, {} nc-gap events for {dropped} dropped, \
             each right before the first message after its hole",
            gaps.len()
        );
        assert!(!gaps.is_empty(), "the reader was never too slow");
        assert_eq!(got + dropped, COUNT);
        drop(p);
    });
}

#[test]
fn a_publisher_blocked_on_one_channel_holds_up_no_other_channel() {
    let _g = serial();
    bounded(120, "blocked publisher isolation", || {
        let d = Daemon::start(
            r#"{ "queuebytes": "1MiB", "channels": { "S": { "blockms": 60000 }, "T": {} } }"#,
        );
        let _stalled = stalled_native(&d);
        let connect = |ch: &str| {
            netcluster::blocking::Client::builder(ch)
                .with(|b| b.socket_dir(d.dir()).echo(false))
                .connect()
                .unwrap()
        };
        // S's publisher fills the stalled client's queue and then waits.
        let s_pub = connect("S");
        let filler = std::thread::spawn(move || {
            for i in 0..64 {
                // Fails only once the daemon is gone at the end.
                let _ = s_pub.emit_bytes("bulk", payload(i));
            }
        });
        let mut ctl = d.control();
        let t = Instant::now();
        loop {
            let v = ctl.request("nc-control-showchannel", &json!("S")).unwrap();
            let blocked: u64 = v
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["blocked"].as_u64().unwrap())
                .sum();
            if blocked > 0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "S's publisher never waited: {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Meanwhile T flows as usual.
        let t_rx = connect("T");
        let mut sub = t_rx.subscribe("n").unwrap();
        let t_tx = connect("T");
        for i in 0..1000u64 {
            t_tx.emit("n", &i).unwrap();
        }
        t_tx.flush().unwrap();
        for i in 0..1000u64 {
            let m = sub
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("T's message {i} held up"));
            assert_eq!(m.json::<u64>().unwrap(), i);
        }
        // And S's publisher is still held by the stalled client (blockms
        // is a minute here), whose queue is full.
        let v = ctl.request("nc-control-showchannel", &json!("S")).unwrap();
        let full = v
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["queued_bytes"].as_u64().unwrap() >= QUEUE);
        assert!(full, "{v}");
        drop(filler);
    });
}
