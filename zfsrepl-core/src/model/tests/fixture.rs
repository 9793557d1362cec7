//! The fixture DSL and the dump.

use crate::model::{FakeZfs, Fixture, FixtureOp};
use crate::zfs::{Capabilities, ZfsRead};

use super::{dataset, ds, en, prop, snap_names};

#[test]
fn builds_the_example_tree() {
    let z = FakeZfs::from_fixture(
        "# the brief's example\n\
         + pool\n\
         + pool/data\n\
         + pool/data@a\n\
         + pool/data@b\n\
         + pool/data#bm\n\
         + pool/with space\n",
    );
    assert_eq!(
        z.dump(),
        "+ pool\n+ pool/data\n+ pool/data@a\n+ pool/data@b\n+ pool/data#bm\n+ \"pool/with space\"\n"
    );
    // `#bm` has no `@bm` to mark: it marks the latest snapshot, `@b`.
    let d = dataset(&z, "pool/data");
    let b = d.bookmarks().next().unwrap();
    let s = d.snapshots().nth(1).unwrap();
    assert_eq!(
        (b.guid, b.createtxg, b.creation),
        (s.guid, s.createtxg, s.creation)
    );
    // `#a` marks `@a` itself.
    z.apply_fixture("+ pool/data#a").unwrap();
    let d = dataset(&z, "pool/data");
    let a = d.snapshots().next().unwrap();
    let mark_a = d.bookmarks().find(|v| v.name.short() == "a").unwrap();
    assert_eq!(mark_a.guid, a.guid);
    // Versions sort by txg, the bookmark before its snapshot.
    let order: Vec<&str> = d.versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        order,
        ["pool/data#a", "pool/data@a", "pool/data#bm", "pool/data@b"]
    );
}

#[test]
fn hostile_names_spaces_colons_leading_dashes() {
    let z = FakeZfs::from_fixture(
        "+ pool\n\
         + pool/with space\n\
         + pool/-lead:ing\n\
         + \"pool/a b\"\n\
         + \"pool/a b@c d\"\n\
         + pool/-lead:ing@snap: 1 zfsrepl:keep=2\n\
         + \"pool/-lead:ing@ -x\" hold=\"my tag\"\n\
         + pool/-lead:ing#snap: 1\n\
         ~ pool/with space bytes=10\n",
    );
    assert_eq!(
        z.dump(),
        "+ pool\n\
         + pool/-lead:ing\n\
         + \"pool/-lead:ing@snap: 1\" zfsrepl:keep=2\n\
         + \"pool/-lead:ing#snap: 1\"\n\
         + \"pool/-lead:ing@ -x\" hold=\"my tag\"\n\
         + \"pool/a b\"\n\
         + \"pool/a b@c d\"\n\
         + \"pool/with space\"\n"
    );
    assert_eq!(snap_names(&z, "pool/-lead:ing"), ["snap: 1", " -x"]);
    // The dump replays to the same tree.
    let again = FakeZfs::from_fixture(&z.dump());
    assert_eq!(again.dump(), z.dump());
}

