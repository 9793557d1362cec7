//! `zfsrepl send --agent` and `zfsrepl serve --stdio` on real pools, over a
//! private sshd whose key is pinned to the agent by a forced command
//! (`command="zfsrepl serve --stdio --config ...",restrict` in
//! authorized_keys): push and pull of a tree with hostile names, guids
//! preserved, zstd both ways, writes outside the agent's root refused, and
//! hostile strings that must never reach a shell.
//!
//! Never skips: without ZFS or sshd it fails (`.ci/run` installs both).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure is the test failing

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use zfsrepl_core::agent::{self, FrameKind, PROTOCOL_VERSION, Request, Response};
use zfsrepl_core::testing::sshd::Sshd;
use zfsrepl_core::testing::{TestPool, zfs_binary};
use zfsrepl_core::{DatasetName, ListSpec, ZfsRead};

const ZFSREPL: &str = env!("CARGO_BIN_EXE_zfsrepl");

/// Writes an agent config into the sshd's directory.
fn agent_config(sshd: &Sshd, name: &str, read: &[&DatasetName], write: &[&DatasetName]) -> PathBuf {
    let q = |v: &[&DatasetName]| {
        v.iter()
            .map(|d| format!("{:?}", d.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "identity = \"test-peer\"\nread-roots = [{}]\nwrite-roots = [{}]\nallow-destroy = true\n",
        q(read),
        q(write)
    );
    let path = sshd.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// An sshd; a source pool with `a@s1`; a target pool with `in`; a key for
/// an agent that may write below `in`.
fn one_push() -> (Sshd, TestPool, TestPool, PathBuf) {
    let sshd = Sshd::start();
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ a\n+ a@s1");
    dst.apply("+ in");
    let config = agent_config(&sshd, "agent.toml", &[], &[&dst.ds("in")]);
    let key = agent_key(&sshd, "agent_key", &config);
    (sshd, src, dst, key)
}

/// The lock directory of the agents that `sshd` runs (the "receiving
/// host's" locks).
fn agent_locks(sshd: &Sshd) -> PathBuf {
    sshd.dir().join("agent-locks")
}

/// A key whose only use is the agent with `config`.
fn agent_key(sshd: &Sshd, name: &str, config: &Path) -> PathBuf {
    let command = format!(
        "{ZFSREPL} serve --stdio --config {} --zfs {} --lock-dir {}",
        config.display(),
        zfs_binary().to_string_lossy(),
        agent_locks(sshd).display()
    );
    sshd.forced_key(name, &command)
}

/// `zfsrepl send --agent` with the ssh options of `sshd` and `key`.
fn send_agent(sshd: &Sshd, key: &Path, extra: &[&str], src: &str, dst: &str) -> Output {
    let mut c = Command::new(ZFSREPL);
    c.args(["send", "--agent", "--ssh-port", &sshd.port().to_string()])
        .arg("--ssh-key")
        .arg(key);
    for o in sshd.ssh_options() {
        c.args(["--ssh-option", &o]);
    }
    c.args(extra).args(["--", src, dst]);
    c.env("ZFSREPL_ZFS", zfs_binary());
    c.output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (relative name, [(snapshot, guid)]) for every dataset under `root`.
fn tree(pool: &TestPool, root: &DatasetName) -> Vec<(String, Vec<(String, u64)>)> {
    pool.zfs()
        .list(&ListSpec::all(vec![root.clone()]))
        .unwrap()
        .iter()
        .map(|d| {
            (
                d.name.as_str()[root.as_str().len()..].to_owned(),
                d.snapshots()
                    .map(|v| (v.name.short().to_owned(), v.guid.0))
                    .collect(),
            )
        })
        .collect()
}

/// Only the sync snapshots (the initial full sends the newest only).
fn sync_only(t: Vec<(String, Vec<(String, u64)>)>) -> Vec<(String, Vec<(String, u64)>)> {
    t.into_iter()
        .map(|(n, v)| {
            (
                n,
                v.into_iter()
                    .filter(|(s, _)| s.starts_with("zfsrepl_sync_"))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn push_and_pull_a_hostile_tree_through_a_forced_command_agent() {
    let sshd = Sshd::start();
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ \"-d: x.y\"\n+ \"-d: x.y/-c .z w\"\n+ \"-d: x.y@a 1\"");
    src.write("-d: x.y", "f", 1 << 20);
    src.write("-d: x.y/-c .z w", "g", 1 << 20);
    let sroot = src.ds("-d: x.y");
    let inbox = dst.ds("-in: b.c");
    dst.apply("+ \"-in: b.c\"");
    let config = agent_config(&sshd, "agent.toml", &[&sroot], &[&inbox]);
    let key = agent_key(&sshd, "agent_key", &config);
    let remote = |ds: &DatasetName| format!("root@127.0.0.1:{ds}");

    // Push twice (full, then incremental with cleanup), compressed; the
    // --remote-zfsrepl is ignored: the forced command runs.
    let target = dst.ds("-in: b.c/-copy: 1.x");
    for round in 0..2 {
        if round == 1 {
            src.write("-d: x.y/-c .z w", "h", 1 << 20);
        }
        let o = send_agent(
            &sshd,
            &key,
            &[
                "-r",
                "--compress",
                "zstd",
                "--job",
                "push",
                "--remote-zfsrepl",
                "/nonexistent/zfsrepl",
            ],
            sroot.as_str(),
            &remote(&target),
        );
        assert!(o.status.success(), "push {round}: {}", show(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("step(s)"), "{text}");
    }
    let pushed = tree(&dst, &target);
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    // Only this job's latest sync snapshot is left on each dataset, with
    // the source's guid.
    let source_now: Vec<_> = sync_only(tree(&src, &sroot))
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.into_iter()
                    .filter(|(s, _)| s.contains("_push_"))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(pushed, source_now);
    assert!(pushed.iter().all(|(_, v)| v.len() == 1), "{pushed:?}");

    // Pull the source tree back through the agent (it may read sroot),
    // into a local place outside the agent's roots.
    let local = dst.ds("-pulled: 2");
    let o = send_agent(
        &sshd,
        &key,
        &["-r", "--compress", "zstd:5", "--job", "pull"],
        &remote(&sroot),
        local.as_str(),
    );
    assert!(o.status.success(), "pull: {}", show(&o));
    let pulled = tree(&dst, &local);
    let want: Vec<_> = tree(&src, &sroot)
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.into_iter()
                    .filter(|(s, _)| s.contains("_pull_"))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(pulled, want);
    assert_eq!(pulled.len(), 2);
    assert!(pulled.iter().all(|(_, v)| v.len() == 1), "{pulled:?}");
    // One ssh connection per run.
    assert_eq!(sshd.accepted_connections(), 3);
}

#[test]
fn the_agent_refuses_what_its_config_does_not_allow_and_nothing_reaches_a_shell() {
    let sshd = Sshd::start();
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ a\n+ a@s1\n+ secret\n+ secret@s1");
    dst.apply("+ in\n+ other");
    let config = agent_config(&sshd, "agent.toml", &[&src.ds("a")], &[&dst.ds("in")]);
    let key = agent_key(&sshd, "agent_key", &config);
    let marker = sshd.dir().join("marker");
    let hostile = format!(
        "$(touch {m}); `touch {m}` ' \" ; touch {m}",
        m = marker.display()
    );

    // A write outside the allowed root: refused, nothing created.
    let o = send_agent(
        &sshd,
        &key,
        &["--no-sync-snap", "--job", &hostile],
        src.ds("a").as_str(),
        &format!("root@127.0.0.1:{}", dst.ds("other/x")),
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let all = show(&o);
    assert!(all.contains("refused by the zfsrepl agent"), "{all}");
    assert!(all.contains("outside the roots"), "{all}");
    let zfs = dst.zfs();
    assert!(zfs.list(&ListSpec::all(vec![dst.ds("other/x")])).is_err());
    // A read outside the allowed root (pull of `secret`): refused.
    let o = send_agent(
        &sshd,
        &key,
        &["--no-sync-snap"],
        &format!("root@127.0.0.1:{}", src.ds("secret")),
        dst.ds("stolen").as_str(),
    );
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(show(&o).contains("outside the roots"), "{}", show(&o));
    assert!(zfs.list(&ListSpec::all(vec![dst.ds("stolen")])).is_err());

    // Hostile strings as the remote program and the job: with the forced
    // key they are ignored or sanitised; with an unrestricted key the
    // remote shell sees one quoted word that names no program.
    let o = send_agent(
        &sshd,
        &key,
        &["--remote-zfsrepl", &hostile, "--job", &hostile],
        src.ds("a").as_str(),
        &format!("root@127.0.0.1:{}", dst.ds("in/y")),
    );
    assert!(o.status.success(), "{}", show(&o));
    let plain_key = sshd.dir().join("client_key");
    let o = send_agent(
        &sshd,
        &plain_key,
        &["--remote-zfsrepl", &hostile],
        src.ds("a").as_str(),
        &format!("root@127.0.0.1:{}", dst.ds("in/z")),
    );
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        show(&o).contains("not found") || show(&o).contains("No such file"),
        "{}",
        show(&o)
    );
    assert!(!marker.exists(), "a hostile string was executed");
}

/// Frames for a raw `serve --stdio` session.
fn frames(reqs: &[Request]) -> Vec<u8> {
    let mut w = Vec::new();
    for r in reqs {
        agent::proto::send_message(&mut w, r, &mut Vec::new()).unwrap();
    }
    w
}

fn serve_stdio(config: &Path, input: &[u8]) -> (Output, Vec<Response>) {
    let mut child = Command::new(ZFSREPL)
        .args(["serve", "--stdio", "--config"])
        .arg(config)
        .env("ZFSREPL_ZFS", zfs_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that refuses to start (or stops at garbage) may exit before
    // it has read everything: a broken pipe here is its answer, not ours.
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    let out = child.wait_with_output().unwrap();
    let (fs, _) = agent::decode_all(&out.stdout);
    let replies = fs
        .iter()
        .filter(|f| f.kind == FrameKind::Control)
        .map(|f| agent::proto::parse_message::<Response>(&f.payload).unwrap())
        .collect();
    (out, replies)
}

#[test]
fn serve_stdio_refuses_outside_its_roots_and_garbage() {
    let pool = TestPool::new();
    pool.apply("+ ok\n+ ok@s\n+ no\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("identity = \"cli\"\nread-roots = [\"{}\"]\n", pool.ds("ok")),
    )
    .unwrap();
    let hello = Request::Hello {
        version: PROTOCOL_VERSION,
        job: None,
    };
    let (out, replies) = serve_stdio(
        &config,
        &frames(&[
            hello.clone(),
            Request::List {
                spec: ListSpec::all(vec![pool.ds("no")]),
            },
            Request::List {
                spec: ListSpec::all(vec![pool.ds("ok")]),
            },
        ]),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(matches!(replies[0], Response::Hello { .. }), "{replies:?}");
    match &replies[1] {
        Response::Error { error } => {
            assert!(error.refused);
            assert!(error.message.contains("outside the roots"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&replies[2], Response::List { datasets, .. } if datasets.len() == 1));
    // The refusal is logged with the identity, on stderr (ssh passes it on).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused") && err.contains("cli"), "{err}");

    // Garbage: an error reply, exit 1, the reason on stderr.
    let (out, replies) = serve_stdio(&config, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(matches!(replies[0], Response::Error { .. }), "{replies:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not speak the zfsrepl agent protocol"),
        "{}",
        show(&out)
    );
    // A config that allows nothing does not start.
    std::fs::write(&config, "allow-destroy = true\n").unwrap();
    let (out, _) = serve_stdio(&config, &frames(&[hello]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no read-roots"));
}

/// The library path over ssh: a `zfs send -p` stream (zfs-fuse writes a
/// compound stream) is refused before `zfs receive` sees it; the same
/// snapshot sent plain arrives.
#[test]
fn streams_with_properties_are_refused_over_ssh() {
    use zfsrepl_core::agent::{AgentClient, SshConn};
    use zfsrepl_core::zfs::{RecvSink, RecvSpec, SendFlags, SendSource, SendSpec, SendStream};
    use zfsrepl_core::{ZfsErrorKind, ZfsStream};

    let sshd = Sshd::start();
    let pool = TestPool::new();
    pool.apply("+ src\n+ src@s\n+ in");
    let config = agent_config(&sshd, "agent.toml", &[], &[&pool.ds("in")]);
    let key = agent_key(&sshd, "agent_key", &config);
    let conn = SshConn::start(sshd.target_with(&key), &["zfsrepl".into()]).unwrap();
    let stderr = conn.stderr();
    let agent =
        AgentClient::connect_with(Box::new(conn), Some("peer".into()), None, Some(stderr)).unwrap();
    let local = pool.zfs();
    let copy = |props: bool, target: &str| {
        let mut send = local
            .send(&SendSpec {
                source: SendSource::Full {
                    snapshot: pool.snap("src", "s"),
                },
                flags: SendFlags {
                    props,
                    ..SendFlags::default()
                },
            })
            .unwrap();
        let mut recv = agent
            .receive(&RecvSpec {
                target: Some(pool.ds(target)),
                unmounted: true,
                ..RecvSpec::default()
            })
            .unwrap();
        std::io::copy(&mut send, &mut recv).unwrap();
        send.finish().unwrap();
        recv.finish()
    };
    let e = copy(true, "in/p").unwrap_err();
    assert_eq!(e.kind, ZfsErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("allow-stream-props"), "{e}");
    assert!(local.list(&ListSpec::all(vec![pool.ds("in/p")])).is_err());
    copy(false, "in/q").unwrap();
    let got = local.list(&ListSpec::all(vec![pool.ds("in/q")])).unwrap();
    assert_eq!(got[0].versions.len(), 1);
}

/// The pids of processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

/// Kills the agent (the remote `zfsrepl serve`, started by this test's
/// sshd for this test's config) once it has run for `after`.
fn kill_agent_after(config: &Path, after: std::time::Duration) -> std::thread::JoinHandle<bool> {
    let needle = format!("serve --stdio --config {}", config.display());
    std::thread::spawn(move || {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(30) {
            let pids = pids_with(&needle);
            if !pids.is_empty() && t.elapsed() >= after {
                for p in pids {
                    let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
                }
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    })
}

/// The agent killed mid-stream, pushing and pulling: the run fails with a
/// transport error naming the host, nothing is left that blocks the next
/// run, and the next run converges with the same guids; with --retries the
/// same command retries and completes.
#[test]
fn agent_killed_mid_stream_fails_cleanly_and_the_next_run_converges() {
    let sshd = Sshd::start();
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ \"big: 1\"");
    src.write("big: 1", "f", 24 << 20);
    dst.apply("+ in");
    let sroot = src.ds("big: 1");
    let config = agent_config(&sshd, "agent.toml", &[&sroot], &[&dst.ds("in")]);
    let key = agent_key(&sshd, "agent_key", &config);
    let slow = ["--bwlimit", "4000000", "--job", "kill"];
    let cases = [
        (
            sroot.to_string(),
            format!("root@127.0.0.1:{}", dst.ds("in/pushed")),
        ),
        (
            format!("root@127.0.0.1:{sroot}"),
            dst.ds("pulled").to_string(),
        ),
    ];
    for (from, to) in &cases {
        let killer = kill_agent_after(&config, std::time::Duration::from_millis(1500));
        let o = send_agent(&sshd, &key, &slow, from, to);
        assert!(killer.join().unwrap(), "the agent was never seen");
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(show(&o).contains("127.0.0.1"), "{}", show(&o));
        let o = send_agent(&sshd, &key, &["--job", "kill"], from, to);
        assert!(o.status.success(), "{}", show(&o));
    }
    // With --retries, the killed attempt is retried (a transport error is
    // transient) and the one command completes.
    let to = format!("root@127.0.0.1:{}", dst.ds("in/retried"));
    let killer = kill_agent_after(&config, std::time::Duration::from_millis(1500));
    let retry = [
        "--bwlimit",
        "4000000",
        "--job",
        "kill",
        "--retries",
        "2",
        "--retry-wait",
        "1",
    ];
    let o = send_agent(&sshd, &key, &retry, sroot.as_str(), &to);
    assert!(killer.join().unwrap(), "the agent was never seen");
    assert!(o.status.success(), "{}", show(&o));
    assert!(show(&o).contains("attempt 1 of 3 failed"), "{}", show(&o));
    // Each target holds its job's latest sync snapshot, with the source's
    // guid for that name.
    let source = tree(&src, &sroot).remove(0).1;
    for target in [dst.ds("in/pushed"), dst.ds("pulled"), dst.ds("in/retried")] {
        let got = tree(&dst, &target).remove(0).1;
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(source.contains(&got[0]), "{got:?} not in {source:?}");
    }
}

/// `send --agent` takes the same dataset locks as the other legs: a target
/// locked by someone else (the daemon) is refused at once, with the holder.
#[test]
fn send_agent_respects_dataset_locks() {
    use zfsrepl_core::lock::LockDir;
    let (sshd, src, dst, key) = one_push();
    let locks_dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(locks_dir.path());
    let held = locks
        .try_lock(
            Some("root@127.0.0.1"),
            &dst.ds("in"),
            "zfsrepl daemon job pull",
        )
        .unwrap();
    let lock_dir = locks_dir.path().to_string_lossy().into_owned();
    let args = ["--no-sync-snap", "--lock-dir", &lock_dir];
    let target = format!("root@127.0.0.1:{}", dst.ds("in/x"));
    let o = send_agent(&sshd, &key, &args, src.ds("a").as_str(), &target);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(show(&o).contains("zfsrepl daemon job pull"), "{}", show(&o));
    drop(held);
    let o = send_agent(&sshd, &key, &args, src.ds("a").as_str(), &target);
    assert!(o.status.success(), "{}", show(&o));
}

/// Regression (network sessions did not take the receiving host's
/// locks): while a job of the receiving host holds the target's lock there,
/// a push through the agent fails "busy", naming that job, and receives
/// nothing; afterwards the same push lands.
#[test]
fn the_agent_takes_the_receiving_hosts_locks() {
    use zfsrepl_core::lock::LockDir;
    let (sshd, src, dst, key) = one_push();
    let held = LockDir::new(agent_locks(&sshd))
        .try_lock(None, &dst.ds("in/x"), "zfsrepl daemon job prune-backups")
        .unwrap();
    let client_locks = tempfile::tempdir().unwrap();
    let lock_dir = client_locks.path().to_string_lossy().into_owned();
    let args = ["--no-sync-snap", "--lock-dir", &lock_dir];
    let target = format!("root@127.0.0.1:{}", dst.ds("in/x"));
    let o = send_agent(&sshd, &key, &args, src.ds("a").as_str(), &target);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let shown = show(&o);
    assert!(shown.contains("busy"), "{shown}");
    assert!(
        shown.contains("zfsrepl daemon job prune-backups"),
        "{shown}"
    );
    assert!(tree(&dst, &dst.ds("in")).len() == 1, "nothing received");
    drop(held);
    let o = send_agent(&sshd, &key, &args, src.ds("a").as_str(), &target);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(tree(&dst, &dst.ds("in/x")), tree(&src, &src.ds("a")));
}

/// Regression: `zfs send -I` over intermediate snapshots makes a compound
/// stream (as `-p`/`-R` do, but without properties); the agent's property
/// gate refused it, so every incremental with an intermediate snapshot
/// failed through the agent and TLS (found by the side-by-side bench).
#[test]
fn incremental_with_intermediate_snapshots_passes_the_property_gate() {
    let sshd = Sshd::start();
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ \"d: 1\"");
    src.write("d: 1", "f", 100_000);
    dst.apply("+ in");
    let sroot = src.ds("d: 1");
    let inbox = dst.ds("in");
    let config = agent_config(&sshd, "agent.toml", &[], &[&inbox]);
    let key = agent_key(&sshd, "agent_key", &config);
    let target = dst.ds("in/copy");
    let push = || {
        send_agent(
            &sshd,
            &key,
            &["--job", "inc"],
            sroot.as_str(),
            &format!("root@127.0.0.1:{target}"),
        )
    };
    let o = push();
    assert!(o.status.success(), "full: {}", show(&o));
    src.write("d: 1", "g", 100_000);
    src.apply("+ \"d: 1@mid one\"");
    src.write("d: 1", "h", 100_000);
    let o = push();
    assert!(o.status.success(), "-I with an intermediate: {}", show(&o));
    let names: Vec<String> = tree(&dst, &target)[0]
        .1
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert!(names.iter().any(|n| n == "mid one"), "{names:?}");
}
