//! Taking snapshots for a policy: a pure planner (which snapshots are due
//! for which datasets, under which names) and a thin executor (hooks, then
//! as few `zfs snapshot` processes as this ZFS allows).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::{Period, PeriodKind, Preferred, SnapshotNamer, due_periods, sanoid_type};
use crate::hooks::{self, HookContext, HookKind, HookOutcome};
use crate::name::{DatasetName, SnapshotName};
use crate::policy::{DatasetPolicy, HookFailure, Naming, Policy, Recursion, Settings};
use crate::zfs::{Dataset, ZfsError, ZfsWrite};

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TakeError {
    /// The policy's time zone is unknown here.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    /// A schedule setting is invalid (the policy loader normally catches it).
    #[error("dataset {dataset}: {message}")]
    Schedule {
        /// The dataset entry.
        dataset: DatasetName,
        /// What is wrong.
        message: String,
    },
}

/// One snapshot to take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakeItem {
    /// The snapshot (for an atomic entry, of the entry's root; `zfs snapshot
    /// -r` gives every descendant the same name).
    pub snapshot: SnapshotName,
    /// Its period.
    pub period: PeriodKind,
    /// `zfs snapshot -r`.
    pub recursive: bool,
    /// The policy entry it comes from.
    pub entry: DatasetName,
    /// Why it is due, for `--dry-run`.
    pub reason: String,
}

/// What one run will take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakePlan {
    /// The run's time (every name carries it).
    pub now: Timestamp,
    /// The snapshots, grouped by entry, yearly first within a dataset.
    pub items: Vec<TakeItem>,
    /// Whole subtrees whose every dataset takes the same name in this run
    /// (the usual case for a per-child `recursive` entry): each is taken
    /// with one `zfs snapshot -r`, which is also atomic, instead of one
    /// snapshot per dataset where ZFS cannot batch them.
    pub subtrees: Vec<SnapshotName>,
}

/// A dataset entry's schedule: counts per period, preferred times, names.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Counts per period, yearly first.
    pub counts: Vec<(Period, u32)>,
    /// Preferred times in the policy's zone.
    pub preferred: Preferred,
    /// How snapshots are named (and which are owned).
    pub namer: SnapshotNamer,
}

/// The schedule a dataset entry's settings describe.
///
/// # Errors
/// [`TakeError::Schedule`] for settings out of range.
pub fn schedule_of(entry: &DatasetPolicy, tz: &TimeZone) -> Result<Schedule, TakeError> {
    let s: &Settings = &entry.settings;
    let err = |message: String| TakeError::Schedule {
        dataset: entry.dataset.clone(),
        message,
    };
    let freq = NonZeroU32::new(s.frequent_period)
        .ok_or_else(|| err("frequent-period must be at least 1".into()))?;
    let counts = vec![
        (Period::Yearly, s.counts.yearly),
        (Period::Monthly, s.counts.monthly),
        (Period::Weekly, s.counts.weekly),
        (Period::Daily, s.counts.daily),
        (Period::Hourly, s.counts.hourly),
        (
            Period::from_kind(PeriodKind::Frequently, freq),
            s.counts.frequently,
        ),
    ];
    let prefs = Preferred::with_times(tz.clone(), s.preferred);
    prefs.validate().map_err(|e| err(e.to_string()))?;
    let namer = match &s.naming {
        Naming::Sanoid => SnapshotNamer::sanoid(tz.clone()),
        Naming::Zfsrepl { prefix } => SnapshotNamer::zfsrepl(prefix),
    }
    .map_err(|e| err(e.to_string()))?;
    Ok(Schedule {
        counts,
        preferred: prefs,
        namer,
    })
}

/// The period of an owned snapshot, by its name (sanoid's rule for sanoid
/// naming: the text after the last `_`).
#[must_use]
pub fn owned_period(namer: &SnapshotNamer, short: &str) -> Option<PeriodKind> {
    match namer.style() {
        super::NameStyle::Sanoid { .. } => sanoid_type(short).and_then(PeriodKind::from_name),
        super::NameStyle::Zfsrepl { .. } => namer.parse(short).map(|p| p.kind),
    }
}

/// The roots to list for a policy: every entry's dataset that is not below
/// another entry's recursive tree (one `zfs` listing each).
#[must_use]
pub fn listing_roots(policy: &Policy) -> Vec<DatasetName> {
    let mut roots: Vec<DatasetName> = Vec::new();
    for d in &policy.datasets {
        let covered = policy.datasets.iter().any(|o| {
            o.recursion != Recursion::None
                && o.dataset != d.dataset
                && d.dataset.is_within(&o.dataset)
        });
        if !covered && !roots.contains(&d.dataset) {
            roots.push(d.dataset.clone());
        }
    }
    roots
}

