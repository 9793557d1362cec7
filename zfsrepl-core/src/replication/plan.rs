//! The replication planner: from both sides' versions, the policy and the
//! capabilities, the exact sends to run ([`plan_dataset`], [`plan_tree`]).
//! Pure: no I/O; the executor runs what it returns.
//!
//! The algorithm is described in `docs/design/replication.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::diff::{self, Conflict};
use crate::name::{DatasetName, Guid, SnapshotName};
use crate::zfs::{Capabilities, Dataset, SendSource, Version, VersionName};

/// The prefix of every snapshot name zfsrepl creates; the default for
/// [`ReplicationPolicy::owned_prefixes`].
pub const OWNED_PREFIX: &str = "zfsrepl_";

/// The prefix of the sync snapshots the executor takes on the source before
/// replicating: `zfsrepl_sync_<job>_<target>_<time>`.
pub const SYNC_PREFIX: &str = "zfsrepl_sync_";

/// The sync-snapshot prefix of one job and target,
/// `zfsrepl_sync_<job>_<target>_`, with both sanitised (see
/// [`super::sync::SyncJob`] and [`ReplicationPolicy::sync_prefix`]).
#[must_use]
pub fn sync_snapshot_prefix(job: &str, target: &str) -> String {
    super::sync::SyncJob::new(job, target).prefix()
}

/// What to do when the target dataset does not exist yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitialPolicy {
    /// One full send of the newest (included) snapshot.
    #[default]
    MostRecent,
    /// A full send of the oldest included snapshot, then incrementals up to
    /// the newest: the target gets the whole history the source still has.
    AllOldestFirst,
    /// Plan a [`Conflict::InitialRefused`] instead.
    Fail,
}

/// Which source snapshots to transfer, by the short name after `@`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotFilter {
    /// Every snapshot.
    #[default]
    All,
    /// Only snapshots whose name starts with one of these prefixes.
    Prefixes(Vec<String>),
    /// Every snapshot except those whose name starts with one of these.
    Exclude(Vec<String>),
}

impl SnapshotFilter {
    /// Whether a snapshot named `short` (the part after `@`) passes.
    #[must_use]
    pub fn includes(&self, short: &str) -> bool {
        match self {
            Self::All => true,
            Self::Prefixes(p) => p.iter().any(|p| short.starts_with(p.as_str())),
            Self::Exclude(p) => !p.iter().any(|p| short.starts_with(p.as_str())),
        }
    }
}

/// How one job replicates. Build it with [`Default`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReplicationPolicy {
    /// What to send when the target does not exist.
    pub initial: InitialPolicy,
    /// Which source snapshots to transfer. Excluded snapshots are never
    /// sent, so `-I` never spans one: a range with an excluded snapshot
    /// inside is split into `-i` steps.
    pub snapshot_filter: SnapshotFilter,
    /// Send runs of consecutive snapshots as one `zfs send -I` stream;
    /// otherwise one `-i` step per snapshot (the same snapshots arrive).
    pub use_intermediates: bool,
    /// Allow rolling the target back to the common snapshot: when it
    /// diverged (only if every target-only snapshot is owned and unheld) or
    /// was modified since its latest snapshot. Off by default: zfsrepl never
    /// destroys target data unless told to.
    pub force_rollback: bool,
    /// Snapshot-name prefixes zfsrepl owns (default `zfsrepl_`; add
    /// `autosnap_` when sanoid's snapshots are managed here).
    pub owned_prefixes: Vec<String>,
    /// This job's and target's sync-snapshot prefix
    /// ([`sync_snapshot_prefix`]). Snapshots starting with [`SYNC_PREFIX`]
    /// belong to one job and target: those with this prefix are always
    /// sent, whatever the filter; other targets' are never sent (so they do
    /// not pile up on targets that do not prune them).
    pub sync_prefix: Option<String>,
}

