//! The scheduler: one tokio task owning all state, woken by the next due
//! job, a finished run, a control request or a signal. Runs execute on
//! blocking threads ([`crate::exec::run_job`]) once they hold their
//! concurrency slots (global, per pool, per remote host).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{error, info, warn};
use zfsrepl_core::lock::LockDir;
use zfsrepl_core::policy::{self, Job, JobKind, Policy, Trigger};
use zfsrepl_core::schedule::next_run;
use zfsrepl_core::stream::CancelToken;
use zfsrepl_core::zfs::CapsCache;

use crate::control::{JobStatus, Request, Response, Status, TargetStatus};
use crate::exec::{Ctx, Outcome, run_job};
use crate::listen::AgentListener;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::protect::LagAlert;
use crate::state::{RunResult, State, state_path};

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Policy files, read together.
    pub policy_files: Vec<PathBuf>,
    /// The `zfs` program.
    pub zfs_bin: OsString,
    /// Overrides `[daemon] control-socket`.
    pub control_socket: Option<PathBuf>,
    /// Overrides `[daemon] state-dir`.
    pub state_dir: Option<PathBuf>,
    /// Overrides `[daemon] lock-dir`.
    pub lock_dir: Option<PathBuf>,
    /// Overrides `[daemon] metrics-address`.
    pub metrics_address: Option<SocketAddr>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy has errors.
    #[error("{0}\n{n} error(s) in policy", n = .0.error_count())]
    Policy(policy::Diagnostics),
    /// Another daemon answers on the control socket.
    #[error("another zfsrepl daemon is running (it answers on {0})")]
    AlreadyRunning(PathBuf),
    /// Something could not be set up.
    #[error("{0}")]
    Io(String),
}

fn load(files: &[PathBuf]) -> Result<Policy, policy::Diagnostics> {
    policy::load_with_warnings(files).map(|(p, w)| {
        for d in &w.0 {
            warn!("{d}");
        }
        p
    })
}

fn tz_of(p: &Policy) -> TimeZone {
    TimeZone::get(&p.timezone).unwrap_or(TimeZone::UTC)
}

/// The pools and remote hosts a job touches (for concurrency limits).
fn resources(job: &Job, policy: &Policy) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut pools = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut add = |r: &policy::DatasetRef| match &r.host {
        Some(h) => {
            hosts.insert(h.clone());
            pools.insert(format!("{h}:{}", r.pool()));
        }
        None => {
            pools.insert(r.pool().to_owned());
        }
    };
    match &job.kind {
        JobKind::Snapshot | JobKind::Prune => job.datasets.iter().for_each(&mut add),
        JobKind::Replicate(r) => {
            add(&r.source);
            r.targets.iter().for_each(&mut add);
        }
        JobKind::Clone { clones } => {
            for c in clones {
                if let Some(c) = policy.targets.clone_named(c) {
                    for d in c.clones() {
                        add(&policy::DatasetRef {
                            host: c.host.clone(),
                            dataset: d.clone(),
                        });
                    }
                }
            }
        }
    }
    (pools, hosts)
}

/// The wait before retry number `attempt + 1`: `base * 2^attempt`, at
/// most `max`.
fn retry_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempt)).min(max)
}

/// Whether a failed run is retried: transient failures only, not a
/// cancelled run, and not past the allowed retries.
fn should_retry(o: &Outcome, cancelled: bool, attempt: u32, retries: u32) -> bool {
    !o.ok && o.transient && !cancelled && attempt < retries
}

