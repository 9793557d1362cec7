//! The sanoid.conf importer: see `zfsrepl_core::fuzzing::sanoid_conf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsrepl_core::fuzzing::sanoid_conf(data));
