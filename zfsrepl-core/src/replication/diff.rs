//! Where a source and a target meet: the common base, matched by guid, and
//! the incremental path from it ([`incremental_path`]); every reason it
//! cannot be found is a [`Conflict`] value that lists both sides.
//!
//! Rules (the same as zrepl's `IncrementalPath`):
//! - versions are ordered by createtxg, a bookmark before a snapshot of the
//!   same txg (a bookmark is created from its snapshot, so shares its txg);
//! - source and target match by guid only. A snapshot name says nothing: the
//!   same name on both sides with different guids is a different snapshot;
//! - target bookmarks are ignored: ZFS cannot receive onto a bookmark, and a
//!   newer bookmark on the target does not make `zfs receive` fail;
//! - a source bookmark may be the base (`zfs send -i #mark`) when the target
//!   still has the snapshot with its guid; a source snapshot of the same
//!   guid is preferred.
//!
//! createtxg is only ever compared within one side: the two pools count
//! transaction groups independently.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::{DatasetName, Guid};
use crate::zfs::Version;

/// The order of versions within one dataset: createtxg, then bookmark before
/// snapshot, then name (so that equal txgs sort deterministically).
#[must_use]
pub fn version_order(a: &Version, b: &Version) -> Ordering {
    (a.createtxg, !a.name.is_bookmark(), a.name.as_str()).cmp(&(
        b.createtxg,
        !b.name.is_bookmark(),
        b.name.as_str(),
    ))
}

/// A sorted copy of `versions` (see [`version_order`]).
#[must_use]
pub fn sorted(versions: &[Version]) -> Vec<Version> {
    let mut v = versions.to_vec();
    v.sort_by(version_order);
    v
}

/// A sorted copy of the snapshots among `versions`, bookmarks dropped.
#[must_use]
pub fn sorted_snapshots(versions: &[Version]) -> Vec<Version> {
    let mut v: Vec<Version> = versions
        .iter()
        .filter(|v| !v.name.is_bookmark())
        .cloned()
        .collect();
    v.sort_by(version_order);
    v
}

/// The newest version both sides share, and what each side has after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonBase {
    /// The base on the source side: a snapshot where the source still has
    /// one with the shared guid, otherwise a bookmark.
    pub source: Version,
    /// The target snapshot with the same guid.
    pub target: Version,
    /// Source snapshots newer than the base, oldest first.
    pub source_newer: Vec<Version>,
    /// Target snapshots newer than the base, oldest first; non-empty means
    /// the target diverged.
    pub target_newer: Vec<Version>,
}

/// Finds the newest target snapshot whose guid the source also has (as a
/// snapshot or a bookmark).
///
/// # Errors
/// [`Conflict::NoSourceSnapshots`] when the source has no snapshots and no
/// match, [`Conflict::NoCommonBase`] when no guid is shared.
pub fn common_base(source: &[Version], target: &[Version]) -> Result<CommonBase, Conflict> {
    let source = sorted(source);
    let target = sorted_snapshots(target);
    // guid -> index of the source version to use as base; a snapshot wins
    // over a bookmark of the same guid.
    let mut by_guid: HashMap<Guid, usize> = HashMap::with_capacity(source.len());
    for (i, v) in source.iter().enumerate() {
        let replace = match by_guid.get(&v.guid) {
            None => true,
            Some(&j) => source[j].name.is_bookmark() && !v.name.is_bookmark(),
        };
        if replace {
            by_guid.insert(v.guid, i);
        }
    }
    let found = target
        .iter()
        .enumerate()
        .rev()
        .find_map(|(r, t)| by_guid.get(&t.guid).map(|&s| (r, s)));
    let Some((r, s)) = found else {
        if source.iter().all(|v| v.name.is_bookmark()) {
            return Err(Conflict::NoSourceSnapshots);
        }
        return Err(Conflict::NoCommonBase { source, target });
    };
    let base = source[s].clone();
    let source_newer = source[s + 1..]
        .iter()
        .filter(|v| !v.name.is_bookmark() && v.guid != base.guid)
        .cloned()
        .collect();
    Ok(CommonBase {
        source: base,
        target: target[r].clone(),
        source_newer,
        target_newer: target[r + 1..].to_vec(),
    })
}

/// What replication from a common base looks like when nothing conflicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Incremental {
    /// The target already has the source's newest snapshot.
    UpToDate {
        /// The common version (source side).
        common: Version,
    },
    /// The base (a snapshot or bookmark of the source) followed by every
    /// newer source snapshot, oldest first; at least two entries.
    Path {
        /// Base, then the snapshots to transfer.
        path: Vec<Version>,
    },
}

