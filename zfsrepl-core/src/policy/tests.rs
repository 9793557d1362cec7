use super::*;

fn errors(text: &str) -> Vec<String> {
    match parse_str("p.toml", text) {
        Ok(p) => panic!("expected errors, got {p:#?}"),
        Err(d) => {
            d.0.iter()
                .filter(|d| d.is_error())
                .map(ToString::to_string)
                .collect()
        }
    }
}

const PRODUCTION: &str = r#"
version = 1
timezone = "Europe/Paris"

[template.production]
frequently = 0
hourly = 36
daily = 30
monthly = 3
yearly = 0

[template.frequent]
use-template = "production"
frequently = 4
frequent-period = 15

[dataset."rpool/off"]
use-template = ["frequent"]
recursive = "per-dataset"
exclude = ["rpool/off/cache"]

[dataset."rpool/off".hooks]
pre-snapshot = ["/usr/local/bin/flush", "--db", "it's $(x); y"]
timeout = "30s"
on-pre-failure = "skip"

[dataset."rpool/off/images"]
hourly = 0
[dataset."rpool/off/images".retention]
grid = "1x1h(keep=all) | 24x1h | 14x1d"
keep-regex = ["^manual_"]

[dataset."rpool/backup with space"]
naming = "sanoid"
autosnap = false
recursive = "atomic"
[dataset."rpool/backup with space".monitor]
hourly-warn = "2h"
daily-crit = "0s"
"#;

#[test]
fn a_full_policy_resolves_like_sanoid() {
    let p = parse_str("prod.toml", PRODUCTION).unwrap();
    assert_eq!(p.timezone, "Europe/Paris");
    let names: Vec<&str> = p.datasets.iter().map(|d| d.dataset.as_str()).collect();
    assert_eq!(
        names,
        ["rpool/backup with space", "rpool/off", "rpool/off/images"]
    );
    let off = &p.datasets[1];
    assert_eq!(off.recursion, Recursion::PerDataset);
    let s = &off.settings;
    assert_eq!(
        (
            s.counts.frequently,
            s.counts.hourly,
            s.counts.daily,
            s.counts.monthly
        ),
        (4, 36, 30, 3)
    );
    assert_eq!(s.counts.weekly, 0, "default");
    assert_eq!(s.preferred.daily_hour, 23, "default");
    assert_eq!(s.hooks.pre_snapshot.as_ref().unwrap()[2], "it's $(x); y");
    assert_eq!(s.hooks.timeout, std::time::Duration::from_secs(30));
    assert_eq!(s.hooks.on_pre_failure, HookFailure::Skip);
    // A child entry refines its recursive parent: templates, hooks and all.
    let img = &p.datasets[2].settings;
    assert_eq!(
        (img.counts.hourly, img.counts.daily, img.counts.frequently),
        (0, 30, 4)
    );
    assert_eq!(img.hooks.on_pre_failure, HookFailure::Skip);
    assert_eq!(
        img.retention.grid.as_deref(),
        Some("1x1h(keep=all) | 24x1h | 14x1d")
    );
    let b = &p.datasets[0].settings;
    assert_eq!(b.naming, Naming::Sanoid);
    assert!(!b.autosnap);
    assert_eq!(
        b.monitor.hourly.warn,
        Some(std::time::Duration::from_secs(7200))
    );
    assert_eq!(b.monitor.daily.crit, None, "0s disables");
    // entry_for: descendants inherit, excluded ones do not.
    let ds = |s: &str| DatasetName::parse(s).unwrap();
    assert_eq!(
        p.entry_for(&ds("rpool/off/users"))
            .unwrap()
            .dataset
            .as_str(),
        "rpool/off"
    );
    // As in sanoid, a child's refinement is its own: the grandchildren keep
    // the recursive parent's settings (the child entry is not recursive).
    assert_eq!(
        p.entry_for(&ds("rpool/off/images/x"))
            .unwrap()
            .dataset
            .as_str(),
        "rpool/off"
    );
    assert!(p.entry_for(&ds("rpool/off/cache/x")).is_none());
    assert!(p.entry_for(&ds("rpool/other")).is_none());
}

#[test]
fn every_problem_is_reported_with_location_and_caret() {
    let text = r#"version = 1
timezone = "Mars/Olympus"

[template.t]
hourli = 36
daily = -1

[dataset."rpool/a"]
use-template = "missing"
recursive = "yes"
autosnap = "yes"
yearly = 1
yearly-mon = 2
yearly-mday = 30

[dataset."rpool//b"]

[dataset."rpool/c"]
exclude = ["other/x"]
recursive = "atomic"
[dataset."rpool/c".hooks]
pre-snapshot = "/bin/sync; reboot"
timeout = "5 minutes"
[dataset."rpool/c".retention]
grid = "24x1h | 0x1d"
keep-regex = "(["
"#;
    let e = errors(text);
    let want = [
        "p.toml:2:12: error: unknown time zone \"Mars/Olympus\"",
        "p.toml:5:1: error: unknown key `hourli` in template `t`",
        "= help: did you mean `hourly`?",
        "p.toml:6:9: error: `daily` = -1 is out of range 0..=100000",
        "p.toml:9:16: error: unknown template `missing`",
        "p.toml:10:13: error: `recursive` must be false, \"per-dataset\" or \"atomic\"",
        "p.toml:11:12: error: `autosnap` must be true or false, not the string \"yes\"",
        "impossible yearly date: month 2 has no day 30",
        "p.toml:16:10: error: invalid dataset name",
        "error: excluded `other/x` is not below `rpool/c`",
        "error: `pre-snapshot` must be an argv array, not a command line",
        "error: `timeout` = \"5 minutes\": unknown unit ' '",
        "error: invalid retention grid: retention grid interval 2 of 2 (`0x1d`): repeat count must be at least 1",
        "error: invalid regular expression",
    ];
    let all = e.join("\n\n");
    for w in want {
        assert!(all.contains(w), "missing {w:?} in:\n{all}");
    }
    assert!(
        all.contains("10 | recursive = \"yes\"\n   |             ^^^^^"),
        "caret under the value:\n{all}"
    );
}

