//! Mutual TLS, roles and ALPN: each bad peer is refused with a clear error, and the node keeps
//! serving its legitimate peers.

mod raftnet;

use std::time::Duration;

use floe_net::{RpcError, Target, Transport, TransportConfig};
use floe_proto::codec::{DEFAULT_MAX_FRAME, encode_frame};
use floe_proto::{ErrorKind, Open, Ping, Propose, ReadIndex, ReadPoint, Request, WireError};
use raftnet::*;

const T: Duration = Duration::from_secs(5);

/// Send a ping on a raw connection and read the whole answer.
async fn raw_ping(conn: &quinn::Connection) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let frame = encode_frame(&Open::Request(Ping.into()), DEFAULT_MAX_FRAME)?;
    send.write_all(&frame).await?;
    send.finish()?;
    Ok(recv.read_to_end(1 << 20).await?)
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_both_ways() {
    init_tracing();
    let pki = Pki::new();
    let rogue = Pki::new();
    let node = pong_node(&pki, 1);
    let addr = node.local_addr().expect("addr");
    let friend = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");

    let intruder = Transport::bind(TransportConfig::default(), &rogue.node(2)).expect("bind");
    let err = intruder
        .request(&Target::node(1, addr), Ping, T)
        .await
        .expect_err("accepted a foreign CA");
    assert!(matches!(err, RpcError::Refused(_)), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("cert"),
        "unclear error: {err}"
    );

    // And our node refuses a server with a foreign certificate.
    let fake = pong_node(&rogue, 1);
    let err = friend
        .request(&Target::node(1, fake.local_addr().expect("addr")), Ping, T)
        .await
        .expect_err("trusted a foreign server");
    assert!(matches!(err, RpcError::Refused(_)), "{err}");
    assert_serves(&friend, &node, "after foreign-CA peers").await;
}

#[tokio::test]
async fn peer_without_certificate_is_refused() {
    init_tracing();
    let pki = Pki::new();
    let node = pong_node(&pki, 1);
    let raw = raw_client(pki.ca.cert_pem(), None, floe_proto::ALPN);
    // TLS 1.3 lets the client finish its side of the handshake; the server then closes the
    // connection with the TLS alert `certificate_required` (116) before reading any stream.
    let conn = raw
        .connect(node.local_addr().expect("addr"), "node-1.floe")
        .expect("connect")
        .await;
    let reason = match conn {
        Err(e) => e,
        Ok(conn) => {
            let served = raw_ping(&conn).await;
            assert!(
                served.is_err(),
                "a peer without certificate was served: {served:?}"
            );
            conn.closed().await
        }
    };
    let msg = reason.to_string();
    assert!(
        msg.contains("crypto") && msg.contains("116"),
        "unclear refusal: {msg}"
    );
    let friend = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");
    assert_serves(&friend, &node, "after a certificate-less peer").await;
}

async fn assert_forbidden<R: floe_proto::Rpc>(client: &Transport, target: &Target, req: R) {
    let whole: Request = req.clone().into();
    let name = whole.name();
    let err = client
        .request(target, req, T)
        .await
        .expect_err("node request from a client");
    assert!(
        matches!(
            &err,
            RpcError::Remote(WireError {
                kind: ErrorKind::Forbidden,
                ..
            })
        ),
        "{name}: {err}"
    );
}

#[tokio::test]
async fn client_certificate_cannot_send_node_requests() {
    init_tracing();
    let pki = Pki::new();
    let node = pong_node(&pki, 1);
    let target = Target::node(1, node.local_addr().expect("addr"));
    let client = Transport::bind(TransportConfig::default(), &pki.client("app")).expect("bind");
    // A client may ping (and, later, call actors).
    assert_eq!(client.request(&target, Ping, T).await, Ok(()));
    assert_forbidden(&client, &target, ReadIndex).await;
    assert_forbidden(
        &client,
        &target,
        Propose(floe_proto::Command::Batch(vec![])),
    )
    .await;
    // A client cannot open a Raft append stream either.
    let mut s = client
        .open_stream(&target, &Open::AppendStream)
        .await
        .expect("stream");
    let reply: Option<Result<(), WireError>> = s.recv_frame().await.expect("answer");
    assert!(
        matches!(
            reply,
            Some(Err(WireError {
                kind: ErrorKind::Forbidden,
                ..
            }))
        ),
        "{reply:?}"
    );
    // The same requests from a node are served.
    let friend = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");
    assert_eq!(
        friend.request(&target, ReadIndex, T).await,
        Ok(ReadPoint { index: 7 })
    );
}

#[tokio::test]
async fn wrong_alpn_is_refused() {
    init_tracing();
    let pki = Pki::new();
    let node = pong_node(&pki, 1);
    let cert = pki.ca.issue_node(2, &[]).expect("cert");
    let raw = raw_client(
        pki.ca.cert_pem(),
        Some((&cert.cert_pem, &cert.key_pem)),
        b"h3",
    );
    let res = async {
        let conn = raw.connect(node.local_addr()?, "node-1.floe")?.await?;
        raw_ping(&conn).await
    }
    .await;
    let err = res.expect_err("a peer with ALPN h3 was served");
    assert!(
        err.to_string().to_lowercase().contains("protocol"),
        "unclear error: {err}"
    );
    let friend = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");
    assert_serves(&friend, &node, "after a wrong-ALPN peer").await;
}