/// The incremental path from the newest common version to the source's
/// newest snapshot, with no filtering (the planner in
/// [`super::plan`] applies filters and capabilities on top of
/// [`common_base`]).
///
/// # Errors
/// [`Conflict::NoSourceSnapshots`], [`Conflict::NoCommonBase`], or
/// [`Conflict::TargetDiverged`] when the target has snapshots newer than the
/// common base.
pub fn incremental_path(source: &[Version], target: &[Version]) -> Result<Incremental, Conflict> {
    let cb = common_base(source, target)?;
    if !cb.target_newer.is_empty() {
        return Err(Conflict::TargetDiverged {
            common: Box::new(cb.source),
            source_only: cb.source_newer,
            target_only: cb.target_newer,
        });
    }
    if cb.source_newer.is_empty() {
        return Ok(Incremental::UpToDate { common: cb.source });
    }
    let mut path = Vec::with_capacity(cb.source_newer.len() + 1);
    path.push(cb.source);
    path.extend(cb.source_newer);
    Ok(Incremental::Path { path })
}

/// Why a dataset cannot be replicated as things stand. Each variant carries
/// the versions that explain it, and `Display` lists them (name, guid,
/// createtxg) so the user sees exactly why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum Conflict {
    /// The source has no snapshots (or none that the snapshot filter lets
    /// through).
    NoSourceSnapshots,
    /// No source snapshot or bookmark has the guid of any target snapshot.
    /// Also when the target exists but has no snapshots: zfsrepl does not
    /// overwrite an existing dataset with a full stream.
    NoCommonBase {
        /// Source versions, oldest first.
        source: Vec<Version>,
        /// Target snapshots, oldest first (bookmarks are ignored).
        target: Vec<Version>,
    },
    /// The target has snapshots newer than the newest common one.
    TargetDiverged {
        /// The newest common version (source side).
        common: Box<Version>,
        /// Source snapshots newer than `common`.
        source_only: Vec<Version>,
        /// Target snapshots newer than `common`.
        target_only: Vec<Version>,
    },
    /// The target was written to since its latest snapshot (`written` > 0):
    /// receiving would need to roll those changes back.
    TargetModified {
        /// The target's latest snapshot, which is also the common base.
        common: Box<Version>,
    },
    /// The target does not exist and the initial-replication policy is
    /// `fail`.
    InitialRefused {
        /// Source versions, oldest first.
        source: Vec<Version>,
    },
    /// The target's parent does not exist and this run does not create it
    /// (its own plan is a conflict, or it is not being replicated), so
    /// nothing can be received here.
    ParentMissing {
        /// The missing target parent.
        parent: DatasetName,
    },
}

fn write_versions(f: &mut fmt::Formatter<'_>, title: &str, versions: &[Version]) -> fmt::Result {
    write!(f, "\n  {title}:")?;
    if versions.is_empty() {
        return write!(f, "\n    (none)");
    }
    let width = versions
        .iter()
        .map(|v| v.name.as_str().len())
        .max()
        .unwrap_or(0);
    for v in versions {
        write!(
            f,
            "\n    {:<width$}  guid={} createtxg={}",
            v.name.as_str(),
            v.guid,
            v.createtxg
        )?;
    }
    Ok(())
}

fn describe(v: &Version) -> String {
    format!("{} (guid={} createtxg={})", v.name, v.guid, v.createtxg)
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSourceSnapshots => f.write_str(
                "the source has no snapshots to send (none exist, or the snapshot filter excludes all of them)",
            ),
            Self::NoCommonBase { source, target } => {
                if target.is_empty() {
                    f.write_str(
                        "the target exists but has no snapshots: an initial full send would \
                         overwrite it, which zfsrepl refuses; destroy or rename the target, or \
                         replicate to a dataset that does not exist yet",
                    )?;
                } else {
                    f.write_str(
                        "no common snapshot: no source snapshot or bookmark has the guid of a \
                         target snapshot (versions match by guid, never by name)",
                    )?;
                }
                write_versions(f, "source versions, oldest first", source)?;
                write_versions(
                    f,
                    "target snapshots, oldest first (bookmarks ignored)",
                    target,
                )
            }
            Self::TargetDiverged {
                common,
                source_only,
                target_only,
            } => {
                write!(
                    f,
                    "the target has snapshots newer than the newest common version {}; \
                     receiving would destroy them",
                    describe(common)
                )?;
                write_versions(f, "source only, oldest first", source_only)?;
                write_versions(f, "target only, oldest first", target_only)
            }
            Self::TargetModified { common } => write!(
                f,
                "the target was modified since its latest snapshot {}; receiving would roll those \
                 changes back (allow it with force-rollback, or snapshot the target to keep them)",
                describe(common)
            ),
            Self::InitialRefused { source } => {
                f.write_str(
                    "the target does not exist and the initial-replication policy is `fail`",
                )?;
                write_versions(f, "source versions, oldest first", source)
            }
            Self::ParentMissing { parent } => write!(
                f,
                "the target's parent {parent} does not exist and this run does not create it \
                 (see the parent's own plan)"
            ),
        }
    }
}

