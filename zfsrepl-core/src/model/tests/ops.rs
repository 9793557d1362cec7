//! Each write operation's rules, the read operations, and the process
//! counts, as tables where the cases share a shape.

use crate::model::FakeZfs;
use crate::zfs::{Capabilities, ListSpec, ZfsErrorKind as K, ZfsRead, ZfsResult, ZfsWrite};

use super::{bm, dataset, ds, en, failure, kind, prop, props, sn, snap_names, snaps};

/// The tree most cases start from.
const BASE: &str = "\
+ p
+ p/a
+ p/a@s1
~ p/a bytes=1000
+ p/a@s2
+ p/a/child
+ p/b
+ p/vol type=volume
";

type Case = (
    &'static str,
    &'static str,
    fn(&FakeZfs) -> ZfsResult<()>,
    Option<K>,
    &'static str,
);

/// Runs cases: each on `BASE` plus its own fixture lines; checks the
/// outcome's kind and that the message (or the dump, on success)
/// contains the text given.
fn run(cases: &[Case]) {
    for (label, extra, op, want, text) in cases {
        let z = FakeZfs::from_fixture(&format!("{BASE}{extra}"));
        match (op(&z), want) {
            (Ok(()), None) => {
                let dump = z.dump();
                assert!(dump.contains(text), "{label}: dump lacks {text:?}:\n{dump}");
            }
            (Err(e), Some(k)) => {
                assert_eq!(&e.kind, k, "{label}: {e}");
                assert!(
                    e.stderr.contains(text),
                    "{label}: {:?} lacks {text:?}",
                    e.stderr
                );
            }
            (r, _) => panic!("{label}: got {r:?}, want {want:?}"),
        }
    }
}

#[test]
fn create() {
    run(&[
        (
            "new",
            "",
            |z| z.create(&ds("p/new"), &[], false),
            None,
            "+ p/new\n",
        ),
        (
            "with props",
            "",
            |z| z.create(&ds("p/new"), &props(&[("zfsrepl:x", "1")]), false),
            None,
            "+ p/new zfsrepl:x=1\n",
        ),
        (
            "parents",
            "",
            |z| z.create(&ds("p/x/y"), &[], true),
            None,
            "+ p/x\n+ p/x/y\n",
        ),
        (
            "exists",
            "",
            |z| z.create(&ds("p/a"), &[], false),
            Some(K::AlreadyExists),
            "cannot create 'p/a': dataset already exists",
        ),
        (
            "no parent",
            "",
            |z| z.create(&ds("p/x/y"), &[], false),
            Some(K::NotFound),
            "cannot create 'p/x/y': parent does not exist",
        ),
        (
            "no pool",
            "",
            |z| z.create(&ds("q/x"), &[], true),
            Some(K::NotFound),
            "no such pool 'q'",
        ),
        (
            "below a volume",
            "",
            |z| z.create(&ds("p/vol/x"), &[], true),
            Some(K::InvalidArgument),
            "parent 'p/vol' is not a filesystem",
        ),
        (
            "bad property",
            "",
            |z| z.create(&ds("p/n"), &props(&[("nope", "1")]), false),
            Some(K::InvalidArgument),
            "invalid property 'nope'",
        ),
        (
            "readonly property",
            "",
            |z| z.create(&ds("p/n"), &props(&[("guid", "1")]), false),
            Some(K::InvalidArgument),
            "'guid' is readonly",
        ),
        (
            "bad value",
            "",
            |z| z.create(&ds("p/n"), &props(&[("readonly", "yes")]), false),
            Some(K::InvalidArgument),
            "must be one of",
        ),
    ]);
}

#[test]
fn snapshot() {
    run(&[
        (
            "two at once",
            "",
            |z| z.snapshot(&[sn("p/a@n"), sn("p/b@n")], &[]),
            None,
            "+ p/a@n\n",
        ),
        (
            "with a user property",
            "",
            |z| z.snapshot(&[sn("p/b@n")], &props(&[("zfsrepl:k", "v")])),
            None,
            "+ p/b@n zfsrepl:k=v\n",
        ),
        (
            "exists",
            "",
            |z| z.snapshot(&[sn("p/a@s1")], &[]),
            Some(K::AlreadyExists),
            "cannot create snapshot 'p/a@s1': dataset already exists",
        ),
        (
            "no dataset",
            "",
            |z| z.snapshot(&[sn("p/nope@n")], &[]),
            Some(K::NotFound),
            "cannot open 'p/nope': dataset does not exist",
        ),
        (
            "same fs twice",
            "",
            |z| z.snapshot(&[sn("p/a@n"), sn("p/a@m")], &[]),
            Some(K::InvalidArgument),
            "multiple snapshots of same fs",
        ),
        (
            "two pools",
            "+ q\n+ q/a\n",
            |z| z.snapshot(&[sn("p/a@n"), sn("q/a@n")], &[]),
            Some(K::InvalidArgument),
            "same pool",
        ),
        (
            "native property",
            "",
            |z| z.snapshot(&[sn("p/a@n")], &props(&[("readonly", "on")])),
            Some(K::InvalidArgument),
            "can not be modified for snapshots",
        ),
        (
            "recursive",
            "",
            |z| z.snapshot_recursive(&sn("p/a@r"), &[]),
            None,
            "+ p/a@r\n+ p/a/child\n+ p/a/child@r\n",
        ),
        (
            "recursive clash",
            "+ p/a/child@r\n",
            |z| z.snapshot_recursive(&sn("p/a@r"), &[]),
            Some(K::AlreadyExists),
            "'p/a/child@r'",
        ),
        (
            "recursive no root",
            "",
            |z| z.snapshot_recursive(&sn("p/x@r"), &[]),
            Some(K::NotFound),
            "cannot open 'p/x'",
        ),
    ]);
}