impl Default for ReplicationPolicy {
    fn default() -> Self {
        Self {
            initial: InitialPolicy::MostRecent,
            snapshot_filter: SnapshotFilter::All,
            use_intermediates: true,
            force_rollback: false,
            owned_prefixes: vec![OWNED_PREFIX.to_owned()],
            sync_prefix: None,
        }
    }
}

impl ReplicationPolicy {
    /// Whether the source snapshot named `short` is to be transferred.
    #[must_use]
    pub fn includes(&self, short: &str) -> bool {
        if short.starts_with(SYNC_PREFIX) {
            return self
                .sync_prefix
                .as_deref()
                .is_some_and(|p| short.starts_with(p));
        }
        self.snapshot_filter.includes(short)
    }

    /// Whether zfsrepl owns the snapshot named `short`.
    #[must_use]
    pub fn owns(&self, short: &str) -> bool {
        self.owned_prefixes
            .iter()
            .any(|p| short.starts_with(p.as_str()))
    }
}

/// What a target's `receive_resume_token` says, decoded by the caller
/// ([`crate::zfs::resume::decode_resume_token`]; the planner does not parse tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeTokenInfo {
    /// The base of the interrupted stream (`fromguid`); `None` for a full
    /// stream.
    pub from_guid: Option<Guid>,
    /// The snapshot the interrupted stream was creating (`toguid`).
    pub to_guid: Guid,
}

/// A target's partial-receive state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeToken {
    /// The `receive_resume_token` property as ZFS prints it.
    pub token: String,
    /// Its decoded content; `None` when the caller could not decode it
    /// (the partial state is then discarded, with a [`Note`]).
    pub decoded: Option<ResumeTokenInfo>,
}

/// Everything the planner needs to know about one source/target pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetPlanInput {
    /// The source dataset.
    pub source: DatasetName,
    /// The target dataset.
    pub target: DatasetName,
    /// The source's snapshots and bookmarks, in any order.
    pub source_versions: Vec<Version>,
    /// The target's snapshots and bookmarks (bookmarks are ignored), or
    /// `None` when the target dataset does not exist.
    pub target_versions: Option<Vec<Version>>,
    /// The target's partial receive, if any.
    pub resume_token: Option<ResumeToken>,
    /// The target was written to since its latest snapshot (its `written`
    /// property is not 0).
    pub target_modified: bool,
}

/// One `zfs send | zfs receive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The incremental base on the source (a snapshot or a bookmark);
    /// `None` for a full send.
    pub from: Option<VersionName>,
    /// The base's guid: the target's newest snapshot must have it when the
    /// step runs.
    pub from_guid: Option<Guid>,
    /// The source snapshot the target has after this step.
    pub to: SnapshotName,
    /// Its guid.
    pub to_guid: Guid,
    /// `-I`: every source snapshot between `from` and `to` is sent too.
    pub intermediates: bool,
    /// Resume an interrupted receive with this token (`zfs send -t`)
    /// instead of starting a new stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
}

impl Step {
    /// What `zfs send` is asked to send.
    #[must_use]
    pub fn send_source(&self) -> SendSource {
        match (&self.resume_token, &self.from) {
            (Some(token), _) => SendSource::Resume {
                token: token.clone(),
            },
            (None, None) => SendSource::Full {
                snapshot: self.to.clone(),
            },
            (None, Some(from)) => SendSource::Incremental {
                from: from.clone(),
                to: self.to.clone(),
                intermediates: self.intermediates,
            },
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.resume_token.is_some() {
            f.write_str("resume ")?;
        }
        match &self.from {
            None => write!(f, "full {}", self.to),
            Some(from) => {
                let flag = if self.intermediates { "-I" } else { "-i" };
                write!(f, "{flag} {from} {}", self.to)
            }
        }
    }
}

/// What the plan does with a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing to send.
    UpToDate,
    /// Run these steps in order.
    Steps(Vec<Step>),
    /// Replication is blocked until someone resolves this.
    Conflict(Conflict),
}

