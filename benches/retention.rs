//! Retention planning: the cost per run of pruning a large history.
//!
//! `plan/1x100k` is one dataset with 100 000 snapshots (every 15 minutes,
//! about 2.9 years: sanoid-style hourlies, dailies and monthlies, our own
//! and manual ones); `plan/1000x100` is the same count spread over 1000
//! datasets. Both run all four rule kinds together, plus a held snapshot
//! and a protected one per dataset.

#![allow(clippy::unwrap_used, missing_docs)] // bench fixtures; criterion generates undocumented fns

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zfsrepl_core::retention::{
    KeepRule, Ownership, Regex, RetentionGrid, SanoidCounts, SnapshotInfo, plan,
};
use zfsrepl_core::{Guid, SnapshotName, Txg};

const NOW: i64 = 1_800_000_000;
const TOTAL: usize = 100_000;

fn history(datasets: usize) -> (Vec<SnapshotInfo>, Vec<Guid>) {
    let per = TOTAL / datasets;
    let mut snaps = Vec::with_capacity(TOTAL);
    let mut protected = Vec::with_capacity(datasets);
    let mut guid = 1_000_000u64;
    for d in 0..datasets {
        for i in 0..per {
            let age = i64::try_from(per - i).unwrap() * 900;
            let short = match i % 96 {
                0 => format!("autosnap_{i}_daily"),
                1 if i % (96 * 31) == 1 => format!("autosnap_{i}_monthly"),
                n if n % 4 == 0 => format!("autosnap_{i}_hourly"),
                7 => format!("manual_{i}"),
                _ => format!("zfsrepl_{i}"),
            };
            guid += 1;
            snaps.push(SnapshotInfo {
                name: SnapshotName::parse(&format!("tank/data {d}@{short}")).unwrap(),
                guid: Guid(guid),
                createtxg: Txg(guid),
                creation: NOW - age,
                userrefs: Some(u64::from(i == per / 2)),
            });
        }
        protected.push(Guid(guid - 3));
    }
    (snaps, protected)
}

fn rules() -> Vec<KeepRule> {
    vec![
        KeepRule::SanoidCounts(SanoidCounts::production()),
        KeepRule::Grid(RetentionGrid::parse("1x1h(keep=all) | 24x1h | 35x1d | 6x30d").unwrap()),
        KeepRule::LastN {
            n: 10,
            regex: Some(Regex::new("^zfsrepl_").unwrap()),
        },
        KeepRule::Regex {
            re: Regex::new("^manual_").unwrap(),
            negate: false,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let own = Ownership::new("zfsrepl_").with_sanoid_chain(true);
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(TOTAL as u64));
    g.sample_size(10);
    for datasets in [1, 1000] {
        let (snaps, protected) = history(datasets);
        let name = format!(
            "{datasets}x{}",
            if datasets == 1 {
                "100k".into()
            } else {
                (TOTAL / datasets).to_string()
            }
        );
        g.bench_function(name, |b| {
            b.iter(|| plan(&snaps, &rules, &own, &protected, NOW));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
