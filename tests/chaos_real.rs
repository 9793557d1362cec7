//! Chaos runner, CI form (issue 8 item 1): a tree of datasets on a real
//! source pool (one child with a hostile name) whose files change every
//! round, replicated to a local target pool, while a seeded RNG injects one
//! fault per round: `kill -9` of our `zfs send` or `zfs receive` child
//! mid-stream, a cancellation mid-stream, a concurrent second run of the same
//! job, a foreign snapshot on the source, or nothing. After each fault the
//! job is run again (at most 3 times) until it converges, then invariants are
//! checked: every target snapshot is a source snapshot (same name and guid),
//! the target's files equal the source's, the only holds (userrefs) left are
//! on the current base, no leftover or partial dataset on the target, and
//! foreign snapshots untouched on both sides.
//!
//! `ZFSREPL_CHAOS_SEED` (default fixed, printed) and `ZFSREPL_CHAOS_FAULTS`
//! (default 20) choose the run; the long form is e.g. 500 faults.
//! zfs-fuse: killing the `zfs` client does not stop the daemon's side of the
//! stream, so a "killed" receive may still complete: faults only require
//! that the next runs converge and the invariants hold.
//!
//! Concurrent runs take the dataset locks (`zfsrepl_core::lock`) as
//! `zfsrepl send` and the daemon do; the executor itself does not lock.
//! `ZFSREPL_CHAOS_UNLOCKED=1` runs two runs of one job without the locks
//! (possible only through the library). It found a zfs-fuse hold left on a
//! source sync snapshot that no `zfs release` of the job's tag removes: the
//! loser's receive failed and our abort killed its `zfs send -I` at once,
//! and zfs-fuse keeps the temporary holds of a send killed mid-ioctl. Fixed
//! by letting a stopped child end by itself on its closed pipe
//! (`zfsrepl_core::zfs::runner::STOP_GRACE`): seeds 7 and 844503576277,
//! which failed at rounds 4 and 14, now survive 60 faults each unlocked;
//! with a zero grace seed 7 fails at round 4 again.
//! Never skipped: without ZFS, `TestPool::new` fails the test.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use zfsrepl_core::lock::{LockDir, LockError};
use zfsrepl_core::replication::execute::{BytesOnly, ExecOptions, ExecReport, execute};
use zfsrepl_core::replication::gather::gather_tree_input;
use zfsrepl_core::replication::{ReplicationPolicy, SyncJob, plan_tree};
use zfsrepl_core::stream::{CancelToken, CopyOptions};
use zfsrepl_core::testing::{SplitMix64 as Rng, TestPool, kill_zfs_child, unmount_retrying};
use zfsrepl_core::zfs::{ListSpec, LocalRunner};
use zfsrepl_core::{DatasetName, Guid, ZfsCli, ZfsRead, ZfsWrite};

static CLOCK: AtomicU32 = AtomicU32::new(0);

/// The tree, relative to the source root `data` (and the target root `copy`).
const CHILDREN: [&str; 3] = ["", "/plain", "/-x y: z.w"];

fn job() -> SyncJob {
    SyncJob::new("chaos job", "the target")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillSend,
    KillReceive,
    Cancel,
    Concurrent,
    ForeignSnapshot,
    Nothing,
}

const FAULTS: [Fault; 6] = [
    Fault::KillSend,
    Fault::KillReceive,
    Fault::Cancel,
    Fault::Concurrent,
    Fault::ForeignSnapshot,
    Fault::Nothing,
];

/// One run of the job: a sync snapshot, gather, plan, execute.
fn run_with(
    zfs: &ZfsCli<LocalRunner>,
    sroot: &DatasetName,
    droot: &DatasetName,
    copy: CopyOptions,
    progress: &dyn Fn(u64, Duration),
    cancel: &CancelToken,
) -> Result<ExecReport, String> {
    let j = job();
    // Distinct, increasing times even for runs within one second.
    let t = jiff::Timestamp::now()
        + jiff::SignedDuration::from_secs(i64::from(CLOCK.fetch_add(1, Ordering::SeqCst)));
    zfs.snapshot_recursive(&sroot.snapshot(&j.snapshot_name(t)).unwrap(), &[])
        .map_err(|e| format!("snapshot: {e}"))?;
    let input = gather_tree_input(zfs, zfs, sroot, droot, true).map_err(|e| e.to_string())?;
    let policy = ReplicationPolicy {
        sync_prefix: Some(j.prefix()),
        ..ReplicationPolicy::default()
    };
    let plan = plan_tree(&input, &policy, zfs.capabilities());
    let opts = ExecOptions {
        copy,
        sync: Some(j),
        ..ExecOptions::default()
    };
    Ok(execute(
        zfs,
        zfs,
        &input,
        &plan,
        &opts,
        &BytesOnly(progress),
        cancel,
    ))
}

