//! Decoders never panic on any input, and every envelope round-trips.

use floe_proto::codec::{DEFAULT_MAX_FRAME, FrameDecoder, decode_body, decode_frame, encode_frame};
use floe_proto::{CallRequest, ErrorKind, Open, Reply, Request, Response, WireError};
use proptest::prelude::*;
use raft_store::types::{Entry, EntryPayload, TypeConfig, Vote};
use raft_store::{ActorId, Command, RequestId};

fn samples() -> Vec<Open> {
    let entries: Vec<Entry> = (1..=3)
        .map(|i| Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(2, 1, i),
            payload: EntryPayload::Normal(Command::Activate {
                actor: ActorId::new("T", format!("k{i}")),
                preferred: 1,
            }),
        })
        .collect();
    vec![
        Open::Request(Request::Ping),
        Open::Request(Request::AppendEntries(floe_proto::AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 0)),
            entries,
            leader_commit: None,
        })),
        Open::Request(Request::Call(CallRequest {
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
    let r: Response = Err(WireError::new(ErrorKind::Timeout, "late"));
    let f = encode_frame(&r, DEFAULT_MAX_FRAME).expect("encode");
    let back: Response = decode_frame(&f, DEFAULT_MAX_FRAME).expect("decode");
    assert!(matches!(
        back,
        Err(WireError {
            kind: ErrorKind::Timeout,
            ..
        })
    ));
    let ok: Response = Ok(Reply::Call {
        payload: vec![5],
        owner: 3,
        owner_addr: Some("10.0.0.3:7000".into()),
    });
    let f = encode_frame(&ok, DEFAULT_MAX_FRAME).expect("encode");
    assert!(matches!(
        decode_frame::<Response>(&f, DEFAULT_MAX_FRAME),
        Ok(Ok(Reply::Call { payload, owner: 3, owner_addr: Some(a) }))
            if payload == vec![5] && a == "10.0.0.3:7000"
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_body::<Open>(&bytes);
        let _ = decode_body::<Response>(&bytes);
        let _ = decode_body::<floe_proto::StreamAppendResult>(&bytes);
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
