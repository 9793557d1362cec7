//! The rules `zfs receive` applies to each snapshot record before it
//! touches the target, in OpenZFS's order (libzfs's checks first, then the
//! kernel's `recv_begin_check_existing_impl`), with their messages.
//!
//! The outcome is a [`Plan`]: what applying the record will do.

use crate::name::DatasetName;
use crate::zfs::{RecvSpec, ZfsErrorKind as K, ZfsResult};

use super::state::{State, err, snap_name};
use super::stream::SnapBegin;

/// What receiving one snapshot record does to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The target already has this snapshot (same name and guid): libzfs
    /// consumes the record and ignores it ("snap already exists;
    /// ignoring"), so an `-I` stream may overlap what the target has.
    Skip,
    /// A full stream creates the target.
    Create,
    /// A full stream with `-F` replaces an existing target that has no
    /// snapshots.
    Overwrite,
    /// An incremental stream applies on top of the base; with `-F`, the
    /// snapshots after the base are destroyed first (short names).
    Incremental { destroy: Vec<String> },
    /// A resumed stream completes the partial receive held by the target.
    Resume,
}

/// Decides how a record applies to `target`, or why it cannot.
///
/// `resuming`: the stream is a `zfs send -t` stream.
pub(crate) fn check(
    state: &State,
    spec: &RecvSpec,
    op: &str,
    target: &DatasetName,
    rec: &SnapBegin,
    resuming: bool,
) -> ZfsResult<Plan> {
    if resuming {
        return check_resume(state, op, target, rec);
    }
    match rec.fromguid {
        None => check_full(state, spec, op, target),
        Some(_) => check_incremental(state, spec, op, target, rec),
    }
}

fn check_full(state: &State, spec: &RecvSpec, op: &str, target: &DatasetName) -> ZfsResult<Plan> {
    let what = "cannot receive new filesystem stream";
    let Some(t) = state.get(target) else {
        let Some(parent) = target.parent() else {
            return Err(err(
                op,
                K::NotFound,
                format!("{what}: destination '{target}' does not exist"),
            ));
        };
        // With -d, libzfs creates the missing parents below the given
        // target; otherwise the parent must exist and be a filesystem.
        let creates_parents =
            spec.discard_path && spec.target.as_ref().is_some_and(|t| parent.is_within(t));
        if state.get(&parent).is_none() && !creates_parents {
            return Err(err(
                op,
                K::NotFound,
                format!(
                    "cannot open '{parent}': dataset does not exist\n{what}: parent of '{target}' does not exist"
                ),
            ));
        }
        if let Some(vol) = state.below_volume(&parent) {
            return Err(err(
                op,
                K::InvalidArgument,
                format!("{what}: parent '{vol}' is not a filesystem"),
            ));
        }
        return Ok(Plan::Create);
    };
    // An existing target is overwritten only with -F, and only when that
    // loses no snapshot and breaks no clone relationship: libzfs refuses
    // before the kernel is asked.
    if !spec.force {
        return Err(err(
            op,
            K::TargetExists,
            format!("{what}: destination '{target}' exists\nmust specify -F to overwrite it"),
        ));
    }
    if let Some(s) = t.snaps.first() {
        return Err(err(
            op,
            K::TargetExists,
            format!(
                "{what}: destination has snapshots (eg. {})\nmust destroy them to overwrite it",
                snap_name(target, &s.name)
            ),
        ));
    }
    if t.origin.is_some() {
        return Err(err(
            op,
            K::TargetExists,
            format!("{what}: destination '{target}' is a clone\nmust destroy it to overwrite it"),
        ));
    }
    if t.partial.is_some() {
        return Err(pending(op, what, target));
    }
    Ok(Plan::Overwrite)
}

/// The kernel's EBUSY for a target holding a partial receive.
fn pending(op: &str, what: &str, target: &DatasetName) -> crate::zfs::ZfsError {
    err(
        op,
        K::ResumablePending,
        format!(
            "{what}: destination {target} contains partially-complete state from \"zfs receive -s\"."
        ),
    )
}

