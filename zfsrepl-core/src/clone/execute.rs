//! Running a clone-refresh plan: clone every new snapshot under its
//! temporary name, run the pre-swap hook, swap all the clones into place
//! (undoing the swaps already made if one fails), set the export
//! properties, run the post-swap hook, then destroy the old clones.
//!
//! Until the swap, a failure destroys only the temporary clones this run
//! made, and the current clones keep serving. An old clone that cannot be
//! destroyed yet (busy, still exported, has children) is left under its
//! aside name and cleaned up by a later refresh. Every destroy is
//! non-recursive and of a dataset the plan found (or this run made) with
//! [`OWNER_PROP`](super::OWNER_PROP) set to the spec's name.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::plan::{ClonePlan, CloneSpec, ItemAction, OWNER_PROP};
use crate::hooks::{self, HookContext, HookKind, HookOutcome};
use crate::name::{DatasetName, EntityName};
use crate::zfs::{Dataset, ListSpec, ZfsErrorKind, ZfsRead, ZfsResult, ZfsWrite};

/// The hooks of a refresh (argv, no shell).
#[derive(Debug, Clone, Default)]
pub struct CloneHooks {
    /// Run once the new clones exist under their temporary names; a failure
    /// abandons the refresh (the old clones keep serving).
    pub pre_swap: Option<Vec<String>>,
    /// Run once the new clones are in place; a failure is reported.
    pub post_swap: Option<Vec<String>>,
    /// Time limit per hook run.
    pub timeout: Duration,
}

/// What a refresh did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CloneReport {
    /// The spec.
    pub spec: String,
    /// Clones now in place from a new snapshot.
    pub swapped: Vec<DatasetName>,
    /// Old clones and leftovers destroyed.
    pub destroyed: Vec<DatasetName>,
    /// Ours, not destroyed yet (busy...), with why: a later run retries.
    pub left_behind: Vec<(DatasetName, String)>,
    /// Hook runs: (`pre-swap` or `post-swap`, outcome).
    pub hooks: Vec<(String, HookOutcome)>,
    /// Why the refresh did not complete (the previous clones then serve).
    pub error: Option<String>,
}

