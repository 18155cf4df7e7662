//! Fuzzes the NATS bridge's decoder: a subject and headers as a NATS
//! server might hand them over. Decoding must never panic, and whatever it
//! accepts must encode back to the same subject and headers' meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcluster_proto::nats::{self, Inbound};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Lines: subject, then "Name: value" headers.
    let mut lines = text.split('\n');
    let subject = lines.next().unwrap_or("");
    let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(": ")).collect();
    let get = |h: &str| headers.iter().find(|(k, _)| *k == h).map(|(_, v)| *v);
    for token in subject.split('.') {
        if let Ok(name) = nats::decode_token(token) {
            assert_eq!(nats::encode_token(&name), token);
        }
    }
    match nats::decode("nc", subject, get) {
        Ok(Inbound::Bridged(env)) => {
            let hs = nats::encode_headers(&env);
            let again = nats::subject("nc", &env.channel, &env.event);
            let back = nats::decode("nc", &again, |h| {
                hs.iter().find(|(k, _)| *k == h).map(|(_, v)| v.as_str())
            });
            assert_eq!(back, Ok(Inbound::Bridged(env)));
        }
        Ok(Inbound::Foreign { channel, event }) => {
            assert_eq!(nats::subject("nc", &channel, &event), subject);
        }
        Err(_) => {}
    }
});
