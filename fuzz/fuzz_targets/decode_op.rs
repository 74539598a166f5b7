//! libFuzzer target `decode_op`: feeds arbitrary bytes to `cardlog_core::decode_op`. It must
//! never panic, and whatever it accepts must be exactly canonical: the sealed op's bytes are the
//! input and re-sealing a copy of the op gives the same id (see `cardlog_fuzz::checks`).
//! Run with `cargo +nightly fuzz run decode_op` (fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cardlog_fuzz::checks::check_decode_op(data);
});
