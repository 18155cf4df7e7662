//! Tests of the metrics table and how results are judged.

use super::*;

fn sample() -> Results {
    let mut r = Results::new(
        "now".into(),
        None,
        Machine::default(),
        Plan::tiny(),
        System::ALL.to_vec(),
    );
    r.set("tp_1to1_16", System::Nc, 9e6);
    r.set("tp_1to1_16", System::Nats, 4e6);
    r.set("tp_1to1_16", System::Redis, 5e6);
    r.set("rtt1_p50", System::Nc, 40_000.0);
    r.set("rtt1_p50", System::Nats, 53_000.0);
    r.set("rtt1_p50", System::Redis, 45_000.0);
    r.set("rss_idle", System::Nc, 9.0 * 1024.0);
    r
}

#[test]
fn best_peer_follows_direction() {
    let r = sample();
    assert_eq!(r.best_peer("tp_1to1_16"), Some((System::Redis, 5e6)));
    assert_eq!(r.best_peer("rtt1_p50"), Some((System::Redis, 45_000.0)));
    assert!((r.ratio("tp_1to1_16").unwrap() - 1.8).abs() < 1e-9);
    assert_eq!(r.ratio("tp_1to4_256"), None);
}

#[test]
fn targets_are_judged() {
    let t = targets(&sample());
    let v = |prefix: &str| {
        t.iter()
            .find(|c| c.target.starts_with(prefix))
            .unwrap()
            .verdict
    };
    assert_eq!(v("1→1 throughput 16 B"), Verdict::Met);
    assert_eq!(v("1→1 throughput 256 B"), Verdict::Unknown);
    assert_eq!(v("Round trip p50 on one CPU ≤ 0.7"), Verdict::NotMet);
    assert_eq!(v("Daemon RSS ≤ 8 MiB"), Verdict::NotMet);
    assert_eq!(v("Multicast"), Verdict::Unknown);
    assert_eq!(v("Library 1→1 16 B"), Verdict::Unknown);
}

#[test]
fn library_is_judged_against_the_raw_client() {
    let mut r = sample();
    r.set("tp_1to1_16", System::NcRaw, 9.5e6);
    r.set("tp_1to1_256", System::Nc, 3e6);
    r.set("tp_1to1_256", System::NcRaw, 5e6);
    r.set("rtt1_p50", System::NcRaw, 39_500.0);
    let t = library_targets(&r);
    assert_eq!(t[0].verdict, Verdict::Met, "{}", t[0].detail);
    assert!(t[0].detail.starts_with("95 %"), "{}", t[0].detail);
    assert_eq!(t[1].verdict, Verdict::NotMet);
    assert_eq!(t[2].verdict, Verdict::Unknown);
    assert_eq!(t[3].verdict, Verdict::Met, "{}", t[3].detail);
    r.set("rtt1_p50", System::NcRaw, 38_900.0);
    assert_eq!(library_targets(&r)[3].verdict, Verdict::NotMet);
}

#[test]
fn medians() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
}
