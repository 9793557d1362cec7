//! Entry points for the fuzz targets (`fuzz/`) and the stable fuzz smoke
//! test (`tests/fuzz_smoke.rs`): each takes arbitrary bytes and must
//! return without panicking, whatever they hold.
//!
//! The targets are thin wrappers over these functions, so that the
//! nightly-only libFuzzer runs and the stable test suite exercise exactly
//! the same code.

use crate::policy::sanoid::import as import_sanoid;
use crate::policy::{Source, parse_duration, parse_str};
use crate::retention::RetentionGrid;
use crate::zfs::parse::{parse_get, parse_get_listing, parse_list_listing};
use crate::zfs::resume::{decode_resume_token, wrap_payload};
use crate::zfs::stderr::{classify, classify_ssh};
use crate::{Capabilities, DatasetName, ListSpec};

/// The TOML policy reader and validator: a policy or located diagnostics;
/// rendering either must not panic. Durations and retention grids are
/// parsed on their own as well.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_str("fuzz.toml", text) {
        Ok(p) => drop(format!("{p:?}")),
        Err(d) => drop(d.to_string()),
    }
    let _ = parse_duration(text);
    let _ = RetentionGrid::parse(text);
}

/// The sanoid.conf importer: converts or refuses with diagnostics, and what
/// it writes is itself read back as a policy.
pub fn sanoid_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match import_sanoid(&Source::new("sanoid.conf", text), "Europe/Paris") {
        Ok((toml, warnings)) => {
            drop(warnings.to_string());
            if let Err(d) = parse_str("imported.toml", &toml) {
                drop(d.to_string());
            }
        }
        Err(d) => drop(d.to_string()),
    }
}

/// Every parser of `zfs` output (`get -Hp`, `list -Hp`, usage text).
pub fn zfs_output(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(root) = DatasetName::parse("tank") else {
        return;
    };
    let mut spec = ListSpec::all(vec![root]);
    spec.user_props = vec!["zfsrepl:clone".into()];
    let _ = parse_get(&text);
    let _ = parse_get_listing(&text, &spec);
    let _ = parse_list_listing(
        &text,
        &[
            "name",
            "type",
            "guid",
            "createtxg",
            "creation",
            "used",
            "userrefs",
            "origin",
        ],
        &spec,
    );
    let _ = Capabilities::from_usage(&text, Some(&text), data.first() == Some(&0));
}

/// The stderr classifiers of `zfs` and ssh: any text gets a kind.
pub fn stderr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = classify(&text);
    let _ = classify_ssh(&text, data.first().map(|b| i32::from(*b)));
}

/// The resume-token decoder, twice: the bytes as a token as `zfs get`
/// would print it, and the bytes as the packed nvlist inside a token whose
/// envelope (zlib, checksum, length) is valid, so the nvlist decoder is
/// reached on every input rather than stopped by the checksum.
pub fn resume_token(data: &[u8]) {
    let _ = decode_resume_token(&String::from_utf8_lossy(data));
    let _ = decode_resume_token(&wrap_payload(data));
}

/// The agent's frame decoder and message parser: frames or a clear error,
/// never a payload over its kind's bound; every control payload parsed as
/// a request and as a response.
pub fn agent_frame(data: &[u8]) {
    let (frames, err) = crate::agent::decode_all(data);
    drop(err.map(|e| e.to_string()));
    for f in frames {
        assert!(f.payload.len() <= f.kind.max_payload());
        let _ = crate::agent::proto::parse_message::<crate::agent::Request>(&f.payload);
        let _ = crate::agent::proto::parse_message::<crate::agent::Response>(&f.payload);
    }
}

/// A fuzz entry point: arbitrary bytes in, no panic out.
pub type Target = fn(&[u8]);

/// Every entry point by name, as the fuzz targets and the smoke test
/// iterate them.
pub const TARGETS: &[(&str, Target)] = &[
    ("policy", policy),
    ("sanoid_conf", sanoid_conf),
    ("zfs_output", zfs_output),
    ("stderr", stderr),
    ("resume_token", resume_token),
    ("agent_frame", agent_frame),
];
