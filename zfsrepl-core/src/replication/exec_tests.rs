//! The executor on the in-memory OpenZFS model: sync snapshots, holds,
//! bookmarks and cleanup; failures that keep the old base; resume and stale
//! tokens; modified targets; property safety on both kinds of ZFS.

use std::io::{Read, Write};

use super::execute::{ExecOptions, ExecReport, execute};
use super::gather::gather_tree_input;
use super::plan::{Action, ReplicationPlan, ReplicationPolicy, TreeInput, plan_tree};
use super::sync::SyncJob;
use crate::model::FakeZfs;
use crate::name::{DatasetName, EntityName, SnapshotName};
use crate::stream::{CancelToken, NoProgress};
use crate::zfs::{
    Capabilities, RecvSink, RecvSpec, SendFlags, SendSource, SendSpec, ZfsRead, ZfsStream, ZfsWrite,
};

fn ds(s: &str) -> DatasetName {
    DatasetName::parse(s).unwrap()
}

fn job() -> SyncJob {
    SyncJob::new("j", "t1")
}

fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_790_000_000 + secs).unwrap()
}

struct Run {
    input: TreeInput,
    plan: ReplicationPlan,
    report: ExecReport,
}

/// One `zfsrepl send -r tank/data back/data`: sync snapshot at `t` (when
/// given), gather, plan, execute.
fn run(src: &FakeZfs, dst: &FakeZfs, t: Option<i64>, force_rollback: bool) -> Run {
    let j = job();
    if let Some(t) = t {
        let snap = ds("tank/data").snapshot(&j.snapshot_name(at(t))).unwrap();
        src.snapshot_recursive(&snap, &[]).unwrap();
    }
    let input = gather_tree_input(src, dst, &ds("tank/data"), &ds("back/data"), true).unwrap();
    let policy = ReplicationPolicy {
        force_rollback,
        sync_prefix: Some(j.prefix()),
        ..ReplicationPolicy::default()
    };
    let mut caps = dst.capabilities().clone();
    caps.bookmarks &= src.capabilities().bookmarks;
    caps.resumable &= src.capabilities().resumable;
    let plan = plan_tree(&input, &policy, &caps);
    let opts = ExecOptions {
        sync: Some(j),
        ..ExecOptions::default()
    };
    let report = execute(
        src,
        dst,
        &input,
        &plan,
        &opts,
        &NoProgress,
        &CancelToken::new(),
    );
    Run {
        input,
        plan,
        report,
    }
}

/// The short names of a dataset's snapshots, oldest first.
fn snaps(z: &FakeZfs, name: &str) -> Vec<String> {
    z.list(&crate::zfs::ListSpec {
        recursive: false,
        ..crate::zfs::ListSpec::all(vec![ds(name)])
    })
    .unwrap()[0]
        .snapshots()
        .map(|v| v.name.short().to_owned())
        .collect()
}

fn holds(z: &FakeZfs, snap: &str) -> Vec<String> {
    z.holds(&SnapshotName::parse(snap).unwrap()).unwrap()
}

