//! libFuzzer target `decode_segments`: a mode byte and a segment message, decoded by
//! `cardlog_sync::decode_segments` against a fixed set of ops (with an odd mode byte the harness
//! appends the message's checksum, so mutations reach the parser). It must never panic; what it
//! accepts must verify op by op, come dependencies first, and re-encode to the same ops (see
//! `cardlog_fuzz::sync_checks`). Run with `cargo +nightly fuzz run decode_segments`
//! (fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cardlog_fuzz::sync_checks::check_decode_segments(data);
});
