//! Prometheus metrics (the `prometheus-client` crate) and a minimal HTTP
//! server for `GET /metrics`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `zfsrepl_job_runs_total` | job, kind | runs started |
//! | `zfsrepl_job_failures_total` | job, kind | runs that failed |
//! | `zfsrepl_job_last_success_timestamp_seconds` | job | end of the last successful run |
//! | `zfsrepl_job_running` | job | 1 while a run is going |
//! | `zfsrepl_bytes_sent_total` | job, target | replication bytes |
//! | `zfsrepl_replication_lag_seconds` | job, target | age of the oldest newest-common snapshot |
//! | `zfsrepl_replication_lag_limit_exceeded` | job, target | 1 when past `lag-limit` |
//! | `zfsrepl_snapshots` | dataset | snapshots, as last listed by a job |
//! | `zfsrepl_snapshots_taken_total` / `_destroyed_total` | job | by snapshot and prune jobs |
//! | `zfsrepl_zfs_command_duration_seconds` | command | latency of each `zfs` command (not streams) |

use std::ffi::OsString;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zfsrepl_core::zfs::runner::{Child, ChildIo, Output};
use zfsrepl_core::zfs::{Host, Runner};

type Labels = Vec<(String, String)>;
type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn zfs_histogram() -> Histogram {
    // 5 ms .. ~40 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    running: Family<Labels, Gauge>,
    bytes: Family<Labels, Counter>,
    lag: Family<Labels, Gauge>,
    lag_exceeded: Family<Labels, Gauge>,
    snapshots: Family<Labels, Gauge>,
    taken: Family<Labels, Counter>,
    destroyed: Family<Labels, Counter>,
    zfs_latency: HistFamily,
    sessions: Family<Labels, Counter>,
    sessions_active: Gauge,
    sessions_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("zfsrepl");
        let m = Self {
            runs: Family::default(),
            failures: Family::default(),
            last_success: Family::default(),
            running: Family::default(),
            bytes: Family::default(),
            lag: Family::default(),
            lag_exceeded: Family::default(),
            snapshots: Family::default(),
            taken: Family::default(),
            destroyed: Family::default(),
            zfs_latency: Family::new_with_constructor(zfs_histogram),
            sessions: Family::default(),
            sessions_active: Gauge::default(),
            sessions_refused: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("job_runs", "Job runs started", m.runs.clone());
        registry.register("job_failures", "Job runs that failed", m.failures.clone());
        registry.register(
            "job_last_success_timestamp_seconds",
            "End of the job's last successful run (Unix time)",
            m.last_success.clone(),
        );
        registry.register("job_running", "1 while the job runs", m.running.clone());
        registry.register("bytes_sent", "Bytes replicated", m.bytes.clone());
        registry.register(
            "replication_lag_seconds",
            "Age of the target's oldest newest-common snapshot",
            m.lag.clone(),
        );
        registry.register(
            "replication_lag_limit_exceeded",
            "1 when the target is past the daemon's lag-limit (pruning no longer waits for it)",
            m.lag_exceeded.clone(),
        );
        registry.register(
            "snapshots",
            "Snapshots of the dataset, as last listed",
            m.snapshots.clone(),
        );
        registry.register("snapshots_taken", "Snapshots taken", m.taken.clone());
        registry.register(
            "snapshots_destroyed",
            "Snapshots destroyed by pruning",
            m.destroyed.clone(),
        );
        registry.register(
            "zfs_command_duration_seconds",
            "Latency of zfs commands (streams excluded)",
            m.zfs_latency.clone(),
        );
        registry.register(
            "agent_sessions",
            "Agent sessions accepted by the daemon's listener, by PSK identity",
            m.sessions.clone(),
        );
        registry.register(
            "agent_sessions_active",
            "Agent sessions being served by the daemon's listener",
            m.sessions_active.clone(),
        );
        registry.register(
            "agent_sessions_refused",
            "Connections refused by the daemon's listener (authentication, no peer entry, too many)",
            m.sessions_refused.clone(),
        );
        Self { registry, ..m }
    }

    /// The listener accepted a session of `identity`.
    pub fn agent_session_started(&self, identity: &str) {
        self.sessions
            .get_or_create(&labels(&[("identity", identity)]))
            .inc();
        self.sessions_active.inc();
    }

    /// The listener refused a connection.
    pub fn agent_session_refused(&self) {
        self.sessions_refused.inc();
    }

    /// A session of the listener ended.
    pub fn agent_session_ended(&self) {
        self.sessions_active.dec();
    }

    /// A run started.
    pub fn run_started(&self, job: &str, kind: &str) {
        self.runs
            .get_or_create(&labels(&[("job", job), ("kind", kind)]))
            .inc();
        self.running.get_or_create(&labels(&[("job", job)])).set(1);
    }

    /// A run ended.
    pub fn run_ended(&self, job: &str, kind: &str, ok: bool, end: f64) {
        self.running.get_or_create(&labels(&[("job", job)])).set(0);
        if ok {
            self.last_success
                .get_or_create(&labels(&[("job", job)]))
                .set(end);
        } else {
            self.failures
                .get_or_create(&labels(&[("job", job), ("kind", kind)]))
                .inc();
        }
    }

    /// Replication bytes.
    pub fn bytes_sent(&self, job: &str, target: &str, bytes: u64) {
        self.bytes
            .get_or_create(&labels(&[("job", job), ("target", target)]))
            .inc_by(bytes);
    }

    /// A target's lag, and whether it is past the limit.
    pub fn lag(&self, job: &str, target: &str, seconds: i64, exceeded: bool) {
        let l = labels(&[("job", job), ("target", target)]);
        self.lag.get_or_create(&l).set(seconds);
        self.lag_exceeded.get_or_create(&l).set(i64::from(exceeded));
    }

    /// A dataset's snapshot count.
    pub fn snapshot_count(&self, dataset: &str, n: usize) {
        self.snapshots
            .get_or_create(&labels(&[("dataset", dataset)]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Snapshots taken and destroyed by a job.
    pub fn snapshots_changed(&self, job: &str, taken: u64, destroyed: u64) {
        let l = labels(&[("job", job)]);
        self.taken.get_or_create(&l).inc_by(taken);
        self.destroyed.get_or_create(&l).inc_by(destroyed);
    }

    /// One zfs command's latency.
    pub fn zfs_command(&self, command: &str, seconds: f64) {
        self.zfs_latency
            .get_or_create(&labels(&[("command", command)]))
            .observe(seconds);
    }

    /// The OpenMetrics text.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A runner that times every `zfs` command it runs to completion (the
/// listing, snapshot, destroy... commands; streams are not timed).
pub struct Metered<R> {
    inner: R,
    metrics: Arc<Metrics>,
}

impl<R> Metered<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<R: Runner> Runner for Metered<R> {
    fn host(&self) -> &Host {
        self.inner.host()
    }

    fn spawn(&self, argv: &[OsString], io: ChildIo) -> io::Result<Child> {
        self.inner.spawn(argv, io)
    }

    fn invocations(&self) -> u64 {
        self.inner.invocations()
    }

    fn spawn_piped(
        &self,
        first: &[OsString],
        second: &[OsString],
        io: ChildIo,
    ) -> io::Result<Child> {
        self.inner.spawn_piped(first, second, io)
    }

    fn run(&self, argv: &[OsString]) -> io::Result<Output> {
        let start = Instant::now();
        let out = self.inner.run(argv);
        let program = argv
            .first()
            .and_then(|p| std::path::Path::new(p).file_name())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let command = match argv.get(1) {
            Some(sub) if program == "zfs" || program == "zpool" || program.ends_with("zfs") => {
                format!("{program} {}", sub.to_string_lossy())
            }
            _ => program,
        };
        self.metrics
            .zfs_command(&command, start.elapsed().as_secs_f64());
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let mut pause = crate::daemon::AcceptPause::new("metrics");
    loop {
        let Some((mut conn, _)) = pause.check(listener.accept().await).await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded; a slow client gets 5 s).
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while len < buf.len() {
                    match conn.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (status, ctype, body) =
                if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
                    (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.encode(),
                    )
                } else {
                    ("404 Not Found", "text/plain", "try /metrics\n".to_owned())
                };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_was_recorded() {
        let m = Metrics::new();
        m.run_started("snap", "snapshot");
        m.run_ended("snap", "snapshot", true, 1_700_000_000.0);
        m.run_started("repl", "replicate");
        m.run_ended("repl", "replicate", false, 1.0);
        m.bytes_sent("repl", "off1:b/a", 4096);
        m.lag("repl", "off1:b/a", 90, false);
        m.snapshot_count("tank/a", 7);
        m.snapshots_changed("snap", 2, 0);
        m.zfs_command("zfs list", 0.02);
        let text = m.encode();
        for want in [
            "zfsrepl_job_runs_total{job=\"snap\",kind=\"snapshot\"} 1",
            "zfsrepl_job_failures_total{job=\"repl\",kind=\"replicate\"} 1",
            "zfsrepl_job_last_success_timestamp_seconds{job=\"snap\"} 1700000000",
            "zfsrepl_bytes_sent_total{job=\"repl\",target=\"off1:b/a\"} 4096",
            "zfsrepl_replication_lag_seconds{job=\"repl\",target=\"off1:b/a\"} 90",
            "zfsrepl_snapshots{dataset=\"tank/a\"} 7",
            "zfsrepl_snapshots_taken_total{job=\"snap\"} 2",
            "zfsrepl_zfs_command_duration_seconds_count{command=\"zfs list\"} 1",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }

    #[tokio::test]
    async fn serves_http() {
        let m = Arc::new(Metrics::new());
        m.snapshot_count("tank/a", 3);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, m));
        let get = |path: &'static str| async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains("zfsrepl_snapshots{dataset=\"tank/a\"} 3"));
        assert!(get("/").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
