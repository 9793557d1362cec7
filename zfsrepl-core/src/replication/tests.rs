//! Planner tests: a table of cases in the fixture DSL, tree planning, JSON
//! shape, and proptest invariants checked by simulating the plan on the
//! target's version list (docs/design/replication.md, "Invariants").

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::fixture::{dst, src, versions};
use super::plan::*;
use super::*;
use crate::name::{DatasetName, Guid, Txg};
use crate::zfs::{Capabilities, Dataset, DatasetKind, SendSource, Version, VersionName};

fn ds(s: &str) -> DatasetName {
    DatasetName::parse(s).unwrap()
}

fn short(v: &VersionName) -> String {
    match v {
        VersionName::Snapshot(s) => format!("@{}", s.snap()),
        VersionName::Bookmark(b) => format!("#{}", b.mark()),
    }
}

/// A plan in one line: `[discard; ][rollback @x[ destroys @y,@z]; ]ACTION`
/// where ACTION is `up-to-date`, `conflict:<kind>`, or the steps joined by
/// `; ` (`full @c`, `-i @a @b`, `-I @a @c`, `resume -i @a @b`).
fn render(plan: &DatasetPlan) -> String {
    let mut out = String::new();
    if plan.discard_partial_receive {
        out.push_str("discard; ");
    }
    if let Some(rb) = &plan.rollback {
        out.push_str(&format!("rollback @{}", rb.to.snap()));
        if !rb.destroys.is_empty() {
            let d: Vec<String> = rb
                .destroys
                .iter()
                .map(|s| format!("@{}", s.snap()))
                .collect();
            out.push_str(&format!(" destroys {}", d.join(",")));
        }
        out.push_str("; ");
    }
    match &plan.action {
        Action::UpToDate => out.push_str("up-to-date"),
        Action::Conflict(c) => {
            let v = serde_json::to_value(c).unwrap();
            out.push_str(&format!("conflict:{}", v["kind"].as_str().unwrap()));
        }
        Action::Steps(steps) => {
            let s: Vec<String> = steps
                .iter()
                .map(|s| {
                    let resume = if s.resume_token.is_some() {
                        "resume "
                    } else {
                        ""
                    };
                    match &s.from {
                        None => format!("{resume}full @{}", s.to.snap()),
                        Some(f) => format!(
                            "{resume}{} {} @{}",
                            if s.intermediates { "-I" } else { "-i" },
                            short(f),
                            s.to.snap()
                        ),
                    }
                })
                .collect();
            out.push_str(&s.join("; "));
        }
    }
    out
}

struct Case {
    name: &'static str,
    input: DatasetPlanInput,
    policy: ReplicationPolicy,
    caps: Capabilities,
    want: &'static str,
}

fn case(name: &'static str, s: &str, d: Option<&str>, want: &'static str) -> Case {
    Case {
        name,
        input: DatasetPlanInput {
            source: ds("tank/src"),
            target: ds("back/dst"),
            source_versions: src(s),
            target_versions: d.map(dst),
            resume_token: None,
            target_modified: false,
        },
        policy: ReplicationPolicy::default(),
        caps: Capabilities::openzfs(),
        want,
    }
}

impl Case {
    fn policy(mut self, f: impl FnOnce(&mut ReplicationPolicy)) -> Self {
        f(&mut self.policy);
        self
    }
    fn fuse(mut self) -> Self {
        self.caps = Capabilities::zfs_fuse();
        self
    }
    fn modified(mut self) -> Self {
        self.input.target_modified = true;
        self
    }
    fn token(mut self, from: Option<u64>, to: u64) -> Self {
        self.input.resume_token = Some(ResumeToken {
            token: "1-abc-def".into(),
            decoded: Some(ResumeTokenInfo {
                from_guid: from.map(Guid),
                to_guid: Guid(to),
            }),
        });
        self
    }
    fn undecoded_token(mut self) -> Self {
        self.input.resume_token = Some(ResumeToken {
            token: "1-abc-def".into(),
            decoded: None,
        });
        self
    }
    fn plan(&self) -> DatasetPlan {
        plan_dataset(&self.input, &self.policy, &self.caps)
    }
}

fn force(p: &mut ReplicationPolicy) {
    p.force_rollback = true;
}

fn exclude(names: &[&str]) -> impl FnOnce(&mut ReplicationPolicy) {
    let v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    move |p| p.snapshot_filter = SnapshotFilter::Exclude(v)
}

