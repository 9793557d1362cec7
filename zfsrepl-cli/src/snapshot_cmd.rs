//! `zfsrepl snapshot`: take the snapshots a policy says are due.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use zfsrepl_core::snapshot::take;
use zfsrepl_core::zfs::LocalRunner;
use zfsrepl_core::{Runner, ZfsCli};

/// Options shared by the commands that read a policy and a clock.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Policy file (repeatable). A `.conf` file is read as a sanoid.conf.
    /// Default: /etc/zfsrepl/*.toml.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Act as if it were this time (RFC 3339, e.g. 2026-11-22T05:00:00Z), to
    /// test a policy.
    #[arg(long, value_name = "TIME")]
    pub now: Option<jiff::Timestamp>,
}

/// `zfsrepl snapshot` arguments.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print what would be taken, and why, without taking anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan or the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Loads the policy named by the arguments, printing its warnings.
pub fn load_policy(args: &PolicyArgs) -> Result<zfsrepl_core::policy::Policy> {
    let files = crate::policy_files(args.policies.clone())?;
    match zfsrepl_core::policy::load_with_warnings(&files) {
        Ok((p, w)) => {
            if !w.0.is_empty() {
                eprintln!("{w}\n");
            }
            Ok(p)
        }
        Err(d) => Err(anyhow::anyhow!(
            "{d}\n{} error(s) in policy",
            d.error_count()
        )),
    }
}

