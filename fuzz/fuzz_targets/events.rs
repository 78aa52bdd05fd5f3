//! See `tocsin::fuzzing::events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tocsin::fuzzing::events(data));
