//! Send and receive: stream kinds, every receive validation rule, broken
//! streams, resumable receive, replication streams and receive options.

use std::io::Write;

use crate::model::FakeZfs;
use crate::zfs::{
    Capabilities, RecvSink, RecvSpec, SendSource, SendSpec, ZfsErrorKind as K, ZfsRead, ZfsResult,
    ZfsStream, ZfsWrite,
};

use super::{
    dataset, ds, failure, forced, full, inc, into, kind, pipe, prop, props, replicate, sn,
    snap_names, snaps, stream_bytes, transfer, transfer_cut,
};

const SRC: &str = "\
+ p
+ p/a
~ p/a bytes=3000
+ p/a@s1
~ p/a bytes=2000
+ p/a@s2
~ p/a bytes=1000
+ p/a@s3
+ p/a#s1
";

fn src() -> FakeZfs {
    FakeZfs::from_fixture(SRC)
}

/// A target that received `p/a@s1` as `b/a`.
fn dst_with_s1(src: &FakeZfs) -> FakeZfs {
    let dst = FakeZfs::from_fixture("+ b");
    transfer(src, &full("p/a@s1"), &dst, &into("b/a")).unwrap();
    dst
}

#[test]
fn full_stream_keeps_snapshot_identity() {
    let src = src();
    let dst = FakeZfs::from_fixture("+ b");
    transfer(&src, &full("p/a@s2"), &dst, &into("b/a")).unwrap();
    assert_eq!((src.calls(), dst.calls()), (1, 1), "one send, one receive");
    assert_eq!(
        snaps(&dst, "b/a"),
        snaps(&src, "p/a")[1..2],
        "only s2, with its guid"
    );
    let (s, d) = (dataset(&src, "p/a"), dataset(&dst, "b/a"));
    let (ss, ds_) = (s.snapshots().nth(1).unwrap(), d.snapshots().next().unwrap());
    assert_eq!(ss.creation, ds_.creation, "creation time is kept");
    assert_ne!(s.guid, d.guid, "the received dataset is a new one");
    assert_eq!(
        prop(&dst, "b/a", "referenced"),
        prop(&src, "p/a@s2", "referenced")
    );
    assert_eq!(prop(&dst, "b/a", "mounted").0, "yes");
}

#[test]
fn incremental_streams() {
    let src = src();
    // -i: one step; the target lacks s2.
    let dst = dst_with_s1(&src);
    transfer(&src, &inc("p/a@s1", "p/a@s3", false), &dst, &into("b/a")).unwrap();
    assert_eq!(snap_names(&dst, "b/a"), ["s1", "s3"]);
    // -I: every snapshot between.
    let dst = dst_with_s1(&src);
    transfer(&src, &inc("p/a@s1", "p/a@s3", true), &dst, &into("b/a")).unwrap();
    assert_eq!(snaps(&dst, "b/a"), snaps(&src, "p/a"));
    assert_eq!(
        prop(&dst, "b/a", "referenced"),
        prop(&src, "p/a", "referenced")
    );
    // From a bookmark: the snapshot may be gone on the source.
    let dst = dst_with_s1(&src);
    src.destroy_snapshots(&[sn("p/a@s1")]);
    transfer(&src, &inc("p/a#s1", "p/a@s2", false), &dst, &into("b/a")).unwrap();
    assert_eq!(snap_names(&dst, "b/a"), ["s1", "s2"]);
    transfer(&src, &inc("p/a@s2", "p/a@s3", true), &dst, &into("b/a")).unwrap();
    assert_eq!(snap_names(&dst, "b/a"), ["s1", "s2", "s3"]);
    // -I overlapping what the target has: the known snapshot is skipped.
    let src2 = FakeZfs::from_fixture(SRC);
    let dst2 = dst_with_s1(&src2);
    transfer(&src2, &inc("p/a@s1", "p/a@s2", false), &dst2, &into("b/a")).unwrap();
    transfer(&src2, &inc("p/a@s1", "p/a@s3", true), &dst2, &into("b/a")).unwrap();
    assert_eq!(
        snaps(&dst2, "b/a"),
        snaps(&src2, "p/a"),
        "s2 was skipped, s3 applied"
    );
}

