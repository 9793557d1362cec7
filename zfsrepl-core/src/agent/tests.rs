//! The agent on the in-memory model: frames, config, confinement, and whole
//! replications pushed to and pulled from an agent through a socket pair.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use proptest::prelude::*;

use super::*;
use crate::model::FakeZfs;
use crate::name::{DatasetName, EntityName, SnapshotName};
use crate::replication::execute::{ExecOptions, ExecReport, execute};
use crate::replication::gather::gather_tree_input;
use crate::replication::{ReplicationPolicy, SyncJob, plan_tree};
use crate::stream::{CancelToken, NoProgress};
use crate::zfs::{
    Capabilities, ListSpec, RecvSink, RecvSpec, SendFlags, SendSource, SendSpec, SendStream,
    ZfsErrorKind, ZfsRead, ZfsStream, ZfsWrite,
};

fn ds(s: &str) -> DatasetName {
    DatasetName::parse(s).unwrap()
}

fn snap(s: &str) -> SnapshotName {
    SnapshotName::parse(s).unwrap()
}

fn job() -> SyncJob {
    SyncJob::new("j", "t1")
}

fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_790_000_000 + secs).unwrap()
}

fn config(read: &[&str], write: &[&str]) -> AgentConfig {
    AgentConfig {
        identity: Some("peer-1".into()),
        read_roots: read.iter().map(|r| ds(r)).collect(),
        write_roots: write.iter().map(|r| ds(r)).collect(),
        allow_destroy: true,
        allow_rollback: false,
        allow_stream_props: false,
    }
}

/// Runs `f` with a client connected to a server over a socket pair; the
/// server's outcome and the server (to inspect its model) are returned.
fn with_agent<T>(
    server: &Server<FakeZfs>,
    job: Option<SyncJob>,
    f: impl FnOnce(AgentClient) -> T,
) -> (T, Result<SessionStats, FrameError>) {
    let (a, b) = UnixStream::pair().unwrap();
    std::thread::scope(|sc| {
        let h = sc.spawn(move || server.serve(a));
        let client = AgentClient::connect(b, Some("agent-host".into()), job).unwrap();
        let out = f(client);
        (out, h.join().unwrap())
    })
}

/// One `zfsrepl send -r SRC DST` with a sync snapshot taken at `t`.
fn replicate<S, D>(src: &S, dst: &D, sroot: &str, droot: &str, t: i64) -> ExecReport
where
    S: ZfsRead + ZfsWrite + ZfsStream,
    D: ZfsRead + ZfsWrite + ZfsStream,
{
    let j = job();
    let s = ds(sroot).snapshot(&j.snapshot_name(at(t))).unwrap();
    src.snapshot_recursive(&s, &[]).unwrap();
    let input = gather_tree_input(src, dst, &ds(sroot), &ds(droot), true).unwrap();
    let policy = ReplicationPolicy {
        sync_prefix: Some(j.prefix()),
        ..ReplicationPolicy::default()
    };
    let mut caps = dst.capabilities().clone();
    caps.bookmarks &= src.capabilities().bookmarks;
    caps.resumable &= src.capabilities().resumable;
    let plan = plan_tree(&input, &policy, &caps);
    let opts = ExecOptions {
        sync: Some(j),
        ..ExecOptions::default()
    };
    execute(
        src,
        dst,
        &input,
        &plan,
        &opts,
        &NoProgress,
        &CancelToken::new(),
    )
}

fn versions(z: &impl ZfsRead, root: &str) -> Vec<(String, u64)> {
    z.list(&ListSpec::all(vec![ds(root)]))
        .unwrap()
        .iter()
        .flat_map(|d| {
            d.snapshots()
                .map(|v| (v.name.short().to_owned(), v.guid.0))
                .collect::<Vec<_>>()
        })
        .collect()
}

const TREE: &str = "+ tank\n+ tank/data\n~ tank/data\n+ \"tank/data/-a: b.c\"\n\
                    ~ \"tank/data/-a: b.c\"\n+ tank/data@autosnap_1\n";

// ---- frames ----

#[test]
fn frames_round_trip_and_keepalives_are_skipped() {
    let mut w = Vec::new();
    write_frame(&mut w, FrameKind::Keepalive, b"").unwrap();
    write_frame(&mut w, FrameKind::Control, b"{}").unwrap();
    write_frame(&mut w, FrameKind::Data, &[7u8; 100]).unwrap();
    write_frame(&mut w, FrameKind::End, b"").unwrap();
    assert_eq!(&w[..5], &[0, 0, 0, 1, b'K']);
    let (frames, err) = decode_all(&w);
    assert!(err.is_none(), "{err:?}");
    let kinds: Vec<FrameKind> = frames.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FrameKind::Control, FrameKind::Data, FrameKind::End]);
    assert_eq!(frames[1].payload.len(), 100);
}

