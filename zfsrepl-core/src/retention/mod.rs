//! Pure retention planning: snapshots + rules + `now` -> keep or destroy,
//! with reasons for every snapshot.
//!
//! - [`plan`] takes the listing ([`SnapshotInfo`]), the [`KeepRule`]s,
//!   the [`Ownership`] rule, the guids replication still needs, and `now`
//!   (unix seconds), and returns a [`PrunePlan`]: one [`Decision`] per
//!   snapshot with its [`Reason`]s; `Serialize` for `--json`, `Display` for
//!   a table.
//! - Combining (zrepl's `PruneSnapshots`): only owned snapshots are
//!   candidates; a candidate is destroyed only if no rule keeps it and it
//!   is neither held nor protected. No rules means nothing is destroyed.
//!   Each dataset is judged on its own.
//! - [`KeepRule::SanoidCounts`] reproduces sanoid 2.1's pruning exactly
//!   (see [`sanoid`]); [`KeepRule::Grid`] is zrepl's retention grid
//!   ([`RetentionGrid`], grammar in [`grid`]); [`KeepRule::LastN`] and
//!   [`KeepRule::Regex`] are zrepl's `last_n` and `regex`.
//!
//! Properties the tests check: the destroy set is a subset of the owned,
//! unheld, unprotected candidates; input order does not matter; adding a
//! rule to a non-empty rule list never destroys more; and re-planning at
//! the same `now` after destroying the planned snapshots destroys nothing
//! (for every rule, including sanoid's count floor and the grid, whose
//! anchor is always kept for exactly this reason).
//!
//! ```
//! use zfsrepl_core::retention::{plan, KeepRule, Ownership, SanoidCounts, SnapshotInfo};
//! use zfsrepl_core::{Guid, SnapshotName, Txg};
//!
//! let now = 1_800_000_000;
//! let snaps: Vec<SnapshotInfo> = (0..40)
//!     .map(|h| SnapshotInfo {
//!         name: SnapshotName::parse(&format!("tank/data@autosnap_{h:02}_hourly")).unwrap(),
//!         guid: Guid(1000 + h),
//!         createtxg: Txg(h),
//!         creation: now - (40 - h as i64) * 3600,
//!         userrefs: Some(0),
//!     })
//!     .collect();
//! let rules = [KeepRule::SanoidCounts(SanoidCounts::production())];
//! let p = plan(&snaps, &rules, &Ownership::new("zfsrepl_").with_sanoid_chain(true), &[], now);
//! // 40 hourlies, 4 of them older than 36 h: sanoid destroys those, oldest first.
//! let gone: Vec<&str> = p.destroy().map(|s| s.snap()).collect();
//! assert_eq!(gone, ["autosnap_00_hourly", "autosnap_01_hourly", "autosnap_02_hourly", "autosnap_03_hourly"]);
//! ```

pub mod grid;
mod plan;
pub mod prune;
mod rules;
pub mod sanoid;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use grid::{GridError, GridInterval, GridKeep, IntervalProblem, RetentionGrid};
pub use plan::{Action, Decision, PrunePlan, Reason, plan};
pub use regex::Regex;
pub use rules::KeepRule;
pub use sanoid::{Period, SanoidCounts, SanoidVerdict};

use crate::name::{Guid, SnapshotName, Txg};
use crate::zfs::{Version, VersionName};

/// What the planner needs to know about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its name.
    pub name: SnapshotName,
    /// Its guid (what `protected` refers to).
    pub guid: Guid,
    /// Its creation txg: breaks ties between equal creation times.
    pub createtxg: Txg,
    /// The ZFS `creation` property, seconds since the epoch. Ages come from
    /// here, never from the name.
    pub creation: i64,
    /// The number of user holds; `Some(n > 0)` protects it.
    pub userrefs: Option<u64>,
}

impl SnapshotInfo {
    /// The snapshot's info from a listed version; `None` for bookmarks.
    #[must_use]
    pub fn from_version(v: &Version) -> Option<Self> {
        match &v.name {
            VersionName::Snapshot(name) => Some(Self {
                name: name.clone(),
                guid: v.guid,
                createtxg: v.createtxg,
                creation: v.creation,
                userrefs: v.userrefs,
            }),
            VersionName::Bookmark(_) => None,
        }
    }
}

/// Which snapshots the planner may ever destroy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ownership {
    /// Our snapshots' short names start with this (`zfsrepl_`).
    pub prefix: String,
    /// Also own sanoid's snapshots: short names starting with `autosnap`
    /// and ending with `ly` ([`sanoid::is_sanoid_name`]). Set when taking
    /// over a sanoid chain.
    pub sanoid_chain: bool,
}

impl Ownership {
    /// Owns names starting with `prefix`, and not sanoid's.
    #[must_use]
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            sanoid_chain: false,
        }
    }

    /// Also owns (or no longer owns) sanoid's snapshots.
    #[must_use]
    pub fn with_sanoid_chain(mut self, sanoid_chain: bool) -> Self {
        self.sanoid_chain = sanoid_chain;
        self
    }

    /// True when the snapshot with this short name (after `@`) is ours.
    #[must_use]
    pub fn owns(&self, short: &str) -> bool {
        short.starts_with(&self.prefix) || (self.sanoid_chain && sanoid::is_sanoid_name(short))
    }
}
