//! Table tests per rule, sanoid run simulations, and proptest invariants of
//! the planner.

use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_800_000_000;
const H: i64 = 3600;
const D: i64 = 86_400;

fn guid_of(name: &str) -> Guid {
    // FNV-1a: distinct names get distinct guids in practice.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    Guid(h)
}

/// `tank/data@<short>` created at `creation`.
fn snap(short: &str, creation: i64) -> SnapshotInfo {
    snap_in("tank/data", short, creation)
}

fn snap_in(dataset: &str, short: &str, creation: i64) -> SnapshotInfo {
    let full = format!("{dataset}@{short}");
    SnapshotInfo {
        name: SnapshotName::parse(&full).unwrap(),
        guid: guid_of(&full),
        createtxg: Txg(u64::try_from(creation).unwrap()),
        creation,
        userrefs: Some(0),
    }
}

fn held(mut s: SnapshotInfo, holds: u64) -> SnapshotInfo {
    s.userrefs = Some(holds);
    s
}

fn ours() -> Ownership {
    Ownership::new("zfsrepl_")
}

fn sanoid_chain() -> Ownership {
    Ownership::new("zfsrepl_").with_sanoid_chain(true)
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap()
}

fn grid(s: &str) -> KeepRule {
    KeepRule::Grid(RetentionGrid::parse(s).unwrap())
}

fn counts(hourly: u32, daily: u32) -> SanoidCounts {
    SanoidCounts {
        frequently: 0,
        frequent_period_min: 15,
        hourly,
        daily,
        weekly: 0,
        monthly: 0,
        yearly: 0,
    }
}

fn destroyed(p: &PrunePlan) -> Vec<String> {
    p.destroy().map(|s| s.snap().to_owned()).collect()
}

fn reasons_of(p: &PrunePlan, short: &str) -> Vec<String> {
    p.decisions
        .iter()
        .find(|d| d.snapshot.snap() == short)
        .unwrap_or_else(|| panic!("{short} not in plan"))
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect()
}

// ---------------------------------------------------------------- sanoid

/// sanoid's cron: every run plans on the listing from before the run,
/// destroys what it planned, then takes one snapshot of each type in
/// `take` (named like sanoid's, created at the run's time).
fn run_sanoid(list: &mut Vec<SnapshotInfo>, c: &SanoidCounts, t: i64, take: &[Period]) -> usize {
    let p = plan(list, &[KeepRule::SanoidCounts(*c)], &sanoid_chain(), &[], t);
    let gone: Vec<SnapshotName> = p.destroy().cloned().collect();
    list.retain(|s| !gone.contains(&s.name));
    for period in take {
        list.push(snap(&format!("autosnap_{t}_{period}"), t));
    }
    gone.len()
}

fn count_of(list: &[SnapshotInfo], period: Period) -> usize {
    list.iter()
        .filter(|s| s.name.snap().ends_with(&format!("_{period}")))
        .count()
}

#[test]
fn sanoid_steady_state_is_n_plus_one_hourly_36_keeps_37() {
    let c = SanoidCounts::production();
    let mut list = Vec::new();
    for run in 0..200 {
        run_sanoid(&mut list, &c, NOW + run * H, &[Period::Hourly]);
        if run >= 36 {
            assert_eq!(count_of(&list, Period::Hourly), 37, "after run {run}");
        }
    }
}

#[test]
fn sanoid_steady_state_daily_30_keeps_31() {
    let c = SanoidCounts::production();
    let mut list = Vec::new();
    for run in 0..120 {
        run_sanoid(&mut list, &c, NOW + run * D, &[Period::Daily]);
    }
    assert_eq!(count_of(&list, Period::Daily), 31);
}

#[test]
fn sanoid_small_template_keeps_5_hourly_and_3_daily() {
    let c = counts(4, 2);
    let mut list = Vec::new();
    for run in 0..=24 * 10 {
        let take: &[Period] = if run % 24 == 0 {
            &[Period::Daily, Period::Hourly]
        } else {
            &[Period::Hourly]
        };
        run_sanoid(&mut list, &c, NOW + run * H, take);
    }
    assert_eq!(count_of(&list, Period::Hourly), 5);
    assert_eq!(count_of(&list, Period::Daily), 3);
}

#[test]
fn sanoid_keeps_a_snapshot_exactly_n_periods_old() {
    // 38 hourlies; the oldest two are 37 h and 36 h old. Only the strictly
    // older one goes, although 37 would remain.
    let list: Vec<SnapshotInfo> = (1..=38)
        .map(|age| snap(&format!("autosnap_{age}_hourly"), NOW - age * H + H))
        .collect();
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(counts(36, 0))],
        &sanoid_chain(),
        &[],
        NOW,
    );
    assert_eq!(destroyed(&p), ["autosnap_38_hourly"]);
    assert_eq!(
        reasons_of(&p, "autosnap_37_hourly"),
        ["sanoid: hourly #37 of 38, not older than 36×1h"]
    );
    assert_eq!(
        reasons_of(&p, "autosnap_38_hourly"),
        ["sanoid: hourly #38 of 38, older than 36×1h and more than 36 remain"]
    );
    // One second later both are strictly older.
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(counts(36, 0))],
        &sanoid_chain(),
        &[],
        NOW + 1,
    );
    assert_eq!(destroyed(&p), ["autosnap_38_hourly", "autosnap_37_hourly"]);
}

