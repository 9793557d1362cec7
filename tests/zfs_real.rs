//! Real-pool tests of the `zfs` command layer: every operation of `ZfsCli` on
//! file-backed pools, with names ZFS allows but shells mangle (spaces, `:`,
//! `.`, a leading `-`). These never skip: without ZFS, `TestPool::new`
//! fails the test (run `scripts/setup-zfs.sh` as root).
//!
//! Where the ZFS under test lacks a feature (zfs-fuse: bookmarks, resume
//! tokens, hold-tag listing, multi-snapshot, comma destroy), the test checks
//! that the command layer reports `Unsupported` or uses its fallback; the
//! feature itself is covered against the OpenZFS model in `zfsrepl_core::model`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure is the test failing

use zfsrepl_core::testing::TestPool;
use zfsrepl_core::zfs::{
    Capabilities, ListSpec, RecvSink, RecvSpec, SendFlags, SendSource, SendSpec, SendStream,
    VersionName, ZfsErrorKind, ZfsStream,
};
use zfsrepl_core::{DatasetName, EntityName, Guid, Runner, SnapshotName, ZfsRead, ZfsWrite};

const HOSTILE: &str = r#"
+ "with space"
+ "-leading dash"
+ "a:b.c_d"
+ "with space/child: x"
+ "with space@snap 1"
+ "with space/child: x@snap 1"
+ "-leading dash@-s"
"#;

/// The guid of an entity as `zfs get -Hp` prints it (independent check).
fn guid_of(name: &str) -> Guid {
    let out = std::process::Command::new("zfs")
        .args(["get", "-Hp", "-o", "value", "guid", "--", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Guid(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    )
}

#[test]
fn probe_matches_this_zfs() {
    let pool = TestPool::new();
    let zfs = pool.zfs();
    let caps = zfs.capabilities().clone();
    if caps.version.is_none() {
        // zfs-fuse: exactly what DESIGN.md §3 verified.
        let mut want = Capabilities::zfs_fuse();
        want.flavor.clone_from(&caps.flavor);
        assert_eq!(caps, want);
    } else {
        assert!(caps.list_parsable && caps.bookmarks, "{caps:?}");
    }
    assert!(
        zfs.runner().invocations() <= 4,
        "probe used {} processes",
        zfs.runner().invocations()
    );
}

#[test]
fn list_hostile_names_with_exact_numbers() {
    let pool = TestPool::new();
    pool.apply(HOSTILE);
    let zfs = pool.zfs();
    let before = zfs.runner().invocations();
    let list = zfs.list(&ListSpec::all(vec![pool.root()])).unwrap();
    assert_eq!(
        zfs.runner().invocations() - before,
        1,
        "one zfs process per root"
    );
    let names: Vec<&str> = list.iter().map(|d| d.name.as_str()).collect();
    let p = pool.name();
    assert_eq!(
        names,
        [
            p.to_string(),
            format!("{p}/-leading dash"),
            format!("{p}/a:b.c_d"),
            format!("{p}/with space"),
            format!("{p}/with space/child: x"),
        ]
    );
    let ws = &list[3];
    assert_eq!(ws.guid, guid_of(ws.name.as_str()));
    assert_eq!(ws.versions.len(), 1);
    let v = &ws.versions[0];
    assert_eq!(v.name.as_str(), format!("{p}/with space@snap 1"));
    assert_eq!(v.guid, guid_of(v.name.as_str()));
    assert_eq!(v.userrefs, Some(0));
    assert!(v.createtxg > ws.createtxg);
    assert!(v.creation > 1_600_000_000);
    // Non-recursive: only the root itself.
    let only = zfs
        .list(&ListSpec {
            recursive: false,
            ..ListSpec::all(vec![pool.ds("with space")])
        })
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].versions.len(), 1);
    // A missing root is NotFound.
    let err = zfs.list(&ListSpec::all(vec![pool.ds("nope")])).unwrap_err();
    assert_eq!(err.kind, ZfsErrorKind::NotFound, "{err}");
}

