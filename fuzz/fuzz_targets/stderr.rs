//! The stderr classifiers of `zfs` and ssh: any text gets a kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zfsrepl_core::zfs::stderr::{classify, classify_ssh};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = classify(&text);
    let status = data.first().map(|b| i32::from(*b));
    let _ = classify_ssh(&text, status);
});
