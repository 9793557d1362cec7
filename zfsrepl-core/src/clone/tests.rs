//! Clone refresh on the model: plans as tables, and the executor's
//! all-or-nothing swap under injected failures.

use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use regex::Regex;

use super::*;
use crate::model::FakeZfs;
use crate::name::DatasetName;
use crate::zfs::{ListSpec, ZfsRead, ZfsWrite};

fn ds(s: &str) -> DatasetName {
    DatasetName::parse(s).unwrap()
}

fn spec(pairs: &[(&str, &str)], common: bool, pattern: Option<&str>) -> CloneSpec {
    CloneSpec {
        name: "staging".into(),
        pairs: pairs
            .iter()
            .map(|(s, c)| ClonePair {
                source: ds(s),
                clone: ds(c),
            })
            .collect(),
        selector: Selector {
            pattern: pattern.map(|p| Regex::new(p).unwrap()),
            common,
        },
        properties: vec![("readonly".into(), "off".into())],
        export_properties: vec![("sharenfs".into(), "rw=@10.0.0.0/24".into())],
    }
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + i64::try_from(s).unwrap()).unwrap()
}

fn no_hooks() -> CloneHooks {
    CloneHooks {
        timeout: Duration::from_secs(5),
        ..CloneHooks::default()
    }
}

const BASE: &str = "\
+ tank
+ tank/off products
+ tank/-images: x
+ tank/off products@a
+ tank/off products@b
+ tank/-images: x@a
+ tank/-images: x@b
+ tank/-images: x@c
+ tank/stage
";

fn two() -> CloneSpec {
    spec(
        &[
            ("tank/off products", "tank/stage/products"),
            ("tank/-images: x", "tank/stage/images"),
        ],
        true,
        None,
    )
}

fn origin(m: &FakeZfs, d: &str) -> Option<String> {
    m.list(&ListSpec {
        roots: vec![ds(d)],
        recursive: false,
        snapshots: false,
        bookmarks: false,
        user_props: vec![OWNER_PROP.into()],
    })
    .ok()
    .and_then(|v| v[0].origin.as_ref().map(ToString::to_string))
}

fn names_under(m: &FakeZfs, d: &str) -> Vec<String> {
    m.list(&ListSpec {
        roots: vec![ds(d)],
        recursive: true,
        snapshots: false,
        bookmarks: false,
        user_props: vec![],
    })
    .unwrap()
    .into_iter()
    .map(|d| d.name.to_string())
    .collect()
}

#[test]
fn create_then_up_to_date_then_replace() {
    let m = FakeZfs::from_fixture(BASE);
    let s = two();
    let (plan, rep) = refresh(&m, &s, &no_hooks(), t(0), false).unwrap();
    let rep = rep.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    // Common point: images has @c, products does not.
    assert!(
        plan.items.iter().all(|i| i.snapshot.snap() == "b"),
        "{plan:?}"
    );
    assert!(matches!(plan.items[0].action, ItemAction::Create { .. }));
    assert_eq!(
        origin(&m, "tank/stage/products").unwrap(),
        "tank/off products@b"
    );
    assert_eq!(
        origin(&m, "tank/stage/images").unwrap(),
        "tank/-images: x@b"
    );
    let props = m
        .get_props(
            &[crate::name::EntityName::Dataset(ds("tank/stage/images"))],
            &[OWNER_PROP, "sharenfs"],
            false,
        )
        .unwrap();
    assert_eq!(props[0].value, "staging");
    assert_eq!(props[1].value, "rw=@10.0.0.0/24");

    // Again: nothing to do, and nothing called beyond the listings.
    let (plan, rep) = refresh(&m, &s, &no_hooks(), t(10), false).unwrap();
    assert!(plan.is_noop(), "{plan:?}");
    assert!(rep.unwrap().swapped.is_empty());

    // A newer common snapshot: both replaced, old clones destroyed.
    m.apply_fixture("+ tank/off products@c").unwrap();
    let (plan, rep) = refresh(&m, &s, &no_hooks(), t(20), false).unwrap();
    let rep = rep.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert!(matches!(
        &plan.items[1].action,
        ItemAction::Replace { current_origin: Some(o), .. } if o.snap() == "b"
    ));
    assert_eq!(
        origin(&m, "tank/stage/products").unwrap(),
        "tank/off products@c"
    );
    assert_eq!(
        names_under(&m, "tank/stage"),
        ["tank/stage", "tank/stage/images", "tank/stage/products"]
    );
    assert_eq!(rep.destroyed.len(), 2);
}