#[test]
fn sanoid_runs_rarer_than_the_period_keep_n_by_the_count_floor() {
    // hourly=36 with a run every 12 h: 36 kept + the new one, spanning
    // 18 days.
    let c = SanoidCounts::production();
    let mut list = Vec::new();
    for run in 0..100 {
        run_sanoid(&mut list, &c, NOW + run * 12 * H, &[Period::Hourly]);
    }
    assert_eq!(count_of(&list, Period::Hourly), 37);
    let oldest = list.iter().map(|s| s.creation).min().unwrap();
    let newest = list.iter().map(|s| s.creation).max().unwrap();
    assert_eq!(newest - oldest, 36 * 12 * H);
    // And the last plan kept the older ones by the floor, with that reason.
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(c)],
        &sanoid_chain(),
        &[],
        newest + 12 * H,
    );
    let oldest_name = list
        .iter()
        .min_by_key(|s| s.creation)
        .unwrap()
        .name
        .snap()
        .to_owned();
    assert_eq!(
        reasons_of(&p, &oldest_name)[0],
        "sanoid: hourly #37 of 37, older than 36×1h and more than 36 remain"
    );
    let second = list
        .iter()
        .filter(|s| s.creation > oldest)
        .min_by_key(|s| s.creation)
        .unwrap();
    assert_eq!(
        reasons_of(&p, second.name.snap()),
        ["sanoid: hourly #36 of 37, older than 36×1h but only 36 remain"]
    );
}

#[test]
fn sanoid_after_downtime_prunes_nothing_below_n() {
    let c = SanoidCounts::production();
    let mut list = Vec::new();
    let mut t = NOW;
    for _ in 0..100 {
        run_sanoid(&mut list, &c, t, &[Period::Hourly]);
        t += H;
    }
    assert_eq!(count_of(&list, Period::Hourly), 37);
    // Ten days down: every hourly is older than 36 h, but only one goes.
    t += 10 * D;
    let gone = run_sanoid(&mut list, &c, t, &[Period::Hourly]);
    assert_eq!(gone, 1);
    assert_eq!(count_of(&list, Period::Hourly), 37);
}

#[test]
fn sanoid_lowering_a_count_prunes_at_the_next_run() {
    let mut list = Vec::new();
    let mut t = NOW;
    for _ in 0..100 {
        run_sanoid(&mut list, &counts(36, 0), t, &[Period::Hourly]);
        t += H;
    }
    // Ages 1 h .. 37 h; hourly=24 expires the 13 older than 24 h.
    let gone = run_sanoid(&mut list, &counts(24, 0), t, &[Period::Hourly]);
    assert_eq!(gone, 13);
    assert_eq!(count_of(&list, Period::Hourly), 25);
}

#[test]
fn sanoid_count_zero_removes_all_of_that_type_only() {
    let list = vec![
        snap("autosnap_a_hourly", NOW - 10),
        snap("autosnap_b_hourly", NOW - 5 * H),
        snap("autosnap_c_daily", NOW - 10),
        snap("zfsrepl_handmade_hourly", NOW - 20),
    ];
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(counts(0, 30))],
        &sanoid_chain(),
        &[],
        NOW,
    );
    assert_eq!(
        destroyed(&p),
        [
            "autosnap_b_hourly",
            "zfsrepl_handmade_hourly",
            "autosnap_a_hourly"
        ]
    );
    assert_eq!(
        reasons_of(&p, "autosnap_a_hourly"),
        ["sanoid: hourly #1 of 3, hourly=0 removes all"]
    );
}

#[test]
fn sanoid_never_touches_snapshots_it_does_not_own() {
    let list = vec![
        snap("Autosnap_2020-01-01_00:00:00_hourly", NOW - 400 * D),
        snap("foo_autosnap_2020-01-01_00:00:00_hourly", NOW - 400 * D),
        snap("zfs-auto-snap_hourly-2020-01-01-0000", NOW - 400 * D),
        snap("autosnap_2020-01-01_00:00:00_hourly_keep", NOW - 400 * D),
        snap("manual_before_upgrade", NOW - 400 * D),
        snap("autosnap_2020-01-01_00:00:00_hourly", NOW - 400 * D),
    ];
    let rules = [KeepRule::SanoidCounts(counts(0, 0))];
    let p = plan(&list, &rules, &sanoid_chain(), &[], NOW);
    assert_eq!(destroyed(&p), ["autosnap_2020-01-01_00:00:00_hourly"]);
    assert_eq!(
        reasons_of(&p, "manual_before_upgrade"),
        ["not owned (no zfsrepl_ prefix, not a sanoid autosnap*ly name)"]
    );
    // Without the sanoid chain, sanoid's own snapshots are not ours either.
    let p = plan(&list, &rules, &ours(), &[], NOW);
    assert_eq!(destroyed(&p), Vec::<String>::new());
    assert_eq!(
        reasons_of(&p, "autosnap_2020-01-01_00:00:00_hourly"),
        ["not owned (no zfsrepl_ prefix)"]
    );
}

