//! Fuzzes the NATS bridge's decoder: a subject and an `Nc-Origin` value as
//! a NATS server might hand them over. Decoding must never panic, and
//! whatever it accepts must encode back to the same meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcluster_proto::nats::{self, Inbound};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // First line: the subject; the rest, if any: the Nc-Origin value.
    let (subject, origin) = match text.split_once('\n') {
        Some((s, o)) => (s, Some(o)),
        None => (&*text, None),
    };
    for token in subject.split('.') {
        if let Ok(name) = nats::decode_token(token) {
            assert_eq!(nats::encode_token(&name), token);
        }
    }
    match nats::decode("nc", subject, origin) {
        Ok(Inbound::Bridged(env)) => {
            let again = nats::subject("nc", &env.channel, &env.event);
            let back = nats::decode("nc", &again, Some(&env.origin()));
            assert_eq!(back, Ok(Inbound::Bridged(env)));
        }
        Ok(Inbound::Foreign { channel, event }) => {
            assert_eq!(nats::subject("nc", &channel, &event), subject);
        }
        Err(_) => {}
    }
});
