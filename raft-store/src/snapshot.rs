//! The snapshot file format: a header with the snapshot's metadata, the records of the state
//! machine's trees, and a CRC32 trailer. Written and read as a stream; nothing is held in memory
//! beyond one record.
//!
//! ```text
//! magic "FLOESNP1" | u32 BE len | bincode(SnapshotMeta)
//! { u8 tree tag | u32 BE key len | key | u32 BE value len | value }*
//! u8 0xFF | u32 BE crc32 of every byte before it
//! ```

use std::io::{self, Read, Write};

use crate::codec::{MAX_VALUE_BYTES, decode, encode};
use crate::error::StoreError;
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"FLOESNP1";
const END: u8 = 0xFF;
/// Largest header accepted.
const MAX_HEADER: usize = 64 << 20;

/// Writes a snapshot stream.
pub(crate) struct SnapshotWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> SnapshotWriter<W> {
    pub(crate) fn new(out: W, meta: &SnapshotMeta) -> Result<Self, StoreError> {
        let mut w = Self {
            out,
            crc: crc32fast::Hasher::new(),
        };
        let header = encode(meta)?;
        w.put(MAGIC)?;
        w.put(&len32(header.len())?)?;
        w.put(&header)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc.update(b);
        self.out.write_all(b)
    }

    pub(crate) fn record(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put(&[tag])?;
        self.put(&len32(key.len())?)?;
        self.put(key)?;
        self.put(&len32(value.len())?)?;
        self.put(value)?;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<W, StoreError> {
        self.put(&[END])?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_be_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn len32(n: usize) -> Result<[u8; 4], StoreError> {
    if n > MAX_VALUE_BYTES {
        return Err(StoreError::Encode(format!("snapshot record of {n} bytes")));
    }
    Ok((n as u32).to_be_bytes())
}

fn corrupt(reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: "snapshot",
        reason: reason.into(),
    }
}

/// Reads a snapshot stream, verifying lengths before allocating and the CRC at the end.
pub(crate) struct SnapshotReader<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    meta: SnapshotMeta,
    done: bool,
}

/// One record of a snapshot.
pub(crate) struct Record {
    pub tag: u8,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl<R: Read> SnapshotReader<R> {
    pub(crate) fn new(input: R) -> Result<Self, StoreError> {
        let mut r = Self {
            input,
            crc: crc32fast::Hasher::new(),
            meta: SnapshotMeta::default(),
            done: false,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic)?;
        if &magic != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let header = r.take_vec(MAX_HEADER)?;
        r.meta = decode(&header, "snapshot header")?;
        Ok(r)
    }

    pub(crate) fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => corrupt("truncated"),
            _ => StoreError::Io(e),
        })?;
        self.crc.update(buf);
        Ok(())
    }

    fn take_vec(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
        let mut len = [0u8; 4];
        self.take(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > max {
            return Err(corrupt(format!("record of {len} bytes exceeds {max}")));
        }
        let mut v = vec![0u8; len];
        self.take(&mut v)?;
        Ok(v)
    }

    /// The next record, or `None` after the verified trailer.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.take(&mut tag)?;
        if tag[0] == END {
            let expect = self.crc.clone().finalize();
            let mut crc = [0u8; 4];
            self.input
                .read_exact(&mut crc)
                .map_err(|_| corrupt("truncated trailer"))?;
            if u32::from_be_bytes(crc) != expect {
                return Err(corrupt("checksum mismatch"));
            }
            let mut extra = [0u8; 1];
            if self.input.read(&mut extra)? != 0 {
                return Err(corrupt("bytes after the trailer"));
            }
            self.done = true;
            return Ok(None);
        }
        let key = self.take_vec(MAX_VALUE_BYTES)?;
        let value = self.take_vec(MAX_VALUE_BYTES)?;
        Ok(Some(Record {
            tag: tag[0],
            key,
            value,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), &SnapshotMeta::default()).expect("header");
        w.record(1, b"k1", b"v1").expect("record");
        w.record(2, b"k2", &[7u8; 1000]).expect("record");
        w.finish().expect("finish")
    }

    fn read_all(bytes: &[u8]) -> Result<usize, StoreError> {
        let mut r = SnapshotReader::new(bytes)?;
        let mut n = 0;
        while r.next_record()?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    #[test]
    fn round_trip() {
        assert_eq!(read_all(&sample()).expect("valid"), 2);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let good = sample();
        for cut in 0..good.len() {
            assert!(
                read_all(&good[..cut]).is_err(),
                "truncated at {cut} accepted"
            );
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(read_all(&bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn huge_length_is_refused_before_allocating() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            SnapshotReader::new(&bytes[..]),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
