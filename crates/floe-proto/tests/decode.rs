//! Decoders never panic on any input, and every envelope round-trips.

use floe_proto::codec::{DEFAULT_MAX_FRAME, FrameDecoder, decode_body, decode_frame, encode_frame};
use floe_proto::raft::{AppendEntriesRequest, Entry, EntryPayload, TypeConfig, Vote};
use floe_proto::{
    ActorId, Answer, CallReply, CallRequest, Command, ErrorKind, Open, Ping, Request, RequestId,
    Rpc, Status, StatusReport, WireError,
};
use proptest::prelude::*;

fn samples() -> Vec<Open> {
    let entries: Vec<Entry> = (1..=3)
        .map(|i| Entry {
            log_id: floe_proto::raft::openraft::testing::log_id::<TypeConfig>(2, 1, i),
            payload: EntryPayload::Normal(Command::Activate {
                actor: ActorId::new("T", format!("k{i}")),
                preferred: 1,
            }),
        })
        .collect();
    vec![
        Open::Request(Ping.into()),
        Open::Request(Request::from(AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(floe_proto::raft::openraft::testing::log_id::<TypeConfig>(
                1, 1, 0,
            )),
            entries,
            leader_commit: None,
        })),
        Open::Request(Request::from(CallRequest {
            actor: ActorId::new("bank.Account", "alice"),
            message: "Deposit".into(),
            payload: vec![1, 2, 3],
            request: RequestId {
                session: 9,
                seq: 4,
                sub: 3,
            },
            timeout_ms: 500,
            chain: vec![ActorId::new("bank.Teller", "t1")],
            hops: 1,
            acked: 2,
            retry: true,
        })),
        Open::AppendStream,
    ]
}

#[test]
fn envelopes_round_trip() {
    for s in samples() {
        let f = encode_frame(&s, DEFAULT_MAX_FRAME).expect("encode");
        let back: Open = decode_frame(&f, DEFAULT_MAX_FRAME).expect("decode");
        assert_eq!(format!("{s:?}"), format!("{back:?}"));
    }
    let late = Answer::error(WireError::new(ErrorKind::Timeout, "late"));
    let f = encode_frame(&late.body(), DEFAULT_MAX_FRAME).expect("encode");
    assert!(f.len() > late.body().len());
    assert!(matches!(
        late.decode::<CallRequest>(),
        Ok(Err(WireError {
            kind: ErrorKind::Timeout,
            ..
        }))
    ));
    let reply = CallReply {
        payload: vec![5],
        owner: 3,
        owner_addr: Some("10.0.0.3:7000".into()),
    };
    let ok = Answer::of::<CallRequest>(Ok(reply.clone()));
    assert_eq!(ok.decode::<CallRequest>(), Ok(Ok(reply)));
    // An answer read as the reply of another request type is malformed, never a wrong value.
    assert!(ok.decode::<Status>().is_err());
    let _: Option<StatusReport> = Status
        .answer(Err(WireError::new(ErrorKind::Internal, "x")))
        .decode::<Status>()
        .ok()
        .and_then(|r| r.ok());
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_body::<Open>(&bytes);
        let _ = decode_body::<Result<CallReply, WireError>>(&bytes);
        let _ = decode_body::<Result<StatusReport, WireError>>(&bytes);
        let _ = decode_body::<floe_proto::raft::StreamAppendResult>(&bytes);
        let _ = decode_frame::<Open>(&bytes, DEFAULT_MAX_FRAME);
        let mut d = FrameDecoder::new(1024);
        d.push(&bytes);
        while let Ok(Some(f)) = d.next_frame() {
            let _ = decode_body::<Open>(&f);
        }
    }

    #[test]
    fn mutated_frames_never_panic(idx in any::<prop::sample::Index>(), bit in 0..8u8, which in 0..4usize) {
        let f = encode_frame(&samples()[which], DEFAULT_MAX_FRAME).expect("encode").to_vec();
        let mut m = f.clone();
        let i = idx.index(m.len());
        m[i] ^= 1 << bit;
        let _ = decode_frame::<Open>(&m, DEFAULT_MAX_FRAME);
        let _ = decode_frame::<Open>(&f[..i], DEFAULT_MAX_FRAME);
    }
}
