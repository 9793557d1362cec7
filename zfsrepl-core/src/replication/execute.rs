//! Running a replication plan: each dataset's steps in order, parents
//! before children, every step a `zfs send` spliced into a `zfs receive`
//! (`stream::Pipeline`). A dataset that fails or has a conflict is reported
//! and its descendants are skipped; the others continue.
//!
//! Safety, in order of the steps:
//! - never `zfs receive -F`: a target is rolled back only where the plan
//!   says so (`force_rollback`, and then only over snapshots zfsrepl owns
//!   and nobody holds), with `zfs rollback -r`;
//! - receive unmounted (`-u`) where ZFS has it, resumable (`-s`) where it
//!   has that; a resume step sends with `zfs send -t TOKEN`;
//! - dangerous properties never take effect on the target. zfsrepl sends
//!   without `-p`/`-R`, and a plain `zfs send` carries no properties (checked
//!   on zfs-fuse: a source with a local `mountpoint` and `sharenfs=on`
//!   arrives with both inherited from the target's parent). Where ZFS has
//!   `receive -o/-x` the receive also says `-x mountpoint -x sharenfs -x
//!   sharesmb -o canmount=noauto` for filesystems; elsewhere (zfs-fuse) a
//!   filesystem created by a full receive gets `canmount=noauto` set right
//!   after it (the documented fixup), so no later `zfs mount -a` mounts a
//!   backup over a live path;
//! - with [`ExecOptions::sync`], after a dataset's transfer succeeded: the
//!   new base is held on both sides, bookmarked on the source where ZFS has
//!   bookmarks, the job's tag is released from the previous base, and older
//!   sync snapshots of this job and target are destroyed on both sides
//!   ([`super::sync::plan_side_cleanup`]). A dataset that fails keeps
//!   everything: its old base stays held;
//! - [`ExecOptions::readonly`] sets `readonly=on` on the target root at the
//!   end.

use std::time::Duration;

use serde::Serialize;

use super::plan::{Action, DatasetPlan, ReplicationPlan, Step, TreeInput};
use super::sync::{SideCleanup, SyncJob, plan_side_cleanup};
use crate::name::{DatasetName, EntityName, SnapshotName, Txg};
use crate::stream::{
    CancelToken, CopyOptions, NoProgress, Pipeline, PipelineError, Progress, SideOutcome,
};
use crate::zfs::{
    Capabilities, DatasetKind, RecvSpec, SendFlags, SendSpec, Version, VersionName, ZfsErrorKind,
    ZfsRead, ZfsResult, ZfsStream, ZfsWrite,
};

/// Properties that must not take effect on a target: they would mount or
/// share a backup where the source is mounted or shared.
pub const EXCLUDED_PROPS: [&str; 3] = ["mountpoint", "sharenfs", "sharesmb"];

/// How the executor runs a plan, beyond the plan itself.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Rate limit, pipe size and progress interval of each step's copy.
    pub copy: CopyOptions,
    /// This job and target: hold the new base, release the previous one,
    /// destroy older sync snapshots after success. `None`: no holds and no
    /// cleanup.
    pub sync: Option<SyncJob>,
    /// Set `readonly=on` on the target root after the run.
    pub readonly: bool,
    /// Ask the source for each step's size first (`zfs send -nvP`, where it
    /// can), for [`ExecProgress::step_started`].
    pub estimate: bool,
}

/// Progress of a run: the byte counts of [`Progress`], plus the start of
/// each step.
pub trait ExecProgress: Progress {
    /// A step starts; `estimate` is the stream size ZFS predicted, where it
    /// could.
    fn step_started(
        &self,
        source: &DatasetName,
        target: &DatasetName,
        step: &Step,
        estimate: Option<u64>,
    ) {
        let _ = (source, target, step, estimate);
    }
}

impl ExecProgress for NoProgress {}

/// Adapts a byte-progress closure.
#[derive(Debug, Clone, Copy)]
pub struct BytesOnly<F>(pub F);

impl<F: Fn(u64, Duration)> Progress for BytesOnly<F> {
    fn update(&self, bytes: u64, elapsed: Duration) {
        (self.0)(bytes, elapsed);
    }
}

impl<F: Fn(u64, Duration)> ExecProgress for BytesOnly<F> {}