#[test]
fn snapshot_batches_are_atomic_on_openzfs_and_one_by_one_on_zfs_fuse() {
    let z = FakeZfs::from_fixture(BASE);
    z.reset_calls();
    assert_eq!(
        kind(z.snapshot(&[sn("p/b@n"), sn("p/a@s1")], &[])),
        K::AlreadyExists
    );
    z.snapshot(&[sn("p/a@n"), sn("p/b@n"), sn("p/a/child@n")], &[])
        .unwrap();
    assert_eq!(z.calls(), 2);
    assert_eq!(
        snap_names(&z, "p/b"),
        ["n"],
        "lzc_snapshot took none when one failed"
    );
    let txgs: Vec<u64> = ["p/a", "p/b", "p/a/child"]
        .iter()
        .map(|d| dataset(&z, d).snapshots().last().unwrap().createtxg.0)
        .collect();
    assert!(
        txgs.iter().all(|t| *t == txgs[0]),
        "one txg for all: {txgs:?}"
    );

    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture(BASE).unwrap();
    assert_eq!(
        kind(f.snapshot(&[sn("p/b@n"), sn("p/a@s1"), sn("p/a/child@n")], &[])),
        K::AlreadyExists
    );
    assert_eq!(f.calls(), 2, "one process per snapshot, up to the failure");
    assert_eq!(snap_names(&f, "p/b"), ["n"], "one by one: the first stays");
    assert!(
        snap_names(&f, "p/a/child").is_empty(),
        "stops at the first failure"
    );
    f.reset_calls();
    f.snapshot(&[sn("p/a@m"), sn("p/b@m")], &[]).unwrap();
    assert_eq!(f.calls(), 2);
}

#[test]
fn destroy_snapshots_per_snapshot_outcomes() {
    let fixture = format!("{BASE}+ p/a@s3 hold=keep\n+ p/clone origin=p/a@s2\n+ p/b@x\n+ p/b@y\n");
    // OpenZFS: one comma list per dataset, atomic, missing names skipped.
    let z = FakeZfs::from_fixture(&fixture);
    let out = z.destroy_snapshots(&[
        sn("p/b@x"),
        sn("p/b@gone"),
        sn("p/a@s1"),
        sn("p/a@s2"),
        sn("p/a@s3"),
        sn("p/b@y"),
    ]);
    let kinds: Vec<(String, Option<K>)> = out
        .iter()
        .map(|(s, r)| (s.to_string(), r.as_ref().err().map(|e| e.kind.clone())))
        .collect();
    assert_eq!(
        kinds,
        [
            ("p/b@x".into(), None),
            ("p/b@gone".into(), None),
            ("p/a@s1".into(), Some(K::Busy)),
            ("p/a@s2".into(), Some(K::HasClones)),
            ("p/a@s3".into(), Some(K::Held)),
            ("p/b@y".into(), None),
        ]
    );
    assert_eq!(z.calls(), 2, "one process per dataset");
    assert!(snap_names(&z, "p/b").is_empty());
    assert_eq!(
        snap_names(&z, "p/a"),
        ["s1", "s2", "s3"],
        "the failed list destroyed nothing"
    );
    let (_, msg) = failure(out[4].1.clone());
    assert_eq!(msg, "cannot destroy snapshot p/a@s3: dataset is busy");
    let (_, msg) = failure(out[3].1.clone());
    assert!(
        msg.starts_with("cannot destroy 'p/a@s2': snapshot has dependent clones\nuse '-R'"),
        "{msg}"
    );
    assert!(msg.ends_with("\np/clone"), "{msg}");
    let out = z.destroy_snapshots(&[sn("p/b@none"), sn("p/b@zip")]);
    assert!(
        out.iter()
            .all(|(_, r)| r.as_ref().is_err_and(|e| e.kind == K::NotFound)),
        "{out:?}"
    );

    // zfs-fuse: one process per snapshot, each on its own.
    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture(&fixture).unwrap();
    let out = f.destroy_snapshots(&[
        sn("p/b@x"),
        sn("p/b@gone"),
        sn("p/a@s1"),
        sn("p/a@s2"),
        sn("p/a@s3"),
    ]);
    let kinds: Vec<Option<K>> = out
        .iter()
        .map(|(_, r)| r.as_ref().err().map(|e| e.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            Some(K::NotFound),
            None,
            Some(K::HasClones),
            Some(K::Held)
        ]
    );
    assert_eq!(f.calls(), 5);
    assert_eq!(snap_names(&f, "p/a"), ["s2", "s3"]);
}