/// Concurrency slots.
struct Limits {
    global: Arc<Semaphore>,
    per_pool: usize,
    per_host: usize,
    pools: Mutex<HashMap<String, Arc<Semaphore>>>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Limits {
    fn new(d: &policy::DaemonSettings) -> Self {
        let n = |x: u32| usize::try_from(x.max(1)).unwrap_or(1);
        Self {
            global: Arc::new(Semaphore::new(n(d.concurrency))),
            per_pool: n(d.per_pool),
            per_host: n(d.per_host),
            pools: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn sem(map: &Mutex<HashMap<String, Arc<Semaphore>>>, key: &str, n: usize) -> Arc<Semaphore> {
        let mut m = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(n)))
            .clone()
    }

    /// Takes the global slot, then each pool's and host's in name order
    /// (one order for everyone: no deadlock).
    async fn acquire(
        &self,
        pools: &BTreeSet<String>,
        hosts: &BTreeSet<String>,
    ) -> Vec<OwnedSemaphorePermit> {
        let mut held = Vec::new();
        if let Ok(p) = self.global.clone().acquire_owned().await {
            held.push(p);
        }
        for p in pools {
            if let Ok(p) = Self::sem(&self.pools, p, self.per_pool)
                .acquire_owned()
                .await
            {
                held.push(p);
            }
        }
        for h in hosts {
            if let Ok(p) = Self::sem(&self.hosts, h, self.per_host)
                .acquire_owned()
                .await
            {
                held.push(p);
            }
        }
        held
    }
}

type CursorMap = BTreeMap<String, BTreeMap<String, crate::state::Cursor>>;

struct Done {
    job: String,
    attempt: u32,
    started: Timestamp,
    ended: Timestamp,
    outcome: Outcome,
    cancelled: bool,
}

enum Control {
    Request(Request, oneshot::Sender<Response>),
}

struct Daemon {
    opts: Options,
    policy: Arc<Policy>,
    policy_loaded: Timestamp,
    reload_error: Option<String>,
    tz: TimeZone,
    state: State,
    state_path: PathBuf,
    metrics: Arc<Metrics>,
    caps: Arc<CapsCache>,
    locks: LockDir,
    limits: Arc<Limits>,
    running: HashMap<String, CancelToken>,
    queued: BTreeSet<String>,
    retry: HashMap<String, (u32, Timestamp)>,
    next: HashMap<String, Timestamp>,
    alerts: BTreeMap<String, Vec<LagAlert>>,
    /// The cursors as of the last finished run, read by a run when it
    /// actually starts (not when it was queued behind a slot).
    cursors: Arc<Mutex<CursorMap>>,
    done_tx: mpsc::UnboundedSender<Done>,
    started: Timestamp,
    stopping: bool,
    /// The agent listener (`[daemon] listen`).
    agent: Option<AgentListener>,
}

impl Daemon {
    fn job(&self, name: &str) -> Option<&Job> {
        self.policy.jobs.iter().find(|j| j.name == name)
    }

    /// Recomputes when each scheduled job runs next.
    fn reschedule(&mut self, now: Timestamp) {
        self.next.clear();
        for j in &self.policy.jobs {
            if !j.enabled {
                continue;
            }
            if let Trigger::Schedule(s) = &j.trigger {
                let last = self.state.jobs.get(&j.name).and_then(|s| s.last_run);
                self.next.insert(
                    j.name.clone(),
                    next_run(s, &self.tz, j.jitter, &j.name, last, now),
                );
            }
        }
        self.retry
            .retain(|name, _| self.policy.jobs.iter().any(|j| &j.name == name));
    }

    fn save(&self) {
        if let Err(e) = self.state.save(&self.state_path) {
            error!(path = %self.state_path.display(), "cannot write the state file: {e}");
        }
    }

    /// Starts a run of `name` (or queues one after the current run).
    fn start(&mut self, name: &str, attempt: u32) {
        if self.stopping {
            return;
        }
        let Some(job) = self.job(name).cloned() else {
            return;
        };
        if self.running.contains_key(name) {
            self.queued.insert(name.to_owned());
            return;
        }
        let now = Timestamp::now();
        self.state.job(name).last_run = Some(now);
        if let Trigger::Schedule(s) = &job.trigger
            && job.enabled
        {
            self.next.insert(
                name.to_owned(),
                next_run(s, &self.tz, job.jitter, name, Some(now), now),
            );
        }
        let cancel = CancelToken::new();
        self.running.insert(name.to_owned(), cancel.clone());
        let (pools, hosts) = resources(&job, &self.policy);
        let limits = self.limits.clone();
        let mut ctx = Ctx {
            policy: self.policy.clone(),
            zfs_bin: self.opts.zfs_bin.clone(),
            caps: self.caps.clone(),
            locks: self.locks.clone(),
            metrics: self.metrics.clone(),
            cancel,
            now,
            cursors: BTreeMap::new(),
        };
        let tx = self.done_tx.clone();
        let metrics = self.metrics.clone();
        let cursors = self.cursors.clone();
        tokio::spawn(async move {
            let _permits = limits.acquire(&pools, &hosts).await;
            let started = Timestamp::now();
            ctx.now = started;
            ctx.cursors = cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            metrics.run_started(&job.name, job.kind.name());
            info!(job = %job.name, kind = job.kind.name(), attempt, "run started");
            let cancel = ctx.cancel.clone();
            let j = job.clone();
            let outcome = tokio::task::spawn_blocking(move || run_job(&ctx, &j))
                .await
                .unwrap_or_else(|e| Outcome {
                    ok: false,
                    transient: false,
                    message: format!("the run panicked: {e}"),
                    ..Outcome::default()
                });
            let _ = tx.send(Done {
                job: job.name.clone(),
                attempt,
                started,
                ended: Timestamp::now(),
                cancelled: cancel.is_cancelled(),
                outcome,
            });
        });
    }

