//! End-to-end tests of the `zfsrepl` binary on real pools.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure is the test failing

use assert_cmd::Command;
use predicates::prelude::*;
use zfsrepl_core::testing::TestPool;

fn zfsrepl() -> Command {
    Command::cargo_bin("zfsrepl").unwrap()
}

/// The short names of a dataset's snapshots, as `zfsrepl list --json` gives
/// them (oldest first).
fn snapshot_names(dataset: &str) -> Vec<String> {
    let out = zfsrepl()
        .args(["list", "--json", dataset])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    v[0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["name"]
                .as_str()
                .unwrap()
                .rsplit('@')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
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
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/openfoodfacts/off2.toml"
    );
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

/// Hourly runs across the end of DST in Paris (2027-10-31, 03:00 CEST ->
/// 02:00 CET) on a real pool: one hourly per real hour, the repeated local
/// hour named with sanoid's `dst` marker, no duplicate, nothing taken twice
/// when a run repeats, and a dataset the policy does not name untouched.
///
/// The snapshots' `creation` is the real time (before these `--now` times),
/// so every run finds the hourly due; a repeated run is stopped by the name
/// already existing, which is what this test checks.
#[test]
fn snapshot_runs_across_dst_end_on_a_real_pool() {
    let pool = TestPool::new();
    pool.apply("+ \"off products\"\n+ \"-images: x\"\n+ other");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\ntimezone = \"Europe/Paris\"\n\
             [dataset.\"{p}/off products\"]\nnaming = \"sanoid\"\nhourly = 48\ndaily = 0\nmonthly = 0\n\
             [dataset.\"{p}/-images: x\"]\nhourly = 48\ndaily = 0\nmonthly = 0\n",
            p = pool.name()
        ),
    )
    .unwrap();
    let times = [
        "2027-10-30T23:00:00Z",
        "2027-10-31T00:00:00Z",
        "2027-10-31T01:00:00Z",
        "2027-10-31T01:00:00Z",
        "2027-10-31T02:00:00Z",
        "2027-10-31T03:00:00Z",
    ];
    for t in times {
        zfsrepl()
            .args(["snapshot", "--policy"])
            .arg(&policy)
            .args(["--now", t])
            .assert()
            .success();
    }
    let list = |ds: &str| snapshot_names(&format!("{}/{ds}", pool.name()));
    let mut off = list("off products");
    off.sort();
    assert_eq!(
        off,
        [
            "autosnap_2027-10-31_01:00:00_hourly",
            "autosnap_2027-10-31_02:00:00_hourly",
            "autosnap_2027-10-31_02:00:00dst_hourly",
            "autosnap_2027-10-31_03:00:00_hourly",
            "autosnap_2027-10-31_04:00:00_hourly",
        ]
    );
    // Our own names are in UTC: no DST marker needed.
    let images = list("-images: x");
    assert_eq!(
        images.iter().filter(|n| n.ends_with("_hourly")).count(),
        5,
        "{images:?}"
    );
    assert!(images.iter().all(|n| n.starts_with("zfsrepl_")));
    assert!(list("other").is_empty());
    // --dry-run says why, and changes nothing.
    zfsrepl()
        .args(["snapshot", "--dry-run", "--policy"])
        .arg(&policy)
        .args(["--now", "2027-10-31T05:00:00Z"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "before this period's preferred time",
        ));
    assert_eq!(list("off products").len(), 5);
}

/// Hourly runs across the spring-forward change in Europe/Paris
/// (2027-03-28, 02:00 CET -> 03:00 CEST) on a real pool: one hourly per real
/// hour, no name in the missing local hour, nothing taken twice when a run
/// repeats. (The due-time rules around the gap, e.g. a daily at 02:30, are
/// tested exhaustively on injected time in the core's snapshot tests.)
#[test]
fn snapshot_runs_across_dst_start_on_a_real_pool() {
    let pool = TestPool::new();
    pool.apply("+ off\n+ \"img :-x\"");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\ntimezone = \"Europe/Paris\"\n\
             [dataset.\"{p}/off\"]\nnaming = \"sanoid\"\nhourly = 48\ndaily = 0\nmonthly = 0\n\
             [dataset.\"{p}/img :-x\"]\nhourly = 48\ndaily = 0\nmonthly = 0\n",
            p = pool.name()
        ),
    )
    .unwrap();
    for t in [
        "2027-03-27T23:00:00Z",
        "2027-03-28T00:00:00Z",
        "2027-03-28T01:00:00Z",
        "2027-03-28T01:00:00Z",
        "2027-03-28T02:00:00Z",
    ] {
        zfsrepl()
            .args(["snapshot", "--policy"])
            .arg(&policy)
            .args(["--now", t])
            .assert()
            .success();
    }
    let mut off = snapshot_names(&format!("{}/off", pool.name()));
    off.sort();
    assert_eq!(
        off,
        [
            "autosnap_2027-03-28_00:00:00_hourly",
            "autosnap_2027-03-28_01:00:00_hourly",
            "autosnap_2027-03-28_03:00:00_hourly",
            "autosnap_2027-03-28_04:00:00_hourly",
        ]
    );
    let mut img = snapshot_names(&format!("{}/img :-x", pool.name()));
    img.sort();
    assert_eq!(
        img,
        [
            "zfsrepl_2027-03-27_23:00:00_hourly",
            "zfsrepl_2027-03-28_00:00:00_hourly",
            "zfsrepl_2027-03-28_01:00:00_hourly",
            "zfsrepl_2027-03-28_02:00:00_hourly",
        ]
    );
}