/// Runs `zfsrepl snapshot`.
pub fn run(args: SnapshotArgs, zfs_bin: OsString) -> Result<ExitCode> {
    let policy = load_policy(&args.policy)?;
    let now = args.policy.now.unwrap_or_else(jiff::Timestamp::now);
    let zfs = ZfsCli::probe(LocalRunner::new(), zfs_bin)?;
    let (listing, missing) = take::list_for(&zfs, &policy);
    for e in &missing {
        eprintln!("zfsrepl: warning: {e}");
    }
    let plan = take::plan(&policy, &listing, now).context("planning snapshots")?;
    let mut out = std::io::stdout().lock();
    if args.dry_run {
        if args.json {
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
        } else if plan.items.is_empty() {
            writeln!(out, "nothing due at {now}")?;
        } else {
            for i in &plan.items {
                let r = if i.recursive { " (recursive)" } else { "" };
                writeln!(out, "take {}{r}: {}", i.snapshot, i.reason)?;
            }
            for s in &plan.subtrees {
                writeln!(out, "one `zfs snapshot -r {s}` takes that whole subtree")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let before = zfs.runner().invocations();
    let report = take::execute(&zfs, &policy, &plan);
    let processes = zfs.runner().invocations() - before;
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for o in &report.outcomes {
            match &o.result {
                Ok(()) => writeln!(out, "took {}", o.item.snapshot)?,
                Err(e) => writeln!(out, "FAILED {}: {e}", o.item.snapshot)?,
            }
        }
        for (entry, kind, outcome) in &report.hooks {
            if !outcome.is_ok() {
                writeln!(out, "hook {kind:?} of {entry}: {outcome:?}")?;
            }
        }
        let taken = report.outcomes.len() - report.failures();
        writeln!(
            out,
            "{taken} snapshot(s) taken, {} failed, {processes} zfs process(es)",
            report.failures()
        )?;
    }
    Ok(if report.failures() > 0 || !missing.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `zfsrepl prune` arguments.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print every snapshot with keep/destroy and the reasons, destroy nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan or the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lock: crate::LockArgs,
}

/// Runs `zfsrepl prune`.
pub fn prune(args: PruneArgs, zfs_bin: OsString) -> Result<ExitCode> {
    use zfsrepl_core::retention::prune as p;
    let policy = load_policy(&args.policy)?;
    let now = args.policy.now.unwrap_or_else(jiff::Timestamp::now);
    let zfs = ZfsCli::probe(LocalRunner::new(), zfs_bin)?;
    let (listing, missing) = take::list_for(&zfs, &policy);
    for e in &missing {
        eprintln!("zfsrepl: warning: {e}");
    }
    let caps = zfsrepl_core::zfs::pool_capacities(zfs.runner());
    let capacity = |pool: &str| caps.iter().find(|(n, _)| n == pool).map(|(_, c)| *c);
    for d in p::deferred(&policy, &capacity) {
        eprintln!("zfsrepl: {d}");
    }
    // What the daemon's replication still needs (its state file, when the
    // policy has replication jobs and the daemon has run): spared here too.
    let cursors = if policy
        .jobs
        .iter()
        .any(|j| matches!(j.kind, zfsrepl_core::policy::JobKind::Replicate(_)))
    {
        // Read only: a corrupt file is the daemon's to set aside.
        let path = zfsrepl_daemon::state::state_path(&policy.daemon.state_dir);
        std::fs::read(&path)
            .ok()
            .and_then(|t| serde_json::from_slice::<zfsrepl_daemon::state::State>(&t).ok())
            .map(|s| s.cursors)
            .unwrap_or_default()
    } else {
        Default::default()
    };
    let prot = zfsrepl_daemon::protect::protection(
        &policy.jobs,
        &cursors,
        &listing,
        None,
        now.as_second(),
        policy.daemon.lag_limit,
    );
    let mut plans = Vec::new();
    for ds in &listing {
        plans.extend(
            p::plan_policy(
                &policy,
                std::slice::from_ref(ds),
                &prot.of(&ds.name),
                &capacity,
                now.as_second(),
            )
            .map_err(anyhow::Error::msg)?,
        );
    }
    // Snapshots clones come from are kept, with the reason.
    let clones = zfsrepl_core::clone::list_policy_clones(&zfs, &policy.targets)
        .context("listing the policy's clones")?;
    let origins = zfsrepl_core::clone::clone_origins(listing.iter().chain(&clones));
    p::pin_clone_origins(&mut plans, &origins);
    // Each dataset with something to destroy is locked, so that a send (or
    // the daemon) working on it is not pulled from under; a busy one is
    // skipped this time and says by whom.
    let mut locks = Vec::new();
    let mut busy = 0usize;
    if !args.dry_run {
        let dir = args.lock.dir();
        plans.retain(|d| {
            if d.plan.destroy_count() == 0 {
                return true;
            }
            match dir.try_lock(None, &d.dataset, "zfsrepl prune") {
                Ok(l) => {
                    locks.push(l);
                    true
                }
                Err(e) => {
                    eprintln!("zfsrepl: skipping {}: {e}", d.dataset);
                    busy += 1;
                    false
                }
            }
        });
    }
    let doomed: Vec<_> = plans
        .iter()
        .flat_map(|d| d.plan.destroy().cloned())
        .collect();
    let recursive = p::recursive_destroys(&listing, &doomed);
    let mut out = std::io::stdout().lock();
    if args.dry_run {
        if args.json {
            serde_json::to_writer_pretty(&mut out, &plans)?;
            writeln!(out)?;
        } else {
            for d in &plans {
                writeln!(out, "{} (policy entry {}):\n{}", d.dataset, d.entry, d.plan)?;
            }
            for r in &recursive {
                writeln!(
                    out,
                    "one `zfs destroy -r {r}` destroys that name in the whole subtree"
                )?;
            }
            let n: usize = plans.iter().map(|d| d.plan.destroy_count()).sum();
            writeln!(out, "would destroy {n} snapshot(s)")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let before = zfs.runner().invocations();
    let report = p::execute_batched(&zfs, &policy, &plans, &recursive);
    let processes = zfs.runner().invocations() - before;
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for s in &report.destroyed {
            writeln!(out, "destroyed {s}")?;
        }
        for (s, e) in &report.failed {
            writeln!(out, "FAILED {s}: {e}")?;
        }
        writeln!(
            out,
            "{} destroyed, {} failed, {processes} zfs process(es)",
            report.destroyed.len(),
            report.failed.len()
        )?;
    }
    drop(locks);
    Ok(
        if report.failed.is_empty() && missing.is_empty() && busy == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// `zfsrepl check` arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Also check the health and capacity of the pools the policy names.
    #[arg(long)]
    pub pools: bool,
    /// Also check the daemon's state: replication lag per target against
    /// the jobs' `lag-warn`/`lag-crit` and the daemon's `lag-limit`, and
    /// failed jobs.
    #[arg(long)]
    pub daemon: bool,
    /// The daemon's state directory (default: the policy's `[daemon] state-dir`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Runs `zfsrepl check`: one Nagios line, exit 0 OK, 1 WARNING, 2 CRITICAL.
pub fn check(args: CheckArgs, zfs_bin: OsString) -> Result<ExitCode> {
    use zfsrepl_core::snapshot::monitor::{Status, check_snapshots};
    let policy = load_policy(&args.policy)?;
    let now = args.policy.now.unwrap_or_else(jiff::Timestamp::now);
    let zfs = ZfsCli::probe(LocalRunner::new(), zfs_bin)?;
    let (listing, missing) = take::list_for(&zfs, &policy);
    let report = check_snapshots(&policy, &listing, now);
    let mut status = report.status;
    let mut line = report.line;
    // Clones whose origin is older than their section's stale-after.
    match zfsrepl_core::clone::list_policy_clones(&zfs, &policy.targets) {
        Ok(clones) => {
            for s in zfsrepl_core::clone::stale_origins(
                &policy.targets,
                &clones,
                &listing,
                now.as_second(),
            ) {
                status = status.max(Status::Warning);
                line = format!(
                    "{line}, WARN: clone {} ({}) comes from {}, {} old (stale after {})",
                    s.clone,
                    s.section,
                    s.origin,
                    zfsrepl_core::snapshot::monitor::age(std::time::Duration::from_secs(
                        u64::try_from(s.age).unwrap_or(0)
                    )),
                    zfsrepl_core::snapshot::monitor::age(std::time::Duration::from_secs(
                        u64::try_from(s.stale_after).unwrap_or(0)
                    )),
                );
            }
        }
        Err(e) => {
            status = Status::Critical;
            line = format!("CRIT: listing clones: {e}, {line}");
        }
    }
    for e in &missing {
        status = Status::Critical;
        line = format!("CRIT: {e}, {line}");
    }
    if args.pools {
        let mut pools: Vec<String> = policy
            .datasets
            .iter()
            .map(|d| d.dataset.pool().to_owned())
            .collect();
        pools.sort();
        pools.dedup();
        let mut argv: Vec<OsString> = ["zpool", "list", "-H", "-o", "name,health,capacity"]
            .iter()
            .map(OsString::from)
            .collect();
        argv.extend(pools.iter().map(OsString::from));
        let out = LocalRunner::new()
            .run(&argv)
            .context("running zpool list")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = Vec::new();
        for l in text.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, health, cap] = f[..] else { continue };
            let cap: u8 = cap.trim_end_matches('%').parse().unwrap_or(0);
            let entry = policy.datasets.iter().find(|d| d.dataset.pool() == name);
            let (warn, crit) = entry.map_or((80, 95), |d| {
                (
                    d.settings.monitor.capacity_warn,
                    d.settings.monitor.capacity_crit,
                )
            });
            let level = if health != "ONLINE" || (crit > 0 && cap >= crit) {
                Status::Critical
            } else if health == "DEGRADED" || (warn > 0 && cap >= warn) {
                Status::Warning
            } else {
                Status::Ok
            };
            status = status.max(level);
            parts.push(format!("ZPOOL {name} : {health} {cap}%"));
        }
        if !out.status.success() {
            status = Status::Critical;
            parts.push(format!("zpool list failed: {}", out.stderr.trim()));
        }
        line = format!("{line}; {}", parts.join(", "));
    }
    if args.daemon {
        let (level, dline) = crate::daemon_cmd::check_daemon(&policy, args.state_dir.clone(), now)?;
        status = status.max(match level {
            0 => Status::Ok,
            1 => Status::Warning,
            _ => Status::Critical,
        });
        line = format!("{line}; DAEMON {dline}");
    }
    let word = match status {
        Status::Ok => "",
        Status::Warning => "WARNING ",
        Status::Critical => "CRITICAL ",
    };
    println!("{word}{line}");
    Ok(ExitCode::from(status.code()))
}
