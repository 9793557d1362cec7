//! The `zfs` command layer over a real ssh connection: a private `sshd` on a
//! loopback port (started by the test, from Debian's openssh-server), real
//! pools, hostile names and hostile property values. Checks that every
//! argument is quoted exactly once and that one connection serves every call.
//!
//! The sshd is `zfsrepl_core::testing::sshd::Sshd`.
//!
//! Like the other real-pool tests this never skips: without `sshd` or ZFS it
//! fails (`.ci/run` installs both).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure is the test failing

use std::net::TcpListener;

use zfsrepl_core::testing::sshd::Sshd;
use zfsrepl_core::testing::{TestPool, zfs_binary};
use zfsrepl_core::zfs::{
    ListSpec, LocalRunner, RecvSink, RecvSpec, SendFlags, SendSource, SendSpec, SendStream,
    SshRunner, SshTarget, ZfsStream,
};
use zfsrepl_core::{EntityName, Runner, ZfsCli, ZfsErrorKind, ZfsRead, ZfsWrite};

#[test]
fn zfs_over_ssh_quotes_once_and_reuses_one_connection() {
    let sshd = Sshd::start();
    let pool = TestPool::new();
    pool.apply("+ \"with space\"\n+ \"-dash: x\"\n+ \"with space@s 1\"\n+ \"-dash: x@-s\"");
    let remote = ZfsCli::probe(SshRunner::new(sshd.target()).unwrap(), zfs_binary())
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nsshd log:\n{}",
                std::fs::read_to_string(sshd.log()).unwrap_or_default()
            )
        });
    let local = pool.zfs();
    assert_eq!(remote.capabilities(), local.capabilities());
    let spec = ListSpec::all(vec![pool.root()]);
    assert_eq!(remote.list(&spec).unwrap(), local.list(&spec).unwrap());

    // Hostile values must arrive byte for byte, and nothing may execute.
    let canary = std::env::temp_dir().join(format!("zfsrepl-canary-{}", std::process::id()));
    let hostile = format!(
        "it's \"q\" $(touch {c}) `touch {c}`; touch {c} | x & y",
        c = canary.display()
    );
    let ds = EntityName::Dataset(pool.ds("-dash: x"));
    remote
        .set_props(&ds, &[("zfsrepl:note".into(), hostile.clone())])
        .unwrap();
    let got = local
        .get_props(std::slice::from_ref(&ds), &["zfsrepl:note"], false)
        .unwrap();
    assert_eq!(got[0].value, hostile);
    assert!(!canary.exists(), "a hostile value was executed");
    remote
        .hold("-tag; $(id)", &[pool.snap("-dash: x", "-s")])
        .unwrap();
    remote
        .release("-tag; $(id)", &[pool.snap("-dash: x", "-s")])
        .unwrap();

    // Errors keep their kind across ssh.
    let err = remote
        .list(&ListSpec::all(vec![pool.ds("missing")]))
        .unwrap_err();
    assert_eq!(err.kind, ZfsErrorKind::NotFound, "{err}");
    assert!(err.host.is_some());

    // Send locally, receive remotely into a hostile name.
    let send = local
        .send(&SendSpec {
            source: SendSource::Full {
                snapshot: pool.snap("with space", "s 1"),
            },
            flags: SendFlags::default(),
        })
        .unwrap();
    let recv = remote
        .receive(&RecvSpec {
            target: Some(pool.ds("-copy: of x")),
            unmounted: true,
            ..RecvSpec::default()
        })
        .unwrap();
    copy(send, recv);
    let l = local
        .list(&ListSpec::all(vec![pool.ds("-copy: of x")]))
        .unwrap();
    assert_eq!(l[0].versions[0].name.short(), "s 1");

    let calls = remote.runner().invocations();
    assert!(calls >= 8, "{calls}");
    assert_eq!(
        sshd.accepted_connections(),
        1,
        "every call reused the master connection"
    );
}

#[test]
fn ssh_failures_are_transport_errors() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut t = SshTarget::parse(&format!("root@127.0.0.1:{port}")).unwrap();
    t.options = vec!["ConnectTimeout=5".into()];
    let r = SshRunner::new(t).unwrap();
    let err = ZfsCli::probe(r, "zfs").unwrap_err();
    assert!(
        matches!(
            err.kind,
            ZfsErrorKind::Transport | ZfsErrorKind::Unsupported
        ),
        "{err}"
    );
    let _ = LocalRunner::new().invocations();
}

fn copy<S: SendStream, R: RecvSink>(mut send: S, mut recv: R) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = send.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        recv.write_all(&buf[..n]).unwrap();
    }
    recv.finish().unwrap();
    send.finish().unwrap();
}