#[test]
fn garbage_truncated_and_oversized_frames_are_clear_errors() {
    let (_, e) = decode_all(b"Welcome to Debian GNU/Linux\n");
    let e = e.unwrap();
    assert!(
        matches!(e, FrameError::NotAgent(ref t) if t.contains("Welcome")),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("does not speak the zfsrepl agent protocol")
    );

    let (_, e) = decode_all(&[0, 0, 0, 9, b'C', b'{']);
    assert!(
        matches!(
            e,
            Some(FrameError::Truncated {
                expected: 13,
                got: 6
            })
        ),
        "{e:?}"
    );
    let (_, e) = decode_all(&[0, 0]);
    assert!(matches!(e, Some(FrameError::Truncated { .. })), "{e:?}");

    let mut big = ((MAX_CONTROL + 2) as u32).to_be_bytes().to_vec();
    big.push(b'C');
    let (_, e) = decode_all(&big);
    assert!(
        matches!(
            e,
            Some(FrameError::TooLarge {
                kind: FrameKind::Control,
                ..
            })
        ),
        "{e:?}"
    );
    let (_, e) = decode_all(&[0, 0, 0, 0, b'C']);
    assert!(matches!(e, Some(FrameError::Empty)), "{e:?}");
    let (_, e) = decode_all(&[0, 0, 0, 1, 0xff]);
    assert!(matches!(e, Some(FrameError::UnknownType(0xff))), "{e:?}");
    // A signal frame with a big payload is oversized too.
    let (_, e) = decode_all(&[0, 1, 0, 0, b'E']);
    assert!(matches!(e, Some(FrameError::TooLarge { .. })), "{e:?}");
    // Writers refuse to produce what readers refuse.
    assert!(write_frame(&mut Vec::new(), FrameKind::Data, &vec![0; MAX_DATA + 1]).is_err());
}

proptest! {
    #[test]
    fn the_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (frames, _) = decode_all(&bytes);
        for f in frames {
            prop_assert!(f.payload.len() <= f.kind.max_payload());
            let _ = proto::parse_message::<Request>(&f.payload);
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn data_frames_split_and_rejoin(len in 0usize..3_000_000) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut w = DataFrames::new(Vec::new());
        w.write_all(&data).unwrap();
        let out = w.finish().unwrap();
        let (frames, err) = decode_all(&out);
        prop_assert!(err.is_none());
        prop_assert!(frames.iter().all(|f| f.kind == FrameKind::Data && f.payload.len() <= MAX_DATA));
        let joined: Vec<u8> = frames.into_iter().flat_map(|f| f.payload).collect();
        prop_assert_eq!(joined, data);
    }
}

// ---- config ----

#[test]
fn config_files_parse_strictly() {
    let c = AgentConfig::from_toml(
        "identity = \"ovh3\"\nread-roots = [\"tank/off\"]\nwrite-roots = [\"backup/off2\", \"b/x y\"]\nallow-destroy = true\n",
        "a.toml",
    )
    .unwrap();
    assert_eq!(c.who(), "ovh3");
    assert!(c.writable(&ds("b/x y/z")));
    assert!(!c.writable(&ds("b/x")));
    assert!(!c.writable(&ds("b/x yz")), "a prefix is not a root");
    assert!(c.readable(&ds("tank/off")));
    assert!(!c.allow_rollback);
    let e = AgentConfig::from_toml("read-roots = [\"tank/a/../b\"]\n", "a.toml").unwrap_err();
    assert!(e.to_string().contains("'..'"), "{e}");
    let e = AgentConfig::from_toml("read-root = [\"tank\"]\n", "a.toml").unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    let e = AgentConfig::from_toml("allow-destroy = true\n", "a.toml").unwrap_err();
    assert!(matches!(e, AgentConfigError::Empty { .. }), "{e}");
}

