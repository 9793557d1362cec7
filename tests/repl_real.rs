//! Replication runs on real pools, with faults: the `zfs send` or the
//! `zfs receive` killed mid-stream, then the next run converges and the
//! files match byte for byte; no common base refused with nothing
//! destroyed; a new child between recursive runs; sync snapshots of this job
//! cleaned after success while foreign snapshots stay; holds released.
//! Never skipped: without ZFS, `TestPool::new` fails the test.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use zfsrepl_core::replication::execute::{BytesOnly, ExecOptions, ExecReport, execute};
use zfsrepl_core::replication::gather::gather_tree_input;
use zfsrepl_core::replication::{ReplicationPlan, ReplicationPolicy, SyncJob, plan_tree};
use zfsrepl_core::stream::{CancelToken, CopyOptions};
use zfsrepl_core::testing::{TestPool, kill_zfs_child};
use zfsrepl_core::zfs::{ListSpec, LocalRunner};
use zfsrepl_core::{DatasetName, ZfsCli, ZfsRead, ZfsWrite};

static CLOCK: AtomicU32 = AtomicU32::new(0);

fn job() -> SyncJob {
    SyncJob::new("fault job", "the target")
}

/// One run of a job: a sync snapshot (unless `no_sync`), gather, plan,
/// execute with `opts` and `progress`.
fn run_with(
    zfs: &ZfsCli<LocalRunner>,
    sroot: &DatasetName,
    droot: &DatasetName,
    no_sync: bool,
    copy: CopyOptions,
    progress: &dyn Fn(u64, Duration),
    cancel: &CancelToken,
) -> (ReplicationPlan, ExecReport) {
    let j = job();
    if !no_sync {
        // Distinct, increasing times even for runs within one millisecond.
        let t = jiff::Timestamp::now()
            + jiff::SignedDuration::from_secs(i64::from(CLOCK.fetch_add(1, Ordering::SeqCst)));
        zfs.snapshot_recursive(&sroot.snapshot(&j.snapshot_name(t)).unwrap(), &[])
            .unwrap();
    }
    let input = gather_tree_input(zfs, zfs, sroot, droot, true).unwrap();
    let policy = ReplicationPolicy {
        sync_prefix: Some(j.prefix()),
        ..ReplicationPolicy::default()
    };
    let plan = plan_tree(&input, &policy, zfs.capabilities());
    let opts = ExecOptions {
        copy,
        sync: Some(j),
        ..ExecOptions::default()
    };
    let report = execute(zfs, zfs, &input, &plan, &opts, &BytesOnly(progress), cancel);
    (plan, report)
}

fn run(
    zfs: &ZfsCli<LocalRunner>,
    sroot: &DatasetName,
    droot: &DatasetName,
) -> (ReplicationPlan, ExecReport) {
    run_with(
        zfs,
        sroot,
        droot,
        false,
        CopyOptions::default(),
        &|_, _| {},
        &CancelToken::new(),
    )
}

/// Snapshots of a dataset: (short name, userrefs), oldest first.
fn snaps(zfs: &ZfsCli<LocalRunner>, ds: &DatasetName) -> Vec<(String, u64)> {
    let l = zfs
        .list(&ListSpec {
            recursive: false,
            ..ListSpec::all(vec![ds.clone()])
        })
        .unwrap();
    l[0].snapshots()
        .map(|v| (v.name.short().to_owned(), v.userrefs.unwrap()))
        .collect()
}

fn names(zfs: &ZfsCli<LocalRunner>, ds: &DatasetName) -> Vec<String> {
    snaps(zfs, ds).into_iter().map(|(n, _)| n).collect()
}

/// A copy slowed to 2 MiB/s whose `zfs <sub>` is killed (or, for `sub`
/// "cancel", which is cancelled) once 256 KiB went.
fn killing_run(
    zfs: &ZfsCli<LocalRunner>,
    sroot: &DatasetName,
    droot: &DatasetName,
    sub: &str,
    needle: &str,
) -> ExecReport {
    let killed = AtomicBool::new(false);
    let cancel = CancelToken::new();
    let progress = |bytes: u64, _: Duration| {
        if bytes >= 256 << 10 && !killed.swap(true, Ordering::SeqCst) {
            if sub == "cancel" {
                cancel.cancel();
            } else {
                assert!(kill_zfs_child(sub, needle), "no zfs {sub} child to kill");
            }
        }
    };
    let copy = CopyOptions {
        bwlimit: Some(2 << 20),
        progress_interval: Duration::from_millis(20),
        ..CopyOptions::default()
    };
    let (_, report) = run_with(zfs, sroot, droot, false, copy, &progress, &cancel);
    assert!(
        killed.load(Ordering::SeqCst),
        "the copy ended before the kill"
    );
    report
}