#[test]
fn sync_snapshots_are_held_bookmarked_and_cleaned_after_success_only() {
    let src = FakeZfs::from_fixture(
        "+ tank\n+ tank/data\n~ tank/data\n+ tank/data@autosnap_1\n\
         + tank/data@zfsrepl_sync_other_t1_20260101T000000.000Z\n",
    );
    let dst = FakeZfs::from_fixture("+ back\n");
    let j = job();
    let (s1, s2, s3) = (
        j.snapshot_name(at(1)),
        j.snapshot_name(at(2)),
        j.snapshot_name(at(3)),
    );
    let r = run(&src, &dst, Some(1), false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(snaps(&dst, "back/data"), vec![s1.clone()]);
    let tag = j.hold_tag();
    assert_eq!(holds(&src, &format!("tank/data@{s1}")), vec![tag.clone()]);
    assert_eq!(holds(&dst, &format!("back/data@{s1}")), vec![tag.clone()]);
    assert!(
        src.dump().contains(&format!("+ tank/data#{s1}")),
        "{}",
        src.dump()
    );
    // The target is never mounted and cannot mount by itself.
    let props = dst
        .get_props(
            &[EntityName::Dataset(ds("back/data"))],
            &["canmount", "mounted"],
            false,
        )
        .unwrap();
    let v: Vec<&str> = props.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(v, ["noauto", "no"], "{props:?}");

    // The next run: the new base is held, the old sync snapshot and its
    // bookmark are gone on both sides; foreign snapshots stay.
    src.write("tank/data", 4096);
    let r = run(&src, &dst, Some(2), false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(
        snaps(&src, "tank/data"),
        [
            "autosnap_1".to_owned(),
            "zfsrepl_sync_other_t1_20260101T000000.000Z".to_owned(),
            s2.clone()
        ]
    );
    assert_eq!(snaps(&dst, "back/data"), vec![s2.clone()]);
    assert_eq!(holds(&src, &format!("tank/data@{s2}")), vec![tag.clone()]);
    assert_eq!(holds(&dst, &format!("back/data@{s2}")), vec![tag.clone()]);
    let dump = src.dump();
    assert!(
        !dump.contains(&format!("#{s1}")) && dump.contains(&format!("#{s2}")),
        "{dump}"
    );
    assert_eq!(r.report.datasets[0].cleaned.len(), 3, "{:#?}", r.report);

    // A failing run (the target was modified) cleans nothing: the old
    // base stays, held, on both sides.
    src.write("tank/data", 4096);
    dst.write("back/data", 10);
    let r = run(&src, &dst, Some(3), false);
    assert_eq!(r.report.failures(), 1);
    assert!(
        r.report.datasets[0]
            .error
            .as_deref()
            .unwrap()
            .contains("modified"),
        "{:#?}",
        r.report
    );
    assert_eq!(snaps(&dst, "back/data"), vec![s2.clone()]);
    assert_eq!(holds(&dst, &format!("back/data@{s2}")), vec![tag.clone()]);
    assert!(snaps(&src, "tank/data").contains(&s2));
    assert!(snaps(&src, "tank/data").contains(&s3));

    // --force-rollback: the modification is rolled back, both new sync
    // snapshots arrive in one -I, and only s3 remains.
    let r = run(&src, &dst, None, true);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(snaps(&dst, "back/data"), vec![s3.clone()]);
    assert_eq!(holds(&dst, &format!("back/data@{s3}")), [tag]);
    assert!(!snaps(&src, "tank/data").contains(&s2));
}

#[test]
fn no_sync_snap_holds_existing_snapshots_and_releases_the_previous_base() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n~ tank/data\n+ tank/data@a\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    let tag = job().hold_tag();
    assert_eq!(run(&src, &dst, None, false).report.failures(), 0);
    assert_eq!(holds(&src, "tank/data@a"), vec![tag.clone()]);
    src.apply_fixture("~ tank/data\n+ tank/data@b\n").unwrap();
    assert_eq!(run(&src, &dst, None, false).report.failures(), 0);
    assert!(holds(&src, "tank/data@a").is_empty());
    assert!(holds(&dst, "back/data@a").is_empty());
    assert_eq!(holds(&dst, "back/data@b"), [tag]);
    // Nothing of anyone else's was destroyed.
    assert_eq!(snaps(&src, "tank/data"), ["a", "b"]);
    assert_eq!(snaps(&dst, "back/data"), ["a", "b"]);
}

/// Starts a resumable receive of `spec` into `target` and cuts it after
/// `n` bytes: the target keeps a resume token.
fn cut(src: &FakeZfs, dst: &FakeZfs, spec: SendSource, target: &str, n: usize) {
    let mut send = src
        .send(&SendSpec {
            source: spec,
            flags: SendFlags::default(),
        })
        .unwrap();
    let mut recv = dst
        .receive(&RecvSpec {
            target: Some(ds(target)),
            unmounted: true,
            resumable: true,
            ..RecvSpec::default()
        })
        .unwrap();
    let mut buf = vec![0u8; n];
    send.read_exact(&mut buf).unwrap();
    recv.write_all(&buf).unwrap();
    assert!(recv.finish().is_err());
}

#[test]
fn an_interrupted_receive_resumes_with_send_t_and_a_stale_one_is_aborted() {
    let src = FakeZfs::from_fixture(
        "+ tank\n+ tank/data\n~ tank/data bytes=100000\n+ tank/data@a\n\
         ~ tank/data bytes=100000\n+ tank/data@b\n",
    );
    let dst = FakeZfs::from_fixture("+ back\n");
    let full = |s: &str| SendSource::Full {
        snapshot: SnapshotName::parse(s).unwrap(),
    };
    let mut whole = Vec::new();
    src.send(&SendSpec {
        source: full("tank/data@b"),
        flags: SendFlags::default(),
    })
    .unwrap()
    .read_to_end(&mut whole)
    .unwrap();
    cut(&src, &dst, full("tank/data@b"), "back/data", 50_000);
    let r = run(&src, &dst, None, false);
    let steps = r.plan.datasets[0].steps();
    assert!(steps[0].resume_token.is_some(), "{:#?}", r.plan);
    assert_eq!(
        r.input.resume_tokens[&ds("back/data")].to_guid,
        steps[0].to_guid
    );
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    // The resumed stream starts after what the cut receive kept (the
    // model keeps whole 32 KiB chunks).
    assert!(
        r.report.bytes() < whole.len() as u64 - 16_000,
        "resumed, not restarted: {} of {}",
        r.report.bytes(),
        whole.len()
    );
    assert_eq!(snaps(&dst, "back/data"), ["b"]);

    // An incremental cut short, then its snapshot destroyed on the
    // source: the token is stale, the partial receive is aborted and the
    // run replans from the common base.
    src.apply_fixture("~ tank/data bytes=100000\n+ tank/data@c\n~ tank/data\n+ tank/data@d\n")
        .unwrap();
    cut(
        &src,
        &dst,
        SendSource::Incremental {
            from: crate::zfs::VersionName::Snapshot(SnapshotName::parse("tank/data@b").unwrap()),
            to: SnapshotName::parse("tank/data@c").unwrap(),
            intermediates: false,
        },
        "back/data",
        5000,
    );
    assert!(
        dst.dump().contains("receive_resume_token="),
        "{}",
        dst.dump()
    );
    src.destroy_snapshots(&[SnapshotName::parse("tank/data@c").unwrap()]);
    let r = run(&src, &dst, None, false);
    assert!(r.plan.datasets[0].discard_partial_receive, "{:#?}", r.plan);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(snaps(&dst, "back/data"), ["b", "d"]);
    assert!(!dst.dump().contains("receive_resume_token="));
}

#[test]
fn a_modified_target_is_a_conflict_unless_force_rollback() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n~ tank/data\n+ tank/data@a\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    assert_eq!(run(&src, &dst, None, false).report.failures(), 0);
    dst.write("back/data", 1);
    src.apply_fixture("~ tank/data\n+ tank/data@b\n").unwrap();
    let r = run(&src, &dst, None, false);
    assert!(r.input.target_modified.contains(&ds("back/data")));
    assert!(
        matches!(
            r.plan.datasets[0].action,
            Action::Conflict(super::Conflict::TargetModified { .. })
        ),
        "{:#?}",
        r.plan
    );
    assert_eq!(snaps(&dst, "back/data"), ["a"]);
    let r = run(&src, &dst, None, true);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(snaps(&dst, "back/data"), ["a", "b"]);
}

