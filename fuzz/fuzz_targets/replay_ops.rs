//! libFuzzer target `replay_ops`: splits the input into `u16`-little-endian-length-prefixed
//! chunks, decodes each as an op, and inserts the decodable ones into two fresh replays, in
//! input order and in reverse. Nothing may panic, and when both orders apply the same ops their
//! states must be byte-identical (see `cardlog_fuzz::checks`). Run with
//! `cargo +nightly fuzz run replay_ops` (fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cardlog_fuzz::checks::check_replay_ops(data);
});