/// A `zfs rollback -r` of the target before the steps run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// The target snapshot to roll back to (the common base).
    pub to: SnapshotName,
    /// The target snapshots the rollback destroys (all owned by zfsrepl).
    pub destroys: Vec<SnapshotName>,
}

/// Something the plan did differently from the obvious, so `--dry-run`
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum Note {
    /// A source bookmark would have been the incremental base, but
    /// bookmarks cannot be used here.
    BookmarkBaseUnsupported {
        /// The bookmark.
        bookmark: VersionName,
    },
    /// The target has a resume token but this pair of hosts cannot resume:
    /// the partial receive is discarded (`zfs receive -A`).
    ResumeUnsupported,
    /// The resume token was not decoded by the caller: the partial receive
    /// is discarded.
    ResumeTokenUndecoded,
    /// The resume token no longer applies (its snapshot or base is gone from
    /// the source, or the target moved on): the partial receive is
    /// discarded.
    ResumeTokenStale {
        /// The token's decoded content.
        info: ResumeTokenInfo,
    },
    /// `force-rollback` is set, but the rollback would destroy snapshots
    /// zfsrepl does not own, or held ones; the conflict stands.
    RollbackRefused {
        /// Target-only snapshots without an owned prefix.
        foreign: Vec<SnapshotName>,
        /// Target-only snapshots with user holds.
        held: Vec<SnapshotName>,
    },
    /// Source snapshots newer than the base that the filter leaves out.
    Excluded {
        /// The snapshots, oldest first.
        snapshots: Vec<SnapshotName>,
    },
}

/// The plan for one source/target pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetPlan {
    /// The source dataset.
    pub source: DatasetName,
    /// The target dataset.
    pub target: DatasetName,
    /// What to do.
    pub action: Action,
    /// Roll the target back first (`zfs rollback -r`), when the policy
    /// allows and the target diverged or was modified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// Discard the target's partial receive first (`zfs receive -A`).
    #[serde(default)]
    pub discard_partial_receive: bool,
    /// The target's parent does not exist yet and is created by this run's
    /// initial replication of that dataset: run this plan after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_on: Option<DatasetName>,
    /// Fallbacks and skipped items worth showing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

impl DatasetPlan {
    /// The steps, empty unless the action is [`Action::Steps`].
    #[must_use]
    pub fn steps(&self) -> &[Step] {
        match &self.action {
            Action::Steps(s) => s,
            _ => &[],
        }
    }

    /// The conflict, when the action is one.
    #[must_use]
    pub fn conflict(&self) -> Option<&Conflict> {
        match &self.action {
            Action::Conflict(c) => Some(c),
            _ => None,
        }
    }

    /// True when the executor has nothing at all to do.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        matches!(self.action, Action::UpToDate)
            && self.rollback.is_none()
            && !self.discard_partial_receive
    }
}

/// A source snapshot with its name as a [`SnapshotName`].
#[derive(Clone, Copy)]
struct Snap<'a> {
    v: &'a Version,
    name: &'a SnapshotName,
}

fn as_snap(v: &Version) -> Option<Snap<'_>> {
    match &v.name {
        VersionName::Snapshot(name) => Some(Snap { v, name }),
        VersionName::Bookmark(_) => None,
    }
}

fn snaps(versions: &[Version]) -> Vec<Snap<'_>> {
    versions.iter().filter_map(as_snap).collect()
}

fn full(to: Snap<'_>) -> Step {
    Step {
        from: None,
        from_guid: None,
        to: to.name.clone(),
        to_guid: to.v.guid,
        intermediates: false,
        resume_token: None,
    }
}

fn incremental(from: &Version, to: Snap<'_>, intermediates: bool) -> Step {
    Step {
        from: Some(from.name.clone()),
        from_guid: Some(from.guid),
        to: to.name.clone(),
        to_guid: to.v.guid,
        intermediates,
        resume_token: None,
    }
}