fn cases() -> Vec<Case> {
    const ABC: &str = "@a:1 @b:2 @c:3";
    vec![
        // Up to date and plain incrementals.
        case("up to date", "@a:1 @b:2", Some("@a:1 @b:2"), "up-to-date"),
        case(
            "incremental -I",
            "@a:1 @b:2 @c:3 @d:4",
            Some("@a:1"),
            "-I @a @d",
        ),
        case("incremental one", ABC, Some("@a:1 @b:2"), "-i @b @c"),
        case(
            "target keeps snapshots the source pruned",
            "@c:3 @d:4",
            Some("@a:1 @b:2 @c:3"),
            "-i @c @d",
        ),
        case(
            "target bookmarks are ignored",
            ABC,
            Some("@a:1 #c:3"),
            "-I @a @c",
        ),
        case(
            "no intermediates: one -i per snapshot",
            "@a:1 @b:2 @c:3 @d:4",
            Some("@a:1"),
            "-i @a @b; -i @b @c; -i @c @d",
        )
        .policy(|p| p.use_intermediates = false),
        // Initial replication.
        case("initial most recent", ABC, None, "full @c"),
        case("initial all", ABC, None, "full @a; -I @a @c")
            .policy(|p| p.initial = InitialPolicy::AllOldestFirst),
        case("initial all, two", "@a:1 @b:2", None, "full @a; -i @a @b")
            .policy(|p| p.initial = InitialPolicy::AllOldestFirst),
        case("initial fail", ABC, None, "conflict:initial-refused")
            .policy(|p| p.initial = InitialPolicy::Fail),
        case(
            "initial, no snapshots",
            "",
            None,
            "conflict:no-source-snapshots",
        ),
        case(
            "initial, only bookmarks",
            "#a:1",
            None,
            "conflict:no-source-snapshots",
        ),
        case(
            "initial, all filtered out",
            "@x:1",
            None,
            "conflict:no-source-snapshots",
        )
        .policy(exclude(&["x"])),
        case(
            "initial all with filter gaps",
            "@x:1 @a:2 @y:3 @b:4 @c:5 @d:6",
            None,
            "full @a; -i @a @b; -I @b @d",
        )
        .policy(|p| {
            p.initial = InitialPolicy::AllOldestFirst;
            p.snapshot_filter = SnapshotFilter::Exclude(vec!["x".into(), "y".into()]);
        }),
        case(
            "initial most recent skips an excluded newest",
            "@a:1 @b:2 @x:3",
            None,
            "full @b",
        )
        .policy(exclude(&["x"])),
        // Resume.
        case(
            "resume, then continue",
            ABC,
            Some("@a:1"),
            "resume -i @a @b; -i @b @c",
        )
        .token(Some(1), 2),
        case("resume to newest", ABC, Some("@a:1"), "resume -i @a @c").token(Some(1), 3),
        case(
            "resume a full stream",
            ABC,
            Some(""),
            "resume full @b; -i @b @c",
        )
        .token(None, 2),
        case(
            "resume unsupported: discard",
            ABC,
            Some("@a:1"),
            "discard; -I @a @c",
        )
        .token(Some(1), 2)
        .fuse(),
        case(
            "resume token's snapshot gone: discard",
            ABC,
            Some("@a:1"),
            "discard; -I @a @c",
        )
        .token(Some(1), 7),
        case(
            "resume token's base is not the target's newest: discard",
            ABC,
            Some("@a:1 @b:2"),
            "discard; -i @b @c",
        )
        .token(Some(1), 3),
        case(
            "undecoded token: discard",
            ABC,
            Some("@a:1"),
            "discard; -I @a @c",
        )
        .undecoded_token(),
        case(
            "discarded partial full receive: initial again",
            ABC,
            Some(""),
            "discard; full @c",
        )
        .token(None, 9),
        // Bookmarks as base.
        case(
            "bookmark base",
            "@a:1 #b:2 @c:3 @d:4 @e:5",
            Some("@a:1 @b:2"),
            "-i #b @c; -I @c @e",
        ),
        case(
            "bookmark base, two newer",
            "#b:2 @c:3 @d:4",
            Some("@b:2"),
            "-i #b @c; -i @c @d",
        ),
        case(
            "bookmark base, target has older foreign snapshots",
            "#b:2 @c:3",
            Some("@a:1/guid=77 @b:2"),
            "-i #b @c",
        ),
        case(
            "snapshot preferred over its bookmark",
            "@a:1 #b:2 @b:2 @c:3",
            Some("@a:1 @b:2"),
            "-i @b @c",
        ),
        case(
            "no bookmarks here: the bookmark base is unusable",
            "@a:1 #b:2 @c:3",
            Some("@a:1 @b:2"),
            "conflict:target-diverged",
        )
        .fuse(),
        // No common base.
        case(
            "no common base",
            "@a:1 @b:2",
            Some("@x:10"),
            "conflict:no-common-base",
        ),
        case(
            "same names, different guids: never by name",
            "@a:1 @b:2",
            Some("@a:1/guid=91 @b:2/guid=92"),
            "conflict:no-common-base",
        ),
        case(
            "target exists without snapshots",
            ABC,
            Some(""),
            "conflict:no-common-base",
        ),
        case(
            "target has only bookmarks",
            ABC,
            Some("#a:1"),
            "conflict:no-common-base",
        ),
        case(
            "no source snapshots, target exists",
            "",
            Some("@a:1"),
            "conflict:no-source-snapshots",
        ),
        // Divergence.
        case(
            "target has newer snapshots",
            "@a:1 @b:2",
            Some("@a:1 @x:5"),
            "conflict:target-diverged",
        ),
        case(
            "same name newer on target, other guid",
            ABC,
            Some("@a:1 @b:2/guid=92"),
            "conflict:target-diverged",
        ),
        case(
            "diverged, force, owned: rollback",
            "@zfsrepl_a:1 @zfsrepl_b:2 @zfsrepl_c:3",
            Some("@zfsrepl_a:1 @zfsrepl_x:5"),
            "rollback @zfsrepl_a destroys @zfsrepl_x; -I @zfsrepl_a @zfsrepl_c",
        )
        .policy(force),
        case(
            "diverged, force, owned, nothing newer: rollback only",
            "@zfsrepl_a:1",
            Some("@zfsrepl_a:1 @zfsrepl_x:5 @zfsrepl_y:6"),
            "rollback @zfsrepl_a destroys @zfsrepl_x,@zfsrepl_y; up-to-date",
        )
        .policy(force),
        case(
            "diverged, force, foreign target-only snapshot",
            "@zfsrepl_a:1 @zfsrepl_b:2",
            Some("@zfsrepl_a:1 @zfsrepl_x:5 @manual:6"),
            "conflict:target-diverged",
        )
        .policy(force),
        case(
            "diverged, force, held target-only snapshot",
            "@zfsrepl_a:1 @zfsrepl_b:2",
            Some("@zfsrepl_a:1 @zfsrepl_x:5/held"),
            "conflict:target-diverged",
        )
        .policy(force),
        case(
            "diverged, force, another owned prefix",
            "@autosnap_a:1 @autosnap_b:2",
            Some("@autosnap_a:1 @autosnap_x:5"),
            "rollback @autosnap_a destroys @autosnap_x; -i @autosnap_a @autosnap_b",
        )
        .policy(|p| {
            p.force_rollback = true;
            p.owned_prefixes.push("autosnap_".into());
        }),
        // Filters.
        case(
            "filter splits -I into -i steps",
            "@a:1 @x:2 @b:3 @c:4 @d:5 @y:6 @e:7",
            Some("@a:1"),
            "-i @a @b; -I @b @d; -i @d @e",
        )
        .policy(exclude(&["x", "y"])),
        case(
            "filter: run right after the base stays -I",
            "@a:1 @b:2 @c:3 @x:4 @d:5",
            Some("@a:1"),
            "-I @a @c; -i @c @d",
        )
        .policy(exclude(&["x"])),
        case(
            "filter by prefixes",
            "@auto1:1 @hourly:2 @auto2:3 @auto3:4",
            Some("@auto1:1"),
            "-i @auto1 @auto2; -i @auto2 @auto3",
        )
        .policy(|p| p.snapshot_filter = SnapshotFilter::Prefixes(vec!["auto".into()])),
        case(
            "filter excludes everything newer: up to date",
            "@a:1 @x:2",
            Some("@a:1"),
            "up-to-date",
        )
        .policy(exclude(&["x"])),
        case(
            "an excluded snapshot may still be the common base",
            "@a:1 @x:2 @b:3",
            Some("@a:1 @x:2"),
            "-i @x @b",
        )
        .policy(exclude(&["x"])),
        case(
            "other targets' sync snapshots are never sent",
            "@a:1 @zfsrepl_sync_j_t2_1:2 @b:3 @zfsrepl_sync_j_t1_1:4",
            Some("@a:1"),
            "-i @a @b; -i @b @zfsrepl_sync_j_t1_1",
        )
        .policy(|p| {
            p.sync_prefix = Some(sync_snapshot_prefix("j", "t1"));
            p.snapshot_filter = SnapshotFilter::Prefixes(vec!["a".into(), "b".into()]);
        }),
        // Target modified.
        case(
            "target modified",
            "@a:1 @b:2",
            Some("@a:1"),
            "conflict:target-modified",
        )
        .modified(),
        case(
            "target modified, force: rollback to its latest snapshot",
            "@a:1 @b:2",
            Some("@a:1"),
            "rollback @a; -i @a @b",
        )
        .modified()
        .policy(force),
        case(
            "target modified, nothing to send",
            "@a:1",
            Some("@a:1"),
            "up-to-date",
        )
        .modified(),
    ]
}

