//! Every parser of `zfs` output (`get -Hp`, `list -Hp`, usage text): any
//! bytes give datasets or a `ParseError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zfsrepl_core::zfs::parse::{parse_get, parse_get_listing, parse_list_listing};
use zfsrepl_core::{Capabilities, DatasetName, ListSpec};

fuzz_target!(|data: &[u8]| {
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
        &["name", "type", "guid", "createtxg", "creation", "used", "userrefs", "origin"],
        &spec,
    );
    let _ = Capabilities::from_usage(&text, Some(&text), data.first() == Some(&0));
});