/// How one dataset went.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetOutcome {
    /// The source dataset.
    pub source: DatasetName,
    /// The target dataset.
    pub target: DatasetName,
    /// Steps completed.
    pub steps_done: usize,
    /// Bytes moved.
    pub bytes: u64,
    /// `None` when everything asked was done; otherwise why not.
    pub error: Option<String>,
    /// Old sync snapshots and bookmarks destroyed after success (both
    /// sides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleaned: Vec<String>,
    /// What went wrong after the transfer succeeded (holds, cleanup,
    /// property fixups): the data arrived, but look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecReport {
    /// One outcome per planned dataset.
    pub datasets: Vec<DatasetOutcome>,
    /// Run-level warnings (the `readonly` setting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ExecReport {
    /// How many datasets failed or were skipped.
    #[must_use]
    pub fn failures(&self) -> usize {
        self.datasets.iter().filter(|d| d.error.is_some()).count()
    }

    /// Total bytes moved.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.datasets.iter().map(|d| d.bytes).sum()
    }
}

/// Runs `plan`, made from `input`: `src` sends, `dst` receives.
pub fn execute<S, D>(
    src: &S,
    dst: &D,
    input: &TreeInput,
    plan: &ReplicationPlan,
    opts: &ExecOptions,
    progress: &dyn ExecProgress,
    cancel: &CancelToken,
) -> ExecReport
where
    S: ZfsRead + ZfsStream + ZfsWrite + ?Sized,
    D: ZfsRead + ZfsStream + ZfsWrite + ?Sized,
{
    let mut report = ExecReport::default();
    let mut failed: Vec<DatasetName> = Vec::new();
    // Per side, the cleanups of the datasets that succeeded, run together
    // at the end: one `zfs hold` and one `zfs release` per side however
    // many datasets (one by one only where a batch fails).
    let (mut src_todo, mut dst_todo) = (Vec::new(), Vec::new());
    for dp in &plan.datasets {
        let mut out = DatasetOutcome {
            source: dp.source.clone(),
            target: dp.target.clone(),
            steps_done: 0,
            bytes: 0,
            error: None,
            cleaned: Vec::new(),
            warnings: Vec::new(),
        };
        if let Some(parent) = failed.iter().find(|f| dp.source.is_within(f)) {
            out.error = Some(format!("skipped: {parent} failed"));
            failed.push(dp.source.clone());
            report.datasets.push(out);
            continue;
        }
        let kind = input
            .source
            .iter()
            .find(|d| d.name == dp.source)
            .map_or(DatasetKind::Filesystem, |d| d.kind);
        match run_dataset(src, dst, dp, kind, opts, progress, cancel, &mut out) {
            Ok(()) => {
                if let Some(job) = &opts.sync
                    && let Some((s, d)) = plan_cleanup(src, input, dp, job, &mut out)
                        .or_else(|| plan_base_holds(input, dp))
                {
                    src_todo.push((report.datasets.len(), s));
                    dst_todo.push((report.datasets.len(), d));
                }
            }
            Err(e) => {
                out.error = Some(e);
                failed.push(dp.source.clone());
            }
        }
        report.datasets.push(out);
    }
    if let Some(job) = &opts.sync {
        // Crash points (tests only, `crate::failpoint`): between the
        // receives and the holds, and between each side's holds, releases
        // and destroys. A run cut at any of them is mended by the next.
        crate::failpoint::hit("repl-received");
        run_side(src, "source", &job.hold_tag(), &src_todo, &mut report);
        run_side(dst, "target", &job.hold_tag(), &dst_todo, &mut report);
    }
    if opts.readonly {
        let root_ok = report
            .datasets
            .iter()
            .find(|d| d.target == plan.target_root)
            .is_some_and(|d| d.error.is_none());
        if root_ok
            && let Err(e) = dst.set_props(
                &EntityName::Dataset(plan.target_root.clone()),
                &[("readonly".into(), "on".into())],
            )
        {
            report.warnings.push(format!("readonly=on: {e}"));
        }
    }
    report
}