#[test]
fn destroy_dataset() {
    run(&[
        (
            "leaf",
            "",
            |z| z.destroy_dataset(&ds("p/b"), false),
            None,
            "+ p/a/child\n+ p/vol",
        ),
        (
            "children",
            "",
            |z| z.destroy_dataset(&ds("p/a"), false),
            Some(K::HasChildren),
            "cannot destroy 'p/a': filesystem has children\nuse '-r' to destroy the following datasets:\np/a/child\np/a@s1\np/a@s2",
        ),
        (
            "snapshots only",
            "+ p/b@x\n",
            |z| z.destroy_dataset(&ds("p/b"), false),
            Some(K::HasChildren),
            "p/b@x",
        ),
        (
            "recursive",
            "",
            |z| z.destroy_dataset(&ds("p/a"), true),
            None,
            "+ p\n+ p/b\n+ p/vol",
        ),
        (
            "clone elsewhere",
            "+ p/clone origin=p/a@s1\n",
            |z| z.destroy_dataset(&ds("p/a"), true),
            Some(K::HasClones),
            "filesystem has dependent clones\nuse '-R' to destroy the following datasets:\np/clone",
        ),
        (
            "clone inside",
            "+ p/a/clone origin=p/a@s1\n",
            |z| z.destroy_dataset(&ds("p/a"), true),
            None,
            "+ p\n+ p/b\n",
        ),
        (
            "held",
            "+ p/a/child@h hold=t\n",
            |z| z.destroy_dataset(&ds("p/a"), true),
            Some(K::Held),
            "cannot destroy snapshot p/a/child@h: dataset is busy",
        ),
        (
            "missing",
            "",
            |z| z.destroy_dataset(&ds("p/x"), true),
            Some(K::NotFound),
            "cannot open 'p/x': dataset does not exist",
        ),
        (
            "pool",
            "",
            |z| z.destroy_dataset(&ds("p"), false),
            Some(K::InvalidArgument),
            "operation does not apply to pools",
        ),
        (
            "pool recursive",
            "+ p@top\n",
            |z| z.destroy_dataset(&ds("p"), true),
            None,
            "+ p\n",
        ),
    ]);
    let z = FakeZfs::from_fixture(&format!("{BASE}+ p@top\n"));
    z.destroy_dataset(&ds("p"), true).unwrap();
    assert_eq!(
        z.dump(),
        "+ p\n",
        "-r on a pool empties it and keeps its root"
    );
}

#[test]
fn holds() {
    run(&[
        (
            "hold",
            "",
            |z| z.hold("keep", &[sn("p/a@s1"), sn("p/a@s2")]),
            None,
            "+ p/a@s1 hold=keep\n",
        ),
        (
            "twice",
            "+ p/a@h hold=keep\n",
            |z| z.hold("keep", &[sn("p/a@s1"), sn("p/a@h")]),
            Some(K::AlreadyExists),
            "cannot hold snapshot 'p/a@h': tag already exists on this dataset",
        ),
        (
            "missing",
            "",
            |z| z.hold("keep", &[sn("p/a@none")]),
            Some(K::NotFound),
            "'p/a@none'",
        ),
        (
            "release",
            "+ p/a@h hold=keep\n",
            |z| z.release("keep", &[sn("p/a@h")]),
            None,
            "+ p/a@h\n",
        ),
        (
            "release no tag",
            "",
            |z| z.release("keep", &[sn("p/a@s1")]),
            Some(K::NotFound),
            "cannot release hold from snapshot 'p/a@s1': no such tag on this dataset",
        ),
        (
            "long tag",
            "",
            |z| z.hold(&"t".repeat(256), &[sn("p/a@s1")]),
            Some(K::InvalidArgument),
            "tag too long",
        ),
    ]);
    let z = FakeZfs::from_fixture(BASE);
    // All or none: the second snapshot fails, the first gets no hold.
    assert_eq!(kind(z.hold("t", &[sn("p/a@s1"), sn("p/a@x")])), K::NotFound);
    assert!(z.holds(&sn("p/a@s1")).unwrap().is_empty());
    z.hold("b", &[sn("p/a@s1")]).unwrap();
    z.hold("a", &[sn("p/a@s1")]).unwrap();
    assert_eq!(z.holds(&sn("p/a@s1")).unwrap(), ["a", "b"]);
    assert_eq!(
        dataset(&z, "p/a").snapshots().next().unwrap().userrefs,
        Some(2)
    );
    assert_eq!(prop(&z, "p/a@s1", "userrefs").0, "2");

    // zfs-fuse holds, but cannot list the tags: read userrefs instead.
    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture(BASE).unwrap();
    f.hold("t", &[sn("p/a@s1")]).unwrap();
    let calls = f.calls();
    assert_eq!(kind(f.holds(&sn("p/a@s1"))), K::Unsupported);
    assert_eq!(f.calls(), calls, "refused before running anything");
    assert_eq!(
        dataset(&f, "p/a").snapshots().next().unwrap().userrefs,
        Some(1)
    );
}

