//! Running one job: synchronous, on a blocking thread, with the core's
//! planners and executors. Every run lists what it needs afresh (one
//! listing per root), plans, executes, and returns an [`Outcome`] the
//! scheduler records; nothing here keeps state between runs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use zfsrepl_core::agent::AgentClient;
use zfsrepl_core::lock::{DatasetLock, LockDir, LockError};
use zfsrepl_core::policy::{Compression, DatasetRef, Job, JobKind, Policy, Replicate, Transport};
use zfsrepl_core::replication::execute::{ExecOptions, execute};
use zfsrepl_core::replication::gather::gather_tree_input;
use zfsrepl_core::replication::{InitialPolicy, ReplicationPolicy, SyncJob, plan_tree};
use zfsrepl_core::stream::{CancelToken, CopyOptions, NoProgress};
use zfsrepl_core::zfs::{CapsCache, LocalRunner, SshRunner, SshTarget};
use zfsrepl_core::{Dataset, DatasetName, ListSpec, Runner, ZfsCli, ZfsRead, ZfsStream, ZfsWrite};

use crate::metrics::{Metered, Metrics};
use crate::protect::{LagAlert, map_target, protection};
use crate::state::{Common, Cursor};

/// What a job run needs from the daemon.
#[derive(Clone)]
pub struct Ctx {
    /// The policy in force.
    pub policy: Arc<Policy>,
    /// The `zfs` program.
    pub zfs_bin: OsString,
    /// Capabilities, probed once per host.
    pub caps: Arc<CapsCache>,
    /// Per-dataset locks.
    pub locks: LockDir,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Set on shutdown past the stop timeout.
    pub cancel: CancelToken,
    /// The run's start.
    pub now: Timestamp,
    /// Replication cursors known so far (job -> target -> cursor).
    pub cursors: BTreeMap<String, BTreeMap<String, Cursor>>,
}

/// How a run went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Everything asked was done.
    pub ok: bool,
    /// The failure may go away by itself (busy, link down): retry.
    pub transient: bool,
    /// One line for status and logs.
    pub message: String,
    /// Bytes replicated, per target.
    pub bytes: BTreeMap<String, u64>,
    /// Snapshots taken.
    pub taken: u64,
    /// Snapshots destroyed.
    pub destroyed: u64,
    /// New or rebuilt replication cursors: (job, target, cursor).
    pub cursors: Vec<(String, String, Cursor)>,
    /// Targets past the lag limit (seen by pruning).
    pub alerts: Vec<LagAlert>,
    /// Snapshot counts per dataset, as listed.
    pub snapshot_counts: Vec<(String, usize)>,
}

impl Outcome {
    fn fail(&mut self, msg: impl Into<String>, transient: bool) {
        let msg = msg.into();
        if self.message.is_empty() {
            self.message = msg;
        } else {
            self.message = format!("{}; {msg}", self.message);
        }
        // One permanent failure makes the run permanent: retrying would
        // repeat it.
        self.transient = if self.ok {
            transient
        } else {
            self.transient && transient
        };
        self.ok = false;
    }
}

/// Whether an error message (a `ZfsError` rendered by the executor) is of
/// a kind worth retrying, by the same classification as the `zfs` layer.
#[must_use]
pub fn message_is_transient(msg: &str) -> bool {
    use zfsrepl_core::zfs::ZfsErrorKind as K;
    if zfsrepl_core::zfs::stderr::classify(msg).is_transient() {
        return true;
    }
    [
        K::Busy,
        K::Transport,
        K::StreamTruncated,
        K::ServiceUnavailable,
        K::Killed,
        K::PoolUnavailable,
    ]
    .iter()
    .any(|k| msg.contains(&format!(": {k}")))
}

type BoxRunner = Box<dyn Runner>;

