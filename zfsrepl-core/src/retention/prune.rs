//! Pruning for a policy: each dataset's keep rules from its settings, the
//! pure planner per dataset, then one destroy batch and the pruning hooks.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{KeepRule, Ownership, PrunePlan, RetentionGrid, SanoidCounts, SnapshotInfo, plan};
use crate::hooks::{self, HookContext, HookKind, HookOutcome};
use crate::name::{DatasetName, Guid, SnapshotName};
use crate::policy::{Naming, Policy, Settings};
use crate::zfs::{Dataset, ZfsWrite};

/// The keep rules and ownership a dataset entry's settings describe.
///
/// # Errors
/// A message when the grid or a regex does not parse (the policy loader
/// normally catches it first).
pub fn rules_of(s: &Settings) -> Result<(Vec<KeepRule>, Ownership), String> {
    let c = &s.counts;
    let mut rules = vec![KeepRule::SanoidCounts(SanoidCounts {
        frequently: c.frequently,
        frequent_period_min: s.frequent_period,
        hourly: c.hourly,
        daily: c.daily,
        weekly: c.weekly,
        monthly: c.monthly,
        yearly: c.yearly,
    })];
    if let Some(g) = &s.retention.grid {
        rules.push(KeepRule::Grid(
            RetentionGrid::parse(g).map_err(|e| e.to_string())?,
        ));
    }
    if let Some(n) = s.retention.keep_last {
        rules.push(KeepRule::LastN { n, regex: None });
    }
    for r in &s.retention.keep_regex {
        let re = super::Regex::new(r).map_err(|e| e.to_string())?;
        rules.push(KeepRule::Regex { re, negate: false });
    }
    let ownership = match &s.naming {
        Naming::Sanoid => Ownership::new(crate::snapshot::DEFAULT_PREFIX).with_sanoid_chain(true),
        Naming::Zfsrepl { prefix } => Ownership::new(prefix.clone()),
    };
    Ok((rules, ownership))
}

/// One dataset's prune plan.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetPrune {
    /// The dataset.
    pub dataset: DatasetName,
    /// The policy entry governing it.
    pub entry: DatasetName,
    /// Keep/destroy with reasons for every snapshot.
    pub plan: PrunePlan,
}

/// Plans pruning for every dataset in `listing` that the policy governs
/// with `autoprune`. Pure. `protected` holds guids replication still needs;
/// `capacity(pool)` is the pool's used percentage, for `prune-defer` (as in
/// sanoid, an entry with `prune-defer = P > 0` is pruned only when its
/// pool, the first component of the entry's name, is more than P% full;
/// an unknown capacity defers too).
///
/// # Errors
/// A message naming the entry whose rules do not parse.
pub fn plan_policy(
    policy: &Policy,
    listing: &[Dataset],
    protected: &[Guid],
    capacity: &dyn Fn(&str) -> Option<u8>,
    now: i64,
) -> Result<Vec<DatasetPrune>, String> {
    let mut out = Vec::new();
    for ds in listing {
        let Some(entry) = policy.entry_for(&ds.name) else {
            continue;
        };
        if !entry.settings.autoprune || (entry.dataset == ds.name && entry.children_only) {
            continue;
        }
        let defer = entry.settings.prune_defer;
        if defer > 0 && capacity(entry.dataset.pool()).is_none_or(|c| c <= defer) {
            continue;
        }
        let (rules, ownership) =
            rules_of(&entry.settings).map_err(|e| format!("{}: {e}", entry.dataset))?;
        let snaps: Vec<SnapshotInfo> = ds
            .versions
            .iter()
            .filter_map(SnapshotInfo::from_version)
            .collect();
        out.push(DatasetPrune {
            dataset: ds.name.clone(),
            entry: entry.dataset.clone(),
            plan: plan(&snaps, &rules, &ownership, protected, now),
        });
    }
    Ok(out)
}