#[test]
fn send_requests_zfs_refuses() {
    let src = FakeZfs::from_fixture(&format!("{SRC}+ p/other\n+ p/other@x\n"));
    let with = |mut s: SendSpec, f: fn(&mut SendSpec)| {
        f(&mut s);
        s
    };
    let cases: Vec<(&str, SendSpec, K, &str)> = vec![
        (
            "missing",
            full("p/a@zz"),
            K::NotFound,
            "cannot open 'p/a@zz'",
        ),
        (
            "later base",
            inc("p/a@s3", "p/a@s1", false),
            K::InvalidArgument,
            "not an earlier snapshot from the same fs",
        ),
        (
            "same",
            inc("p/a@s2", "p/a@s2", true),
            K::InvalidArgument,
            "not an earlier snapshot",
        ),
        (
            "other fs",
            inc("p/other@x", "p/a@s3", false),
            K::InvalidArgument,
            "incremental source must be in same filesystem",
        ),
        (
            "-I from a bookmark",
            inc("p/a#s1", "p/a@s3", true),
            K::InvalidArgument,
            "multiple snapshots cannot be sent from a bookmark",
        ),
        (
            "-R from a bookmark",
            replicate(inc("p/a#s1", "p/a@s3", false)),
            K::InvalidArgument,
            "Unsupported flag with filesystem or bookmark",
        ),
        (
            "-p from a bookmark",
            with(inc("p/a#s1", "p/a@s3", false), |s| s.flags.props = true),
            K::InvalidArgument,
            "Unsupported flag",
        ),
        (
            "missing bookmark",
            inc("p/a#zz", "p/a@s3", false),
            K::NotFound,
            "p/a#zz",
        ),
        (
            "bad token",
            SendSpec {
                source: SendSource::Resume {
                    token: "1-2-3-zz".into(),
                },
                flags: Default::default(),
            },
            K::ResumeTokenInvalid,
            "resume token is corrupt",
        ),
    ];
    for (label, spec, want, text) in cases {
        let (k, msg) = failure(src.send(&spec));
        assert_eq!(k, want, "{label}: {msg}");
        assert!(msg.contains(text), "{label}: {msg:?} lacks {text:?}");
    }
    // zfs-fuse lacks the newer flags, bookmarks and resume.
    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture("+ p\n+ p/a\n+ p/a@s1\n+ p/a@s2").unwrap();
    for spec in [
        with(full("p/a@s1"), |s| s.flags.compressed = true),
        with(full("p/a@s1"), |s| s.flags.raw = true),
        inc("p/a#s1", "p/a@s2", false),
        SendSpec {
            source: SendSource::Resume { token: "x".into() },
            flags: Default::default(),
        },
    ] {
        assert_eq!(kind(f.send(&spec)), K::Unsupported, "{spec:?}");
    }
    assert_eq!(f.calls(), 0);
    assert!(
        f.send(&with(full("p/a@s1"), |s| s.flags.dedup = true))
            .is_ok(),
        "zfs-fuse has -D"
    );
}

type RecvCase = (
    &'static str,
    &'static str,
    fn(&FakeZfs, &FakeZfs) -> ZfsResult<()>,
    Option<K>,
    &'static str,
);

