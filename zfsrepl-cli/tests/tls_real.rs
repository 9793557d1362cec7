//! `zfsrepl serve --listen` and `zfsrepl send tls://` / `stunnel://` on real
//! pools: a tree with hostile names pushed and pulled over TLS-PSK on
//! loopback; through a real stunnel both ways (zfsrepl -> stunnel server ->
//! `serve --plain`, and `stunnel://` -> stunnel client -> `serve --listen`);
//! wrong key, unknown identity, an identity without a peer entry, writes
//! outside the identity's root, garbage and truncated frames all refused
//! with nothing left that blocks the next run; the server killed mid-stream,
//! then the next run completes; a server in another network namespace (a
//! veth link) whose link is cut mid-stream: the client notices within its
//! dead-peer time and `send --retries` (backoff) completes once the link
//! is back.
//!
//! Never skips: without ZFS, stunnel or iproute2 it fails (`.ci/run`
//! installs them; namespaces need root, as the pools do).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure is the test failing

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zfsrepl_core::testing::netns::NetNs;
use zfsrepl_core::testing::stunnel::{Stunnel, StunnelSpec, StunnelTls};
use zfsrepl_core::testing::{TestPool, zfs_binary};
use zfsrepl_core::transport::tls::{PskSecrets, TlsConnector, TlsOptions};
use zfsrepl_core::{DatasetName, ListSpec, ZfsRead};

const ZFSREPL: &str = env!("CARGO_BIN_EXE_zfsrepl");

const PUSHER: &str = "off2 to ovh3";
const PULLER: &str = "ovh3-pull";
const KEY: &str = "8a2e7f1c9b3d4a6e5f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
const PULL_KEY: &str = "0123456789abcdef-not-hex-so-ascii";
const WRONG_KEY: &str = "9a2e7f1c9b3d4a6e5f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";