fn plain_run(
    zfs: &ZfsCli<LocalRunner>,
    sroot: &DatasetName,
    droot: &DatasetName,
) -> Result<ExecReport, String> {
    run_with(
        zfs,
        sroot,
        droot,
        CopyOptions::default(),
        &|_, _| {},
        &CancelToken::new(),
    )
}

/// A run slowed to 4 MiB/s whose `zfs <sub>` is killed (or which is
/// cancelled, for "cancel") once 256 KiB of a stream went. Returns whether
/// the fault landed (the stream may end before, or between children).
fn faulty_run(
    zfs: &ZfsCli<LocalRunner>,
    sroot: &DatasetName,
    droot: &DatasetName,
    sub: &str,
    needle: &str,
) -> bool {
    let fired = AtomicBool::new(false);
    let landed = AtomicBool::new(false);
    let cancel = CancelToken::new();
    let progress = |bytes: u64, _: Duration| {
        if bytes >= 256 << 10 && !fired.swap(true, Ordering::SeqCst) {
            if sub == "cancel" {
                cancel.cancel();
                landed.store(true, Ordering::SeqCst);
            } else if kill_zfs_child(sub, needle) {
                landed.store(true, Ordering::SeqCst);
            }
        }
    };
    let copy = CopyOptions {
        bwlimit: Some(4 << 20),
        progress_interval: Duration::from_millis(20),
        ..CopyOptions::default()
    };
    // The outcome may be a failure or (zfs-fuse) a completed receive.
    let _ = run_with(zfs, sroot, droot, copy, &progress, &cancel);
    landed.load(Ordering::SeqCst)
}

/// Every dataset under `root` with its snapshots: name -> (short, guid,
/// userrefs), oldest first.
type Tree = BTreeMap<String, Vec<(String, Guid, u64)>>;

fn tree(zfs: &ZfsCli<LocalRunner>, root: &DatasetName) -> Tree {
    let l = zfs.list(&ListSpec::all(vec![root.clone()])).unwrap();
    l.iter()
        .map(|d| {
            let rel = d.name.as_str()[root.as_str().len()..].to_owned();
            let s = d
                .snapshots()
                .map(|v| (v.name.short().to_owned(), v.guid, v.userrefs.unwrap()))
                .collect();
            (rel, s)
        })
        .collect()
}