#[test]
fn bookmarks() {
    run(&[
        (
            "create",
            "",
            |z| z.bookmark(&sn("p/a@s1"), &bm("p/a#m")),
            None,
            "+ p/a@s1\n+ p/a#m\n+ p/a@s2\n",
        ),
        (
            "exists",
            "+ p/a#s1\n",
            |z| z.bookmark(&sn("p/a@s2"), &bm("p/a#s1")),
            Some(K::AlreadyExists),
            "bookmark exists",
        ),
        (
            "no snapshot",
            "",
            |z| z.bookmark(&sn("p/a@x"), &bm("p/a#x")),
            Some(K::NotFound),
            "'p/a@x'",
        ),
        (
            "other dataset",
            "",
            |z| z.bookmark(&sn("p/a@s1"), &bm("p/b#x")),
            Some(K::InvalidArgument),
            "source is not an ancestor",
        ),
        (
            "destroy",
            "+ p/a#s1\n",
            |z| z.destroy_bookmark(&bm("p/a#s1")),
            None,
            "+ p/a@s1\n+ p/a@s2\n",
        ),
        (
            "destroy missing",
            "",
            |z| z.destroy_bookmark(&bm("p/a#s1")),
            Some(K::NotFound),
            "bookmark 'p/a#s1' does not exist",
        ),
    ]);
    // A bookmark outlives its snapshot with the same identity.
    let z = FakeZfs::from_fixture(BASE);
    let before = dataset(&z, "p/a").snapshots().next().unwrap().clone();
    z.bookmark(&sn("p/a@s1"), &bm("p/a#s1")).unwrap();
    z.destroy_snapshots(&[sn("p/a@s1")]);
    let mark = dataset(&z, "p/a").bookmarks().next().unwrap().clone();
    assert_eq!(
        (mark.guid, mark.createtxg, mark.creation),
        (before.guid, before.createtxg, before.creation)
    );
    assert_eq!(mark.userrefs, None);

    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture(BASE).unwrap();
    f.reset_calls();
    assert_eq!(
        kind(f.bookmark(&sn("p/a@s1"), &bm("p/a#s1"))),
        K::Unsupported
    );
    assert_eq!(kind(f.destroy_bookmark(&bm("p/a#s1"))), K::Unsupported);
    assert_eq!(f.calls(), 0);
}