/// Every receive validation rule: the target starts as `dst_with_s1`
/// plus the case's fixture lines; `src` is `SRC`.
#[test]
fn receive_validation_rules() {
    let cases: &[RecvCase] = &[
        (
            "full into an existing dataset",
            "",
            |s, d| transfer(s, &full("p/a@s2"), d, &into("b/a")),
            Some(K::TargetExists),
            "cannot receive new filesystem stream: destination 'b/a' exists\nmust specify -F to overwrite it",
        ),
        (
            "full -F into a dataset with snapshots",
            "",
            |s, d| transfer(s, &full("p/a@s2"), d, &forced(into("b/a"))),
            Some(K::TargetExists),
            "destination has snapshots (eg. b/a@s1)\nmust destroy them to overwrite it",
        ),
        (
            "full -F into a dataset without snapshots",
            "+ b/empty\n~ b/empty\n",
            |s, d| transfer(s, &full("p/a@s2"), d, &forced(into("b/empty"))),
            None,
            "+ b/empty\n+ b/empty@s2\n",
        ),
        (
            "full -F into a clone",
            "+ b/c origin=b/a@s1\n",
            |s, d| transfer(s, &full("p/a@s2"), d, &forced(into("b/c"))),
            Some(K::TargetExists),
            "destination 'b/c' is a clone\nmust destroy it to overwrite it",
        ),
        (
            "full without the parent",
            "",
            |s, d| transfer(s, &full("p/a@s2"), d, &into("b/x/y")),
            Some(K::NotFound),
            "cannot open 'b/x': dataset does not exist",
        ),
        (
            "full below a volume",
            "+ b/v type=volume\n",
            |s, d| transfer(s, &full("p/a@s2"), d, &into("b/v/y")),
            Some(K::InvalidArgument),
            "parent 'b/v' is not a filesystem",
        ),
        (
            "incremental into nothing",
            "",
            |s, d| transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &into("b/x")),
            Some(K::NotFound),
            "cannot receive incremental stream: destination 'b/x' does not exist",
        ),
        (
            "incremental without the base",
            "",
            |s, d| transfer(s, &inc("p/a@s2", "p/a@s3", false), d, &into("b/a")),
            Some(K::MissingBase),
            "cannot receive incremental stream: most recent snapshot of b/a does not\nmatch incremental source",
        ),
        (
            "a bookmark is no base",
            "+ b/a#s1\n",
            |s, d| {
                d.destroy_snapshots(&[sn("b/a@s1")]);
                transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &into("b/a"))
            },
            Some(K::MissingBase),
            "does not\nmatch incremental source",
        ),
        (
            "newer snapshots",
            "+ b/a@local\n",
            |s, d| transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &into("b/a")),
            Some(K::TargetHasNewerSnapshots),
            "cannot receive incremental stream: destination has snapshots (eg. b/a@local)\nmust destroy them to overwrite it",
        ),
        (
            "modified",
            "~ b/a\n",
            |s, d| transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &into("b/a")),
            Some(K::TargetModified),
            "cannot receive incremental stream: destination b/a has been modified\nsince most recent snapshot",
        ),
        (
            "-F rolls back newer snapshots and changes",
            "+ b/a@local\n~ b/a\n",
            |s, d| transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &forced(into("b/a"))),
            None,
            "+ b/a@s1\n+ b/a@s2\n",
        ),
        (
            "-F cannot destroy a held snapshot",
            "+ b/a@local hold=keep\n",
            |s, d| transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &forced(into("b/a"))),
            Some(K::Held),
            "cannot destroy snapshot b/a@local: dataset is busy",
        ),
        (
            "-F cannot destroy a cloned snapshot",
            "+ b/a@local\n+ b/c origin=b/a@local\n",
            |s, d| transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &forced(into("b/a"))),
            Some(K::HasClones),
            "snapshot has dependent clones",
        ),
        (
            "the new name is taken by another snapshot",
            "+ b/a@s2\n",
            |s, d| transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &forced(into("b/a"))),
            Some(K::AlreadyExists),
            "cannot restore to b/a@s2: destination already exists",
        ),
        (
            "the same snapshot again",
            "",
            |s, d| {
                transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &into("b/a"))?;
                transfer(s, &inc("p/a@s1", "p/a@s2", false), d, &into("b/a"))
            },
            None,
            "+ b/a@s1\n+ b/a@s2\n",
        ),
    ];
    for (label, extra, op, want, text) in cases {
        let s = src();
        let d = dst_with_s1(&s);
        d.apply_fixture(extra).unwrap();
        match (op(&s, &d), want) {
            (Ok(()), None) => {
                let dump = d.dump();
                assert!(dump.contains(text), "{label}: dump lacks {text:?}:\n{dump}");
            }
            (Err(e), Some(k)) => {
                assert_eq!(&e.kind, k, "{label}: {e}");
                assert!(
                    e.stderr.contains(text),
                    "{label}: {:?} lacks {text:?}",
                    e.stderr
                );
                let s2 = snaps(&s, "p/a")[1].1;
                let all = d.list(&crate::zfs::ListSpec::all(vec![ds("b")])).unwrap();
                assert!(
                    all.iter()
                        .flat_map(|x| x.versions.iter())
                        .all(|v| v.guid != s2),
                    "{label}: a refused stream applied nothing"
                );
            }
            (r, _) => panic!("{label}: got {r:?}, want {want:?}"),
        }
    }
}