    fn finished(&mut self, d: Done) {
        self.running.remove(&d.job);
        let Some(job) = self.job(&d.job).cloned() else {
            return;
        };
        let o = &d.outcome;
        let kind = job.kind.name();
        let secs = (d.ended.as_millisecond() - d.started.as_millisecond()) as f64 / 1000.0;
        if o.ok {
            info!(job = %d.job, kind, seconds = secs, "{}", o.message);
        } else {
            warn!(job = %d.job, kind, seconds = secs, transient = o.transient, "failed: {}", o.message);
        }
        let ended = d.ended;
        let bytes: u64 = o.bytes.values().sum();
        {
            let st = self.state.job(&d.job);
            st.runs += 1;
            st.last_duration = secs;
            st.bytes += bytes;
            if o.ok {
                st.last_result = Some(RunResult::Ok);
                st.last_success = Some(ended);
                st.last_error = None;
            } else {
                st.failures += 1;
                st.last_failure = Some(ended);
                st.last_error = Some(o.message.clone());
                st.last_result = Some(if d.cancelled {
                    RunResult::Cancelled
                } else {
                    RunResult::Failed
                });
            }
        }
        self.metrics
            .run_ended(&d.job, kind, o.ok, ended.as_millisecond() as f64 / 1000.0);
        for (t, b) in &o.bytes {
            self.metrics.bytes_sent(&d.job, t, *b);
        }
        self.metrics.snapshots_changed(&d.job, o.taken, o.destroyed);
        for (ds, n) in &o.snapshot_counts {
            self.metrics.snapshot_count(ds, *n);
        }
        for (j, t, c) in &o.cursors {
            self.state
                .cursors
                .entry(j.clone())
                .or_default()
                .insert(t.clone(), c.clone());
        }
        if !o.cursors.is_empty() {
            *self
                .cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = self.state.cursors.clone();
        }
        if matches!(job.kind, JobKind::Prune) {
            for a in &o.alerts {
                warn!(
                    job = %a.job, target = %a.target, dataset = %a.dataset, lag = a.lag,
                    "replication target past the lag limit: pruning no longer waits for it; fix the target or raise lag-limit"
                );
            }
            self.alerts.insert(d.job.clone(), o.alerts.clone());
        }
        self.update_lag_metrics(ended);
        // Retries: transient failures only, with exponential backoff.
        let retries = job.retries.unwrap_or(self.policy.daemon.retries);
        if should_retry(o, d.cancelled, d.attempt, retries) {
            let delay = retry_delay(
                self.policy.daemon.retry_backoff,
                self.policy.daemon.retry_max,
                d.attempt,
            );
            let at = ended.checked_add(delay).unwrap_or(ended);
            info!(job = %d.job, attempt = d.attempt + 1, "retrying in {}", zfsrepl_core::schedule::fmt_duration(delay));
            self.retry.insert(d.job.clone(), (d.attempt + 1, at));
        } else {
            self.retry.remove(&d.job);
        }
        self.save();
        if self.stopping || d.cancelled {
            return;
        }
        // The chain: jobs that run after this one.
        let after: Vec<String> = self
            .policy
            .jobs
            .iter()
            .filter(|j| j.enabled && matches!(&j.trigger, Trigger::After(a) if *a == d.job))
            .map(|j| j.name.clone())
            .collect();
        // A job that failed and will be retried triggers its chain after
        // the retry, not now (no prune between two attempts to send).
        if !self.retry.contains_key(&d.job) {
            for a in after {
                self.start(&a, 0);
            }
        }
        if self.queued.remove(&d.job) {
            self.start(&d.job, 0);
        }
    }

