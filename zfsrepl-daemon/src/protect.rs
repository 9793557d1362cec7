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
use zfsrepl_core::policy::{Job, JobKind};
use zfsrepl_core::zfs::Dataset;
use zfsrepl_core::{DatasetName, Guid};

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
    /// Per dataset of the listing, the guids retention must not destroy
    /// there.
    pub guids: BTreeMap<DatasetName, BTreeSet<Guid>>,
    /// How many were held back for slow targets (not counting the common
    /// snapshots themselves).
    pub held_back: usize,
    /// Targets past the lag limit.
    pub alerts: Vec<LagAlert>,
}

impl Protection {
    /// The guids protected on `dataset`.
    #[must_use]
    pub fn of(&self, dataset: &DatasetName) -> Vec<Guid> {
        self.guids
            .get(dataset)
            .map(|g| g.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Where `source` (below `src_root`) lands below `dst_root`.
#[must_use]
pub fn map_target(
    src_root: &DatasetName,
    dst_root: &DatasetName,
    source: &DatasetName,
) -> Option<DatasetName> {
    let rest = source.as_str().strip_prefix(src_root.as_str())?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    DatasetName::parse(&format!("{dst_root}{rest}")).ok()
}

/// Computes what to spare in `listing` (datasets on `host`, `None` for
/// this one) from the replication jobs and their cursors (job -> target ->
/// cursor), at `now` (seconds). A common snapshot is protected on its
/// source dataset and on that target's copy only; other targets prune
/// their copies by their own rules.
#[must_use]
pub fn protection(
    jobs: &[Job],
    cursors: &BTreeMap<String, BTreeMap<String, Cursor>>,
    listing: &[Dataset],
    host: Option<&str>,
    now: i64,
    lag_limit: Duration,
) -> Protection {
    let limit = i64::try_from(lag_limit.as_secs()).unwrap_or(i64::MAX);
    let mut out = Protection::default();
    let mut held: BTreeMap<DatasetName, BTreeSet<Guid>> = BTreeMap::new();
    let find = |name: &DatasetName| listing.iter().find(|d| &d.name == name);
    for job in jobs {
        let JobKind::Replicate(r) = &job.kind else {
            continue;
        };
        let Some(targets) = cursors.get(&job.name) else {
            continue;
        };
        for t in &r.targets {
            let key = t.to_string();
            let Some(cursor) = targets.get(&key) else {
                continue;
            };
            for (dataset, common) in &cursor.datasets {
                let Ok(source) = DatasetName::parse(dataset) else {
                    continue;
                };
                // The target side: the common snapshot of this copy.
                if t.host.as_deref() == host
                    && let Some(copy) = map_target(&r.source.dataset, &t.dataset, &source)
                    && find(&copy).is_some()
                {
                    out.guids.entry(copy).or_default().insert(common.guid);
                }
                // The source side: the common snapshot, and what this
                // target has yet to receive while it is within the limit.
                if r.source.host.as_deref() != host {
                    continue;
                }
                let Some(ds) = find(&source) else {
                    continue;
                };
                out.guids
                    .entry(source.clone())
                    .or_default()
                    .insert(common.guid);
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
                    held.entry(source).or_default().extend(newer);
                } else {
                    out.alerts.push(LagAlert {
                        job: job.name.clone(),
                        target: key.clone(),
                        dataset: dataset.clone(),
                        lag,
                    });
                }
            }
        }
    }
    for (ds, guids) in held {
        let set = out.guids.entry(ds).or_default();
        for g in guids {
            if set.insert(g) {
                out.held_back += 1;
            }
        }
    }
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

    fn jobs() -> Vec<Job> {
        let p = zfsrepl_core::policy::parse_str(
            "p.toml",
            "version = 1\n[host.off1]\n[host.ovh3]\n[job.repl]\nkind = \"replicate\"\nsource = \"tank/a\"\ntargets = [\"off1:b/a\", \"ovh3:b/a\"]\nschedule = \"every 1h\"\n",
        )
        .unwrap();
        p.jobs
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
        let jobs = jobs();
        let day = Duration::from_secs(86_400);
        let a = DatasetName::parse("tank/a").unwrap();
        let set = |g: &[u64]| g.iter().copied().map(Guid).collect::<Vec<_>>();
        // Within the limit: s1 and s3 (common) and s2, s4 (not yet on ovh3).
        let p = protection(&jobs, &cursors, &listing, None, 5000, day);
        assert_eq!(p.of(&a), set(&[1, 2, 3, 4]));
        assert_eq!(p.held_back, 2);
        assert!(p.alerts.is_empty());
        // ovh3 is past the limit: only the common snapshots stay, s4 is
        // still held for off1, and ovh3 is reported.
        let p = protection(&jobs, &cursors, &listing, None, 1000 + 86_401, day);
        assert_eq!(p.of(&a), set(&[1, 3, 4]));
        assert_eq!(
            p.alerts,
            [LagAlert {
                job: "repl".into(),
                target: "ovh3:b/a".into(),
                dataset: "tank/a".into(),
                lag: 86_401,
            }]
        );
        // On a target (a listing of off1's copy), only off1's own common
        // snapshot is protected, not ovh3's.
        let copy = snaps("b/a@s1,1,1,1000\nb/a@s3,3,3,3000");
        let b = DatasetName::parse("b/a").unwrap();
        let p = protection(&jobs, &cursors, &copy, Some("off1"), 5000, day);
        assert_eq!(p.of(&b), set(&[3]));
        let p = protection(&jobs, &cursors, &copy, Some("ovh3"), 5000, day);
        assert_eq!(p.of(&b), set(&[1]));
        // The same names here are not the source (it is on this host, the
        // copy is not): nothing.
        assert!(
            protection(&jobs, &cursors, &copy, None, 5000, day)
                .guids
                .is_empty()
        );
        // No cursors, nothing protected.
        assert_eq!(
            protection(&jobs, &BTreeMap::new(), &listing, None, 5000, day),
            Protection::default()
        );
    }

    #[test]
    fn targets_map_below_their_root() {
        let d = |s: &str| DatasetName::parse(s).unwrap();
        assert_eq!(
            map_target(&d("tank/off"), &d("b/copy"), &d("tank/off/images x")),
            Some(d("b/copy/images x"))
        );
        assert_eq!(
            map_target(&d("tank/off"), &d("b/copy"), &d("tank/off")),
            Some(d("b/copy"))
        );
        assert_eq!(
            map_target(&d("tank/off"), &d("b/copy"), &d("tank/offx")),
            None
        );
    }
}