/// A sanoid.conf for `POOL/db: main` (hourly = 2, then `extra`) and five
/// hourlies taken with it, 01:00 to 05:00 on 2027-02-01.
fn five_hourlies(pool: &TestPool, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sanoid.conf");
    std::fs::write(
        &conf,
        format!(
            "[{}/db: main]\nhourly = 2\ndaily = 0\nmonthly = 0\nautosnap = yes\nautoprune = yes\n{extra}",
            pool.name()
        ),
    )
    .unwrap();
    for h in 1..=5 {
        zfsrepl()
            .args(["snapshot", "--policy"])
            .arg(&conf)
            .args(["--now", &format!("2027-02-01T{h:02}:00:00Z")])
            .assert()
            .success();
    }
    (dir, conf)
}

/// Take then prune on a real pool with `--now` days ahead: the counts hold,
/// `--dry-run` explains, and snapshots zfsrepl does not own survive.
#[test]
fn prune_keeps_what_the_policy_says_and_never_foreign_snapshots() {
    let pool = TestPool::new();
    pool.apply(
        "+ \"db: main\"\n+ \"db: main@before-upgrade\"\n+ \"db: main@zfs-auto-snap_hourly-2026\"",
    );
    let (_dir, conf) = five_hourlies(&pool, "");
    // Creation times are real (earlier than --now): five hourlies exist, all
    // "older than 2 hours" at the pruning time; sanoid keeps the newest 2.
    zfsrepl()
        .args(["prune", "--dry-run", "--policy"])
        .arg(&conf)
        .args(["--now", "2027-02-01T06:00:00Z"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would destroy 3 snapshot(s)"))
        .stdout(predicate::str::contains("before-upgrade"));
    zfsrepl()
        .args(["prune", "--policy"])
        .arg(&conf)
        .args(["--now", "2027-02-01T06:00:00Z"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 destroyed, 0 failed"));
    let mut names = snapshot_names(&format!("{}/db: main", pool.name()));
    names.sort();
    assert_eq!(
        names,
        [
            "autosnap_2027-02-01_04:00:00_hourly",
            "autosnap_2027-02-01_05:00:00_hourly",
            "before-upgrade",
            "zfs-auto-snap_hourly-2026",
        ]
    );
    // Again: nothing more to destroy.
    zfsrepl()
        .args(["prune", "--policy"])
        .arg(&conf)
        .args(["--now", "2027-02-01T06:00:00Z"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 destroyed"));
}

/// `prune-defer` on a real pool (issue 8 item 4): while the pool is at
/// most P% full, expired snapshots stay and `prune` says why; once real
/// data fills it past P%, they go, the newest ones are kept, and foreign
/// snapshots are never touched.
#[test]
fn prune_defer_waits_until_the_pool_is_nearly_full() {
    let pool = TestPool::mounted();
    pool.apply("+ \"db: main\"\n+ \"db: main@before-upgrade\"");
    let (_dir, conf) = five_hourlies(&pool, "prune_defer = 60\n");
    let prune = || {
        zfsrepl()
            .args(["prune", "--policy"])
            .arg(&conf)
            .args(["--now", "2027-02-01T06:00:00Z"])
            .assert()
            .success()
    };
    let deferred = format!(
        "{}/db: main: pruning deferred: pool {} is ",
        pool.name(),
        pool.name()
    );
    prune()
        .stdout(predicate::str::contains("0 destroyed"))
        .stderr(predicate::str::contains(deferred.as_str()));
    assert_eq!(
        snapshot_names(&format!("{}/db: main", pool.name())).len(),
        6
    );
    // Fill the pool past 60% (zpool's capacity counts allocated blocks:
    // real data, written to a dataset of the test's own).
    pool.apply("+ fill");
    pool.write("fill", "blob", 180 << 20);
    let capacity = || -> u8 {
        let out = std::process::Command::new("zpool")
            .args(["list", "-H", "-o", "capacity", pool.name()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_end_matches('%')
            .parse()
            .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    while capacity() <= 60 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the pool did not fill: {}%",
            capacity()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    prune()
        .stdout(predicate::str::contains("3 destroyed, 0 failed"))
        .stderr(predicate::str::contains("deferred").not());
    let mut names = snapshot_names(&format!("{}/db: main", pool.name()));
    names.sort();
    assert_eq!(
        names,
        [
            "autosnap_2027-02-01_04:00:00_hourly",
            "autosnap_2027-02-01_05:00:00_hourly",
            "before-upgrade",
        ]
    );
}

#[test]
fn check_is_a_nagios_plugin() {
    let pool = TestPool::new();
    pool.apply("+ data");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[dataset.\"{}/data\"]\nhourly = 2\ndaily = 0\nmonthly = 0\n",
            pool.name()
        ),
    )
    .unwrap();
    zfsrepl()
        .args(["check", "--policy"])
        .arg(&policy)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("has no hourly snapshots at all!"));
    zfsrepl()
        .args(["snapshot", "--policy"])
        .arg(&policy)
        .assert()
        .success();
    zfsrepl()
        .args(["check", "--pools", "--policy"])
        .arg(&policy)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("OK: all monitored datasets"))
        .stdout(predicate::str::contains(format!(
            "ZPOOL {} : ONLINE",
            pool.name()
        )));
}

/// `zfsrepl send` between two real pools: initial full, incremental `-I`,
/// nothing to do, a diverged target refused with nothing destroyed, and a
/// recursive tree with a hostile child name.
#[test]
fn send_initial_incremental_uptodate_and_diverged() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ \"data set\"\n+ \"data set/-child: x\"");
    src.write("data set", "f", 200_000);
    src.apply("+ \"data set@s1\"\n+ \"data set/-child: x@s1\"");
    let s = format!("{}/data set", src.name());
    let d = format!("{}/copy", dst.name());
    let send = |args: &[&str]| {
        zfsrepl()
            .args(["send", "--no-sync-snap"])
            .args(args)
            .arg(&s)
            .arg(&d)
            .assert()
    };
    send(&["-r"])
        .success()
        .stdout(predicate::str::contains("1 step(s)"));
    src.write("data set", "g", 100_000);
    src.apply("+ \"data set@s2\"\n+ \"data set@s3\"");
    send(&["--dry-run"])
        .success()
        .stdout(predicate::str::contains("-I"));
    send(&[])
        .success()
        .stdout(predicate::str::contains("1 step(s)"));
    send(&["-r"])
        .success()
        .stdout(predicate::str::contains("up to date"));
    let names = snapshot_names;
    assert_eq!(names(&d), ["s1", "s2", "s3"]);
    assert_eq!(names(&format!("{d}/-child: x")), ["s1"]);
    // The target gets a snapshot of its own: diverged, refused, untouched.
    dst.apply("+ \"copy@local\"");
    src.apply("+ \"data set@s4\"");
    send(&[])
        .code(1)
        .stdout(predicate::str::contains("FAILED"))
        .stdout(predicate::str::contains("local"));
    assert_eq!(names(&d), ["s1", "s2", "s3", "local"]);
    // --force-rollback never destroys a snapshot zfsrepl does not own.
    send(&["--force-rollback"])
        .code(1)
        .stdout(predicate::str::contains("local"));
    assert_eq!(names(&d), ["s1", "s2", "s3", "local"]);
}

/// `--no-hold` (only with `--no-sync-snap`): the base is left unheld on
/// both sides, so other tools can destroy it, as with syncoid
/// --no-sync-snap.
#[test]
fn send_no_hold_leaves_the_base_unheld() {
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ data\n+ data@s1");
    let s = format!("{}/data", src.name());
    let d = format!("{}/copy", dst.name());
    zfsrepl()
        .args(["send", "--no-hold"])
        .arg(&s)
        .arg(&d)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-sync-snap"));
    zfsrepl()
        .args(["send", "--no-sync-snap", "--no-hold"])
        .arg(&s)
        .arg(&d)
        .assert()
        .success();
    for snap in [format!("{s}@s1"), format!("{d}@s1")] {
        let out = std::process::Command::new("zfs")
            .args(["get", "-H", "-o", "value", "userrefs", &snap])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{snap}");
    }
}

/// The default `zfsrepl send`: a sync snapshot per run, held on both sides,
/// older ones of the same job cleaned, another job's left alone; the
/// target read-only and not mountable by itself (canmount=noauto).
#[test]
fn send_with_sync_snapshots_jobs_and_readonly() {
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply(
        "+ data
+ data@autosnap_2026-01-01_00:00:00_daily",
    );
    let s = format!("{}/data", src.name());
    let d = format!("{}/copy", dst.name());
    let send = |args: &[&str]| zfsrepl().arg("send").args(args).arg(&s).arg(&d).assert();
    send(&["--dry-run"])
        .success()
        .stdout(predicate::str::contains(
            "would take sync snapshot @zfsrepl_sync_",
        ));
    assert_eq!(snapshot_names(&s).len(), 1, "a dry run takes nothing");
    send(&["--readonly"]).success();
    send(&["--job", "other"]).success();
    let first = snapshot_names(&d);
    assert_eq!(first.len(), 2, "{first:?}");
    send(&[])
        .success()
        .stdout(predicate::str::contains("cleaned"));
    let src_names = snapshot_names(&s);
    let dst_names = snapshot_names(&d);
    // The autosnap, the other job's sync snapshot and this job's newest.
    assert_eq!(src_names.len(), 3, "{src_names:?}");
    assert!(
        src_names[1].starts_with("zfsrepl_sync_other_"),
        "{src_names:?}"
    );
    // This job's first sync snapshot is cleaned on the target too; the
    // other job's stays.
    assert_eq!(dst_names.len(), 2, "{dst_names:?}");
    assert_eq!(
        dst_names[0], first[1],
        "the other job's stays on the target"
    );
    assert_eq!(dst_names[1], src_names[2]);
    let get = |prop: &str, name: &str| {
        let o = std::process::Command::new("zfs")
            .args(["get", "-Hp", "-o", "value", prop, name])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(get("readonly", &d), "on");
    assert_eq!(get("canmount", &d), "noauto");
    assert_eq!(get("userrefs", &format!("{d}@{}", dst_names[1])), "1");
    assert_eq!(
        get("userrefs", &format!("{d}@{}", dst_names[0])),
        "1",
        "the other job's hold"
    );
}

#[test]
fn send_compress_is_none_zstd_or_zstd_level() {
    for bad in ["zstd:99", "gzip", "zstd:x"] {
        zfsrepl()
            .args(["send", "--compress", bad, "a/b", "c/d"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--compress"));
    }
}

/// The datasets under `root` (itself included) with their `origin`.
fn origins(root: &str) -> Vec<(String, String)> {
    let out = std::process::Command::new(zfsrepl_core::testing::zfs_binary())
        .args(["get", "-H", "-r", "-o", "name,value", "origin", "--", root])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, v) = l.split_once('\t').unwrap();
            (n.to_owned(), v.to_owned())
        })
        .filter(|(n, _)| !n.contains('@'))
        .collect()
}

/// Staging clones on a real pool: created from the newest common snapshot,
/// refreshed by an atomic swap when a newer one arrives (old clone gone, no
/// leftovers), a failing pre-swap hook keeps the old clones serving, and a
/// dataset zfsrepl did not create is never replaced.
#[test]
fn clone_refresh_swaps_atomically_on_a_real_pool() {
    let pool = TestPool::new();
    pool.apply(
        "+ \"off products\"\n+ \"-images: x\"\n+ stage\n\
         + \"off products@a\"\n+ \"-images: x@a\"\n+ \"-images: x@only-images\"",
    );
    let p = pool.name();
    let refresh = |extra: &[&str]| {
        let mut c = zfsrepl();
        c.args(["clone", "refresh", "staging", "--common"])
            .arg("--pair")
            .arg(format!("{p}/off products={p}/stage/products"))
            .arg("--pair")
            .arg(format!("{p}/-images: x={p}/stage/-img"))
            .args(extra);
        c
    };
    refresh(&["--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would create from"));
    assert_eq!(
        origins(&format!("{p}/stage")).len(),
        1,
        "dry run made nothing"
    );
    refresh(&[]).assert().success();
    let stage = format!("{p}/stage");
    assert_eq!(
        origins(&stage),
        [
            (stage.clone(), "-".to_owned()),
            (format!("{p}/stage/-img"), format!("{p}/-images: x@a")),
            (format!("{p}/stage/products"), format!("{p}/off products@a")),
        ]
    );
    // Up to date: nothing changes.
    refresh(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains("up to date"));

    // New common snapshot; a failing pre-swap hook keeps the old clones.
    pool.apply("+ \"off products@b\"\n+ \"-images: x@b\"");
    refresh(&["--pre-swap", "/bin/false"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("pre-swap hook failed"));
    assert_eq!(
        origins(&stage)[2],
        (format!("{p}/stage/products"), format!("{p}/off products@a"))
    );
    assert_eq!(origins(&stage).len(), 3, "temporary clones removed");

    // The real swap; the hook sees the targets by name, with no shell.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("post $(touch injected); x");
    refresh(&["--post-swap", "/usr/bin/touch", marker.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("refreshed"));
    assert!(marker.exists());
    assert!(!std::path::Path::new("injected").exists());
    assert_eq!(
        origins(&stage),
        [
            (stage.clone(), "-".to_owned()),
            (format!("{p}/stage/-img"), format!("{p}/-images: x@b")),
            (format!("{p}/stage/products"), format!("{p}/off products@b")),
        ]
    );
    zfsrepl()
        .args(["clone", "list", &stage])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("staging").and(predicate::str::contains("off products@b")),
        );

    // A dataset we did not create, where a clone should go: refused, kept.
    pool.apply("+ stage/other");
    zfsrepl()
        .args(["clone", "refresh", "other-spec", "--pair"])
        .arg(format!("{p}/off products={p}/stage/other"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("refusing to replace"));
    assert!(
        origins(&stage)
            .iter()
            .any(|(n, o)| n.ends_with("/other") && o == "-")
    );
}

/// The injected commands every hostile string below tries to run: each
/// would create `inj*` in the test's directory if a shell ever saw it.
fn hostile_strings(dir: &std::path::Path) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("$(touch {d}/inj1)"),
        format!("`touch {d}/inj2`"),
        format!("x; touch {d}/inj3"),
        format!("x | touch {d}/inj4"),
        format!("x\ntouch {d}/inj5"),
        format!("'\"$(touch {d}/inj6)\"'"),
        format!("x && touch {d}/inj7 &"),
    ]
}

fn assert_not_injected(dir: &std::path::Path) {
    for i in 1..=7 {
        let p = dir.join(format!("inj{i}"));
        assert!(!p.exists(), "a shell ran a hostile string: {}", p.display());
    }
}

/// Hostile strings where users supply free text, on a real pool: hook
/// arguments in a policy (pre- and post-snapshot) and property values of
/// clone refresh arrive verbatim as one argv element each; no shell ever
/// interprets them (an injection would leave a marker file).
#[test]
fn hostile_strings_in_hooks_and_properties_never_reach_a_shell() {
    let pool = TestPool::new();
    pool.apply("+ \"-data: x.y\"\n+ stage\n+ \"-data: x.y@s\"");
    let p = pool.name();
    let dir = tempfile::tempdir().unwrap();
    let hostile = hostile_strings(dir.path());
    // Hooks: /usr/bin/touch with each hostile string as a file name below
    // dir/files (a name with '/' inside stays one argument; touch just
    // fails on it, which the hook reports, and the snapshot goes on).
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let args: Vec<String> = hostile
        .iter()
        .map(|h| files.join(h.replace('/', "_")).display().to_string())
        .collect();
    let argv = |first: &str| {
        let mut v = vec![toml_string(first)];
        v.extend(args.iter().map(|a| toml_string(a)));
        v.join(", ")
    };
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\ntimezone = \"UTC\"\n\
             [dataset.\"{p}/-data: x.y\"]\nhourly = 2\ndaily = 0\nmonthly = 0\n\
             [dataset.\"{p}/-data: x.y\".hooks]\n\
             pre-snapshot = [{}]\npost-snapshot = [{}]\n",
            argv("/usr/bin/touch"),
            argv("/usr/bin/touch")
        ),
    )
    .unwrap();
    zfsrepl()
        .args(["policy", "check"])
        .arg(&policy)
        .assert()
        .success();
    zfsrepl()
        .args(["snapshot", "--policy"])
        .arg(&policy)
        .args(["--now", "2030-01-01T00:30:00Z"])
        .assert()
        .success();
    for a in &args {
        assert!(
            std::path::Path::new(a).exists(),
            "the hook got {a:?} verbatim"
        );
    }
    assert_eq!(
        snapshot_names(&format!("{p}/-data: x.y")).len(),
        2,
        "the hourly was taken"
    );
    assert_not_injected(dir.path());

    // Property values: set on the clone exactly as given.
    let mut c = zfsrepl();
    c.args(["clone", "refresh", "hostile"])
        .arg("--pair")
        .arg(format!("{p}/-data: x.y={p}/stage/-c"));
    for (i, h) in hostile.iter().enumerate() {
        c.arg("--set").arg(format!("zfsrepl:note{i}={h}"));
    }
    c.assert().success();
    for (i, h) in hostile.iter().enumerate() {
        let out = std::process::Command::new("zfs")
            .args(["get", "-H", "-o", "value", &format!("zfsrepl:note{i}")])
            .arg(format!("{p}/stage/-c"))
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        // `zfs get -H` prints a newline inside a value as is.
        assert_eq!(got.strip_suffix('\n').unwrap_or(&got), h, "note{i}");
    }
    assert_not_injected(dir.path());
}

/// A string as a TOML basic string (quotes, backslashes and newlines
/// escaped; the other characters used here need no escape).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes an executable stub named `name` in `dir` that appends its argv
/// to `log` (stands in for pct and exportfs, which this machine lacks).
fn stub(dir: &std::path::Path, name: &str, log: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `clone refresh NAME --policy`: the policy's clone section on a real
/// pool, and the target actions the swap implies run on the host (pct and
/// exportfs as recording stubs on PATH, the proxy reload for real); prune
/// keeps the clones' origins with the reason; check warns about a stale
/// origin.
#[test]
fn clone_refresh_from_a_policy_runs_the_implied_target_actions() {
    let pool = TestPool::new();
    pool.apply(
        "+ src\n+ src/products\n+ src/images\n+ stage\n\
         + src/products@zfsrepl_a_hourly\n+ src/images@zfsrepl_a_hourly\n+ src/images@zfsrepl_b_hourly",
    );
    let p = pool.name();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("commands.log");
    stub(&bin, "pct", &log);
    stub(&bin, "exportfs", &log);
    let reloaded = dir.path().join("nginx reloaded");
    let policy = dir.path().join("estate.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = 1
[host.here]
transport = "local"

[dataset."{p}/src"]
recursive = "per-dataset"
hourly = 1
daily = 0
monthly = 0
[dataset."{p}/src".monitor]
enabled = false

[clone.staging]
host = "here"
snapshot = "common"
stale-after = "1h"
[clone.staging.pairs]
"{p}/src/products" = "{p}/stage/products"
"{p}/src/images" = "{p}/stage/images"

[export.nfs]
host = "here"
clone = "staging"
clients = ["10.1.0.200"]
options = ["ro", "no_subtree_check"]
backend = "exportfs"

[container.staging]
host = "here"
ctid = 200
[container.staging.mounts]
mp0 = {{ dataset = "{p}/stage/products", path = "/mnt/off/products" }}

[proxy.images]
host = "here"
dataset = "{p}/stage/images"
reload = ["/usr/bin/touch", "{}"]
"#,
            reloaded.display()
        ),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |extra: &[&str]| {
        let mut c = zfsrepl();
        c.env("PATH", &path)
            .args(["clone", "refresh", "staging", "--policy"])
            .arg(&policy)
            .args(extra);
        c
    };
    let out = run(&["--dry-run"]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains(&format!(
            "{p}/stage/products: would create from {p}/src/products@zfsrepl_a_hourly"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "after the swap would run [here] export.nfs: exportfs -o ro,no_subtree_check 10.1.0.200:/{p}/stage/images"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "after the swap would run [here] container.staging: pct set 200 -mp0 /{p}/stage/products,mp=/mnt/off/products"
        )),
        "{text}"
    );
    assert!(!log.exists(), "a dry run runs nothing");

    run(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains("ran [here] proxy.images"));
    assert!(reloaded.exists(), "the proxy reload ran");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.lines().collect::<Vec<_>>(),
        // Created, not replaced: nothing to withdraw first.
        [
            format!("exportfs -o ro,no_subtree_check 10.1.0.200:/{p}/stage/products"),
            format!("exportfs -o ro,no_subtree_check 10.1.0.200:/{p}/stage/images"),
            format!("pct set 200 -mp0 /{p}/stage/products,mp=/mnt/off/products"),
        ]
    );
    assert_eq!(
        origins(&format!("{p}/stage"))[1..],
        [
            (
                format!("{p}/stage/images"),
                format!("{p}/src/images@zfsrepl_a_hourly")
            ),
            (
                format!("{p}/stage/products"),
                format!("{p}/src/products@zfsrepl_a_hourly")
            ),
        ]
    );
    // Up to date: no swap, no target action.
    std::fs::remove_file(&log).unwrap();
    run(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains("up to date"));
    assert!(!log.exists());

    // Newer snapshots, three hours on: hourly = 1 expires @zfsrepl_a_hourly,
    // but the clones come from it.
    pool.apply("+ src/products@zfsrepl_c_hourly\n+ src/images@zfsrepl_c_hourly");
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(3)).to_string();
    let out = zfsrepl()
        .args(["prune", "--dry-run", "--policy"])
        .arg(&policy)
        .args(["--now", &later])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("keep")
            && l.contains(&format!("{p}/src/products@zfsrepl_a_hourly"))
            && l.contains(&format!("origin of clone {p}/stage/products"))),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("destroy")
                && l.contains(&format!("{p}/src/images@zfsrepl_b_hourly"))),
        "{text}"
    );
    zfsrepl()
        .args(["prune", "--policy"])
        .arg(&policy)
        .args(["--now", &later])
        .assert()
        .success();
    assert_eq!(
        snapshot_names(&format!("{p}/src/images")),
        ["zfsrepl_a_hourly", "zfsrepl_c_hourly"]
    );

    // The pinned origin is stale by then.
    zfsrepl()
        .args(["check", "--policy"])
        .arg(&policy)
        .args(["--now", &later])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "clone {p}/stage/products (staging) comes from {p}/src/products@zfsrepl_a_hourly"
        )));
}

