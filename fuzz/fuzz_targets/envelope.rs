//! Every envelope decoder on arbitrary bodies.
#![no_main]

use floe_proto::codec::{DEFAULT_MAX_FRAME, decode_body, decode_frame};
use floe_proto::{Open, Response, SnapshotResponse, StreamAppendResult, WireError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_body::<Open>(data);
    let _ = decode_body::<Response>(data);
    let _ = decode_body::<Result<StreamAppendResult, WireError>>(data);
    let _ = decode_body::<Result<SnapshotResponse, WireError>>(data);
    let _ = decode_frame::<Open>(data, DEFAULT_MAX_FRAME);
});
