//! Every parser of `zfs` output: see `zfsrepl_core::fuzzing::zfs_output`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsrepl_core::fuzzing::zfs_output(data));