/// Mounts a received dataset (canmount=noauto only stops automatic mounts)
/// and checks every file against the source's, byte for byte.
fn same_files(src_dir: &Path, dst: &DatasetName, dst_dir: &Path) {
    let out = Command::new("zfs")
        .args(["mount", dst.as_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut n = 0;
    for e in std::fs::read_dir(src_dir).unwrap().flatten() {
        let a = std::fs::read(e.path()).unwrap();
        let b = std::fs::read(dst_dir.join(e.file_name())).unwrap();
        assert!(a == b, "{:?} differs", e.file_name());
        n += 1;
    }
    assert!(n > 0, "no files compared");
}

#[test]
fn sender_killed_mid_stream_then_the_next_run_converges() {
    let src = TestPool::mounted();
    let dst = TestPool::mounted();
    src.apply("+ data");
    for i in 0..4 {
        src.write("data", &format!("f{i}"), 1 << 20);
    }
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    let r = killing_run(&zfs, &sroot, &droot, "send", src.name());
    assert_eq!(r.failures(), 1, "{r:#?}");
    let err = r.datasets[0].error.as_deref().unwrap();
    assert!(err.contains("send"), "the sender is blamed: {err}");
    // zfs-fuse: the `zfs` command is a client of the daemon, which holds a
    // copy of the pipe and may finish the stream after the client died; the
    // run still counts as failed (nothing cleaned) and the next converges
    // from whatever arrived.
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    // The first run's sync snapshot was never transferred: cleaned now.
    let s = snaps(&zfs, &sroot);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(snaps(&zfs, &droot), [(s[0].0.clone(), 1)]);
    assert_eq!(s[0].1, 1, "the new base is held on the source");
    same_files(
        &src.mountpoint().join("data"),
        &droot,
        &dst.mountpoint().join("copy"),
    );
}

#[test]
fn receiver_killed_mid_incremental_keeps_the_old_base_then_converges() {
    let src = TestPool::mounted();
    let dst = TestPool::mounted();
    src.apply("+ data");
    src.write("data", "small", 10_000);
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    let base = names(&zfs, &droot);
    for i in 0..4 {
        src.write("data", &format!("f{i}"), 1 << 20);
    }
    let r = killing_run(&zfs, &sroot, &droot, "receive", dst.name());
    assert_eq!(r.failures(), 1, "{r:#?}");
    // Nothing was cleaned: the old base is still there, held, on both
    // sides (zfs-fuse's daemon may still have completed the receive after
    // its client was killed: then the new snapshot is there, unheld).
    let d = snaps(&zfs, &droot);
    assert_eq!(d[0], (base[0].clone(), 1), "{d:?}");
    assert!(
        d.len() <= 2 && d.iter().skip(1).all(|(_, refs)| *refs == 0),
        "{d:?}"
    );
    assert!(snaps(&zfs, &sroot).contains(&(base[0].clone(), 1)));
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    let s = snaps(&zfs, &sroot);
    let d = snaps(&zfs, &droot);
    assert_eq!(
        s.len(),
        1,
        "old sync snapshots cleaned on the source: {s:?}"
    );
    assert_eq!(d, s, "the same single, held base on both sides");
    same_files(
        &src.mountpoint().join("data"),
        &droot,
        &dst.mountpoint().join("copy"),
    );
}

#[test]
fn a_stream_cut_mid_way_leaves_nothing_then_the_next_run_converges() {
    let src = TestPool::mounted();
    let dst = TestPool::mounted();
    src.apply("+ data");
    for i in 0..4 {
        src.write("data", &format!("f{i}"), 1 << 20);
    }
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    let r = killing_run(&zfs, &sroot, &droot, "cancel", "");
    assert_eq!(r.failures(), 1, "{r:#?}");
    // A full receive cut short leaves no dataset behind, once zfs-fuse's
    // daemon (which holds the pipe, not the killed client) saw the end of
    // the stream: that happens asynchronously, within moments.
    let gone = (0..100).any(|_| {
        let g = zfs.list(&ListSpec::all(vec![droot.clone()])).is_err();
        if !g {
            std::thread::sleep(Duration::from_millis(100));
        }
        g
    });
    assert!(gone, "{:?}", zfs.list(&ListSpec::all(vec![droot.clone()])));
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    let s = snaps(&zfs, &sroot);
    assert_eq!(
        s.len(),
        1,
        "the untransferred sync snapshot was cleaned: {s:?}"
    );
    assert_eq!(snaps(&zfs, &droot), s);
    same_files(
        &src.mountpoint().join("data"),
        &droot,
        &dst.mountpoint().join("copy"),
    );
}

#[test]
fn no_common_base_is_refused_with_nothing_destroyed() {
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ data\n+ data@a");
    dst.apply("+ copy\n+ copy@x\n+ copy@y");
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    let (plan, r) = run(&zfs, &sroot, &droot);
    assert!(plan.datasets[0].conflict().is_some(), "{plan:#?}");
    assert_eq!(r.failures(), 1);
    assert!(
        r.datasets[0].error.as_deref().unwrap().contains("common"),
        "{r:#?}"
    );
    assert_eq!(names(&zfs, &droot), ["x", "y"]);
    let s = names(&zfs, &sroot);
    assert_eq!(s.len(), 2, "a and the new sync snapshot: {s:?}");
    assert_eq!(s[0], "a");
}

#[test]
fn a_new_child_between_recursive_runs_is_replicated_and_cleaned_too() {
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ data\n+ \"data/child one\"");
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    assert_eq!(run(&zfs, &sroot, &droot).1.failures(), 0);
    src.apply("+ \"data/child two: new\"");
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    for child in ["", "/child one", "/child two: new"] {
        let s = DatasetName::parse(&format!("{sroot}{child}")).unwrap();
        let d = DatasetName::parse(&format!("{droot}{child}")).unwrap();
        let (ss, dd) = (snaps(&zfs, &s), snaps(&zfs, &d));
        assert_eq!(ss.len(), 1, "{s}: {ss:?}");
        assert_eq!(dd, ss, "{d}");
        assert_eq!(ss[0].1, 1, "held");
    }
}

#[test]
fn cleanup_spares_foreign_snapshots_and_releases_holds() {
    let src = TestPool::new();
    let dst = TestPool::new();
    let other = SyncJob::new("other job", "the target")
        .snapshot_name("2026-01-01T00:00:00Z".parse().unwrap());
    src.apply(&format!(
        "+ data\n+ data@autosnap_2026-01-01_00:00:00_daily\n+ \"data@{other}\""
    ));
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    assert_eq!(run(&zfs, &sroot, &droot).1.failures(), 0);
    let first = names(&zfs, &droot);
    // Another job's sync snapshot is never sent to this target.
    assert!(!first.contains(&other), "{first:?}");
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(r.datasets[0].cleaned.len(), 2, "{r:#?}");
    let s = names(&zfs, &sroot);
    assert_eq!(
        s[..2],
        ["autosnap_2026-01-01_00:00:00_daily".to_owned(), other]
    );
    assert!(
        !s.contains(&first[first.len() - 1]),
        "old sync snapshot gone"
    );
    let d = snaps(&zfs, &droot);
    assert_eq!(d, [(s[2].clone(), 1)], "only the new base, held");

    // Without sync snapshots: the base (an existing snapshot) is held, and
    // released once a newer base arrived.
    let (sroot2, droot2) = (src.ds("plain"), dst.ds("plain"));
    src.apply("+ plain\n+ plain@a");
    let none = |_: u64, _: Duration| {};
    let (_, r) = run_with(
        &zfs,
        &sroot2,
        &droot2,
        true,
        CopyOptions::default(),
        &none,
        &CancelToken::new(),
    );
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(snaps(&zfs, &sroot2), [("a".to_owned(), 1)]);
    assert_eq!(snaps(&zfs, &droot2), [("a".to_owned(), 1)]);
    src.apply("+ plain@b");
    let (_, r) = run_with(
        &zfs,
        &sroot2,
        &droot2,
        true,
        CopyOptions::default(),
        &none,
        &CancelToken::new(),
    );
    assert_eq!(r.failures(), 0, "{r:#?}");
    let back_to_zero = [("a".to_owned(), 0), ("b".to_owned(), 1)];
    assert_eq!(snaps(&zfs, &sroot2), back_to_zero);
    assert_eq!(snaps(&zfs, &droot2), back_to_zero);
    // Nothing of ours is left held once the snapshots are released by hand.
    let tag = job().hold_tag();
    zfs.release(&tag, &[sroot2.snapshot("b").unwrap()]).unwrap();
}

/// zfs-fuse has no `written`: a target written to since its latest
/// snapshot is seen by its `referenced` once the pool committed the write
/// (a snapshot anywhere in the pool forces that). It is a conflict, with
/// nothing received or destroyed, until `force_rollback`.
#[test]
fn a_modified_target_is_refused_unless_force_rollback() {
    let src = TestPool::new();
    let dst = TestPool::mounted();
    src.apply("+ data\n+ data@a");
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    let none = |_: u64, _: Duration| {};
    let plain = || {
        run_with(
            &zfs,
            &sroot,
            &droot,
            true,
            CopyOptions::default(),
            &none,
            &CancelToken::new(),
        )
    };
    assert_eq!(plain().1.failures(), 0);
    let out = Command::new("zfs")
        .args(["mount", droot.as_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dst.write("copy", "local edit", 300_000);
    dst.apply("+ flush\n+ flush@txg");
    src.apply("+ data@b");
    let input = gather_tree_input(&zfs, &zfs, &sroot, &droot, true).unwrap();
    assert!(input.target_modified.contains(&droot), "{input:#?}");
    let (plan, r) = plain();
    assert!(plan.datasets[0].conflict().is_some(), "{plan:#?}");
    assert!(
        r.datasets[0].error.as_deref().unwrap().contains("modified"),
        "{r:#?}"
    );
    assert_eq!(names(&zfs, &droot), ["a"]);
    // With force_rollback: rolled back to @a, then @b received.
    let policy = ReplicationPolicy {
        force_rollback: true,
        sync_prefix: Some(job().prefix()),
        ..ReplicationPolicy::default()
    };
    let input = gather_tree_input(&zfs, &zfs, &sroot, &droot, true).unwrap();
    let plan = plan_tree(&input, &policy, zfs.capabilities());
    assert!(plan.datasets[0].rollback.is_some(), "{plan:#?}");
    let r = execute(
        &zfs,
        &zfs,
        &input,
        &plan,
        &ExecOptions::default(),
        &zfsrepl_core::stream::NoProgress,
        &CancelToken::new(),
    );
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert_eq!(names(&zfs, &droot), ["a", "b"]);
}

#[test]
fn a_full_target_pool_fails_clearly_then_converges_once_space_is_freed() {
    let src = TestPool::mounted();
    // 128 MiB gives about 90 MiB of usable space on zfs-fuse; 60 MiB of
    // ballast leaves about 30 MiB for a 48 MiB stream.
    let dst = TestPool::mounted_with_size(128 << 20);
    src.apply("+ data");
    for i in 0..3 {
        src.write("data", &format!("f{i}"), 16 << 20);
    }
    dst.apply("+ ballast");
    dst.write("ballast", "b", 60 << 20);
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 1, "{r:#?}");
    let err = r.datasets[0].error.as_deref().unwrap();
    assert!(
        err.contains("space") && err.contains("receive"),
        "the receiver's lack of space is the reported cause: {err}"
    );
    // The source is untouched but for this run's sync snapshot, kept (and
    // held) as nothing was transferred; nothing partial blocks the target.
    let s = snaps(&zfs, &sroot);
    assert_eq!(s.len(), 1, "{s:?}");
    let gone = (0..100).any(|_| {
        let g = zfs.list(&ListSpec::all(vec![droot.clone()])).is_err();
        if !g {
            std::thread::sleep(Duration::from_millis(100));
        }
        g
    });
    assert!(gone, "{:?}", zfs.list(&ListSpec::all(vec![droot.clone()])));

    // Space freed: the next run completes from scratch.
    // zfs-fuse may call a just-written mounted dataset busy for a moment.
    let ballast = dst.ds("ballast");
    let freed = (0..50).any(|_| {
        let out = Command::new("zfs")
            .args(["destroy", "-r", "-f", ballast.as_str()])
            .output()
            .unwrap();
        if !out.status.success() {
            std::thread::sleep(Duration::from_millis(200));
        }
        out.status.success()
    });
    assert!(freed, "cannot destroy {ballast}");
    let (_, r) = run(&zfs, &sroot, &droot);
    assert_eq!(r.failures(), 0, "{r:#?}");
    let s = snaps(&zfs, &sroot);
    assert_eq!(s.len(), 1, "the failed run's sync snapshot cleaned: {s:?}");
    assert_eq!(snaps(&zfs, &droot), s);
    same_files(
        &src.mountpoint().join("data"),
        &droot,
        &dst.mountpoint().join("copy"),
    );
}