#[test]
fn sanoid_types_it_does_not_count_are_never_pruned() {
    let list = vec![
        snap("autosnap_x_silly", NOW - 400 * D),
        snap("autosnapdaily", NOW - 400 * D),
        snap("autosnapshot_daily", NOW - 400 * D),
        snap("autosnap_hourly_b.daily", NOW - 400 * D),
    ];
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(counts(0, 0))],
        &sanoid_chain(),
        &[],
        NOW,
    );
    // `autosnapshot_daily` is a daily; `autosnap_hourly_b.daily` is an
    // hourly by sanoid's regex; both go with counts 0.
    let mut gone = destroyed(&p);
    gone.sort();
    assert_eq!(gone, ["autosnap_hourly_b.daily", "autosnapshot_daily"]);
    assert_eq!(
        reasons_of(&p, "autosnap_x_silly"),
        ["sanoid: type \"silly\" has no count, never pruned by sanoid"]
    );
    assert_eq!(
        reasons_of(&p, "autosnapdaily"),
        ["sanoid: no period type, never pruned by sanoid"]
    );
}

#[test]
fn sanoid_periods_frequent_monthly_yearly() {
    let c = SanoidCounts {
        frequently: 4,
        frequent_period_min: 15,
        hourly: 0,
        daily: 0,
        weekly: 1,
        monthly: 3,
        yearly: 1,
    };
    let list = vec![
        // 4 x 15 min = 1 h
        snap("autosnap_f1_frequently", NOW - H),
        snap("autosnap_f2_frequently", NOW - H - 1),
        snap("autosnap_f3_frequently", NOW - 10),
        snap("autosnap_f4_frequently", NOW - 20),
        snap("autosnap_f5_frequently", NOW - 30),
        // 1 x 7 d
        snap("autosnap_w1_weekly", NOW - 7 * D - 1),
        snap("autosnap_w2_weekly", NOW - D),
        // 3 x 31 d
        snap("autosnap_m1_monthly", NOW - 93 * D),
        snap("autosnap_m2_monthly", NOW - 93 * D - 1),
        snap("autosnap_m3_monthly", NOW - 40 * D),
        snap("autosnap_m4_monthly", NOW - 10 * D),
        snap("autosnap_m5_monthly", NOW - 1),
        // 1 x 365.25 d
        snap("autosnap_y1_yearly", NOW - 31_557_600),
        snap("autosnap_y2_yearly", NOW - 31_557_601),
        snap("autosnap_y3_yearly", NOW - D),
    ];
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(c)],
        &sanoid_chain(),
        &[],
        NOW,
    );
    let mut gone = destroyed(&p);
    gone.sort();
    assert_eq!(
        gone,
        [
            "autosnap_f2_frequently",
            "autosnap_m2_monthly",
            "autosnap_w1_weekly",
            "autosnap_y2_yearly"
        ]
    );
    assert_eq!(
        reasons_of(&p, "autosnap_y1_yearly"),
        ["sanoid: yearly #2 of 3, not older than 1×365d6h"]
    );
    assert_eq!(
        reasons_of(&p, "autosnap_m1_monthly"),
        ["sanoid: monthly #4 of 5, not older than 3×31d"]
    );
}

#[test]
fn sanoid_counts_held_snapshots_in_its_walk() {
    // hourly=2, five old hourlies, the oldest held: sanoid plans to destroy
    // the oldest three, fails on the held one, and two remain besides it.
    let list = vec![
        held(snap("autosnap_1_hourly", NOW - 10 * H), 1),
        snap("autosnap_2_hourly", NOW - 9 * H),
        snap("autosnap_3_hourly", NOW - 8 * H),
        snap("autosnap_4_hourly", NOW - 7 * H),
        snap("autosnap_5_hourly", NOW - 6 * H),
    ];
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(counts(2, 0))],
        &sanoid_chain(),
        &[],
        NOW,
    );
    assert_eq!(destroyed(&p), ["autosnap_2_hourly", "autosnap_3_hourly"]);
    assert_eq!(
        reasons_of(&p, "autosnap_1_hourly"),
        [
            "held (1 hold)",
            "sanoid: hourly #5 of 5, older than 2×1h and more than 2 remain"
        ]
    );
}

#[test]
fn sanoid_counts_our_typed_snapshots_with_sanoids() {
    // Migrating a chain: our hourlies and sanoid's thin as one type.
    let mut list = Vec::new();
    for i in 0..10 {
        list.push(snap(&format!("autosnap_{i:02}_hourly"), NOW - (40 - i) * H));
    }
    for i in 0..3 {
        list.push(snap(&format!("zfsrepl_{i:02}_hourly"), NOW - (3 - i) * H));
    }
    let p = plan(
        &list,
        &[KeepRule::SanoidCounts(counts(5, 0))],
        &sanoid_chain(),
        &[],
        NOW,
    );
    assert_eq!(p.destroy_count(), 8);
    assert_eq!(p.keep().count(), 5);
}

// ------------------------------------------------------------------ grid