fn zfs_ok(args: &[&str]) -> Result<(), String> {
    let out = Command::new("zfs").args(args).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Mounts the target tree (received datasets are canmount=noauto), parents
/// first, compares every file with the source's byte for byte, then
/// unmounts it again, children first.
fn same_files(src: &TestPool, dst: &TestPool, what: &str) {
    for c in CHILDREN {
        let ds = dst.ds(&format!("copy{c}"));
        zfs_ok(&["mount", ds.as_str()]).unwrap_or_else(|e| panic!("{what}: mount {ds}: {e}"));
    }
    for c in CHILDREN {
        let src_dir = src.mountpoint().join(format!("data{c}"));
        let dst_dir = dst.mountpoint().join(format!("copy{c}"));
        let mut n = 0;
        for e in std::fs::read_dir(&src_dir).unwrap().flatten() {
            if !e.file_type().unwrap().is_file() {
                continue;
            }
            let a = std::fs::read(e.path()).unwrap();
            let b = std::fs::read(dst_dir.join(e.file_name())).unwrap_or_else(|err| {
                panic!("{what}: {c} {:?} on the target: {err}", e.file_name())
            });
            assert!(a == b, "{what}: {c} {:?} differs", e.file_name());
            n += 1;
        }
        let m = std::fs::read_dir(&dst_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .count();
        assert_eq!(n, m, "{what}: {c}: as many files on both sides");
        assert!(n > 0, "{what}: no files compared in {c}");
    }
    for c in CHILDREN.iter().rev() {
        let ds = dst.ds(&format!("copy{c}"));
        assert!(unmount_retrying(&ds), "{what}: cannot unmount {ds}");
    }
}

/// The invariants after a converged run.
#[allow(clippy::too_many_arguments)]
fn check(
    what: &str,
    zfs: &ZfsCli<LocalRunner>,
    src: &TestPool,
    dst: &TestPool,
    foreign: &BTreeMap<String, Guid>,
    foreign_on_target: &mut BTreeMap<String, Guid>,
    compare_files: bool,
) {
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    let s = tree(zfs, &sroot);
    let d = tree(zfs, &droot);
    // No leftover, partial or temporary dataset: the target tree is the
    // source tree, and the target pool holds nothing else.
    let want: BTreeSet<String> = CHILDREN.iter().map(|c| (*c).to_owned()).collect();
    assert_eq!(s.keys().cloned().collect::<BTreeSet<_>>(), want, "{what}");
    assert_eq!(
        d.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "{what}: {d:#?}"
    );
    let all = tree(zfs, &dst.root());
    assert_eq!(all.len(), 1 + want.len(), "{what}: target pool: {all:#?}");
    for c in CHILDREN {
        let (ss, dd) = (&s[c], &d[c]);
        // Every target snapshot is a source snapshot: same name, same guid
        // (the same data), in the same order.
        for t in dd {
            assert!(
                ss.iter().any(|x| x.0 == t.0 && x.1 == t.1),
                "{what}: {c}@{} on the target is not on the source: {ss:?} {dd:?}",
                t.0
            );
        }
        // Holds: the base (the latest snapshot on the target) held once on
        // both sides, nothing else held.
        let base = dd.last().unwrap_or_else(|| panic!("{what}: {c}: no base"));
        assert_eq!(base.2, 1, "{what}: {c}: base held on the target: {dd:?}");
        for x in ss {
            let refs = u64::from(x.0 == base.0);
            assert_eq!(x.2, refs, "{what}: {c}@{} on the source: {ss:?}", x.0);
        }
        for x in &dd[..dd.len() - 1] {
            assert_eq!(x.2, 0, "{what}: {c}@{} on the target: {dd:?}", x.0);
        }
        // Foreign snapshots: untouched on the source, and once on the
        // target, kept there.
        for (name, guid) in foreign {
            let Some(short) = name.strip_prefix(&format!("{c}@")) else {
                continue;
            };
            assert!(
                ss.iter().any(|x| x.0 == short && x.1 == *guid),
                "{what}: foreign {name} touched on the source: {ss:?}"
            );
            if let Some(t) = dd.iter().find(|x| x.0 == short) {
                assert_eq!(t.1, *guid, "{what}: foreign {name}");
                foreign_on_target.insert(name.clone(), *guid);
            }
        }
        for (name, guid) in foreign_on_target.iter() {
            if let Some(short) = name.strip_prefix(&format!("{c}@")) {
                assert!(
                    dd.iter().any(|x| x.0 == short && x.1 == *guid),
                    "{what}: foreign {name} gone from the target: {dd:?}"
                );
            }
        }
    }
    if compare_files {
        same_files(src, dst, what);
    }
}

/// Changes the source's files: one child gets about 1 MiB of new data, the
/// others a few small files rewritten.
fn change(src: &TestPool, rng: &mut Rng, round: usize) {
    let big = rng.below(CHILDREN.len() as u64) as usize;
    for (i, c) in CHILDREN.iter().enumerate() {
        let dir = src.mountpoint().join(format!("data{c}"));
        let f = format!("f{}", rng.below(3));
        let n = if i == big {
            (1 << 20) + rng.below(256 << 10) as usize
        } else {
            4096 + rng.below(60_000) as usize
        };
        std::fs::write(dir.join(&f), rng.bytes(n)).unwrap();
        if round % 4 == 3 {
            let _ = std::fs::remove_file(dir.join(format!("f{}", rng.below(3))));
            std::fs::write(dir.join("keep"), rng.bytes(100)).unwrap();
        }
    }
}

#[test]
fn chaos_runner_converges_after_every_fault() {
    let started = Instant::now();
    let seed = std::env::var("ZFSREPL_CHAOS_SEED")
        .ok()
        .map_or(0x00C4_A055_EED5, |s| s.parse().expect("ZFSREPL_CHAOS_SEED"));
    let faults: usize = std::env::var("ZFSREPL_CHAOS_FAULTS")
        .ok()
        .map_or(20, |s| s.parse().expect("ZFSREPL_CHAOS_FAULTS"));
    eprintln!("chaos: seed {seed}, {faults} faults (ZFSREPL_CHAOS_SEED to replay)");
    let mut rng = Rng(seed);
    let unlocked = std::env::var_os("ZFSREPL_CHAOS_UNLOCKED").is_some();
    let locks_dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(locks_dir.path());

    let src = TestPool::mounted();
    let dst = TestPool::mounted();
    // Reading files to compare them must not count as a local modification.
    let out = Command::new("zfs")
        .args(["set", "atime=off", dst.name()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in CHILDREN {
        src.apply(&format!("+ \"data{c}\""));
    }
    let zfs = src.zfs();
    let (sroot, droot) = (src.ds("data"), dst.ds("copy"));
    change(&src, &mut rng, 0);
    let r = plain_run(&zfs, &sroot, &droot).unwrap();
    assert_eq!(r.failures(), 0, "{r:#?}");

    let mut foreign: BTreeMap<String, Guid> = BTreeMap::new();
    let mut foreign_on_target = BTreeMap::new();
    let (mut injected, mut landed, mut survived) = (0, 0, 0);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut round = 0;
    // "No fault" rounds come on top of the faults asked for.
    while injected < faults {
        round += 1;
        change(&src, &mut rng, round);
        let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
        let what = format!("round {round} ({fault:?}, seed {seed})");
        *tally.entry(format!("{fault:?}")).or_default() += 1;
        let hit = match fault {
            Fault::KillSend => faulty_run(&zfs, &sroot, &droot, "send", src.name()),
            Fault::KillReceive => faulty_run(&zfs, &sroot, &droot, "receive", dst.name()),
            Fault::Cancel => faulty_run(&zfs, &sroot, &droot, "cancel", ""),
            Fault::Concurrent => {
                // Two runs of the same job at once, each taking the dataset
                // locks first as `zfsrepl send` and the daemon do: the loser
                // fails cleanly (busy), or both run one after the other.
                // ZFSREPL_CHAOS_UNLOCKED=1 skips the locks (see the module
                // doc: zfs-fuse then leaves an orphan hold).
                let gate = std::sync::Barrier::new(2);
                let one = || {
                    gate.wait();
                    let _held = if unlocked {
                        None
                    } else {
                        match locks.try_lock_all([(None, &sroot), (None, &droot)], "chaos run") {
                            Ok(l) => Some(l),
                            Err(e) => {
                                assert!(matches!(e, LockError::Busy { .. }), "{what}: {e}");
                                return false;
                            }
                        }
                    };
                    plain_run(&src.zfs(), &sroot, &droot).is_ok()
                };
                std::thread::scope(|s| {
                    let a = s.spawn(one);
                    let b = s.spawn(one);
                    let (a, b) = (a.join(), b.join());
                    assert!(a.is_ok() && b.is_ok(), "{what}: a run panicked");
                });
                true
            }
            Fault::ForeignSnapshot => {
                let short = format!("foreign-{round}");
                src.apply(&format!("+ \"data@{short}\""));
                // Recorded with its guid, per dataset (not recursive: only
                // the root gets it).
                let t = tree(&zfs, &sroot);
                let g = t[""].iter().find(|x| x.0 == short).unwrap().1;
                foreign.insert(format!("@{short}"), g);
                true
            }
            Fault::Nothing => false,
        };
        if fault != Fault::Nothing {
            injected += 1;
            landed += usize::from(hit);
        }
        let mut ok = false;
        let mut last = String::new();
        for _ in 0..3 {
            match plain_run(&zfs, &sroot, &droot) {
                Ok(r) if r.failures() == 0 => {
                    let w: Vec<&String> = r
                        .warnings
                        .iter()
                        .chain(r.datasets.iter().flat_map(|d| d.warnings.iter()))
                        .collect();
                    if !w.is_empty() {
                        eprintln!("chaos: {what}: converged with warnings: {w:?}");
                    }
                    ok = true;
                    break;
                }
                Ok(r) => last = format!("{r:#?}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(ok, "{what}: did not converge in 3 runs: {last}");
        let compare = round % 5 == 0 || injected == faults;
        check(
            &what,
            &zfs,
            &src,
            &dst,
            &foreign,
            &mut foreign_on_target,
            compare,
        );
        if fault != Fault::Nothing {
            survived += 1;
        }
    }
    eprintln!("chaos: faults by kind {tally:?}; {landed} landed mid-stream or as intended");
    eprintln!(
        "chaos: {injected} faults injected, {survived} survived, seed {seed} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(injected, survived);
}
