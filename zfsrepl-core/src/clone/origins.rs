//! Pinned origins: the snapshots clones were made from. Retention keeps
//! them (ZFS would refuse to destroy them anyway, and the reason says why
//! instead of a failed destroy), and `zfsrepl check` reports a clone whose
//! origin has grown old: its refresh has stopped, and the origin pins
//! space on the source that pruning cannot reclaim.

use serde::Serialize;

use crate::name::{DatasetName, SnapshotName};
use crate::policy::Targets;
use crate::zfs::{Dataset, ListSpec, ZfsErrorKind, ZfsRead, ZfsResult};

/// Every (origin snapshot, clone) pair in a listing (its `origin`
/// property), sorted and without duplicates.
#[must_use]
pub fn clone_origins<'a>(
    listings: impl IntoIterator<Item = &'a Dataset>,
) -> Vec<(SnapshotName, String)> {
    let mut out: Vec<(SnapshotName, String)> = listings
        .into_iter()
        .filter_map(|d| d.origin.clone().map(|o| (o, d.name.to_string())))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Lists the clones the policy's clone sections name (each on its own,
/// without snapshots; a clone not made yet is left out), so their origins
/// are known even when the policy's dataset listing does not reach them.
///
/// # Errors
/// A listing that failed for another reason than a missing dataset.
pub fn list_policy_clones<Z: ZfsRead + ?Sized>(
    zfs: &Z,
    targets: &Targets,
) -> ZfsResult<Vec<Dataset>> {
    let mut out = Vec::new();
    for c in &targets.clones {
        for clone in c.clones() {
            let ls = ListSpec {
                roots: vec![clone.clone()],
                recursive: false,
                snapshots: false,
                bookmarks: false,
                user_props: vec![super::OWNER_PROP.to_owned()],
            };
            match zfs.list(&ls) {
                Ok(mut d) => out.append(&mut d),
                Err(e) if e.kind == ZfsErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// A clone whose origin is older than its section's `stale-after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleOrigin {
    /// The clone section.
    pub section: String,
    /// The clone.
    pub clone: DatasetName,
    /// What it was cloned from.
    pub origin: SnapshotName,
    /// The origin's age, seconds (or the clone's, when the origin's
    /// creation is not in the listing: a lower bound).
    pub age: i64,
    /// The section's threshold, seconds.
    pub stale_after: i64,
}

/// The stale pinned origins of the policy's clones. `clones` holds the
/// clone datasets (with `origin`), `listing` the sources with their
/// snapshots (for the origins' creation times). A clone not made yet is
/// not reported here. Pure.
#[must_use]
pub fn stale_origins(
    targets: &Targets,
    clones: &[Dataset],
    listing: &[Dataset],
    now: i64,
) -> Vec<StaleOrigin> {
    let mut out = Vec::new();
    for c in &targets.clones {
        let limit = i64::try_from(c.stale_after.as_secs()).unwrap_or(i64::MAX);
        for name in c.clones() {
            let Some(d) = clones.iter().find(|d| &d.name == name) else {
                continue;
            };
            let Some(origin) = &d.origin else { continue };
            let created = listing
                .iter()
                .filter(|s| s.name == origin.dataset())
                .flat_map(Dataset::snapshots)
                .find(|v| v.name.as_str() == origin.as_str())
                .map_or(d.creation, |v| v.creation);
            let age = now - created;
            if age > limit {
                out.push(StaleOrigin {
                    section: c.name.clone(),
                    clone: name.clone(),
                    origin: origin.clone(),
                    age,
                    stale_after: limit,
                });
            }
        }
    }
    out
}
