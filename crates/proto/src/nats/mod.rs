//! The NATS bridge's sans-IO core: how netcluster messages look on NATS.
//!
//! A message on channel C with event E travels on subject `{prefix}.{C}.{E}`
//! with its payload unchanged; one header carries the origin (node,
//! client, sequence) and the exact names ([`headers`]). Names that are not
//! valid NATS tokens are escaped reversibly ([`subject`]). What arrives is put in
//! order per origin, duplicates and loops dropped and gaps reported by
//! [`recv`]. Nothing here touches a socket or a clock: the daemon's bridge
//! (in `netcluster-server`) feeds it what the NATS client library hands over.

pub mod headers;
pub mod recv;
pub mod subject;

pub use headers::{decode, origin_names, origin_value, Envelope, Inbound, InboundError};
pub use recv::{Receiver, Verdict};
pub use subject::{
    decode_token, encode_token, is_valid_prefix, parse_subject, split_subject, subject,
    SubjectError,
};
