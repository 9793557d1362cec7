//! zfsrepl's own state on both sides of a job: sync snapshots, the hold
//! that protects the incremental base, and the cleanup after a successful
//! transfer. Pure: names and version lists in, what to hold, release and
//! destroy out (the executor runs it).
//!
//! - A **sync snapshot** `zfsrepl_sync_<job>_<target>_<UTC time>` is taken on
//!   the source before planning ([`SyncJob::snapshot_name`], time injected),
//!   so every run transfers a consistent point even when no other tool
//!   snapshots the source.
//! - The newest snapshot a run transferred (the new incremental base) gets
//!   the user hold [`SyncJob::hold_tag`] on both sides, so neither side's
//!   pruning can destroy it; where the source has bookmarks, a bookmark of
//!   the same name keeps it usable as a base even if the snapshot goes.
//! - After a dataset's transfer succeeded, [`plan_side_cleanup`] releases the
//!   tag from the previous base and destroys the **older** sync snapshots
//!   (and bookmarks) of this job and target only: a name must be exactly
//!   `zfsrepl_sync_<job>_<target>_<time>` ([`SyncJob::owns`]). Other jobs',
//!   other targets' and other tools' snapshots are never touched. After a
//!   failure nothing is cleaned up: the old base stays.
//!
//! Job and target are sanitised into `[A-Za-z0-9.:-]` (anything else,
//! including `_`, becomes `-`), so the `_`-separated name parses one way
//! only: job `a` and target `b_c` cannot pass for job `a_b` and target `c`.

use serde::{Deserialize, Serialize};

use crate::name::{BookmarkName, SnapshotName};
use crate::zfs::{Version, VersionName};

use super::plan::SYNC_PREFIX;

/// The longest sanitised job or target component; longer ones are cut and
/// end in a hash of the whole, so that two long names stay distinct.
const MAX_COMPONENT: usize = 48;

/// The length of the time part: `20261122T081640.123Z`.
const TIME_LEN: usize = 20;

/// Maps `s` into the characters a sync-snapshot component may hold.
#[must_use]
pub fn sanitize_component(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = if clean.is_empty() {
        "-".to_owned()
    } else {
        clean
    };
    if clean.len() <= MAX_COMPONENT {
        return clean;
    }
    // FNV-1a of the original: stable across runs and hosts.
    let hash = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}.{:08x}", &clean[..MAX_COMPONENT - 9], hash as u32)
}

/// One job replicating to one target: the names of its sync snapshots and
/// its hold tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    job: String,
    target: String,
}

impl SyncJob {
    /// A job and target, sanitised ([`sanitize_component`]).
    #[must_use]
    pub fn new(job: &str, target: &str) -> Self {
        Self {
            job: sanitize_component(job),
            target: sanitize_component(target),
        }
    }

    /// The sanitised job name.
    #[must_use]
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The sanitised target name.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `zfsrepl_sync_<job>_<target>_`, for
    /// [`ReplicationPolicy::sync_prefix`](super::ReplicationPolicy::sync_prefix).
    #[must_use]
    pub fn prefix(&self) -> String {
        format!("{SYNC_PREFIX}{}_{}_", self.job, self.target)
    }

    /// The user-hold tag on the incremental base: `zfsrepl:<job>:<target>`.
    #[must_use]
    pub fn hold_tag(&self) -> String {
        format!("zfsrepl:{}:{}", self.job, self.target)
    }

    /// The short name of the sync snapshot taken at `now` (UTC, to the
    /// millisecond, so names sort by time).
    #[must_use]
    pub fn snapshot_name(&self, now: jiff::Timestamp) -> String {
        format!("{}{}", self.prefix(), now.strftime("%Y%m%dT%H%M%S%.3fZ"))
    }

    /// Whether `short` (a snapshot or bookmark name after `@`/`#`) is one of
    /// this job's and target's sync snapshots: the exact prefix followed by
    /// a time as [`SyncJob::snapshot_name`] writes it, and nothing else.
    #[must_use]
    pub fn owns(&self, short: &str) -> bool {
        short
            .strip_prefix(self.prefix().as_str())
            .is_some_and(is_time)
    }
}