/// A private directory with a PSK file and a peers file.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn psk(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn q(v: &[&DatasetName]) -> String {
    v.iter()
        .map(|d| format!("{:?}", d.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A peers file: the pusher writes `write`, the puller reads `read`.
fn peers(f: &Files, write: &[&DatasetName], read: &[&DatasetName]) -> PathBuf {
    f.file(
        "peers.toml",
        &format!(
            "[[peer]]\nidentity = {PUSHER:?}\nwrite-roots = [{}]\nallow-destroy = true\n\n\
             [[peer]]\nidentity = {PULLER:?}\nread-roots = [{}]\nallow-destroy = true\n",
            q(write),
            q(read)
        ),
    )
}

/// A running `zfsrepl serve --listen`, killed on drop; its stderr is kept.
struct Serve {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(args: &[&str]) -> Self {
        Self::spawn(None, "127.0.0.1:0", args)
    }

    /// `zfsrepl serve --listen LISTEN ARGS`, inside network namespace `ns`
    /// when given.
    fn spawn(ns: Option<&str>, listen: &str, args: &[&str]) -> Self {
        let mut cmd = match ns {
            None => Command::new(ZFSREPL),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ZFSREPL]);
                c
            }
        };
        let mut child = cmd
            .args(["serve", "-v", "--listen", listen])
            .args(args)
            .env("ZFSREPL_ZFS", zfs_binary())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("zfsrepl serve: listening on ") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("serve did not start:\n{}", log.lock().unwrap()));
        Self { child, addr, log }
    }

    fn log(&self) -> String {
        // Give the server a moment to log what just happened.
        std::thread::sleep(Duration::from_millis(200));
        self.log.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

fn send(extra: &[&str], src: &str, dst: &str) -> Output {
    Command::new(ZFSREPL)
        .arg("send")
        .args(extra)
        .args(["--", src, dst])
        .env("ZFSREPL_ZFS", zfs_binary())
        .output()
        .unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (relative name, [(snapshot, guid)]) for every dataset under `root`;
/// empty when `root` does not exist.
fn tree(pool: &TestPool, root: &DatasetName) -> Vec<(String, Vec<(String, u64)>)> {
    let Ok(list) = pool.zfs().list(&ListSpec::all(vec![root.clone()])) else {
        return Vec::new();
    };
    list.iter()
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

/// The snapshots of `sub` (both trees must have the same, by guid).
fn same_newest(a: &[(String, Vec<(String, u64)>)], b: &[(String, Vec<(String, u64)>)]) {
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    for ((na, sa), (nb, sb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let last = sb.last().unwrap_or_else(|| panic!("{nb}: no snapshot"));
        assert!(sa.contains(last), "{na}: {last:?} not in the source {sa:?}");
    }
}

fn hostile_source(src: &TestPool) -> DatasetName {
    src.apply("+ \"-d: x.y\"\n+ \"-d: x.y/-c .z w\"\n+ \"-d: x.y@a 1\"");
    src.write("-d: x.y", "f", 1 << 20);
    src.write("-d: x.y/-c .z w", "g", 1 << 20);
    src.ds("-d: x.y")
}

#[test]
fn push_and_pull_a_hostile_tree_over_tls_psk() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    let sroot = hostile_source(&src);
    dst.apply("+ \"-in: b.c\"");
    let inbox = dst.ds("-in: b.c");
    let f = Files::new();
    let psk_server = f.psk(
        "server.psk",
        &format!("{PUSHER}:{KEY}\n{PULLER}:{PULL_KEY}\n"),
    );
    let psk_push = f.psk("push.psk", &format!("{PUSHER}:{KEY}\n"));
    let psk_pull = f.psk("pull.psk", &format!("{PULLER}:{PULL_KEY}\n"));
    let config = peers(&f, &[&inbox], &[&sroot]);
    let server = Serve::start(&[
        "--psk-file",
        psk_server.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);

    // Push twice: full, then incremental, zstd the second time.
    let target = dst.ds("-in: b.c/-copy: 1.x");
    let url = format!("tls://{}/{}", server.addr, target.as_str());
    for round in 0..2 {
        if round == 1 {
            src.write("-d: x.y/-c .z w", "h", 1 << 20);
        }
        let compress = if round == 0 { "none" } else { "zstd" };
        let o = send(
            &[
                "-r",
                "--job",
                "push",
                "--compress",
                compress,
                "--psk-file",
                psk_push.to_str().unwrap(),
                "--identity",
                PUSHER,
            ],
            sroot.as_str(),
            &url,
        );
        assert!(o.status.success(), "round {round}: {}", show(&o));
        same_newest(&tree(&src, &sroot), &tree(&dst, &target));
    }
    // Cleanup kept one sync snapshot per dataset on the target.
    for (name, snaps) in tree(&dst, &target) {
        let sync = snaps
            .iter()
            .filter(|(s, _)| s.starts_with("zfsrepl_sync_push_"))
            .count();
        assert_eq!(sync, 1, "{name}: {snaps:?}");
    }

    // Pull from the server's source into the local (client-side) pool.
    let pulled = dst.ds("pulled");
    let url = format!("tls://{}/{}", server.addr, sroot.as_str());
    for _ in 0..2 {
        let o = send(
            &[
                "-r",
                "--job",
                "pull",
                "--compress",
                "zstd:5",
                "--psk-file",
                psk_pull.to_str().unwrap(),
            ],
            &url,
            pulled.as_str(),
        );
        assert!(o.status.success(), "{}", show(&o));
        same_newest(&tree(&src, &sroot), &tree(&dst, &pulled));
    }
    let log = server.log();
    assert!(log.contains("connection accepted"), "{log}");
    assert!(log.contains(PULLER) && log.contains(PUSHER), "{log}");
}

#[test]
fn refusals_leave_nothing_that_blocks_the_next_run() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    let sroot = hostile_source(&src);
    dst.apply("+ inbox\n+ other");
    let inbox = dst.ds("inbox");
    let f = Files::new();
    let psk_server = f.psk(
        "server.psk",
        &format!("{PUSHER}:{KEY}\n{PULLER}:{PULL_KEY}\nno entry:{KEY}\n"),
    );
    let config = peers(&f, &[&inbox], &[&sroot]);
    let server = Serve::start(&[
        "--psk-file",
        psk_server.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let good_psk = f.psk("good.psk", &format!("{PUSHER}:{KEY}\n"));
    let target = inbox.child("copy").unwrap();
    let url = |ds: &DatasetName| format!("tls://{}/{}", server.addr, ds.as_str());
    let push = |psk: &Path, id: Option<&str>, to: &DatasetName| {
        let mut extra = vec!["-r", "--psk-file", psk.to_str().unwrap()];
        if let Some(id) = id {
            extra.extend(["--identity", id]);
        }
        send(&extra, sroot.as_str(), &url(to))
    };

    // Wrong key, unknown identity, an identity without a peer entry: refused
    // at the handshake, and the server logs the identity.
    for (file, id, logged) in [
        (format!("{PUSHER}:{WRONG_KEY}\n"), PUSHER, "wrong key?"),
        (
            format!("stranger x:{KEY}\n"),
            "stranger x",
            "unknown identity \"stranger x\"",
        ),
        (
            format!("no entry:{KEY}\n"),
            "no entry",
            "has a key but no [[peer]] entry",
        ),
    ] {
        let psk = f.psk("bad.psk", &file);
        let o = push(&psk, Some(id), &target);
        assert!(!o.status.success(), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("refused identity"), "{id}: {err}");
        let log = server.log();
        assert!(log.contains(logged), "{id}: {logged} not in\n{log}");
    }
    // The puller may not write; the pusher may not write outside its root.
    let pull_psk = f.psk("pull.psk", &format!("{PULLER}:{PULL_KEY}\n"));
    let o = push(&pull_psk, None, &target);
    assert!(!o.status.success(), "{}", show(&o));
    let o = push(&good_psk, None, &dst.ds("other/x"));
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("outside the roots")
            || String::from_utf8_lossy(&o.stdout).contains("outside the roots"),
        "{}",
        show(&o)
    );
    assert!(tree(&dst, &dst.ds("other/x")).is_empty());
    assert!(server.log().contains("agent refused a request"));

    // Garbage and truncated frames over an authenticated connection end the
    // session; the server goes on.
    let secrets = PskSecrets::load(&good_psk).unwrap();
    let c = TlsConnector::new(&secrets, None, &TlsOptions::default()).unwrap();
    let mut s = c.connect(&server.addr).unwrap();
    s.write_all(&[0xff; 4096]).unwrap();
    let _ = s.shutdown();
    let mut s = c.connect(&server.addr).unwrap();
    // A frame announcing 1000 bytes, cut after 10, then the TCP cut.
    s.write_all(&[0, 0, 3, 232, 1]).unwrap();
    s.write_all(b"{\"op\":\"he").unwrap();
    drop(s);
    // A plain (non-TLS) client.
    let mut t = std::net::TcpStream::connect(&server.addr).unwrap();
    let _ = t.write_all(b"GET / HTTP/1.0\r\n\r\n");
    drop(t);

    // The next run completes, twice.
    for _ in 0..2 {
        let o = push(&good_psk, None, &target);
        assert!(o.status.success(), "{}", show(&o));
    }
    same_newest(&tree(&src, &sroot), &tree(&dst, &target));
}

#[test]
fn through_a_real_stunnel_both_ways() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    let sroot = hostile_source(&src);
    dst.apply("+ \"in box\"");
    let inbox = dst.ds("in box");
    let f = Files::new();
    let config = peers(&f, &[&inbox], &[&sroot]);

    // (a) zfsrepl TLS client -> stunnel server -> zfsrepl serve --plain.
    for (tls, name) in [(StunnelTls::Tls13, "a13"), (StunnelTls::Tls12Psk, "a12")] {
        // Only stunnel's user (here: ours) may use the plain port.
        let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
        let plain = Serve::start(&[
            "--plain",
            "--plain-user",
            &me.to_string(),
            "--identity",
            PUSHER,
            "--config",
            config.to_str().unwrap(),
        ]);
        let st = Stunnel::start(&StunnelSpec {
            client: false,
            connect: plain.addr.clone(),
            secrets: format!("{PUSHER}:{KEY}\n"),
            identity: None,
            tls,
        });
        let psk = f.psk("client.psk", &format!("{PUSHER}:{KEY}\n"));
        let target = inbox.child(name).unwrap();
        let o = send(
            &[
                "-r",
                "--compress",
                "zstd",
                "--psk-file",
                psk.to_str().unwrap(),
            ],
            sroot.as_str(),
            &format!("tls://{}/{}", st.addr(), target.as_str()),
        );
        assert!(o.status.success(), "{tls:?}: {}\n{}", show(&o), st.log());
        same_newest(&tree(&src, &sroot), &tree(&dst, &target));
    }

    // (b) zfsrepl -> stunnel:// (a local stunnel client port) -> zfsrepl
    // serve --listen (TLS-PSK), pushing and pulling.
    let psk_server = f.psk(
        "server.psk",
        &format!("{PUSHER}:{KEY}\n{PULLER}:{PULL_KEY}\n"),
    );
    let server = Serve::start(&[
        "--psk-file",
        psk_server.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    for (tls, name) in [(StunnelTls::Tls12Psk, "b12"), (StunnelTls::Default, "b13")] {
        let push_link = Stunnel::start(&StunnelSpec {
            client: true,
            connect: server.addr.clone(),
            secrets: format!("{PUSHER}:{KEY}\n"),
            identity: Some(PUSHER.to_owned()),
            tls,
        });
        let target = inbox.child(name).unwrap();
        for _ in 0..2 {
            let o = send(
                &["-r"],
                sroot.as_str(),
                &format!("stunnel://{}/{}", push_link.addr(), target.as_str()),
            );
            assert!(
                o.status.success(),
                "{tls:?}: {}\n{}",
                show(&o),
                push_link.log()
            );
        }
        same_newest(&tree(&src, &sroot), &tree(&dst, &target));

        let pull_link = Stunnel::start(&StunnelSpec {
            client: true,
            connect: server.addr.clone(),
            secrets: format!("{PULLER}:{PULL_KEY}\n"),
            identity: Some(PULLER.to_owned()),
            tls,
        });
        let pulled = dst.ds(&format!("pulled {name}"));
        let o = send(
            &["-r", "--compress", "zstd"],
            &format!("stunnel://{}/{}", pull_link.addr(), sroot.as_str()),
            pulled.as_str(),
        );
        assert!(
            o.status.success(),
            "{tls:?}: {}\n{}",
            show(&o),
            pull_link.log()
        );
        same_newest(&tree(&src, &sroot), &tree(&dst, &pulled));
    }
    // stunnel:// only to loopback.
    let o = send(&[], sroot.as_str(), "stunnel://10.255.255.1:9/tank/x");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("loopback"),
        "{}",
        show(&o)
    );
}

#[test]
fn server_killed_mid_stream_then_the_next_run_completes() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ \"big: x\"");
    // 24 MiB sent plain at 4 MiB/s: the kill lands mid-stream.
    src.write("big: x", "blob", 24 << 20);
    let sroot = src.ds("big: x");
    dst.apply("+ inbox");
    let inbox = dst.ds("inbox");
    let f = Files::new();
    let psk = f.psk("server.psk", &format!("{PUSHER}:{KEY}\n"));
    let config = peers(&f, &[&inbox], &[&sroot]);
    let serve_args = [
        "--psk-file",
        psk.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let mut server = Serve::start(&serve_args);
    let target = inbox.child("big copy").unwrap();
    let url = format!("tls://{}/{}", server.addr, target.as_str());
    let child = Command::new(ZFSREPL)
        .args(["send", "--bwlimit", "4194304", "--psk-file"])
        .arg(&psk)
        .args(["--", sroot.as_str(), &url])
        .env("ZFSREPL_ZFS", zfs_binary())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    server.kill();
    let t0 = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "the client noticed late"
    );
    // Nothing partial blocks the next run: on a fresh server it completes.
    let server = Serve::start(&serve_args);
    let url = format!("tls://{}/{}", server.addr, target.as_str());
    let o = send(&["--psk-file", psk.to_str().unwrap()], sroot.as_str(), &url);
    assert!(
        o.status.success(),
        "{}\nserver:\n{}",
        show(&o),
        server.log()
    );
    same_newest(&tree(&src, &sroot), &tree(&dst, &target));
}

#[test]
fn link_cut_mid_stream_between_two_namespaces_then_retry_completes() {
    let ns = NetNs::new();
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ \"net: a\"\n+ \"net: a/-child .x\"");
    src.write("net: a", "blob", 24 << 20);
    src.write("net: a/-child .x", "small", 1 << 20);
    let sroot = src.ds("net: a");
    dst.apply("+ inbox");
    let inbox = dst.ds("inbox");
    let f = Files::new();
    let psk = f.psk("server.psk", &format!("{PUSHER}:{KEY}\n"));
    let config = peers(&f, &[&inbox], &[&sroot]);
    // The server, in the other namespace, notices a dead client in seconds.
    let server = Serve::spawn(
        Some(&ns.name),
        &format!("{}:0", ns.there),
        &[
            "--psk-file",
            psk.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--dead-peer",
            "4",
            "--io-timeout",
            "8",
        ],
    );
    let target = inbox.child("copy").unwrap();
    let url = format!("tls://{}/{}", server.addr, target.as_str());
    let send_args = |bw: &str| -> Vec<String> {
        [
            "send",
            "-r",
            "--job",
            "net",
            "--bwlimit",
            bw,
            "--dead-peer",
            "4",
            "--io-timeout",
            "8",
            "--psk-file",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([
            psk.to_str().unwrap().to_owned(),
            "--".into(),
            sroot.as_str().into(),
            url.clone(),
        ])
        .collect()
    };
    // 25 MiB at 4 MiB/s; the link goes down after 2 s.
    let child = Command::new(ZFSREPL)
        .args(send_args("4194304"))
        .env("ZFSREPL_ZFS", zfs_binary())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    ns.link(false);
    let t0 = Instant::now();
    let o = child.wait_with_output().unwrap();
    let noticed = t0.elapsed();
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        noticed < Duration::from_secs(30),
        "the client took {noticed:?} to notice the cut"
    );
    // `--retries` while the link is still down: the first attempts fail
    // (no route), the link comes back, a later attempt completes.
    let mut args = send_args("0");
    args.splice(
        1..1,
        ["--retries", "6", "--retry-wait", "1"].map(String::from),
    );
    let retry = Command::new(ZFSREPL)
        .args(&args)
        .env("ZFSREPL_ZFS", zfs_binary())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    ns.link(true);
    let o = retry.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{}\nserver:\n{}",
        show(&o),
        server.log()
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let attempts: Vec<&str> = err.lines().filter(|l| l.contains("retrying in")).collect();
    assert!(!attempts.is_empty(), "{}", show(&o));
    same_newest(&tree(&src, &sroot), &tree(&dst, &target));
    eprintln!(
        "client noticed the cut after {noticed:?}; {} failed attempts before success",
        attempts.len()
    );
}

/// Two hosts as network namespaces linked through a real stunnel: zfsrepl
/// pushes into `stunnel://` (a stunnel client port on this host), stunnel
/// carries it over TLS-PSK across the veth link to `zfsrepl serve
/// --listen` in the other namespace; twice (full, then incremental).
#[test]
fn through_a_real_stunnel_between_two_namespaces() {
    let ns = NetNs::new();
    let src = TestPool::mounted();
    let dst = TestPool::new();
    let sroot = hostile_source(&src);
    dst.apply("+ inbox");
    let inbox = dst.ds("inbox");
    let f = Files::new();
    let psk = f.psk("server.psk", &format!("{PUSHER}:{KEY}\n"));
    let config = peers(&f, &[&inbox], &[&sroot]);
    let server = Serve::spawn(
        Some(&ns.name),
        &format!("{}:0", ns.there),
        &[
            "--psk-file",
            psk.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let link = Stunnel::start(&StunnelSpec {
        client: true,
        connect: server.addr.clone(),
        secrets: format!("{PUSHER}:{KEY}\n"),
        identity: Some(PUSHER.to_owned()),
        tls: StunnelTls::Default,
    });
    let target = inbox.child("copy").unwrap();
    for round in 0..2 {
        if round == 1 {
            src.write("-d: x.y", "more", 200_000);
            src.apply("+ \"-d: x.y@between\"");
        }
        let o = send(
            &["-r"],
            sroot.as_str(),
            &format!("stunnel://{}/{}", link.addr(), target.as_str()),
        );
        assert!(
            o.status.success(),
            "round {round}: {}\n{}\n{}",
            show(&o),
            link.log(),
            server.log()
        );
    }
    same_newest(&tree(&src, &sroot), &tree(&dst, &target));
}