#[test]
fn newest_and_pattern_selectors() {
    let m = FakeZfs::from_fixture(
        "+ tank\n+ tank/src\n+ tank/src@autosnap_1_daily\n+ tank/src@autosnap_2_hourly\n+ tank/src@zfsrepl_sync_x\n+ tank/st",
    );
    let newest = spec(&[("tank/src", "tank/st/c")], false, None);
    let daily = spec(&[("tank/src", "tank/st/c")], false, Some("_daily$"));
    let plan_of = |s: &CloneSpec| {
        let (a, b) = list_for(&m, s).unwrap();
        plan(&CloneInput {
            spec: s,
            sources: &a,
            existing: &b,
            now: t(0),
        })
    };
    assert_eq!(plan_of(&newest).items[0].snapshot.snap(), "zfsrepl_sync_x");
    assert_eq!(plan_of(&daily).items[0].snapshot.snap(), "autosnap_1_daily");
    let none = spec(&[("tank/src", "tank/st/c")], false, Some("^weekly"));
    let p = plan_of(&none);
    assert!(p.refused.unwrap().contains("has no snapshot"));
    let missing = spec(&[("tank/nope", "tank/st/c")], false, None);
    assert!(
        plan_of(&missing)
            .refused
            .unwrap()
            .contains("does not exist")
    );
}

#[test]
fn no_common_snapshot_is_refused() {
    let m = FakeZfs::from_fixture("+ tank\n+ tank/a\n+ tank/b\n+ tank/a@x\n+ tank/b@y\n+ tank/st");
    let s = spec(
        &[("tank/a", "tank/st/a"), ("tank/b", "tank/st/b")],
        true,
        None,
    );
    let before = m.dump();
    let (plan, rep) = refresh(&m, &s, &no_hooks(), t(0), false).unwrap();
    assert!(
        plan.refused
            .as_ref()
            .unwrap()
            .contains("no snapshot is common")
    );
    assert!(!rep.unwrap().is_ok());
    assert_eq!(m.dump(), before);
}

#[test]
fn datasets_we_did_not_create_are_never_touched() {
    for extra in [
        // A plain dataset at the clone's name.
        "+ tank/stage/products",
        // A clone, but not ours (no owner property).
        "+ tank/stage/products origin=\"tank/off products@a\"",
        // Ours by property, but another spec's.
        "+ tank/stage/products origin=\"tank/off products@a\" zfsrepl:clone=other",
        // Something at the temporary name.
        "+ tank/stage/products.zfsrepl-new",
        // Something at an aside name.
        "+ tank/stage/images.zfsrepl-old-17",
    ] {
        let m = FakeZfs::from_fixture(BASE);
        m.apply_fixture(extra).unwrap();
        let before = m.dump();
        let (plan, rep) = refresh(&m, &two(), &no_hooks(), t(0), false).unwrap();
        assert!(plan.refused.is_some(), "{extra}: {plan:?}");
        assert!(!rep.unwrap().is_ok());
        assert_eq!(m.dump(), before, "{extra}");
    }
}

#[test]
fn a_failed_swap_leaves_the_previous_clones_serving() {
    let m = FakeZfs::from_fixture(BASE);
    let s = two();
    refresh(&m, &s, &no_hooks(), t(0), false).unwrap();
    m.apply_fixture("+ tank/off products@c").unwrap();
    let (sources, existing) = list_for(&m, &s).unwrap();
    let p = plan(&CloneInput {
        spec: &s,
        sources: &sources,
        existing: &existing,
        now: t(50),
    });
    // Between plan and run, something takes the second clone's aside name.
    let ItemAction::Replace { aside, .. } = &p.items[1].action else {
        panic!("{p:?}")
    };
    m.apply_fixture(&format!("+ \"{aside}\"")).unwrap();
    let rep = execute(&m, &s, &p, &no_hooks());
    assert!(!rep.is_ok());
    assert!(
        rep.error.as_ref().unwrap().contains("keep serving"),
        "{rep:?}"
    );
    assert!(rep.swapped.is_empty());
    assert_eq!(
        origin(&m, "tank/stage/products").unwrap(),
        "tank/off products@b"
    );
    assert_eq!(
        origin(&m, "tank/stage/images").unwrap(),
        "tank/-images: x@b"
    );
    let names = names_under(&m, "tank/stage");
    assert!(!names.iter().any(|n| n.ends_with(NEW_SUFFIX)), "{names:?}");
    // The intruder is still there, untouched.
    assert!(names.contains(&aside.to_string()));
}

