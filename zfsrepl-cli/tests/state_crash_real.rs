//! Crash-safety of the daemon's state file (issue 8 item 5), on real pools
//! with the real daemon: the daemon is made to abort (as `kill -9` would)
//! at every step of a state write, by the failpoints of
//! `zfsrepl_core::failpoint` (`ZFSREPL_FAILPOINTS`): after opening the
//! temporary file, half-way through writing it, before its fsync, before
//! the rename, before the directory's fsync, and after the save. On each
//! restart the state file is whole and is either the one from before the
//! write or the new one (never a mix, never lost), counters never go back,
//! the dead writer's temporary file is cleared, and the next chain of jobs
//! runs. Finally the state file is deleted: the daemon starts fresh and
//! rebuilds the replication cursor from ZFS.
//!
//! Never skipped: without ZFS, `TestPool::new` fails the test.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Daemon, job, snapshots, status, wait_for, zfsrepl};
use serde_json::Value;
use zfsrepl_core::testing::TestPool;

/// The state file's steps, in write order, and whether the new state is
/// in place once the process dies there.
const POINTS: [(&str, bool); 6] = [
    ("state-open", false),
    ("state-write", false),
    ("state-fsync", false),
    ("state-rename", false),
    ("state-dirsync", true),
    ("state-saved", true),
];

fn policy(src: &str, dst: &str, dir: &Path) -> String {
    format!(
        r#"version = 1
timezone = "UTC"

[template.t]
frequently = 2
frequent-period = 1
hourly = 0
daily = 0
monthly = 0

[dataset."{src}/data"]
use-template = "t"
recursive = true

[dataset."{dst}/copy"]
use-template = "t"
autosnap = false
recursive = true

[job.snap]
kind = "snapshot"
datasets = ["{src}/data"]
schedule = "every 1h"
enabled = false

[job.repl]
kind = "replicate"
source = "{src}/data"
targets = ["{dst}/copy"]
after = "snap"

[job.prune]
kind = "prune"
datasets = ["{src}/data", "{dst}/copy"]
after = "repl"

[daemon]
control-socket = "{dir}/control.sock"
state-dir = "{dir}/state"
lock-dir = "{dir}/locks"
metrics-address = "none"
stop-timeout = "3s"
retries = 0
"#,
        dir = dir.display()
    )
}

fn trigger(dir: &Path, name: &str) {
    zfsrepl()
        .args(["trigger", name, "--socket"])
        .arg(dir.join("control.sock"))
        .assert()
        .success();
}

fn runs(s: &Value, name: &str) -> u64 {
    job(s, name)["runs"].as_u64().unwrap_or(0)
}

