//! The incremental frame splitter and the first-frame decoder on arbitrary bytes, fed in
//! arbitrary pieces: never a panic, never an allocation beyond the frame limit.
#![no_main]

use floe_proto::Open;
use floe_proto::codec::{FrameDecoder, decode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| *b as usize % 17 + 1);
    let mut d = FrameDecoder::new(64 << 10);
    for piece in data.chunks(split) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(body)) => {
                    let _ = decode_body::<Open>(&body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
