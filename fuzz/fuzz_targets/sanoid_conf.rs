//! The sanoid.conf importer: any text converts or is refused with
//! diagnostics; what it writes is itself a valid policy or diagnosed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zfsrepl_core::policy::sanoid::import as import_sanoid;
use zfsrepl_core::policy::{Source, parse_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match import_sanoid(&Source::new("sanoid.conf", text), "Europe/Paris") {
        Ok((toml, warnings)) => {
            let _ = warnings.to_string();
            if let Err(d) = parse_str("imported.toml", &toml) {
                let _ = d.to_string();
            }
        }
        Err(d) => {
            let _ = d.to_string();
        }
    }
});