#[test]
fn clone_and_promote() {
    run(&[
        (
            "clone",
            "",
            |z| z.clone_snapshot(&sn("p/a@s1"), &ds("p/c"), &props(&[("zfsrepl:x", "1")])),
            None,
            "+ p/c origin=p/a@s1 zfsrepl:x=1\n",
        ),
        (
            "exists",
            "",
            |z| z.clone_snapshot(&sn("p/a@s1"), &ds("p/b"), &[]),
            Some(K::AlreadyExists),
            "cannot create 'p/b': dataset already exists",
        ),
        (
            "no parent",
            "",
            |z| z.clone_snapshot(&sn("p/a@s1"), &ds("p/x/c"), &[]),
            Some(K::NotFound),
            "parent does not exist",
        ),
        (
            "other pool",
            "+ q\n",
            |z| z.clone_snapshot(&sn("p/a@s1"), &ds("q/c"), &[]),
            Some(K::InvalidArgument),
            "source and target pools differ",
        ),
        (
            "no snapshot",
            "",
            |z| z.clone_snapshot(&sn("p/a@x"), &ds("p/c"), &[]),
            Some(K::NotFound),
            "'p/a@x'",
        ),
        (
            "promote a non-clone",
            "",
            |z| z.promote(&ds("p/a")),
            Some(K::InvalidArgument),
            "cannot promote 'p/a': not a cloned filesystem",
        ),
        (
            "promote clash",
            "+ p/c origin=p/a@s2\n+ p/c@s1\n",
            |z| z.promote(&ds("p/c")),
            Some(K::AlreadyExists),
            "snapshot name 's1' from origin",
        ),
    ]);
    let z = FakeZfs::from_fixture(&format!(
        "{BASE}+ p/a@s3\n+ p/c origin=p/a@s2\n~ p/c\n+ p/c@own\n+ p/d origin=p/a@s1\n+ p/e origin=p/a@s3\n"
    ));
    let guids_before = snaps(&z, "p/a");
    // The clone has the data of its origin.
    assert_eq!(prop(&z, "p/c", "origin").0, "p/a@s2");
    z.promote(&ds("p/c")).unwrap();
    assert_eq!(
        snap_names(&z, "p/c"),
        ["s1", "s2", "own"],
        "snapshots up to the origin move, guids kept"
    );
    assert_eq!(snaps(&z, "p/c")[..2], guids_before[..2]);
    assert_eq!(snap_names(&z, "p/a"), ["s3"]);
    assert_eq!(dataset(&z, "p/c").origin, None);
    assert_eq!(dataset(&z, "p/a").origin, Some(sn("p/c@s2")));
    assert_eq!(
        dataset(&z, "p/d").origin,
        Some(sn("p/c@s1")),
        "other clones follow their snapshot"
    );
    assert_eq!(dataset(&z, "p/e").origin, Some(sn("p/a@s3")));
    // Now the old origin can go, and the snapshots it depended on cannot.
    assert_eq!(kind(z.destroy_dataset(&ds("p/c"), true)), K::HasClones);
    z.destroy_dataset(&ds("p/e"), false).unwrap();
    z.destroy_dataset(&ds("p/a"), true).unwrap();
}

#[test]
fn rename() {
    run(&[
        (
            "dataset and below",
            "+ p/a/child@x\n",
            |z| z.rename(&en("p/a"), &en("p/z")),
            None,
            "+ p/z\n+ p/z@s1\n+ p/z@s2\n+ p/z/child\n+ p/z/child@x\n",
        ),
        (
            "exists",
            "",
            |z| z.rename(&en("p/a"), &en("p/b")),
            Some(K::AlreadyExists),
            "cannot rename to 'p/b': dataset already exists",
        ),
        (
            "other pool",
            "+ q\n",
            |z| z.rename(&en("p/a"), &en("q/a")),
            Some(K::InvalidArgument),
            "datasets must be within same pool",
        ),
        (
            "into itself",
            "",
            |z| z.rename(&en("p/a"), &en("p/a/child/x")),
            Some(K::InvalidArgument),
            "cannot be a descendant",
        ),
        (
            "no parent",
            "",
            |z| z.rename(&en("p/a"), &en("p/x/y")),
            Some(K::NotFound),
            "parent does not exist",
        ),
        (
            "missing",
            "",
            |z| z.rename(&en("p/x"), &en("p/y")),
            Some(K::NotFound),
            "cannot open 'p/x'",
        ),
        (
            "snapshot",
            "",
            |z| z.rename(&en("p/a@s1"), &en("p/a@first")),
            None,
            "+ p/a@first\n+ p/a@s2\n",
        ),
        (
            "snapshot clash",
            "",
            |z| z.rename(&en("p/a@s1"), &en("p/a@s2")),
            Some(K::AlreadyExists),
            "'p/a@s2'",
        ),
        (
            "snapshot elsewhere",
            "",
            |z| z.rename(&en("p/a@s1"), &en("p/b@s1")),
            Some(K::InvalidArgument),
            "snapshots must be part of same dataset",
        ),
        (
            "bookmark",
            "+ p/a#s1\n",
            |z| z.rename(&en("p/a#s1"), &en("p/a#x")),
            Some(K::InvalidArgument),
            "not applicable",
        ),
        (
            "kinds",
            "",
            |z| z.rename(&en("p/a"), &en("p/a@x")),
            Some(K::InvalidArgument),
            "mismatch",
        ),
    ]);
    let z = FakeZfs::from_fixture(&format!("{BASE}+ p/c origin=p/a@s1\n"));
    let guids = snaps(&z, "p/a");
    z.rename(&en("p/a"), &en("p/b/moved")).unwrap();
    assert_eq!(snaps(&z, "p/b/moved"), guids, "a rename keeps guids");
    assert_eq!(
        dataset(&z, "p/c").origin,
        Some(sn("p/b/moved@s1")),
        "clones follow their origin"
    );
    z.rename(&en("p/b/moved@s1"), &en("p/b/moved@one")).unwrap();
    assert_eq!(dataset(&z, "p/c").origin, Some(sn("p/b/moved@one")));

    // zfs-fuse cannot unmount a mounted clone to rename it.
    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture(&format!(
        "{BASE}+ p/c origin=p/a@s1\n+ p/d origin=p/a@s1 mounted=no\n"
    ))
    .unwrap();
    let (k, msg) = failure(f.rename(&en("p/c"), &en("p/c2")));
    assert_eq!(
        (k, msg.as_str()),
        (K::Busy, "cannot rename 'p/c': dataset is busy")
    );
    f.rename(&en("p/d"), &en("p/d2")).unwrap();
}