/// The fewest steps from `base` that transfer exactly the included
/// snapshots among `newer` (source snapshots after `base`, oldest first).
///
/// Included snapshots fall into runs separated by excluded ones. `-I`
/// transfers every snapshot in its range, so it never crosses an excluded
/// one, and it cannot start at a bookmark (ZFS refuses). A run directly
/// after a snapshot base is one `-I` step; a run after a gap (or after a
/// bookmark base) needs a `-i` onto its first snapshot, then one `-I` to its
/// last.
fn incremental_steps(base: &Version, newer: &[Snap<'_>], policy: &ReplicationPolicy) -> Vec<Step> {
    // (an excluded snapshot precedes the run, the run)
    let mut runs: Vec<(bool, Vec<Snap<'_>>)> = Vec::new();
    let mut gap = false;
    let mut open = false;
    for s in newer {
        if policy.includes(s.name.snap()) {
            if !open {
                runs.push((gap, Vec::new()));
                open = true;
                gap = false;
            }
            if let Some((_, run)) = runs.last_mut() {
                run.push(*s);
            }
        } else {
            open = false;
            gap = true;
        }
    }
    let mut steps = Vec::new();
    let mut cur = base;
    for (gap, run) in runs {
        let (Some(&first), Some(&last)) = (run.first(), run.last()) else {
            continue;
        };
        if !policy.use_intermediates {
            for s in &run {
                steps.push(incremental(cur, *s, false));
                cur = s.v;
            }
            continue;
        }
        if run.len() == 1 {
            steps.push(incremental(cur, first, false));
        } else if !gap && !cur.name.is_bookmark() {
            steps.push(incremental(cur, last, true));
        } else {
            steps.push(incremental(cur, first, false));
            steps.push(incremental(first.v, last, run.len() > 2));
        }
        cur = last.v;
    }
    steps
}

fn excluded_note(newer: &[Snap<'_>], policy: &ReplicationPolicy) -> Option<Note> {
    let snapshots: Vec<SnapshotName> = newer
        .iter()
        .filter(|s| !policy.includes(s.name.snap()))
        .map(|s| s.name.clone())
        .collect();
    (!snapshots.is_empty()).then_some(Note::Excluded { snapshots })
}

/// The snapshots after `v` in the sorted `source` (other than `v`'s own
/// guid, so that a bookmark base is not followed by its own snapshot).
fn after<'a>(source: &'a [Version], v: &Version) -> Vec<Snap<'a>> {
    let pos = source
        .iter()
        .position(|s| s.name == v.name)
        .map_or(source.len(), |i| i + 1);
    snaps(&source[pos..])
        .into_iter()
        .filter(|s| s.v.guid != v.guid)
        .collect()
}

/// The step that resumes a target's partial receive, and the snapshot it
/// delivers; or, as a note, why the token cannot be used. ZFS resumes only
/// onto the state the stream started from: no snapshot for a full stream,
/// otherwise the target's newest snapshot as the base.
fn plan_resume(
    token: &ResumeToken,
    source: &[Version],
    target: Option<&[Version]>,
    caps: &Capabilities,
) -> Result<(Step, Version), Note> {
    if !caps.resumable {
        return Err(Note::ResumeUnsupported);
    }
    let Some(info) = token.decoded else {
        return Err(Note::ResumeTokenUndecoded);
    };
    let stale = Note::ResumeTokenStale { info };
    let Some(to) = source
        .iter()
        .filter_map(as_snap)
        .find(|s| s.v.guid == info.to_guid)
    else {
        return Err(stale);
    };
    let target_newest = target.and_then(<[Version]>::last);
    let from = match info.from_guid {
        // A full stream: only onto a target without snapshots.
        None if target_newest.is_none() => None,
        None => return Err(stale),
        // An incremental: its base must be the target's newest snapshot and
        // still exist on the source, older than `to`.
        Some(g) => {
            if target_newest.map(|t| t.guid) != Some(g) {
                return Err(stale);
            }
            let from = source
                .iter()
                .filter(|v| v.guid == g)
                .max_by_key(|v| !v.name.is_bookmark());
            match from {
                Some(f) if f.createtxg < to.v.createtxg => Some(f),
                _ => return Err(stale),
            }
        }
    };
    let step = Step {
        from: from.map(|f| f.name.clone()),
        from_guid: from.map(|f| f.guid),
        to: to.name.clone(),
        to_guid: to.v.guid,
        intermediates: false,
        resume_token: Some(token.token.clone()),
    };
    Ok((step, to.v.clone()))
}

/// Plans the replication of one dataset. Never fails: what blocks it is a
/// [`Conflict`] in the returned plan's action.
///
/// `caps` are the capabilities of the pair: `bookmarks` those of the source
/// (a bookmark base only needs `zfs send -i #mark`), `resumable` both sides
/// (`zfs send -t` on the source, `zfs receive -s` on the target).
#[must_use]
pub fn plan_dataset(
    input: &DatasetPlanInput,
    policy: &ReplicationPolicy,
    caps: &Capabilities,
) -> DatasetPlan {
    let mut plan = DatasetPlan {
        source: input.source.clone(),
        target: input.target.clone(),
        action: Action::UpToDate,
        rollback: None,
        discard_partial_receive: false,
        blocked_on: None,
        notes: Vec::new(),
    };
    let source: Vec<Version> = if caps.bookmarks {
        diff::sorted(&input.source_versions)
    } else {
        diff::sorted_snapshots(&input.source_versions)
    };
    let mut target = input.target_versions.as_deref().map(diff::sorted_snapshots);
    let mut resume = None;
    if let Some(token) = &input.resume_token {
        match plan_resume(token, &source, target.as_deref(), caps) {
            Ok(r) => resume = Some(r),
            Err(note) => {
                plan.notes.push(note);
                plan.discard_partial_receive = true;
                // An interrupted full receive leaves only the partial
                // dataset, which `zfs receive -A` destroys.
                if target.as_ref().is_some_and(Vec::is_empty) {
                    target = None;
                }
            }
        }
    }
    plan.action = match target {
        None => plan_initial(&source, resume, policy, &mut plan.notes),
        Some(target) => plan_incremental(input, &source, &target, resume, policy, caps, &mut plan),
    };
    plan
}

fn plan_initial(
    source: &[Version],
    resume: Option<(Step, Version)>,
    policy: &ReplicationPolicy,
    notes: &mut Vec<Note>,
) -> Action {
    if let Some((step, to)) = resume {
        let newer = after(source, &to);
        notes.extend(excluded_note(&newer, policy));
        let mut steps = vec![step];
        steps.extend(incremental_steps(&to, &newer, policy));
        return Action::Steps(steps);
    }
    let all = snaps(source);
    let included: Vec<Snap<'_>> = all
        .iter()
        .copied()
        .filter(|s| policy.includes(s.name.snap()))
        .collect();
    let (Some(&oldest), Some(&newest)) = (included.first(), included.last()) else {
        return Action::Conflict(Conflict::NoSourceSnapshots);
    };
    match policy.initial {
        InitialPolicy::Fail => Action::Conflict(Conflict::InitialRefused {
            source: source.to_vec(),
        }),
        InitialPolicy::MostRecent => Action::Steps(vec![full(newest)]),
        InitialPolicy::AllOldestFirst => {
            let newer = after(source, oldest.v);
            notes.extend(excluded_note(&newer, policy));
            let mut steps = vec![full(oldest)];
            steps.extend(incremental_steps(oldest.v, &newer, policy));
            Action::Steps(steps)
        }
    }
}

fn plan_incremental(
    input: &DatasetPlanInput,
    source: &[Version],
    target: &[Version],
    resume: Option<(Step, Version)>,
    policy: &ReplicationPolicy,
    caps: &Capabilities,
    plan: &mut DatasetPlan,
) -> Action {
    if !caps.bookmarks {
        // Say so when a source bookmark would have been a better base.
        if let Ok(cb) = diff::common_base(&input.source_versions, target)
            && cb.source.name.is_bookmark()
        {
            plan.notes.push(Note::BookmarkBaseUnsupported {
                bookmark: cb.source.name,
            });
        }
    }
    // Where the incremental steps start, what the target already gets
    // before them (a resumed stream), and the target's latest snapshot.
    let (base, mut steps, common) = if target.is_empty() {
        // Only a resumed full stream may land on a target without
        // snapshots; anything else would overwrite it.
        let Some((step, to)) = resume else {
            return Action::Conflict(Conflict::NoCommonBase {
                source: source.to_vec(),
                target: Vec::new(),
            });
        };
        (to, vec![step], None)
    } else {
        let cb = match diff::common_base(source, target) {
            Ok(cb) => cb,
            Err(c) => return Action::Conflict(c),
        };
        if !cb.target_newer.is_empty() {
            match diverged_rollback(&cb, policy) {
                Ok(rb) => plan.rollback = Some(rb),
                Err(note) => {
                    plan.notes.extend(note);
                    return Action::Conflict(Conflict::TargetDiverged {
                        common: Box::new(cb.source),
                        source_only: cb.source_newer,
                        target_only: cb.target_newer,
                    });
                }
            }
        }
        match resume {
            Some((step, to)) => (to, vec![step], Some(cb.target)),
            None => (cb.source, Vec::new(), Some(cb.target)),
        }
    };
    let newer = after(source, &base);
    plan.notes.extend(excluded_note(&newer, policy));
    steps.extend(incremental_steps(&base, &newer, policy));
    if steps.is_empty() {
        return Action::UpToDate;
    }
    // A modified target refuses an incremental receive: roll it back to its
    // latest snapshot if the policy allows, otherwise that is the conflict.
    if input.target_modified
        && plan.rollback.is_none()
        && let Some(common) = common
    {
        let Some(latest) = as_snap(&common).filter(|_| policy.force_rollback) else {
            return Action::Conflict(Conflict::TargetModified {
                common: Box::new(common),
            });
        };
        plan.rollback = Some(Rollback {
            to: latest.name.clone(),
            destroys: Vec::new(),
        });
    }
    Action::Steps(steps)
}

/// The rollback that resolves a diverged target, or why there is none (the
/// note is `None` when the policy does not allow rollbacks at all).
fn diverged_rollback(
    cb: &diff::CommonBase,
    policy: &ReplicationPolicy,
) -> Result<Rollback, Option<Note>> {
    if !policy.force_rollback {
        return Err(None);
    }
    let Some(to) = as_snap(&cb.target) else {
        return Err(None);
    };
    let only = snaps(&cb.target_newer);
    let foreign: Vec<SnapshotName> = only
        .iter()
        .filter(|s| !policy.owns(s.name.snap()))
        .map(|s| s.name.clone())
        .collect();
    let held: Vec<SnapshotName> = only
        .iter()
        .filter(|s| s.v.userrefs.unwrap_or(0) > 0)
        .map(|s| s.name.clone())
        .collect();
    if !foreign.is_empty() || !held.is_empty() {
        return Err(Some(Note::RollbackRefused { foreign, held }));
    }
    Ok(Rollback {
        to: to.name.clone(),
        destroys: only.iter().map(|s| s.name.clone()).collect(),
    })
}

/// A recursive replication: a source subtree onto a target subtree, each as
/// listed (one listing per root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeInput {
    /// The root of the source subtree.
    pub source_root: DatasetName,
    /// Where `source_root` lands on the target.
    pub target_root: DatasetName,
    /// The source datasets to replicate (the root and descendants, with
    /// their versions).
    pub source: Vec<Dataset>,
    /// The target datasets that exist under `target_root` (with versions).
    pub target: Vec<Dataset>,
    /// Target datasets modified since their latest snapshot.
    pub target_modified: BTreeSet<DatasetName>,
    /// Decoded resume tokens, by target dataset (for the targets whose
    /// listing has a `receive_resume_token`).
    pub resume_tokens: BTreeMap<DatasetName, ResumeTokenInfo>,
}

