//! The TOML policy reader and validator: see `zfsrepl_core::fuzzing::policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsrepl_core::fuzzing::policy(data));
