//! `zfsrepl serve --listen` and `send tls://` argument checks that need no
//! ZFS: they fail before anything is probed, with a message that says what
//! to do.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use assert_cmd::Command;
use predicates::str::contains;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let psk = d.path().join("psk.txt");
    std::fs::write(&psk, format!("a:{KEY}\n")).unwrap();
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let peers = d.path().join("peers.toml");
    std::fs::write(
        &peers,
        "[[peer]]\nidentity = \"a\"\nwrite-roots = [\"tank/in\"]\n",
    )
    .unwrap();
    (d, psk, peers)
}

fn zfsrepl() -> Command {
    let mut c = Command::cargo_bin("zfsrepl").unwrap();
    // Never reach a real zfs: every case fails before probing.
    c.env("ZFSREPL_ZFS", "/nonexistent/zfs");
    c
}

#[test]
fn serve_refuses_unsafe_setups() {
    let (d, psk, peers) = files();
    let peers_s = peers.to_str().unwrap();
    // Plain TCP on a non-loopback address.
    zfsrepl()
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--plain",
            "--identity",
            "a",
            "--config",
            peers_s,
        ])
        .assert()
        .failure()
        .stderr(contains("refusing plain TCP on 0.0.0.0"))
        .stderr(contains("--force-plain"));
    // Plain with an identity that has no entry.
    zfsrepl()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plain",
            "--identity",
            "b",
            "--config",
            peers_s,
        ])
        .assert()
        .failure()
        .stderr(contains("no [[peer]] entry"));
    // TLS without a secrets file.
    zfsrepl()
        .args(["serve", "--listen", "127.0.0.1:0", "--config", peers_s])
        .assert()
        .failure()
        .stderr(contains("--psk-file"));
    // A secrets file others can read.
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o644)).unwrap();
    zfsrepl()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            peers_s,
            "--psk-file",
        ])
        .arg(&psk)
        .assert()
        .failure()
        .stderr(contains("mode 0644"))
        .stderr(contains("chmod 600"));
    // A bad peers file.
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, "[[peer]]\nidentity = \"a\"\n").unwrap();
    zfsrepl()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&bad)
        .assert()
        .failure()
        .stderr(contains("grants nothing"));
    // Neither --stdio nor --listen.
    zfsrepl().args(["serve"]).assert().failure().code(2);
}

#[test]
fn send_checks_network_sides() {
    let (_d, psk, _) = files();
    let psk_s = psk.to_str().unwrap();
    for (args, want) in [
        (vec!["tank/a", "tls://h/tank/b"], "needs a port"),
        (vec!["tank/a", "tls://h:1/tank/b@x"], "tls://h:1/tank/b@x"),
        (vec!["tank/a", "tls://127.0.0.1:1/tank/b"], "--psk-file"),
        (
            vec![
                "--psk-file",
                psk_s,
                "--identity",
                "zz",
                "tank/a",
                "tls://127.0.0.1:1/tank/b",
            ],
            "\"zz\" is not in the PSK secrets file",
        ),
        (vec!["tank/a", "stunnel://10.1.2.3:9/tank/b"], "loopback"),
        (
            vec![
                "--psk-file",
                psk_s,
                "tank/a",
                "stunnel://127.0.0.1:9/tank/b",
            ],
            "local stunnel that holds the key",
        ),
        (
            vec!["--agent", "tank/a", "tls://127.0.0.1:1/tank/b"],
            "--agent is for ssh sides",
        ),
    ] {
        zfsrepl()
            .arg("send")
            .args(&args)
            .assert()
            .failure()
            .stderr(contains(want));
    }
}