#[test]
fn zfs_fuse_gets_the_canmount_fixup_and_readonly() {
    let src = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    src.apply_fixture("+ tank\n+ tank/data\n~ tank/data\n+ tank/data@a\n")
        .unwrap();
    let dst = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    dst.apply_fixture("+ back\n").unwrap();
    let input = gather_tree_input(&src, &dst, &ds("tank/data"), &ds("back/data"), true).unwrap();
    let plan = plan_tree(&input, &ReplicationPolicy::default(), dst.capabilities());
    let opts = ExecOptions {
        sync: Some(job()),
        readonly: true,
        ..ExecOptions::default()
    };
    let r = execute(
        &src,
        &dst,
        &input,
        &plan,
        &opts,
        &NoProgress,
        &CancelToken::new(),
    );
    assert_eq!(r.failures(), 0, "{r:#?}");
    assert!(
        r.warnings.is_empty() && r.datasets[0].warnings.is_empty(),
        "{r:#?}"
    );
    let props = dst
        .get_props(
            &[EntityName::Dataset(ds("back/data"))],
            &["canmount", "readonly"],
            false,
        )
        .unwrap();
    let v: Vec<&str> = props.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(v, ["noauto", "on"], "{props:?}");
    // Holds work on zfs-fuse (without listing): userrefs counts ours.
    let l = dst
        .list(&crate::zfs::ListSpec::all(vec![ds("back/data")]))
        .unwrap();
    assert_eq!(l[0].versions[0].userrefs, Some(1));
}