/// The plan for a tree: one [`DatasetPlan`] per source dataset, parents
/// before children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationPlan {
    /// The source root.
    pub source_root: DatasetName,
    /// The target root.
    pub target_root: DatasetName,
    /// Per dataset, in name order (a parent precedes its children).
    pub datasets: Vec<DatasetPlan>,
    /// Source datasets with no valid target name (outside the source root,
    /// or the mapped name is too long); not replicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmapped: Vec<DatasetName>,
}

/// Plans a recursive replication, mapping names with
/// [`DatasetName::rebase`].
///
/// Conflicts stay per dataset: the others are planned as usual. The one
/// dependency is existence: a target whose parent does not exist can only be
/// received after the parent's initial replication (`blocked_on`); if no plan
/// of this run creates that parent, the dataset gets
/// [`Conflict::ParentMissing`].
#[must_use]
pub fn plan_tree(
    input: &TreeInput,
    policy: &ReplicationPolicy,
    caps: &Capabilities,
) -> ReplicationPlan {
    let targets: BTreeMap<&DatasetName, &Dataset> =
        input.target.iter().map(|d| (&d.name, d)).collect();
    let mut sources: Vec<&Dataset> = input.source.iter().collect();
    // A parent's name is a prefix of its children's, so name order puts
    // parents first.
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = ReplicationPlan {
        source_root: input.source_root.clone(),
        target_root: input.target_root.clone(),
        datasets: Vec::with_capacity(sources.len()),
        unmapped: Vec::new(),
    };
    // Targets that do not exist but are created by this run, and targets
    // that exist but are removed (a discarded partial full receive).
    let mut created: BTreeSet<DatasetName> = BTreeSet::new();
    let mut removed: BTreeSet<DatasetName> = BTreeSet::new();
    for src in sources {
        let Some(target_name) = src.name.rebase(&input.source_root, &input.target_root) else {
            out.unmapped.push(src.name.clone());
            continue;
        };
        let existing = targets.get(&target_name);
        let dataset_input = DatasetPlanInput {
            source: src.name.clone(),
            target: target_name.clone(),
            source_versions: src.versions.clone(),
            target_versions: existing.map(|t| t.versions.clone()),
            resume_token: existing.and_then(|t| {
                t.receive_resume_token.as_ref().map(|token| ResumeToken {
                    token: token.clone(),
                    decoded: input.resume_tokens.get(&target_name).copied(),
                })
            }),
            target_modified: input.target_modified.contains(&target_name),
        };
        let mut plan = plan_dataset(&dataset_input, policy, caps);
        let will_exist = existing.is_some() && !plan_destroys_target(&plan, existing);
        if !will_exist
            && src.name != input.source_root
            && let Some(parent) = target_name.parent()
        {
            let parent_stays = targets.contains_key(&parent) && !removed.contains(&parent);
            if created.contains(&parent) {
                plan.blocked_on = Some(parent);
            } else if !parent_stays && matches!(plan.action, Action::Steps(_)) {
                plan.action = Action::Conflict(Conflict::ParentMissing { parent });
            }
        }
        if existing.is_some() && !will_exist {
            removed.insert(target_name.clone());
        }
        if !will_exist && matches!(plan.action, Action::Steps(_)) {
            created.insert(target_name);
        }
        out.datasets.push(plan);
    }
    out
}

/// Whether the plan starts by removing the target dataset itself (discarding
/// an interrupted full receive, whose partial dataset is all there is).
fn plan_destroys_target(plan: &DatasetPlan, existing: Option<&&Dataset>) -> bool {
    plan.discard_partial_receive && existing.is_some_and(|t| t.snapshots().next().is_none())
}