/// A policy entry whose pruning waits: its pool is not full enough for its
/// `prune-defer` (or its fill is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// The policy entry.
    pub entry: DatasetName,
    /// Its pool's used percentage, when known.
    pub capacity: Option<u8>,
    /// Its `prune-defer`.
    pub defer: u8,
}

impl std::fmt::Display for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pool = self.entry.pool();
        match self.capacity {
            Some(c) => write!(
                f,
                "{}: pruning deferred: pool {pool} is {c}% full, prune-defer = {} prunes above {}%",
                self.entry, self.defer, self.defer
            ),
            None => write!(
                f,
                "{}: pruning deferred: the fill of pool {pool} is unknown (prune-defer = {})",
                self.entry, self.defer
            ),
        }
    }
}

/// The entries [`plan_policy`] skips for `prune-defer`, to say so. Pure.
#[must_use]
pub fn deferred(policy: &Policy, capacity: &dyn Fn(&str) -> Option<u8>) -> Vec<Deferred> {
    policy
        .datasets
        .iter()
        .filter(|e| e.settings.autoprune && e.settings.prune_defer > 0)
        .filter_map(|e| {
            let c = capacity(e.dataset.pool());
            c.is_none_or(|c| c <= e.settings.prune_defer)
                .then(|| Deferred {
                    entry: e.dataset.clone(),
                    capacity: c,
                    defer: e.settings.prune_defer,
                })
        })
        .collect()
}

/// Keeps the snapshots clones were made from (`origins`: snapshot,
/// clone, as from [`crate::clone::clone_origins`]) in every plan, with
/// [`Reason::CloneOrigin`](super::Reason::CloneOrigin). Returns how many
/// planned destroys were called off.
pub fn pin_clone_origins(plans: &mut [DatasetPrune], origins: &[(SnapshotName, String)]) -> usize {
    plans.iter_mut().map(|p| p.plan.pin_origins(origins)).sum()
}

/// What pruning did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Destroyed snapshots.
    pub destroyed: Vec<SnapshotName>,
    /// Snapshots that could not be destroyed, with why.
    pub failed: Vec<(SnapshotName, String)>,
    /// Pruning hooks run: (entry, outcome).
    pub hooks: Vec<(DatasetName, HookOutcome)>,
}

/// The snapshots `zfs destroy -r` can take in one process each: `R@N`
/// such that every dataset of `listing` within `R` that has a snapshot `N`
/// has it in `doomed` (so `-r` destroys nothing the plans keep), covering at
/// least two snapshots. Topmost roots only. Pure.
#[must_use]
pub fn recursive_destroys(listing: &[Dataset], doomed: &[SnapshotName]) -> Vec<SnapshotName> {
    let doomed: BTreeSet<&str> = doomed.iter().map(SnapshotName::as_str).collect();
    let mut by_name: BTreeMap<&str, Vec<&DatasetName>> = BTreeMap::new();
    for ds in listing {
        for v in ds.snapshots() {
            by_name.entry(v.name.short()).or_default().push(&ds.name);
        }
    }
    let mut out = Vec::new();
    for (short, holders) in by_name {
        let is_doomed = |d: &DatasetName| doomed.contains(format!("{d}@{short}").as_str());
        let mut roots: Vec<&DatasetName> = Vec::new();
        for d in &holders {
            if !is_doomed(d) || roots.iter().any(|r| d.is_within(r)) {
                continue;
            }
            let below: Vec<&&DatasetName> = holders.iter().filter(|o| o.is_within(d)).collect();
            if below.len() > 1 && below.iter().all(|o| is_doomed(o)) {
                roots.push(d);
            }
        }
        out.extend(roots.into_iter().filter_map(|r| r.snapshot(short).ok()));
    }
    out
}

