//! Fuzzes the replication wire format: frame splitting and request/response decoding never
//! panic, and whatever decodes re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_replication::frame::{self, Request, Response};

fuzz_target!(|data: &[u8]| {
    // Frame splitting: a frame found is within the limit and inside the input.
    let mut rest = data;
    while let Ok(Some((payload, tail))) = frame::split_frame(rest, 1 << 16) {
        assert!(payload.len() <= 1 << 16);
        assert_eq!(payload.len() + tail.len() + frame::HEADER_LEN, rest.len());
        check(payload);
        rest = tail;
    }
    check(data);
});

fn check(payload: &[u8]) {
    if let Ok(req) = Request::decode(payload) {
        let mut again = Vec::new();
        req.encode(&mut again);
        assert_eq!(Request::decode(&again).ok().as_ref(), Some(&req));
    }
    if let Ok(resp) = Response::decode(payload) {
        let mut again = Vec::new();
        resp.encode(&mut again);
        assert_eq!(Response::decode(&again).ok().as_ref(), Some(&resp));
    }
}