#[test]
fn syntax_errors_and_unknown_top_level() {
    let e = errors("version = 1\n[dataset.\"a/b\"\nhourly = 3\n");
    assert!(e[0].contains("TOML syntax"), "{e:?}");
    let e = errors("version = 1\nsnapshots = 3\n");
    assert!(
        e[0].contains("unknown key `snapshots` in the top level"),
        "{e:?}"
    );
    let e = errors("hourly = 3\n");
    assert!(e.iter().any(|x| x.contains("missing `version`")), "{e:?}");
    let e = errors("version = 2\n");
    assert!(e[0].contains("policy version 2 is not supported"), "{e:?}");
}

#[test]
fn template_cycles_and_duplicates() {
    let e = errors(
        "version = 1\n[template.a]\nuse-template = \"b\"\n[template.b]\nuse-template = \"a\"\n",
    );
    assert!(e.iter().any(|x| x.contains("uses itself")), "{e:?}");
}

#[test]
fn overlaps_are_reported() {
    let text = "version = 1\n[dataset.\"p/a\"]\nrecursive = \"per-dataset\"\nexclude = [\"p/a/x\"]\n[dataset.\"p/a/x\"]\nhourly = 1\n";
    let e = errors(text);
    assert!(
        e[0].contains("is excluded by `p/a` but has its own entry"),
        "{e:?}"
    );
    // autosnap under an atomic parent: a warning, and it is forced off.
    let text = "version = 1\n[dataset.\"p/a\"]\nrecursive = \"atomic\"\n[dataset.\"p/a/x\"]\nautosnap = true\nhourly = 5\n";
    let (p, w) = validate(&[Source::new("p.toml", text)]).unwrap();
    assert!(w.0[0].to_string().contains("`autosnap` ignored"), "{w}");
    assert!(!p.datasets[1].settings.autosnap);
    assert_eq!(p.datasets[1].settings.counts.hourly, 5);
}

#[test]
fn two_files_share_templates_but_not_datasets() {
    let a = Source::new(
        "a.toml",
        "version = 1\n[template.t]\nhourly = 7\n[dataset.\"p/x\"]\nuse-template = \"t\"\n",
    );
    let b = Source::new(
        "b.toml",
        "[dataset.\"p/y\"]\nuse-template = \"t\"\n[dataset.\"p/x\"]\n",
    );
    let d = validate(&[a.clone(), b]).unwrap_err();
    let s = d.to_string();
    assert!(
        s.contains("b.toml:3:10: error: dataset `p/x` has two entries"),
        "{s}"
    );
    let b = Source::new("b.toml", "[dataset.\"p/y\"]\nuse-template = \"t\"\n");
    let (p, _) = validate(&[a, b]).unwrap();
    assert_eq!(p.datasets[1].settings.counts.hourly, 7);
}

#[test]
fn a_policy_can_point_at_a_sanoid_conf() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sanoid.conf"),
        "[template_production]\nhourly = 36\ndaily = 30\n[tank/data]\nuse_template = production\nrecursive = yes\n",
    )
    .unwrap();
    let main = dir.path().join("zfsrepl.toml");
    std::fs::write(&main, "version = 1\ntimezone = \"UTC\"\nsanoid-conf = \"sanoid.conf\"\n[dataset.\"tank/other\"]\nhourly = 2\n").unwrap();
    let p = load(std::slice::from_ref(&main)).unwrap();
    let names: Vec<&str> = p.datasets.iter().map(|d| d.dataset.as_str()).collect();
    assert_eq!(names, ["tank/data", "tank/other"]);
    assert_eq!(p.datasets[0].settings.counts.hourly, 36);
    assert_eq!(p.datasets[0].settings.naming, Naming::Sanoid);
    // A problem in the sanoid.conf points into the sanoid.conf.
    std::fs::write(
        dir.path().join("sanoid.conf"),
        "[tank/data]\nautosnap = maybe\n",
    )
    .unwrap();
    let e = load(&[main]).unwrap_err().to_string();
    assert!(e.contains("sanoid.conf:2:1: error: `autosnap`"), "{e}");
}

/// Issue 8 item 3: an oversized, endless or binary "policy" is refused at
/// once with a message, never read into memory whole, never a panic.
#[test]
fn oversized_endless_and_binary_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(super::MAX_FILE_BYTES + 1).unwrap();
    let bin = dir.path().join("bin.toml");
    std::fs::write(&bin, b"version = 1\n\xff\xfe\x00").unwrap();
    let conf = dir.path().join("huge.conf");
    std::fs::File::create(&conf)
        .unwrap()
        .set_len(super::MAX_FILE_BYTES * 4)
        .unwrap();
    for (path, want) in [
        (big, "larger than 16 MiB"),
        (std::path::PathBuf::from("/dev/zero"), "larger than 16 MiB"),
        (bin, "not UTF-8 text (invalid byte at offset 12)"),
        (conf, "larger than 16 MiB"),
    ] {
        let e = super::load(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read policy file") && e.contains(want),
            "{}: {e}",
            path.display()
        );
    }
}