/// Waits until the chain snap -> repl -> prune has run `n` more times than
/// `before` (status), all idle.
fn wait_chain(dir: &Path, before: &Value, daemon: &Daemon) -> Value {
    let mut last = Value::Null;
    let done = |s: &Value| {
        ["snap", "repl", "prune"].iter().all(|j| {
            runs(s, j) > runs(before, j)
                && job(s, j)["running"] == false
                && job(s, j)["queued"] == false
        })
    };
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        last = status(dir);
        if done(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the chain did not run: {last:#}\n{}", daemon.log());
}

fn state_counts(v: &Value) -> (u64, u64, u64) {
    let r = |j: &str| v["jobs"][j]["runs"].as_u64().unwrap_or(0);
    (r("snap"), r("repl"), r("prune"))
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn killed_at_every_state_write_step_state_is_old_or_new_never_lost() {
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ data\n+ \"data/-a b: c.d\"");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, policy(src.name(), dst.name(), dir.path())).unwrap();
    let state_dir = dir.path().join("state");
    let state_file = state_dir.join("state.json");

    // A first chain, undisturbed: there is a state with a cursor.
    let daemon = Daemon::start(&p, dir.path());
    let before = status(dir.path());
    trigger(dir.path(), "snap");
    let s = wait_chain(dir.path(), &before, &daemon);
    assert_eq!(
        job(&s, "repl")["last_result"],
        "ok",
        "{s:#}\n{}",
        daemon.log()
    );
    assert!(daemon.stop(Duration::from_secs(20)).success());

    for (i, (point, new_in_place)) in POINTS.iter().enumerate() {
        // The save at start is hit 1; 2, 3 and 4 follow the snapshot,
        // replication and prune runs.
        let nth = 2 + i % 3;
        let spec = format!("{point}@{nth}");
        let daemon = Daemon::start_with(&p, dir.path(), &[("ZFSREPL_FAILPOINTS", &spec)]);
        // The socket answers just before the save at start (hit 1), which
        // changes no counter.
        let old = std::fs::read(&state_file).unwrap();
        let old_v: Value = serde_json::from_slice(&old).unwrap();
        trigger(dir.path(), "snap");
        let mut daemon = daemon;
        let start = std::time::Instant::now();
        let exit = loop {
            if let Some(e) = daemon.child.try_wait().unwrap() {
                break e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{spec}: the daemon did not reach the failpoint:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = daemon.log();
        assert!(
            log.contains(&format!("failpoint {point} reached")),
            "{spec}: exit {exit:?}:\n{log}"
        );
        assert!(!exit.success(), "{spec}");

        // Whole, and old or new: the saves before the fatal one are in the
        // file, the fatal one is (after the rename) or is not (before it).
        let now = std::fs::read(&state_file).unwrap();
        let now_v: Value = serde_json::from_slice(&now).unwrap_or_else(|e| {
            panic!(
                "{spec}: state file not whole: {e}:\n{}",
                String::from_utf8_lossy(&now)
            )
        });
        let saved_runs = nth - 2 + usize::from(*new_in_place);
        let (o, n) = (state_counts(&old_v), state_counts(&now_v));
        let want = (
            o.0 + u64::from(saved_runs >= 1),
            o.1 + u64::from(saved_runs >= 2),
            o.2 + u64::from(saved_runs >= 3),
        );
        assert_eq!(n, want, "{spec}: runs (snap, repl, prune) were {o:?}");
        for (i, j) in ["snap", "repl", "prune"].iter().enumerate() {
            if i >= saved_runs {
                assert_eq!(now_v["jobs"][j], old_v["jobs"][j], "{spec}: {j} as it was");
            }
        }
        let leftovers = temporaries(&state_dir);
        if *point != "state-saved" && *point != "state-dirsync" {
            assert_eq!(
                leftovers.len(),
                1,
                "{spec}: the dead writer's temporary: {leftovers:?}"
            );
        }

        // Restart: the temporary is cleared, counters go on, the chain
        // runs.
        let daemon = Daemon::start(&p, dir.path());
        assert!(temporaries(&state_dir).is_empty(), "{spec}");
        let before = status(dir.path());
        let counts = (
            runs(&before, "snap"),
            runs(&before, "repl"),
            runs(&before, "prune"),
        );
        assert_eq!(counts, state_counts(&now_v), "{spec}: what the file said");
        trigger(dir.path(), "snap");
        let s = wait_chain(dir.path(), &before, &daemon);
        for j in ["snap", "repl", "prune"] {
            assert_eq!(
                job(&s, j)["last_result"],
                "ok",
                "{spec}: {j}: {s:#}\n{}",
                daemon.log()
            );
        }
        assert!(daemon.stop(Duration::from_secs(20)).success());
    }

    // No state at all: a fresh start, and the cursor comes back from ZFS
    // (a prune with no cursor rebuilds it before pruning).
    std::fs::remove_file(&state_file).unwrap();
    let daemon = Daemon::start(&p, dir.path());
    assert!(daemon.log().contains("no state file"), "{}", daemon.log());
    let before = status(dir.path());
    assert!(
        job(&before, "repl")["targets"][0]["common"].is_null(),
        "{before:#}"
    );
    trigger(dir.path(), "prune");
    wait_for(Duration::from_secs(60), "the prune", || {
        let s = status(dir.path());
        runs(&s, "prune") >= 1 && job(&s, "prune")["running"] == false
    });
    let s = status(dir.path());
    assert_eq!(
        job(&s, "prune")["last_result"],
        "ok",
        "{s:#}\n{}",
        daemon.log()
    );
    let common = job(&s, "repl")["targets"][0]["common"]
        .as_str()
        .unwrap_or_else(|| panic!("cursor not rebuilt: {s:#}\n{}", daemon.log()))
        .to_owned();
    let src_snaps = snapshots(&format!("{}/data", src.name()));
    let dst_snaps = snapshots(&format!("{}/copy", dst.name()));
    assert_eq!(dst_snaps.last(), Some(&common), "{dst_snaps:?}");
    assert!(src_snaps.contains(&common), "{src_snaps:?}");
    assert!(daemon.stop(Duration::from_secs(20)).success());
    assert!(state_file.exists());
}
