//! libFuzzer target `decode_message`: a mode byte and a sync protocol message, decoded by
//! `cardlog_sync::wire::message::decode` (with an odd mode byte the harness appends the checksum). It
//! must never panic, and what it accepts must encode back to exactly the input: the format is
//! canonical (see `cardlog_fuzz::sync_checks`). Run with
//! `cargo +nightly fuzz run decode_message` (fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cardlog_fuzz::sync_checks::check_decode_message(data);
});