#[test]
fn grid_reproduces_zreppls_documented_example() {
    // zrepl docs/configuration/prune.rst: `1x1h(keep=all) | 2x2h | 1x3h`
    // with a..z, A..D spread over 9 hours; minutes are ages from `a`.
    let ages: &[(&str, i64)] = &[
        ("a", 0),
        ("b", 20),
        ("c", 40),
        ("d", 70),
        ("e", 85),
        ("f", 100),
        ("g", 120),
        ("h", 140),
        ("i", 160),
        ("j", 175),
        ("k", 185),
        ("l", 200),
        ("m", 220),
        ("n", 240),
        ("o", 270),
        ("p", 295),
        ("q", 305),
        ("r", 320),
        ("s", 340),
        ("t", 360),
        ("u", 380),
        ("v", 400),
        ("w", 420),
        ("x", 440),
        ("y", 460),
        ("z", 475),
        ("A", 485),
        ("B", 500),
        ("C", 520),
        ("D", 535),
    ];
    let anchor = NOW - 300;
    let list: Vec<SnapshotInfo> = ages
        .iter()
        .map(|(n, m)| snap(&format!("zfsrepl_{n}"), anchor - m * 60))
        .collect();
    let p = plan(
        &list,
        &[grid("1x1h(keep=all) | 2x2h | 1x3h")],
        &ours(),
        &[],
        NOW,
    );
    let kept: Vec<String> = p
        .keep()
        .map(|s| s.snap().trim_start_matches("zfsrepl_").to_owned())
        .collect();
    assert_eq!(kept, ["z", "p", "j", "c", "b", "a"]);
    assert_eq!(
        reasons_of(&p, "zfsrepl_a"),
        ["grid 1x1h(keep=all) | 2x2h | 1x3h: newest, anchors the grid"]
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_b"),
        ["grid 1x1h(keep=all) | 2x2h | 1x3h: bucket 1 of 4 keeps all"]
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_j"),
        ["grid 1x1h(keep=all) | 2x2h | 1x3h: oldest in bucket 2 of 4"]
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_i"),
        ["grid 1x1h(keep=all) | 2x2h | 1x3h: bucket 2 of 4 already keeps 1 older"]
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_A"),
        ["grid 1x1h(keep=all) | 2x2h | 1x3h: older than the grid (8h)"]
    );
}

#[test]
fn grid_edges_belong_to_the_older_bucket_and_the_grid_end_is_outside() {
    let list = vec![
        snap("zfsrepl_anchor", NOW),
        snap("zfsrepl_1h", NOW - H),
        snap("zfsrepl_1h_plus_1", NOW - H - 1),
        snap("zfsrepl_2h_minus_1", NOW - 2 * H + 1),
        snap("zfsrepl_2h", NOW - 2 * H),
        snap("zfsrepl_3h", NOW - 3 * H),
    ];
    let p = plan(&list, &[grid("3x1h")], &ours(), &[], NOW);
    // Bucket 2 is [1h, 2h): keeps its oldest (2h-1); 2h starts bucket 3;
    // 3h is where the grid ends.
    assert_eq!(
        destroyed(&p),
        ["zfsrepl_3h", "zfsrepl_1h_plus_1", "zfsrepl_1h"]
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_2h"),
        ["grid 3x1h: oldest in bucket 3 of 3"]
    );
}

#[test]
fn grid_keeps_the_anchor_even_in_a_thinning_first_bucket() {
    // zrepl would keep only the oldest of the first hour and destroy the
    // newest; we keep the newest as the anchor too (idempotence).
    let list = vec![
        snap("zfsrepl_0", NOW - 10 * 60),
        snap("zfsrepl_1", NOW - 25 * 60),
        snap("zfsrepl_2", NOW - 40 * 60),
        snap("zfsrepl_3", NOW - 55 * 60),
    ];
    let rules = [grid("24x1h(keep=2)")];
    let p = plan(&list, &rules, &ours(), &[], NOW);
    assert_eq!(destroyed(&p), ["zfsrepl_1"]);
    assert_eq!(
        reasons_of(&p, "zfsrepl_2"),
        ["grid 24x1h(keep=2): #2 oldest in bucket 1 of 24"]
    );
    let rest: Vec<SnapshotInfo> = list
        .into_iter()
        .filter(|s| s.name.snap() != "zfsrepl_1")
        .collect();
    assert_eq!(plan(&rest, &rules, &ours(), &[], NOW).destroy_count(), 0);
}

#[test]
fn grid_anchor_ignores_the_future_and_snapshots_not_owned() {
    let list = vec![
        snap("zfsrepl_future", NOW + 5 * D),
        snap("manual_newest", NOW - 60),
        snap("zfsrepl_anchor", NOW - 10 * D),
        snap("zfsrepl_old", NOW - 10 * D - 2 * H),
        snap("zfsrepl_older", NOW - 10 * D - 3 * H),
    ];
    let p = plan(&list, &[grid("1x1h | 1x2h")], &ours(), &[], NOW);
    assert_eq!(destroyed(&p), ["zfsrepl_older"]);
    assert_eq!(
        reasons_of(&p, "zfsrepl_future"),
        ["grid 1x1h | 1x2h: created after now, left alone"]
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_older"),
        ["grid 1x1h | 1x2h: older than the grid (3h)"]
    );
}

#[test]
fn grid_stops_thinning_while_no_snapshots_arrive() {
    let list: Vec<SnapshotInfo> = (0..48)
        .map(|h| snap(&format!("zfsrepl_{h:02}"), NOW - h * H))
        .collect();
    let rules = [grid("1x1h(keep=all) | 24x1h | 14x1d")];
    let first = plan(&list, &rules, &ours(), &[], NOW);
    let later = plan(&list, &rules, &ours(), &[], NOW + 60 * D);
    assert_eq!(destroyed(&first), destroyed(&later));
}