/// A dataset locked by someone else (the daemon, another send) is left
/// alone: `send` refuses at once and says who holds it, `prune` skips it
/// and exits 1; once the lock goes, both work. `ZFSREPL_LOCK_DIR` sets the
/// directory like `--lock-dir`.
#[test]
fn send_and_prune_respect_dataset_locks() {
    use zfsrepl_core::lock::LockDir;
    let src = TestPool::new();
    let dst = TestPool::new();
    src.apply("+ data\n+ data@s1");
    let locks_dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(locks_dir.path());
    let s = format!("{}/data", src.name());
    let d = format!("{}/copy", dst.name());
    let held = locks
        .try_lock(None, &src.ds("data"), "zfsrepl daemon job repl")
        .unwrap();
    zfsrepl()
        .args(["send", "--no-sync-snap", "--lock-dir"])
        .arg(locks_dir.path())
        .args([&s, &d])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{s} is busy: locked by pid {} (zfsrepl daemon job repl)",
            std::process::id()
        )));
    // A lock below the target root counts too (the send would replace it).
    drop(held);
    let below = locks
        .try_lock(None, &dst.ds("copy/child"), "zfsrepl prune")
        .unwrap();
    zfsrepl()
        .args(["send", "--no-sync-snap"])
        .env("ZFSREPL_LOCK_DIR", locks_dir.path())
        .args([&s, &d])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is busy"));
    drop(below);
    zfsrepl()
        .args(["send", "--no-sync-snap"])
        .env("ZFSREPL_LOCK_DIR", locks_dir.path())
        .args([&s, &d])
        .assert()
        .success();
    // prune: a locked dataset is skipped this time.
    let policy = locks_dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!("version = 1\n[dataset.\"{s}\"]\nhourly = 1\ndaily = 0\nmonthly = 0\n"),
    )
    .unwrap();
    for h in 1..=3 {
        zfsrepl()
            .args(["snapshot", "--policy"])
            .arg(&policy)
            .args(["--now", &format!("2027-02-01T{h:02}:00:00Z")])
            .assert()
            .success();
    }
    let held = locks.try_lock(None, &src.ds("data"), "test").unwrap();
    let prune = || {
        let mut c = zfsrepl();
        c.args(["prune", "--lock-dir"])
            .arg(locks_dir.path())
            .arg("--policy")
            .arg(&policy)
            .args(["--now", "2027-02-01T04:00:00Z"]);
        c
    };
    prune()
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("skipping {s}:")))
        .stdout(predicate::str::contains("0 destroyed"));
    assert_eq!(snapshot_names(&s).len(), 4);
    drop(held);
    prune()
        .assert()
        .success()
        .stdout(predicate::str::contains("2 destroyed"));
}