    fn update_lag_metrics(&self, now: Timestamp) {
        let limit = i64::try_from(self.policy.daemon.lag_limit.as_secs()).unwrap_or(i64::MAX);
        for (job, targets) in &self.state.cursors {
            for (t, c) in targets {
                if let Some(oldest) = c.oldest_common() {
                    let lag = now.as_second() - oldest;
                    self.metrics.lag(job, t, lag, lag > limit);
                }
            }
        }
    }

    fn status(&self) -> Status {
        let now = Timestamp::now();
        let limit = i64::try_from(self.policy.daemon.lag_limit.as_secs()).unwrap_or(i64::MAX);
        let jobs = self
            .policy
            .jobs
            .iter()
            .map(|j| {
                let targets = match &j.kind {
                    JobKind::Replicate(r) => r
                        .targets
                        .iter()
                        .map(|t| {
                            let key = t.to_string();
                            let c = self.state.cursors.get(&j.name).and_then(|c| c.get(&key));
                            let lag = c
                                .and_then(crate::state::Cursor::oldest_common)
                                .map(|o| now.as_second() - o);
                            TargetStatus {
                                common: c.and_then(|c| {
                                    c.datasets
                                        .get(r.source.dataset.as_str())
                                        .map(|x| x.snapshot.clone())
                                }),
                                lag_limit_exceeded: lag.is_some_and(|l| l > limit),
                                lag,
                                target: key,
                            }
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                JobStatus {
                    name: j.name.clone(),
                    kind: j.kind.name().to_owned(),
                    schedule: match &j.trigger {
                        Trigger::Schedule(s) => s.to_string(),
                        Trigger::After(a) => format!("after {a}"),
                    },
                    enabled: j.enabled,
                    running: self.running.contains_key(&j.name),
                    queued: self.queued.contains(&j.name),
                    next_run: self.next.get(&j.name).copied(),
                    retry: self.retry.get(&j.name).copied(),
                    state: self.state.jobs.get(&j.name).cloned().unwrap_or_default(),
                    targets,
                }
            })
            .collect();
        Status {
            pid: std::process::id(),
            started: self.started,
            now,
            policy_files: self.opts.policy_files.clone(),
            policy_loaded: self.policy_loaded,
            reload_error: self.reload_error.clone(),
            stopping: self.stopping,
            jobs,
            alerts: self.alerts.values().flatten().cloned().collect(),
            listener: self.agent.as_ref().map(AgentListener::status),
        }
    }

    /// Re-reads the policies; on any error keeps the old ones and says why.
    fn reload(&mut self) -> Response {
        match load(&self.opts.policy_files) {
            Ok(p) => {
                // Against what runs (not the old policy): a listener that
                // could not be restarted is retried.
                if p.daemon.listen.as_ref() != self.agent.as_ref().map(AgentListener::settings)
                    && let Err(e) = self.restart_listener(p.daemon.listen.as_ref())
                {
                    let msg = format!("{e}: keeping the policy loaded at {}", self.policy_loaded);
                    error!("reload refused: {msg}");
                    self.reload_error = Some(msg.clone());
                    return Response::Error { message: msg };
                }
                let old = &self.policy.daemon;
                let mut notes = Vec::new();
                if p.daemon.control_socket != old.control_socket
                    || p.daemon.metrics_address != old.metrics_address
                    || p.daemon.state_dir != old.state_dir
                    || p.daemon.lock_dir != old.lock_dir
                {
                    notes.push("control-socket, metrics-address, state-dir and lock-dir changes take effect at the next start");
                }
                if p.daemon.concurrency != old.concurrency
                    || p.daemon.per_pool != old.per_pool
                    || p.daemon.per_host != old.per_host
                {
                    self.limits = Arc::new(Limits::new(&p.daemon));
                }
                self.tz = tz_of(&p);
                self.policy = Arc::new(p);
                self.policy_loaded = Timestamp::now();
                self.reload_error = None;
                self.reschedule(Timestamp::now());
                let msg = format!(
                    "policy reloaded: {} job(s){}",
                    self.policy.jobs.len(),
                    if notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", notes.join("; "))
                    }
                );
                info!("{msg}");
                Response::Ok { message: msg }
            }
            Err(d) => {
                let msg = format!(
                    "{d}\n{} error(s) in policy: keeping the policy loaded at {}",
                    d.error_count(),
                    self.policy_loaded
                );
                error!("reload refused:\n{msg}");
                self.reload_error = Some(msg.clone());
                Response::Error { message: msg }
            }
        }
    }

    /// Stops the agent listener and starts it with `new` settings; if
    /// they fail, starts it again with the old ones and says why.
    fn restart_listener(&mut self, new: Option<&policy::ListenSettings>) -> Result<(), String> {
        let old = self.agent.take().map(|mut a| {
            a.stop();
            a.settings().clone()
        });
        let Some(new) = new else {
            return Ok(());
        };
        match AgentListener::start(
            new,
            self.opts.zfs_bin.clone(),
            self.metrics.clone(),
            self.locks.clone(),
        ) {
            Ok(a) => {
                self.agent = Some(a);
                Ok(())
            }
            Err(e) => {
                if let Some(old) = old {
                    match AgentListener::start(
                        &old,
                        self.opts.zfs_bin.clone(),
                        self.metrics.clone(),
                        self.locks.clone(),
                    ) {
                        Ok(a) => self.agent = Some(a),
                        Err(e2) => error!("cannot restart the old agent listener: {e2}"),
                    }
                }
                Err(e)
            }
        }
    }

    fn control(&mut self, req: Request) -> Response {
        match req {
            Request::Status => Response::Status(Box::new(self.status())),
            Request::Reload => self.reload(),
            Request::Trigger { job } => {
                if self.stopping {
                    return Response::Error {
                        message: "the daemon is stopping".into(),
                    };
                }
                if self.job(&job).is_none() {
                    let names: Vec<&str> =
                        self.policy.jobs.iter().map(|j| j.name.as_str()).collect();
                    return Response::Error {
                        message: format!("no job {job:?}; jobs: {}", names.join(", ")),
                    };
                }
                let was_running = self.running.contains_key(&job);
                self.start(&job, 0);
                Response::Ok {
                    message: if was_running {
                        format!("{job} is running; it runs again when this run ends")
                    } else {
                        format!("{job} started")
                    },
                }
            }
        }
    }

    /// The earliest due time (schedule or retry).
    fn next_wake(&self) -> Option<Timestamp> {
        self.next
            .values()
            .copied()
            .chain(self.retry.values().map(|(_, t)| *t))
            .min()
    }

    fn run_due(&mut self, now: Timestamp) {
        let due: Vec<(String, u32)> = self
            .retry
            .iter()
            .filter(|(_, (_, t))| *t <= now)
            .map(|(n, (a, _))| (n.clone(), *a))
            .chain(
                self.next
                    .iter()
                    .filter(|(n, t)| **t <= now && !self.retry.contains_key(*n))
                    .map(|(n, _)| (n.clone(), 0)),
            )
            .collect();
        for (name, attempt) in due {
            self.retry.remove(&name);
            if self.running.contains_key(&name) {
                // Still running from the last slot: it runs once more after.
                self.queued.insert(name.clone());
                if let Some(j) = self.job(&name).cloned()
                    && let Trigger::Schedule(s) = &j.trigger
                {
                    self.next.insert(
                        name.clone(),
                        next_run(s, &self.tz, j.jitter, &name, Some(now), now),
                    );
                }
                continue;
            }
            self.start(&name, attempt);
        }
    }
}

/// Binds the control socket: refuses when another daemon answers on it,
/// replaces a stale one, and makes it 0600 (its directory 0700 when
/// created).
fn bind_control(path: &Path) -> Result<UnixListener, StartError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(StartError::AlreadyRunning(path.to_owned()));
    }
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StartError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StartError::Io(format!(
                "cannot replace {}: {e}",
                path.display()
            )));
        }
    }
    let l = UnixListener::bind(path).map_err(|e| {
        StartError::Io(format!(
            "cannot bind the control socket {}: {e}",
            path.display()
        ))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StartError::Io(format!("cannot chmod {}: {e}", path.display())))?;
    Ok(l)
}

