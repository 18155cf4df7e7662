//! Fuzzes the shared-memory frames (docs/PROTOCOL.md, "Shared-memory
//! payloads") as the daemon and the client decode them, and the bounds
//! check the daemon applies to every descriptor.
//!
//! Every decoded frame is encoded again and must decode to the same frame;
//! a publish descriptor is checked against a pool size taken from the
//! input, and `check_slot` must agree with exact (128-bit) arithmetic.
//! Nothing may panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use netcluster_proto::frame::shm::{self, ShmFrame};
use netcluster_proto::frame::DeliverHeader;

fn reencode(f: &ShmFrame<'_>) -> BytesMut {
    let mut b = BytesMut::new();
    match f {
        ShmFrame::Pool { ack, size } => shm::encode_pool(&mut b, *ack, *size),
        ShmFrame::Publish { offset, len, event } => shm::encode_publish(&mut b, *offset, *len, event),
        ShmFrame::Release(s) => shm::encode_release(&mut b, &s.iter().collect::<Vec<_>>()),
        ShmFrame::PoolFd { pool, size } => shm::encode_pool_fd(&mut b, *pool, *size),
        ShmFrame::Free(s) => {
            shm::encode_free(&mut b, &s.iter().map(|(_, o)| o).collect::<Vec<_>>())
        }
        ShmFrame::Deliver { pool, offset, len, head } => {
            let Ok(event) = std::str::from_utf8(head.event) else {
                return b;
            };
            let h = DeliverHeader {
                node: head.node,
                client: head.client,
                seq: head.seq,
                channel: head.channel,
            };
            shm::encode_deliver(&mut b, &h, event, *pool, *offset, *len);
        }
    }
    b
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let mut rest = &data[8..];
    while let Some(&t) = rest.first() {
        if !shm::is_shm_kind(t) {
            assert!(shm::decode_shm(rest, 4096).is_err());
            return;
        }
        match shm::decode_shm(rest, 4096) {
            Ok(Some((f, n))) => {
                if let ShmFrame::Publish { offset, len, .. } = &f {
                    let fits = *len > 0 && u128::from(*offset) + u128::from(*len) <= u128::from(size);
                    assert_eq!(shm::check_slot(size, *offset, *len).is_ok(), fits);
                }
                let b = reencode(&f);
                if !b.is_empty() {
                    let (again, m) = shm::decode_shm(&b, usize::MAX).unwrap().unwrap();
                    assert_eq!(m, b.len());
                    assert_eq!(format!("{f:?}"), format!("{again:?}"));
                }
                rest = &rest[n..];
            }
            Ok(None) | Err(_) => return,
        }
    }
});
