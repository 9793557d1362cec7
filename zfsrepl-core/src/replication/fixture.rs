//! Test fixtures: a compact DSL for version lists, after zrepl's
//! `fsvlist("@a,1", "#b,2")`.
//!
//! `versions("tank/a", "@a:1 #a:1 @b:2/guid=9/held")`: `@` is a snapshot,
//! `#` a bookmark; the number is guid = createtxg = creation; `/guid=N` and
//! `/txg=N` override one of them; `/held` gives the snapshot one user hold.

use crate::name::{DatasetName, Guid, Txg};
use crate::zfs::{Version, VersionName};

/// Parses a version list of `dataset` (panics on a malformed spec).
pub(crate) fn versions(dataset: &str, spec: &str) -> Vec<Version> {
    let ds = DatasetName::parse(dataset).expect("fixture dataset");
    spec.split_whitespace()
        .map(|tok| {
            let mut parts = tok.split('/');
            let head = parts.next().expect("token");
            let (name, n) = head.split_once(':').expect("NAME:N");
            let n: u64 = n.parse().expect("number");
            let (mut guid, mut txg, mut held) = (n, n, false);
            for p in parts {
                match p.split_once('=') {
                    Some(("guid", g)) => guid = g.parse().expect("guid"),
                    Some(("txg", t)) => txg = t.parse().expect("txg"),
                    None if p == "held" => held = true,
                    _ => panic!("bad fixture modifier {p:?} in {tok:?}"),
                }
            }
            let name = if let Some(s) = name.strip_prefix('@') {
                VersionName::Snapshot(ds.snapshot(s).expect("snapshot name"))
            } else if let Some(b) = name.strip_prefix('#') {
                VersionName::Bookmark(ds.bookmark(b).expect("bookmark name"))
            } else {
                panic!("fixture token {tok:?} must start with @ or #")
            };
            let snap = !name.is_bookmark();
            Version {
                name,
                guid: Guid(guid),
                createtxg: Txg(txg),
                creation: i64::try_from(n).expect("creation"),
                used: snap.then_some(0),
                userrefs: snap.then_some(u64::from(held)),
            }
        })
        .collect()
}

/// Versions of the source dataset `tank/src`.
pub(crate) fn src(spec: &str) -> Vec<Version> {
    versions("tank/src", spec)
}

/// Versions of the target dataset `back/dst`.
pub(crate) fn dst(spec: &str) -> Vec<Version> {
    versions("back/dst", spec)
}