#[test]
fn grid_with_nothing_owned_plans_nothing() {
    let list = vec![snap("manual", NOW)];
    let p = plan(&list, &[grid("1x1h")], &ours(), &[], NOW);
    assert_eq!(p.destroy_count(), 0);
    assert!(
        plan(&[], &[grid("1x1h")], &ours(), &[], NOW)
            .decisions
            .is_empty()
    );
}

// ------------------------------------------------------- last_n and regex

#[test]
fn last_n_follows_zrepls_table() {
    let o = |m: i64| NOW + m * 60;
    let s1 = vec![
        snap("zfsrepl_1", o(10)),
        snap("zfsrepl_2", o(20)),
        snap("zfsrepl_3", o(15)),
        snap("zfsrepl_4", o(30)),
        snap("zfsrepl_5", o(30)),
    ];
    let now = o(60);
    let last = |n, r: Option<&str>| KeepRule::LastN {
        n,
        regex: r.map(re),
    };
    // (case, input, rules, destroyed oldest first)
    type Case<'a> = (&'a str, &'a [SnapshotInfo], Vec<KeepRule>, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            "keep2",
            &s1,
            vec![last(2, None)],
            vec!["zfsrepl_1", "zfsrepl_3", "zfsrepl_2"],
        ),
        (
            "keep1 of two with the same time: ties go by txg, then name",
            &s1,
            vec![last(1, None)],
            vec!["zfsrepl_1", "zfsrepl_3", "zfsrepl_2", "zfsrepl_4"],
        ),
        ("keep many", &s1, vec![last(100, None)], vec![]),
        ("keep 4", &s1, vec![last(4, None)], vec!["zfsrepl_1"]),
        (
            "keep 0 keeps nothing",
            &s1,
            vec![last(0, None)],
            vec![
                "zfsrepl_1",
                "zfsrepl_3",
                "zfsrepl_2",
                "zfsrepl_4",
                "zfsrepl_5",
            ],
        ),
        ("empty input", &[], vec![last(100, None)], vec![]),
    ];
    for (name, input, rules, want) in cases {
        let p = plan(input, &rules, &ours(), &[], now);
        assert_eq!(destroyed(&p), want, "{name}");
    }

    let s2 = vec![
        snap("zfsrepl_a1", o(10)),
        snap("zfsrepl_b1", o(11)),
        snap("zfsrepl_a2", o(20)),
        snap("zfsrepl_b2", o(21)),
        snap("zfsrepl_a3", o(30)),
        snap("zfsrepl_b3", o(31)),
    ];
    let p = plan(
        &s2,
        &[last(2, Some("_a")), last(2, Some("_b"))],
        &ours(),
        &[],
        now,
    );
    assert_eq!(destroyed(&p), ["zfsrepl_a1", "zfsrepl_b1"]);
    assert_eq!(
        reasons_of(&p, "zfsrepl_a1"),
        [
            "keep-last 2 /_a/: #3, beyond 2",
            "keep-last 2 /_b/: name does not match"
        ]
    );
    assert_eq!(reasons_of(&p, "zfsrepl_b3"), ["keep-last 2 /_b/: #1"]);

    let s3 = vec![
        snap("zfsrepl_a1", o(10)),
        snap("zfsrepl_b1", o(11)),
        snap("zfsrepl_a2", o(12)),
    ];
    let p = plan(&s3, &[last(4, Some("a"))], &ours(), &[], now);
    assert_eq!(destroyed(&p), ["zfsrepl_b1"]);
}

#[test]
fn regex_keeps_matching_or_with_negate_the_rest() {
    let list = vec![
        snap("zfsrepl_keep_1", NOW - 3 * H),
        snap("zfsrepl_x", NOW - 2 * H),
        snap("zfsrepl_keep_2", NOW - H),
    ];
    let p = plan(
        &list,
        &[KeepRule::Regex {
            re: re("_keep"),
            negate: false,
        }],
        &ours(),
        &[],
        NOW,
    );
    assert_eq!(destroyed(&p), ["zfsrepl_x"]);
    assert_eq!(reasons_of(&p, "zfsrepl_keep_1"), ["matches regex _keep"]);
    assert_eq!(reasons_of(&p, "zfsrepl_x"), ["does not match regex _keep"]);
    let p = plan(
        &list,
        &[KeepRule::Regex {
            re: re("_keep"),
            negate: true,
        }],
        &ours(),
        &[],
        NOW,
    );
    assert_eq!(destroyed(&p), ["zfsrepl_keep_1", "zfsrepl_keep_2"]);
    assert_eq!(
        reasons_of(&p, "zfsrepl_x"),
        ["does not match regex _keep (negated rule)"]
    );
}

// ------------------------------------------------------------- combining

#[test]
fn a_snapshot_goes_only_when_no_rule_keeps_it() {
    let list = vec![
        snap("zfsrepl_0", NOW - 50 * H),
        snap("zfsrepl_1_keep", NOW - 49 * H),
        snap("zfsrepl_2", NOW - 48 * H),
        snap("zfsrepl_3", NOW - 2 * H),
        snap("zfsrepl_4", NOW - H),
    ];
    let rules = [
        KeepRule::LastN { n: 2, regex: None },
        KeepRule::Regex {
            re: re("keep$"),
            negate: false,
        },
    ];
    let p = plan(&list, &rules, &ours(), &[], NOW);
    assert_eq!(destroyed(&p), ["zfsrepl_0", "zfsrepl_2"]);
    assert_eq!(
        reasons_of(&p, "zfsrepl_1_keep"),
        ["matches regex keep$"],
        "only the keeping reasons of a kept snapshot"
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_0"),
        ["keep-last 2: #5, beyond 2", "does not match regex keep$"]
    );
}