/// The receive of one step: unmounted and resumable where ZFS can, and
/// with the dangerous properties excluded where it can do that.
fn recv_spec(target: &DatasetName, kind: DatasetKind, caps: &Capabilities) -> RecvSpec {
    let fs_props = caps.recv_props && kind == DatasetKind::Filesystem;
    RecvSpec {
        target: Some(target.clone()),
        unmounted: caps.recv_unmounted,
        resumable: caps.resumable,
        exclude_props: if fs_props {
            EXCLUDED_PROPS.iter().map(|p| (*p).to_owned()).collect()
        } else {
            Vec::new()
        },
        set_props: if fs_props {
            vec![("canmount".into(), "noauto".into())]
        } else {
            Vec::new()
        },
        ..RecvSpec::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn run_dataset<S, D>(
    src: &S,
    dst: &D,
    dp: &DatasetPlan,
    kind: DatasetKind,
    opts: &ExecOptions,
    progress: &dyn ExecProgress,
    cancel: &CancelToken,
    out: &mut DatasetOutcome,
) -> Result<(), String>
where
    S: ZfsRead + ZfsStream + ?Sized,
    D: ZfsRead + ZfsStream + ZfsWrite + ?Sized,
{
    if let Action::Conflict(c) = &dp.action {
        return Err(c.to_string());
    }
    if dp.discard_partial_receive {
        dst.receive_abort(&dp.target).map_err(|e| e.to_string())?;
    }
    if let Some(rb) = &dp.rollback {
        dst.rollback(&rb.to, true).map_err(|e| e.to_string())?;
    }
    let dst_caps = dst.capabilities().clone();
    let mut created = false;
    for step in dp.steps() {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let spec = SendSpec {
            source: step.send_source(),
            flags: SendFlags::default(),
        };
        let estimate = if opts.estimate {
            src.send_estimate(&spec).ok().flatten()
        } else {
            None
        };
        progress.step_started(&dp.source, &dp.target, step, estimate);
        // The receiver first: a receiver that cannot start (a lost link, a
        // busy target) then costs no `zfs send`. An aborted `zfs send -I`
        // is not free: on zfs-fuse it leaves its temporary holds behind
        // even when it ends by itself on its closed pipe (finding 9). A
        // receiver aborted before any byte reached it leaves nothing.
        let recv = dst
            .receive(&recv_spec(&dp.target, kind, &dst_caps))
            .map_err(|e| e.to_string())?;
        let send = match src.send(&spec) {
            Ok(s) => s,
            Err(e) => {
                crate::zfs::RecvSink::abort(recv);
                return Err(e.to_string());
            }
        };
        let outcome = Pipeline::run(send, recv, &opts.copy, progress, cancel);
        let early_end = matches!(outcome.recv, SideOutcome::Completed)
            && outcome
                .cause
                .as_ref()
                .is_some_and(PipelineError::is_broken_pipe);
        let moved = outcome.stats.bytes;
        let bytes = match outcome.into_result() {
            Ok(s) => s.bytes,
            // The receiver said it was done before the sender was: landed
            // if the snapshot is there (counted as done, so that the holds
            // move with it), failed otherwise.
            Err(e) if early_end && landed(dst, &dp.target, step) => {
                out.warnings.push(format!(
                    "{step}: the receiver completed before the stream ended ({e}); \
                     {} is on the target",
                    step.to
                ));
                moved
            }
            Err(e) => return Err(format!("{step}: {e}")),
        };
        out.bytes += bytes;
        out.steps_done += 1;
        created |= step.from.is_none();
    }
    if created && kind == DatasetKind::Filesystem && !dst_caps.recv_props {
        // The fixup where `receive -o canmount=noauto` does not exist.
        if let Err(e) = dst.set_props(
            &EntityName::Dataset(dp.target.clone()),
            &[("canmount".into(), "noauto".into())],
        ) {
            out.warnings.push(format!("canmount=noauto: {e}"));
        }
    }
    Ok(())
}

/// Whether `target` has the step's `to` snapshot (by guid).
fn landed<D: ZfsRead + ?Sized>(dst: &D, target: &DatasetName, step: &Step) -> bool {
    let spec = crate::zfs::ListSpec {
        recursive: false,
        ..crate::zfs::ListSpec::all(vec![target.clone()])
    };
    dst.list(&spec).is_ok_and(|l| {
        l.iter()
            .filter(|d| &d.name == target)
            .flat_map(|d| d.snapshots())
            .any(|v| v.guid == step.to_guid)
    })
}

/// The snapshots a step put on the target (by source version): `to`, and
/// with `-I` every source snapshot after `from` up to `to`.
fn transferred<'a>(step: &Step, source: &'a [Version]) -> Vec<&'a Version> {
    let to_txg = source
        .iter()
        .find(|v| v.guid == step.to_guid && !v.name.is_bookmark())
        .map(|v| v.createtxg);
    let from_txg = step
        .from_guid
        .and_then(|g| source.iter().find(|v| v.guid == g).map(|v| v.createtxg));
    source
        .iter()
        .filter(|v| !v.name.is_bookmark())
        .filter(|v| match (step.intermediates, from_txg, to_txg) {
            (true, Some(f), Some(t)) => v.createtxg > f && v.createtxg <= t,
            _ => v.guid == step.to_guid,
        })
        .collect()
}

