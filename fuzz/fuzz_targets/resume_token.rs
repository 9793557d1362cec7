//! The resume-token decoder (token text and raw nvlist): see `zfsrepl_core::fuzzing::resume_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsrepl_core::fuzzing::resume_token(data));