/// Lists what a policy governs: one `zfs` listing per root. A root that
/// does not exist is reported, not fatal: the other roots are still listed.
pub fn list_for<Z: crate::zfs::ZfsRead + ?Sized>(
    zfs: &Z,
    policy: &Policy,
) -> (Vec<Dataset>, Vec<ZfsError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for root in listing_roots(policy) {
        match zfs.list(&crate::zfs::ListSpec::all(vec![root])) {
            Ok(mut l) => out.append(&mut l),
            Err(e) => errors.push(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, errors)
}

/// Plans the snapshots due at `now` for every dataset in `listing` that the
/// policy governs. Pure: the listing and the time are inputs.
///
/// # Errors
/// [`TakeError`] for an unknown time zone or invalid schedule.
pub fn plan(policy: &Policy, listing: &[Dataset], now: Timestamp) -> Result<TakePlan, TakeError> {
    let tz = TimeZone::get(&policy.timezone)
        .map_err(|_| TakeError::TimeZone(policy.timezone.clone()))?;
    let zoned = now.to_zoned(tz.clone());
    let mut items = Vec::new();
    for ds in listing {
        let Some(entry) = policy.entry_for(&ds.name) else {
            continue;
        };
        let own = entry.dataset == ds.name;
        if !entry.settings.autosnap || (own && entry.children_only) {
            continue;
        }
        // Below an atomic entry, `zfs snapshot -r` of the root covers it.
        if entry.recursion == Recursion::Atomic && !own {
            continue;
        }
        let Schedule {
            counts,
            preferred: prefs,
            namer,
        } = schedule_of(entry, &tz)?;
        let mut newest: BTreeMap<PeriodKind, Timestamp> = BTreeMap::new();
        for v in ds.snapshots() {
            if let Some(kind) = owned_period(&namer, v.name.short()) {
                let t = Timestamp::from_second(v.creation).unwrap_or(Timestamp::UNIX_EPOCH);
                let e = newest.entry(kind).or_insert(t);
                *e = (*e).max(t);
            }
        }
        let due =
            due_periods(&counts, |k| newest.get(&k).copied(), &prefs, &zoned).map_err(|e| {
                TakeError::Schedule {
                    dataset: entry.dataset.clone(),
                    message: e.to_string(),
                }
            })?;
        let existing: Vec<&str> = ds.snapshots().map(|v| v.name.short()).collect();
        for period in due {
            let kind = period.kind();
            let Ok(short) = namer.name(now, kind, |n| existing.contains(&n)) else {
                // Every permitted name exists: taken already in this slot.
                continue;
            };
            let Ok(snapshot) = ds.name.snapshot(&short) else {
                continue;
            };
            let reason = match newest.get(&kind) {
                None => format!("no {kind} snapshot yet"),
                Some(t) => {
                    format!("newest {kind} is from {t}, before this period's preferred time")
                }
            };
            items.push(TakeItem {
                snapshot,
                period: kind,
                recursive: entry.recursion == Recursion::Atomic,
                entry: entry.dataset.clone(),
                reason,
            });
        }
    }
    let subtrees = whole_subtrees(listing, &items);
    Ok(TakePlan {
        now,
        items,
        subtrees,
    })
}

/// The topmost datasets of `listing` whose whole subtree (every listed
/// descendant and itself) has a non-recursive item with the same short
/// name, paired with that name. A subtree of one dataset is left out: it
/// gains nothing.
fn whole_subtrees(listing: &[Dataset], items: &[TakeItem]) -> Vec<SnapshotName> {
    let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in items.iter().filter(|i| !i.recursive) {
        by_name
            .entry(i.snapshot.snap())
            .or_default()
            .insert(i.snapshot.dataset_str());
    }
    let mut out = Vec::new();
    for (short, set) in by_name {
        let mut roots: Vec<&DatasetName> = Vec::new();
        for d in listing {
            if !set.contains(d.name.as_str()) || roots.iter().any(|r| d.name.is_within(r)) {
                continue;
            }
            let mut size = 0usize;
            let whole = listing
                .iter()
                .filter(|o| o.name.is_within(&d.name))
                .all(|o| {
                    size += 1;
                    set.contains(o.name.as_str())
                });
            if whole && size > 1 {
                roots.push(&d.name);
            }
        }
        out.extend(roots.into_iter().filter_map(|r| r.snapshot(short).ok()));
    }
    out
}

/// The outcome of one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct TakeOutcome {
    /// The item.
    pub item: TakeItem,
    /// Taken, skipped (and why), or failed.
    pub result: Result<(), String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct TakeReport {
    /// One outcome per planned snapshot.
    pub outcomes: Vec<TakeOutcome>,
    /// Hook runs: (entry, hook, outcome).
    pub hooks: Vec<(DatasetName, HookKind, HookOutcome)>,
}

impl TakeReport {
    /// How many snapshots failed.
    #[must_use]
    pub fn failures(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }
}

/// Takes a plan: pre hooks, then the snapshots in as few `zfs` processes as
/// the ZFS allows (one atomic `zfs snapshot` per pool and name where it has
/// multi-snapshot, `-r` for atomic entries), then post hooks.
pub fn execute<Z: ZfsWrite + ?Sized>(zfs: &Z, policy: &Policy, plan: &TakePlan) -> TakeReport {
    let mut hooks_run = Vec::new();
    let mut skipped_entries: Vec<DatasetName> = Vec::new();
    let mut pre_failed: Vec<DatasetName> = Vec::new();
    let entries: Vec<&DatasetName> = {
        let mut e: Vec<&DatasetName> = plan.items.iter().map(|i| &i.entry).collect();
        e.dedup();
        e
    };
    let context = |entry: &DatasetName, pre_failed: bool| {
        let items: Vec<&TakeItem> = plan.items.iter().filter(|i| &i.entry == entry).collect();
        let mut targets: Vec<String> = items
            .iter()
            .map(|i| i.snapshot.dataset_str().to_owned())
            .collect();
        targets.dedup();
        let mut periods: Vec<String> = items.iter().map(|i| i.period.to_string()).collect();
        periods.dedup();
        HookContext {
            targets,
            snapshots: items.iter().map(|i| i.snapshot.clone()).collect(),
            periods,
            pre_failed,
        }
    };
    let settings = |entry: &DatasetName| {
        policy
            .datasets
            .iter()
            .find(|d| &d.dataset == entry)
            .map(|d| &d.settings)
    };
    for entry in &entries {
        let Some(s) = settings(entry) else { continue };
        if let Some(argv) = &s.hooks.pre_snapshot {
            let out = hooks::run(
                argv,
                HookKind::PreSnapshot,
                &context(entry, false),
                s.hooks.timeout,
            );
            if !out.is_ok() {
                pre_failed.push((*entry).clone());
                if s.hooks.on_pre_failure == HookFailure::Skip {
                    skipped_entries.push((*entry).clone());
                }
            }
            hooks_run.push(((*entry).clone(), HookKind::PreSnapshot, out));
        }
    }
    let mut outcomes: Vec<TakeOutcome> = Vec::new();
    let (recursive, plain): (Vec<&TakeItem>, Vec<&TakeItem>) = plan
        .items
        .iter()
        .filter(|i| {
            if skipped_entries.contains(&i.entry) {
                outcomes.push(TakeOutcome {
                    item: (*i).clone(),
                    result: Err("skipped: the pre-snapshot hook failed".into()),
                });
                false
            } else {
                true
            }
        })
        .partition(|i| i.recursive);
    for item in recursive {
        let r = zfs
            .snapshot_recursive(&item.snapshot, &[])
            .map_err(|e: ZfsError| e.to_string());
        outcomes.push(TakeOutcome {
            item: item.clone(),
            result: r,
        });
    }
    // Same short name: one batch (the command layer splits it per pool, or
    // runs it one by one where ZFS cannot do several at once).
    let mut batches: BTreeMap<&str, Vec<&TakeItem>> = BTreeMap::new();
    for item in plain {
        batches.entry(item.snapshot.snap()).or_default().push(item);
    }
    for (short, mut batch) in batches {
        // Whole subtrees first: one `zfs snapshot -r` each.
        for root in plan.subtrees.iter().filter(|r| r.snap() == short) {
            let root_ds = root.dataset();
            let (covered, rest): (Vec<&TakeItem>, Vec<&TakeItem>) = batch
                .into_iter()
                .partition(|i| i.snapshot.dataset().is_within(&root_ds));
            batch = rest;
            if covered.is_empty() {
                continue;
            }
            if zfs.snapshot_recursive(root, &[]).is_ok() {
                outcomes.extend(covered.into_iter().map(|i| TakeOutcome {
                    item: i.clone(),
                    result: Ok(()),
                }));
            } else {
                // `-r` took none (a dataset appeared, a name exists...):
                // take them the ordinary way, which says which failed.
                batch.extend(covered);
            }
        }
        if batch.is_empty() {
            continue;
        }
        let snaps: Vec<SnapshotName> = batch.iter().map(|i| i.snapshot.clone()).collect();
        match zfs.snapshot(&snaps, &[]) {
            Ok(()) => outcomes.extend(batch.iter().map(|i| TakeOutcome {
                item: (*i).clone(),
                result: Ok(()),
            })),
            Err(_) if batch.len() > 1 => {
                // Find out which failed: one by one (an atomic batch took none).
                for i in batch {
                    let r = zfs
                        .snapshot(std::slice::from_ref(&i.snapshot), &[])
                        .map_err(|e| e.to_string());
                    outcomes.push(TakeOutcome {
                        item: i.clone(),
                        result: r,
                    });
                }
            }
            Err(e) => outcomes.push(TakeOutcome {
                item: batch[0].clone(),
                result: Err(e.to_string()),
            }),
        }
    }
    for entry in &entries {
        let Some(s) = settings(entry) else { continue };
        let failed = pre_failed.contains(entry);
        if let Some(argv) = &s.hooks.post_snapshot {
            if failed && !s.hooks.force_post {
                continue;
            }
            let out = hooks::run(
                argv,
                HookKind::PostSnapshot,
                &context(entry, failed),
                s.hooks.timeout,
            );
            hooks_run.push(((*entry).clone(), HookKind::PostSnapshot, out));
        }
    }
    outcomes.sort_by(|a, b| a.item.snapshot.cmp(&b.item.snapshot));
    TakeReport {
        outcomes,
        hooks: hooks_run,
    }
}

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::FakeZfs;
    use crate::policy::parse_str;
    use crate::zfs::ZfsRead;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const POLICY: &str = r#"
version = 1
timezone = "UTC"
[template.p]
hourly = 36
daily = 30
monthly = 3
[dataset."tank/off"]
use-template = "p"
naming = "sanoid"
recursive = "per-dataset"
exclude = ["tank/off/cache"]
[dataset."tank/off/images"]
hourly = 0
[dataset."tank/vm"]
use-template = "p"
recursive = "atomic"
[dataset."tank/quiet"]
autosnap = false
"#;

    fn setup() -> (FakeZfs, Policy) {
        let zfs = FakeZfs::from_fixture(
            "+ tank\n+ tank/off\n+ tank/off/products\n+ tank/off/images\n+ tank/off/cache\n+ tank/vm\n+ tank/vm/disk-0\n+ tank/quiet\n",
        );
        (zfs, parse_str("p.toml", POLICY).unwrap())
    }

    fn listing(zfs: &FakeZfs, policy: &Policy) -> Vec<Dataset> {
        let (l, errors) = list_for(zfs, policy);
        assert!(
            errors
                .iter()
                .all(|e| e.kind == crate::zfs::ZfsErrorKind::NotFound),
            "{errors:?}"
        );
        l
    }

    #[test]
    fn first_run_takes_every_period_and_second_run_nothing() {
        let (zfs, policy) = setup();
        assert_eq!(listing_roots(&policy).len(), 3);
        let now = at("2026-11-22T05:00:00Z");
        zfs.set_time(now.as_second());
        let p = plan(&policy, &listing(&zfs, &policy), now).unwrap();
        let names: Vec<&str> = p.items.iter().map(|i| i.snapshot.as_str()).collect();
        assert_eq!(
            names,
            [
                "tank/off@autosnap_2026-11-22_05:00:00_monthly",
                "tank/off@autosnap_2026-11-22_05:00:00_daily",
                "tank/off@autosnap_2026-11-22_05:00:00_hourly",
                "tank/off/images@autosnap_2026-11-22_05:00:00_monthly",
                "tank/off/images@autosnap_2026-11-22_05:00:00_daily",
                "tank/off/products@autosnap_2026-11-22_05:00:00_monthly",
                "tank/off/products@autosnap_2026-11-22_05:00:00_daily",
                "tank/off/products@autosnap_2026-11-22_05:00:00_hourly",
                "tank/vm@zfsrepl_2026-11-22_05:00:00_monthly",
                "tank/vm@zfsrepl_2026-11-22_05:00:00_daily",
                "tank/vm@zfsrepl_2026-11-22_05:00:00_hourly",
            ]
        );
        assert!(p.items[8].recursive);
        zfs.reset_calls();
        let report = execute(&zfs, &policy, &p);
        assert_eq!(report.failures(), 0, "{report:?}");
        // OpenZFS model: 3 recursive + one atomic batch per name (3 names).
        assert_eq!(zfs.calls(), 6);
        let after = listing(&zfs, &policy);
        let disk = after
            .iter()
            .find(|d| d.name.as_str() == "tank/vm/disk-0")
            .unwrap();
        assert_eq!(disk.versions.len(), 3, "atomic -r reached the child");
        // Same time again: nothing due.
        let p2 = plan(&policy, &after, now).unwrap();
        assert!(p2.items.is_empty(), "{:?}", p2.items);
        // An hour later: hourlies only.
        let later = at("2026-11-22T06:00:00Z");
        let p3 = plan(&policy, &after, later).unwrap();
        assert!(p3.items.iter().all(|i| i.period == PeriodKind::Hourly));
        assert_eq!(p3.items.len(), 3);
    }

    #[test]
    fn zfs_fuse_takes_one_by_one() {
        let (_, policy) = setup();
        let zfs = FakeZfs::with_capabilities(crate::zfs::Capabilities::zfs_fuse());
        zfs.apply_fixture("+ tank\n+ tank/off\n+ tank/off/products\n+ tank/vm\n")
            .unwrap();
        let now = at("2026-11-22T05:00:00Z");
        let p = plan(&policy, &listing(&zfs, &policy), now).unwrap();
        zfs.reset_calls();
        let r = execute(&zfs, &policy, &p);
        assert_eq!(r.failures(), 0);
        // tank/off and its one child take the same three names: one
        // `snapshot -r` per name; tank/vm is atomic (three more).
        assert_eq!(p.items.len(), 9);
        let subtrees: Vec<&str> = p.subtrees.iter().map(|s| s.dataset_str()).collect();
        assert_eq!(subtrees, ["tank/off"; 3]);
        assert_eq!(zfs.calls(), 6);
        let names = |d: &str| {
            zfs.list(&crate::zfs::ListSpec::all(vec![
                DatasetName::parse(d).unwrap(),
            ]))
            .unwrap()[0]
                .snapshots()
                .count()
        };
        assert_eq!(names("tank/off/products"), 3);
    }

    #[test]
    fn a_subtree_with_an_excluded_child_is_not_taken_with_r() {
        let (zfs, policy) = setup();
        let p = plan(&policy, &listing(&zfs, &policy), at("2026-11-22T05:00:00Z")).unwrap();
        // tank/off/cache is excluded and tank/off/images takes no hourly.
        assert!(
            p.subtrees.iter().all(|s| s.dataset_str() != "tank/off"),
            "{:?}",
            p.subtrees
        );
        let r = execute(&zfs, &policy, &p);
        assert_eq!(r.failures(), 0);
        let cache = zfs
            .list(&crate::zfs::ListSpec::all(vec![
                DatasetName::parse("tank/off/cache").unwrap(),
            ]))
            .unwrap();
        assert_eq!(cache[0].snapshots().count(), 0);
    }

    #[test]
    fn failing_pre_hook_can_skip_the_entry() {
        let text = format!(
            "{POLICY}\n[dataset.\"tank/vm\".hooks]\npre-snapshot = [\"/bin/false\"]\non-pre-failure = \"skip\"\n"
        );
        let policy = parse_str("p.toml", &text).unwrap();
        let (zfs, _) = setup();
        let now = at("2026-11-22T05:00:00Z");
        let p = plan(&policy, &listing(&zfs, &policy), now).unwrap();
        let r = execute(&zfs, &policy, &p);
        let vm: Vec<&TakeOutcome> = r
            .outcomes
            .iter()
            .filter(|o| o.item.entry.as_str() == "tank/vm")
            .collect();
        assert_eq!(vm.len(), 3);
        assert!(vm.iter().all(|o| {
            o.result
                .as_ref()
                .unwrap_err()
                .contains("pre-snapshot hook failed")
        }));
        assert_eq!(r.failures(), 3);
        assert!(
            r.outcomes
                .iter()
                .filter(|o| o.item.entry.as_str() == "tank/off")
                .all(|o| o.result.is_ok())
        );
    }
}