/// How long an accept loop waits after a failed `accept` before it tries
/// again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(500);

/// An accept loop's answer to failures. A listening socket with a
/// connection waiting stays readable, so an `accept` that fails for want of
/// descriptors (EMFILE, ENFILE) or memory fails again at once: retried
/// without a pause, it spins a core until something else frees a
/// descriptor. This pauses [`ACCEPT_PAUSE`] after each failure, warns once
/// per run of failures (not twice a second) and says when accepting works
/// again.
pub(crate) struct AcceptPause {
    what: &'static str,
    failures: u64,
}

impl AcceptPause {
    /// For the listener called `what` in the log.
    pub(crate) fn new(what: &'static str) -> Self {
        Self { what, failures: 0 }
    }

    /// The connection `accept` gave, or `None` after a failure has been
    /// logged and waited out (the loop then tries again).
    pub(crate) async fn check<T>(&mut self, accepted: std::io::Result<T>) -> Option<T> {
        match accepted {
            Ok(conn) => {
                self.accepted();
                Some(conn)
            }
            Err(e) => {
                self.failed(&e).await;
                None
            }
        }
    }

    /// A connection was accepted.
    fn accepted(&mut self) {
        if self.failures > 0 {
            info!(
                listener = self.what,
                failures = self.failures,
                "accepting connections again"
            );
            self.failures = 0;
        }
    }