/// The runner for a dataset's host (`None`: here).
///
/// # Errors
/// An unknown host, or a transport the daemon cannot use yet.
pub fn runner_for(ctx: &Ctx, host: Option<&str>) -> Result<BoxRunner, String> {
    let metered = |r: BoxRunner| -> BoxRunner { Box::new(Metered::new(r, ctx.metrics.clone())) };
    let Some(name) = host else {
        return Ok(metered(Box::new(LocalRunner::new())));
    };
    let h = ctx
        .policy
        .hosts
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| format!("unknown host {name}"))?;
    match h.transport {
        Transport::Local => Ok(metered(Box::new(LocalRunner::new()))),
        Transport::Ssh => {
            let t = SshTarget {
                user: h.user.clone(),
                host: h.address.clone(),
                port: h.port,
                identity: h.ssh_key.clone(),
                // The daemon has no terminal: never prompt.
                options: vec!["BatchMode=yes".into()],
                program: None,
            };
            SshRunner::new(t)
                .map(|r| metered(Box::new(r)))
                .map_err(|e| format!("ssh to {name}: {e}"))
        }
        other => Err(format!(
            "host {name}: transport {} reaches a zfsrepl agent, which replicate jobs use; snapshot, prune and clone jobs on that host need transport = \"ssh\" (or a daemon of its own)",
            format!("{other:?}").to_lowercase()
        )),
    }
}

fn zfs_for(ctx: &Ctx, host: Option<&str>) -> Result<ZfsCli<BoxRunner>, (String, bool)> {
    let r = runner_for(ctx, host).map_err(|e| (e, false))?;
    ZfsCli::probe_cached(r, ctx.zfs_bin.clone(), &ctx.caps)
        .map_err(|e| (e.to_string(), e.is_transient()))
}

fn lock(ctx: &Ctx, r: &DatasetRef, what: &str) -> Result<DatasetLock, (String, bool)> {
    ctx.locks
        .try_lock(r.host.as_deref(), &r.dataset, what)
        .map_err(|e| match e {
            // Someone else works on it: try again later.
            LockError::Busy { .. } => (e.to_string(), true),
            other => (other.to_string(), false),
        })
}

/// Runs `job` to completion (or cancellation).
#[must_use]
pub fn run_job(ctx: &Ctx, job: &Job) -> Outcome {
    let mut out = Outcome {
        ok: true,
        ..Outcome::default()
    };
    match &job.kind {
        JobKind::Snapshot => snapshot(ctx, job, &mut out),
        JobKind::Prune => prune(ctx, job, &mut out),
        JobKind::Replicate(r) => replicate(ctx, job, r, &mut out),
        JobKind::Clone { clones } => clone(ctx, clones, &mut out),
    }
    if out.ok && out.message.is_empty() {
        out.message = "ok".into();
    }
    out
}

fn list_roots<Z: ZfsRead + ?Sized>(
    zfs: &Z,
    roots: &[DatasetName],
) -> Result<Vec<Dataset>, (String, bool)> {
    let mut listing = Vec::new();
    for root in roots {
        let mut l = zfs
            .list(&ListSpec::all(vec![root.clone()]))
            .map_err(|e| (e.to_string(), e.is_transient()))?;
        listing.append(&mut l);
    }
    listing.sort_by(|a, b| a.name.cmp(&b.name));
    listing.dedup_by(|a, b| a.name == b.name);
    Ok(listing)
}

fn count_snapshots(out: &mut Outcome, listing: &[Dataset], host: Option<&str>) {
    for d in listing {
        let name = host.map_or_else(|| d.name.to_string(), |h| format!("{h}:{}", d.name));
        out.snapshot_counts.push((name, d.snapshots().count()));
    }
}

fn snapshot(ctx: &Ctx, job: &Job, out: &mut Outcome) {
    use zfsrepl_core::snapshot::take;
    let zfs = match zfs_for(ctx, None) {
        Ok(z) => z,
        Err((e, t)) => return out.fail(e, t),
    };
    let roots: Vec<DatasetName> = job.datasets.iter().map(|d| d.dataset.clone()).collect();
    let listing = match list_roots(&zfs, &roots) {
        Ok(l) => l,
        Err((e, t)) => return out.fail(e, t),
    };
    let plan = match take::plan(&ctx.policy, &listing, ctx.now) {
        Ok(p) => p,
        Err(e) => return out.fail(e.to_string(), false),
    };
    let report = take::execute(&zfs, &ctx.policy, &plan);
    for o in &report.outcomes {
        match &o.result {
            Ok(()) => out.taken += 1,
            Err(e) => out.fail(format!("{}: {e}", o.item.snapshot), message_is_transient(e)),
        }
    }
    for d in &listing {
        let extra = plan
            .items
            .iter()
            .filter(|i| i.snapshot.dataset() == d.name)
            .count();
        out.snapshot_counts
            .push((d.name.to_string(), d.snapshots().count() + extra));
    }
    if out.ok {
        out.message = format!("{} snapshot(s) taken", out.taken);
    }
}

