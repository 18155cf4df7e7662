use super::*;

fn rules(name: &str, prop: Propagation) -> ChannelRules {
    ChannelRules {
        name: name.into(),
        propagate: prop,
        to_net: false,
        from_net: true,
    }
}

fn pat(p: &[&str]) -> Propagation {
    Propagation::Patterns(p.iter().map(|s| Regex::new(s).unwrap()).collect())
}

fn routed(r: &Router, ch: &str, ev: &str, ex: Option<Slot>) -> Vec<(Slot, bool)> {
    let mut out = Vec::new();
    r.route(r.channel(ch).unwrap(), ev, ex, true, &mut out);
    let mut v: Vec<_> = out.into_iter().map(|x| (x.slot, x.own_channel)).collect();
    v.sort();
    v
}

fn setup(a: Propagation) -> Router {
    let mut r = Router::new();
    r.set_rules(vec![
        rules("control", Propagation::None),
        rules("A", a),
        rules("B", Propagation::All),
        rules("Bravo", Propagation::None),
    ]);
    // slot 1,2 on A; 3 on B; 4 on Bravo; 5 on control
    for (slot, ch) in [(1, "A"), (2, "A"), (3, "B"), (4, "Bravo"), (5, "control")] {
        r.join(slot, r.channel(ch).unwrap());
        r.subscribe(slot, "*");
    }
    r
}

#[test]
fn sender_never_gets_its_own_message() {
    let r = setup(Propagation::None);
    assert_eq!(routed(&r, "A", "x", Some(1)), vec![(2, true)]);
    assert_eq!(routed(&r, "A", "x", None), vec![(1, true), (2, true)]);
}

#[test]
fn false_true_regex_and_list() {
    let r = setup(Propagation::None);
    assert_eq!(routed(&r, "A", "x", Some(1)), vec![(2, true)]);
    // `true` means every other channel except `control`.
    let r = setup(Propagation::All);
    assert_eq!(
        routed(&r, "A", "x", Some(1)),
        vec![(2, true), (3, false), (4, false)]
    );
    // Unanchored search: "B" matches "B" and "Bravo".
    let r = setup(pat(&["B"]));
    assert_eq!(
        routed(&r, "A", "x", Some(1)),
        vec![(2, true), (3, false), (4, false)]
    );
    let r = setup(pat(&["^B$"]));
    assert_eq!(routed(&r, "A", "x", Some(1)), vec![(2, true), (3, false)]);
    let r = setup(pat(&["^B$", "avo"]));
    assert_eq!(
        routed(&r, "A", "x", Some(1)),
        vec![(2, true), (3, false), (4, false)]
    );
    // A rule matching its own channel does not deliver twice.
    let r = setup(pat(&["A"]));
    assert_eq!(routed(&r, "A", "x", Some(1)), vec![(2, true)]);
}

#[test]
fn one_hop_only() {
    // A -> B, and B -> everything; a message on A must not go on from B.
    let r = setup(pat(&["^B$"]));
    assert_eq!(routed(&r, "A", "x", Some(1)), vec![(2, true), (3, false)]);
    // B's own messages do follow B's rule.
    assert_eq!(
        routed(&r, "B", "x", Some(3)),
        vec![(1, false), (2, false), (4, false)]
    );
}

#[test]
fn subscription_filtering() {
    let mut r = Router::new();
    r.set_rules(vec![rules("A", Propagation::None)]);
    let a = r.channel("A").unwrap();
    for s in 1..=4 {
        r.join(s, a);
    }
    r.subscribe(1, "log");
    r.subscribe(2, "metric");
    r.subscribe(3, "*");
    r.subscribe(3, "log"); // wildcard and specific: still once
    assert_eq!(routed(&r, "A", "log", Some(4)), vec![(1, true), (3, true)]);
    assert_eq!(
        routed(&r, "A", "metric", Some(4)),
        vec![(2, true), (3, true)]
    );
    assert_eq!(routed(&r, "A", "other", Some(4)), vec![(3, true)]);
    assert!(r.unsubscribe(3, "*"));
    assert_eq!(routed(&r, "A", "log", Some(4)), vec![(1, true), (3, true)]);
    assert_eq!(routed(&r, "A", "other", Some(4)), vec![]);
    assert!(!r.unsubscribe(3, "nothing"));
    assert_eq!(r.subscriptions(3), vec!["log"]);
    r.leave(1);
    assert_eq!(routed(&r, "A", "log", Some(4)), vec![(3, true)]);
    assert_eq!(r.members(a), &[2, 3, 4]);
}

#[test]
fn set_rules_keeps_clients_of_unchanged_channels() {
    let mut r = setup(Propagation::None);
    let change = r.set_rules(vec![
        rules("control", Propagation::None),
        rules("A", pat(&["^C$"])),
        rules("B", Propagation::All),
        rules("C", Propagation::None),
    ]);
    assert_eq!(change.added, vec!["C".to_string()]);
    assert_eq!(change.changed, vec!["A".to_string()]);
    assert_eq!(change.removed, vec![("Bravo".to_string(), vec![4])]);
    assert_eq!(r.client_channel(4), None);
    // A's clients are kept with their subscriptions; C is a new target.
    r.join(9, r.channel("C").unwrap());
    r.subscribe(9, "x");
    assert_eq!(routed(&r, "A", "x", Some(1)), vec![(2, true), (9, false)]);
    assert_eq!(
        routed(&r, "B", "x", Some(3)),
        vec![(1, false), (2, false), (9, false)]
    );
    assert_eq!(r.channel_names(), vec!["A", "B", "C", "control"]);
}

#[test]
fn rejoin_and_unknown_slots() {
    let mut r = setup(Propagation::None);
    r.leave(77);
    assert!(!r.subscribe(77, "x"));
    r.join(1, r.channel("B").unwrap());
    assert_eq!(routed(&r, "A", "x", None), vec![(2, true)]);
    assert_eq!(r.subscriptions(1), Vec::<&str>::new());
}

#[test]
fn rules_never_target_the_control_channel() {
    for prop in [
        Propagation::All,
        pat(&[".*"]),
        pat(&["^control$"]),
        pat(&["ntr", "B"]),
    ] {
        let r = setup(prop.clone());
        let a = r.channel("A").unwrap();
        assert!(!r.targets(a).any(|t| t == CONTROL_CHANNEL), "{prop:?}");
        assert!(
            !routed(&r, "A", "x", Some(1)).contains(&(5, false)),
            "{prop:?}"
        );
        // The control channel's own clients still get its own messages.
        assert_eq!(routed(&r, "control", "x", None)[0], (5, true));
    }
}

#[test]
fn listened_events_follow_subscriptions() {
    let mut r = Router::new();
    r.set_rules(vec![rules("A", Propagation::None)]);
    let a = r.channel("A").unwrap();
    assert_eq!(r.listened_events(a), Some(vec![]));
    r.join(1, a);
    r.join(2, a);
    r.subscribe(1, "y");
    r.subscribe(2, "x");
    r.subscribe(2, "y");
    assert_eq!(r.listened_events(a), Some(vec!["x", "y"]));
    r.subscribe(1, "*");
    assert_eq!(r.listened_events(a), None);
    r.unsubscribe(1, "*");
    r.leave(2);
    assert_eq!(r.listened_events(a), Some(vec!["y"]));
}
