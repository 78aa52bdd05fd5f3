//! See `tocsin::fuzzing::rule`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tocsin::fuzzing::rule(data));