/// Kills and reaps a helper daemon on drop.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, deadline: std::time::Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let end = std::time::Instant::now() + deadline;
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() > end => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

/// The primary user's staging flow for real: a clone of a real pool's
/// snapshot exported by a real nfs-ganesha (driven over D-Bus, on a private
/// bus), read over NFSv4 with libnfs's nfs-cat; a newer snapshot refreshes
/// it: the export is withdrawn before the swap (ganesha holding the clone
/// would make `zfs rename` fail), the clones swapped, the export added
/// again, and the client reads the new data.
#[test]
fn a_staging_clone_exported_by_nfs_ganesha_refreshes_under_a_reader() {
    let pool = TestPool::mounted();
    pool.apply("+ off/products\n+ stage");
    let p = pool.name().to_owned();
    let mnt = pool.mountpoint();
    std::fs::write(mnt.join("off/products/hello.txt"), "v1\n").unwrap();
    pool.apply("+ off/products@autosnap_1_hourly");
    let dir = tempfile::tempdir().unwrap();
    let bus = dir.path().join("bus");
    let bus_conf = dir.path().join("bus.conf");
    std::fs::write(
        &bus_conf,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  <type>system</type>\n  \
             <listen>unix:path={}</listen>\n  <auth>EXTERNAL</auth>\n  <policy context=\"default\">\n    \
             <allow user=\"*\"/>\n    <allow own=\"*\"/>\n    <allow send_destination=\"*\"/>\n    \
             <allow receive_sender=\"*\"/>\n  </policy>\n</busconfig>\n",
            bus.display()
        ),
    )
    .unwrap();
    let bus_address = format!("unix:path={}", bus.display());
    let _dbus = Daemon(
        std::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", bus_conf.display()))
            .arg("--nofork")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dbus-daemon (apt-get install dbus; .ci/run does)"),
    );
    wait_for(
        "private D-Bus socket",
        std::time::Duration::from_secs(10),
        || bus.exists().then_some(()).ok_or_else(|| "no socket".into()),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let main = dir.path().join("ganesha.conf");
    std::fs::write(
        &main,
        format!(
            "NFS_CORE_PARAM {{ NFS_Port = {port}; Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Bind_addr = 127.0.0.1; }}\n\
             NFSV4 {{ Graceless = true; }}\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("ganesha.log");
    let _ganesha = Daemon(
        std::process::Command::new("ganesha.nfsd")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus_address)
            .args(["-F", "-f"])
            .arg(&main)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(dir.path().join("ganesha.pid"))
            .args(["-N", "NIV_EVENT"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nfs-ganesha (apt-get install nfs-ganesha nfs-ganesha-vfs; .ci/run does)"),
    );
    let exports = dir.path().join("exports.conf");
    let policy = dir.path().join("ovh3.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = 1
[host.ovh3]
transport = "local"

[dataset."{p}/off"]
recursive = "per-dataset"
naming = "sanoid"
hourly = 24

[clone.staging]
host = "ovh3"
snapshot = "pattern"
pattern = "_hourly$"
[clone.staging.pairs]
"{p}/off/products" = "{p}/stage/products"

[export.staging]
host = "ovh3"
clone = "staging"
path = "{}"
clients = ["127.0.0.1"]
options = ["ro", "no_root_squash"]
export-id = 77
pseudo = "/staging"
config = "{}"
"#,
            mnt.join("stage").display(),
            exports.display()
        ),
    )
    .unwrap();
    let refresh = || {
        let mut c = zfsrepl();
        c.env("DBUS_SYSTEM_BUS_ADDRESS", &bus_address)
            .args(["clone", "refresh", "staging", "--policy"])
            .arg(&policy);
        c
    };
    let url = format!("nfs://127.0.0.1/staging/products/hello.txt?version=4&nfsport={port}");
    let read = |want: &str| {
        wait_for(
            &format!("reading {want:?} over NFS from ganesha"),
            std::time::Duration::from_secs(30),
            || {
                let out = std::process::Command::new("nfs-cat")
                    .arg(&url)
                    .output()
                    .expect("nfs-cat (apt-get install libnfs-utils; .ci/run does)");
                let got = String::from_utf8_lossy(&out.stdout).into_owned();
                if out.status.success() && got == want {
                    Ok(())
                } else {
                    Err(format!(
                        "got {got:?}: {}\nganesha log: {}",
                        String::from_utf8_lossy(&out.stderr),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ))
                }
            },
        );
    };
    // Ganesha must be on the bus before zfsrepl talks to it.
    wait_for(
        "ganesha on the private bus",
        std::time::Duration::from_secs(20),
        || {
            let out = std::process::Command::new("dbus-send")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus_address)
                .args([
                    "--system",
                    "--print-reply",
                    "--dest=org.ganesha.nfsd",
                    "/org/ganesha/nfsd/ExportMgr",
                    "org.ganesha.nfsd.exportmgr.ShowExports",
                ])
                .output()
                .unwrap();
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
        },
    );

    let out = refresh().assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("ran [ovh3] export.staging: tee"), "{text}");
    assert!(text.contains("AddExport"), "{text}");
    assert!(
        !text.contains("RemoveExport"),
        "created: nothing to withdraw\n{text}"
    );
    read("v1\n");

    // New data, a new snapshot: the clone is replaced under the export.
    std::fs::write(mnt.join("off/products/hello.txt"), "v2\n").unwrap();
    pool.apply("+ off/products@autosnap_2_hourly");
    let out = refresh().assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let remove = text.find("RemoveExport uint16:77").expect(&text);
    let add = text.rfind("AddExport").expect(&text);
    assert!(remove < add, "{text}");
    assert!(
        text.contains(&format!("{p}/stage/products: refreshed")),
        "{text}"
    );
    read("v2\n");
    assert_eq!(
        origins(&format!("{p}/stage")),
        [
            (format!("{p}/stage"), "-".to_owned()),
            (
                format!("{p}/stage/products"),
                format!("{p}/off/products@autosnap_2_hourly")
            ),
        ],
        "the old clone was destroyed once ganesha let go of it"
    );
}

