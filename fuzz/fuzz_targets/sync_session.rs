//! libFuzzer target `sync_session`: a responder `cardlog_sync::Session` on an in-memory replica
//! takes a sequence of messages (length-prefixed chunks, each with a selector byte that can have
//! the harness build valid hellos, acks and ops messages with correct checksums, or route the
//! chunk to `bundle::import`). Nothing may panic, refused messages change nothing, and the
//! replica stays consistent (see `cardlog_fuzz::sync_checks`). Run with
//! `cargo +nightly fuzz run sync_session` (fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cardlog_fuzz::sync_checks::check_sync_session(data);
});
