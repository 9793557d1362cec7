//! The TOML policy reader and validator: any text gives a policy or
//! located diagnostics, never a panic; rendering the diagnostics too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match zfsrepl_core::policy::parse_str("fuzz.toml", text) {
        Ok(p) => {
            let _ = format!("{p:?}");
        }
        Err(d) => {
            let _ = d.to_string();
        }
    }
    // Durations and retention grids are parsed on their own as well.
    let _ = zfsrepl_core::policy::parse_duration(text);
    let _ = zfsrepl_core::retention::RetentionGrid::parse(text);
});