    /// `accept` failed with `e`: log it and wait before the next try.
    async fn failed(&mut self, e: &std::io::Error) {
        if self.failures == 0 {
            warn!(
                listener = self.what,
                error = %e,
                "cannot accept a connection (out of descriptors?): retrying every {ACCEPT_PAUSE:?}"
            );
        }
        self.failures += 1;
        tokio::time::sleep(ACCEPT_PAUSE).await;
    }
}

async fn serve_control(listener: UnixListener, tx: mpsc::Sender<Control>) {
    let mut pause = AcceptPause::new("control socket");
    loop {
        let Some((conn, _)) = pause.check(listener.accept().await).await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (r, mut w) = conn.into_split();
            let mut line = String::new();
            let mut r = BufReader::new(r.take(64 * 1024));
            if tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
                .await
                .is_err()
            {
                return;
            }
            let resp = match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    let (otx, orx) = oneshot::channel();
                    if tx.send(Control::Request(req, otx)).await.is_err() {
                        return;
                    }
                    match orx.await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                Err(e) => Response::Error {
                    message: format!("bad request: {e}"),
                },
            };
            if let Ok(mut out) = serde_json::to_vec(&resp) {
                out.push(b'\n');
                let _ = w.write_all(&out).await;
            }
        });
    }
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
///
/// # Errors
/// When it cannot start: a policy error, another daemon running, the
/// control socket or metrics address unusable.
pub fn run(opts: Options) -> Result<(), StartError> {
    let policy = load(&opts.policy_files).map_err(StartError::Policy)?;
    let blocking = usize::try_from(policy.daemon.concurrency).unwrap_or(4) + 4;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .thread_keep_alive(Duration::from_secs(10))
        .build()
        .map_err(|e| StartError::Io(format!("cannot start the runtime: {e}")))?;
    rt.block_on(main(opts, policy))
}