#[test]
fn rollback() {
    run(&[
        (
            "latest",
            "~ p/a\n",
            |z| z.rollback(&sn("p/a@s2"), false),
            None,
            "+ p/a@s2\n",
        ),
        (
            "older",
            "",
            |z| z.rollback(&sn("p/a@s1"), false),
            Some(K::TargetHasNewerSnapshots),
            "cannot rollback to 'p/a@s1': more recent snapshots or bookmarks exist\nuse '-r' to force deletion of the following snapshots and bookmarks:\np/a@s2",
        ),
        (
            "older -r",
            "+ p/a#s2\n",
            |z| z.rollback(&sn("p/a@s1"), true),
            None,
            "+ p/a@s1\n+ p/a/child",
        ),
        (
            "newer bookmark",
            "+ p/a#s2\n",
            |z| {
                z.destroy_snapshots(&[sn("p/a@s2")]);
                z.rollback(&sn("p/a@s1"), false)
            },
            Some(K::TargetHasNewerSnapshots),
            "p/a#s2",
        ),
        (
            "clones",
            "+ p/c origin=p/a@s2\n",
            |z| z.rollback(&sn("p/a@s1"), true),
            Some(K::HasClones),
            "clones of previous snapshots exist\nuse '-R' to force deletion of the following clones and dependents:\np/c",
        ),
        (
            "held",
            "+ p/a@s3 hold=k\n",
            |z| z.rollback(&sn("p/a@s1"), true),
            Some(K::Held),
            "p/a@s3: dataset is busy",
        ),
        (
            "missing",
            "",
            |z| z.rollback(&sn("p/a@x"), true),
            Some(K::NotFound),
            "'p/a@x'",
        ),
    ]);
    let z = FakeZfs::from_fixture(BASE);
    let at_s1 = prop(&z, "p/a@s1", "referenced").0;
    z.write("p/a", 5);
    z.rollback(&sn("p/a@s1"), true).unwrap();
    assert_eq!(
        prop(&z, "p/a", "referenced").0,
        at_s1,
        "the data is the snapshot's again"
    );
    // Unmodified again: an incremental receive would now apply.
    assert_eq!(snap_names(&z, "p/a"), ["s1"]);
}