#[test]
fn no_rules_destroys_nothing() {
    let list = vec![snap("zfsrepl_0", NOW - 400 * D)];
    let p = plan(&list, &[], &ours(), &[], NOW);
    assert_eq!(p.destroy_count(), 0);
    assert_eq!(
        reasons_of(&p, "zfsrepl_0"),
        ["no keep rules: nothing is pruned"]
    );
}

#[test]
fn held_and_protected_survive_with_the_rules_verdicts() {
    let list = vec![
        held(snap("zfsrepl_held", NOW - 3 * H), 2),
        snap("zfsrepl_base", NOW - 2 * H),
        snap("zfsrepl_gone", NOW - H),
        snap("zfsrepl_new", NOW),
    ];
    let base = list[1].guid;
    let p = plan(
        &list,
        &[KeepRule::LastN { n: 1, regex: None }],
        &ours(),
        &[base],
        NOW,
    );
    assert_eq!(destroyed(&p), ["zfsrepl_gone"]);
    assert_eq!(
        reasons_of(&p, "zfsrepl_held"),
        ["held (2 holds)", "keep-last 1: #4, beyond 1"]
    );
    assert_eq!(
        reasons_of(&p, "zfsrepl_base"),
        ["needed by replication target", "keep-last 1: #3, beyond 1"]
    );
}

#[test]
fn each_dataset_is_judged_on_its_own() {
    let list = vec![
        snap_in("tank/b", "zfsrepl_1", NOW - 2 * H),
        snap_in("tank/a", "zfsrepl_1", NOW - 3 * H),
        snap_in("tank/a", "zfsrepl_2", NOW - H),
        snap_in("tank/b", "zfsrepl_2", NOW - 4 * H),
    ];
    let p = plan(
        &list,
        &[KeepRule::LastN { n: 1, regex: None }],
        &ours(),
        &[],
        NOW,
    );
    let gone: Vec<&str> = p.destroy().map(SnapshotName::as_str).collect();
    assert_eq!(gone, ["tank/a@zfsrepl_1", "tank/b@zfsrepl_2"]);
}

#[test]
fn plan_prints_a_table_and_serializes() {
    let list = vec![
        held(snap("zfsrepl_2026-01-01", 1_767_225_600), 1),
        snap("zfsrepl_2026-01-02", 1_767_312_000),
        snap("manual", 1_767_312_001),
        snap("zfsrepl_2026-01-03", 1_767_398_400),
    ];
    let p = plan(
        &list,
        &[KeepRule::LastN { n: 1, regex: None }],
        &ours(),
        &[],
        1_767_400_000,
    );
    let want = "\
ACTION   CREATED (UTC)        SNAPSHOT                      REASONS
keep     2026-01-01 00:00:00  tank/data@zfsrepl_2026-01-01  held (1 hold); keep-last 1: #3, beyond 1
destroy  2026-01-02 00:00:00  tank/data@zfsrepl_2026-01-02  keep-last 1: #2, beyond 1
keep     2026-01-02 00:00:01  tank/data@manual              not owned (no zfsrepl_ prefix)
keep     2026-01-03 00:00:00  tank/data@zfsrepl_2026-01-03  keep-last 1: #1
1 to destroy, 3 to keep";
    assert_eq!(p.to_string(), want);

    let json = serde_json::to_value(&p).unwrap();
    let d = &json["decisions"][1];
    assert_eq!(d["snapshot"], "tank/data@zfsrepl_2026-01-02");
    assert_eq!(d["action"], "destroy");
    assert_eq!(d["creation"], 1_767_312_000);
    assert_eq!(
        d["reasons"][0],
        serde_json::json!({"kind": "last_n_beyond", "n": 1, "regex": null, "rank": 2})
    );
    let sanoid = plan(
        &[snap("autosnap_x_hourly", NOW - 100 * H)],
        &[KeepRule::SanoidCounts(counts(0, 0))],
        &sanoid_chain(),
        &[],
        NOW,
    );
    assert_eq!(
        serde_json::to_value(&sanoid.decisions[0].reasons[0]).unwrap(),
        serde_json::json!({"kind": "sanoid_expired", "period": "hourly", "count": 0,
            "period_secs": 3600, "rank": 1, "of": 1})
    );
    let g = plan(
        &[snap("zfsrepl_a", NOW), snap("zfsrepl_b", NOW - 1)],
        &[grid("1x1h(keep=all)")],
        &ours(),
        &[],
        NOW,
    );
    assert_eq!(
        serde_json::to_value(&g.decisions[0].reasons[0]).unwrap(),
        serde_json::json!({"kind": "grid_kept", "grid": "1x1h(keep=all)", "bucket": 1,
            "buckets": 1, "rank": 1, "keep": "all"})
    );
}