/// Replication over ssh with the library: plan a tree with hostile names,
/// execute it through the splice pipeline into `ssh ... zfs receive`, then
/// an incremental, then nothing to do.
#[test]
fn replicate_a_tree_over_ssh() {
    use zfsrepl_core::replication::execute::{ExecOptions, execute};
    use zfsrepl_core::replication::{ReplicationPolicy, TreeInput, plan_tree};
    use zfsrepl_core::stream::{CancelToken, NoProgress};

    let sshd = Sshd::start();
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply(
        "+ \"off: data\"\n+ \"off: data/-img x\"\n+ \"off: data@a\"\n+ \"off: data/-img x@a\"",
    );
    let local = src.zfs();
    let remote = ZfsCli::probe(SshRunner::new(sshd.target()).unwrap(), zfs_binary()).unwrap();
    let (sroot, droot) = (src.ds("off: data"), dst.ds("-copy: here"));
    let run = |expect_steps: usize| {
        let source = local.list(&ListSpec::all(vec![sroot.clone()])).unwrap();
        let target = remote
            .list(&ListSpec::all(vec![droot.clone()]))
            .unwrap_or_default();
        let input = TreeInput {
            source_root: sroot.clone(),
            target_root: droot.clone(),
            source,
            target,
            target_modified: Default::default(),
            resume_tokens: Default::default(),
        };
        let plan = plan_tree(&input, &ReplicationPolicy::default(), remote.capabilities());
        let steps: usize = plan.datasets.iter().map(|d| d.steps().len()).sum();
        assert_eq!(steps, expect_steps, "{plan:#?}");
        let r = execute(
            &local,
            &remote,
            &input,
            &plan,
            &ExecOptions::default(),
            &NoProgress,
            &CancelToken::new(),
        );
        assert_eq!(r.failures(), 0, "{r:#?}");
    };
    run(2);
    src.apply("+ \"off: data@b\"\n+ \"off: data@c\"");
    run(1);
    run(0);
    let l = local.list(&ListSpec::all(vec![droot.clone()])).unwrap();
    let guids = |ds: &zfsrepl_core::Dataset| ds.versions.iter().map(|v| v.guid).collect::<Vec<_>>();
    let s = local.list(&ListSpec::all(vec![sroot.clone()])).unwrap();
    assert_eq!(guids(&l[0]), guids(&s[0]));
    assert_eq!(guids(&l[1]), guids(&s[1]));
    assert_eq!(sshd.accepted_connections(), 1);
}

/// Bare-ssh compression: zstd in-process here, `zstd -dc | zfs receive`
/// there (one remote line, each argument quoted once), a full and an
/// incremental with sync snapshots; the same guids arrive.
#[test]
fn replicate_over_ssh_with_zstd() {
    use zfsrepl_core::replication::execute::{ExecOptions, execute};
    use zfsrepl_core::replication::gather::gather_tree_input;
    use zfsrepl_core::replication::{ReplicationPolicy, SyncJob, plan_tree};
    use zfsrepl_core::stream::{CancelToken, NoProgress};

    let sshd = Sshd::start();
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ \"d: x\"");
    src.write("d: x", "f", 2 << 20);
    let local = src.zfs();
    let mut remote = ZfsCli::probe(SshRunner::new(sshd.target()).unwrap(), zfs_binary()).unwrap();
    assert!(remote.has_remote_zstd().unwrap());
    remote.set_receive_compression(Some(3));
    let (sroot, droot) = (src.ds("d: x"), dst.ds("-c: y"));
    let job = SyncJob::new("zstd", "ssh");
    let run = |t: &str| {
        let snap = sroot
            .snapshot(&job.snapshot_name(t.parse().unwrap()))
            .unwrap();
        local.snapshot(&[snap], &[]).unwrap();
        let input = gather_tree_input(&local, &remote, &sroot, &droot, true).unwrap();
        let policy = ReplicationPolicy {
            sync_prefix: Some(job.prefix()),
            ..ReplicationPolicy::default()
        };
        let plan = plan_tree(&input, &policy, remote.capabilities());
        let opts = ExecOptions {
            sync: Some(job.clone()),
            ..ExecOptions::default()
        };
        let r = execute(
            &local,
            &remote,
            &input,
            &plan,
            &opts,
            &NoProgress,
            &CancelToken::new(),
        );
        assert_eq!(r.failures(), 0, "{r:#?}");
        assert!(r.bytes() > 1 << 20, "{r:#?}");
    };
    run("2026-01-01T00:00:00Z");
    src.write("d: x", "g", 1 << 20);
    run("2026-01-02T00:00:00Z");
    let guids = |root: &zfsrepl_core::DatasetName| {
        local.list(&ListSpec::all(vec![root.clone()])).unwrap()[0]
            .versions
            .iter()
            .map(|v| (v.name.short().to_owned(), v.guid, v.userrefs))
            .collect::<Vec<_>>()
    };
    assert_eq!(guids(&droot), guids(&sroot));
    assert_eq!(
        guids(&droot).len(),
        1,
        "the older sync snapshot was cleaned"
    );
    assert_eq!(sshd.accepted_connections(), 1);
}