#[test]
fn properties_and_inheritance() {
    let z = FakeZfs::from_fixture(&format!("{BASE}+ p/a/child/deep\n"));
    z.set_props(
        &en("p/a"),
        &props(&[("zfsrepl:keep", "3"), ("mountpoint", "/srv/a b")]),
    )
    .unwrap();
    assert_eq!(
        prop(&z, "p/a", "zfsrepl:keep"),
        ("3".into(), "local".into())
    );
    assert_eq!(
        prop(&z, "p/a/child/deep", "zfsrepl:keep"),
        ("3".into(), "inherited from p/a".into())
    );
    assert_eq!(
        prop(&z, "p/a/child/deep", "mountpoint"),
        ("/srv/a b/child/deep".into(), "inherited from p/a".into())
    );
    assert_eq!(
        prop(&z, "p/b", "mountpoint"),
        ("/p/b".into(), "default".into())
    );
    assert_eq!(prop(&z, "p/b", "zfsrepl:keep"), ("-".into(), "-".into()));
    assert_eq!(
        prop(&z, "p/a@s1", "zfsrepl:keep"),
        ("3".into(), "inherited from p/a".into())
    );
    assert_eq!(prop(&z, "p/vol", "mountpoint"), ("-".into(), "-".into()));
    assert_eq!(
        prop(&z, "p/a", "readonly"),
        ("off".into(), "default".into())
    );
    assert_eq!(prop(&z, "p/a", "mounted"), ("yes".into(), "-".into()));
    z.set_props(&en("p/a@s1"), &props(&[("zfsrepl:keep", "9")]))
        .unwrap();
    assert_eq!(
        prop(&z, "p/a@s1", "zfsrepl:keep"),
        ("9".into(), "local".into())
    );
    z.inherit(&en("p/a"), "zfsrepl:keep").unwrap();
    assert_eq!(
        prop(&z, "p/a/child", "zfsrepl:keep"),
        ("-".into(), "-".into())
    );
    z.set_props(&en("p/a/child"), &props(&[("canmount", "off")]))
        .unwrap();
    assert_eq!(
        prop(&z, "p/a/child", "mounted").0,
        "no",
        "canmount=off unmounts"
    );
    assert_eq!(
        prop(&z, "p/a/child/deep", "canmount").0,
        "on",
        "canmount is not inherited"
    );

    run(&[
        (
            "readonly native",
            "",
            |z| z.set_props(&en("p/a"), &props(&[("guid", "1")])),
            Some(K::InvalidArgument),
            "cannot set property for 'p/a': 'guid' is readonly",
        ),
        (
            "unknown",
            "",
            |z| z.set_props(&en("p/a"), &props(&[("bogus", "1")])),
            Some(K::InvalidArgument),
            "invalid property 'bogus'",
        ),
        (
            "uppercase user",
            "",
            |z| z.set_props(&en("p/a"), &props(&[("Zfsrepl:x", "1")])),
            Some(K::InvalidArgument),
            "invalid property",
        ),
        (
            "native on snapshot",
            "",
            |z| z.set_props(&en("p/a@s1"), &props(&[("readonly", "on")])),
            Some(K::InvalidArgument),
            "can not be modified for snapshots",
        ),
        (
            "mountpoint on volume",
            "",
            |z| z.set_props(&en("p/vol"), &props(&[("mountpoint", "/x")])),
            Some(K::InvalidArgument),
            "does not apply",
        ),
        (
            "relative mountpoint",
            "",
            |z| z.set_props(&en("p/a"), &props(&[("mountpoint", "x")])),
            Some(K::InvalidArgument),
            "absolute path",
        ),
        (
            "missing",
            "",
            |z| z.set_props(&en("p/x"), &props(&[("zfsrepl:x", "1")])),
            Some(K::NotFound),
            "'p/x'",
        ),
        (
            "inherit canmount",
            "",
            |z| z.inherit(&en("p/a"), "canmount"),
            Some(K::InvalidArgument),
            "'canmount' property cannot be inherited",
        ),
        (
            "inherit readonly native",
            "",
            |z| z.inherit(&en("p/a"), "guid"),
            Some(K::InvalidArgument),
            "read-only",
        ),
        (
            "inherit missing",
            "",
            |z| z.inherit(&en("p/x"), "zfsrepl:x"),
            Some(K::NotFound),
            "'p/x'",
        ),
        (
            "set then inherit",
            "",
            |z| {
                z.set_props(&en("p/b"), &props(&[("readonly", "on")]))
                    .and_then(|()| z.inherit(&en("p/b"), "readonly"))
            },
            None,
            "+ p/b\n",
        ),
    ]);
}

#[test]
fn list() {
    let z = FakeZfs::from_fixture(&format!("{BASE}+ p/a#s1\n"));
    z.set_props(&en("p/a/child"), &props(&[("zfsrepl:keep", "1")]))
        .unwrap();
    z.reset_calls();
    let all = z.list(&ListSpec::all(vec![ds("p/a"), ds("p/b")])).unwrap();
    let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["p/a", "p/a/child", "p/b"]);
    assert_eq!(z.calls(), 2, "one process per root");
    let versions: Vec<&str> = all[0].versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(versions, ["p/a#s1", "p/a@s1", "p/a@s2"]);
    assert_eq!(all[0].snapshots().nth(1).unwrap().used, Some(0));
    assert_eq!(
        all[0].snapshots().next().unwrap().used,
        Some(1000),
        "the data written after it"
    );

    let one = z
        .list(&ListSpec {
            roots: vec![ds("p/a/child"), ds("p/a")],
            recursive: false,
            snapshots: false,
            bookmarks: false,
            user_props: vec!["zfsrepl:keep".into(), "zfsrepl:none".into()],
        })
        .unwrap();
    assert_eq!(one.len(), 2);
    assert!(one[0].versions.is_empty());
    assert_eq!(
        one[1].user_props.get("zfsrepl:keep").map(String::as_str),
        Some("1")
    );
    assert!(one[0].user_props.is_empty());
    assert_eq!(
        kind(z.list(&ListSpec::all(vec![ds("p/nope")]))),
        K::NotFound
    );

    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture(BASE).unwrap();
    let l = f.list(&ListSpec::all(vec![ds("p")])).unwrap();
    assert_eq!(l.len(), 5);
    assert!(l.iter().all(|d| d.bookmarks().count() == 0));
}