/// Whether dataset `a` and `b` are one within the other.
fn related(a: &DatasetName, b: &DatasetName) -> bool {
    a.is_within(b) || b.is_within(a)
}

/// The replication jobs whose source or targets touch `d` (on `host`).
fn touching<'p>(policy: &'p Policy, d: &DatasetRef) -> Vec<(&'p Job, &'p Replicate)> {
    policy
        .jobs
        .iter()
        .filter_map(|j| match &j.kind {
            JobKind::Replicate(r) => Some((j, r)),
            _ => None,
        })
        .filter(|(_, r)| {
            std::iter::once(&r.source)
                .chain(&r.targets)
                .any(|x| x.host == d.host && related(&x.dataset, &d.dataset))
        })
        .collect()
}

fn prune(ctx: &Ctx, job: &Job, out: &mut Outcome) {
    use zfsrepl_core::retention::prune as p;
    // Rebuild missing cursors first (state lost): pruning never goes ahead
    // without knowing what replication needs.
    let mut cursors = ctx.cursors.clone();
    for d in &job.datasets {
        for (rj, r) in touching(&ctx.policy, d) {
            for t in &r.targets {
                let key = t.to_string();
                if cursors.get(&rj.name).is_some_and(|c| c.contains_key(&key)) {
                    continue;
                }
                match compute_cursor(ctx, &rj.name, r, t) {
                    Ok(c) => {
                        out.cursors.push((rj.name.clone(), key.clone(), c.clone()));
                        cursors.entry(rj.name.clone()).or_default().insert(key, c);
                    }
                    Err((e, transient)) => {
                        return out.fail(
                            format!(
                                "not pruning: replication cursor of {} -> {t} unknown and cannot be rebuilt: {e}",
                                rj.name
                            ),
                            transient,
                        );
                    }
                }
            }
        }
    }
    // By host: one runner, listing and batch each.
    let mut by_host: BTreeMap<Option<String>, Vec<&DatasetRef>> = BTreeMap::new();
    for d in &job.datasets {
        by_host.entry(d.host.clone()).or_default().push(d);
    }
    for (host, datasets) in by_host {
        let mut held = Vec::new();
        let mut roots = Vec::new();
        for d in datasets {
            match lock(ctx, d, &format!("zfsrepl daemon job {}", job.name)) {
                Ok(l) => {
                    held.push(l);
                    roots.push(d.dataset.clone());
                }
                Err((e, t)) => out.fail(e, t),
            }
        }
        if roots.is_empty() {
            continue;
        }
        let zfs = match zfs_for(ctx, host.as_deref()) {
            Ok(z) => z,
            Err((e, t)) => {
                out.fail(e, t);
                continue;
            }
        };
        let listing = match list_roots(&zfs, &roots) {
            Ok(l) => l,
            Err((e, t)) => {
                out.fail(e, t);
                continue;
            }
        };
        let prot = protection(
            &ctx.policy.jobs,
            &cursors,
            &listing,
            host.as_deref(),
            ctx.now.as_second(),
            ctx.policy.daemon.lag_limit,
        );
        out.alerts.extend(prot.alerts.iter().cloned());
        let caps = zfsrepl_core::zfs::pool_capacities(zfs.runner());
        let capacity = |pool: &str| caps.iter().find(|(n, _)| n == pool).map(|(_, c)| *c);
        for d in p::deferred(&ctx.policy, &capacity) {
            if listing.iter().any(|l| l.name.is_within(&d.entry)) {
                tracing::info!(job = %job.name, "{d}");
            }
        }
        // Planned dataset by dataset: each has its own protected guids.
        let mut plans = Vec::new();
        let mut bad = None;
        for ds in &listing {
            match p::plan_policy(
                &ctx.policy,
                std::slice::from_ref(ds),
                &prot.of(&ds.name),
                &capacity,
                ctx.now.as_second(),
            ) {
                Ok(mut pl) => plans.append(&mut pl),
                Err(e) => bad = Some(e),
            }
        }
        if let Some(e) = bad {
            out.fail(e, false);
            continue;
        }
        // Snapshots clones come from stay (ZFS would refuse anyway), with
        // the reason: the listing's clones and the policy's clone sections'.
        let clones = if host.is_none() {
            match zfsrepl_core::clone::list_policy_clones(&zfs, &ctx.policy.targets) {
                Ok(c) => c,
                Err(e) => {
                    out.fail(
                        format!("listing the policy's clones: {e}"),
                        e.is_transient(),
                    );
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        let origins = zfsrepl_core::clone::clone_origins(listing.iter().chain(&clones));
        p::pin_clone_origins(&mut plans, &origins);
        let doomed: Vec<_> = plans
            .iter()
            .flat_map(|d| d.plan.destroy().cloned())
            .collect();
        let recursive = p::recursive_destroys(&listing, &doomed);
        if ctx.cancel.is_cancelled() {
            return out.fail("cancelled", false);
        }
        let report = p::execute_batched(&zfs, &ctx.policy, &plans, &recursive);
        out.destroyed += report.destroyed.len() as u64;
        for (s, e) in &report.failed {
            out.fail(format!("{s}: {e}"), message_is_transient(e));
        }
        for d in &listing {
            let gone = report
                .destroyed
                .iter()
                .filter(|s| s.dataset() == d.name)
                .count();
            let name = host
                .as_deref()
                .map_or_else(|| d.name.to_string(), |h| format!("{h}:{}", d.name));
            out.snapshot_counts
                .push((name, d.snapshots().count().saturating_sub(gone)));
        }
        drop(held);
    }
    if out.ok {
        out.message = format!("{} snapshot(s) destroyed", out.destroyed);
        if !out.alerts.is_empty() {
            out.message.push_str(&format!(
                "; {} target dataset(s) past the lag limit, no longer waited for",
                out.alerts.len()
            ));
        }
    }
}

/// The newest snapshot each source dataset shares (by guid) with its copy.
#[must_use]
pub fn common_snapshots(
    source: &[Dataset],
    target: &[Dataset],
    src_root: &DatasetName,
    dst_root: &DatasetName,
) -> BTreeMap<String, Common> {
    let mut out = BTreeMap::new();
    for s in source {
        let Some(tname) = map_target(src_root, dst_root, &s.name) else {
            continue;
        };
        let Some(t) = target.iter().find(|t| t.name == tname) else {
            continue;
        };
        let newest = s
            .snapshots()
            .filter(|v| t.snapshots().any(|tv| tv.guid == v.guid))
            .max_by_key(|v| v.createtxg);
        if let Some(v) = newest {
            out.insert(
                s.name.to_string(),
                Common {
                    snapshot: v.name.short().to_owned(),
                    guid: v.guid,
                    creation: v.creation,
                },
            );
        }
    }
    out
}

/// Lists both sides of one replication target and computes its cursor.
fn compute_cursor(
    ctx: &Ctx,
    job: &str,
    r: &Replicate,
    t: &DatasetRef,
) -> Result<Cursor, (String, bool)> {
    let sync = SyncJob::new(job, &t.to_string());
    let src = side_for(ctx, r.source.host.as_deref(), &sync)?;
    let dst = side_for(ctx, t.host.as_deref(), &sync)?;
    let spec = |root: &DatasetName| ListSpec {
        recursive: r.recursive,
        ..ListSpec::all(vec![root.clone()])
    };
    let source = src
        .list(&spec(&r.source.dataset))
        .map_err(|e| (e.to_string(), e.is_transient()))?;
    let target = match dst.list(&spec(&t.dataset)) {
        Ok(l) => l,
        Err(e) if e.kind == zfsrepl_core::ZfsErrorKind::NotFound => Vec::new(),
        Err(e) => return Err((e.to_string(), e.is_transient())),
    };
    Ok(Cursor {
        updated: Some(ctx.now),
        datasets: common_snapshots(&source, &target, &r.source.dataset, &t.dataset),
    })
}

fn owned_prefixes(policy: &Policy) -> Vec<String> {
    let mut p = vec![zfsrepl_core::replication::OWNED_PREFIX.to_owned()];
    let sanoid = policy
        .datasets
        .iter()
        .any(|d| d.settings.naming == zfsrepl_core::policy::Naming::Sanoid);
    if sanoid {
        p.push("autosnap_".into());
    }
    for d in &policy.datasets {
        if let zfsrepl_core::policy::Naming::Zfsrepl { prefix } = &d.settings.naming
            && !p.contains(prefix)
        {
            p.push(prefix.clone());
        }
    }
    p
}

/// One side of a replication: the `zfs` CLI (here, or over bare ssh) or a
/// zfsrepl agent (over ssh with `transport = "ssh-agent"`, TLS-PSK with
/// `tls`, or plain TCP into a local stunnel with `stunnel`).
enum Side {
    Cli(ZfsCli<BoxRunner>),
    Agent(AgentClient),
}

impl Side {
    fn list(&self, spec: &ListSpec) -> zfsrepl_core::ZfsResult<Vec<Dataset>> {
        match self {
            Self::Cli(z) => z.list(spec),
            Self::Agent(a) => a.list(spec),
        }
    }
}

/// Whether a TLS failure may go away by itself (not a refused key).
fn tls_transient(e: &zfsrepl_core::transport::tls::TlsError) -> bool {
    use zfsrepl_core::transport::tls::TlsError;
    !e.is_auth_failure() && !matches!(e, TlsError::Secrets(_) | TlsError::Setup(_))
}

/// Connects to `host`'s zfs: the CLI for local and ssh hosts, the agent
/// for the others. `sync` names this job and target to the agent.
fn side_for(ctx: &Ctx, host: Option<&str>, sync: &SyncJob) -> Result<Side, (String, bool)> {
    use zfsrepl_core::agent::SshConn;
    use zfsrepl_core::transport::NetStream;
    use zfsrepl_core::transport::tls::{PskSecrets, TlsConnector, TlsOptions};
    let Some(h) = host.and_then(|n| ctx.policy.hosts.iter().find(|h| h.name == n)) else {
        return zfs_for(ctx, host).map(Side::Cli);
    };
    let label = h.name.clone();
    let agent = |r: zfsrepl_core::ZfsResult<AgentClient>| {
        r.map(Side::Agent).map_err(|e| {
            (
                format!("the zfsrepl agent on {label}: {e}"),
                e.is_transient(),
            )
        })
    };
    match h.transport {
        Transport::Local | Transport::Ssh => zfs_for(ctx, host).map(Side::Cli),
        Transport::SshAgent => {
            let t = SshTarget {
                user: h.user.clone(),
                host: h.address.clone(),
                port: h.port,
                identity: h.ssh_key.clone(),
                options: vec!["BatchMode=yes".into()],
                program: None,
            };
            let mut argv: Vec<OsString> = vec!["zfsrepl".into(), "serve".into(), "--stdio".into()];
            if ctx.zfs_bin != "zfs" {
                argv.extend(["--zfs".into(), ctx.zfs_bin.clone()]);
            }
            let conn =
                SshConn::start(t, &argv).map_err(|e| (format!("ssh to {label}: {e}"), true))?;
            let stderr = conn.stderr();
            agent(AgentClient::connect_with(
                Box::new(conn),
                Some(label.clone()),
                Some(sync.clone()),
                Some(stderr),
            ))
        }
        Transport::Tls => {
            let (Some(psk), Some(port)) = (&h.psk_file, h.port) else {
                return Err((format!("host {label}: tls needs psk-file and port"), false));
            };
            let secrets = PskSecrets::load(psk).map_err(|e| (format!("{label}: {e}"), false))?;
            let mut opts = TlsOptions::default();
            if let Some(d) = h.dead_peer {
                opts = opts.with_dead_peer((!d.is_zero()).then_some(d));
            }
            if let Some(d) = h.io_timeout {
                opts = opts.with_io_timeout((!d.is_zero()).then_some(d));
            }
            let c = TlsConnector::new(&secrets, h.identity.as_deref(), &opts)
                .map_err(|e| (format!("{label}: {e}"), tls_transient(&e)))?;
            let addr = format!("{}:{port}", h.address);
            let stream = c
                .connect(&addr)
                .map_err(|e| (format!("{label} ({addr}): {e}"), tls_transient(&e)))?;
            agent(AgentClient::connect(
                NetStream::Tls(Box::new(stream)),
                Some(label.clone()),
                Some(sync.clone()),
            ))
        }
        Transport::Stunnel => {
            let Some(port) = h.port else {
                return Err((format!("host {label}: stunnel needs port"), false));
            };
            // The local stunnel client holds the key: plain TCP to it.
            let addr = format!("{}:{port}", h.address);
            let sa = std::net::ToSocketAddrs::to_socket_addrs(&addr)
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| (format!("{label}: cannot resolve {addr}"), true))?;
            let tcp = std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(15))
                .map_err(|e| {
                    (
                        format!("{label}: connecting to the stunnel at {addr}: {e}"),
                        true,
                    )
                })?;
            let _ = tcp.set_nodelay(true);
            agent(AgentClient::connect(
                NetStream::Plain(tcp),
                Some(label.clone()),
                Some(sync.clone()),
            ))
        }
    }
}

fn replicate(ctx: &Ctx, job: &Job, r: &Replicate, out: &mut Outcome) {
    for t in &r.targets {
        if ctx.cancel.is_cancelled() {
            return out.fail("cancelled", false);
        }
        let target = t.to_string();
        let what = format!("zfsrepl daemon job {}", job.name);
        // Both roots locked for the transfer: no prune or manual send in
        // between.
        let locks = match (lock(ctx, &r.source, &what), lock(ctx, t, &what)) {
            (Ok(a), Ok(b)) => vec![a, b],
            (Err((e, tr)), _) | (_, Err((e, tr))) => {
                out.fail(format!("{target}: {e}"), tr);
                continue;
            }
        };
        let sync = SyncJob::new(&job.name, &target);
        let mut src = match side_for(ctx, r.source.host.as_deref(), &sync) {
            Ok(s) => s,
            Err((e, tr)) => {
                out.fail(format!("source {}: {e}", r.source), tr);
                continue;
            }
        };
        let mut dst = match side_for(ctx, t.host.as_deref(), &sync) {
            Ok(z) => z,
            Err((e, tr)) => {
                out.fail(format!("{target}: {e}"), tr);
                continue;
            }
        };
        if let Compression::Zstd(level) = r.compress {
            // Agents compress in-process at both ends; the bare ssh leg of
            // a push decompresses with the target's `zstd`.
            if let Side::Agent(a) = &mut src {
                a.set_compression(Some(level));
            }
            match &mut dst {
                Side::Agent(a) => a.set_compression(Some(level)),
                Side::Cli(d) if t.host.is_some() => match d.has_remote_zstd() {
                    Ok(true) => d.set_receive_compression(Some(level)),
                    Ok(false) => {
                        out.fail(
                            format!(
                                "{target}: compress = zstd but the host has no `zstd` to decompress with"
                            ),
                            false,
                        );
                        continue;
                    }
                    Err(e) => {
                        out.fail(format!("{target}: {e}"), e.is_transient());
                        continue;
                    }
                },
                Side::Cli(_) => {}
            }
        }
        match (&src, &dst) {
            (Side::Cli(s), Side::Cli(d)) => replicate_pair(ctx, job, r, t, s, d, sync, out),
            (Side::Cli(s), Side::Agent(d)) => replicate_pair(ctx, job, r, t, s, d, sync, out),
            (Side::Agent(s), Side::Cli(d)) => replicate_pair(ctx, job, r, t, s, d, sync, out),
            (Side::Agent(s), Side::Agent(d)) => replicate_pair(ctx, job, r, t, s, d, sync, out),
        }
        drop(locks);
    }
    if out.ok {
        let total: u64 = out.bytes.values().sum();
        out.message = format!(
            "{} target(s) up to date, {total} bytes sent",
            r.targets.len()
        );
    }
}

/// Replicates to one target: gather, plan, execute, then the cursor from
/// the target listed again.
#[allow(clippy::too_many_arguments)]
fn replicate_pair<S, D>(
    ctx: &Ctx,
    job: &Job,
    r: &Replicate,
    t: &DatasetRef,
    src: &S,
    dst: &D,
    sync: SyncJob,
    out: &mut Outcome,
) where
    S: ZfsRead + ZfsWrite + ZfsStream + ?Sized,
    D: ZfsRead + ZfsWrite + ZfsStream + ?Sized,
{
    let target = t.to_string();
    let input = match gather_tree_input(src, dst, &r.source.dataset, &t.dataset, r.recursive) {
        Ok(i) => i,
        Err(e) => return out.fail(format!("{target}: {e}"), e.is_transient()),
    };
    let policy = ReplicationPolicy {
        force_rollback: r.force_rollback,
        sync_prefix: Some(sync.prefix()),
        owned_prefixes: owned_prefixes(&ctx.policy),
        initial: if r.all_snapshots {
            InitialPolicy::AllOldestFirst
        } else {
            InitialPolicy::MostRecent
        },
        ..ReplicationPolicy::default()
    };
    let mut caps = dst.capabilities().clone();
    let sc = src.capabilities();
    caps.bookmarks &= sc.bookmarks;
    caps.resumable &= sc.resumable;
    let plan = plan_tree(&input, &policy, &caps);
    let opts = ExecOptions {
        copy: CopyOptions {
            bwlimit: r.bwlimit,
            ..CopyOptions::default()
        },
        // Holds on the new common base, released from the previous one:
        // no sync snapshots are taken (the snapshot job made them).
        sync: Some(sync),
        readonly: r.readonly,
        estimate: false,
    };
    let report = execute(src, dst, &input, &plan, &opts, &NoProgress, &ctx.cancel);
    *out.bytes.entry(target.clone()).or_default() += report.bytes();
    for d in &report.datasets {
        if let Some(e) = &d.error {
            out.fail(
                format!("{} -> {}: {e}", d.source, d.target),
                message_is_transient(e) || ctx.cancel.is_cancelled(),
            );
        }
    }
    // The cursor after the run: the target listed again.
    let after = match dst.list(&ListSpec {
        recursive: r.recursive,
        ..ListSpec::all(vec![t.dataset.clone()])
    }) {
        Ok(l) => l,
        Err(e) if e.kind == zfsrepl_core::ZfsErrorKind::NotFound => Vec::new(),
        Err(e) => return out.fail(format!("{target}: {e}"), e.is_transient()),
    };
    let cursor = Cursor {
        updated: Some(Timestamp::now()),
        datasets: common_snapshots(&input.source, &after, &r.source.dataset, &t.dataset),
    };
    count_snapshots(out, &after, t.host.as_deref());
    out.cursors.push((job.name.clone(), target, cursor));
}

fn clone(ctx: &Ctx, clones: &[String], out: &mut Outcome) {
    for name in clones {
        let Some(c) = ctx.policy.targets.clone_named(name) else {
            out.fail(format!("clone {name}: no [clone.{name}] section"), false);
            continue;
        };
        let what = "zfsrepl daemon clone refresh";
        let mut held = Vec::new();
        let mut busy = None;
        for d in c.clones() {
            let r = DatasetRef {
                host: c.host.clone(),
                dataset: d.clone(),
            };
            match lock(ctx, &r, what) {
                Ok(l) => held.push(l),
                Err(e) => {
                    busy = Some(e);
                    break;
                }
            }
        }
        if let Some((e, t)) = busy {
            out.fail(format!("clone {name}: {e}"), t);
            continue;
        }
        let zfs = match zfs_for(ctx, c.host.as_deref()) {
            Ok(z) => z,
            Err((e, t)) => {
                out.fail(format!("clone {name}: {e}"), t);
                continue;
            }
        };
        // The refresh and the target actions it implies (exports withdrawn
        // before the swap and added again after, mounts, proxy reloads).
        let hosts = &ctx.policy.hosts;
        let runner = |h: Option<&str>| zfsrepl_core::target::host_runner(hosts, h);
        match zfsrepl_core::target::refresh_clone(
            &zfs,
            &ctx.policy.targets,
            c,
            ctx.now,
            false,
            &runner,
        ) {
            Ok(r) if !r.is_ok() => out.fail(
                format!(
                    "clone {name}: {}",
                    r.report
                        .as_ref()
                        .and_then(|rep| rep.error.as_deref())
                        .or(r.plan.refused.as_deref())
                        .unwrap_or("failed")
                ),
                false,
            ),
            Ok(_) => {}
            Err(e) => out.fail(format!("clone {name}: {e}"), e.is_transient()),
        }
        drop(held);
    }
    if out.ok {
        out.message = format!("{} clone spec(s) refreshed", clones.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_permanent_failure_makes_the_run_permanent() {
        let mut o = Outcome {
            ok: true,
            ..Outcome::default()
        };
        o.fail("off1: busy", true);
        assert!(!o.ok && o.transient);
        o.fail("ovh3: no common snapshot", false);
        assert!(!o.transient);
        o.fail("off1: busy again", true);
        assert!(!o.transient);
        assert_eq!(
            o.message,
            "off1: busy; ovh3: no common snapshot; off1: busy again"
        );
    }

    #[test]
    fn transient_messages() {
        assert!(message_is_transient(
            "cannot receive into b/a: busy: cannot receive: dataset is busy"
        ));
        assert!(message_is_transient(
            "cannot send tank/a on off1: transport failure: ssh: connect to host off1 port 22: Connection refused"
        ));
        assert!(!message_is_transient(
            "cannot receive b/a: target has newer snapshots: destination has snapshots"
        ));
        assert!(!message_is_transient("cannot destroy: out of space"));
    }
}
