//! Replication-aware pruning: what retention must spare because
//! replication still needs it. Pure.
//!
//! - The newest common snapshot of every source dataset with every target
//!   is always protected, on both sides (a snapshot has the same guid on
//!   the source and its copies, so protecting the guid protects both).
//!   Destroying it would force a full send.
//! - Source snapshots newer than a target's common snapshot (what that
//!   target has yet to receive) are held back too, so a slow target still
//!   gets every snapshot; the slowest target decides. But only while the
//!   target is less than the lag limit behind: past it, they are pruned as
//!   usual (the newest common stays), and the lag is reported as an alert
//!   (status, metrics, `zfsrepl check --daemon`) instead of letting one dead
//!   target fill the source pool.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zfsrepl_core::Guid;
use zfsrepl_core::zfs::Dataset;

use crate::state::Cursor;

/// A target past the lag limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagAlert {
    /// The replication job.
    pub job: String,
    /// The target.
    pub target: String,
    /// The source dataset.
    pub dataset: String,
    /// How far behind, seconds (age of the common snapshot).
    pub lag: i64,
}

/// What to spare, and the alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    /// Guids retention must not destroy.
    pub guids: BTreeSet<Guid>,
    /// How many were held back for slow targets (not counting the common
    /// snapshots themselves).
    pub held_back: usize,
    /// Targets past the lag limit.
    pub alerts: Vec<LagAlert>,
}

/// Computes what to spare from the replication cursors (job -> target ->
/// cursor) and the listing about to be pruned, at `now` (seconds).
#[must_use]
pub fn protection(
    cursors: &BTreeMap<String, BTreeMap<String, Cursor>>,
    listing: &[Dataset],
    now: i64,
    lag_limit: Duration,
) -> Protection {
    let limit = i64::try_from(lag_limit.as_secs()).unwrap_or(i64::MAX);
    let mut out = Protection::default();
    let mut held = BTreeSet::new();
    for (job, targets) in cursors {
        for (target, cursor) in targets {
            for (dataset, common) in &cursor.datasets {
                out.guids.insert(common.guid);
                let Some(ds) = listing.iter().find(|d| d.name.as_str() == dataset) else {
                    continue;
                };
                let Some(base) = ds.snapshots().find(|v| v.guid == common.guid) else {
                    continue;
                };
                let newer: Vec<Guid> = ds
                    .snapshots()
                    .filter(|v| v.createtxg > base.createtxg)
                    .map(|v| v.guid)
                    .collect();
                if newer.is_empty() {
                    continue;
                }
                let lag = now.saturating_sub(common.creation);
                if lag <= limit {
                    held.extend(newer);
                } else {
                    out.alerts.push(LagAlert {
                        job: job.clone(),
                        target: target.clone(),
                        dataset: dataset.clone(),
                        lag,
                    });
                }
            }
        }
    }
    out.held_back = held.difference(&out.guids).count();
    out.guids.extend(held);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Common;
    use zfsrepl_core::zfs::{DatasetKind, Version, VersionName};
    use zfsrepl_core::{DatasetName, SnapshotName, Txg};

    /// `ds@snap,guid,txg,creation` lines, one dataset.
    fn snaps(lines: &str) -> Vec<Dataset> {
        let mut versions = Vec::new();
        let mut name = None;
        for l in lines.lines() {
            let f: Vec<&str> = l.split(',').collect();
            let snap = SnapshotName::parse(f[0]).unwrap();
            name = Some(snap.dataset());
            versions.push(Version {
                name: VersionName::Snapshot(snap),
                guid: Guid(f[1].parse().unwrap()),
                createtxg: Txg(f[2].parse().unwrap()),
                creation: f[3].parse().unwrap(),
                used: None,
                userrefs: None,
            });
        }
        vec![Dataset {
            name: name.unwrap_or_else(|| DatasetName::parse("x/y").unwrap()),
            kind: DatasetKind::Filesystem,
            guid: Guid(0),
            createtxg: Txg(0),
            creation: 0,
            used: 0,
            origin: None,
            receive_resume_token: None,
            user_props: BTreeMap::new(),
            versions,
        }]
    }

    fn cursor(ds: &str, snap: &str, guid: u64, creation: i64) -> Cursor {
        Cursor {
            updated: None,
            datasets: [(
                ds.to_owned(),
                Common {
                    snapshot: snap.into(),
                    guid: Guid(guid),
                    creation,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn slowest_target_holds_back_up_to_the_limit() {
        // tank/a has snapshots s1..s4 (guids 1..4, txg 1..4, creation
        // 1000..4000); off1 has s3 in common, ovh3 only s1.
        let listing =
            snaps("tank/a@s1,1,1,1000\ntank/a@s2,2,2,2000\ntank/a@s3,3,3,3000\ntank/a@s4,4,4,4000");
        let mut cursors: BTreeMap<String, BTreeMap<String, Cursor>> = BTreeMap::new();
        let job = cursors.entry("repl".into()).or_default();
        job.insert("off1:b/a".into(), cursor("tank/a", "s3", 3, 3000));
        job.insert("ovh3:b/a".into(), cursor("tank/a", "s1", 1, 1000));
        let day = Duration::from_secs(86_400);
        // Within the limit: s1 and s3 (common) and s2, s4 (not yet on ovh3).
        let p = protection(&cursors, &listing, 5000, day);
        assert_eq!(p.guids, [1, 2, 3, 4].map(Guid).into());
        assert_eq!(p.held_back, 2);
        assert!(p.alerts.is_empty());
        // ovh3 is past the limit: only the common snapshots stay, s4 is
        // still held for off1, and ovh3 is reported.
        let p = protection(&cursors, &listing, 1000 + 86_401, day);
        assert_eq!(p.guids, [1, 3, 4].map(Guid).into());
        assert_eq!(
            p.alerts,
            [LagAlert {
                job: "repl".into(),
                target: "ovh3:b/a".into(),
                dataset: "tank/a".into(),
                lag: 86_401,
            }]
        );
        // On the target side (a listing of the copy), the common guid is
        // what counts: the same guid protects it there.
        let target = snaps("b/a@s1,1,1,1000");
        let p = protection(&cursors, &target, 5000, day);
        assert!(p.guids.contains(&Guid(1)) && p.guids.contains(&Guid(3)));
        // No cursors, nothing protected.
        assert_eq!(
            protection(&BTreeMap::new(), &listing, 5000, day),
            Protection::default()
        );
    }
}