#[test]
fn requests_with_traversal_or_bad_names_do_not_parse() {
    for bad in [
        r#"{"op":"receive-abort","target":"pool/a/../b"}"#,
        r#"{"op":"receive-abort","target":"pool/./b"}"#,
        r#"{"op":"receive-abort","target":"/pool/b"}"#,
        r#"{"op":"receive-abort","target":"pool//b"}"#,
        r#"{"op":"holds","snapshot":"pool/a"}"#,
        r#"{"op":"holds","snapshot":"pool/a@b@c"}"#,
    ] {
        assert!(
            proto::parse_message::<Request>(bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
}

// ---- the server on the model ----

#[test]
fn push_and_pull_a_tree_through_the_agent() {
    let mut plain_bytes = 0;
    for level in [None, Some(3)] {
        // Push: a local source, the agent receives.
        let src = FakeZfs::from_fixture(TREE);
        let server = Server::new(
            config(&[], &["back/in"]),
            FakeZfs::from_fixture("+ back\n+ back/in\n"),
        );
        let (reports, stats) = with_agent(&server, Some(job()), |mut c| {
            c.set_compression(level);
            let r1 = replicate(&src, &c, "tank/data", "back/in/data", 1);
            src.apply_fixture("~ tank/data bytes=100000\n").unwrap();
            let r2 = replicate(&src, &c, "tank/data", "back/in/data", 2);
            (r1, r2)
        });
        assert_eq!(reports.0.failures(), 0, "{:#?}", reports.0);
        assert_eq!(reports.1.failures(), 0, "{:#?}", reports.1);
        assert!(reports.1.bytes() > 0);
        let stats = stats.unwrap();
        assert_eq!(stats.refused, 0);
        // Same guids; the older sync snapshot was cleaned on the agent too.
        let s2 = job().snapshot_name(at(2));
        let want: Vec<(String, u64)> = versions(&src, "tank/data")
            .into_iter()
            .filter(|(n, _)| *n == s2)
            .collect();
        assert_eq!(versions(server.zfs(), "back/in/data"), want);
        assert_eq!(
            server
                .zfs()
                .holds(&snap(&format!("back/in/data@{s2}")))
                .unwrap(),
            [job().hold_tag()]
        );
        // The model's payload is incompressible: zstd shows as a different
        // (framed) byte count, not a smaller one.
        match level {
            None => plain_bytes = stats.bytes_received,
            Some(_) => assert_ne!(stats.bytes_received, plain_bytes),
        }

        // Pull: the agent sends, a local target receives.
        let dst = FakeZfs::from_fixture("+ back\n");
        let server = Server::new(config(&["tank/data"], &[]), FakeZfs::from_fixture(TREE));
        let (reports, stats) = with_agent(&server, Some(job()), |mut c| {
            c.set_compression(level);
            let r1 = replicate(&c, &dst, "tank/data", "back/data", 1);
            server
                .zfs()
                .apply_fixture("~ tank/data bytes=100000\n")
                .unwrap();
            let r2 = replicate(&c, &dst, "tank/data", "back/data", 2);
            (r1, r2)
        });
        assert_eq!(reports.0.failures(), 0, "{:#?}", reports.0);
        assert_eq!(reports.1.failures(), 0, "{:#?}", reports.1);
        assert_eq!(stats.unwrap().refused, 0);
        let tree = |z: &FakeZfs, root: &str| {
            z.list(&ListSpec::all(vec![ds(root)]))
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d.name.as_str()[root.len()..].to_owned(),
                        d.snapshots().max_by_key(|v| v.createtxg).map(|v| v.guid),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(tree(&dst, "back/data"), tree(server.zfs(), "tank/data"));
        assert_eq!(tree(&dst, "back/data").len(), 2);
    }
}

/// Regression (network sessions did not take the receiving host's locks):
/// while a local job of the agent's host holds a dataset's lock, a peer's
/// receive into it, rollback of it and receive-abort on it are answered
/// busy (retryable, naming the holder) and change nothing; the lock is
/// the agent's for as long as the stream runs; once the local job is done,
/// the same push lands.
#[test]
fn a_locked_dataset_is_busy_for_the_peer_until_its_holder_is_done() {
    use crate::lock::LockDir;
    let locks_dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(locks_dir.path());
    let src = FakeZfs::from_fixture(TREE);
    let mut cfg = config(&[], &["back/in"]);
    cfg.allow_rollback = true;
    let server = Server::new(
        cfg,
        FakeZfs::from_fixture("+ back\n+ back/in\n+ back/in/x\n+ back/in/x@s\n"),
    )
    .with_locks(locks.clone());
    let held = locks
        .try_lock(None, &ds("back/in/data"), "zfsrepl daemon job prune")
        .unwrap();
    let x = locks
        .try_lock(None, &ds("back/in/x"), "zfsrepl daemon job clones")
        .unwrap();
    let (outcome, _) = with_agent(&server, Some(job()), |c| {
        let r = replicate(&src, &c, "tank/data", "back/in/data", 1);
        let rollback = c.rollback(&snap("back/in/x@s"), false).unwrap_err();
        let abort = c.receive_abort(&ds("back/in/x")).unwrap_err();
        (r, rollback, abort)
    });
    let (report, rollback, abort) = outcome;
    assert!(report.failures() > 0, "{report:#?}");
    let shown = format!("{report:#?}");
    assert!(shown.contains("zfsrepl daemon job prune"), "{shown}");
    for e in [&rollback, &abort] {
        assert_eq!(e.kind, ZfsErrorKind::Busy, "{e}");
        assert!(e.kind.is_transient());
        assert!(e.to_string().contains("zfsrepl daemon job clones"), "{e}");
    }
    assert!(
        !server
            .zfs()
            .list(&ListSpec::all(vec![ds("back/in")]))
            .unwrap()
            .iter()
            .any(|d| d.name == ds("back/in/data")),
        "nothing was received into a locked dataset"
    );
    drop((held, x));
    // A lock the agent takes is its own while the stream runs: a local job
    // finds the dataset busy, with the agent named.
    let (report, _) = with_agent(&server, Some(job()), |c| {
        let sink = c
            .receive(&RecvSpec {
                target: Some(ds("back/in/y")),
                ..RecvSpec::default()
            })
            .unwrap();
        let busy = locks
            .try_lock(None, &ds("back/in/y"), "zfsrepl prune")
            .unwrap_err()
            .to_string();
        sink.abort();
        assert!(busy.contains("zfsrepl agent: receive for peer-1"), "{busy}");
        replicate(&src, &c, "tank/data", "back/in/data", 2)
    });
    assert_eq!(report.failures(), 0, "{report:#?}");
    assert!(locks.try_lock(None, &ds("back/in/y"), "after").is_ok());

    // A lock directory the agent cannot use (here, below a plain file):
    // nothing is received, and the error says which setting to change.
    let file = locks_dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let server = Server::new(config(&[], &["back"]), FakeZfs::from_fixture("+ back\n"))
        .with_locks(LockDir::new(file.join("locks")));
    let (e, _) = with_agent(&server, Some(job()), |c| {
        c.receive(&RecvSpec {
            target: Some(ds("back/z")),
            ..RecvSpec::default()
        })
        .err()
        .unwrap()
    });
    assert!(e.to_string().contains("zfsrepl serve --lock-dir"), "{e}");
}

/// Regression (finding 9: a link cut left zfs-fuse holds on the source):
/// the executor started `zfs send` before the receiver, and aborted it
/// when the receiver could not start; on zfs-fuse an aborted `zfs send -I`
/// leaves its temporary holds even when it ends by itself. A receiver that
/// cannot start (here a busy target behind the agent) now costs no send at
/// all, and one that can gets exactly one per step.
#[test]
fn a_receiver_that_cannot_start_costs_no_send() {
    use crate::lock::LockDir;
    let locks_dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(locks_dir.path());
    let src = FakeZfs::from_fixture(TREE);
    let server = Server::new(config(&[], &["back"]), FakeZfs::from_fixture("+ back\n"))
        .with_locks(locks.clone());
    let run = |c: &AgentClient| {
        let input = gather_tree_input(&src, c, &ds("tank/data"), &ds("back/data"), true).unwrap();
        let plan = plan_tree(&input, &ReplicationPolicy::default(), c.capabilities());
        execute(
            &src,
            c,
            &input,
            &plan,
            &ExecOptions::default(),
            &NoProgress,
            &CancelToken::new(),
        )
    };
    let held = locks
        .try_lock(None, &ds("back/data"), "zfsrepl prune")
        .unwrap();
    let (report, _) = with_agent(&server, None, |c| run(&c));
    assert!(report.failures() > 0, "{report:#?}");
    assert_eq!(src.sends(), 0, "{report:#?}");
    drop(held);
    let (report, _) = with_agent(&server, None, |c| run(&c));
    // One full send: tank/data (its child has no snapshot to send).
    assert!(report.datasets[0].error.is_none(), "{report:#?}");
    assert_eq!(report.datasets[0].steps_done, 1, "{report:#?}");
    assert_eq!(src.sends(), 1, "{report:#?}");
}

#[test]
fn everything_outside_the_roots_is_refused_and_the_session_goes_on() {
    let server = Server::new(
        config(&["tank/data"], &["back/in"]),
        FakeZfs::from_fixture(
            "+ tank\n+ tank/data\n+ tank/data@a\n+ tank/other\n+ tank/other@a\n+ back\n+ back/in\n+ back/out\n",
        ),
    );
    let ((), stats) = with_agent(&server, Some(job()), |c| {
        let refused = |r: Result<(), crate::ZfsError>| {
            let e = r.unwrap_err();
            assert_eq!(e.kind, ZfsErrorKind::PermissionDenied, "{e}");
            assert!(
                e.to_string().contains("refused by the zfsrepl agent"),
                "{e}"
            );
            assert_eq!(e.host.as_deref(), Some("agent-host"));
        };
        refused(c.list(&ListSpec::all(vec![ds("tank")])).map(drop));
        refused(c.list(&ListSpec::all(vec![ds("tank/other")])).map(drop));
        refused(c.list(&ListSpec::all(vec![ds("tank/dat")])).map(drop));
        assert_eq!(
            c.list(&ListSpec::all(vec![ds("tank/data")])).unwrap().len(),
            1
        );
        refused(
            c.get_props(&[EntityName::Dataset(ds("tank"))], &["used"], true)
                .map(drop),
        );
        // Send from outside the read roots, or from a write-only root.
        let full = |s: &str| SendSpec {
            source: SendSource::Full { snapshot: snap(s) },
            flags: SendFlags::default(),
        };
        refused(c.send(&full("tank/other@a")).map(drop));
        refused(c.send_estimate(&full("tank/other@a")).map(drop));
        refused(
            c.send(&SendSpec {
                source: SendSource::Incremental {
                    from: crate::zfs::VersionName::Snapshot(snap("tank/other@a")),
                    to: snap("tank/data@a"),
                    intermediates: false,
                },
                flags: SendFlags::default(),
            })
            .map(drop),
        );
        // Receive outside the write roots, into a read root, with -F, with
        // a dangerous -o.
        let recv = |t: &str| RecvSpec {
            target: Some(ds(t)),
            ..RecvSpec::default()
        };
        refused(c.receive(&recv("back/out/x")).map(drop));
        refused(c.receive(&recv("tank/data/x")).map(drop));
        refused(c.receive(&recv("back/inx")).map(drop));
        refused(
            c.receive(&RecvSpec {
                force: true,
                ..recv("back/in/x")
            })
            .map(drop),
        );
        refused(
            c.receive(&RecvSpec {
                set_props: vec![("mountpoint".into(), "/etc".into())],
                ..recv("back/in/x")
            })
            .map(drop),
        );
        refused(c.receive(&RecvSpec::default()).map(drop));
        // Properties: only the safe ones, only on writable datasets.
        refused(c.set_props(
            &EntityName::Dataset(ds("back/in")),
            &[("mountpoint".into(), "/".into())],
        ));
        refused(c.set_props(
            &EntityName::Dataset(ds("tank/data")),
            &[("readonly".into(), "on".into())],
        ));
        c.set_props(
            &EntityName::Dataset(ds("back/in")),
            &[("readonly".into(), "on".into())],
        )
        .unwrap();
        refused(c.receive_abort(&ds("back/out")));
        refused(c.rollback(&snap("back/in@x"), true));
        // Snapshots, holds, bookmarks and destroys: the job's own names
        // only, inside the roots.
        let own = job().snapshot_name(at(1));
        refused(c.snapshot(&[snap("tank/data@mine")], &[]));
        refused(c.snapshot(&[snap(&format!("tank/other@{own}"))], &[]));
        refused(c.snapshot(&[snap(&format!("back/in@{own}"))], &[]));
        let other_job = SyncJob::new("other", "t1").snapshot_name(at(1));
        refused(c.snapshot(&[snap(&format!("tank/data@{other_job}"))], &[]));
        c.snapshot(&[snap(&format!("tank/data@{own}"))], &[])
            .unwrap();
        refused(c.hold(&job().hold_tag(), &[snap("tank/other@a")]));
        let e = c.hold("someone-else", &[snap("tank/data@a")]).unwrap_err();
        assert_eq!(e.kind, ZfsErrorKind::InvalidArgument);
        c.hold(&job().hold_tag(), &[snap("tank/data@a")]).unwrap();
        c.release(&job().hold_tag(), &[snap("tank/data@a")])
            .unwrap();
        refused(c.bookmark(
            &snap("tank/data@a"),
            &ds("tank/data").bookmark("a").unwrap(),
        ));
        // A foreign snapshot, even alongside an own one, is not destroyed.
        let out = c.destroy_snapshots(&[snap("tank/data@a"), snap(&format!("tank/data@{own}"))]);
        assert!(out.iter().all(|(_, r)| {
            r.as_ref()
                .is_err_and(|e| e.kind == ZfsErrorKind::PermissionDenied)
        }));
        let out = c.destroy_snapshots(&[snap(&format!("tank/data@{own}"))]);
        assert!(out[0].1.is_ok(), "{out:?}");
        // Not supported at all.
        assert_eq!(
            c.destroy_dataset(&ds("back/in"), true).unwrap_err().kind,
            ZfsErrorKind::Unsupported
        );
        assert_eq!(
            c.create(&ds("back/in/x"), &[], false).unwrap_err().kind,
            ZfsErrorKind::Unsupported
        );
    });
    let stats = stats.unwrap();
    assert!(stats.refused >= 20, "{stats:?}");
    let z = server.zfs();
    assert_eq!(
        versions(z, "tank/data"),
        versions(z, "tank/data")
            .into_iter()
            .filter(|(n, _)| n == "a")
            .collect::<Vec<_>>(),
        "only the own sync snapshot came and went"
    );
    assert_eq!(versions(z, "tank/other").len(), 1);
}

#[test]
fn destroys_and_rollbacks_need_the_config_to_allow_them() {
    let fixture = "+ back\n+ back/in\n+ back/in@zfsrepl_sync_j_t1_20260101T000000.000Z\n\
                   + back/in@zfsrepl_sync_j_t1_20260102T000000.000Z\n+ back/in@theirs\n";
    let mut cfg = config(&[], &["back/in"]);
    cfg.allow_destroy = false;
    let server = Server::new(cfg.clone(), FakeZfs::from_fixture(fixture));
    let s1 = snap("back/in@zfsrepl_sync_j_t1_20260101T000000.000Z");
    with_agent(&server, Some(job()), |c| {
        let out = c.destroy_snapshots(std::slice::from_ref(&s1));
        let e = out[0].1.as_ref().unwrap_err();
        assert!(e.to_string().contains("allow-destroy"), "{e}");
        let e = c.rollback(&s1, true).unwrap_err();
        assert!(e.to_string().contains("allow-rollback"), "{e}");
    })
    .1
    .unwrap();
    cfg.allow_rollback = true;
    let server = Server::new(cfg, FakeZfs::from_fixture(fixture));
    with_agent(&server, Some(job()), |c| {
        // `theirs` is newer and not zfsrepl's: no rollback over it.
        let e = c.rollback(&s1, true).unwrap_err();
        assert!(e.to_string().contains("back/in@theirs"), "{e}");
        c.rollback(&snap("back/in@theirs"), true).unwrap();
    })
    .1
    .unwrap();
    assert_eq!(versions(server.zfs(), "back/in").len(), 3);
    // Without a job, nothing of a job's is allowed.
    with_agent(&server, None, |c| {
        let e = c.rollback(&s1, false).unwrap_err();
        assert_eq!(e.kind, ZfsErrorKind::TargetHasNewerSnapshots, "{e}");
        let e = c.snapshot(
            &[snap("back/in@zfsrepl_sync_j_t1_20260103T000000.000Z")],
            &[],
        );
        assert!(e.unwrap_err().to_string().contains("no job"));
    })
    .1
    .unwrap();
}

/// Sends raw bytes to a server and returns what it answered and how the
/// session ended.
fn raw_session(
    server: &Server<FakeZfs>,
    input: &[u8],
) -> (Vec<u8>, Result<SessionStats, FrameError>) {
    let (a, mut b) = UnixStream::pair().unwrap();
    std::thread::scope(|sc| {
        let h = sc.spawn(move || server.serve(a));
        let _ = b.write_all(input);
        b.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        b.read_to_end(&mut out).unwrap();
        (out, h.join().unwrap())
    })
}

fn hello_frame() -> Vec<u8> {
    let mut w = Vec::new();
    proto::send_message(
        &mut w,
        &Request::Hello {
            version: PROTOCOL_VERSION,
            job: None,
        },
        &mut Vec::new(),
    )
    .unwrap();
    w
}

#[test]
fn garbage_ends_the_session_with_an_error_reply_and_no_panic() {
    let server = Server::new(config(&["tank"], &[]), FakeZfs::from_fixture("+ tank\n"));
    // Text instead of frames.
    let (out, r) = raw_session(&server, b"echo hello; rm -rf /\n");
    assert!(matches!(r, Err(FrameError::NotAgent(_))), "{r:?}");
    let (frames, _) = decode_all(&out);
    let reply: Response = proto::parse_message(&frames[0].payload).unwrap();
    assert!(matches!(reply, Response::Error { .. }), "{reply:?}");
    // An oversized frame is refused before it is read.
    let (_, r) = raw_session(&server, &[0, 0x20, 0, 0, b'C']);
    assert!(matches!(r, Err(FrameError::TooLarge { .. })), "{r:?}");
    // A truncated frame.
    let mut t = hello_frame();
    t.truncate(t.len() - 3);
    let (_, r) = raw_session(&server, &t);
    assert!(matches!(r, Err(FrameError::Truncated { .. })), "{r:?}");
    // Not a request; a request before hello; a traversal in a name.
    let mut w = Vec::new();
    write_frame(&mut w, FrameKind::Control, b"{\"op\":\"format-disk\"}").unwrap();
    let (_, r) = raw_session(&server, &w);
    assert!(matches!(r, Err(FrameError::BadControl(_))), "{r:?}");
    let mut w = Vec::new();
    write_frame(&mut w, FrameKind::Control, br#"{"op":"list","spec":{"roots":["tank"],"recursive":true,"snapshots":true,"bookmarks":true,"user_props":[]}}"#).unwrap();
    let (out, r) = raw_session(&server, &w);
    assert!(r.is_err());
    assert!(String::from_utf8_lossy(&out).contains("hello"));
    let mut w = hello_frame();
    write_frame(
        &mut w,
        FrameKind::Control,
        br#"{"op":"receive-abort","target":"tank/a/../b"}"#,
    )
    .unwrap();
    let (out, r) = raw_session(&server, &w);
    assert!(
        matches!(r, Err(FrameError::BadControl(ref m)) if m.contains("'..'")),
        "{r:?}"
    );
    assert!(String::from_utf8_lossy(&out).contains("'..'"));
    // A data frame where a request belongs.
    let mut w = hello_frame();
    write_frame(&mut w, FrameKind::Data, b"xx").unwrap();
    let (_, r) = raw_session(&server, &w);
    assert!(
        matches!(r, Err(FrameError::Unexpected(FrameKind::Data))),
        "{r:?}"
    );
    // A job name that is not sanitised (it could pose as another job).
    let mut w = Vec::new();
    proto::send_message(
        &mut w,
        &Request::Hello {
            version: PROTOCOL_VERSION,
            job: Some(JobId {
                job: "a_b".into(),
                target: "c".into(),
            }),
        },
        &mut Vec::new(),
    )
    .unwrap();
    let (out, r) = raw_session(&server, &w);
    assert!(r.is_err());
    assert!(String::from_utf8_lossy(&out).contains("not sanitised"));
    // Another protocol version.
    let mut w = Vec::new();
    proto::send_message(
        &mut w,
        &Request::Hello {
            version: 99,
            job: None,
        },
        &mut Vec::new(),
    )
    .unwrap();
    let (out, _) = raw_session(&server, &w);
    assert!(String::from_utf8_lossy(&out).contains("protocol version 99"));
}

#[test]
fn abandoned_streams_leave_the_connection_in_step() {
    let server = Server::new(
        config(&["tank/data"], &["back"]),
        FakeZfs::from_fixture(
            "+ tank\n+ tank/data\n~ tank/data bytes=3000000\n+ tank/data@a\n+ back\n",
        ),
    );
    server.zfs().set_stream_payload_limit(8 << 20);
    with_agent(&server, None, |c| {
        let spec = SendSpec {
            source: SendSource::Full {
                snapshot: snap("tank/data@a"),
            },
            flags: SendFlags::default(),
        };
        // Pull: read a little, then abort; the rest is drained.
        let mut s = c.send(&spec).unwrap();
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).unwrap();
        s.abort();
        assert_eq!(
            c.list(&ListSpec::all(vec![ds("tank/data")])).unwrap().len(),
            1
        );
        // Push: write part of a stream, then abort: nothing is received.
        let mut full = Vec::new();
        let mut s = c.send(&spec).unwrap();
        s.read_to_end(&mut full).unwrap();
        s.finish().unwrap();
        assert!(full.len() > 3_000_000);
        let recv = RecvSpec {
            target: Some(ds("back/x")),
            ..RecvSpec::default()
        };
        let mut r = c.receive(&recv).unwrap();
        r.write_all(&full[..full.len() / 2]).unwrap();
        r.abort();
        let e = c.list(&ListSpec::all(vec![ds("back/x")])).unwrap_err();
        assert_eq!(e.kind, ZfsErrorKind::NotFound, "{e}");
        // A truncated stream fails on the receiver, not the connection.
        let mut r = c.receive(&recv).unwrap();
        r.write_all(&full[..full.len() / 2]).unwrap();
        let e = r.finish().unwrap_err();
        assert_ne!(e.kind, ZfsErrorKind::Transport, "{e}");
        // And the whole stream arrives.
        let mut r = c.receive(&recv).unwrap();
        r.write_all(&full).unwrap();
        r.finish().unwrap();
        assert_eq!(versions(&c, "back/x").len(), 1);
    })
    .1
    .unwrap();
}

#[test]
fn resume_tokens_pass_through_the_agent() {
    // The agent's target keeps a token; the resumed send comes from here.
    let src =
        FakeZfs::from_fixture("+ tank\n+ tank/data\n~ tank/data bytes=200000\n+ tank/data@a\n");
    let server = Server::new(
        config(&[], &["back"]),
        FakeZfs::with_capabilities(Capabilities::openzfs()),
    );
    server.zfs().apply_fixture("+ back\n").unwrap();
    with_agent(&server, None, |c| {
        assert!(c.capabilities().resumable);
        let mut send = src
            .send(&SendSpec {
                source: SendSource::Full {
                    snapshot: snap("tank/data@a"),
                },
                flags: SendFlags::default(),
            })
            .unwrap();
        let mut part = vec![0u8; 100_000];
        send.read_exact(&mut part).unwrap();
        let mut r = c
            .receive(&RecvSpec {
                target: Some(ds("back/d")),
                resumable: true,
                ..RecvSpec::default()
            })
            .unwrap();
        r.write_all(&part).unwrap();
        r.abort();
        let l = c.list(&ListSpec::all(vec![ds("back/d")])).unwrap();
        let token = l[0].receive_resume_token.clone().unwrap();
        let mut send = src
            .send(&SendSpec {
                source: SendSource::Resume { token },
                flags: SendFlags::default(),
            })
            .unwrap();
        let mut rest = Vec::new();
        send.read_to_end(&mut rest).unwrap();
        let mut r = c
            .receive(&RecvSpec {
                target: Some(ds("back/d")),
                resumable: true,
                ..RecvSpec::default()
            })
            .unwrap();
        r.write_all(&rest).unwrap();
        r.finish().unwrap();
        assert_eq!(versions(&c, "back/d"), versions(&src, "tank/data"));
    })
    .1
    .unwrap();
    // A token naming a snapshot outside the read roots is refused.
    let server = Server::new(
        config(&["tank/data"], &[]),
        FakeZfs::from_fixture("+ tank\n+ tank/other\n"),
    );
    with_agent(&server, None, |c| {
        let token =
            crate::zfs::resume::encode_resume_token(&crate::zfs::resume::ResumeTokenContents {
                toname: "tank/other@a".into(),
                toguid: crate::Guid(1),
                fromguid: None,
                object: 1,
                offset: 0,
                bytes: 0,
                flags: Vec::new(),
                extra: Vec::new(),
            });
        let e = c
            .send(&SendSpec {
                source: SendSource::Resume { token },
                flags: SendFlags::default(),
            })
            .unwrap_err();
        assert!(e.to_string().contains("tank/other"), "{e}");
        let e = c
            .send(&SendSpec {
                source: SendSource::Resume {
                    token: "1-garbage".into(),
                },
                flags: SendFlags::default(),
            })
            .unwrap_err();
        assert!(e.to_string().contains("does not decode"), "{e}");
    })
    .1
    .unwrap();
}

#[test]
fn a_dead_agent_is_a_transport_error() {
    let (a, b) = UnixStream::pair().unwrap();
    drop(a);
    let e = AgentClient::connect(b, Some("h".into()), None).unwrap_err();
    assert_eq!(e.kind, ZfsErrorKind::Transport, "{e}");
    // A peer that is not an agent.
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"bash: zfsrepl: command not found\n").unwrap();
    drop(a);
    let e = AgentClient::connect(b, Some("h".into()), None).unwrap_err();
    assert!(e.to_string().contains("command not found"), "{e}");
}

/// A BEGIN record header: `drr_type` 0, `drr_payloadlen`, `drr_magic`,
/// `drr_versioninfo` (little-endian, as x86 writes it).
/// A BEGIN record (312 bytes) with its header type and payload (the
/// packed nvlist of a compound stream).
fn begin_record(hdrtype: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    v.extend_from_slice(&0x2_f5ba_cbac_u64.to_le_bytes());
    v.extend_from_slice(&((4u64 << 2) | hdrtype).to_le_bytes());
    v.extend_from_slice(&[0u8; 288]);
    v.extend_from_slice(payload);
    v
}

#[test]
fn streams_with_properties_are_refused_before_zfs_sees_them() {
    let server = Server::new(config(&[], &["back"]), FakeZfs::from_fixture("+ back\n"));
    let recv = RecvSpec {
        target: Some(ds("back/x")),
        ..RecvSpec::default()
    };
    with_agent(&server, None, |mut c| {
        for level in [None, Some(1)] {
            c.set_compression(level);
            // A compound stream with the fss list (send -p / -R): refused.
            let mut r = c.receive(&recv).unwrap();
            r.write_all(&begin_record(2, b"\0\0\0\x03fss\0\0\0\0\0"))
                .unwrap();
            let e = r.finish().unwrap_err();
            assert_eq!(e.kind, ZfsErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("allow-stream-props"), "{e}");
            // A plain substream header, and a compound one without fss
            // (send -I), reach zfs (which finds the rest is not a stream
            // the model knows).
            for head in [begin_record(1, b""), begin_record(2, b"")] {
                let mut r = c.receive(&recv).unwrap();
                r.write_all(&head).unwrap();
                let e = r.finish().unwrap_err();
                assert_ne!(e.kind, ZfsErrorKind::PermissionDenied, "{e}");
            }
        }
    })
    .1
    .unwrap();
    assert!(
        server
            .zfs()
            .list(&ListSpec::all(vec![ds("back/x")]))
            .is_err()
    );
}

/// A scripted agent: answers hello, then a send with some data, an abort
/// frame and the sender's error; then a list. The client reports the
/// sender's error (not a transport failure) and the session goes on.
#[test]
fn a_sender_that_fails_mid_stream_is_reported_as_such() {
    let (mut a, b) = UnixStream::pair().unwrap();
    let script = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut scratch = Vec::new();
        let hello: Request = proto::recv_message(&mut a, &mut buf).unwrap();
        assert!(matches!(hello, Request::Hello { .. }));
        let caps = Capabilities::zfs_fuse();
        let r = Response::Hello {
            version: PROTOCOL_VERSION,
            caps,
            identity: None,
        };
        proto::send_message(&mut a, &r, &mut scratch).unwrap();
        let send: Request = proto::recv_message(&mut a, &mut buf).unwrap();
        assert!(matches!(send, Request::Send { .. }));
        proto::send_message(&mut a, &Response::Ready, &mut scratch).unwrap();
        write_frame(&mut a, FrameKind::Data, &[1u8; 5000]).unwrap();
        write_frame(&mut a, FrameKind::Keepalive, b"").unwrap();
        write_frame(&mut a, FrameKind::Data, &[2u8; 5000]).unwrap();
        write_frame(&mut a, FrameKind::Abort, b"zfs send failed").unwrap();
        let e = crate::ZfsError::new("send tank/a@s", ZfsErrorKind::PoolUnavailable, "I/O error");
        let r = Response::Error {
            error: WireError::from(&e),
        };
        proto::send_message(&mut a, &r, &mut scratch).unwrap();
        let list: Request = proto::recv_message(&mut a, &mut buf).unwrap();
        assert!(matches!(list, Request::List { .. }));
        let r = Response::List {
            datasets: Vec::new(),
            more: false,
        };
        proto::send_message(&mut a, &r, &mut scratch).unwrap();
    });
    let c = AgentClient::connect(b, Some("scripted".into()), None).unwrap();
    assert_eq!(c.capabilities().flavor, "zfs-fuse");
    let mut s = c
        .send(&SendSpec {
            source: SendSource::Full {
                snapshot: snap("tank/a@s"),
            },
            flags: SendFlags::default(),
        })
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 10_000);
    let e = s.finish().unwrap_err();
    assert_eq!(e.kind, ZfsErrorKind::PoolUnavailable, "{e}");
    assert_eq!(e.host.as_deref(), Some("scripted"));
    assert!(
        c.list(&ListSpec::all(vec![ds("tank/a")]))
            .unwrap()
            .is_empty()
    );
    script.join().unwrap();
}

