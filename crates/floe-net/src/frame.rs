//! Frames on QUIC streams: a stream's halves, reading a frame within the receive budget, and
//! writing frames and answers.

use std::sync::Arc;

use floe_proto::codec::{LEN_BYTES, check_len, decode_body, encode_frame};
use floe_proto::{Answer, ErrorKind, FrameError, WireError};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{RpcError, lost};

/// Bytes of frame bodies being received, per connection and per endpoint: a frame reserves its
/// announced length from both before its body is read, and releases it once decoded.
///
/// Reserving the whole frame at once (rather than as its bytes arrive) means a frame that holds
/// a reservation can always complete, so frames never deadlock waiting on each other's partial
/// reservations; the body buffer itself still grows only with the bytes that arrived.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    conn: Arc<Semaphore>,
    node: Arc<Semaphore>,
}

impl Budget {
    pub(crate) fn new(conn_bytes: usize, node: &Arc<Semaphore>) -> Self {
        Self {
            conn: Arc::new(Semaphore::new(conn_bytes)),
            node: node.clone(),
        }
    }

    /// Reserve `bytes` (at most `max_frame`, which config validation keeps within both budgets),
    /// waiting until enough is released. Connection first, then endpoint, always in that order.
    async fn reserve(&self, bytes: usize) -> Result<[OwnedSemaphorePermit; 2], RpcError> {
        let n = u32::try_from(bytes).map_err(|_| FrameError::TooLarge {
            len: bytes,
            max: u32::MAX as usize,
        })?;
        let conn = self.conn.clone().acquire_many_owned(n).await;
        let node = self.node.clone().acquire_many_owned(n).await;
        // The semaphores are never closed.
        match (conn, node) {
            (Ok(c), Ok(n)) => Ok([c, n]),
            _ => Err(RpcError::Shutdown),
        }
    }
}

/// A bidirectional stream carrying frames.
#[derive(Debug)]
pub struct FrameStream {
    /// Sending half.
    pub send: quinn::SendStream,
    /// Receiving half.
    pub recv: quinn::RecvStream,
    pub(crate) max_frame: usize,
    pub(crate) budget: Budget,
}

impl FrameStream {
    /// Send one frame.
    pub async fn send_frame<T: Serialize>(&mut self, msg: &T) -> Result<(), RpcError> {
        write_frame(&mut self.send, msg, self.max_frame).await
    }

    /// Receive one frame; `None` if the peer finished the stream at a frame boundary.
    pub async fn recv_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RpcError> {
        read_frame(&mut self.recv, self.max_frame, &self.budget).await
    }

    /// Send an answer as one frame; one beyond the frame limit is replaced by a `TooLarge`
    /// error, so the caller learns that nothing it can use came back.
    pub(crate) async fn send_answer(&mut self, answer: &Answer) -> Result<(), RpcError> {
        let too_large;
        let mut answer = answer;
        if answer.body().len() > self.max_frame {
            too_large = Answer::error(WireError::new(
                ErrorKind::TooLarge,
                format!(
                    "the answer of {} bytes exceeds the frame limit of {}",
                    answer.body().len(),
                    self.max_frame
                ),
            ));
            answer = &too_large;
        }
        self.send.write_all(answer.frame()).await.map_err(lost)
    }

    /// Split into halves.
    pub fn split(self) -> (FrameSender, FrameReceiver) {
        (
            FrameSender {
                send: self.send,
                max_frame: self.max_frame,
            },
            FrameReceiver {
                recv: self.recv,
                max_frame: self.max_frame,
                budget: self.budget,
            },
        )
    }
}

/// Sending half of a [`FrameStream`].
#[derive(Debug)]
pub struct FrameSender {
    /// The QUIC stream.
    pub send: quinn::SendStream,
    max_frame: usize,
}

impl FrameSender {
    /// Send one frame.
    pub async fn send_frame<T: Serialize>(&mut self, msg: &T) -> Result<(), RpcError> {
        write_frame(&mut self.send, msg, self.max_frame).await
    }
}

/// Receiving half of a [`FrameStream`].
#[derive(Debug)]
pub struct FrameReceiver {
    /// The QUIC stream.
    pub recv: quinn::RecvStream,
    max_frame: usize,
    budget: Budget,
}

impl FrameReceiver {
    /// Receive one frame; `None` at a clean end of stream.
    pub async fn recv_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RpcError> {
        read_frame(&mut self.recv, self.max_frame, &self.budget).await
    }
}

/// Write one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    max: usize,
) -> Result<(), RpcError> {
    let frame = encode_frame(msg, max)?;
    send.write_all(&frame).await.map_err(lost)
}

/// Read one frame: check its announced length against `max`, reserve it from `budget`, then read
/// the body as it arrives. `None` if the stream ended cleanly before a new frame.
async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
    budget: &Budget,
) -> Result<Option<T>, RpcError> {
    let mut prefix = [0u8; LEN_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            return Err(FrameError::Truncated("length prefix").into());
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(lost(e)),
    }
    let len = check_len(prefix, max)?;
    let _reserved = budget.reserve(len).await?;
    let body = read_body(recv, len).await?;
    Ok(Some(decode_body(&body)?))
}

/// First allocation for a frame body; larger bodies grow as their bytes arrive.
const FIRST_BODY_ALLOC: usize = 64 << 10;

/// Read exactly `len` bytes. The buffer doubles as data arrives, never beyond `len`, so a peer
/// that announces a large frame and sends little of it costs little memory.
async fn read_body(recv: &mut quinn::RecvStream, len: usize) -> Result<Vec<u8>, RpcError> {
    let mut body = Vec::with_capacity(len.min(FIRST_BODY_ALLOC));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => {
                let need = body.len() + chunk.bytes.len();
                if need > body.capacity() {
                    let grown = (body.capacity() * 2).clamp(need, len);
                    body.reserve_exact(grown - body.len());
                }
                body.extend_from_slice(&chunk.bytes);
            }
            Ok(None) => return Err(FrameError::Truncated("body").into()),
            Err(e) => return Err(lost(e)),
        }
    }
    Ok(body)
}