#[test]
fn get_props_recursive_and_errors() {
    let z = FakeZfs::from_fixture(&format!("{BASE}+ p/a#s1\n"));
    z.reset_calls();
    let v = z.get_props(&[en("p/a")], &["type", "guid"], true).unwrap();
    let rows: Vec<(String, &str, &str)> = v
        .iter()
        .filter(|p| p.property == "type")
        .map(|p| (p.name.to_string(), p.value.as_str(), p.source.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("p/a".into(), "filesystem", "-"),
            ("p/a@s1".into(), "snapshot", "-"),
            ("p/a@s2".into(), "snapshot", "-"),
            ("p/a#s1".into(), "bookmark", "-"),
            ("p/a/child".into(), "filesystem", "-"),
        ]
    );
    assert_eq!(z.calls(), 1);
    let g = &v
        .iter()
        .find(|p| p.name == en("p/a@s1") && p.property == "guid")
        .unwrap()
        .value;
    let mark = &v
        .iter()
        .find(|p| p.name == en("p/a#s1") && p.property == "guid")
        .unwrap()
        .value;
    assert_eq!(g, mark);
    let (k, msg) = failure(z.get_props(&[en("p/a")], &["nonsense"], false));
    assert_eq!(
        (k, msg.as_str()),
        (
            K::InvalidArgument,
            "bad property list: invalid property 'nonsense'"
        )
    );
    assert_eq!(
        kind(z.get_props(&[en("p/a@zz")], &["guid"], false)),
        K::NotFound
    );
    assert_eq!(prop(&z, "p/a", "receive_resume_token").0, "-");
}

#[test]
fn guids_are_unique_across_models() {
    let a = FakeZfs::from_fixture(BASE);
    let b = FakeZfs::from_fixture(BASE);
    let ga: Vec<_> = snaps(&a, "p/a").into_iter().map(|(_, g)| g).collect();
    let gb: Vec<_> = snaps(&b, "p/a").into_iter().map(|(_, g)| g).collect();
    assert!(
        ga.iter().all(|g| !gb.contains(g)),
        "two models must never share a guid"
    );
    assert_ne!(dataset(&a, "p/a").guid, dataset(&a, "p/b").guid);
}

/// The `zfs` processes each operation costs, on OpenZFS and on zfs-fuse
/// (where batches run one by one and missing features run nothing).
#[test]
fn process_counts_per_capability() {
    type CountCase = (&'static str, fn(&FakeZfs), u64, u64);
    let cases: &[CountCase] = &[
        (
            "list two roots",
            |z| drop(z.list(&ListSpec::all(vec![ds("p/a"), ds("p/b")]))),
            2,
            2,
        ),
        (
            "get",
            |z| drop(z.get_props(&[en("p/a"), en("p/b")], &["guid", "used"], true)),
            1,
            1,
        ),
        (
            "snapshot three",
            |z| drop(z.snapshot(&[sn("p/a@n"), sn("p/b@n"), sn("p/a/child@n")], &[])),
            1,
            3,
        ),
        (
            "snapshot -r",
            |z| drop(z.snapshot_recursive(&sn("p/a@n"), &[])),
            1,
            1,
        ),
        (
            "destroy three in two datasets",
            |z| drop(z.destroy_snapshots(&[sn("p/a@s1"), sn("p/b@x"), sn("p/a@s2")])),
            2,
            3,
        ),
        (
            "set two properties",
            |z| {
                drop(z.set_props(
                    &en("p/a"),
                    &props(&[("zfsrepl:a", "1"), ("zfsrepl:b", "2")]),
                ))
            },
            1,
            2,
        ),
        (
            "hold two",
            |z| drop(z.hold("t", &[sn("p/a@s1"), sn("p/a@s2")])),
            1,
            1,
        ),
        ("holds", |z| drop(z.holds(&sn("p/a@s1"))), 1, 0),
        (
            "bookmark",
            |z| drop(z.bookmark(&sn("p/a@s1"), &bm("p/a#s1"))),
            1,
            0,
        ),
        (
            "send",
            |z| drop(crate::zfs::ZfsStream::send(z, &super::full("p/a@s1"))),
            1,
            1,
        ),
        (
            "receive -s",
            |z| {
                let spec = crate::zfs::RecvSpec {
                    resumable: true,
                    ..super::into("p/r")
                };
                drop(crate::zfs::ZfsStream::receive(z, &spec));
            },
            1,
            0,
        ),
    ];
    for (label, op, openzfs, fuse) in cases {
        for (caps, want) in [
            (Capabilities::openzfs(), openzfs),
            (Capabilities::zfs_fuse(), fuse),
        ] {
            let z = FakeZfs::with_capabilities(caps);
            z.apply_fixture(&format!("{BASE}+ p/b@x\n")).unwrap();
            op(&z);
            assert_eq!(z.calls(), *want, "{label} on {}", z.capabilities().flavor);
        }
    }
    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture(BASE).unwrap();
    assert_eq!(
        kind(f.get_props(&[en("p/a")], &["receive_resume_token"], false)),
        K::InvalidArgument
    );
    assert_eq!(kind(f.hold("", &[sn("p/a@s1")])), K::InvalidArgument);
}