#[test]
fn the_base_bookmark_keeps_incrementals_going_when_the_snapshot_is_gone() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n~ tank/data\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    let j = job();
    assert_eq!(run(&src, &dst, Some(1), false).report.failures(), 0);
    // Someone releases our hold and destroys the source's base snapshot.
    let base = ds("tank/data").snapshot(&j.snapshot_name(at(1))).unwrap();
    src.release(&j.hold_tag(), std::slice::from_ref(&base))
        .unwrap();
    assert!(
        src.destroy_snapshots(std::slice::from_ref(&base))[0]
            .1
            .is_ok()
    );
    src.write("tank/data", 100);
    let r = run(&src, &dst, Some(2), false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    let step = &r.plan.datasets[0].steps()[0];
    assert!(
        step.from
            .as_ref()
            .is_some_and(crate::zfs::VersionName::is_bookmark),
        "{step}"
    );
    assert_eq!(snaps(&dst, "back/data"), vec![j.snapshot_name(at(2))]);
    // The old bookmark went with the cleanup; the new one is there.
    let dump = src.dump();
    assert!(
        !dump.contains(&format!("#{}", j.snapshot_name(at(1)))),
        "{dump}"
    );
    assert!(
        dump.contains(&format!("#{}", j.snapshot_name(at(2)))),
        "{dump}"
    );
}