/// `zfsrepl graph` and `zfsrepl targets` on the shipped Open Food Facts
/// policies (no pool needed).
#[test]
fn graph_and_targets_on_the_shipped_estate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/openfoodfacts");
    zfsrepl().args(["graph", dir]).assert().success().stdout(
        predicate::str::starts_with("flowchart LR\n")
            .and(predicate::str::contains(
                "stunnel off2-ovh3 PSK off2-ovh3 :8470",
            ))
            .and(predicate::str::contains("ha-pve every 5m, ssh")),
    );
    zfsrepl()
        .args(["graph", "--format", "dot", "--policy"])
        .arg(format!("{dir}/off2.toml"))
        .arg("--policy")
        .arg(format!("{dir}/ovh3.toml"))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("digraph estate {\n"));
    zfsrepl()
        .args(["targets", "--policy"])
        .arg(format!("{dir}/ovh3.toml"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("clone.staging on ovh3: rpool/backups/off2/off/products -> rpool/staging/off/products")
                .and(predicate::str::contains(
                    "before the swap: [ovh3] export.staging: dbus-send --system --print-reply --dest=org.ganesha.nfsd /org/ganesha/nfsd/ExportMgr org.ganesha.nfsd.exportmgr.RemoveExport uint16:100",
                ))
                .and(predicate::str::contains(
                    "after the swap: [ovh3] export.staging: tee /etc/ganesha/zfsrepl/staging.conf",
                ))
                .and(predicate::str::contains(
                    "apply: [off2] tunnel.off2-ovh3: tee /etc/stunnel/off2-ovh3.conf (client side of the link)",
                )),
        );
    zfsrepl()
        .args(["clone", "refresh", "nope", "--policy"])
        .arg(format!("{dir}/ovh3.toml"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "the policy has no [clone.nope] section (it has: staging)",
        ));
    // --pair and --policy do not mix.
    zfsrepl()
        .args([
            "clone", "refresh", "staging", "--pair", "a/b=a/c", "--policy",
        ])
        .arg(format!("{dir}/ovh3.toml"))
        .assert()
        .code(2);
}