#[test]
fn utc_dates_print_right_around_era_edges() {
    use super::plan::Decision;
    let fmt = |t: i64| {
        let p = PrunePlan {
            decisions: vec![Decision {
                snapshot: SnapshotName::parse("a@b").unwrap(),
                guid: Guid(1),
                creation: t,
                action: Action::Keep,
                reasons: vec![Reason::Protected],
            }],
        };
        p.to_string().lines().nth(1).unwrap()[9..28].to_owned()
    };
    assert_eq!(fmt(0), "1970-01-01 00:00:00");
    assert_eq!(fmt(-1), "1969-12-31 23:59:59");
    assert_eq!(fmt(951_782_400), "2000-02-29 00:00:00");
    assert_eq!(fmt(4_107_542_399), "2100-02-28 23:59:59");
    assert_eq!(fmt(4_107_542_400), "2100-03-01 00:00:00");
}

// ------------------------------------------------------------ properties

const NAMES: &[&str] = &[
    "zfsrepl_",
    "autosnap_",
    "manual_",
    "Autosnap_",
    "zfsrepl_keep_",
];
const SUFFIXES: &[&str] = &["_hourly", "_daily", "_monthly", "_frequently", "_silly", ""];

fn arb_snapshots() -> impl Strategy<Value = Vec<SnapshotInfo>> {
    prop::collection::vec(
        (
            0..2usize,
            0..NAMES.len(),
            0..SUFFIXES.len(),
            // Dense recent history (5-minute steps, some in the future),
            // the last days (15-minute steps) and sparse old history
            // (hour steps): grid buckets and sanoid cutoffs get crowded.
            prop_oneof![
                (-(6 * H) / 300..H / 300).prop_map(|k| k * 300),
                (-(3 * D) / 900..0).prop_map(|k| k * 900),
                (-(120 * D) / H..0).prop_map(|k| k * H),
            ],
            prop::option::of(0u64..3),
            0u64..4,
        ),
        0..60,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (ds, n, sfx, offset, refs, txg_jitter))| {
                let dataset = ["tank/a", "tank/b"][ds];
                let short = format!("{}{i}{}", NAMES[n], SUFFIXES[sfx]);
                // Equal creation times happen (one `zfs snapshot -r`);
                // txgs then decide.
                let mut s = snap_in(dataset, &short, NOW + offset);
                s.createtxg = Txg(u64::try_from(s.creation + 200 * D).unwrap() * 4 + txg_jitter);
                // Mostly unheld; `None` where ZFS did not say.
                s.userrefs = refs.map(|r| r.saturating_sub(1));
                s
            })
            .collect()
    })
}

fn arb_rule() -> impl Strategy<Value = KeepRule> {
    prop_oneof![
        (0u32..5, 0u32..4, 0u32..3, 0u32..3, 1u32..30).prop_map(|(h, d, m, f, fp)| {
            KeepRule::SanoidCounts(SanoidCounts {
                frequently: f,
                frequent_period_min: fp,
                hourly: h,
                daily: d,
                weekly: 0,
                monthly: m,
                yearly: 0,
            })
        }),
        prop::sample::select(vec![
            "1x1h(keep=all) | 24x1h | 14x1d",
            "24x1h | 7x1d",
            "3x1h(keep=2) | 2x1d",
            "1x1d(keep=all) | 1x1h | 4x1w(keep=3)",
            "10x30m",
        ])
        .prop_map(grid),
        (
            0u32..6,
            prop::option::of(prop::sample::select(vec!["_hourly$", "^zfsrepl_", "keep"]))
        )
            .prop_map(|(n, r)| KeepRule::LastN {
                n,
                regex: r.map(re)
            }),
        (
            prop::sample::select(vec!["keep", "_daily$", "^autosnap"]),
            any::<bool>()
        )
            .prop_map(|(r, negate)| KeepRule::Regex { re: re(r), negate }),
    ]
}