/// The `zfs` processes of a second run on a tree of `k` children: (source,
/// target).
fn second_run_calls(k: usize) -> (u64, u64) {
    let mut fx = String::from("+ tank\n+ tank/data\n~ tank/data\n");
    for i in 0..k {
        fx.push_str(&format!("+ tank/data/c{i}\n~ tank/data/c{i}\n"));
    }
    let src = FakeZfs::from_fixture(&fx);
    let dst = FakeZfs::from_fixture("+ back\n");
    assert_eq!(run(&src, &dst, Some(1), false).report.failures(), 0);
    src.reset_calls();
    dst.reset_calls();
    let r = run(&src, &dst, Some(2), false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(
        r.report
            .datasets
            .iter()
            .map(|d| d.cleaned.len())
            .sum::<usize>(),
        3 * (k + 1)
    );
    (src.calls(), dst.calls())
}

#[test]
fn holds_and_releases_cost_one_process_per_side_whatever_the_tree() {
    let (s4, d4) = second_run_calls(4);
    let (s8, d8) = second_run_calls(8);
    // Per dataset the source runs one send, one bookmark, one destroy of
    // the old snapshot and one of the old bookmark; the target one receive
    // and one destroy. Listing, the modified check, the sync snapshot, the
    // hold and the release do not grow with the tree.
    assert_eq!((s8 - s4) / 4, 4, "source: {s4} then {s8}");
    assert_eq!((d8 - d4) / 4, 2, "target: {d4} then {d8}");
    // Fixed: source snapshot -r, list, hold, release; target list, get
    // written, hold, release.
    assert_eq!(s4, 4 * 5 + 4);
    assert_eq!(d4, 2 * 5 + 4);
}

#[test]
fn without_written_a_modified_target_is_seen_by_referenced() {
    let src = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    src.apply_fixture("+ tank\n+ tank/data\n~ tank/data\n+ tank/data@a\n")
        .unwrap();
    let dst = FakeZfs::with_capabilities(Capabilities::zfs_fuse());
    dst.apply_fixture("+ back\n+ back/data\n~ back/data\n+ back/data@x\n+ back/empty\n")
        .unwrap();
    let gather = || {
        gather_tree_input(&src, &dst, &ds("tank/data"), &ds("back"), true)
            .unwrap()
            .target_modified
    };
    assert!(gather().is_empty());
    dst.write("back/data", 10);
    dst.write("back/empty", 10);
    // A dataset without snapshots is never "modified": nothing is received
    // onto it incrementally.
    assert_eq!(gather().into_iter().collect::<Vec<_>>(), [ds("back/data")]);
}

/// Sends `from -> to` into `back/data` by hand, as a run cut right after
/// its receive (before its holds and cleanup) would have.
/// `dataset@name`, parsed.
fn snap(dataset: &str, name: &str) -> SnapshotName {
    SnapshotName::parse(&format!("{dataset}@{name}")).unwrap()
}

/// Takes `tank/data@autosnap_2` and lands it on the target after
/// `autosnap_1`, as a run cut after its receive (before its holds) leaves
/// them.
fn land_autosnap_2(src: &FakeZfs, dst: &FakeZfs) {
    src.snapshot_recursive(&snap("tank/data", "autosnap_2"), &[])
        .unwrap();
    land(
        src,
        dst,
        snap("tank/data", "autosnap_1"),
        snap("tank/data", "autosnap_2"),
    );
}

fn land(src: &FakeZfs, dst: &FakeZfs, from: SnapshotName, to: SnapshotName) {
    let mut w = Vec::new();
    src.send(&SendSpec {
        source: SendSource::Incremental {
            from: crate::zfs::VersionName::Snapshot(from),
            to,
            intermediates: false,
        },
        flags: SendFlags::default(),
    })
    .unwrap()
    .read_to_end(&mut w)
    .unwrap();
    let mut sink = dst
        .receive(&RecvSpec {
            target: Some(ds("back/data")),
            unmounted: true,
            ..RecvSpec::default()
        })
        .unwrap();
    sink.write_all(&w).unwrap();
    sink.finish().unwrap();
}

/// Found by the daemon chaos runner (`chaos_daemon_real`): a receive that
/// completed although its run failed (zfs-fuse finishes a receive whose
/// client went away) left the base unheld, and the next run, finding the
/// target up to date, did not hold it either.
#[test]
fn an_up_to_date_run_holds_an_unheld_base_on_both_sides() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n+ tank/data/c\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    let j = job();
    let s1 = j.snapshot_name(at(1));
    let r = run(&src, &dst, Some(1), false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    let tag = j.hold_tag();
    let (a, b) = (format!("tank/data/c@{s1}"), format!("back/data/c@{s1}"));
    // The holds of the child are lost, as if the run had stopped before
    // them.
    for (z, s) in [(&src, &a), (&dst, &b)] {
        z.release(&tag, &[SnapshotName::parse(s).unwrap()]).unwrap();
        assert!(holds(z, s).is_empty());
    }
    let r = run(&src, &dst, None, false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert!(
        r.plan
            .datasets
            .iter()
            .all(|d| matches!(d.action, Action::UpToDate))
    );
    assert_eq!(holds(&src, &a), vec![tag.clone()]);
    assert_eq!(holds(&dst, &b), vec![tag.clone()]);
    // Held already (the root): not held twice, nothing reported.
    assert_eq!(holds(&src, &format!("tank/data@{s1}")), vec![tag.clone()]);
    assert!(r.report.warnings.is_empty(), "{:#?}", r.report.warnings);
    // And a steady no-op run runs no `zfs hold` at all.
    let before = src.dump();
    let r = run(&src, &dst, None, false);
    assert_eq!(r.report.failures(), 0);
    assert_eq!(src.dump(), before);
}

/// The same, when the cut run had moved past an older base it held: the
/// job's tag goes from the old base to the common one, on both sides, and
/// another job's hold stays where it is.
#[test]
fn an_up_to_date_run_moves_a_stale_hold_to_the_common_base() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    let j = job();
    let tag = j.hold_tag();
    let (s1, s2) = (j.snapshot_name(at(1)), j.snapshot_name(at(2)));
    assert_eq!(run(&src, &dst, Some(1), false).report.failures(), 0);
    // Another job holds s1 on the source too.
    let s1_src = SnapshotName::parse(&format!("tank/data@{s1}")).unwrap();
    src.hold("other job", std::slice::from_ref(&s1_src))
        .unwrap();
    // The next transfer (s1 -> s2) lands, but the run stops before its
    // holds and cleanup: s2 is unheld, s1 keeps this job's tag.
    let snap2 = ds("tank/data").snapshot(&s2).unwrap();
    src.snapshot_recursive(&snap2, &[]).unwrap();
    land(&src, &dst, s1_src.clone(), snap2.clone());
    let r = run(&src, &dst, None, false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(holds(&src, &format!("tank/data@{s2}")), vec![tag.clone()]);
    assert_eq!(holds(&dst, &format!("back/data@{s2}")), vec![tag.clone()]);
    assert_eq!(
        holds(&src, &format!("tank/data@{s1}")),
        vec!["other job".to_owned()]
    );
    assert!(holds(&dst, &format!("back/data@{s1}")).is_empty());
}

/// Found by the daemon chaos runner (`chaos_daemon_real`) on zfs-fuse: a
/// `zfs receive` that exits successfully before the stream's last bytes
/// were written made the step fail on `EPIPE`, so the holds did not move
/// to the snapshot that had landed, and the next run (from the landed
/// snapshot) never released the old base. A step whose receiver completed
/// and whose snapshot is on the target is done.
#[test]
fn a_receiver_done_before_its_sender_with_the_snapshot_landed_is_a_done_step() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    // Larger than the pipe buffer the copy keeps, so that a write fails.
    src.set_early_receiver_end(1 << 20);
    dst.set_early_receiver_end(0);
    let j = job();
    let tag = j.hold_tag();
    let (s1, s2) = (j.snapshot_name(at(1)), j.snapshot_name(at(2)));
    let r = run(&src, &dst, Some(1), false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    let w = &r.report.datasets[0].warnings;
    assert!(
        w.iter()
            .any(|w| w.contains("the receiver completed before the stream ended")),
        "{w:?}"
    );
    assert_eq!(holds(&dst, &format!("back/data@{s1}")), vec![tag.clone()]);
    let r = run(&src, &dst, Some(2), false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(holds(&src, &format!("tank/data@{s2}")), vec![tag.clone()]);
    assert_eq!(holds(&dst, &format!("back/data@{s2}")), vec![tag.clone()]);
    // The old base was released, so it could go as the sync snapshot it is.
    assert_eq!(snaps(&src, "tank/data"), std::slice::from_ref(&s2));
    assert_eq!(snaps(&dst, "back/data"), [s2]);
}

/// Found by the daemon chaos runner (`chaos_daemon_real`): a run cut after
/// its receive and before its holds, followed by a run that has something
/// to send (not up to date), left the job's tag on the old base forever,
/// since the next run moves the holds from the landed snapshot. (With sync
/// snapshots the old base goes as one of them; the daemon's bases are the
/// snapshot job's, which stay.) Its previous base being unheld on the
/// target shows the cut: the tag is released from the older held
/// snapshots too, and another job's hold stays.
#[test]
fn a_run_after_a_cut_one_releases_the_tag_left_on_an_older_base() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n+ tank/data@autosnap_1\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    let tag = job().hold_tag();
    assert_eq!(run(&src, &dst, None, false).report.failures(), 0);
    assert_eq!(holds(&src, "tank/data@autosnap_1"), vec![tag.clone()]);
    src.hold("other job", &[snap("tank/data", "autosnap_1")])
        .unwrap();
    // autosnap_2 lands, the run is cut before its holds.
    land_autosnap_2(&src, &dst);
    // The next run sends autosnap_2 -> autosnap_3.
    src.snapshot_recursive(&snap("tank/data", "autosnap_3"), &[])
        .unwrap();
    let r = run(&src, &dst, None, false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert_eq!(holds(&src, "tank/data@autosnap_3"), vec![tag.clone()]);
    assert_eq!(holds(&dst, "back/data@autosnap_3"), vec![tag.clone()]);
    assert_eq!(
        holds(&src, "tank/data@autosnap_1"),
        vec!["other job".to_owned()]
    );
    assert!(holds(&dst, "back/data@autosnap_1").is_empty());
    assert!(holds(&src, "tank/data@autosnap_2").is_empty());
    // Nothing of the snapshot job's was destroyed.
    assert_eq!(
        snaps(&dst, "back/data"),
        ["autosnap_1", "autosnap_2", "autosnap_3"]
    );
}

/// Found by the daemon chaos runner's long form (`chaos_daemon_real`,
/// round 276, the remote server killed): the agent died after the hold of
/// the new base and before the release of the old one, on the target. The
/// run counted as done (holds are cleanup), and every later run found
/// nothing amiss, so the old base kept the job's tag. The target is the
/// job's alone: a held snapshot there other than the base is released.
#[test]
fn a_release_lost_after_the_hold_is_made_up_on_the_target() {
    let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n+ tank/data@autosnap_1\n");
    let dst = FakeZfs::from_fixture("+ back\n");
    let tag = job().hold_tag();
    assert_eq!(run(&src, &dst, None, false).report.failures(), 0);
    land_autosnap_2(&src, &dst);
    // The source side of that run went through; on the target the new base
    // was held and the old one not released.
    src.hold(&tag, &[snap("tank/data", "autosnap_2")]).unwrap();
    src.release(&tag, &[snap("tank/data", "autosnap_1")])
        .unwrap();
    dst.hold(&tag, &[snap("back/data", "autosnap_2")]).unwrap();
    // Nothing new to send: the next run is up to date.
    let r = run(&src, &dst, None, false);
    assert_eq!(r.report.failures(), 0, "{:#?}", r.report);
    assert!(holds(&dst, "back/data@autosnap_1").is_empty());
    assert_eq!(holds(&dst, "back/data@autosnap_2"), vec![tag.clone()]);
    assert_eq!(holds(&src, "tank/data@autosnap_2"), vec![tag.clone()]);
    assert!(holds(&src, "tank/data@autosnap_1").is_empty());
    assert!(r.report.warnings.is_empty(), "{:#?}", r.report.warnings);
}