#[test]
fn snapshots_single_multi_and_recursive() {
    let pool = TestPool::new();
    pool.apply("+ a\n+ \"b c\"\n+ \"b c/-d\"");
    let zfs = pool.zfs();
    let caps = zfs.capabilities().clone();
    let snaps = [pool.snap("a", "m 1"), pool.snap("b c", "m 1")];
    let before = zfs.runner().invocations();
    zfs.snapshot(&snaps, &[("zfsrepl:owner".into(), "test".into())])
        .unwrap_or_else(|e| {
            // zfs-fuse's `snapshot -o` is listed in its usage; if a ZFS lacks it
            // the error must say so rather than pass silently.
            panic!("snapshot with -o: {e}")
        });
    let used = zfs.runner().invocations() - before;
    assert_eq!(used, if caps.multi_snapshot { 1 } else { 2 });
    zfs.snapshot_recursive(&pool.snap("b c", "r:1"), &[])
        .unwrap();
    let list = zfs.list(&ListSpec::all(vec![pool.root()])).unwrap();
    let find = |n: &str| {
        list.iter()
            .find(|d| d.name.as_str() == format!("{}/{n}", pool.name()))
            .unwrap()
    };
    assert_eq!(find("a").versions.len(), 1);
    assert_eq!(find("b c").versions.len(), 2);
    assert_eq!(
        find("b c/-d").versions[0].name.as_str(),
        format!("{}/b c/-d@r:1", pool.name())
    );
    // Snapshot props are set on the snapshot.
    let props = zfs
        .get_props(
            &[EntityName::Snapshot(snaps[0].clone())],
            &["zfsrepl:owner"],
            false,
        )
        .unwrap();
    assert_eq!(props[0].value, "test");
    assert_eq!(props[0].source, "local");
    // Taking it again: AlreadyExists.
    let err = zfs.snapshot(&snaps[..1], &[]).unwrap_err();
    assert_eq!(err.kind, ZfsErrorKind::AlreadyExists, "{err}");
}

#[test]
fn destroy_batch_reports_each_outcome_and_holds_protect() {
    let pool = TestPool::new();
    pool.apply("+ \"x y\"\n+ \"x y@1\"\n+ \"x y@2\"\n+ \"x y@3\"\n+ \"x y@4\"");
    let zfs = pool.zfs();
    let s = |n: &str| pool.snap("x y", n);
    zfs.hold("-keep me", &[s("2")]).unwrap();
    let list = zfs.list(&ListSpec::all(vec![pool.ds("x y")])).unwrap();
    assert_eq!(list[0].versions[1].userrefs, Some(1));
    match zfs.holds(&s("2")) {
        Ok(tags) => assert_eq!(tags, ["-keep me"]),
        Err(e) => {
            assert!(!zfs.capabilities().holds_list);
            assert_eq!(e.kind, ZfsErrorKind::Unsupported, "{e}");
        }
    }
    let missing = pool.snap("x y", "missing");
    let out = zfs.destroy_snapshots(&[s("1"), s("2"), missing.clone(), s("3")]);
    assert_eq!(out.len(), 4);
    assert!(out[0].1.is_ok());
    let held = out[1].1.as_ref().unwrap_err();
    assert!(
        matches!(held.kind, ZfsErrorKind::Busy | ZfsErrorKind::Held),
        "{held}"
    );
    assert_eq!(out[2].1.as_ref().unwrap_err().kind, ZfsErrorKind::NotFound);
    assert!(out[3].1.is_ok(), "a failure does not stop the batch");
    zfs.release("-keep me", &[s("2")]).unwrap();
    assert!(zfs.destroy_snapshots(&[s("2")])[0].1.is_ok());
    let left: Vec<String> = zfs.list(&ListSpec::all(vec![pool.ds("x y")])).unwrap()[0]
        .versions
        .iter()
        .map(|v| v.name.short().to_owned())
        .collect();
    assert_eq!(left, ["4"]);
}

