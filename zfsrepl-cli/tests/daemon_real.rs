//! The real daemon on real pools, over a few minutes of real time:
//! snapshots taken every minute (frequent-period = 1), replicated to two
//! local target pools, pruned on both sides with the common snapshot kept;
//! `zfsrepl status --json` and `/metrics` tell the truth; a reload with a
//! broken policy keeps the old one running; SIGTERM mid-run leaves nothing
//! that blocks the next run; a restart resumes the schedule from the
//! state file.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use predicates::prelude::*;
use serde_json::Value;
use zfsrepl_core::testing::TestPool;

mod common;
use common::{Daemon, job, snapshots, status, wait_for, zfsrepl};

fn metrics(addr: &str) -> String {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn policy_text(src: &str, t1: &str, t2: &str, dir: &Path, metrics: &str) -> String {
    format!(
        r#"version = 1
timezone = "UTC"

[template.frequent]
frequently = 2
frequent-period = 1
hourly = 0
daily = 0
monthly = 0

[dataset."{src}/data"]
use-template = "frequent"

[dataset."{t1}/copy"]
use-template = "frequent"
autosnap = false

[dataset."{t2}/copy"]
use-template = "frequent"
autosnap = false

[job.snap]
kind = "snapshot"
datasets = ["{src}/data"]
schedule = "every 10s"

[job.repl]
kind = "replicate"
source = "{src}/data"
targets = ["local:{t1}/copy"]
after = "snap"
# Slow enough that the 24 MiB transfer stopped by SIGTERM below is seen
# running (about 3 s) even on a fast or idle machine.
bwlimit = 8_000_000

# The slow target: replicated only when triggered by hand.
[job.repl-slow]
kind = "replicate"
source = "{src}/data"
targets = ["{t2}/copy"]
schedule = "every 1h"
enabled = false

[job.prune]
kind = "prune"
datasets = ["{src}/data", "{t1}/copy", "{t2}/copy"]
after = "repl"

[daemon]
control-socket = "{dir}/control.sock"
state-dir = "{dir}/state"
lock-dir = "{dir}/locks"
metrics-address = "{metrics}"
stop-timeout = "3s"
lag-limit = "100s"
retries = 2
retry-backoff = "2s"
"#,
        dir = dir.display()
    )
}

#[test]
fn daemon_snapshots_replicates_prunes_reloads_stops_and_resumes() {
    let src = TestPool::mounted();
    let t1 = TestPool::new();
    let t2 = TestPool::new();
    src.apply("+ data");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let addr = format!("127.0.0.1:{}", free_port());
    let text = policy_text(src.name(), t1.name(), t2.name(), dir.path(), &addr);
    std::fs::write(&policy, &text).unwrap();
    zfsrepl()
        .args(["policy", "check"])
        .arg(&policy)
        .assert()
        .success()
        .stdout(predicate::str::contains("4 job(s)"));
    let s_data = format!("{}/data", src.name());
    let t1_copy = format!("{}/copy", t1.name());
    let t2_copy = format!("{}/copy", t2.name());
    let sock = dir.path().join("control.sock");

    let daemon = Daemon::start(&policy, dir.path());
    // A second daemon on the same socket is refused.
    zfsrepl()
        .args(["daemon", "--policy"])
        .arg(&policy)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "another zfsrepl daemon is running",
        ));

    // The first snapshot (every 10s; a frequent one is due at once), then
    // replication to t1 by the chain.
    wait_for(
        Duration::from_secs(40),
        "a replicated snapshot on t1",
        || !snapshots(&t1_copy).is_empty(),
    );
    // The slow target once, by hand.
    zfsrepl()
        .args(["trigger", "repl-slow", "--socket"])
        .arg(&sock)
        .assert()
        .success()
        .stdout(predicate::str::contains("repl-slow started"));
    wait_for(Duration::from_secs(30), "a snapshot on t2", || {
        !snapshots(&t2_copy).is_empty()
    });
    let slow_common = snapshots(&t2_copy).last().unwrap().clone();
    zfsrepl()
        .args(["trigger", "nope", "--socket"])
        .arg(&sock)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no job \"nope\""));

    // A broken policy: the reload is refused, the old policy keeps running.
    std::fs::write(
        &policy,
        text.replace("kind = \"prune\"", "kind = \"prunes\""),
    )
    .unwrap();
    zfsrepl()
        .args(["reload", "--socket"])
        .arg(&sock)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown job kind \"prunes\""))
        .stderr(predicate::str::contains("keeping the policy loaded at"));
    daemon.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    let s = status(dir.path());
    assert!(
        s["reload_error"].as_str().unwrap().contains("prunes"),
        "{s}"
    );
    assert_eq!(s["jobs"].as_array().unwrap().len(), 4);
    std::fs::write(&policy, &text).unwrap();
    zfsrepl()
        .args(["reload", "--socket"])
        .arg(&sock)
        .assert()
        .success()
        .stdout(predicate::str::contains("policy reloaded: 4 job(s)"));

    // Let it run: a frequent snapshot a minute, pruned to 2 on the source
    // and on t1; t2 lags (never replicated again): its common snapshot
    // stays on the source, first held with everything after it, then past
    // the lag limit (100 s) only the common one, with an alert.
    // (As in sanoid, a snapshot beyond the count goes once it is older
    // than count x period: 2 minutes here.)
    wait_for(
        Duration::from_secs(200),
        "pruning past the lag limit",
        || {
            let s = status(dir.path());
            let t1_now = snapshots(&t1_copy);
            !s["alerts"].as_array().unwrap().is_empty()
                && snapshots(&s_data).len() <= 3
                && !t1_now.is_empty()
                && !t1_now.contains(&slow_common)
        },
    );
    let s = status(dir.path());
    let src_snaps = snapshots(&s_data);
    let t1_snaps = snapshots(&t1_copy);
    assert!(
        src_snaps.contains(&slow_common),
        "t2's common snapshot {slow_common} was pruned from the source: {src_snaps:?}\n{}",
        daemon.log()
    );
    assert!(snapshots(&t2_copy).contains(&slow_common));
    // t1 is pruned too, by its own rules: t2's common snapshot is not
    // kept there; it shares the source's newest replicated snapshot.
    assert!(
        t1_snaps.len() <= 3 && !t1_snaps.contains(&slow_common),
        "{t1_snaps:?}\n{s:#}\n{}",
        daemon.log()
    );
    let repl = job(&s, "repl");
    let common = repl["targets"][0]["common"].as_str().unwrap();
    assert!(src_snaps.iter().any(|x| x == common) && t1_snaps.iter().any(|x| x == common));
    assert_eq!(repl["last_result"], "ok", "{s}");
    assert!(job(&s, "snap")["runs"].as_u64().unwrap() >= 6);
    assert!(job(&s, "prune")["last_result"] == "ok", "{s}");
    let alert = &s["alerts"][0];
    assert_eq!(alert["job"], "repl-slow");
    assert!(repl["bytes"].as_u64().unwrap() > 0);
    // The table and the metrics agree.
    zfsrepl()
        .args(["status", "--socket"])
        .arg(&sock)
        .assert()
        .success()
        .stdout(predicate::str::contains("PAST THE LAG LIMIT"))
        .stdout(predicate::str::contains("ALERT: repl-slow"));
    let m = metrics(&addr);
    for want in [
        "zfsrepl_job_runs_total{job=\"snap\",kind=\"snapshot\"}",
        "zfsrepl_job_last_success_timestamp_seconds{job=\"repl\"}",
        &format!(
            "zfsrepl_replication_lag_limit_exceeded{{job=\"repl-slow\",target=\"{t2_copy}\"}} 1"
        ),
        &format!("zfsrepl_snapshots{{dataset=\"{s_data}\"}}"),
        "zfsrepl_zfs_command_duration_seconds_count{command=\"zfs snapshot\"}",
        "zfsrepl_snapshots_destroyed_total{job=\"prune\"}",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
    // check --daemon reads the same state: t2 is past the limit.
    zfsrepl()
        .args(["check", "--daemon", "--policy"])
        .arg(&policy)
        .assert()
        .code(2)
        .stdout(predicate::str::contains(format!(
            "repl-slow -> {t2_copy}: lag"
        )))
        .stdout(predicate::str::contains("(critical)"));

    // SIGTERM while a transfer runs: data to send, then snap -> repl.
    src.write("data", "big", 24 << 20);
    zfsrepl()
        .args(["trigger", "snap", "--socket"])
        .arg(&sock)
        .assert()
        .success();
    wait_for(Duration::from_secs(90), "repl running", || {
        job(&status(dir.path()), "repl")["running"] == true
    });
    let runs_before = job(&status(dir.path()), "snap")["runs"].as_u64().unwrap();
    let code = daemon.stop(Duration::from_secs(30));
    assert!(code.success(), "exit {code:?}");
    assert!(!sock.exists(), "the socket is removed on stop");

    // Restart: the schedule resumes from the state file (runs counted on),
    // and the next replication is not blocked by anything left behind.
    let daemon = Daemon::start(&policy, dir.path());
    let snaps_now = snapshots(&s_data);
    wait_for(
        Duration::from_secs(90),
        "a new replication after the restart",
        || {
            let s = status(dir.path());
            let r = job(&s, "repl");
            job(&s, "snap")["runs"].as_u64().unwrap() > runs_before
                && r["last_result"] == "ok"
                && r["running"] == false
                && r["targets"][0]["common"].as_str()
                    == snapshots(&s_data).last().map(String::as_str)
        },
    );
    let log = daemon.log();
    assert!(!log.contains("is busy"), "{log}");
    assert!(snapshots(&s_data).len() >= snaps_now.len().min(2));
    assert!(daemon.stop(Duration::from_secs(30)).success());
    // A manual prune reads the daemon's cursors too: t2's common snapshot
    // stays on the source.
    zfsrepl()
        .args(["prune", "--lock-dir"])
        .arg(dir.path().join("locks"))
        .arg("--policy")
        .arg(&policy)
        .assert()
        .success();
    assert!(snapshots(&s_data).contains(&slow_common));
}

