//! The stderr classifiers of `zfs` and ssh: see `zfsrepl_core::fuzzing::stderr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsrepl_core::fuzzing::stderr(data));