#[test]
fn table() {
    let mut failures = Vec::new();
    let cases = cases();
    for c in &cases {
        let got = render(&c.plan());
        if got != c.want {
            failures.push(format!(
                "{}:\n    want {}\n    got  {}",
                c.name, c.want, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn find(name: &str) -> Case {
    cases().into_iter().find(|c| c.name == name).unwrap()
}

#[test]
fn notes_explain_fallbacks() {
    let p = find("no bookmarks here: the bookmark base is unusable").plan();
    assert!(matches!(
        &p.notes[..],
        [Note::BookmarkBaseUnsupported { bookmark }] if bookmark.as_str() == "tank/src#b"
    ));
    let p = find("diverged, force, foreign target-only snapshot").plan();
    let Some(Note::RollbackRefused { foreign, held }) = p.notes.first() else {
        panic!("{:?}", p.notes)
    };
    assert_eq!(foreign.len(), 1);
    assert_eq!(foreign[0].as_str(), "back/dst@manual");
    assert!(held.is_empty());
    let p = find("diverged, force, held target-only snapshot").plan();
    assert!(
        matches!(&p.notes[..], [Note::RollbackRefused { foreign, held }]
        if foreign.is_empty() && held[0].as_str() == "back/dst@zfsrepl_x")
    );
    let p = find("filter splits -I into -i steps").plan();
    let Some(Note::Excluded { snapshots }) = p.notes.first() else {
        panic!("{:?}", p.notes)
    };
    let names: Vec<&str> = snapshots.iter().map(|s| s.snap()).collect();
    assert_eq!(names, ["x", "y"]);
    assert_eq!(
        find("resume unsupported: discard").plan().notes,
        [Note::ResumeUnsupported]
    );
    assert_eq!(
        find("undecoded token: discard").plan().notes,
        [Note::ResumeTokenUndecoded]
    );
    assert!(matches!(
        find("resume token's snapshot gone: discard").plan().notes[..],
        [Note::ResumeTokenStale { .. }]
    ));
    assert!(find("up to date").plan().is_noop());
    assert!(
        !find("diverged, force, owned, nothing newer: rollback only")
            .plan()
            .is_noop()
    );
}

#[test]
fn conflicts_carry_the_versions() {
    let p = find("target has newer snapshots").plan();
    let Some(Conflict::TargetDiverged {
        common,
        source_only,
        target_only,
    }) = p.conflict()
    else {
        panic!("{p:?}")
    };
    assert_eq!(common.name.as_str(), "tank/src@a");
    assert_eq!(source_only[0].name.as_str(), "tank/src@b");
    assert_eq!(target_only[0].name.as_str(), "back/dst@x");
    let msg = p.conflict().unwrap().to_string();
    assert!(msg.contains("back/dst@x  guid=5 createtxg=5"), "{msg}");

    let p = find("target modified").plan();
    let Some(Conflict::TargetModified { common }) = p.conflict() else {
        panic!("{p:?}")
    };
    assert_eq!(common.name.as_str(), "back/dst@a");
    assert!(p.conflict().unwrap().to_string().contains("force-rollback"));

    let msg = find("target exists without snapshots")
        .plan()
        .conflict()
        .unwrap()
        .to_string();
    assert!(msg.contains("exists but has no snapshots"), "{msg}");
    assert!(msg.contains("tank/src@c  guid=3 createtxg=3"), "{msg}");
}

#[test]
fn steps_become_send_sources() {
    let p = find("bookmark base").plan();
    let s = p.steps();
    assert_eq!(
        s[0].send_source(),
        SendSource::Incremental {
            from: VersionName::Bookmark("tank/src#b".parse().unwrap()),
            to: "tank/src@c".parse().unwrap(),
            intermediates: false,
        }
    );
    assert_eq!(s[0].from_guid, Some(Guid(2)));
    assert_eq!(s[1].to_guid, Guid(5));
    assert_eq!(s[1].to_string(), "-I tank/src@c tank/src@e");
    let p = find("initial most recent").plan();
    assert_eq!(
        p.steps()[0].send_source(),
        SendSource::Full {
            snapshot: "tank/src@c".parse().unwrap()
        }
    );
    assert_eq!(p.steps()[0].to_string(), "full tank/src@c");
    let p = find("resume, then continue").plan();
    assert_eq!(
        p.steps()[0].send_source(),
        SendSource::Resume {
            token: "1-abc-def".into()
        }
    );
    assert_eq!(p.steps()[0].to_string(), "resume -i tank/src@a tank/src@b");
}

#[test]
fn plans_serialize_for_dry_run_json() {
    let p = find("diverged, force, owned: rollback").plan();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["source"], "tank/src");
    assert_eq!(v["target"], "back/dst");
    assert_eq!(v["rollback"]["to"], "back/dst@zfsrepl_a");
    assert_eq!(v["rollback"]["destroys"][0], "back/dst@zfsrepl_x");
    let step = &v["action"]["steps"][0];
    assert_eq!(step["from"], "tank/src@zfsrepl_a");
    assert_eq!(step["to"], "tank/src@zfsrepl_c");
    assert_eq!(step["intermediates"], true);
    assert!(step.get("resume_token").is_none());
    let back: DatasetPlan = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);

    let v = serde_json::to_value(find("up to date").plan()).unwrap();
    assert_eq!(v["action"], "up-to-date");
    let v = serde_json::to_value(find("no common base").plan()).unwrap();
    assert_eq!(v["action"]["conflict"]["kind"], "no-common-base");
    assert_eq!(v["action"]["conflict"]["target"][0]["guid"], 10);
}

// ---- trees ----

fn dataset(name: &str, spec: &str) -> Dataset {
    Dataset {
        name: ds(name),
        kind: DatasetKind::Filesystem,
        guid: Guid(0),
        createtxg: Txg(0),
        creation: 0,
        used: 0,
        origin: None,
        receive_resume_token: None,
        user_props: BTreeMap::new(),
        versions: versions(name, spec),
    }
}

fn tree(source: Vec<Dataset>, target: Vec<Dataset>) -> TreeInput {
    TreeInput {
        source_root: ds("tank/data"),
        target_root: ds("back/data"),
        source,
        target,
        target_modified: BTreeSet::new(),
        resume_tokens: BTreeMap::new(),
    }
}

fn tree_summary(p: &ReplicationPlan) -> Vec<String> {
    p.datasets
        .iter()
        .map(|d| {
            let blocked = d
                .blocked_on
                .as_ref()
                .map(|b| format!(" after {b}"))
                .unwrap_or_default();
            format!("{} -> {}: {}{blocked}", d.source, d.target, render(d))
        })
        .collect()
}

#[test]
fn tree_parents_first_and_initial_children_wait() {
    let input = tree(
        vec![
            dataset("tank/data/b", "@a:11 @b:12"),
            dataset("tank/data/a/x y", "@a:21"),
            dataset("tank/data", "@a:1 @b:2"),
            dataset("tank/data/a", "@a:31"),
        ],
        vec![
            dataset("back/data", "@a:1"),
            dataset("back/data/b", "@a:11"),
        ],
    );
    let p = plan_tree(
        &input,
        &ReplicationPolicy::default(),
        &Capabilities::openzfs(),
    );
    assert_eq!(
        tree_summary(&p),
        [
            "tank/data -> back/data: -i @a @b",
            "tank/data/a -> back/data/a: full @a",
            "tank/data/a/x y -> back/data/a/x y: full @a after back/data/a",
            "tank/data/b -> back/data/b: -i @a @b",
        ]
    );
    assert!(p.unmapped.is_empty());
}

#[test]
fn tree_conflicts_stay_per_dataset() {
    let mut input = tree(
        vec![
            dataset("tank/data", "@a:1 @b:2"),
            dataset("tank/data/diverged", "@a:11"),
            dataset("tank/data/modified", "@a:21 @b:22"),
            dataset("tank/data/ok", "@a:31 @b:32"),
        ],
        vec![
            dataset("back/data", "@a:1"),
            dataset("back/data/diverged", "@a:11 @x:99"),
            dataset("back/data/modified", "@a:21"),
            dataset("back/data/ok", "@a:31"),
        ],
    );
    input.target_modified.insert(ds("back/data/modified"));
    let p = plan_tree(
        &input,
        &ReplicationPolicy::default(),
        &Capabilities::openzfs(),
    );
    assert_eq!(
        tree_summary(&p),
        [
            "tank/data -> back/data: -i @a @b",
            "tank/data/diverged -> back/data/diverged: conflict:target-diverged",
            "tank/data/modified -> back/data/modified: conflict:target-modified",
            "tank/data/ok -> back/data/ok: -i @a @b",
        ]
    );
}

#[test]
fn tree_child_of_an_unreplicable_missing_parent_is_blocked() {
    // The source root has no snapshots and its target does not exist: it
    // cannot be created, so neither can its children; an existing child
    // target still replicates.
    let input = tree(
        vec![
            dataset("tank/data", ""),
            dataset("tank/data/a", "@a:1"),
            dataset("tank/data/a/b", "@a:2"),
            dataset("tank/data/c", "@a:3 @b:4"),
        ],
        vec![dataset("back/data/c", "@a:3")],
    );
    let p = plan_tree(
        &input,
        &ReplicationPolicy::default(),
        &Capabilities::openzfs(),
    );
    assert_eq!(
        tree_summary(&p),
        [
            "tank/data -> back/data: conflict:no-source-snapshots",
            "tank/data/a -> back/data/a: conflict:parent-missing",
            "tank/data/a/b -> back/data/a/b: conflict:parent-missing",
            "tank/data/c -> back/data/c: -i @a @b",
        ]
    );
    assert!(
        p.datasets[1]
            .conflict()
            .unwrap()
            .to_string()
            .contains("back/data does not exist")
    );
}

#[test]
fn tree_resume_tokens_and_unmapped() {
    let mut target = dataset("back/data", "@a:1");
    target.receive_resume_token = Some("1-tok".into());
    let mut input = tree(
        vec![
            dataset("tank/data", "@a:1 @b:2 @c:3"),
            dataset("tank/other", "@a:1"),
        ],
        vec![target],
    );
    input.resume_tokens.insert(
        ds("back/data"),
        ResumeTokenInfo {
            from_guid: Some(Guid(1)),
            to_guid: Guid(2),
        },
    );
    let p = plan_tree(
        &input,
        &ReplicationPolicy::default(),
        &Capabilities::openzfs(),
    );
    assert_eq!(
        tree_summary(&p),
        ["tank/data -> back/data: resume -i @a @b; -i @b @c"]
    );
    assert_eq!(
        p.datasets[0].steps()[0].resume_token.as_deref(),
        Some("1-tok")
    );
    assert_eq!(p.unmapped, [ds("tank/other")]);
    // Without the decoded token, the partial receive is discarded.
    input.resume_tokens.clear();
    let p = plan_tree(
        &input,
        &ReplicationPolicy::default(),
        &Capabilities::openzfs(),
    );
    assert_eq!(
        tree_summary(&p),
        ["tank/data -> back/data: discard; -I @a @c"]
    );
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"unmapped\":[\"tank/other\"]"), "{json}");
}

#[test]
fn tree_discarded_partial_child_waits_for_recreated_parent() {
    // A partial full receive of back/data (no snapshots, stale token) is
    // discarded, which removes back/data: its new child must wait for the
    // parent's initial replication again.
    let mut root = dataset("back/data", "");
    root.receive_resume_token = Some("1-tok".into());
    let input = tree(
        vec![dataset("tank/data", "@a:1"), dataset("tank/data/x", "@a:2")],
        vec![root],
    );
    let p = plan_tree(
        &input,
        &ReplicationPolicy::default(),
        &Capabilities::openzfs(),
    );
    assert_eq!(
        tree_summary(&p),
        [
            "tank/data -> back/data: discard; full @a",
            "tank/data/x -> back/data/x: full @a after back/data",
        ]
    );
}

// ---- invariants ----

/// One source snapshot's fate: kept, kept with a bookmark, only its
/// bookmark kept, or destroyed.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Kept,
    KeptBookmarked,
    BookmarkOnly,
    Gone,
}

