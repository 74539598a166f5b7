//! libFuzzer target `vcard_import`: arbitrary bytes imported as a `.vcf` file by
//! `cardlog_vcard::import` into a fresh scratch replica. Nothing may panic, the import of a
//! healthy replica never fails, every card is accounted for, and a second import of the same
//! bytes creates nothing (see `cardlog_fuzz::vcard_checks`). Run with
//! `cargo +nightly fuzz run vcard_import` (fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = cardlog_fuzz::scratch::scratch_replica();
    let _ = cardlog_fuzz::vcard_checks::check_vcard_import(scratch.replica(), data);
});