fn check_incremental(
    state: &State,
    spec: &RecvSpec,
    op: &str,
    target: &DatasetName,
    rec: &SnapBegin,
) -> ZfsResult<Plan> {
    let what = "cannot receive incremental stream";
    let fromguid = rec.fromguid.expect("incremental");
    let Some(t) = state.get(target) else {
        return Err(err(
            op,
            K::NotFound,
            format!("{what}: destination '{target}' does not exist"),
        ));
    };
    // A partial receive must be resumed or aborted (`zfs receive -A`)
    // before anything else is received.
    if t.partial.is_some() {
        return Err(pending(op, what, target));
    }
    // The new snapshot's name must be free; when it is taken by the very
    // snapshot being sent, libzfs skips the record instead.
    let short = rec.toname.snap();
    if let Some(existing) = t.snap(short) {
        if existing.guid == rec.toguid {
            return Ok(Plan::Skip);
        }
        return Err(err(
            op,
            K::AlreadyExists,
            format!(
                "cannot restore to {}: destination already exists",
                snap_name(target, short)
            ),
        ));
    }
    // The base is found by guid among the target's snapshots (bookmarks do
    // not count: the data must be there).
    let Some(bi) = t.snaps.iter().position(|s| s.guid == fromguid) else {
        return Err(err(
            op,
            K::MissingBase,
            format!("{what}: most recent snapshot of {target} does not\nmatch incremental source"),
        ));
    };
    let newer: Vec<String> = t.snaps[bi + 1..].iter().map(|s| s.name.clone()).collect();
    if !spec.force {
        // Without -F the stream must apply to exactly the target's current
        // data: no newer snapshot (the model is stricter than the kernel
        // here, which accepts newer snapshots that hold no changes), and no
        // change since the most recent snapshot.
        if let Some(first) = newer.first() {
            return Err(err(
                op,
                K::TargetHasNewerSnapshots,
                format!(
                    "{what}: destination has snapshots (eg. {})\nmust destroy them to overwrite it",
                    snap_name(target, first)
                ),
            ));
        }
        if t.modified {
            return Err(err(
                op,
                K::TargetModified,
                format!(
                    "{what}: destination {target} has been modified\nsince most recent snapshot"
                ),
            ));
        }
        return Ok(Plan::Incremental { destroy: newer });
    }
    // With -F the target is rolled back to the base, destroying the newer
    // snapshots, which fails like destroying them would.
    for n in &newer {
        let full = snap_name(target, n);
        let deps = state.dependents(&full);
        if !deps.is_empty() {
            return Err(err(
                op,
                K::HasClones,
                format!(
                    "{what}: cannot destroy '{full}': snapshot has dependent clones\nuse '-R' to destroy the following datasets:\n{}",
                    deps.join("\n")
                ),
            ));
        }
        if state.snap(&full).is_some_and(|s| !s.holds.is_empty()) {
            return Err(err(
                op,
                K::Held,
                format!("cannot destroy snapshot {full}: dataset is busy"),
            ));
        }
    }
    Ok(Plan::Incremental { destroy: newer })
}

fn check_resume(state: &State, op: &str, target: &DatasetName, rec: &SnapBegin) -> ZfsResult<Plan> {
    let what = "cannot receive resume stream";
    let Some(t) = state.get(target) else {
        return Err(err(
            op,
            K::NotFound,
            format!("{what}: destination '{target}' does not exist"),
        ));
    };
    let Some(p) = &t.partial else {
        return Err(err(
            op,
            K::ResumeTokenInvalid,
            format!("{what}: destination {target} has no partially received state to resume"),
        ));
    };
    // The resumed stream must continue exactly where the partial one
    // stopped: same snapshot, same base, same offset.
    if p.begin.toguid != rec.toguid
        || p.begin.fromguid != rec.fromguid
        || p.bytes != rec.resume_offset
    {
        return Err(err(
            op,
            K::ResumeTokenInvalid,
            format!(
                "{what}: the stream does not continue the partial receive in {target} (it has {} bytes of guid {}; the stream starts at byte {} of guid {})",
                p.bytes, p.begin.toguid, rec.resume_offset, rec.toguid
            ),
        ));
    }
    if let Some(g) = p.begin.fromguid
        && !t.snaps.iter().any(|s| s.guid == g)
    {
        return Err(err(
            op,
            K::MissingBase,
            format!("{what}: most recent snapshot of {target} does not\nmatch incremental source"),
        ));
    }
    Ok(Plan::Resume)
}