#[test]
fn broken_streams() {
    let src = src();
    let bytes = stream_bytes(&src, &inc("p/a@s1", "p/a@s3", true));
    let recv = |data: &[u8]| {
        let dst = dst_with_s1(&src);
        let r = pipe(data, dst.receive(&into("b/a")).unwrap());
        (r.map_err(|e| (e.kind, e.stderr)), snap_names(&dst, "b/a"))
    };
    let (r, names) = recv(b"garbage that is not a stream");
    assert_eq!(
        r.unwrap_err(),
        (
            K::StreamInvalid,
            "cannot receive: invalid stream (bad magic number)".into()
        )
    );
    assert_eq!(names, ["s1"]);
    let (r, _) = recv(b"");
    assert_eq!(
        r.unwrap_err().0,
        K::StreamTruncated,
        "an empty stream is a truncated one"
    );
    // A flipped byte anywhere is caught by the record checksums.
    for at in [20, bytes.len() / 2, bytes.len() - 12, bytes.len() - 3] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let (r, _) = recv(&bad);
        assert_eq!(r.unwrap_err().0, K::StreamInvalid, "flip at {at}");
    }
    // Cut short: the snapshots that arrived whole stay (ZFS commits each
    // snapshot of a multi-snapshot stream), the one in flight is lost.
    let (r, names) = recv(&bytes[..bytes.len() - 40]);
    let (k, msg) = r.unwrap_err();
    assert_eq!(k, K::StreamTruncated);
    assert!(msg.contains("incomplete stream"), "{msg}");
    assert_eq!(names, ["s1", "s2"]);
    let (r, names) = recv(&bytes[..30]);
    assert_eq!(r.unwrap_err().0, K::StreamTruncated);
    assert_eq!(names, ["s1"]);
    // A full stream cut short leaves nothing without -s.
    let dst = FakeZfs::from_fixture("+ b");
    assert_eq!(
        kind(transfer_cut(&src, &full("p/a@s3"), &dst, &into("b/a"), 500)),
        K::StreamTruncated
    );
    assert_eq!(dst.dump(), "+ b\n");
}

