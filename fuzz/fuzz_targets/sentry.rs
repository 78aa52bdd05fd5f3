//! See `tocsin::fuzzing::sentry`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tocsin::fuzzing::sentry(data));
