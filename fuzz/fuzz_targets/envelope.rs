//! Every envelope decoder on arbitrary bodies: the first frame of a stream, the answers of each
//! sub-protocol, and the Raft stream replies.
#![no_main]

use floe_proto::Open;
use floe_proto::codec::{DEFAULT_MAX_FRAME, decode_body, decode_frame};
use floe_proto::raft::{SnapshotResponse, StreamAppendResult, VoteRequest};
use floe_proto::{Answer, CallRequest, Members, OpenSession, Propose, Rpc, Status, WireError};
use libfuzzer_sys::fuzz_target;

fn answer<R: Rpc>(data: &[u8]) {
    let _ = decode_body::<Result<R::Reply, WireError>>(data);
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_body::<Open>(data);
    answer::<CallRequest>(data);
    answer::<OpenSession>(data);
    answer::<Status>(data);
    answer::<Members>(data);
    answer::<Propose>(data);
    answer::<VoteRequest>(data);
    let _ = decode_body::<Result<StreamAppendResult, WireError>>(data);
    let _ = decode_body::<Result<SnapshotResponse, WireError>>(data);
    let _ = decode_frame::<Open>(data, DEFAULT_MAX_FRAME);
    let _ = Answer::error(WireError::new(floe_proto::ErrorKind::Internal, "x"));
});