/// The target's versions after the run: what it had, less what a rollback
/// destroyed, plus what the steps transferred (unheld).
fn target_after(input: &TreeInput, dp: &DatasetPlan, source: &[Version]) -> Vec<Version> {
    let destroyed: Vec<&SnapshotName> =
        dp.rollback.iter().flat_map(|r| r.destroys.iter()).collect();
    let mut out: Vec<Version> = input
        .target
        .iter()
        .find(|d| d.name == dp.target)
        .map(|d| {
            d.snapshots()
                .filter(|v| !destroyed.iter().any(|x| x.as_str() == v.name.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for step in dp.steps() {
        for v in transferred(step, source) {
            if out.iter().any(|t| t.guid == v.guid) {
                continue;
            }
            if let Ok(name) = dp.target.snapshot(v.name.short()) {
                out.push(Version {
                    name: VersionName::Snapshot(name),
                    guid: v.guid,
                    createtxg: Txg(0),
                    creation: v.creation,
                    used: None,
                    userrefs: Some(0),
                });
            }
        }
    }
    out
}

/// The cleanup of both sides after a dataset's successful transfer (and
/// the bookmark of the new base, made right away); `None` without steps.
fn plan_cleanup<S>(
    src: &S,
    input: &TreeInput,
    dp: &DatasetPlan,
    job: &SyncJob,
    out: &mut DatasetOutcome,
) -> Option<(SideCleanup, SideCleanup)>
where
    S: ZfsRead + ZfsWrite + ?Sized,
{
    let (first, last) = (dp.steps().first()?, dp.steps().last()?);
    let new_base = last.to.snap().to_owned();
    let previous = first
        .from
        .as_ref()
        .filter(|f| !f.is_bookmark())
        .map(|f| f.short().to_owned());
    let source: Vec<Version> = input
        .source
        .iter()
        .find(|d| d.name == dp.source)
        .map(|d| d.versions.clone())
        .unwrap_or_default();
    let mut src_plan = plan_side_cleanup(job, &source, &new_base, previous.as_deref());
    let target: &[Version] = input
        .target
        .iter()
        .find(|d| d.name == dp.target)
        .map_or(&[], |d| d.versions.as_slice());
    let mut dst_plan = plan_side_cleanup(
        job,
        &target_after(input, dp, &source),
        &new_base,
        previous.as_deref(),
    );
    // Strays of ours, released from every held snapshot but the new base
    // ("no such tag" where a hold is someone else's is fine):
    // - on the target, which is the job's alone, always: a run cut between
    //   the hold of its new base and the release of the old one leaves no
    //   other trace;
    // - on the source too when the previous base is unheld on the target:
    //   an earlier run was cut after its receive and before its holds.
    let cut = previous.as_deref().is_some_and(|p| {
        target
            .iter()
            .any(|v| !v.name.is_bookmark() && v.name.short() == p && v.userrefs == Some(0))
    });
    let mut sides = vec![(&mut dst_plan, target)];
    if cut {
        sides.push((&mut src_plan, source.as_slice()));
    }
    {
        for (plan, versions) in sides {
            for v in versions {
                if let VersionName::Snapshot(snap) = &v.name
                    && v.userrefs.is_some_and(|n| n > 0)
                    && snap.snap() != new_base
                    && !plan.release.contains(snap)
                {
                    plan.release.push(snap.clone());
                }
            }
        }
    }
    // A bookmark of the new base keeps it a usable incremental source
    // even if the snapshot goes (only for our own sync snapshots).
    if src.capabilities().bookmarks
        && job.owns(&new_base)
        && let (Ok(bm), Some(snap)) = (dp.source.bookmark(&new_base), &src_plan.hold)
        && let Err(e) = src.bookmark(snap, &bm)
        && e.kind != ZfsErrorKind::AlreadyExists
    {
        out.warnings.push(e.to_string());
    }
    Some((src_plan, dst_plan))
}

/// Repairs the holds of an up-to-date dataset whose last run was cut
/// after its receive but before its holds (a daemon killed at that point,
/// or a receive that zfs-fuse completed after its client was killed): the
/// next run finds nothing to send, so nothing else would move the job's
/// hold from the old base to the common one.
///
/// The evidence is a common base (the target's newest snapshot and the
/// source snapshot with its guid) that nothing holds on one side or the
/// other (`userrefs` 0): a completed run always leaves the job's hold on
/// both. Then, on both sides, the base is held with the job's tag (a tag
/// already there is fine) and the tag is released from every other held
/// snapshot of the dataset (where it is not, "no such tag" is fine): the
/// tag belongs to this job and target and marks only its base. Without the
/// evidence nothing is done, so a steady no-op run costs no `zfs hold`.
fn plan_base_holds(input: &TreeInput, dp: &DatasetPlan) -> Option<(SideCleanup, SideCleanup)> {
    if !matches!(dp.action, Action::UpToDate) {
        return None;
    }
    let target = input.target.iter().find(|d| d.name == dp.target)?;
    let newest = target.snapshots().max_by_key(|v| v.createtxg)?;
    let source = input.source.iter().find(|d| d.name == dp.source)?;
    let base = source.snapshots().find(|v| v.guid == newest.guid)?;
    let cut = base.userrefs == Some(0) || newest.userrefs == Some(0);
    // The target is the job's alone: a hold there on anything but the base
    // is one a cut run failed to release (the release lost after the hold
    // was made, say), whatever the source shows.
    let stray = target
        .snapshots()
        .any(|v| v.guid != newest.guid && v.userrefs.is_some_and(|n| n > 0));
    if !cut && !stray {
        return None;
    }
    let side = |all: &mut dyn Iterator<Item = &Version>, base: &Version| {
        let snap = |v: &Version| match &v.name {
            VersionName::Snapshot(s) => Some(s.clone()),
            VersionName::Bookmark(_) => None,
        };
        SideCleanup {
            hold: if base.userrefs == Some(0) || cut {
                snap(base)
            } else {
                None
            },
            release: all
                .filter(|v| v.guid != base.guid && v.userrefs.is_some_and(|n| n > 0))
                .filter_map(snap)
                .collect(),
            ..SideCleanup::default()
        }
    };
    let src = if cut {
        side(&mut source.snapshots(), base)
    } else {
        SideCleanup::default()
    };
    Some((src, side(&mut target.snapshots(), newest)))
}

/// Runs `op` on all of `snaps` at once, and one by one where the batch
/// fails (`zfs hold`/`release` are all-or-nothing); errors of kind
/// `ignore` are expected (a tag already there, or not there).
fn batch<Z: ?Sized>(
    z: &Z,
    snaps: &[SnapshotName],
    ignore: ZfsErrorKind,
    op: impl Fn(&Z, &[SnapshotName]) -> ZfsResult<()>,
    warnings: &mut Vec<String>,
) {
    if snaps.is_empty() || op(z, snaps).is_ok() {
        return;
    }
    for s in snaps {
        if let Err(e) = op(z, std::slice::from_ref(s))
            && e.kind != ignore
        {
            warnings.push(e.to_string());
        }
    }
}

/// One side's cleanup for every dataset that succeeded: hold the new bases
/// first, then release the tag from the old ones, then destroy.
fn run_side<Z: ZfsRead + ZfsWrite + ?Sized>(
    z: &Z,
    side: &str,
    tag: &str,
    todo: &[(usize, SideCleanup)],
    report: &mut ExecReport,
) {
    if todo.is_empty() {
        return;
    }
    if z.capabilities().holds {
        let holds: Vec<SnapshotName> = todo.iter().filter_map(|(_, c)| c.hold.clone()).collect();
        let releases: Vec<SnapshotName> = todo
            .iter()
            .flat_map(|(_, c)| c.release.iter().cloned())
            .collect();
        let w = &mut report.warnings;
        batch(
            z,
            &holds,
            ZfsErrorKind::AlreadyExists,
            |z, s| z.hold(tag, s),
            w,
        );
        crate::failpoint::hit(&format!("repl-{side}-held"));
        batch(
            z,
            &releases,
            ZfsErrorKind::NotFound,
            |z, s| z.release(tag, s),
            w,
        );
        crate::failpoint::hit(&format!("repl-{side}-released"));
    }
    let destroys: Vec<SnapshotName> = todo
        .iter()
        .flat_map(|(_, c)| c.destroy.iter().cloned())
        .collect();
    let owner = |name: &str| {
        todo.iter()
            .find(|(_, c)| {
                c.destroy.iter().any(|s| s.as_str() == name)
                    || c.destroy_bookmarks.iter().any(|b| b.as_str() == name)
            })
            .map(|(i, _)| *i)
    };
    for (name, r) in z.destroy_snapshots(&destroys) {
        if let Some(d) = owner(name.as_str()).and_then(|i| report.datasets.get_mut(i)) {
            match r {
                Ok(()) => d.cleaned.push(name.to_string()),
                Err(e) => d.warnings.push(e.to_string()),
            }
        }
    }
    for b in todo.iter().flat_map(|(_, c)| c.destroy_bookmarks.iter()) {
        let r = z.destroy_bookmark(b);
        if let Some(d) = owner(b.as_str()).and_then(|i| report.datasets.get_mut(i)) {
            match r {
                Ok(()) => d.cleaned.push(b.to_string()),
                Err(e) => d.warnings.push(e.to_string()),
            }
        }
    }
}
