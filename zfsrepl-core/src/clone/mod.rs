//! Staging clones: writable clones of (usually replicated) snapshots,
//! refreshed atomically from newer snapshots.
//!
//! A [`CloneSpec`] names source datasets and their clones, and which
//! snapshot to clone: the newest, the newest matching a pattern, or the
//! newest common to every source (so that, say, products and images are
//! cloned from the same point in time). [`plan`] is pure: from the sources'
//! snapshots and the datasets already at the clones' names it decides, per
//! clone, up to date / create / replace, and which leftovers of earlier runs
//! to clean up — or refuses, with the reason, when a dataset in the way was
//! not made by zfsrepl for this spec. [`execute`] runs a plan: clone under a
//! temporary name (`<clone>.zfsrepl-new`, unmounted), pre-swap hook, unmount
//! the old clone and rename it aside (`<clone>.zfsrepl-old-<unix time>`),
//! rename the new one into place and mount it, export properties, post-swap
//! hook, destroy the old clone once nothing holds it (else a later run
//! retries). A failure before the swap is complete leaves the previous
//! clones serving. [`execute_with`] adds steps before and after the swap
//! (the policy's exports, mounts and proxies: `crate::target`).
//!
//! Clones are swapped unmounted because renaming a mounted dataset
//! remounts it, which fails while anything holds it, and zfs-fuse refuses
//! it outright ("dataset is busy").
//!
//! The snapshots clones come from are pinned ([`clone_origins`]): pruning
//! keeps them with a reason, and [`stale_origins`] finds clones whose
//! origin is older than their section's `stale-after` (for `zfsrepl
//! check`).
//!
//! Ownership is a user property, [`OWNER_PROP`] = the spec's name, set on
//! every clone zfsrepl creates; a dataset without it is never renamed or
//! destroyed.

mod execute;
mod origins;
mod plan;

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used)]
mod tests;

pub use execute::{CloneHooks, CloneReport, execute, execute_with, list_for, refresh};
pub use origins::{StaleOrigin, clone_origins, list_policy_clones, stale_origins};
pub use plan::{
    CloneInput, CloneItem, ClonePair, ClonePlan, CloneSpec, ItemAction, NEW_SUFFIX, OLD_MARK,
    OWNER_PROP, Selector, SpecError, aside_name, plan, temp_name,
};