#[test]
fn attributes_volumes_clones_props_and_writes() {
    let z = FakeZfs::from_fixture(
        "+ p\n\
         + p/fs mountpoint=/srv/fs zfsrepl:x=\"a b\"\n\
         + p/fs@s\n\
         + p/vol type=volume\n\
         + p/clone origin=p/fs@s mounted=no\n\
         ~ p/fs bytes=100\n",
    );
    assert_eq!(
        z.dump(),
        "+ p\n\
         + p/clone origin=p/fs@s mounted=no\n\
         + p/fs mountpoint=/srv/fs zfsrepl:x=\"a b\"\n\
         + p/fs@s\n\
         + p/vol type=volume\n"
    );
    assert_eq!(z.calls(), 0, "fixtures run no zfs process");
    assert_eq!(prop(&z, "p/vol", "type").0, "volume");
    assert_eq!(prop(&z, "p/fs", "zfsrepl:x").0, "a b");
    assert_eq!(
        prop(&z, "p/fs", "referenced").0,
        (24 * 1024 + 100).to_string()
    );
    assert_eq!(dataset(&z, "p/clone").origin, Some(super::sn("p/fs@s")));
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, &str)] = &[
        ("+ p\n+ p/a\nbogus", "line 3: expected '+ NAME'"),
        ("+ p\n+ q/a", "line 2: pool 'q' does not exist"),
        ("+ p\n+ p", "line 2: pool 'p' already exists"),
        (
            "+ p\n+ p/a@s",
            "line 2: cannot open 'p/a': dataset does not exist",
        ),
        (
            "+ p\n+ p/a\n+ p/a@s\n+ p/a@s",
            "line 4: cannot create snapshot 'p/a@s': dataset already exists",
        ),
        (
            "+ p\n+ p/a\n+ p/a#m",
            "line 3: bookmark p/a#m needs a snapshot of p/a to mark",
        ),
        ("+ p\n+ p/a*", "line 2: name \"p/a*\" contains '*'"),
        ("+ p\n+ \"p/a", "line 2: unterminated quote"),
        ("+ p\n+ p/a type=dir", "line 2: type=\"dir\""),
        ("+ p\n+ p/a guid=1", "line 2: 'guid' is readonly"),
        ("+ p\n~ p/a@x", "line 2: '~' writes into a dataset"),
        (
            "+ p\n+ p/v type=volume\n+ p/v/x",
            "line 3: cannot create 'p/v/x': parent 'p/v' is not a filesystem",
        ),
    ];
    for (text, want) in cases {
        let e = FakeZfs::new().apply_fixture(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}");
    }
}

#[test]
fn bookmarks_need_a_zfs_that_has_them() {
    let z = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    let e = z.apply_fixture("+ p\n+ p/a\n+ p/a@s\n+ p/a#s").unwrap_err();
    assert!(e.message.contains("no bookmarks"), "{e}");
}

#[test]
fn relative_fixtures_for_real_pools() {
    let root = ds("zfsrepl_t_1_2");
    let f = Fixture::parse_under(
        &root,
        "+ data\n+ data@a\n+ @top\n+ \"a b/c d@e f\"\n~ data bytes=5",
    )
    .unwrap();
    let names: Vec<String> = f.entries.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "zfsrepl_t_1_2/data",
            "zfsrepl_t_1_2/data@a",
            "zfsrepl_t_1_2@top",
            "zfsrepl_t_1_2/a b/c d@e f",
            "zfsrepl_t_1_2/data"
        ]
    );
    assert_eq!(f.entries[4].op, FixtureOp::Write);
    assert_eq!(f.entries[4].attrs, [("bytes".to_owned(), "5".to_owned())]);
    assert_eq!(f.entries[3].line, 4);
}

#[test]
fn add_pool_write_and_clock() {
    let z = FakeZfs::new();
    let p = z.add_pool("tank");
    assert_eq!(p, ds("tank"));
    assert_eq!(z.now(), 1_700_000_001, "the pool took the first second");
    z.set_time(1_800_000_000);
    z.write("tank", 1);
    z.apply_fixture("+ tank@a\n+ tank@b").unwrap();
    let d = dataset(&z, "tank");
    let times: Vec<i64> = d.snapshots().map(|v| v.creation).collect();
    assert_eq!(
        times,
        [1_800_000_000, 1_800_000_000],
        "a set clock stands still"
    );
    let txgs: Vec<u64> = d.snapshots().map(|v| v.createtxg.0).collect();
    assert!(txgs[0] < txgs[1], "every change is a new txg: {txgs:?}");
    assert_eq!(prop(&z, "tank", "creation").0, "1700000000");
    assert!(z.get_props(&[en("tank@a")], &["guid"], false).is_ok());
}