#[test]
fn a_failing_clone_or_pre_swap_hook_changes_nothing_served() {
    let m = FakeZfs::from_fixture(BASE);
    let s = two();
    refresh(&m, &s, &no_hooks(), t(0), false).unwrap();
    m.apply_fixture("+ tank/off products@c").unwrap();
    let hooks = CloneHooks {
        pre_swap: Some(vec!["/bin/false".into()]),
        post_swap: None,
        timeout: Duration::from_secs(5),
    };
    let before = m.dump();
    let (_, rep) = refresh(&m, &s, &hooks, t(60), false).unwrap();
    let rep = rep.unwrap();
    assert!(rep.error.unwrap().contains("pre-swap hook failed"));
    assert_eq!(m.dump(), before);
}

#[test]
fn an_old_clone_in_use_is_left_and_retried_never_destroyed_recursively() {
    let m = FakeZfs::from_fixture(BASE);
    let s = two();
    refresh(&m, &s, &no_hooks(), t(0), false).unwrap();
    // Someone made a dataset inside the served clone.
    m.apply_fixture("+ tank/stage/products/user data").unwrap();
    m.apply_fixture("+ tank/off products@c").unwrap();
    let (_, rep) = refresh(&m, &s, &no_hooks(), t(70), false).unwrap();
    let rep = rep.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(rep.left_behind.len(), 1, "{rep:?}");
    let aside = rep.left_behind[0].0.clone();
    assert!(aside.as_str().contains(OLD_MARK));
    assert!(names_under(&m, "tank/stage").contains(&format!("{aside}/user data")));
    // The next run tries again, and still does not destroy the user's data.
    let (plan, rep) = refresh(&m, &s, &no_hooks(), t(80), false).unwrap();
    assert_eq!(plan.cleanup, std::slice::from_ref(&aside));
    assert_eq!(rep.unwrap().left_behind.len(), 1);
    // Once the user has moved their data away, it goes.
    m.destroy_dataset(&ds(&format!("{aside}/user data")), false)
        .unwrap();
    let (_, rep) = refresh(&m, &s, &no_hooks(), t(90), false).unwrap();
    assert_eq!(rep.unwrap().destroyed, [aside]);
}