/// systemd's side: READY=1 once the socket answers, WATCHDOG=1 within the
/// watchdog interval, RELOADING/READY around a SIGHUP, STOPPING=1 on
/// SIGTERM; and a corrupt state file is set aside, never fatal.
/// `DIR/p.toml`: a policy of no jobs, its daemon's files in `dir`, and
/// `extra` lines in its `[daemon]` table.
fn daemon_only_policy(dir: &Path, extra: &str) -> std::path::PathBuf {
    let policy = dir.join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[daemon]\ncontrol-socket = \"{d}/control.sock\"\nstate-dir = \"{d}/state\"\nlock-dir = \"{d}/locks\"\n{extra}",
            d = dir.display()
        ),
    )
    .unwrap();
    policy
}

#[test]
fn notify_protocol_and_a_corrupt_state_file() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let policy = daemon_only_policy(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("state/state.json"), "{\"jobs\": [1, 2").unwrap();
    let notify = dir.path().join("notify.sock");
    let server = UnixDatagram::bind(&notify).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = StdCommand::cargo_bin("zfsrepl")
        .unwrap()
        .args(["daemon", "--policy"])
        .arg(&policy)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.starts_with("READY=1\n"), "{first}");
    assert!(
        first.contains(&format!("MAINPID={}", child.id())),
        "{first}"
    );
    // Pings at half the watchdog interval.
    let start = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        if recv() == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(3));
    let kill = |sig: &str, pid: u32| {
        assert!(
            StdCommand::new("kill")
                .args(["-s", sig, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    kill("HUP", child.id());
    let mut seen = Vec::new();
    while !seen.iter().any(|s: &String| s == "READY=1") {
        let m = recv();
        if m != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert_eq!(seen, ["RELOADING=1", "READY=1"]);
    kill("TERM", child.id());
    loop {
        let m = recv();
        if m.starts_with("STOPPING=1") {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("is corrupt"), "{log}");
    assert!(log.contains("policy reloaded: 0 job(s)"), "{log}");
    // Set aside for a post-mortem, and a fresh state written.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("state.json.corrupt-")),
        "{names:?}"
    );
    let fresh: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fresh["version"], 1);
}

/// A replicate job whose target host has `transport = "tls"`: the daemon
/// connects to a real `zfsrepl serve --listen` with a stunnel-format PSK,
/// compresses with zstd in-process, and records the common snapshot.
#[test]
fn daemon_replicates_over_tls_psk() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    const ID: &str = "off2 to ovh3";
    const KEY: &str = "8a2e7f1c9b3d4a6e5f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ data\n+ data/child\n+ data@zfsrepl_a\n+ data/child@zfsrepl_a");
    dst.apply("+ inbox");
    let dir = tempfile::tempdir().unwrap();
    let psk = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{ID}:{KEY}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let (server_psk, client_psk) = (psk("server.psk"), psk("client.psk"));
    let peers = dir.path().join("peers.toml");
    std::fs::write(
        &peers,
        format!(
            "[[peer]]\nidentity = {ID:?}\nwrite-roots = [\"{}/inbox\"]\nallow-destroy = true\n",
            dst.name()
        ),
    )
    .unwrap();
    let mut serve = StdCommand::cargo_bin("zfsrepl")
        .unwrap()
        .args(["serve", "-v", "--listen", "127.0.0.1:0", "--psk-file"])
        .arg(&server_psk)
        .arg("--config")
        .arg(&peers)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = serve.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("zfsrepl serve: listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let port = addr.rsplit(':').next().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = 1
[host.ovh3]
address = "127.0.0.1"
port = {port}
transport = "tls"
psk-file = "{psk}"
identity = "{ID}"

[job.repl]
kind = "replicate"
source = "{s}/data"
targets = ["ovh3:{t}/inbox/copy"]
compress = "zstd"
schedule = "every 1h"
enabled = false

[daemon]
control-socket = "{d}/control.sock"
state-dir = "{d}/state"
lock-dir = "{d}/locks"
"#,
            psk = client_psk.display(),
            s = src.name(),
            t = dst.name(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&policy, dir.path());
    let sock = dir.path().join("control.sock");
    zfsrepl()
        .args(["trigger", "repl", "--socket"])
        .arg(&sock)
        .assert()
        .success();
    wait_for(Duration::from_secs(60), "the replication over TLS", || {
        let s = status(dir.path());
        let r = job(&s, "repl");
        r["runs"].as_u64().unwrap_or(0) >= 1 && r["running"] == false
    });
    let s = status(dir.path());
    let r = job(&s, "repl");
    assert_eq!(r["last_result"], "ok", "{s:#}\n{}", daemon.log());
    assert_eq!(r["targets"][0]["common"], "zfsrepl_a", "{s:#}");
    assert_eq!(
        snapshots(&format!("{}/inbox/copy/child", dst.name())),
        ["zfsrepl_a"]
    );
    assert!(daemon.stop(Duration::from_secs(20)).success());
    let _ = serve.kill();
    let _ = serve.wait();
}

/// `[daemon] listen`: the daemon hosts the agent listener of `zfsrepl
/// serve --listen`. It refuses to start with an unsafe secrets file or a
/// taken port; `zfsrepl send` to `tls://` replicates into this host as a
/// known peer; an unknown identity is refused; SIGTERM stops it cleanly.
#[test]
fn daemon_hosts_the_agent_listener() {
    use std::os::unix::fs::PermissionsExt;
    const ID: &str = "off2";
    const KEY: &str = "8a2e7f1c9b3d4a6e5f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ data\n+ data@zfsrepl_a");
    dst.apply("+ inbox");
    let dir = tempfile::tempdir().unwrap();
    let psk = |name: &str, line: &str, mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{line}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let server_psk = psk("server.psk", &format!("{ID}:{KEY}"), 0o644);
    let client_psk = psk("client.psk", &format!("{ID}:{KEY}"), 0o600);
    let stranger_psk = psk("stranger.psk", &format!("stranger:{KEY}"), 0o600);
    let peers = dir.path().join("peers.toml");
    std::fs::write(
        &peers,
        format!(
            "[[peer]]\nidentity = {ID:?}\nwrite-roots = [\"{}/inbox\"]\n",
            dst.name()
        ),
    )
    .unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let policy = dir.path().join("p.toml");
    let policy_text = |port: u16, psk: &Path| {
        format!(
            r#"version = 1
[daemon]
control-socket = "{d}/control.sock"
state-dir = "{d}/state"
lock-dir = "{d}/locks"
metrics-address = "127.0.0.1:{metrics_port}"
stop-timeout = "10s"
listen = "127.0.0.1:{port}"
psk-file = "{psk}"
peers = "{peers}"
"#,
            d = dir.path().display(),
            psk = psk.display(),
            peers = peers.display(),
        )
    };
    std::fs::write(&policy, policy_text(port, &server_psk)).unwrap();
    let daemon_once = || {
        zfsrepl()
            .args(["daemon", "--policy"])
            .arg(&policy)
            .timeout(Duration::from_secs(30))
            .assert()
            .failure()
    };
    // A secrets file others can read: refused, naming the fix.
    daemon_once().stderr(predicate::str::contains("chmod 600"));
    std::fs::set_permissions(&server_psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The port taken: refused, naming the address.
    {
        let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        daemon_once().stderr(predicate::str::contains(format!(
            "cannot listen on 127.0.0.1:{port}"
        )));
    }
    let mut daemon = Daemon::start(&policy, dir.path());
    let url = format!("tls://127.0.0.1:{port}/{}/inbox/copy", dst.name());
    // `zfsrepl send SRC/data URL` as `identity` with the key in `psk`.
    let send = |url: &str, psk: &Path, identity: &str| {
        zfsrepl()
            .args(["send", &format!("{}/data", src.name()), url, "--psk-file"])
            .arg(psk)
            .args(["--identity", identity])
            .timeout(Duration::from_secs(120))
            .assert()
    };
    send(&url, &client_psk, ID).success();
    // The copy holds the source's newest snapshot (a sync snapshot).
    let copied = snapshots(&format!("{}/inbox/copy", dst.name()));
    let newest = snapshots(&format!("{}/data", src.name())).pop().unwrap();
    assert!(copied.contains(&newest), "{copied:?}\n{}", daemon.log());
    // An identity the daemon has no key for: refused.
    send(&url, &stranger_psk, "stranger").failure();
    // Counted once the server's side of the handshake returned.
    wait_for(Duration::from_secs(10), "the refusal to be counted", || {
        status(dir.path())["listener"]["sessions_refused"] == 1
    });
    let s = status(dir.path());
    assert_eq!(
        s["listener"]["address"],
        format!("127.0.0.1:{port}"),
        "{s:#}"
    );
    assert_eq!(s["listener"]["sessions_accepted"], 1, "{s:#}");
    assert_eq!(s["listener"]["sessions_refused"], 1, "{s:#}");
    assert!(
        daemon.log().contains("connection refused"),
        "{}",
        daemon.log()
    );
    let m = metrics(&format!("127.0.0.1:{metrics_port}"));
    assert!(
        m.contains("zfsrepl_agent_sessions_total{identity=\"off2\"} 1"),
        "{m}"
    );
    assert!(m.contains("zfsrepl_agent_sessions_active 0"), "{m}");
    assert!(m.contains("zfsrepl_agent_sessions_refused_total 1"), "{m}");

    // A reload moving the listener to a port with an unsafe secrets file:
    // refused, the listener stays where it was.
    let port2 = free_port();
    let bad_psk = psk("bad.psk", &format!("{ID}:{KEY}"), 0o644);
    std::fs::write(&policy, policy_text(port2, &bad_psk)).unwrap();
    let sock = dir.path().join("control.sock");
    zfsrepl()
        .args(["reload", "--socket"])
        .arg(&sock)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("chmod 600"));
    let s = status(dir.path());
    assert_eq!(
        s["listener"]["address"],
        format!("127.0.0.1:{port}"),
        "{s:#}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    // A good one: the listener moves.
    std::fs::write(&policy, policy_text(port2, &server_psk)).unwrap();
    zfsrepl()
        .args(["reload", "--socket"])
        .arg(&sock)
        .assert()
        .success();
    let s = status(dir.path());
    assert_eq!(
        s["listener"]["address"],
        format!("127.0.0.1:{port2}"),
        "{s:#}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let url2 = format!("tls://127.0.0.1:{port2}/{}/inbox/copy", dst.name());
    send(&url2, &client_psk, ID).success();
    // The listener's sessions take the daemon's own locks: while a job of
    // this daemon holds the copy, a peer's receive into it is busy.
    let held = zfsrepl_core::lock::LockDir::new(dir.path().join("locks"))
        .try_lock(
            None,
            &zfsrepl_core::DatasetName::parse(&format!("{}/inbox/copy", dst.name())).unwrap(),
            "zfsrepl daemon job prune",
        )
        .unwrap();
    send(&url2, &client_psk, ID).failure().stdout(
        predicate::str::contains("busy").and(predicate::str::contains("zfsrepl daemon job prune")),
    );
    drop(held);
    let port = port2;

    // SIGTERM with a session open: the port closes at once, the daemon
    // waits for the session (up to the stop timeout, 10s).
    use zfsrepl_core::transport::tls::{PskSecrets, TlsConnector, TlsOptions};
    let secrets = PskSecrets::load(&client_psk).unwrap();
    let conn = TlsConnector::new(&secrets, Some(ID), &TlsOptions::default())
        .unwrap()
        .connect(&format!("127.0.0.1:{port}"))
        .unwrap();
    wait_for(Duration::from_secs(10), "the session to start", || {
        status(dir.path())["listener"]["sessions_active"] == 1
    });
    daemon.signal("TERM");
    wait_for(Duration::from_secs(5), "the port to close", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon waits for the open session:\n{}",
        daemon.log()
    );
    drop(conn);
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the daemon did not stop once the session ended:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{}", daemon.log());
    let log = daemon.log.clone();
    drop(daemon);
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("agent listener stopped"), "{log}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Regression (the accept loops spun on a failed accept): a daemon out of
/// descriptors, with clients waiting on its control socket and its metrics
/// port, pauses between tries instead of spinning a core, warns once, and
/// answers again as soon as descriptors free up.
#[test]
fn accept_loops_pause_when_descriptors_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = daemon_only_policy(
        dir.path(),
        &format!("metrics-address = \"127.0.0.1:{port}\"\n"),
    );
    let daemon = Daemon::start(&policy, dir.path());
    let pid = daemon.child.id();
    wait_for(Duration::from_secs(20), "the metrics port", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Room for three more descriptors, then clients on both listeners.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = format!("--nofile={}:", open + 3); // soft only
    let ok = StdCommand::new("prlimit")
        .args(["--pid", &pid.to_string(), &limit])
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit {limit}");
    let sock = dir.path().join("control.sock");
    let mut clients = Vec::new();
    let mut tcp = Vec::new();
    for _ in 0..10 {
        clients.push(std::os::unix::net::UnixStream::connect(&sock).unwrap());
        tcp.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(500));
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu_ticks(pid) - c0;
    let wall_ticks = t0.elapsed().as_millis() as u64 / 10;
    // A spinning loop takes a whole core (or what the scheduler gives it on
    // a busy machine); pausing takes next to nothing.
    assert!(
        ticks * 4 < wall_ticks,
        "the daemon used {ticks} ticks of CPU in {wall_ticks}: it spins\n{}",
        daemon.log()
    );
    let log = daemon.log();
    for l in ["control socket", "metrics"] {
        let warned = log
            .lines()
            .filter(|x| x.contains("cannot accept a connection") && x.contains(l))
            .count();
        assert_eq!(warned, 1, "{l}: one warning per run of failures\n{log}");
    }
    // Descriptors free: both answer again.
    drop(clients);
    drop(tcp);
    let limit = format!("--nofile={}:", open + 64);
    assert!(
        StdCommand::new("prlimit")
            .args(["--pid", &pid.to_string(), &limit])
            .status()
            .unwrap()
            .success()
    );
    wait_for(Duration::from_secs(10), "a status reply", || {
        zfsrepl()
            .args(["status", "--json", "--socket"])
            .arg(&sock)
            .output()
            .unwrap()
            .status
            .success()
    });
    assert!(metrics(&format!("127.0.0.1:{port}")).contains("zfsrepl_"));
    let log = daemon.log();
    assert!(log.contains("accepting connections again"), "{log}");
    assert!(daemon.stop(Duration::from_secs(10)).success());
}