#[test]
fn big_listings_come_in_chunks_and_join_back() {
    let mut fx = String::from("+ tank\n+ tank/big\n");
    for i in 0..600 {
        fx.push_str(&format!(
            "+ tank/big@autosnap_2026-11-22_05:00:{i:05}_a-rather-long-name-to-make-the-listing-big\n"
        ));
    }
    for d in 0..50 {
        fx.push_str(&format!("+ tank/many/d{d}\n"));
        for i in 0..10 {
            fx.push_str(&format!("+ tank/many/d{d}@s{i}\n"));
        }
    }
    // A budget of 20 KB stands for the 1 MiB frame: the model is slow
    // with the hundred thousand snapshots a real 1 MiB needs.
    let budget = 20_000;
    let server =
        Server::new(config(&["tank"], &[]), FakeZfs::from_fixture(&fx)).with_chunk_budget(budget);
    let spec = ListSpec::all(vec![ds("tank")]);
    let direct = server.zfs().list(&spec).unwrap();
    assert!(
        serde_json::to_vec(&direct[1]).unwrap().len() > 4 * budget,
        "tank/big must not fit one response"
    );
    let names: Vec<EntityName> = direct
        .iter()
        .map(|d| EntityName::Dataset(d.name.clone()))
        .collect();
    let props = server
        .zfs()
        .get_props(&names, &["used", "guid", "creation", "referenced"], true)
        .unwrap();
    with_agent(&server, None, |c| {
        assert_eq!(c.list(&spec).unwrap(), direct);
        assert_eq!(
            c.get_props(&names, &["used", "guid", "creation", "referenced"], true)
                .unwrap(),
            props
        );
        // Naming no root is not "everything".
        let e = c.list(&ListSpec::all(Vec::new())).unwrap_err();
        assert_eq!(e.kind, ZfsErrorKind::PermissionDenied, "{e}");
        let e = c.get_props(&[], &["used"], true).unwrap_err();
        assert_eq!(e.kind, ZfsErrorKind::PermissionDenied, "{e}");
    })
    .1
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Chunks stay within the budget (but for single oversized versions),
    /// and joining consecutive parts of one dataset gives the listing back.
    #[test]
    fn list_chunks_join_back(sizes in proptest::collection::vec(0usize..40, 0..12), budget in 300usize..3000) {
        let datasets: Vec<crate::zfs::Dataset> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let name = ds(&format!("tank/d{i}"));
                crate::zfs::Dataset {
                    versions: (0..*n)
                        .map(|v| crate::zfs::Version {
                            name: crate::zfs::VersionName::Snapshot(name.snapshot(&format!("s{v}")).unwrap()),
                            guid: crate::Guid(v as u64),
                            createtxg: crate::Txg(v as u64),
                            creation: 0,
                            used: None,
                            userrefs: None,
                        })
                        .collect(),
                    name,
                    kind: crate::zfs::DatasetKind::Filesystem,
                    guid: crate::Guid(i as u64),
                    createtxg: crate::Txg(1),
                    creation: 0,
                    used: 0,
                    origin: None,
                    receive_resume_token: None,
                    user_props: Default::default(),
                }
            })
            .collect();
        let chunks = server::list_chunks(datasets.clone(), budget);
        let mut joined: Vec<crate::zfs::Dataset> = Vec::new();
        for c in &chunks {
            if c.len() > 1 || c.iter().any(|d| d.versions.len() > 1) {
                prop_assert!(serde_json::to_vec(c).unwrap().len() <= budget + 2 * c.len() + 2);
            }
            for d in c.clone() {
                match joined.last_mut() {
                    Some(l) if l.name == d.name => l.versions.extend(d.versions),
                    _ => joined.push(d),
                }
            }
        }
        prop_assert_eq!(joined, datasets);
    }
}