/// `YYYYMMDDTHHMMSS.mmmZ`.
fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == TIME_LEN
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 => c == b'T',
            15 => c == b'.',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// What to do on one side after a dataset's transfer succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideCleanup {
    /// Hold the new base with the job's tag.
    pub hold: Option<SnapshotName>,
    /// Release the job's tag from these (the previous base, and the sync
    /// snapshots about to be destroyed that may carry it). A snapshot
    /// without the tag answers "no such tag", which the executor ignores.
    pub release: Vec<SnapshotName>,
    /// Older sync snapshots of this job and target.
    pub destroy: Vec<SnapshotName>,
    /// Older sync bookmarks of this job and target.
    pub destroy_bookmarks: Vec<BookmarkName>,
}

/// The cleanup of one side, given its versions after the transfer, the
/// new base (the newest snapshot the run transferred, by short name) and
/// the previous base (the first step's incremental source, if any).
///
/// Never destroys or releases anything not named by this job's
/// [`SyncJob::owns`], except releasing the tag from the previous base; never
/// destroys the new base.
#[must_use]
pub fn plan_side_cleanup(
    job: &SyncJob,
    versions: &[Version],
    new_base: &str,
    previous_base: Option<&str>,
) -> SideCleanup {
    let mut out = SideCleanup::default();
    for v in versions {
        let short = v.name.short();
        match &v.name {
            VersionName::Snapshot(s) if short == new_base => out.hold = Some(s.clone()),
            VersionName::Snapshot(s) if job.owns(short) => {
                if v.userrefs != Some(0) {
                    out.release.push(s.clone());
                }
                out.destroy.push(s.clone());
            }
            VersionName::Snapshot(s) if Some(short) == previous_base && v.userrefs != Some(0) => {
                out.release.push(s.clone());
            }
            VersionName::Bookmark(b) if short != new_base && job.owns(short) => {
                out.destroy_bookmarks.push(b.clone());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::replication::fixture::versions;
    use proptest::prelude::*;

    #[test]
    fn names_sanitise_and_parse_one_way() {
        let j = SyncJob::new("off2:tank/off", "root@ovh3:rpool/b_x y");
        assert_eq!(j.job(), "off2:tank-off");
        assert_eq!(j.target(), "root-ovh3:rpool-b-x-y");
        assert_eq!(j.hold_tag(), "zfsrepl:off2:tank-off:root-ovh3:rpool-b-x-y");
        let now: jiff::Timestamp = "2026-11-22T08:16:40.123Z".parse().unwrap();
        let name = j.snapshot_name(now);
        assert_eq!(
            name,
            "zfsrepl_sync_off2:tank-off_root-ovh3:rpool-b-x-y_20261122T081640.123Z"
        );
        assert!(j.owns(&name));
        // A valid snapshot name, and one of this job only.
        assert!(
            crate::DatasetName::parse("tank/a")
                .unwrap()
                .snapshot(&name)
                .is_ok()
        );
        let a = SyncJob::new("a", "b_c");
        let b = SyncJob::new("a_b", "c");
        assert_ne!(a.prefix(), b.prefix());
        assert!(!b.owns(&a.snapshot_name(now)));
        assert!(!a.owns(&b.snapshot_name(now)));
        // Near misses are not ours.
        let p = j.prefix();
        for other in [
            format!("{p}20261122T081640Z"),
            format!("{p}20261122T081640.123Z_x"),
            format!("{p}x20261122T081640.123"),
            "autosnap_2026-11-22_08:00:00_hourly".to_owned(),
        ] {
            assert!(!j.owns(&other), "{other}");
        }
        // Long names stay distinct and bounded.
        let l1 = SyncJob::new(&"x".repeat(300), "t");
        let l2 = SyncJob::new(&format!("{}y", "x".repeat(299)), "t");
        assert!(l1.job().len() <= MAX_COMPONENT);
        assert_ne!(l1.job(), l2.job());
    }

    fn job() -> SyncJob {
        SyncJob::new("j", "t1")
    }

    #[test]
    fn cleanup_destroys_only_older_sync_snapshots_of_this_job() {
        let p = job().prefix();
        let spec = format!(
            "@autosnap_x:1 @{p}20260101T000000.000Z:2/held @zfsrepl_sync_j_t2_20260101T000000.000Z:3 \
             #{p}20260101T000000.000Z:2 @{p}20260102T000000.000Z:4 #{p}20260102T000000.000Z:4"
        );
        let vs = versions("tank/src", &spec);
        let new = format!("{p}20260102T000000.000Z");
        let c = plan_side_cleanup(&job(), &vs, &new, Some(&format!("{p}20260101T000000.000Z")));
        let names = |v: &[SnapshotName]| v.iter().map(|s| s.snap().to_owned()).collect::<Vec<_>>();
        assert_eq!(c.hold.unwrap().snap(), new);
        assert_eq!(names(&c.destroy), [format!("{p}20260101T000000.000Z")]);
        assert_eq!(names(&c.release), [format!("{p}20260101T000000.000Z")]);
        assert_eq!(c.destroy_bookmarks.len(), 1);
        assert_eq!(
            c.destroy_bookmarks[0].mark(),
            format!("{p}20260101T000000.000Z")
        );
        // --no-sync-snap: the previous base is someone else's snapshot; its
        // tag is released, the snapshot stays.
        let vs = versions("tank/src", "@autosnap_a:1/held @autosnap_b:2");
        let c = plan_side_cleanup(&job(), &vs, "autosnap_b", Some("autosnap_a"));
        assert!(c.destroy.is_empty());
        assert_eq!(names(&c.release), ["autosnap_a"]);
        assert_eq!(c.hold.unwrap().snap(), "autosnap_b");
    }

    fn short_name() -> impl Strategy<Value = String> {
        let p = job().prefix();
        prop_oneof![
            Just(format!("{p}20260101T000000.000Z")),
            Just(format!("{p}20260102T030405.678Z")),
            "[0-9T.Z_a-z]{0,24}".prop_map(move |s| format!("{p}{s}")),
            "[0-9T.Z]{0,24}".prop_map(|s| format!("zfsrepl_sync_j_t2_{s}")),
            "[0-9T.Z]{0,24}".prop_map(|s| format!("zfsrepl_sync_j-x_t1_{s}")),
            "[a-z_.-]{1,20}".prop_map(|s| format!("autosnap_{s}")),
            "[a-z][a-z0-9_]{0,20}",
        ]
    }

    proptest! {
        #[test]
        fn cleanup_never_destroys_what_is_not_this_jobs(
            names in proptest::collection::btree_set(short_name(), 1..12),
            held in proptest::collection::vec(any::<bool>(), 12),
            new_i in 0usize..12,
            prev_i in proptest::option::of(0usize..12),
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let spec: String = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let h = if held[i] { "/held" } else { "" };
                    format!("@{n}:{}{h} #{n}:{} ", i + 1, i + 1)
                })
                .collect();
            let vs = versions("tank/src", &spec);
            let new = &names[new_i % names.len()];
            let prev = prev_i.map(|i| names[i % names.len()].clone());
            let c = plan_side_cleanup(&job(), &vs, new, prev.as_deref());
            let j = job();
            for s in &c.destroy {
                prop_assert!(j.owns(s.snap()) && s.snap().starts_with(&j.prefix()), "{s}");
                prop_assert_ne!(s.snap(), new.as_str());
            }
            for b in &c.destroy_bookmarks {
                prop_assert!(j.owns(b.mark()), "{b}");
                prop_assert_ne!(b.mark(), new.as_str());
            }
            for s in &c.release {
                prop_assert!(j.owns(s.snap()) || Some(s.snap()) == prev.as_deref(), "{s}");
                prop_assert_ne!(s.snap(), new.as_str());
            }
            prop_assert_eq!(c.hold.map(|h| h.snap().to_owned()), Some(new.clone()));
        }
    }
}