async fn main(opts: Options, policy: Policy) -> Result<(), StartError> {
    let d = &policy.daemon;
    let socket = opts
        .control_socket
        .clone()
        .unwrap_or_else(|| d.control_socket.clone());
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| d.state_dir.clone());
    let locks = LockDir::new(opts.lock_dir.clone().unwrap_or_else(|| d.lock_dir.clone()));
    let metrics_addr = opts.metrics_address.or(d.metrics_address);
    let listener = bind_control(&socket)?;
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = metrics_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on metrics-address {addr}: {e}")))?;
        info!(
            "metrics on http://{}/metrics",
            l.local_addr().map_or(addr, |a| a)
        );
        tokio::spawn(crate::metrics::serve(l, metrics.clone()));
    }
    let agent = match &d.listen {
        Some(l) => {
            match AgentListener::start(l, opts.zfs_bin.clone(), metrics.clone(), locks.clone()) {
                Ok(a) => Some(a),
                Err(e) => {
                    let _ = std::fs::remove_file(&socket);
                    return Err(StartError::Io(e));
                }
            }
        }
        None => None,
    };
    let sp = state_path(&state_dir);
    let (state, note) = State::load(&sp);
    if let Some(n) = note {
        warn!("{n}");
    }
    let mut sig_term =
        signal(SignalKind::terminate()).map_err(|e| StartError::Io(e.to_string()))?;
    let mut sig_int = signal(SignalKind::interrupt()).map_err(|e| StartError::Io(e.to_string()))?;
    let mut sig_hup = signal(SignalKind::hangup()).map_err(|e| StartError::Io(e.to_string()))?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Control>(16);
    tokio::spawn(serve_control(listener, ctl_tx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let now = Timestamp::now();
    let mut dm = Daemon {
        tz: tz_of(&policy),
        limits: Arc::new(Limits::new(&policy.daemon)),
        policy: Arc::new(policy),
        policy_loaded: now,
        reload_error: None,
        state,
        state_path: sp,
        metrics,
        caps: Arc::new(CapsCache::new()),
        locks,
        running: HashMap::new(),
        queued: BTreeSet::new(),
        retry: HashMap::new(),
        next: HashMap::new(),
        alerts: BTreeMap::new(),
        cursors: Arc::new(Mutex::new(BTreeMap::new())),
        done_tx,
        started: now,
        stopping: false,
        agent,
        opts,
    };
    *dm.cursors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = dm.state.cursors.clone();
    dm.reschedule(now);
    dm.update_lag_metrics(now);
    dm.save();
    let notifier = Notifier::from_env();
    let ping = notifier
        .watchdog()
        .map_or(Duration::from_secs(3600), |w| w / 2);
    let _ = notifier.notify(&format!(
        "READY=1\nSTATUS=running {} job(s)\nMAINPID={}",
        dm.policy.jobs.len(),
        std::process::id()
    ));
    info!(
        socket = %socket.display(),
        jobs = dm.policy.jobs.len(),
        "zfsrepl daemon running"
    );
    let mut watchdog = tokio::time::interval(ping);
    loop {
        let now = Timestamp::now();
        dm.run_due(now);
        // Sleep until the next due time, at most a minute (a clock change
        // is noticed within it).
        let wait = dm.next_wake().map_or(Duration::from_secs(60), |t| {
            let ms = t.as_millisecond() - Timestamp::now().as_millisecond();
            Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0))
                .min(Duration::from_secs(60))
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            Some(done) = done_rx.recv() => dm.finished(done),
            Some(Control::Request(req, reply)) = ctl_rx.recv() => {
                let resp = dm.control(req);
                let _ = reply.send(resp);
            }
            _ = sig_hup.recv() => {
                let _ = notifier.notify("RELOADING=1");
                let _ = dm.reload();
                let _ = notifier.notify("READY=1");
            }
            _ = watchdog.tick() => {
                let _ = notifier.notify("WATCHDOG=1");
            }
            _ = sig_term.recv() => break,
            _ = sig_int.recv() => break,
        }
    }
    // Graceful stop: nothing new starts; running jobs get the stop timeout,
    // then are cancelled.
    dm.stopping = true;
    // The listener accepts no more; its sessions get the stop timeout too.
    if let Some(a) = dm.agent.as_mut() {
        a.stop();
    }
    let sessions = |dm: &Daemon| dm.agent.as_ref().map_or(0, AgentListener::active);
    let timeout = dm.policy.daemon.stop_timeout;
    info!(
        running = dm.running.len(),
        sessions = sessions(&dm),
        "stopping: waiting up to {} for running jobs",
        zfsrepl_core::schedule::fmt_duration(timeout)
    );
    let _ = notifier.notify(&format!(
        "STOPPING=1\nSTATUS=stopping, {} job(s) running",
        dm.running.len()
    ));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cancelled = false;
    while !dm.running.is_empty() || (sessions(&dm) > 0 && !cancelled) {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)), if sessions(&dm) > 0 => {}
            Some(done) = done_rx.recv() => dm.finished(done),
            Some(Control::Request(req, reply)) = ctl_rx.recv() => {
                let _ = reply.send(dm.control(req));
            }
            () = tokio::time::sleep_until(deadline), if !cancelled => {
                warn!(running = dm.running.len(), "stop timeout reached: cancelling running jobs");
                for c in dm.running.values() {
                    c.cancel();
                }
                cancelled = true;
            }
            _ = watchdog.tick() => {
                let _ = notifier.notify("WATCHDOG=1");
            }
            _ = sig_term.recv(), if !cancelled => {
                warn!("second stop signal: cancelling running jobs now");
                for c in dm.running.values() {
                    c.cancel();
                }
                cancelled = true;
            }
        }
    }
    if sessions(&dm) > 0 {
        warn!(
            sessions = sessions(&dm),
            "stop timeout reached: agent sessions still running are cut"
        );
    }
    dm.save();
    let _ = std::fs::remove_file(&socket);
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn retries_back_off_exponentially_for_transient_failures_only() {
        let s = Duration::from_secs;
        let delays: Vec<Duration> = (0..6).map(|a| retry_delay(s(30), s(300), a)).collect();
        assert_eq!(delays, [s(30), s(60), s(120), s(240), s(300), s(300)]);
        assert_eq!(retry_delay(s(30), s(1800), 40), s(1800), "no overflow");
        let failed = |transient| Outcome {
            ok: false,
            transient,
            ..Outcome::default()
        };
        assert!(should_retry(&failed(true), false, 0, 3));
        assert!(should_retry(&failed(true), false, 2, 3));
        assert!(!should_retry(&failed(true), false, 3, 3), "retries used up");
        assert!(!should_retry(&failed(false), false, 0, 3), "permanent");
        assert!(
            !should_retry(&failed(true), true, 0, 3),
            "cancelled by a stop"
        );
        let ok = Outcome {
            ok: true,
            ..Outcome::default()
        };
        assert!(!should_retry(&ok, false, 0, 3));
    }

    #[tokio::test]
    async fn limits_bound_jobs_globally_per_pool_and_per_host() {
        let d = policy::DaemonSettings {
            concurrency: 2,
            per_pool: 1,
            per_host: 1,
            ..policy::DaemonSettings::default()
        };
        let l = Limits::new(&d);
        let blocked = |pools: &'static [&'static str], hosts: &'static [&'static str]| {
            let (p, h) = (set(pools), set(hosts));
            let l = &l;
            async move {
                tokio::time::timeout(Duration::from_millis(50), l.acquire(&p, &h))
                    .await
                    .is_err()
            }
        };
        let a = l.acquire(&set(&["tank"]), &set(&[])).await;
        assert!(blocked(&["tank"], &[]).await, "same pool waits");
        let b = l.acquire(&set(&["other", "off1:b"]), &set(&["off1"])).await;
        assert!(blocked(&["third"], &[]).await, "global limit of 2 reached");
        drop(a);
        assert!(blocked(&["off1:c"], &["off1"]).await, "same host waits");
        assert!(!blocked(&["tank"], &[]).await, "the pool is free again");
        drop(b);
        assert!(!blocked(&["off1:c"], &["off1"]).await);
    }

    #[test]
    fn jobs_name_their_pools_and_hosts() {
        let p = policy::parse_str(
            "p.toml",
            "version = 1\n[dataset.\"tank/a\"]\n[dataset.\"b/a\"]\n[host.off1]\n[job.r]\nkind = \"replicate\"\nsource = \"tank/a\"\ntargets = [\"off1:b/a\", \"bak/a\"]\nschedule = \"every 1h\"\n[job.p]\nkind = \"prune\"\ndatasets = [\"tank/a\", \"off1:b/a\"]\nafter = \"r\"\n",
        )
        .unwrap();
        let job = |n: &str| p.jobs.iter().find(|j| j.name == n).unwrap();
        let (pools, hosts) = resources(job("r"), &p);
        assert_eq!(pools, set(&["bak", "off1:b", "tank"]));
        assert_eq!(hosts, set(&["off1"]));
        let (pools, hosts) = resources(job("p"), &p);
        assert_eq!(pools, set(&["off1:b", "tank"]));
        assert_eq!(hosts, set(&["off1"]));
    }
}