#[test]
fn bookmarks_where_supported() {
    let pool = TestPool::new();
    pool.apply("+ a\n+ a@s");
    let zfs = pool.zfs();
    let bm = pool.ds("a").bookmark("b m").unwrap();
    let r = zfs.bookmark(&pool.snap("a", "s"), &bm);
    if zfs.capabilities().bookmarks {
        r.unwrap();
        let l = zfs.list(&ListSpec::all(vec![pool.ds("a")])).unwrap();
        assert!(l[0].versions.iter().any(|v| v.name.is_bookmark()));
        zfs.destroy_bookmark(&bm).unwrap();
    } else {
        // zfs-fuse has no bookmarks (nor resumable receive): covered by the
        // model's tests.
        if !zfs.capabilities().resumable {
            let e = zfs.receive_abort(&pool.ds("a")).unwrap_err();
            assert_eq!(e.kind, ZfsErrorKind::Unsupported);
        }
        assert_eq!(r.unwrap_err().kind, ZfsErrorKind::Unsupported);
        assert_eq!(
            zfs.destroy_bookmark(&bm).unwrap_err().kind,
            ZfsErrorKind::Unsupported
        );
    }
}

#[test]
fn clone_promote_rename_rollback() {
    let pool = TestPool::new();
    pool.apply("+ src\n+ src@a\n+ src@b");
    let zfs = pool.zfs();
    let clone = pool.ds("stage: clone");
    zfs.clone_snapshot(
        &pool.snap("src", "b"),
        &clone,
        &[("zfsrepl:role".into(), "staging".into())],
    )
    .unwrap();
    let l = zfs.list(&ListSpec::all(vec![pool.root()])).unwrap();
    let c = l.iter().find(|d| d.name == clone).unwrap();
    assert_eq!(c.origin.as_ref().unwrap(), &pool.snap("src", "b"));
    // Destroying the origin snapshot is refused while the clone exists.
    let out = zfs.destroy_snapshots(&[pool.snap("src", "b")]);
    assert_eq!(out[0].1.as_ref().unwrap_err().kind, ZfsErrorKind::HasClones);
    // Promote: the clone takes over the snapshots up to its origin.
    zfs.promote(&clone).unwrap();
    let l = zfs.list(&ListSpec::all(vec![pool.root()])).unwrap();
    let c = l.iter().find(|d| d.name == clone).unwrap();
    assert!(c.origin.is_none());
    assert_eq!(c.versions.len(), 2);
    let src = l.iter().find(|d| d.name == pool.ds("src")).unwrap();
    assert_eq!(src.origin.as_ref().unwrap().dataset(), clone);
    // Rename a snapshot, and an unmounted dataset.
    let from = EntityName::Snapshot(pool.snap("stage: clone", "a"));
    let to = EntityName::Snapshot(pool.snap("stage: clone", "a renamed"));
    zfs.rename(&from, &to).unwrap();
    // A mounted filesystem is "busy" to rename on zfs-fuse: use an
    // unmounted one.
    zfs.create(
        &pool.ds("plain"),
        &[("canmount".into(), "off".into())],
        false,
    )
    .unwrap();
    zfs.rename(
        &EntityName::Dataset(pool.ds("plain")),
        &EntityName::Dataset(pool.ds("-renamed")),
    )
    .unwrap();
    // Rollback: to the latest is fine; to an older one needs destroy_newer.
    pool.apply("+ \"-renamed@1\"\n+ \"-renamed@2\"");
    zfs.rollback(&pool.snap("-renamed", "2"), false).unwrap();
    let err = zfs
        .rollback(&pool.snap("-renamed", "1"), false)
        .unwrap_err();
    assert_eq!(err.kind, ZfsErrorKind::TargetHasNewerSnapshots, "{err}");
    zfs.rollback(&pool.snap("-renamed", "1"), true).unwrap();
    let l = zfs.list(&ListSpec::all(vec![pool.ds("-renamed")])).unwrap();
    assert_eq!(l[0].versions.len(), 1);
}