/// A target in a scenario: the history prefix it saw, which of those
/// snapshots it keeps, which it also bookmarks, and its own newer snapshots
/// (owned or not, held or not).
type TargetSpec = (usize, Vec<bool>, Vec<bool>, Vec<(bool, bool)>);

#[derive(Debug, Clone)]
struct Scenario {
    /// The source's history, oldest first: name prefix and fate.
    history: Vec<(&'static str, Fate)>,
    /// The target, when it exists.
    target: Option<TargetSpec>,
    /// A resume token: decoded or not, and where its `to` lies: this many
    /// history snapshots after the target's newest.
    token: Option<(bool, usize)>,
    modified: bool,
    bookmarks: bool,
    resumable: bool,
    initial: InitialPolicy,
    filter: SnapshotFilter,
    use_intermediates: bool,
    force_rollback: bool,
    sync: bool,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let prefix = prop::sample::select(vec![
        "zfsrepl_",
        "auto_",
        "man_",
        "zfsrepl_sync_j_t1_",
        "zfsrepl_sync_j_t2_",
    ]);
    let fate = prop_oneof![
        6 => Just(Fate::Kept),
        2 => Just(Fate::KeptBookmarked),
        1 => Just(Fate::BookmarkOnly),
        1 => Just(Fate::Gone),
    ];
    // Mostly a target that is behind; sometimes one with its own newer
    // snapshots (diverged).
    let extras = prop::option::weighted(
        0.25,
        prop::collection::vec((any::<bool>(), prop::bool::weighted(0.2)), 1..3),
    )
    .prop_map(Option::unwrap_or_default);
    let target = prop::option::weighted(
        0.8,
        (
            0usize..12,
            prop::collection::vec(prop::bool::weighted(0.6), 12),
            prop::collection::vec(any::<bool>(), 12),
            extras,
        ),
    );
    let filter = prop_oneof![
        Just(SnapshotFilter::All),
        Just(SnapshotFilter::Exclude(vec!["man_".into()])),
        Just(SnapshotFilter::Prefixes(vec![
            "auto_".into(),
            "zfsrepl_".into()
        ])),
    ];
    let initial = prop_oneof![
        Just(InitialPolicy::MostRecent),
        Just(InitialPolicy::AllOldestFirst),
        Just(InitialPolicy::Fail),
    ];
    (
        prop::collection::vec((prefix, fate), 0..12),
        target,
        prop::option::weighted(0.3, (prop::bool::weighted(0.9), 0usize..4)),
        (prop::bool::weighted(0.2), any::<bool>(), any::<bool>()),
        (initial, filter, any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                history,
                target,
                token,
                (modified, bookmarks, resumable),
                (initial, filter, use_intermediates, force_rollback, sync),
            )| Scenario {
                history,
                target,
                token,
                modified,
                bookmarks,
                resumable,
                initial,
                filter,
                use_intermediates,
                force_rollback,
                sync,
            },
        )
}

fn snap_version(dataset: &DatasetName, name: &str, guid: u64, txg: u64, held: bool) -> Version {
    Version {
        name: VersionName::Snapshot(dataset.snapshot(name).unwrap()),
        guid: Guid(guid),
        createtxg: Txg(txg),
        creation: i64::try_from(txg).unwrap(),
        used: Some(0),
        userrefs: Some(u64::from(held)),
    }
}

fn bookmark_of(v: &Version) -> Version {
    let VersionName::Snapshot(s) = &v.name else {
        panic!("not a snapshot")
    };
    Version {
        name: VersionName::Bookmark(s.dataset().bookmark(s.snap()).unwrap()),
        used: None,
        userrefs: None,
        ..v.clone()
    }
}

struct Built {
    input: DatasetPlanInput,
    policy: ReplicationPolicy,
    caps: Capabilities,
}

fn build(sc: &Scenario) -> Built {
    let (sds, tds) = (ds("tank/src"), ds("back/dst"));
    let hist: Vec<Version> = sc
        .history
        .iter()
        .enumerate()
        .map(|(i, (prefix, _))| {
            let n = i as u64 + 1;
            snap_version(&sds, &format!("{prefix}{i}"), 1000 + n, n, false)
        })
        .collect();
    let mut source = Vec::new();
    for (v, (_, fate)) in hist.iter().zip(&sc.history) {
        match fate {
            Fate::Kept => source.push(v.clone()),
            Fate::KeptBookmarked => source.extend([v.clone(), bookmark_of(v)]),
            Fate::BookmarkOnly => source.push(bookmark_of(v)),
            Fate::Gone => {}
        }
    }
    let target = sc.target.as_ref().map(|(cut, keep, marks, extras)| {
        let mut t = Vec::new();
        let mut txg = 500;
        for (i, v) in hist.iter().enumerate().take(*cut) {
            if keep[i] {
                txg += 1;
                let s = snap_version(&tds, v.name.short(), v.guid.0, txg, false);
                if marks[i] {
                    t.push(bookmark_of(&s));
                }
                t.push(s);
            }
        }
        for (j, (owned, held)) in extras.iter().enumerate() {
            txg += 1;
            let name = format!("{}x{j}", if *owned { "zfsrepl_" } else { "man_" });
            t.push(snap_version(&tds, &name, 5000 + j as u64, txg, *held));
        }
        t
    });
    let resume_token = match (&target, sc.token) {
        (Some(t), Some((decoded, to))) => {
            let newest = t.iter().rfind(|v| !v.name.is_bookmark());
            let after = newest
                .and_then(|n| hist.iter().position(|h| h.guid == n.guid))
                .map_or(0, |i| i + 1);
            let to_guid = hist.get(after + to).map_or(Guid(9999), |v| v.guid);
            Some(ResumeToken {
                token: "1-tok".into(),
                decoded: decoded.then_some(ResumeTokenInfo {
                    from_guid: newest.map(|v| v.guid),
                    to_guid,
                }),
            })
        }
        _ => None,
    };
    let mut caps = Capabilities::openzfs();
    caps.bookmarks = sc.bookmarks;
    caps.resumable = sc.resumable;
    let policy = ReplicationPolicy {
        initial: sc.initial,
        snapshot_filter: sc.filter.clone(),
        use_intermediates: sc.use_intermediates,
        force_rollback: sc.force_rollback,
        sync_prefix: sc.sync.then(|| sync_snapshot_prefix("j", "t1")),
        ..ReplicationPolicy::default()
    };
    Built {
        input: DatasetPlanInput {
            source: sds,
            target: tds,
            source_versions: source,
            target_versions: target,
            resume_token,
            target_modified: sc.modified,
        },
        policy,
        caps,
    }
}

/// Applies a plan to the target's snapshot list as ZFS would, checking each
/// step's preconditions. Returns the new target (None: does not exist) and
/// the guids each step transferred, in order.
fn apply(b: &Built, plan: &DatasetPlan) -> Result<(Option<Vec<Version>>, Vec<Guid>), String> {
    let source = diff::sorted(&b.input.source_versions);
    let mut target: Option<Vec<Version>> = b
        .input
        .target_versions
        .as_deref()
        .map(diff::sorted_snapshots);
    if plan.discard_partial_receive {
        if b.input.resume_token.is_none() {
            return Err("discard without a partial receive".into());
        }
        if target.as_ref().is_some_and(Vec::is_empty) {
            target = None;
        }
    }
    if let Some(rb) = &plan.rollback {
        let t = target.as_mut().ok_or("rollback of a missing target")?;
        let i = t
            .iter()
            .position(|v| v.name.as_str() == rb.to.as_str())
            .ok_or("rollback to a missing snapshot")?;
        let destroyed: Vec<&str> = t[i + 1..].iter().map(|v| v.name.as_str()).collect();
        let listed: Vec<&str> = rb.destroys.iter().map(|s| s.as_str()).collect();
        if destroyed != listed {
            return Err(format!(
                "rollback destroys {destroyed:?}, plan says {listed:?}"
            ));
        }
        if t[i + 1..].iter().any(|v| v.userrefs.unwrap_or(0) > 0) {
            return Err("rollback over a held snapshot".into());
        }
        t.truncate(i + 1);
    }
    let tds = &b.input.target;
    let mut transferred = Vec::new();
    // ZFS refuses an incremental receive onto a modified target (without
    // `-F`); only a rollback first makes it unmodified.
    let modified = b.input.target_modified && plan.rollback.is_none();
    for step in plan.steps() {
        if modified && step.from.is_some() && transferred.is_empty() {
            return Err(format!("{step}: receive onto a modified target"));
        }
        let pos = |name: &str| source.iter().position(|v| v.name.as_str() == name);
        let to_pos = pos(step.to.as_str()).ok_or("step to a missing snapshot")?;
        if source[to_pos].guid != step.to_guid {
            return Err("to_guid mismatch".into());
        }
        if step.resume_token.is_some() && !b.caps.resumable {
            return Err("resume without the capability".into());
        }
        let new: Vec<&Version> = match &step.from {
            None => {
                let ok = match &target {
                    None => step.resume_token.is_none(),
                    Some(t) => t.is_empty() && step.resume_token.is_some(),
                };
                if !ok {
                    return Err(format!("full send onto an existing target: {step}"));
                }
                vec![&source[to_pos]]
            }
            Some(from) => {
                let t = target.as_ref().ok_or("incremental onto a missing target")?;
                let newest = t
                    .last()
                    .ok_or("incremental onto a target without snapshots")?;
                let from_pos = pos(from.as_str()).ok_or("base missing on source")?;
                let base = &source[from_pos];
                if Some(base.guid) != step.from_guid || newest.guid != base.guid {
                    return Err(format!(
                        "{step}: base guid {} is not the target's newest {}",
                        base.guid, newest.guid
                    ));
                }
                if from.is_bookmark() && (!b.caps.bookmarks || step.intermediates) {
                    return Err(format!("{step}: bookmark base not allowed here"));
                }
                if from_pos >= to_pos {
                    return Err(format!("{step}: base not older than target"));
                }
                if step.intermediates {
                    source[from_pos + 1..=to_pos]
                        .iter()
                        .filter(|v| !v.name.is_bookmark() && v.guid != base.guid)
                        .collect()
                } else {
                    vec![&source[to_pos]]
                }
            }
        };
        let t = target.get_or_insert_with(Vec::new);
        for v in new {
            let txg = t.iter().map(|v| v.createtxg.0).max().unwrap_or(500) + 1;
            if t.iter().any(|x| x.name.short() == v.name.short()) {
                return Err(format!("{step}: target already has {}", v.name.short()));
            }
            t.push(snap_version(tds, v.name.short(), v.guid.0, txg, false));
            transferred.push(v.guid);
        }
    }
    Ok((target, transferred))
}

/// The guids the plan must transfer, derived from the scenario without the
/// planner: the included source snapshots newer than the target's newest
/// (after any rollback), or the initial policy's choice; a resumed stream's
/// snapshot first.
fn expected_transfers(b: &Built, plan: &DatasetPlan) -> Vec<Guid> {
    let source = diff::sorted(&b.input.source_versions);
    let usable = |v: &&Version| b.caps.bookmarks || !v.name.is_bookmark();
    let included = |v: &&Version| !v.name.is_bookmark() && b.policy.includes(v.name.short());
    let mut out = Vec::new();
    let start;
    let resumed = plan.steps().first().filter(|s| s.resume_token.is_some());
    if let Some(r) = resumed {
        out.push(r.to_guid);
        start = source.iter().position(|v| v.guid == r.to_guid).unwrap() + 1;
    } else {
        let t = b
            .input
            .target_versions
            .as_deref()
            .map(diff::sorted_snapshots);
        let t = if plan.discard_partial_receive && t.as_ref().is_some_and(Vec::is_empty) {
            None
        } else {
            t
        };
        match t {
            None => {
                let inc: Vec<&Version> = source.iter().filter(included).collect();
                return match b.policy.initial {
                    InitialPolicy::Fail => Vec::new(),
                    InitialPolicy::MostRecent => inc.last().map(|v| v.guid).into_iter().collect(),
                    InitialPolicy::AllOldestFirst => inc.iter().map(|v| v.guid).collect(),
                };
            }
            Some(t) => {
                let newest = match &plan.rollback {
                    Some(rb) => t.iter().find(|v| v.name.as_str() == rb.to.as_str()),
                    None => t.last(),
                };
                let Some(newest) = newest else {
                    return Vec::new();
                };
                // The base: the source version with the newest's guid.
                if let Some(i) = source
                    .iter()
                    .filter(usable)
                    .filter(|v| v.guid == newest.guid)
                    .filter_map(|v| source.iter().position(|x| x.name == v.name))
                    .max()
                {
                    start = i + 1;
                } else {
                    return Vec::new();
                }
            }
        }
    }
    let skip = out.first().copied();
    out.extend(
        source[start..]
            .iter()
            .filter(included)
            .map(|v| v.guid)
            .filter(|g| Some(*g) != skip),
    );
    out
}

/// Is a conflict justified by the scenario?
fn check_conflict(b: &Built, c: &Conflict) -> Result<(), String> {
    let src_snaps: Vec<&Version> = b
        .input
        .source_versions
        .iter()
        .filter(|v| !v.name.is_bookmark())
        .collect();
    let usable: BTreeSet<Guid> = b
        .input
        .source_versions
        .iter()
        .filter(|v| b.caps.bookmarks || !v.name.is_bookmark())
        .map(|v| v.guid)
        .collect();
    let target = b
        .input
        .target_versions
        .as_deref()
        .map(diff::sorted_snapshots);
    match c {
        Conflict::NoSourceSnapshots => {
            if src_snaps.iter().any(|v| b.policy.includes(v.name.short())) && target.is_none() {
                return Err("initial with included snapshots called NoSourceSnapshots".into());
            }
        }
        Conflict::NoCommonBase { .. } => {
            if target
                .as_ref()
                .is_some_and(|t| t.iter().any(|v| usable.contains(&v.guid)))
            {
                return Err("NoCommonBase though a guid is shared".into());
            }
        }
        Conflict::TargetDiverged { target_only, .. } => {
            let t = target.ok_or("diverged without target")?;
            let newest = t.last().ok_or("diverged without target snapshots")?;
            if usable.contains(&newest.guid) {
                return Err("diverged though the target's newest is on the source".into());
            }
            let rollable = target_only
                .iter()
                .all(|v| b.policy.owns(v.name.short()) && v.userrefs.unwrap_or(0) == 0);
            if b.policy.force_rollback && rollable {
                return Err("diverged though a rollback was allowed".into());
            }
        }
        Conflict::TargetModified { .. } => {
            if !b.input.target_modified || b.policy.force_rollback {
                return Err("TargetModified without cause".into());
            }
        }
        Conflict::InitialRefused { .. } => {
            if b.policy.initial != InitialPolicy::Fail {
                return Err("InitialRefused without policy".into());
            }
        }
        Conflict::ParentMissing { .. } => return Err("ParentMissing in a single plan".into()),
    }
    Ok(())
}

/// Could two consecutive steps have been one `-I`?
fn mergeable(b: &Built, s1: &Step, s2: &Step) -> bool {
    let Some(from) = &s1.from else { return false };
    if !b.policy.use_intermediates
        || from.is_bookmark()
        || s1.resume_token.is_some()
        || s2.resume_token.is_some()
    {
        return false;
    }
    let source = diff::sorted(&b.input.source_versions);
    let (Some(i), Some(j)) = (
        source.iter().position(|v| v.name == *from),
        source
            .iter()
            .position(|v| v.name.as_str() == s2.to.as_str()),
    ) else {
        return false;
    };
    source[i + 1..=j]
        .iter()
        .filter(|v| !v.name.is_bookmark())
        .all(|v| b.policy.includes(v.name.short()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn plans_apply_cleanly_and_converge(sc in scenario()) {
        let b = build(&sc);
        let plan = plan_dataset(&b.input, &b.policy, &b.caps);
        if let Some(c) = plan.conflict() {
            check_conflict(&b, c).map_err(|e| TestCaseError::fail(format!("{e}: {plan:#?}")))?;
            return Ok(());
        }
        let steps = plan.steps();
        // Never skip the common base: the first incremental step starts at
        // the target's newest snapshot (after any rollback).
        if let (Some(first), Some(t)) = (steps.first(), b.input.target_versions.as_deref()) {
            let t = diff::sorted_snapshots(t);
            let base = match &plan.rollback {
                Some(rb) => t.iter().find(|v| v.name.as_str() == rb.to.as_str()),
                None => t.last(),
            };
            if first.from.is_some() {
                prop_assert_eq!(first.from_guid, base.map(|v| v.guid), "{:#?}", plan);
            }
        }
        prop_assert!(b.policy.use_intermediates || steps.iter().all(|s| !s.intermediates));
        for w in steps.windows(2) {
            prop_assert!(!mergeable(&b, &w[0], &w[1]), "{} and {} could be one -I: {:#?}", w[0], w[1], plan);
        }
        let (after, transferred) = apply(&b, &plan)
            .map_err(|e| TestCaseError::fail(format!("{e}: {plan:#?}")))?;
        let want = expected_transfers(&b, &plan);
        prop_assert_eq!(&transferred, &want, "{:#?}", plan);
        // The target only gains source snapshots, and ends at the newest
        // one it should have.
        let src_guids: BTreeSet<Guid> = b.input.source_versions.iter().map(|v| v.guid).collect();
        prop_assert!(transferred.iter().all(|g| src_guids.contains(g)));
        let before: BTreeSet<Guid> = b.input.target_versions.iter().flatten().map(|v| v.guid).collect();
        if let Some(t) = &after {
            prop_assert!(t.iter().all(|v| src_guids.contains(&v.guid) || before.contains(&v.guid)));
            if let Some(last) = want.last() {
                prop_assert_eq!(t.last().map(|v| v.guid), Some(*last));
            }
        }
        // Planning again on the result has nothing left to do.
        if after.is_some() {
            let again = DatasetPlanInput {
                target_versions: after,
                resume_token: None,
                target_modified: false,
                ..b.input.clone()
            };
            let replan = plan_dataset(&again, &b.policy, &b.caps);
            prop_assert!(replan.is_noop(), "replan: {}\nfirst: {:#?}", render(&replan), plan);
        }
    }

    #[test]
    fn a_valid_resume_token_is_always_used(sc in scenario()) {
        let b = build(&sc);
        let plan = plan_dataset(&b.input, &b.policy, &b.caps);
        let Some(ResumeToken { decoded: Some(info), .. }) = &b.input.resume_token else {
            return Ok(());
        };
        let source = diff::sorted(&b.input.source_versions);
        let t = b.input.target_versions.as_deref().map(diff::sorted_snapshots).unwrap_or_default();
        let to = source.iter().position(|v| !v.name.is_bookmark() && v.guid == info.to_guid);
        let from_ok = match info.from_guid {
            None => t.is_empty(),
            Some(g) => source.iter().position(|v| v.guid == g
                && (b.caps.bookmarks || !v.name.is_bookmark()))
                .zip(to)
                .is_some_and(|(f, to)| f < to),
        };
        let valid = b.caps.resumable && to.is_some() && from_ok;
        let resumed = plan.steps().first().is_some_and(|s| s.resume_token.is_some());
        if valid && !matches!(plan.action, Action::Conflict(_)) {
            prop_assert!(resumed, "{:#?}", plan);
        }
        prop_assert_eq!(plan.discard_partial_receive, !valid, "{:#?}", plan);
    }

    #[test]
    fn input_order_does_not_matter(sc in scenario(), seed in any::<u64>()) {
        let b = build(&sc);
        let plan = plan_dataset(&b.input, &b.policy, &b.caps);
        let mut shuffled = b.input.clone();
        // A deterministic permutation: rotate and reverse.
        let n = shuffled.source_versions.len().max(1);
        shuffled.source_versions.rotate_left(usize::try_from(seed).unwrap_or(0) % n);
        shuffled.source_versions.reverse();
        if let Some(t) = shuffled.target_versions.as_mut() {
            t.reverse();
        }
        prop_assert_eq!(plan_dataset(&shuffled, &b.policy, &b.caps), plan);
    }
}

/// The generator must reach the interesting cases, or the properties above
/// hold vacuously.
#[test]
fn scenarios_cover_the_interesting_cases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..2000 {
        let sc = scenario().new_tree(&mut runner).unwrap().current();
        let b = build(&sc);
        let plan = plan_dataset(&b.input, &b.policy, &b.caps);
        let s = plan.steps();
        let mut hit = |k, yes: bool| *seen.entry(k).or_default() += usize::from(yes);
        hit("up-to-date", matches!(plan.action, Action::UpToDate));
        hit("full", s.iter().any(|s| s.from.is_none()));
        hit("-I", s.iter().any(|s| s.intermediates));
        hit(
            "split",
            s.len() >= 2 && s.iter().any(|s| s.from.is_some() && !s.intermediates),
        );
        hit("resume", s.iter().any(|s| s.resume_token.is_some()));
        hit("discard", plan.discard_partial_receive);
        hit("rollback", plan.rollback.is_some());
        hit(
            "bookmark base",
            s.iter()
                .any(|s| s.from.as_ref().is_some_and(VersionName::is_bookmark)),
        );
        hit(
            "rollback refused",
            plan.notes
                .iter()
                .any(|n| matches!(n, Note::RollbackRefused { .. })),
        );
        for kind in [
            "no-common-base",
            "target-diverged",
            "target-modified",
            "initial-refused",
            "no-source-snapshots",
        ] {
            hit(
                kind,
                plan.conflict()
                    .is_some_and(|c| serde_json::to_value(c).unwrap()["kind"] == kind),
            );
        }
    }
    let thin: Vec<_> = seen.iter().filter(|(_, n)| **n < 10).collect();
    assert!(
        thin.is_empty(),
        "rarely generated: {thin:?} (all: {seen:?})"
    );
}