#[test]
fn a_failed_receive_stops_reading() {
    let src = src();
    let dst = dst_with_s1(&src);
    let bytes = stream_bytes(&src, &full("p/a@s3"));
    let mut sink = dst.receive(&into("b/a")).unwrap();
    // The write that reaches the refused record succeeds; the receiver
    // has exited by the next one.
    sink.write_all(&bytes[..600]).unwrap();
    let e = sink.write_all(&bytes[600..]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(sink.finish().unwrap_err().kind, K::TargetExists);
    // Trailing bytes after a complete stream are ignored.
    let dst = FakeZfs::from_fixture("+ b");
    let mut sink = dst.receive(&into("b/a")).unwrap();
    sink.write_all(&bytes).unwrap();
    sink.write_all(b"trailing").unwrap();
    sink.finish().unwrap();
}

#[test]
fn abort_keeps_whole_snapshots_and_drops_the_partial_one() {
    let src = src();
    let dst = dst_with_s1(&src);
    let bytes = stream_bytes(&src, &inc("p/a@s1", "p/a@s3", true));
    let mut sink = dst.receive(&into("b/a")).unwrap();
    sink.write_all(&bytes[..bytes.len() - 40]).unwrap();
    sink.abort();
    assert_eq!(snap_names(&dst, "b/a"), ["s1", "s2"]);
    assert_eq!(dataset(&dst, "b/a").receive_resume_token, None);
}

#[test]
fn resumable_full_receive() {
    let src = FakeZfs::from_fixture("+ p\n+ p/a\n~ p/a bytes=200000\n+ p/a@s1\n");
    let dst = FakeZfs::from_fixture("+ b");
    let spec = RecvSpec {
        resumable: true,
        ..into("b/a")
    };
    let (k, msg) = failure(transfer_cut(&src, &full("p/a@s1"), &dst, &spec, 100_000));
    assert_eq!(k, K::StreamTruncated);
    assert!(msg.contains("Partially received snapshot is saved.\nA resuming stream can be generated on the sending system by running:\n    zfs send -t 1-"), "{msg}");
    // The new filesystem exists as a placeholder that holds the token.
    let d = dataset(&dst, "b/a");
    let token = d.receive_resume_token.clone().expect("a token");
    assert!(d.versions.is_empty());
    assert_eq!(prop(&dst, "b/a", "receive_resume_token").0, token);
    assert_eq!(prop(&dst, "b/a", "mounted").0, "no");
    // Anything but the resumed stream is refused.
    assert_eq!(
        kind(transfer(&src, &full("p/a@s1"), &dst, &forced(into("b/a")))),
        K::ResumablePending
    );
    // Resume, cut again, resume again.
    let resume = SendSpec {
        source: SendSource::Resume {
            token: token.clone(),
        },
        flags: Default::default(),
    };
    let resumed = stream_bytes(&src, &resume);
    let whole = stream_bytes(&src, &full("p/a@s1")).len();
    assert!(
        resumed.len() + 60_000 < whole,
        "a resumed stream starts at the offset: {} of {whole}",
        resumed.len()
    );
    assert_eq!(
        kind(transfer_cut(
            &src,
            &resume,
            &dst,
            &spec,
            resumed.len() - 100
        )),
        K::StreamTruncated
    );
    let token2 = dataset(&dst, "b/a")
        .receive_resume_token
        .expect("still partial");
    assert_ne!(token, token2, "the offset moved on");
    assert_eq!(
        kind(transfer(&src, &resume, &dst, &spec)),
        K::ResumeTokenInvalid,
        "the old offset no longer fits"
    );
    let resume2 = SendSpec {
        source: SendSource::Resume { token: token2 },
        flags: Default::default(),
    };
    transfer(&src, &resume2, &dst, &into("b/a")).unwrap();
    let d = dataset(&dst, "b/a");
    assert_eq!(d.receive_resume_token, None);
    assert_eq!(snaps(&dst, "b/a"), snaps(&src, "p/a"));
    assert_eq!(prop(&dst, "b/a", "mounted").0, "yes");
    assert_eq!(
        prop(&dst, "b/a", "referenced"),
        prop(&src, "p/a", "referenced")
    );
}

#[test]
fn resumable_incremental_receive() {
    let src = src();
    let dst = dst_with_s1(&src);
    let spec = RecvSpec {
        resumable: true,
        ..into("b/a")
    };
    let stream = stream_bytes(&src, &inc("p/a@s1", "p/a@s3", true));
    // Cut inside s3's record: s2 stays, s3 is partial.
    assert_eq!(
        kind(pipe(
            &stream[..stream.len() - 300],
            dst.receive(&spec).unwrap()
        )),
        K::StreamTruncated
    );
    assert_eq!(snap_names(&dst, "b/a"), ["s1", "s2"]);
    let token = dataset(&dst, "b/a").receive_resume_token.expect("a token");
    // The base of the partial receive is held by its hidden clone.
    let out = dst.destroy_snapshots(&[sn("b/a@s2")]);
    assert_eq!(out[0].1.as_ref().unwrap_err().kind, K::HasClones);
    assert!(out[0].1.as_ref().unwrap_err().stderr.contains("b/a/%recv"));
    // A new incremental is refused until the partial one is resumed.
    let (k, msg) = failure(transfer(
        &src,
        &inc("p/a@s2", "p/a@s3", false),
        &dst,
        &into("b/a"),
    ));
    assert_eq!(k, K::ResumablePending);
    assert!(
        msg.ends_with("destination b/a contains partially-complete state from \"zfs receive -s\"."),
        "{msg}"
    );
    transfer(
        &src,
        &SendSpec {
            source: SendSource::Resume { token },
            flags: Default::default(),
        },
        &dst,
        &spec,
    )
    .unwrap();
    assert_eq!(snaps(&dst, "b/a"), snaps(&src, "p/a"));
}

#[test]
fn resume_tokens_go_stale_and_partial_state_can_be_aborted() {
    let src = src();
    let dst = dst_with_s1(&src);
    let spec = RecvSpec {
        resumable: true,
        ..into("b/a")
    };
    let stream = stream_bytes(&src, &inc("p/a@s1", "p/a@s2", false));
    let _ = pipe(&stream[..stream.len() - 100], dst.receive(&spec).unwrap());
    let token = dataset(&dst, "b/a").receive_resume_token.expect("a token");
    // The sender lost the snapshot: the token cannot be served.
    src.destroy_snapshots(&[sn("p/a@s2")]);
    let (k, msg) = failure(src.send(&SendSpec {
        source: SendSource::Resume { token },
        flags: Default::default(),
    }));
    assert_eq!(k, K::ResumeTokenInvalid);
    assert!(
        msg.contains("'p/a@s2' used in the initial send no longer exists"),
        "{msg}"
    );
    // `zfs receive -A` clears the partial state.
    dst.reset_calls();
    dst.receive_abort(&ds("b/a")).unwrap();
    assert_eq!(dst.calls(), 1);
    assert_eq!(dataset(&dst, "b/a").receive_resume_token, None);
    assert_eq!(kind(dst.receive_abort(&ds("b/a"))), K::InvalidArgument);
    transfer(&src, &inc("p/a@s1", "p/a@s3", false), &dst, &into("b/a")).unwrap();
    assert_eq!(snap_names(&dst, "b/a"), ["s1", "s3"]);
    // A new filesystem's placeholder goes with its aborted state.
    let dst = FakeZfs::from_fixture("+ b");
    let _ = transfer_cut(
        &src,
        &full("p/a@s3"),
        &dst,
        &RecvSpec {
            resumable: true,
            ..into("b/n")
        },
        1500,
    );
    assert!(
        dst.dump()
            .contains("+ b/n mounted=no receive_resume_token=..."),
        "{}",
        dst.dump()
    );
    dst.receive_abort(&ds("b/n")).unwrap();
    assert_eq!(dst.dump(), "+ b\n");
}

#[test]
fn replication_streams() {
    let src = FakeZfs::from_fixture(
        "+ p\n+ p/a\n+ p/a/c1\n+ p/a/c1/deep\n+ p/a/nosnap\n+ p/a/c1/deep/x\n\
         ~ p/a/c1 bytes=10\n",
    );
    src.set_props(&super::en("p/a/c1"), &props(&[("zfsrepl:keep", "2")]))
        .unwrap();
    src.snapshot_recursive(&sn("p/a@r1"), &[]).unwrap();
    src.destroy_snapshots(&[sn("p/a/nosnap@r1")]);
    src.snapshot_recursive(&sn("p/a@r2"), &[]).unwrap();
    let dst = FakeZfs::from_fixture("+ b");
    // -R full: every descendant with the snapshot, every snapshot up to it.
    transfer(&src, &replicate(full("p/a@r2")), &dst, &into("b/a")).unwrap();
    assert_eq!(
        dst.dump(),
        "+ b\n+ b/a\n+ b/a@r1\n+ b/a@r2\n\
         + b/a/c1 zfsrepl:keep=2\n+ b/a/c1@r1\n+ b/a/c1@r2\n\
         + b/a/c1/deep\n+ b/a/c1/deep@r1\n+ b/a/c1/deep@r2\n\
         + b/a/c1/deep/x\n+ b/a/c1/deep/x@r1\n+ b/a/c1/deep/x@r2\n\
         + b/a/nosnap\n+ b/a/nosnap@r2\n"
    );
    assert_eq!(
        prop(&dst, "b/a/c1", "zfsrepl:keep"),
        ("2".into(), "received".into())
    );
    assert_eq!(snaps(&dst, "b/a/c1/deep"), snaps(&src, "p/a/c1/deep"));
    // -R -I: increments, a new child in full, and with -F the target's
    // snapshots that the source no longer has are destroyed.
    src.create(&ds("p/a/new"), &[], false).unwrap();
    src.snapshot_recursive(&sn("p/a@r3"), &[]).unwrap();
    src.destroy_snapshots(&[sn("p/a/c1@r1")]);
    transfer(
        &src,
        &replicate(inc("p/a@r2", "p/a@r3", true)),
        &dst,
        &forced(into("b/a")),
    )
    .unwrap();
    for d in ["a", "a/c1", "a/c1/deep", "a/new", "a/nosnap"] {
        assert_eq!(
            snaps(&dst, &format!("b/{d}")),
            snaps(&src, &format!("p/{d}")),
            "{d}"
        );
    }
}

#[test]
fn discard_path_unmounted_and_property_options() {
    let src = FakeZfs::from_fixture(
        "+ p\n+ p/a\n+ p/a/b zfsrepl:x=1 zfsrepl:y=2 readonly=on\n+ p/a/b@s\n",
    );
    let dst = FakeZfs::from_fixture("+ b\n+ b/base\n");
    let mut send = full("p/a/b@s");
    send.flags.props = true;
    let spec = RecvSpec {
        target: Some(ds("b/base")),
        discard_path: true,
        unmounted: true,
        set_props: props(&[("zfsrepl:z", "3"), ("mountpoint", "none")]),
        exclude_props: vec!["zfsrepl:y".into(), "readonly".into()],
        ..RecvSpec::default()
    };
    transfer(&src, &send, &dst, &spec).unwrap();
    // -d: the sent name without its pool, below the target (parents made).
    assert_eq!(
        dst.dump(),
        "+ b\n+ b/base\n+ b/base/a\n+ b/base/a/b mountpoint=none zfsrepl:x=1 zfsrepl:z=3 mounted=no\n+ b/base/a/b@s\n"
    );
    assert_eq!(
        prop(&dst, "b/base/a/b", "zfsrepl:x"),
        ("1".into(), "received".into())
    );
    assert_eq!(
        prop(&dst, "b/base/a/b", "zfsrepl:z"),
        ("3".into(), "local".into())
    );
    assert_eq!(
        prop(&dst, "b/base/a/b", "readonly"),
        ("off".into(), "default".into())
    );
    // -d needs the target to exist.
    let spec = RecvSpec {
        target: Some(ds("b/none")),
        discard_path: true,
        ..RecvSpec::default()
    };
    assert_eq!(kind(dst.receive(&spec)), K::NotFound);
    // -o/-x names are checked up front.
    let bad = RecvSpec {
        set_props: props(&[("guid", "1")]),
        ..into("b/x")
    };
    assert_eq!(kind(dst.receive(&bad)), K::InvalidArgument);
    assert_eq!(
        kind(dst.receive(&RecvSpec::default())),
        K::InvalidArgument,
        "no target"
    );
}

#[test]
fn zfs_fuse_receive_options() {
    let f = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    f.apply_fixture("+ b").unwrap();
    for spec in [
        RecvSpec {
            resumable: true,
            ..into("b/a")
        },
        RecvSpec {
            set_props: props(&[("zfsrepl:x", "1")]),
            ..into("b/a")
        },
        RecvSpec {
            exclude_props: vec!["zfsrepl:x".into()],
            ..into("b/a")
        },
    ] {
        assert_eq!(kind(f.receive(&spec)), K::Unsupported, "{spec:?}");
    }
    assert_eq!(f.calls(), 0);
    let src = src();
    transfer(
        &src,
        &full("p/a@s1"),
        &f,
        &RecvSpec {
            unmounted: true,
            ..into("b/a")
        },
    )
    .unwrap();
    assert_eq!(f.calls(), 1);
}

#[test]
fn hostile_names_replicate() {
    let src = FakeZfs::from_fixture(
        "+ p\n+ p/-a b:c\n+ p/-a b:c/ d\n+ \"p/-a b:c@ -s: 1\"\n+ \"p/-a b:c/ d@ -s: 1\"\n",
    );
    let dst = FakeZfs::from_fixture("+ b\n+ b/x y\n");
    transfer(
        &src,
        &replicate(full("p/-a b:c@ -s: 1")),
        &dst,
        &into("b/x y/-z"),
    )
    .unwrap();
    assert_eq!(
        dst.dump(),
        "+ b\n+ \"b/x y\"\n+ \"b/x y/-z\"\n+ \"b/x y/-z@ -s: 1\"\n+ \"b/x y/-z/ d\"\n+ \"b/x y/-z/ d@ -s: 1\"\n"
    );
    assert_eq!(snaps(&dst, "b/x y/-z/ d"), snaps(&src, "p/-a b:c/ d"));
}

#[test]
fn process_counts_of_a_replication_round() {
    let src = src();
    let dst = dst_with_s1(&src);
    src.reset_calls();
    dst.reset_calls();
    let list = crate::zfs::ListSpec::all(vec![ds("p/a")]);
    src.list(&list).unwrap();
    dst.list(&crate::zfs::ListSpec::all(vec![ds("b/a")]))
        .unwrap();
    transfer(&src, &inc("p/a@s1", "p/a@s3", true), &dst, &into("b/a")).unwrap();
    src.destroy_snapshots(&[sn("p/a@s1"), sn("p/a@s2")]);
    assert_eq!((src.calls(), dst.calls()), (3, 2));
}