#[test]
fn create_destroy_and_user_properties() {
    let pool = TestPool::new();
    let zfs = pool.zfs();
    let parent = pool.ds("p q");
    let child = pool.ds("p q/-c");
    zfs.create(&child, &[("zfsrepl:x".into(), "it's $(x); y".into())], true)
        .unwrap();
    let err = zfs.create(&child, &[], false).unwrap_err();
    assert_eq!(err.kind, ZfsErrorKind::AlreadyExists);
    let pe = EntityName::Dataset(parent.clone());
    let ce = EntityName::Dataset(child.clone());
    zfs.set_props(&pe, &[("zfsrepl:owner".into(), "-dash value".into())])
        .unwrap();
    let got = zfs
        .get_props(
            std::slice::from_ref(&ce),
            &["zfsrepl:owner", "zfsrepl:x"],
            false,
        )
        .unwrap();
    assert_eq!(got[0].value, "-dash value");
    assert!(
        got[0].source.starts_with("inherited from"),
        "{}",
        got[0].source
    );
    assert_eq!(got[1].value, "it's $(x); y");
    let listed = zfs
        .list(&ListSpec {
            user_props: vec!["zfsrepl:owner".into()],
            ..ListSpec::all(vec![parent.clone()])
        })
        .unwrap();
    assert_eq!(listed[1].user_props["zfsrepl:owner"], "-dash value");
    zfs.inherit(&pe, "zfsrepl:owner").unwrap();
    let got = zfs.get_props(&[ce], &["zfsrepl:owner"], false).unwrap();
    assert_eq!(got[0].value, "-");
    let err = zfs.destroy_dataset(&parent, false).unwrap_err();
    assert_eq!(err.kind, ZfsErrorKind::HasChildren, "{err}");
    // zfs-fuse reports a just-created mounted filesystem as busy for a
    // moment; Busy is a transient kind, retried here as the daemon would.
    let mut r = zfs.destroy_dataset(&parent, true);
    for _ in 0..50 {
        match &r {
            Err(e) if e.kind == ZfsErrorKind::Busy => {
                std::thread::sleep(std::time::Duration::from_millis(200));
                r = zfs.destroy_dataset(&parent, true);
            }
            _ => break,
        }
    }
    r.unwrap();
    assert!(zfs.list(&ListSpec::all(vec![parent])).is_err());
}

fn pipe<S: SendStream, R: RecvSink>(
    mut send: S,
    mut recv: R,
) -> (
    Result<(), zfsrepl_core::ZfsError>,
    Result<(), zfsrepl_core::ZfsError>,
) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = send.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if recv.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let r = recv.finish();
    let s = send.finish();
    (s, r)
}

#[test]
fn send_receive_full_and_incremental_keep_guids() {
    let src = TestPool::mounted();
    let dst = TestPool::mounted();
    src.apply("+ \"data set\"");
    src.write("data set", "f1", 300_000);
    src.apply("+ \"data set@s 1\"");
    src.write("data set", "f2", 200_000);
    src.apply("+ \"data set@s 2\"\n+ \"data set@s 3\"");
    let zfs = src.zfs();
    let target = dst.ds("-copy: of");
    let full = SendSpec {
        source: SendSource::Full {
            snapshot: src.snap("data set", "s 1"),
        },
        flags: SendFlags::default(),
    };
    let recv = RecvSpec {
        target: Some(target.clone()),
        unmounted: true,
        ..RecvSpec::default()
    };
    let (s, r) = pipe(zfs.send(&full).unwrap(), zfs.receive(&recv).unwrap());
    s.unwrap();
    r.unwrap();
    // Again, without -F: the target exists.
    let (_, r) = pipe(zfs.send(&full).unwrap(), zfs.receive(&recv).unwrap());
    let e = r.unwrap_err();
    assert_eq!(e.kind, ZfsErrorKind::TargetExists, "{e}");
    // Incremental with intermediates.
    let inc = SendSpec {
        source: SendSource::Incremental {
            from: VersionName::Snapshot(src.snap("data set", "s 1")),
            to: src.snap("data set", "s 3"),
            intermediates: true,
        },
        flags: SendFlags::default(),
    };
    let (s, r) = pipe(zfs.send(&inc).unwrap(), zfs.receive(&recv).unwrap());
    s.unwrap();
    r.unwrap();
    let l = zfs
        .list(&ListSpec::all(vec![src.ds("data set"), target.clone()]))
        .unwrap();
    let guids = |d: &zfsrepl_core::Dataset| {
        d.versions
            .iter()
            .map(|v| (v.name.short().to_owned(), v.guid))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        guids(&l[0]),
        guids(&l[1]),
        "received snapshots keep their guids"
    );
    assert_eq!(l[1].versions.len(), 3);
    // recv -u: not mounted.
    let m = zfs
        .get_props(&[EntityName::Dataset(target.clone())], &["mounted"], false)
        .unwrap();
    assert_eq!(m[0].value, "no");
    // An incremental whose base the target lacks: a target with other
    // history. (Into a target that does not exist at all, zfs-fuse exits 0
    // and creates nothing; OpenZFS refuses. The replication planner never
    // sends an incremental to a missing target.)
    src.apply("+ \"data set@s 4\"");
    let other_ds = dst.ds("other");
    let zfs_dst = dst.zfs();
    zfs_dst.create(&other_ds, &[], false).unwrap();
    zfs_dst
        .snapshot(&[other_ds.snapshot("x").unwrap()], &[])
        .unwrap();
    let bad = SendSpec {
        source: SendSource::Incremental {
            from: VersionName::Snapshot(src.snap("data set", "s 3")),
            to: src.snap("data set", "s 4"),
            intermediates: false,
        },
        flags: SendFlags::default(),
    };
    let other = RecvSpec {
        target: Some(other_ds),
        ..RecvSpec::default()
    };
    let (_, r) = pipe(zfs.send(&bad).unwrap(), zfs.receive(&other).unwrap());
    let e = r.unwrap_err();
    assert_eq!(e.kind, ZfsErrorKind::MissingBase, "{e}");
    // Flags zfs-fuse lacks are refused before anything runs.
    if !zfs.capabilities().send_compressed {
        let c = SendSpec {
            flags: SendFlags {
                compressed: true,
                ..SendFlags::default()
            },
            ..full.clone()
        };
        assert_eq!(zfs.send(&c).unwrap_err().kind, ZfsErrorKind::Unsupported);
    }
    if !zfs.capabilities().resumable {
        let r = RecvSpec {
            resumable: true,
            ..recv.clone()
        };
        assert_eq!(zfs.receive(&r).unwrap_err().kind, ZfsErrorKind::Unsupported);
    }
}