impl std::error::Error for Conflict {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::fixture::{dst, src, versions};

    fn names(vs: &[Version]) -> Vec<&str> {
        vs.iter().map(|v| v.name.short()).collect()
    }

    #[test]
    fn sorts_by_txg_bookmark_first() {
        let v = sorted(&versions("tank/a", "@c:3 #b:2 @b:2 @a:1 #a:1"));
        let s: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            s,
            ["tank/a#a", "tank/a@a", "tank/a#b", "tank/a@b", "tank/a@c"]
        );
    }

    #[test]
    fn path_from_common_snapshot() {
        let got = incremental_path(&src("@a:1 @b:2 @c:3"), &dst("@a:1")).unwrap();
        let Incremental::Path { path } = got else {
            panic!("{got:?}")
        };
        assert_eq!(names(&path), ["a", "b", "c"]);
    }

    #[test]
    fn snapshot_preferred_over_bookmark_of_same_guid() {
        let cb = common_base(&src("@a:1 #b:2 @b:2 @c:3"), &dst("@a:1 @b:2")).unwrap();
        assert!(!cb.source.name.is_bookmark());
        assert_eq!(names(&cb.source_newer), ["c"]);
    }

    #[test]
    fn bookmark_is_a_base_when_its_snapshot_is_gone() {
        let cb = common_base(&src("@a:1 #b:2 @c:3"), &dst("@a:1 @b:2")).unwrap();
        assert_eq!(cb.source.name.as_str(), "tank/src#b");
        assert!(cb.target_newer.is_empty());
    }

    #[test]
    fn target_bookmarks_are_ignored() {
        // The target's bookmark #c shares the newest source guid, but it is
        // not a snapshot: the base stays @a.
        let got = incremental_path(&src("@a:1 @b:2 @c:3"), &dst("@a:1 #c:3")).unwrap();
        let Incremental::Path { path } = got else {
            panic!("{got:?}")
        };
        assert_eq!(names(&path), ["a", "b", "c"]);
        assert!(matches!(
            common_base(&src("@a:1"), &dst("#a:1")),
            Err(Conflict::NoCommonBase { .. })
        ));
    }

    #[test]
    fn never_matches_by_name() {
        let err = incremental_path(&src("@a:1 @b:2"), &dst("@a:1/guid=91 @b:2/guid=92"));
        assert!(matches!(err, Err(Conflict::NoCommonBase { .. })), "{err:?}");
        let err = incremental_path(&src("@a:1 @b:2 @c:3"), &dst("@a:1 @b:2/guid=92")).unwrap_err();
        let Conflict::TargetDiverged {
            common,
            source_only,
            target_only,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(common.name.short(), "a");
        assert_eq!(names(source_only), ["b", "c"]);
        assert_eq!(target_only[0].guid, Guid(92));
    }

    #[test]
    fn up_to_date_and_no_snapshots() {
        assert!(matches!(
            incremental_path(&src("@a:1 @b:2"), &dst("@a:1 @b:2")),
            Ok(Incremental::UpToDate { .. })
        ));
        assert_eq!(
            incremental_path(&[], &dst("@a:1")),
            Err(Conflict::NoSourceSnapshots)
        );
        assert_eq!(
            incremental_path(&src("#a:1"), &dst("@b:2")),
            Err(Conflict::NoSourceSnapshots)
        );
    }

    #[test]
    fn txgs_are_never_compared_across_sides() {
        // The target pool's txgs are far ahead of the source's: irrelevant.
        let got = incremental_path(&src("@a:1 @b:2"), &dst("@a:1/txg=900")).unwrap();
        assert!(matches!(got, Incremental::Path { .. }));
    }

    #[test]
    fn display_lists_both_sides() {
        let err = incremental_path(&src("@a:1 @b:2"), &dst("@a:1/guid=91")).unwrap_err();
        let s = err.to_string();
        for want in [
            "never by name",
            "tank/src@a  guid=1 createtxg=1",
            "tank/src@b  guid=2 createtxg=2",
            "back/dst@a  guid=91 createtxg=1",
        ] {
            assert!(s.contains(want), "{s}\nlacks {want:?}");
        }
        let err = incremental_path(&src("@a:1 @b:2"), &dst("@a:1 @x:5")).unwrap_err();
        let s = err.to_string();
        for want in [
            "newest common version tank/src@a (guid=1 createtxg=1)",
            "source only",
            "tank/src@b  guid=2",
            "target only",
            "back/dst@x  guid=5 createtxg=5",
        ] {
            assert!(s.contains(want), "{s}\nlacks {want:?}");
        }
    }
}