/// The replica side of the staging flow (ovh3): snapshots replicated into
/// a dataset whose older snapshot a staging clone comes from (pinned)
/// still arrive incrementally; the clone refreshes from the newest
/// replicated snapshot; pruning the replica keeps the pinned origin with
/// its reason and destroys what the policy lets go.
#[test]
fn replication_into_a_replica_with_pinned_clone_origins_keeps_working() {
    let src = TestPool::mounted();
    let dst = TestPool::new();
    src.apply("+ products");
    src.write("products", "a", 50_000);
    src.apply("+ products@autosnap_1_hourly");
    let s = format!("{}/products", src.name());
    let q = dst.name().to_owned();
    let d = format!("{q}/backups/products");
    dst.apply("+ backups\n+ stage");
    let send = || {
        zfsrepl()
            .args(["send", "--no-sync-snap"])
            .arg(&s)
            .arg(&d)
            .assert()
    };
    send().success();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("ovh3.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = 1
[host.ovh3]
transport = "local"
[dataset."{q}/backups"]
recursive = "per-dataset"
naming = "sanoid"
autosnap = false
hourly = 1
daily = 0
monthly = 0
[dataset."{q}/backups".monitor]
enabled = false
[clone.staging]
host = "ovh3"
pattern = "_hourly$"
stale-after = "1d"
[clone.staging.pairs]
"{d}" = "{q}/stage/products"
"#
        ),
    )
    .unwrap();
    let refresh = || {
        zfsrepl()
            .args(["clone", "refresh", "staging", "--policy"])
            .arg(&policy)
            .assert()
    };
    refresh().success();
    assert_eq!(
        origins(&format!("{q}/stage/products")),
        [(
            format!("{q}/stage/products"),
            format!("{d}@autosnap_1_hourly")
        )]
    );
    // Two more hours of snapshots arrive while the clone pins the first.
    src.write("products", "b", 50_000);
    src.apply("+ products@autosnap_2_hourly\n+ products@autosnap_3_hourly");
    send()
        .success()
        .stdout(predicate::str::contains("1 step(s)"));
    assert_eq!(
        snapshot_names(&d),
        [
            "autosnap_1_hourly",
            "autosnap_2_hourly",
            "autosnap_3_hourly"
        ]
    );
    // Pruning three hours on: hourly = 1 expires the first two, but the
    // first is the clone's origin.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(3)).to_string();
    zfsrepl()
        .args(["prune", "--policy"])
        .arg(&policy)
        .args(["--now", &later])
        .assert()
        .success();
    assert_eq!(
        snapshot_names(&d),
        ["autosnap_1_hourly", "autosnap_3_hourly"]
    );
    // The refresh moves the clone to the newest; the old origin is free.
    refresh().success();
    assert_eq!(
        origins(&format!("{q}/stage/products")),
        [(
            format!("{q}/stage/products"),
            format!("{d}@autosnap_3_hourly")
        )]
    );
    zfsrepl()
        .args(["prune", "--policy"])
        .arg(&policy)
        .args(["--now", &later])
        .assert()
        .success();
    assert_eq!(snapshot_names(&d), ["autosnap_3_hourly"]);
    // And replication goes on from the remaining base.
    src.apply("+ products@autosnap_4_hourly");
    send().success();
    assert_eq!(
        snapshot_names(&d),
        ["autosnap_3_hourly", "autosnap_4_hourly"]
    );
}
