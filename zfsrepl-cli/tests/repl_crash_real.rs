//! Crash points in replication's cleanup (issue 8), on real pools:
//! `zfsrepl send` is made to abort (as `kill -9` would) by the failpoints of
//! `zfsrepl_core::failpoint`: after the receives and before any hold, after
//! each side's holds, and after each side's releases. The next run, taking
//! nothing but its own arguments, must mend what the cut one left:
//!
//! - the target tree is the source's, newest snapshot by name and guid;
//! - the job's hold tag is on the common base on each side, and on no other
//!   snapshot (held tags are probed: zfs-fuse cannot list them);
//! - no hold beyond ours (nothing here kills a `zfs` client);
//! - with sync snapshots: exactly one per dataset and side, the base;
//! - without them (bases are the user's own snapshots, as with the
//!   daemon): every one of those is still there with its guid, and the
//!   mending run is alternately up to date (nothing to send) and not.
//!
//! The daemon's runs share this executor; `chaos_daemon_real` reaches
//! these windows only by chance, this test at every one, every time.
//!
//! Never skipped: without ZFS, `TestPool::new` fails the test.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use common::{tagged, tree, zfs};
use zfsrepl_core::replication::SyncJob;
use zfsrepl_core::testing::{TestPool, zfs_binary};

/// Where a run is cut, in the order a run passes them.
const POINTS: [&str; 5] = [
    "repl-received",
    "repl-source-held",
    "repl-source-released",
    "repl-target-held",
    "repl-target-released",
];

const CHILD: &str = "/-a b: c.d";

fn send(src: &str, dst: &str, locks: &Path, sync: bool, fail: Option<&str>) -> Output {
    let mut cmd = Command::cargo_bin("zfsrepl").unwrap();
    cmd.args(["send", "-r", "--job", "crash", "--lock-dir"])
        .arg(locks)
        .env("ZFSREPL_ZFS", zfs_binary())
        .env_remove("ZFSREPL_FAILPOINTS");
    if !sync {
        cmd.arg("--no-sync-snap");
    }
    if let Some(p) = fail {
        cmd.env("ZFSREPL_FAILPOINTS", p);
    }
    cmd.args(["--", src, dst]).output().unwrap()
}

struct Case<'a> {
    src: &'a str,
    dst: &'a str,
    sync: bool,
    /// The runner's own snapshots on the source: (relative dataset, name,
    /// guid).
    own: Vec<(String, String, u64)>,
}

impl Case<'_> {
    fn snapshot(&mut self, n: usize) {
        let name = format!("r{n}");
        zfs(&["snapshot", "-r", "--", &format!("{}@{name}", self.src)]).unwrap();
        for (ds, ss) in tree(self.src) {
            let guid = ss.iter().find(|s| s.0 == name).unwrap().1;
            self.own.push((ds, name.clone(), guid));
        }
    }

    fn check(&self, what: &str) {
        let job = SyncJob::new("crash", self.dst);
        let (tag, prefix) = (job.hold_tag(), job.prefix());
        let s = tree(self.src);
        let d = tree(self.dst);
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            d.keys().collect::<Vec<_>>(),
            "{what}: datasets"
        );
        assert_eq!(s.len(), 2, "{what}: {s:?}");
        for (ds, ss) in &s {
            let dd = &d[ds];
            let base = ss.last().unwrap();
            let newest = dd.last().unwrap();
            assert_eq!(
                (&newest.0, newest.1),
                (&base.0, base.1),
                "{what}: {ds}: newest on the target: {ss:?} {dd:?}"
            );
            for (side, root, list) in [("source", self.src, ss), ("target", self.dst, dd)] {
                for x in list {
                    let on = tagged(&tag, &format!("{root}{ds}@{}", x.0));
                    let want = x.0 == base.0;
                    assert_eq!(on, want, "{what}: {side}: {ds}@{}: tag: {list:?}", x.0);
                    assert_eq!(
                        x.2,
                        u64::from(want),
                        "{what}: {side}: {ds}@{}: holds: {list:?}",
                        x.0
                    );
                }
                let syncs: Vec<&str> = list
                    .iter()
                    .filter(|x| x.0.starts_with(&prefix))
                    .map(|x| x.0.as_str())
                    .collect();
                let want: Vec<&str> = if self.sync { vec![&base.0] } else { vec![] };
                assert_eq!(syncs, want, "{what}: {side}: {ds}: sync snapshots");
            }
        }
        for (ds, name, guid) in &self.own {
            assert!(
                s[ds].iter().any(|x| x.0 == *name && x.1 == *guid),
                "{what}: {ds}@{name} (the runner's) touched on the source"
            );
        }
    }
}

#[test]
fn a_run_cut_at_every_cleanup_step_is_mended_by_the_next() {
    let src = TestPool::new();
    let dst = TestPool::new();
    let locks = tempfile::tempdir().unwrap();
    let mut n = 0;
    for sync in [true, false] {
        // One tree per case: each job's holds are its own.
        let kind = if sync { "sync" } else { "own" };
        src.apply(&format!("+ {kind}\n+ \"{kind}{CHILD}\""));
        let sroot = format!("{}/{kind}", src.name());
        let droot = format!("{}/copy-{kind}", dst.name());
        let mut case = Case {
            src: &sroot,
            dst: &droot,
            sync,
            own: Vec::new(),
        };
        for (i, point) in POINTS.iter().enumerate() {
            let what = format!(
                "{} sync snapshots, cut at {point}",
                if sync { "with" } else { "no" }
            );
            if !sync {
                n += 1;
                case.snapshot(n);
            }
            // The first cut run is the initial full send.
            let out = send(&sroot, &droot, locks.path(), sync, Some(point));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what}: not cut: {err}");
            assert!(
                err.contains(&format!("failpoint {point} reached")),
                "{what}: {:?}: {err}",
                out.status
            );
            // Without sync snapshots, every other mending run is up to date.
            if !sync && i % 2 == 1 {
                n += 1;
                case.snapshot(n);
            }
            let out = send(&sroot, &droot, locks.path(), sync, None);
            assert!(
                out.status.success(),
                "{what}: the next run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            case.check(&what);
        }
    }
}
