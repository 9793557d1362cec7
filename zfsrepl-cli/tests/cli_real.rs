//! End-to-end tests of the `zfsrepl` binary on real pools.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure is the test failing

use assert_cmd::Command;
use predicates::prelude::*;
use zfsrepl_core::testing::TestPool;

fn zfsrepl() -> Command {
    Command::cargo_bin("zfsrepl").unwrap()
}

#[test]
fn help_teaches() {
    zfsrepl()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("zfsrepl zfs caps"))
        .stdout(predicate::str::contains("list"));
    zfsrepl()
        .args(["list", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("One `zfs` process per ROOT"));
}

#[test]
fn bad_input_exits_2_with_the_reason() {
    zfsrepl()
        .args(["list", "tank//a"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty component"));
    zfsrepl().arg("frobnicate").assert().code(2);
}

#[test]
fn caps_on_this_host() {
    let _pool = TestPool::new();
    let out = zfsrepl().args(["zfs", "caps"]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for row in [
        "list -p:",
        "bookmarks:",
        "holds:",
        "comma destroy:",
        "resumable send/recv:",
        "recv -u:",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
    let json = zfsrepl().args(["zfs", "caps", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert!(v["holds"].is_boolean());
}

#[test]
fn list_json_and_table_with_hostile_names() {
    let pool = TestPool::new();
    pool.apply("+ \"off products\"\n+ \"off products@zfsrepl 1\"\n+ \"-x: y\"");
    let out = zfsrepl()
        .args(["list", "--json", pool.name()])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            pool.name().to_string(),
            format!("{}/-x: y", pool.name()),
            format!("{}/off products", pool.name())
        ]
    );
    let snap = &v[2]["versions"][0];
    assert_eq!(
        snap["name"],
        format!("{}/off products@zfsrepl 1", pool.name())
    );
    assert!(snap["guid"].as_u64().unwrap() > 0);
    assert!(snap["createtxg"].as_u64().unwrap() > 0);
    zfsrepl()
        .args(["list", pool.name()])
        .assert()
        .success()
        .stdout(predicate::str::contains("off products@zfsrepl 1"));
    zfsrepl()
        .args(["list", &format!("{}/missing", pool.name())])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not exist"));
}

#[test]
fn policy_check_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[dataset.\"tank/a\"]\nhourli = 3\nrecursive = \"yes\"\n",
    )
    .unwrap();
    zfsrepl()
        .args(["policy", "check"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "bad.toml:3:1: error: unknown key `hourli`",
        ))
        .stderr(predicate::str::contains("did you mean `hourly`?"))
        .stderr(predicate::str::contains(
            "bad.toml:4:13: error: `recursive` must be",
        ))
        .stderr(predicate::str::contains("2 error(s) in policy"));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/off2.toml");
    zfsrepl()
        .args(["policy", "check", shipped])
        .assert()
        .success()
        .stdout(predicate::str::contains("off2.toml: ok"));
}

#[test]
fn import_sanoid_writes_a_valid_policy_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sanoid.conf");
    std::fs::write(&conf, "[template_production]\nhourly = 36\ndaily = 30\nmonthly = 3\n\n[tank/off data]\nuse_template = production\nrecursive = zfs\n").unwrap();
    let out = dir.path().join("policy.toml");
    zfsrepl()
        .args(["policy", "import-sanoid"])
        .arg(&conf)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("[dataset.\"tank/off data\"]"), "{text}");
    zfsrepl()
        .args(["policy", "check"])
        .arg(&out)
        .assert()
        .success();
    zfsrepl()
        .args(["policy", "import-sanoid"])
        .arg(&conf)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("must not exist yet"));
}
