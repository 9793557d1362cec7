//! The replication property: whatever snapshots and writes happen on a
//! source, a full send of its first snapshot and then `-I` incrementals
//! make the target's snapshot guids equal to the source's.

use proptest::prelude::*;

use crate::model::FakeZfs;
use crate::zfs::{ZfsErrorKind as K, ZfsWrite};

use super::{full, inc, into, sn, snaps, transfer};

#[derive(Debug, Clone)]
enum Op {
    Snapshot,
    Write(u16),
    /// Destroys an intermediate snapshot on the source (never the first
    /// or the latest one, which the next increment starts from).
    DestroyMiddle(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Snapshot),
        3 => any::<u16>().prop_map(Op::Write),
        1 => any::<usize>().prop_map(Op::DestroyMiddle),
    ]
}

/// Applies ops to `p/a @ "s<n>"`; returns the next snapshot number.
fn apply(src: &FakeZfs, ops: &[Op], mut n: usize) -> usize {
    for op in ops {
        match op {
            Op::Snapshot => {
                src.snapshot(&[sn(&format!("p/a@s{n}"))], &[]).unwrap();
                n += 1;
            }
            Op::Write(bytes) => src.write("p/a", u64::from(*bytes)),
            Op::DestroyMiddle(i) => {
                let names = snaps(src, "p/a");
                if names.len() > 2 {
                    let (victim, _) = &names[1 + i % (names.len() - 2)];
                    let out = src.destroy_snapshots(&[sn(&format!("p/a@{victim}"))]);
                    // The replication base is held: ZFS refuses, as it
                    // protects the next increment's base.
                    assert!(
                        out[0].1.as_ref().is_ok()
                            || out[0].1.as_ref().is_err_and(|e| e.kind == K::Held),
                        "{out:?}"
                    );
                }
            }
        }
    }
    n
}

fn latest(z: &FakeZfs, ds: &str) -> Option<String> {
    snaps(z, ds).last().map(|(n, _)| format!("{ds}@{n}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn full_then_incremental_replicates_guids(
        first in prop::collection::vec(op(), 0..12),
        second in prop::collection::vec(op(), 0..12),
    ) {
        let src = FakeZfs::from_fixture("+ p\n+ p/a\n");
        let dst = FakeZfs::from_fixture("+ b\n");
        // Round one: a full stream of the first snapshot, then -I to the
        // latest.
        let mut n = apply(&src, &[Op::Write(1), Op::Snapshot], 0);
        n = apply(&src, &first, n);
        let names = snaps(&src, "p/a");
        transfer(&src, &full(&format!("p/a@{}", names[0].0)), &dst, &into("b/a")).unwrap();
        let last = latest(&src, "p/a").unwrap();
        let first_snap = format!("p/a@{}", names[0].0);
        if last != first_snap {
            transfer(&src, &inc(&first_snap, &last, true), &dst, &into("b/a")).unwrap();
        }
        prop_assert_eq!(snaps(&dst, "b/a"), snaps(&src, "p/a"));

        // Round two: more history, then -I from the newest common snapshot,
        // which a hold protects meanwhile.
        let base = last;
        src.hold("repl", &[sn(&base)]).unwrap();
        apply(&src, &second, n);
        let now = latest(&src, "p/a").unwrap();
        if now != base {
            transfer(&src, &inc(&base, &now, true), &dst, &into("b/a")).unwrap();
        }
        let src_snaps = snaps(&src, "p/a");
        // Snapshots destroyed on the source after they were sent stay on
        // the target; everything the source has, the target has, in order.
        let dst_snaps = snaps(&dst, "b/a");
        let kept: Vec<_> = dst_snaps.iter().filter(|s| src_snaps.contains(s)).cloned().collect();
        prop_assert_eq!(kept, src_snaps);
        // And the data arrived: the target's latest snapshot refers to as
        // much data as the source's.
        prop_assert_eq!(
            super::prop(&dst, &latest(&dst, "b/a").unwrap(), "referenced"),
            super::prop(&src, &now, "referenced")
        );
        // The same round again is a no-op (every snapshot is skipped).
        if now != base {
            let before = snaps(&dst, "b/a");
            transfer(&src, &inc(&base, &now, true), &dst, &into("b/a")).unwrap();
            prop_assert_eq!(snaps(&dst, "b/a"), before);
        }
    }
}