#[test]
fn a_leftover_temporary_clone_is_cleaned_up() {
    let m = FakeZfs::from_fixture(BASE);
    m.apply_fixture(
        "+ tank/stage/products.zfsrepl-new origin=\"tank/off products@a\" zfsrepl:clone=staging",
    )
    .unwrap();
    let (plan, rep) = refresh(&m, &two(), &no_hooks(), t(0), false).unwrap();
    assert_eq!(plan.cleanup, [ds("tank/stage/products.zfsrepl-new")]);
    assert!(rep.unwrap().is_ok());
    assert_eq!(
        origin(&m, "tank/stage/products").unwrap(),
        "tank/off products@b"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let m = FakeZfs::from_fixture(BASE);
    let before = m.dump();
    let (plan, rep) = refresh(&m, &two(), &no_hooks(), t(0), true).unwrap();
    assert!(rep.is_none());
    assert!(plan.swaps());
    assert_eq!(m.dump(), before);
}

#[test]
fn specs_are_validated() {
    let bad = |pairs: &[(&str, &str)]| spec(pairs, false, None).validate().unwrap_err();
    assert!(matches!(bad(&[]), SpecError::Empty(_)));
    assert!(matches!(
        bad(&[("tank/a", "tank/a/c")]),
        SpecError::Overlap { .. }
    ));
    assert!(matches!(
        bad(&[("tank/a/b", "tank/a")]),
        SpecError::Overlap { .. }
    ));
    assert!(matches!(
        bad(&[("tank/a", "tank/c"), ("tank/b", "tank/c/d")]),
        SpecError::Overlap { .. }
    ));
    assert!(matches!(
        bad(&[("tank/a", "pool2")]),
        SpecError::BadClone { .. }
    ));
    let long = format!("tank/{}", "x".repeat(230));
    assert!(matches!(
        bad(&[("tank/a", &long)]),
        SpecError::BadClone { .. }
    ));
    let mut s = spec(&[("tank/a", "tank/c")], false, None);
    for name in ["", "a b", "x;rm -rf /", "$(id)"] {
        s.name = name.into();
        assert!(matches!(s.validate(), Err(SpecError::BadName(_))), "{name}");
    }
    s.name = "off-staging.v2".into();
    s.validate().unwrap();
}

proptest! {
    /// Whatever is found next to the clones, the plan only ever cleans up,
    /// replaces or moves datasets carrying this spec's owner property.
    #[test]
    fn only_our_datasets_are_ever_replaced_or_cleaned(
        extras in proptest::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 0..6)
    ) {
        let m = FakeZfs::from_fixture(BASE);
        let names = [
            "tank/stage/products",
            "tank/stage/products.zfsrepl-new",
            "tank/stage/images.zfsrepl-old-5",
            "tank/stage/images.zfsrepl-old-x",
        ];
        for (i, is_clone, ours) in extras {
            let mut line = format!("+ \"{}\"", names[i]);
            if is_clone {
                line.push_str(" origin=\"tank/off products@a\"");
            }
            if ours {
                line.push_str(" zfsrepl:clone=staging");
            }
            let _ = m.apply_fixture(&line);
        }
        let s = two();
        let (sources, existing) = list_for(&m, &s).unwrap();
        let p = plan(&CloneInput { spec: &s, sources: &sources, existing: &existing, now: t(0) });
        let owned = |n: &DatasetName| existing.iter().any(|d| &d.name == n
            && d.origin.is_some()
            && d.user_props.get(OWNER_PROP).map(String::as_str) == Some("staging"));
        for c in &p.cleanup {
            prop_assert!(owned(c), "cleanup of {c} not ours");
        }
        for it in &p.items {
            if let ItemAction::Replace { .. } = it.action {
                prop_assert!(owned(&it.clone));
            }
        }
        // And running it leaves every dataset that was not ours in place.
        let rep = execute(&m, &s, &p, &no_hooks());
        let after = names_under(&m, "tank/stage");
        for d in &existing {
            if !owned(&d.name) {
                prop_assert!(after.contains(&d.name.to_string()), "{} gone: {rep:?}", d.name);
            }
        }
    }
}

#[test]
fn origins_are_pinned_in_retention_and_reported_when_stale() {
    use crate::retention::{Action, KeepRule, Ownership, Reason, SnapshotInfo};
    let m = FakeZfs::from_fixture(
        "+ tank\n+ tank/src\n+ tank/src@zfsrepl_1\n+ tank/src@zfsrepl_2\n+ tank/st",
    );
    let s = spec(&[("tank/src", "tank/st/c")], false, None);
    let (_, rep) = refresh(&m, &s, &no_hooks(), t(0), false).unwrap();
    assert!(rep.unwrap().is_ok());
    // Newer snapshots arrive; the clone still comes from @zfsrepl_2.
    m.apply_fixture("+ tank/src@zfsrepl_3\n+ tank/src@zfsrepl_4")
        .unwrap();
    let all = m
        .list(&ListSpec {
            roots: vec![ds("tank")],
            recursive: true,
            snapshots: true,
            bookmarks: false,
            user_props: vec![],
        })
        .unwrap();
    let origins = clone_origins(&all);
    assert_eq!(
        origins,
        [(
            ds("tank/src").snapshot("zfsrepl_2").unwrap(),
            "tank/st/c".to_owned()
        )]
    );
    let src = all.iter().find(|d| d.name == ds("tank/src")).unwrap();
    let snaps: Vec<SnapshotInfo> = src
        .versions
        .iter()
        .filter_map(SnapshotInfo::from_version)
        .collect();
    let rules = [KeepRule::LastN { n: 1, regex: None }];
    let mut p = crate::retention::plan(
        &snaps,
        &rules,
        &Ownership::new("zfsrepl_"),
        &[],
        2_000_000_000,
    );
    assert_eq!(p.destroy_count(), 3);
    assert_eq!(p.pin_origins(&origins), 1);
    let gone: Vec<&str> = p.destroy().map(|s| s.snap()).collect();
    assert_eq!(gone, ["zfsrepl_1", "zfsrepl_3"]);
    let pinned = p
        .decisions
        .iter()
        .find(|d| d.snapshot.snap() == "zfsrepl_2")
        .unwrap();
    assert_eq!(pinned.action, Action::Keep);
    assert_eq!(
        pinned.reasons[0],
        Reason::CloneOrigin {
            clone: "tank/st/c".into()
        }
    );
    assert_eq!(pinned.reasons[0].to_string(), "origin of clone tank/st/c");
    // Pinning twice changes nothing more.
    assert_eq!(p.pin_origins(&origins), 0);

    // Staleness, from the policy's clone sections.
    let policy = crate::policy::parse_str(
        "p.toml",
        "version = 1\n[dataset.\"tank/src\"]\nhourly = 1\n\
         [clone.staging]\nstale-after = \"1d\"\n[clone.staging.pairs]\n\"tank/src\" = \"tank/st/c\"\n",
    )
    .unwrap();
    let clones = list_policy_clones(&m, &policy.targets).unwrap();
    assert_eq!(clones.len(), 1);
    let created = src
        .snapshots()
        .find(|v| v.name.short() == "zfsrepl_2")
        .unwrap()
        .creation;
    assert!(stale_origins(&policy.targets, &clones, &all, created + 86_400).is_empty());
    let stale = stale_origins(&policy.targets, &clones, &all, created + 86_401);
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (
            stale[0].section.as_str(),
            stale[0].clone.as_str(),
            stale[0].age
        ),
        ("staging", "tank/st/c", 86_401)
    );
    // A clone not made yet is not stale (and not listed).
    m.destroy_dataset(&ds("tank/st/c"), false).unwrap();
    assert!(list_policy_clones(&m, &policy.targets).unwrap().is_empty());
}

