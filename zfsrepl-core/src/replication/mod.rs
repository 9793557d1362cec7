//! Replication planning, pure and I/O-free: which `zfs send | zfs receive`
//! steps bring a target up to date with its source, or why none can.
//!
//! - [`diff`]: the common base of two version lists, matched by guid
//!   ([`diff::incremental_path`]), and [`Conflict`], the reasons replication
//!   is blocked, as values that list both sides' versions;
//! - [`plan`]: [`plan_dataset`] and [`plan_tree`] turn listings, a
//!   [`ReplicationPolicy`] and the [`Capabilities`](crate::Capabilities) of
//!   the hosts into a serializable [`DatasetPlan`] / [`ReplicationPlan`]
//!   for `--dry-run --json` and for the executor;
//! - [`gather`]: the planner's input read from both sides (listings,
//!   modified targets, decoded resume tokens);
//! - [`sync`]: sync-snapshot names, hold tags and the pure cleanup plan;
//! - [`execute`]: running a plan safely, then holding and cleaning up.
//!
//! The algorithm, the conflict cases and the invariants the tests check are
//! in `docs/design/replication.md`.
//!
//! ```
//! use zfsrepl_core::replication::{plan_dataset, Action, DatasetPlanInput, ReplicationPolicy};
//! use zfsrepl_core::{Capabilities, DatasetName, Guid, Txg, Version, VersionName};
//!
//! let src = DatasetName::parse("tank/data")?;
//! let snap = |ds: &DatasetName, name: &str, n: u64| -> Result<Version, zfsrepl_core::NameError> {
//!     Ok(Version {
//!         name: VersionName::Snapshot(ds.snapshot(name)?),
//!         guid: Guid(n),
//!         createtxg: Txg(n),
//!         creation: 0,
//!         used: None,
//!         userrefs: None,
//!     })
//! };
//! let input = DatasetPlanInput {
//!     source: src.clone(),
//!     target: DatasetName::parse("backup/data")?,
//!     source_versions: vec![snap(&src, "a", 1)?, snap(&src, "b", 2)?],
//!     target_versions: None,
//!     resume_token: None,
//!     target_modified: false,
//! };
//! let plan = plan_dataset(&input, &ReplicationPolicy::default(), &Capabilities::openzfs());
//! assert_eq!(plan.steps().len(), 1); // one full send of the newest snapshot
//! assert_eq!(plan.steps()[0].to.as_str(), "tank/data@b");
//! # Ok::<(), zfsrepl_core::NameError>(())
//! ```

pub mod diff;
pub mod execute;
pub mod gather;
pub mod plan;
pub mod sync;

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used)]
mod exec_tests;
#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;

pub use diff::{Conflict, Incremental, incremental_path};
pub use plan::{
    Action, DatasetPlan, DatasetPlanInput, InitialPolicy, Note, OWNED_PREFIX, ReplicationPlan,
    ReplicationPolicy, ResumeToken, ResumeTokenInfo, Rollback, SYNC_PREFIX, SnapshotFilter, Step,
    TreeInput, plan_dataset, plan_tree, sync_snapshot_prefix,
};
pub use sync::{SideCleanup, SyncJob, plan_side_cleanup, sanitize_component};