#[test]
fn send_fd_is_a_pipe_for_splice() {
    let pool = TestPool::new();
    pool.apply("+ a\n+ a@s");
    let zfs = pool.zfs();
    let send = zfs
        .send(&SendSpec {
            source: SendSource::Full {
                snapshot: pool.snap("a", "s"),
            },
            flags: SendFlags::default(),
        })
        .unwrap();
    let fd = send.raw_fd().unwrap();
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(meta.file_type().is_fifo());
    send.abort();
}

#[test]
fn listing_200_datasets_costs_one_process() {
    let pool = TestPool::with_size(512 << 20);
    let zfs = pool.zfs();
    let root = pool.ds("many");
    zfs.create(&root, &[("canmount".into(), "off".into())], false)
        .unwrap();
    let children: Vec<DatasetName> = (0..200)
        .map(|i| root.child(&format!("ds {i}")).unwrap())
        .collect();
    for c in &children {
        zfs.create(c, &[("canmount".into(), "off".into())], false)
            .unwrap();
    }
    for n in 0..5 {
        zfs.snapshot_recursive(&root.snapshot(&format!("s{n}")).unwrap(), &[])
            .unwrap();
    }
    let before = zfs.runner().invocations();
    let list = zfs.list(&ListSpec::all(vec![root.clone()])).unwrap();
    assert_eq!(
        zfs.runner().invocations() - before,
        1,
        "200 datasets x 5 snapshots: one zfs process"
    );
    assert_eq!(list.len(), 201);
    assert!(list.iter().all(|d| d.versions.len() == 5));
    let snaps: usize = list.iter().map(|d| d.versions.len()).sum();
    assert_eq!(snaps, 1005);
    let _: Vec<SnapshotName> = Vec::new();
}

#[test]
fn capabilities_are_probed_once_per_host() {
    let _pool = TestPool::new();
    let cache = zfsrepl_core::zfs::CapsCache::new();
    let runner = zfsrepl_core::zfs::LocalRunner::new();
    let a = zfsrepl_core::ZfsCli::probe_cached(&runner, "zfs", &cache).unwrap();
    let after_first = runner.invocations();
    assert!(after_first >= 1);
    let b = zfsrepl_core::ZfsCli::probe_cached(&runner, "zfs", &cache).unwrap();
    assert_eq!(
        runner.invocations(),
        after_first,
        "second probe came from the cache"
    );
    assert_eq!(a.capabilities(), b.capabilities());
}
