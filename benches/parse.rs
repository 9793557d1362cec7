//! Parsing `zfs` listings: the cost per run of reading a large estate.
//!
//! `get_listing/1000x10` is what zfs-fuse hosts parse (one line per
//! property), `list_listing/1000x10` what OpenZFS hosts parse (one line per
//! entity), both for 1000 datasets with 10 snapshots each.

#![allow(clippy::unwrap_used, missing_docs)] // bench fixtures; criterion generates undocumented fns

use std::fmt::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zfsrepl_core::zfs::parse::{LIST_PROPS, parse_get_listing, parse_list_listing};
use zfsrepl_core::{DatasetName, ListSpec};

const DATASETS: usize = 1000;
const SNAPS: usize = 10;

fn get_text() -> String {
    let mut s = String::new();
    let mut txg = 1;
    for d in 0..DATASETS {
        let name = format!("tank/ds {d}");
        for (p, v) in [
            ("type", "filesystem"),
            ("guid", "123456789012345"),
            ("createtxg", "5"),
            ("creation", "1700000000"),
            ("used", "4096"),
            ("userrefs", "-"),
            ("origin", "-"),
        ] {
            writeln!(s, "{name}\t{p}\t{v}\t-").unwrap();
        }
        for n in 0..SNAPS {
            txg += 1;
            let snap = format!("{name}@zfsrepl_2026-11-22_{n:02}:00:00");
            for (p, v) in [
                ("type", "snapshot".to_string()),
                ("guid", format!("{}", 1_000_000 + txg)),
                ("createtxg", txg.to_string()),
                ("creation", "1700000000".into()),
                ("used", "0".into()),
                ("userrefs", "0".into()),
                ("origin", "-".into()),
            ] {
                writeln!(s, "{snap}\t{p}\t{v}\t-").unwrap();
            }
        }
    }
    s
}

fn list_text() -> String {
    let mut s = String::new();
    let mut txg = 1;
    for d in 0..DATASETS {
        let name = format!("tank/ds {d}");
        writeln!(
            s,
            "{name}\tfilesystem\t123456789012345\t5\t1700000000\t4096\t-\t-"
        )
        .unwrap();
        for n in 0..SNAPS {
            txg += 1;
            writeln!(
                s,
                "{name}@zfsrepl_2026-11-22_{n:02}:00:00\tsnapshot\t{}\t{txg}\t1700000000\t0\t0\t-",
                1_000_000 + txg
            )
            .unwrap();
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let spec = ListSpec::all(vec![DatasetName::parse("tank").unwrap()]);
    let get = get_text();
    let list = list_text();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements((DATASETS * (SNAPS + 1)) as u64));
    g.bench_function("get_listing/1000x10", |b| {
        b.iter(|| parse_get_listing(&get, &spec).unwrap());
    });
    g.bench_function("list_listing/1000x10", |b| {
        b.iter(|| parse_list_listing(&list, LIST_PROPS, &spec).unwrap());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
