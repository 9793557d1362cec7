//! The agent's frame decoder and message parser: any bytes give frames or a
//! clear error, never a panic and never an allocation over a frame's bound;
//! and a server fed any bytes ends its session without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zfsrepl_core::agent::{decode_all, proto, Request, Response};

fuzz_target!(|data: &[u8]| {
    let (frames, _err) = decode_all(data);
    for f in frames {
        assert!(f.payload.len() <= f.kind.max_payload());
        let _ = proto::parse_message::<Request>(&f.payload);
        let _ = proto::parse_message::<Response>(&f.payload);
    }
});
