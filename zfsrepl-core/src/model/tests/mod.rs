//! Tests of the model: fixtures, each operation's rules, send/receive
//! validation, resumable receive, and a replication property.

mod fixture;
mod ops;
mod prop;
mod recv;

use std::io::{self, Read, Write};

use crate::name::{BookmarkName, DatasetName, EntityName, Guid, SnapshotName};
use crate::zfs::{
    ListSpec, RecvSink, RecvSpec, SendFlags, SendSource, SendSpec, VersionName, ZfsErrorKind,
    ZfsRead, ZfsResult, ZfsStream,
};

use super::FakeZfs;

pub(super) fn ds(s: &str) -> DatasetName {
    DatasetName::parse(s).unwrap()
}

pub(super) fn sn(s: &str) -> SnapshotName {
    SnapshotName::parse(s).unwrap()
}

pub(super) fn bm(s: &str) -> BookmarkName {
    BookmarkName::parse(s).unwrap()
}

pub(super) fn en(s: &str) -> EntityName {
    EntityName::parse(s).unwrap()
}

pub(super) fn props(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The error's kind, failing the test on success.
#[track_caller]
pub(super) fn kind<T: std::fmt::Debug>(r: ZfsResult<T>) -> ZfsErrorKind {
    r.expect_err("expected an error").kind
}

/// The error's kind and message, failing the test on success.
#[track_caller]
pub(super) fn failure<T: std::fmt::Debug>(r: ZfsResult<T>) -> (ZfsErrorKind, String) {
    let e = r.expect_err("expected an error");
    (e.kind, e.stderr)
}

pub(super) fn full(snap: &str) -> SendSpec {
    SendSpec {
        source: SendSource::Full { snapshot: sn(snap) },
        flags: SendFlags::default(),
    }
}

/// `-i from to` (`-I` with `intermediates`); `from` may be a bookmark.
pub(super) fn inc(from: &str, to: &str, intermediates: bool) -> SendSpec {
    let from = if from.contains('#') {
        VersionName::Bookmark(bm(from))
    } else {
        VersionName::Snapshot(sn(from))
    };
    SendSpec {
        source: SendSource::Incremental {
            from,
            to: sn(to),
            intermediates,
        },
        flags: SendFlags::default(),
    }
}

pub(super) fn replicate(mut spec: SendSpec) -> SendSpec {
    spec.flags.replicate = true;
    spec
}

pub(super) fn into(target: &str) -> RecvSpec {
    RecvSpec {
        target: Some(ds(target)),
        ..RecvSpec::default()
    }
}

pub(super) fn forced(mut spec: RecvSpec) -> RecvSpec {
    spec.force = true;
    spec
}

/// Copies a stream into a sink as a pipeline would: stops writing when the
/// receiver stops reading, then asks the receiver how it ended.
pub(super) fn pipe(mut stream: impl Read, mut sink: super::FakeRecvSink) -> ZfsResult<()> {
    let mut buf = vec![0; 7000];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        match sink.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    sink.finish()
}

/// Sends from `src` and receives into `dst`.
pub(super) fn transfer(
    src: &FakeZfs,
    send: &SendSpec,
    dst: &FakeZfs,
    recv: &RecvSpec,
) -> ZfsResult<()> {
    let stream = src.send(send)?;
    let sink = dst.receive(recv)?;
    pipe(stream, sink)
}

/// Sends, and delivers only the first `keep` bytes before closing.
pub(super) fn transfer_cut(
    src: &FakeZfs,
    send: &SendSpec,
    dst: &FakeZfs,
    recv: &RecvSpec,
    keep: usize,
) -> ZfsResult<()> {
    let bytes = src.send(send)?.into_bytes();
    assert!(keep < bytes.len(), "cut at {keep} of {}", bytes.len());
    pipe(&bytes[..keep], dst.receive(recv)?)
}

/// The stream bytes of a send.
pub(super) fn stream_bytes(src: &FakeZfs, send: &SendSpec) -> Vec<u8> {
    src.send(send).unwrap().into_bytes()
}

/// `(short name, guid)` of a dataset's snapshots, in order.
pub(super) fn snaps(z: &FakeZfs, name: &str) -> Vec<(String, Guid)> {
    let list = z
        .list(&ListSpec {
            roots: vec![ds(name)],
            snapshots: true,
            ..ListSpec::default()
        })
        .unwrap();
    list[0]
        .snapshots()
        .map(|v| (v.name.short().to_owned(), v.guid))
        .collect()
}

/// The short names of a dataset's snapshots.
pub(super) fn snap_names(z: &FakeZfs, name: &str) -> Vec<String> {
    snaps(z, name).into_iter().map(|(n, _)| n).collect()
}

/// One property's value and source.
pub(super) fn prop(z: &FakeZfs, name: &str, p: &str) -> (String, String) {
    let v = z.get_props(&[en(name)], &[p], false).unwrap();
    (v[0].value.clone(), v[0].source.clone())
}

/// The whole dataset record of `list`.
pub(super) fn dataset(z: &FakeZfs, name: &str) -> crate::zfs::Dataset {
    z.list(&ListSpec {
        roots: vec![ds(name)],
        recursive: false,
        snapshots: true,
        bookmarks: true,
        user_props: Vec::new(),
    })
    .unwrap()
    .remove(0)
}

#[test]
fn fake_zfs_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<FakeZfs>();
    check::<super::FakeRecvSink>();
    check::<super::FakeSendStream>();
}

#[test]
fn shared_across_threads() {
    use crate::zfs::ZfsWrite;
    let z = FakeZfs::from_fixture("+ p\n+ p/t0\n+ p/t1\n+ p/t2\n+ p/t3\n");
    std::thread::scope(|s| {
        for t in 0..4 {
            let z = &z;
            s.spawn(move || {
                for i in 0..25 {
                    z.write(format!("p/t{t}"), 10);
                    z.snapshot(&[sn(&format!("p/t{t}@s{i}"))], &[]).unwrap();
                }
            });
        }
    });
    let all = z.list(&ListSpec::all(vec![ds("p")])).unwrap();
    let mut txgs: Vec<u64> = all
        .iter()
        .flat_map(|d| d.versions.iter().map(|v| v.createtxg.0))
        .collect();
    assert_eq!(txgs.len(), 100);
    txgs.sort_unstable();
    txgs.dedup();
    assert_eq!(txgs.len(), 100, "every snapshot its own txg");
    assert_eq!(z.calls(), 101, "100 snapshots and one list");
}
