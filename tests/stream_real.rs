//! The data path on real pools: `zfs send` spliced into `zfs receive` by
//! `Pipeline`, and a receiver's refusal reported as the cause (not the
//! broken pipe it leaves us with). Never skipped: without ZFS, `TestPool::new`
//! fails the test (run `scripts/setup-zfs.sh` as root).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Mutex;
use std::time::Duration;

use zfsrepl_core::stream::{
    CancelToken, CopyMethod, CopyOptions, NoProgress, Pipeline, PipelineError,
};
use zfsrepl_core::testing::TestPool;
use zfsrepl_core::zfs::{
    ListSpec, RecvSpec, SendFlags, SendSource, SendSpec, SendStream, VersionName, ZfsErrorKind,
    ZfsStream,
};
use zfsrepl_core::{DatasetName, SnapshotName, ZfsRead};

/// A dataset with about `bytes` of data and a snapshot `s` of it.
fn source(pool: &TestPool, bytes: usize) -> SnapshotName {
    pool.apply("+ \"data set\"");
    // Several files: zfs-fuse handles many moderate writes better than one
    // huge one, and the pools stay far from full.
    let files = bytes.div_ceil(1 << 20);
    for i in 0..files {
        pool.write("data set", &format!("f{i}"), bytes / files);
    }
    pool.apply("+ \"data set@s\"");
    pool.snap("data set", "s")
}

fn full(snapshot: SnapshotName) -> SendSpec {
    SendSpec {
        source: SendSource::Full { snapshot },
        flags: SendFlags::default(),
    }
}

fn into(target: DatasetName) -> RecvSpec {
    RecvSpec {
        target: Some(target),
        unmounted: true,
        ..RecvSpec::default()
    }
}

fn snapshot_guids(pool: &TestPool, ds: DatasetName) -> Vec<(String, u64)> {
    let l = pool.zfs().list(&ListSpec::all(vec![ds])).unwrap();
    l[0].versions
        .iter()
        .map(|v| (v.name.short().to_owned(), v.guid.0))
        .collect()
}

#[test]
fn pipeline_splices_a_full_stream_between_pools() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    let snap = source(&src, 6 << 20);
    let zfs = src.zfs();
    let target = dst.ds("copy");
    let updates = Mutex::new(Vec::new());
    let progress = |b: u64, _e: Duration| updates.lock().unwrap().push(b);
    let outcome = Pipeline::run(
        zfs.send(&full(snap.clone())).unwrap(),
        zfs.receive(&into(target.clone())).unwrap(),
        &CopyOptions::default(),
        &progress,
        &CancelToken::new(),
    );
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.stats.method, CopyMethod::Splice);
    assert!(outcome.stats.bytes > 6 << 20, "{:?}", outcome.stats);
    assert_eq!(
        updates.lock().unwrap().last().copied(),
        Some(outcome.stats.bytes)
    );
    assert_eq!(
        snapshot_guids(&src, snap.dataset()),
        snapshot_guids(&dst, target),
        "the received snapshot keeps its guid"
    );
}

#[test]
fn pipeline_blames_a_refusing_receiver_not_the_broken_pipe() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    let snap = source(&src, 4 << 20);
    let zfs = src.zfs();
    let target = dst.ds("copy");
    let first = Pipeline::run(
        zfs.send(&full(snap.clone())).unwrap(),
        zfs.receive(&into(target.clone())).unwrap(),
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(first.is_ok(), "{first:?}");
    // Again without -F: zfs receive refuses after reading the header and
    // exits; we hit a broken pipe, which must not be the reported cause.
    let again = Pipeline::run(
        zfs.send(&full(snap)).unwrap(),
        zfs.receive(&into(target)).unwrap(),
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    match &again.cause {
        Some(PipelineError::Recv(e)) => assert_eq!(e.kind, ZfsErrorKind::TargetExists, "{e}"),
        other => panic!("cause {other:?}, outcome {again:?}"),
    }
    assert!(again.send.error().is_none(), "{:?}", again.send);
}

/// zfs-fuse leaves the temporary holds of a `zfs send -I` killed mid-ioctl
/// on every snapshot of its range, for good: an aborted send must end by
/// itself (its pipe closed) before any kill, so nothing stays held.
#[test]
fn an_aborted_send_leaves_no_hold_behind() {
    let src = TestPool::mounted();
    src.apply("+ d");
    for i in 1..=4 {
        for f in 0..4 {
            src.write("d", &format!("f{i}-{f}"), 1 << 20);
        }
        src.apply(&format!("+ d@s{i}"));
    }
    let zfs = src.zfs();
    let mut send = zfs
        .send(&SendSpec {
            source: SendSource::Incremental {
                from: VersionName::Snapshot(src.snap("d", "s1")),
                to: src.snap("d", "s4"),
                intermediates: true,
            },
            flags: SendFlags::default(),
        })
        .unwrap();
    // It runs, then stalls on a full pipe: nobody reads.
    let mut head = [0u8; 4096];
    std::io::Read::read_exact(&mut send, &mut head).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    send.abort();
    let held: Vec<(String, Option<u64>)> = zfs
        .list(&ListSpec::all(vec![src.ds("d")]))
        .unwrap()
        .iter()
        .flat_map(|d| d.snapshots())
        .map(|v| (v.name.short().to_owned(), v.userrefs))
        .collect();
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.iter().all(|h| h.1 == Some(0)), "{held:?}");
}
