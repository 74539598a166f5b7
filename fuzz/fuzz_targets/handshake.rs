//! libFuzzer target `handshake`: a stage byte and the bytes an attacker sends at that point of
//! a session handshake between two real devices (see `cardlog_fuzz::sync_checks::check_handshake`).
//! Nothing may panic, and no made-up message 2 or 3 or sealed message may authenticate. Run with
//! `cargo +nightly fuzz run handshake` (fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cardlog_fuzz::sync_checks::check_handshake(data);
});