fn arb_case() -> impl Strategy<Value = (Vec<SnapshotInfo>, Vec<KeepRule>, Ownership, Vec<Guid>)> {
    (
        arb_snapshots(),
        prop::collection::vec(arb_rule(), 0..4),
        any::<bool>(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    )
        .prop_map(|(snaps, rules, chain, picks)| {
            let protected = if snaps.is_empty() {
                Vec::new()
            } else {
                picks
                    .iter()
                    .map(|i| snaps[i.index(snaps.len())].guid)
                    .collect()
            };
            (
                snaps,
                rules,
                Ownership::new("zfsrepl_").with_sanoid_chain(chain),
                protected,
            )
        })
}

fn destroy_set(p: &PrunePlan) -> Vec<SnapshotName> {
    let mut v: Vec<SnapshotName> = p.destroy().cloned().collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn destroys_only_owned_unheld_unprotected_candidates((snaps, rules, own, prot) in arb_case()) {
        let p = plan(&snaps, &rules, &own, &prot, NOW);
        prop_assert_eq!(p.decisions.len(), snaps.len());
        for d in &p.decisions {
            prop_assert!(!d.reasons.is_empty(), "{} has no reason", d.snapshot);
            let keeping = d.reasons.iter().any(Reason::keeps);
            prop_assert_eq!(keeping, d.action == Action::Keep, "{}", d.snapshot);
            if d.action == Action::Destroy {
                let s = snaps.iter().find(|s| s.name == d.snapshot).unwrap();
                prop_assert!(own.owns(s.name.snap()));
                prop_assert!(s.userrefs.unwrap_or(0) == 0);
                prop_assert!(!prot.contains(&s.guid));
                prop_assert!(!rules.is_empty());
            }
        }
        // Destroy list: by dataset, oldest first.
        let order: Vec<(String, i64, Txg)> = p
            .decisions
            .iter()
            .filter(|d| d.action == Action::Destroy)
            .map(|d| {
                let s = snaps.iter().find(|s| s.name == d.snapshot).unwrap();
                (s.name.dataset_str().to_owned(), s.creation, s.createtxg)
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        prop_assert_eq!(order, sorted);
    }

    #[test]
    fn input_order_does_not_matter(
        ((snaps, rules, own, prot), shuffled) in arb_case().prop_flat_map(|c| {
            let s = Just(c.0.clone()).prop_shuffle();
            (Just(c), s)
        })
    ) {
        let a = plan(&snaps, &rules, &own, &prot, NOW);
        let b = plan(&shuffled, &rules, &own, &prot, NOW);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn replanning_after_destroying_destroys_nothing((snaps, rules, own, prot) in arb_case()) {
        let p = plan(&snaps, &rules, &own, &prot, NOW);
        let gone = destroy_set(&p);
        let rest: Vec<SnapshotInfo> = snaps.iter().filter(|s| !gone.contains(&s.name)).cloned().collect();
        let again = plan(&rest, &rules, &own, &prot, NOW);
        prop_assert_eq!(destroy_set(&again), Vec::<SnapshotName>::new(), "second plan:\n{}", again);
    }

    #[test]
    fn grid_replanning_is_idempotent(
        minutes in prop::collection::vec(-(3 * 24 * 60)..60i64, 0..40),
        spec in prop::collection::vec((1u32..4, 1u64..5, 0u32..3), 1..4),
    ) {
        // Only owned snapshots, crowded into a few days, and one random
        // grid (lengths made non-decreasing): the case where zrepl's grid,
        // which may destroy its own anchor, would regroup the buckets on
        // the next plan.
        let list: Vec<SnapshotInfo> = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| snap(&format!("zfsrepl_{i}"), NOW + m * 60 / 5 * 5))
            .collect();
        let mut len = 0;
        let text: Vec<String> = spec
            .iter()
            .map(|&(r, l, k)| {
                len += l * 20;
                let keep = if k == 0 { "all".to_owned() } else { k.to_string() };
                format!("{r}x{len}m(keep={keep})")
            })
            .collect();
        let rules = [grid(&text.join(" | "))];
        let p = plan(&list, &rules, &ours(), &[], NOW);
        let gone = destroy_set(&p);
        let rest: Vec<SnapshotInfo> = list.iter().filter(|s| !gone.contains(&s.name)).cloned().collect();
        let again = plan(&rest, &rules, &ours(), &[], NOW);
        prop_assert_eq!(destroy_set(&again), Vec::<SnapshotName>::new(), "first plan:\n{}\nsecond plan:\n{}", p, again);
    }

    #[test]
    fn adding_a_rule_never_destroys_more(
        (snaps, rules, own, prot) in arb_case(),
        extra in arb_rule(),
        at in 0..5usize,
    ) {
        // With no rules nothing is destroyed (zrepl's safety rule), so the
        // property holds from the first rule on.
        prop_assume!(!rules.is_empty());
        let before = destroy_set(&plan(&snaps, &rules, &own, &prot, NOW));
        let mut more = rules.clone();
        more.insert(at.min(more.len()), extra);
        let after = destroy_set(&plan(&snaps, &more, &own, &prot, NOW));
        for s in &after {
            prop_assert!(before.contains(s), "{} newly destroyed", s);
        }
    }

    #[test]
    fn sanoid_alone_is_idempotent_over_simulated_runs(
        hourly in 0u32..6,
        daily in 0u32..4,
        steps in prop::collection::vec(1i64..40, 1..60),
    ) {
        // Runs at irregular intervals (1 to 39 hours), each taking an
        // hourly and, every 24 h boundary crossed, a daily; after every run
        // a re-plan at the same time destroys nothing, and no type ever
        // drops below its count through pruning.
        let c = counts(hourly, daily);
        let mut list = Vec::new();
        let mut t = NOW;
        for step in steps {
            let before: Vec<usize> = [Period::Hourly, Period::Daily].iter().map(|p| count_of(&list, *p)).collect();
            let p = plan(&list, &[KeepRule::SanoidCounts(c)], &sanoid_chain(), &[], t);
            let gone = destroy_set(&p);
            list.retain(|s| !gone.contains(&s.name));
            for (i, period) in [Period::Hourly, Period::Daily].iter().enumerate() {
                let n = c.count(*period) as usize;
                let after = count_of(&list, *period);
                prop_assert!(after >= n.min(before[i]) || n == 0);
            }
            let again = plan(&list, &[KeepRule::SanoidCounts(c)], &sanoid_chain(), &[], t);
            prop_assert_eq!(again.destroy_count(), 0);
            let mut take = vec![Period::Hourly];
            if (t + step * H) / D != t / D {
                take.push(Period::Daily);
            }
            t += step * H;
            for period in take {
                list.push(snap(&format!("autosnap_{t}_{period}"), t));
            }
        }
    }
}