/// The steps around the swap: `before_swap` gets the clones about to be
/// renamed, `after_swap` the clones in place; a failed `before_swap` or a
/// failed swap abandons the refresh and gives the previous clones back to
/// `after_swap` (so withdrawn exports serve again).
#[test]
fn steps_around_the_swap_see_the_right_clones_and_restore_on_failure() {
    use std::cell::RefCell;
    let m = FakeZfs::from_fixture(BASE);
    let s = two();
    let calls: RefCell<Vec<(String, Vec<String>)>> = RefCell::new(Vec::new());
    let rec = |what: &str, d: &[DatasetName]| {
        calls
            .borrow_mut()
            .push((what.into(), d.iter().map(ToString::to_string).collect()));
    };
    let run = |now: u64, fail_before: bool| {
        let (sources, existing) = list_for(&m, &s).unwrap();
        let p = plan(&CloneInput {
            spec: &s,
            sources: &sources,
            existing: &existing,
            now: t(now),
        });
        execute_with(
            &m,
            &s,
            &p,
            &no_hooks(),
            &mut |d| {
                rec("before", d);
                fail_before.then(|| "RemoveExport failed".to_owned())
            },
            &mut |d| {
                rec("after", d);
                None
            },
        )
    };
    // First refresh creates: nothing to withdraw, both exported after.
    assert!(run(0, false).is_ok());
    assert_eq!(
        calls.take(),
        [(
            "after".to_owned(),
            vec![
                "tank/stage/products".to_owned(),
                "tank/stage/images".to_owned()
            ]
        )]
    );
    // A newer products snapshot replaces both (common point moves).
    m.apply_fixture("+ tank/off products@c").unwrap();
    let rep = run(10, true);
    assert!(
        rep.error
            .as_deref()
            .unwrap()
            .contains("before the swap: RemoveExport failed; the current clones keep serving"),
        "{rep:?}"
    );
    let both = vec![
        "tank/stage/products".to_owned(),
        "tank/stage/images".to_owned(),
    ];
    assert_eq!(
        calls.take(),
        [
            ("before".to_owned(), both.clone()),
            ("after".to_owned(), both.clone())
        ]
    );
    assert_eq!(
        origin(&m, "tank/stage/products").unwrap(),
        "tank/off products@b"
    );
    // Then it goes through.
    assert!(run(20, false).is_ok());
    assert_eq!(
        calls.take(),
        [
            ("before".to_owned(), both.clone()),
            ("after".to_owned(), both)
        ]
    );
    assert_eq!(
        origin(&m, "tank/stage/products").unwrap(),
        "tank/off products@c"
    );
}