/// Destroys what the plans say, in one batch (comma-batched per dataset
/// where ZFS can), then runs each entry's pruning hook once.
pub fn execute<Z: ZfsWrite + ?Sized>(
    zfs: &Z,
    policy: &Policy,
    plans: &[DatasetPrune],
) -> PruneReport {
    execute_batched(zfs, policy, plans, &[])
}

/// [`execute`], destroying first each of `recursive` (from
/// [`recursive_destroys`]) with one `zfs destroy -r`; where that fails or
/// is not offered, its snapshots go the ordinary way.
pub fn execute_batched<Z: ZfsWrite + ?Sized>(
    zfs: &Z,
    policy: &Policy,
    plans: &[DatasetPrune],
    recursive: &[SnapshotName],
) -> PruneReport {
    let mut doomed: Vec<SnapshotName> = plans
        .iter()
        .flat_map(|p| p.plan.destroy().cloned())
        .collect();
    let mut report = PruneReport {
        destroyed: Vec::new(),
        failed: Vec::new(),
        hooks: Vec::new(),
    };
    for root in recursive {
        let root_ds = root.dataset();
        let covered = |s: &SnapshotName| s.snap() == root.snap() && s.dataset().is_within(&root_ds);
        if !doomed.iter().any(|s| s == root) || zfs.destroy_snapshot_recursive(root).is_err() {
            continue;
        }
        let (gone, rest): (Vec<SnapshotName>, Vec<SnapshotName>) =
            doomed.into_iter().partition(|s| covered(s));
        report.destroyed.extend(gone);
        doomed = rest;
    }
    for (snap, r) in zfs.destroy_snapshots(&doomed) {
        match r {
            Ok(()) => report.destroyed.push(snap),
            Err(e) => report.failed.push((snap, e.to_string())),
        }
    }
    let mut entries: Vec<&DatasetName> = plans.iter().map(|p| &p.entry).collect();
    entries.sort();
    entries.dedup();
    for entry in entries {
        let Some(d) = policy.datasets.iter().find(|d| &d.dataset == entry) else {
            continue;
        };
        let Some(argv) = &d.settings.hooks.pruning else {
            continue;
        };
        let snapshots: Vec<SnapshotName> = report
            .destroyed
            .iter()
            .filter(|s| {
                plans
                    .iter()
                    .any(|p| &p.entry == entry && p.dataset.as_str() == s.dataset_str())
            })
            .cloned()
            .collect();
        if snapshots.is_empty() {
            continue;
        }
        let mut targets: Vec<String> = snapshots
            .iter()
            .map(|s| s.dataset_str().to_owned())
            .collect();
        targets.dedup();
        let cx = HookContext {
            targets,
            snapshots,
            periods: Vec::new(),
            pre_failed: false,
        };
        let out = hooks::run(argv, HookKind::Pruning, &cx, d.settings.hooks.timeout);
        report.hooks.push((entry.clone(), out));
    }
    report
}

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::FakeZfs;
    use crate::policy::parse_str;
    use crate::snapshot::take;
    use crate::zfs::ZfsRead as _;

    fn names(zfs: &FakeZfs, d: &str) -> Vec<String> {
        zfs.list(&crate::zfs::ListSpec::all(vec![
            DatasetName::parse(d).unwrap(),
        ]))
        .unwrap()
        .iter()
        .flat_map(|d| {
            d.snapshots()
                .map(|v| v.name.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
    }

    /// A name expiring on every dataset of a subtree goes with one
    /// `zfs destroy -r`; a subtree where some holder of the name keeps it
    /// (held, or not governed) is destroyed snapshot by snapshot.
    #[test]
    fn whole_subtrees_are_destroyed_with_one_recursive_destroy() {
        let zfs = FakeZfs::with_capabilities(crate::zfs::Capabilities::zfs_fuse());
        zfs.apply_fixture(
            "+ tank\n+ tank/r\n+ tank/r/a\n+ \"tank/r/-b c\"\n+ tank/q\n+ tank/q/x\n+ tank/q/y\n",
        )
        .unwrap();
        zfs.apply_fixture(
            "+ tank/r@zfsrepl_2026-01-01_00:00:00_hourly\n+ tank/r/a@zfsrepl_2026-01-01_00:00:00_hourly\n+ \"tank/r/-b c@zfsrepl_2026-01-01_00:00:00_hourly\"\n+ tank/q@zfsrepl_2026-01-01_00:00:00_hourly\n+ tank/q/x@zfsrepl_2026-01-01_00:00:00_hourly\n+ tank/q/y@zfsrepl_2026-01-01_00:00:00_hourly hold=mine\n",
        )
        .unwrap();
        let policy = parse_str(
            "p.toml",
            "version = 1\n[dataset.\"tank/r\"]\nrecursive = \"per-dataset\"\n\
             hourly = 0\ndaily = 0\nmonthly = 0\n\
             [dataset.\"tank/q\"]\nrecursive = \"per-dataset\"\nhourly = 0\ndaily = 0\nmonthly = 0\n",
        );
        let policy = match policy {
            Ok(p) => p,
            Err(d) => panic!("{d}"),
        };
        let (listing, _) = take::list_for(&zfs, &policy);
        let plans = plan_policy(&policy, &listing, &[], &|_| None, 2_000_000_000).unwrap();
        let doomed: Vec<SnapshotName> = plans
            .iter()
            .flat_map(|p| p.plan.destroy().cloned())
            .collect();
        assert_eq!(doomed.len(), 5, "{doomed:?}");
        let rec = recursive_destroys(&listing, &doomed);
        let rec: Vec<&str> = rec.iter().map(SnapshotName::as_str).collect();
        // tank/q/y@zfsrepl_2026-01-01_00:00:00_hourly is held: tank/q cannot go with -r (tank/q/x alone
        // gains nothing).
        assert_eq!(rec, ["tank/r@zfsrepl_2026-01-01_00:00:00_hourly"]);
        zfs.reset_calls();
        let recursive: Vec<SnapshotName> = rec
            .iter()
            .map(|s| SnapshotName::parse(s).unwrap())
            .collect();
        let r = execute_batched(&zfs, &policy, &plans, &recursive);
        assert_eq!(r.destroyed.len(), 5, "{r:?}");
        assert!(r.failed.is_empty());
        // One -r for the three of tank/r, one each for tank/q and tank/q/x.
        assert_eq!(zfs.calls(), 3);
        assert_eq!(
            names(&zfs, "tank/q"),
            ["tank/q/y@zfsrepl_2026-01-01_00:00:00_hourly"]
        );
        assert!(names(&zfs, "tank/r").is_empty());
    }

    proptest::proptest! {
        /// `zfs destroy -r R@N` is only proposed when every holder of `N`
        /// within `R` is doomed: it never destroys what a plan keeps.
        #[test]
        fn recursive_destroys_cover_only_doomed_snapshots(
            have in proptest::collection::vec(proptest::prelude::any::<(bool, bool)>(), 5),
            doom in proptest::collection::vec(proptest::prelude::any::<(bool, bool)>(), 5),
        ) {
            let names = ["t", "t/a", "t/a/b", "t/a b", "t/c"];
            let zfs = FakeZfs::from_fixture("+ t\n+ t/a\n+ t/a/b\n+ \"t/a b\"\n+ t/c\n");
            let mut doomed = Vec::new();
            for (i, n) in names.iter().enumerate() {
                for (k, (has, dies)) in [(have[i].0, doom[i].0), (have[i].1, doom[i].1)].into_iter().enumerate() {
                    if has {
                        zfs.apply_fixture(&format!("+ \"{n}@s{k}\"")).unwrap();
                        if dies {
                            doomed.push(SnapshotName::parse(&format!("{n}@s{k}")).unwrap());
                        }
                    }
                }
            }
            let listing = zfs
                .list(&crate::zfs::ListSpec::all(vec![DatasetName::parse("t").unwrap()]))
                .unwrap();
            for r in recursive_destroys(&listing, &doomed) {
                let root = r.dataset();
                for d in listing.iter().filter(|d| d.name.is_within(&root)) {
                    if d.snapshots().any(|v| v.name.short() == r.snap()) {
                        let s = d.name.snapshot(r.snap()).unwrap();
                        proptest::prop_assert!(doomed.contains(&s), "{r} would destroy kept {s}");
                    }
                }
            }
        }
    }

    /// Hourly runs of take + prune for three days with hourly=4 daily=2:
    /// sanoid's steady state (N+1 of each), and a foreign snapshot survives.
    #[test]
    fn take_and_prune_reach_sanoids_steady_state() {
        let policy = parse_str(
            "p.toml",
            "version = 1\ntimezone = \"UTC\"\n[dataset.\"tank/a b\"]\nnaming = \"sanoid\"\nhourly = 4\ndaily = 2\nmonthly = 0\n",
        )
        .unwrap();
        let zfs = FakeZfs::from_fixture("+ tank\n+ \"tank/a b\"\n+ \"tank/a b@manual keep\"\n");
        let start: i64 = 1_798_761_600; // 2027-01-01T00:00:00Z
        for h in 0..=72 {
            let now = start + h * 3600;
            zfs.set_time(now);
            let (listing, _) = take::list_for(&zfs, &policy);
            let plans = plan_policy(&policy, &listing, &[], &|_| None, now).unwrap();
            let r = execute(&zfs, &policy, &plans);
            assert!(r.failed.is_empty(), "{r:?}");
            let (listing, _) = take::list_for(&zfs, &policy);
            let p = take::plan(
                &policy,
                &listing,
                jiff::Timestamp::from_second(now).unwrap(),
            )
            .unwrap();
            take::execute(&zfs, &policy, &p);
        }
        let l = zfs
            .list(&crate::zfs::ListSpec::all(vec![
                DatasetName::parse("tank/a b").unwrap(),
            ]))
            .unwrap();
        let names: Vec<&str> = l[0].versions.iter().map(|v| v.name.short()).collect();
        assert_eq!(
            names.iter().filter(|n| n.ends_with("_hourly")).count(),
            5,
            "{names:?}"
        );
        assert_eq!(
            names.iter().filter(|n| n.ends_with("_daily")).count(),
            3,
            "{names:?}"
        );
        assert!(names.contains(&"manual keep"));
    }

    #[test]
    fn prune_defer_waits_for_a_full_pool() {
        let policy = parse_str(
            "p.toml",
            "version = 1\n[dataset.\"tank/a\"]\nnaming = \"sanoid\"\nhourly = 0\ndaily = 0\nmonthly = 0\nprune-defer = 60\n",
        )
        .unwrap();
        let zfs = FakeZfs::from_fixture(
            "+ tank\n+ tank/a\n+ tank/a@autosnap_2027-01-01_00:00:00_hourly\n",
        );
        let (l, _) = take::list_for(&zfs, &policy);
        let count = |cap: Option<u8>| -> usize {
            plan_policy(&policy, &l, &[], &|_| cap, 1_900_000_000)
                .unwrap()
                .iter()
                .map(|p| p.plan.destroy_count())
                .sum()
        };
        assert_eq!(count(Some(60)), 0, "60% full is not more than 60%");
        assert_eq!(count(None), 0, "unknown capacity defers");
        assert_eq!(count(Some(61)), 1);
        // And what is deferred is said, with why.
        let d = deferred(&policy, &|_| Some(60));
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "tank/a: pruning deferred: pool tank is 60% full, prune-defer = 60 prunes above 60%"
        );
        assert!(
            deferred(&policy, &|_| None)[0]
                .to_string()
                .contains("unknown")
        );
        assert!(deferred(&policy, &|_| Some(61)).is_empty());
    }
}