impl CloneReport {
    /// True when the refresh completed (old clones left behind are not a
    /// failure: they are retried).
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

fn ent(d: &DatasetName) -> EntityName {
    EntityName::Dataset(d.clone())
}

/// Runs `plan` (made from `spec`) against `zfs`.
pub fn execute<Z: ZfsWrite + ?Sized>(
    zfs: &Z,
    spec: &CloneSpec,
    plan: &ClonePlan,
    hooks: &CloneHooks,
) -> CloneReport {
    execute_with(zfs, spec, plan, hooks, &mut |_| None, &mut |_| None)
}

/// Like [`execute`], with steps around the swap (each returns an error
/// message when what it ran failed):
///
/// - `before_swap(replaced)`, after the pre-swap hook, with the clones
///   about to be renamed aside (only when there are some): e.g. withdraw
///   their NFS exports, which would make the rename fail. A failure
///   abandons the refresh.
/// - `after_swap(in_place)`, once the new clones are in place with their
///   export properties, before the post-swap hook and before the old clones
///   are destroyed: e.g. export them again, reload a proxy. A failure is
///   reported; the new clones stay.
///
/// When the refresh is abandoned after `before_swap` ran, `after_swap` is
/// called with the same clones (the previous ones, in place again), so
/// whatever was withdrawn serves again.
pub fn execute_with<Z: ZfsWrite + ?Sized>(
    zfs: &Z,
    spec: &CloneSpec,
    plan: &ClonePlan,
    hooks: &CloneHooks,
    before_swap: &mut dyn FnMut(&[DatasetName]) -> Option<String>,
    after_swap: &mut dyn FnMut(&[DatasetName]) -> Option<String>,
) -> CloneReport {
    let mut report = CloneReport {
        spec: plan.spec.clone(),
        ..CloneReport::default()
    };
    if let Some(why) = &plan.refused {
        report.error = Some(why.clone());
        return report;
    }
    // Leftovers first: a temporary name must be free before cloning to it.
    for d in &plan.cleanup {
        destroy(zfs, d, &mut report);
    }
    let work: Vec<_> = plan
        .items
        .iter()
        .filter_map(|i| i.action.temp().map(|t| (i, t)))
        .collect();
    if work.is_empty() {
        return report;
    }
    // The new clones are made unmounted and mounted once in place; the old
    // ones are unmounted before they move aside. Renaming a mounted
    // dataset remounts it, which fails while anything holds it (and
    // zfs-fuse refuses to rename a mounted dataset at all: "dataset is
    // busy").
    let user_mountpoint = spec
        .properties
        .iter()
        .find(|(k, _)| k == "mountpoint")
        .map(|(_, v)| v.clone());
    let mut props = spec.properties.clone();
    props.retain(|(k, _)| k != OWNER_PROP && k != "mountpoint");
    props.push((OWNER_PROP.to_owned(), spec.name.clone()));
    props.push(("mountpoint".to_owned(), "none".to_owned()));
    let unmount =
        |d: &DatasetName| zfs.set_props(&ent(d), &[("mountpoint".to_owned(), "none".to_owned())]);
    let mount = |d: &DatasetName| match &user_mountpoint {
        Some(m) => zfs.set_props(&ent(d), &[("mountpoint".to_owned(), m.clone())]),
        None => zfs.inherit(&ent(d), "mountpoint"),
    };

    // 1. The new clones, under their temporary names.
    let mut made: Vec<&DatasetName> = Vec::new();
    for &(item, temp) in &work {
        if let Err(e) = zfs.clone_snapshot(&item.snapshot, temp, &props) {
            report.error = Some(format!(
                "cloning {} to {temp}: {e}; the current clones keep serving",
                item.snapshot
            ));
            undo_temps(zfs, &made, &mut report);
            return report;
        }
        made.push(temp);
    }
    let cx = HookContext {
        targets: work.iter().map(|(i, _)| i.clone.to_string()).collect(),
        snapshots: work.iter().map(|(i, _)| i.snapshot.clone()).collect(),
        periods: Vec::new(),
        pre_failed: false,
    };

    // 2. The pre-swap hook may still call the refresh off.
    if let Some(argv) = &hooks.pre_swap {
        let out = hooks::run(argv, HookKind::PreSwap, &cx, hooks.timeout);
        let ok = out.is_ok();
        report.hooks.push(("pre-swap".into(), out));
        if !ok {
            report.error = Some("the pre-swap hook failed; the current clones keep serving".into());
            undo_temps(zfs, &made, &mut report);
            return report;
        }
    }

    // 3. What must let go of the clones about to be renamed.
    let replaced: Vec<DatasetName> = work
        .iter()
        .filter(|(i, _)| matches!(i.action, ItemAction::Replace { .. }))
        .map(|(i, _)| i.clone.clone())
        .collect();
    if !replaced.is_empty()
        && let Some(e) = before_swap(&replaced)
    {
        let restore = after_swap(&replaced);
        report.error = Some(format!(
            "before the swap: {e}; the current clones keep serving{}",
            restore.map_or_else(String::new, |r| format!(" (restoring them: {r})"))
        ));
        undo_temps(zfs, &made, &mut report);
        return report;
    }

    // 4. The swap: every clone or none. Per clone: unmount the old one and
    // move it aside, move the new one into place, mount it; each step
    // undone if a later one fails.
    let mut swapped: Vec<usize> = Vec::new();
    for (k, &(item, temp)) in work.iter().enumerate() {
        let aside = match &item.action {
            ItemAction::Replace { aside, .. } => Some(aside),
            _ => None,
        };
        let cur = &item.clone;
        let result = (|| {
            if let Some(a) = aside {
                unmount(cur).map_err(|e| format!("unmounting {cur} before the swap: {e}"))?;
                if let Err(e) = zfs.rename(&ent(cur), &ent(a)) {
                    let _ = mount(cur);
                    return Err(format!("moving {cur} aside to {a}: {e}"));
                }
            }
            let put_back = || {
                if let Some(a) = aside {
                    let _ = zfs.rename(&ent(a), &ent(cur));
                    let _ = mount(cur);
                }
            };
            if let Err(e) = zfs.rename(&ent(temp), &ent(cur)) {
                put_back();
                return Err(format!("renaming {temp} to {cur}: {e}"));
            }
            if let Err(e) = mount(cur) {
                let _ = unmount(cur);
                let _ = zfs.rename(&ent(cur), &ent(temp));
                put_back();
                return Err(format!("mounting {cur}: {e}"));
            }
            Ok(())
        })();
        if let Err(why) = result {
            // Undo the swaps already made, newest first.
            for &j in swapped.iter().rev() {
                let (it, t) = work[j];
                let _ = unmount(&it.clone);
                let _ = zfs.rename(&ent(&it.clone), &ent(t));
                if let ItemAction::Replace { aside, .. } = &it.action {
                    let _ = zfs.rename(&ent(aside), &ent(&it.clone));
                    let _ = mount(&it.clone);
                }
            }
            let restore = if replaced.is_empty() {
                None
            } else {
                after_swap(&replaced)
            };
            report.error = Some(format!(
                "{why}; the previous clones keep serving{}",
                restore.map_or_else(String::new, |r| format!(" (restoring them: {r})"))
            ));
            undo_temps(zfs, &made, &mut report);
            return report;
        }
        swapped.push(k);
    }
    report.swapped = work.iter().map(|(i, _)| i.clone.clone()).collect();

    // 5. Export properties on the clones in place.
    if !spec.export_properties.is_empty() {
        for (item, _) in &work {
            if let Err(e) = zfs.set_props(&ent(&item.clone), &spec.export_properties) {
                report.error = Some(format!(
                    "{} is in place but its export properties were not set: {e}",
                    item.clone
                ));
            }
        }
    }

    // 6. What the swap implies elsewhere (exports, mounts, proxies).
    if let Some(e) = after_swap(&report.swapped)
        && report.error.is_none()
    {
        report.error = Some(format!("{e} (the new clones are in place)"));
    }

    // 7. The post-swap hook.
    if let Some(argv) = &hooks.post_swap {
        let out = hooks::run(argv, HookKind::PostSwap, &cx, hooks.timeout);
        if !out.is_ok() && report.error.is_none() {
            report.error = Some("the post-swap hook failed (the new clones are in place)".into());
        }
        report.hooks.push(("post-swap".into(), out));
    }

    // 8. The old clones, when nothing uses them any more.
    for (item, _) in &work {
        if let ItemAction::Replace { aside, .. } = &item.action {
            destroy(zfs, aside, &mut report);
        }
    }
    report
}

fn undo_temps<Z: ZfsWrite + ?Sized>(zfs: &Z, made: &[&DatasetName], report: &mut CloneReport) {
    for t in made {
        destroy(zfs, t, report);
    }
}

fn destroy<Z: ZfsWrite + ?Sized>(zfs: &Z, d: &DatasetName, report: &mut CloneReport) {
    match zfs.destroy_dataset(d, false) {
        Ok(()) => report.destroyed.push(d.clone()),
        Err(e) => report.left_behind.push((d.clone(), e.to_string())),
    }
}

/// Lists what [`plan`](super::plan) needs: the sources with their
/// snapshots (one listing per source; a missing source is left out, and the
/// plan then says so) and every dataset under the clones' parents with
/// [`OWNER_PROP`].
///
/// # Errors
/// A listing that failed for another reason than a missing dataset.
pub fn list_for<Z: ZfsRead + ?Sized>(
    zfs: &Z,
    spec: &CloneSpec,
) -> ZfsResult<(Vec<Dataset>, Vec<Dataset>)> {
    let mut sources = Vec::new();
    for pair in &spec.pairs {
        let ls = ListSpec {
            roots: vec![pair.source.clone()],
            recursive: false,
            snapshots: true,
            bookmarks: false,
            user_props: Vec::new(),
        };
        match zfs.list(&ls) {
            Ok(mut d) => sources.append(&mut d),
            Err(e) if e.kind == ZfsErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let mut parents: Vec<DatasetName> =
        spec.pairs.iter().filter_map(|p| p.clone.parent()).collect();
    parents.sort();
    parents.dedup();
    let mut existing: Vec<Dataset> = Vec::new();
    for parent in parents {
        let ls = ListSpec {
            roots: vec![parent],
            recursive: true,
            snapshots: false,
            bookmarks: false,
            user_props: vec![OWNER_PROP.to_owned()],
        };
        match zfs.list(&ls) {
            Ok(d) => existing.extend(d),
            Err(e) if e.kind == ZfsErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    existing.sort_by(|a, b| a.name.cmp(&b.name));
    existing.dedup_by(|a, b| a.name == b.name);
    Ok((sources, existing))
}

/// Lists, plans and (unless `dry_run`) runs one refresh at `now`.
///
/// # Errors
/// When listing fails; everything after that is in the plan or report.
pub fn refresh<Z: ZfsRead + ZfsWrite + ?Sized>(
    zfs: &Z,
    spec: &CloneSpec,
    hooks: &CloneHooks,
    now: Timestamp,
    dry_run: bool,
) -> ZfsResult<(ClonePlan, Option<CloneReport>)> {
    let (sources, existing) = list_for(zfs, spec)?;
    let plan = super::plan(&super::CloneInput {
        spec,
        sources: &sources,
        existing: &existing,
        now,
    });
    let report = (!dry_run).then(|| execute(zfs, spec, &plan, hooks));
    Ok((plan, report))
}
