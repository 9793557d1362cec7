//! The agent's frame decoder and message parser: see
//! `zfsrepl_core::fuzzing::agent_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsrepl_core::fuzzing::agent_frame(data));
