//! Helpers shared by the daemon's real-pool tests: the daemon as a child
//! process, its control socket, and small `zfs` listings.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use zfsrepl_core::testing::zfs_binary;
use zfsrepl_core::zfs::{ListSpec, LocalRunner};
use zfsrepl_core::{DatasetName, ZfsCli, ZfsRead};

pub fn zfsrepl() -> Command {
    Command::cargo_bin("zfsrepl").unwrap()
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// `zfsrepl daemon --policy POLICY`, ready when `DIR/control.sock`
    /// answers; its stderr goes to a new log file in `dir`.
    pub fn start(policy: &Path, dir: &Path) -> Self {
        Self::start_with(policy, dir, &[])
    }

    /// As [`Daemon::start`], with more environment variables.
    pub fn start_with(policy: &Path, dir: &Path, env: &[(&str, &str)]) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = dir.join(format!("daemon-{n}.log"));
        let mut cmd = StdCommand::cargo_bin("zfsrepl").unwrap();
        cmd.args(["daemon", "--policy"])
            .arg(policy)
            .env("ZFSREPL_LOG", "info,zfsrepl_daemon=debug")
            // glibc's fatal messages (heap corruption and the like) go to
            // the tty by default: into the log instead, so that a daemon
            // that dies of one says so.
            .env("LIBC_FATAL_STDERR_", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().unwrap();
        let d = Self { child, log };
        // Ready when the control socket answers.
        let sock = dir.join("control.sock");
        wait_for(Duration::from_secs(20), "the control socket", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = StdCommand::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig}");
    }

    /// SIGTERM and wait; the exit status.
    pub fn stop(mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < within,
                "daemon did not stop within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn status(dir: &Path) -> Value {
    let out = zfsrepl()
        .args(["status", "--json", "--socket"])
        .arg(dir.join("control.sock"))
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

pub fn job<'v>(s: &'v Value, name: &str) -> &'v Value {
    s["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {s}"))
}

pub fn snapshots(dataset: &str) -> Vec<String> {
    let out = StdCommand::new("zfs")
        .args([
            "list",
            "-H",
            "-t",
            "snapshot",
            "-o",
            "name",
            "-s",
            "createtxg",
            "-r",
            "-d",
            "1",
        ])
        .arg(dataset)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('@').map(|(_, s)| s.to_owned()))
        .collect()
}

/// `zfs ARGS`: its stdout, or its stderr as the error.
pub fn zfs(args: &[&str]) -> Result<String, String> {
    let out = StdCommand::new(zfs_binary()).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One snapshot: short name, guid, userrefs.
pub type Snap = (String, u64, u64);

/// Every dataset under `root` (relative name, `""` for the root) with its
/// snapshots, oldest first.
pub fn tree(root: &str) -> BTreeMap<String, Vec<Snap>> {
    let zfs = ZfsCli::probe(LocalRunner::new(), zfs_binary()).unwrap();
    let root_ds = DatasetName::parse(root).unwrap();
    let l = zfs
        .list(&ListSpec::all(vec![root_ds]))
        .unwrap_or_else(|e| panic!("zfs list {root}: {e}"));
    l.iter()
        .map(|d| {
            let rel = d.name.as_str()[root.len()..].to_owned();
            let snaps = d
                .snapshots()
                .map(|v| (v.name.short().to_owned(), v.guid.0, v.userrefs.unwrap_or(0)))
                .collect();
            (rel, snaps)
        })
        .collect()
}

/// Whether the hold `tag` is on `snap`. zfs-fuse cannot list tags: the tag
/// is put on and, when that worked (it was not there), taken off again;
/// "tag already exists" means it is there.
pub fn tagged(tag: &str, snap: &str) -> bool {
    match zfs(&["hold", tag, snap]) {
        Ok(_) => {
            zfs(&["release", tag, snap]).unwrap_or_else(|e| panic!("release {tag} {snap}: {e}"));
            false
        }
        Err(e) if e.contains("already exists") => true,
        Err(e) => panic!("hold {tag} {snap}: {e}"),
    }
}
