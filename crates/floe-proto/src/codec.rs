//! The frame codec: a `u32` big-endian length followed by a bincode 2 (serde) body.
//!
//! The one module that chooses the wire encoding. The length is checked against the maximum
//! frame size before anything is allocated, and decoding never panics on any input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

/// Default maximum size of one frame body: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame announces (or would need) more than the maximum: close the stream.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Announced or encoded length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The input ended inside a frame.
    #[error("truncated frame: {0}")]
    Truncated(&'static str),
    /// The body is not a valid encoding of the expected message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The message cannot be encoded (a bug).
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    // The body limit is enforced on the frame length; this bounds allocations inside the body
    // (a string announcing 4 GiB in a 20-byte frame) to the frame limit as well.
    bincode::config::standard().with_limit::<DEFAULT_MAX_FRAME>()
}

/// Check an announced body length against `max`.
pub fn check_len(len_prefix: [u8; LEN_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(len_prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Encode `msg` as one frame (length prefix and body).
pub fn encode_frame<T: Serialize>(msg: &T, max: usize) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_u32(0);
    let mut w = (&mut buf).writer();
    bincode::serde::encode_into_std_write(msg, &mut w, config())
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = buf.len() - LEN_BYTES;
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::TooLarge { len, max });
    }
    buf[..LEN_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf.freeze())
}

/// Decode a frame body (without its length prefix). Trailing bytes are malformed.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    match bincode::serde::decode_from_slice::<T, _>(body, config()) {
        Ok((v, used)) if used == body.len() => Ok(v),
        Ok((_, used)) => Err(FrameError::Malformed(format!(
            "{} trailing bytes",
            body.len() - used
        ))),
        Err(e) => Err(FrameError::Malformed(e.to_string())),
    }
}

/// Encode a value as a body (no length prefix): actor payloads, replies and states.
pub fn encode_body<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| FrameError::Encode(e.to_string()))
}

/// Decode one complete frame (length prefix and body) that must fill `bytes` exactly.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, FrameError> {
    let mut d = FrameDecoder::new(max);
    d.push(bytes);
    let body = d
        .next_frame()?
        .ok_or(FrameError::Truncated("incomplete frame"))?;
    if d.buffered() != 0 {
        return Err(FrameError::Malformed("bytes after the frame".into()));
    }
    decode_body(&body)
}

/// Incremental frame splitter: push bytes as they arrive, take complete bodies out.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
}

impl FrameDecoder {
    /// A decoder refusing bodies larger than `max`.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Add received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete body, `None` if more bytes are needed. After an error the stream is
    /// unusable and must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < LEN_BYTES {
            return Ok(None);
        }
        let mut prefix = [0u8; LEN_BYTES];
        prefix.copy_from_slice(&self.buf[..LEN_BYTES]);
        let len = check_len(prefix, self.max)?;
        if self.buf.len() < LEN_BYTES + len {
            return Ok(None);
        }
        self.buf.advance(LEN_BYTES);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let a = encode_frame(&(1u32, "hello".to_string()), 1024).expect("encode");
        let b = encode_frame(&(2u32, "world".to_string()), 1024).expect("encode");
        let all: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut d = FrameDecoder::new(1024);
        let mut out = Vec::new();
        for byte in all {
            d.push(&[byte]);
            while let Some(f) = d.next_frame().expect("valid") {
                out.push(decode_body::<(u32, String)>(&f).expect("body"));
            }
        }
        assert_eq!(out, vec![(1, "hello".into()), (2, "world".into())]);
    }

    #[test]
    fn oversized_announcement_is_refused_before_buffering() {
        let mut d = FrameDecoder::new(1024);
        d.push(&u32::MAX.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
    }

    #[test]
    fn encoding_over_the_limit_fails() {
        let big = vec![0u8; 2000];
        assert!(matches!(
            encode_frame(&big, 1000),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_and_padded_frames_are_errors() {
        let f = encode_frame(&(7u64, vec![1u8, 2, 3]), 1024).expect("encode");
        for cut in 0..f.len() {
            assert!(decode_frame::<(u64, Vec<u8>)>(&f[..cut], 1024).is_err());
        }
        let mut padded = f.to_vec();
        padded.push(0);
        assert!(decode_frame::<(u64, Vec<u8>)>(&padded, 1024).is_err());
    }
}
