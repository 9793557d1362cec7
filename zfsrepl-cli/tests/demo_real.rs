//! The README's first command, in its short mode: `scripts/demo.sh --quick`
//! with this build's binary creates its three file-backed pools, runs the
//! real daemon with `policies/demo/demo.toml` until both replicas hold
//! snapshots and the staging clones exist, prints status, replicas, clones
//! and graph, stops the daemon with SIGTERM (exit 0) and removes everything.
//!
//! The demo's names are fixed (pools `zr_demo_*`, `/var/tmp/zfsrepl-demo`),
//! so this test removes a demo kept with `--keep` on the same machine.
//! The full demo (pruning and a second refresh) needs a minute and a half
//! of real time and is run by hand.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn zpools() -> String {
    let out = Command::new("zpool")
        .args(["list", "-H", "-o", "name"])
        .output()
        .expect("zpool");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_quick_demo_replicates_refreshes_a_clone_stops_cleanly_and_cleans_up() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let start = Instant::now();
    // `timeout` sends SIGTERM, which the script's trap turns into a
    // cleanup; a hang fails the test instead of stalling CI.
    let out = Command::new("timeout")
        .arg("240")
        .arg("bash")
        .arg(root.join("scripts/demo.sh"))
        .args(["--quick", "--bin", env!("CARGO_BIN_EXE_zfsrepl")])
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("bash scripts/demo.sh");
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{all}",
        out.status
    );
    eprintln!("quick demo: {took:?}");
    for want in [
        // Status of the four jobs, from the daemon's control socket.
        "JOB      KIND",
        "repl     replicate  after snap",
        "-> zr_demo_off1/backups/off2/off: lag",
        "-> zr_demo_ovh3/backups/off2/off: lag",
        // Snapshots on both replicas, listed by `zfsrepl list`.
        "zr_demo_off1/backups/off2/off/products@zfsrepl_",
        "zr_demo_ovh3/backups/off2/off/images@zfsrepl_",
        // The staging clones, from the newest common frequent snapshot.
        "staging          zr_demo_ovh3/staging/off/products        zr_demo_ovh3/backups/off2/off/products@zfsrepl_",
        "staging          zr_demo_ovh3/staging/off/images",
        "staging clones refreshed: made from zfsrepl_",
        // The graph of the demo policy.
        "flowchart LR",
        "clone staging (common)",
        // SIGTERM: exit 0, socket removed; then the verdict and cleanup.
        "the daemon exited cleanly (status 0, socket removed)",
        "demo OK in",
        "destroyed pool zr_demo_ovh3",
    ] {
        assert!(
            all.contains(want),
            "{want:?} not in the demo's output:\n{all}"
        );
    }
    let replicated = stdout
        .lines()
        .find(|l| l.contains("replicated: "))
        .unwrap_or_default();
    assert!(
        !replicated.contains(" 0 snapshot") && !replicated.contains(", 0 on"),
        "{replicated}"
    );
    assert!(!zpools().contains("zr_demo_"), "the demo left pools behind");
    assert!(
        !std::path::Path::new("/var/tmp/zfsrepl-demo").exists(),
        "the demo left its directory behind"
    );
}
