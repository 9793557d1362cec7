//! The daemon's part of a policy: hosts, jobs and the `[daemon]` section.
//!
//! ```toml
//! [host.off1]
//! address = "off1.example.org"
//! user = "root"
//! port = 22
//! ssh-key = "/etc/zfsrepl/id_ed25519"
//! transport = "ssh"              # local | ssh | ssh-agent | tls | stunnel
//!
//! [host.ovh3]
//! address = "127.0.0.1"          # the local stunnel client's accept port
//! port = 8470
//! transport = "stunnel"
//! psk-file = "/etc/stunnel/off2-ovh3.psk"
//! identity = "off2"
//!
//! [job.snap]
//! kind = "snapshot"               # periods and counts from [dataset] entries
//! datasets = ["zfs-hdd/off"]
//! schedule = "every 15m"
//! jitter = "30s"
//!
//! [job.repl]
//! kind = "replicate"
//! source = "zfs-hdd/off"         # a local source: push
//! targets = ["off1:zfs-hdd/backups/off2/off", "ovh3:rpool/backups/off2/off"]
//! after = "snap"                  # runs when `snap` finished (or: schedule)
//! compress = "zstd"
//!
//! [job.prune]
//! kind = "prune"                  # retention from [dataset] entries
//! datasets = ["zfs-hdd/off"]
//! after = "repl"
//!
//! [daemon]
//! control-socket = "/run/zfsrepl/control.sock"
//! state-dir = "/var/lib/zfsrepl"
//! lock-dir = "/run/zfsrepl/locks"
//! metrics-address = "127.0.0.1:9811"
//! concurrency = 4
//! per-pool = 2
//! per-host = 1
//! stop-timeout = "2m"
//! lag-limit = "7d"
//! listen = "0.0.0.0:8470"        # serve the agent to peers over TLS-PSK
//! psk-file = "/etc/zfsrepl/psk"  # with listen: the keys (IDENTITY:KEY)
//! peers = "/etc/zfsrepl/peers.toml" # with listen: `[[peer]]` rights
//! ```
//!
//! A dataset reference is `pool/ds` (this host) or `HOST:pool/ds`, where
//! `HOST` is a `[host.NAME]` entry or `local`; a `:` counts as the host
//! separator only when no `/` comes before it. A host with
//! `transport = "local"` is this host.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use toml::de::DeTable;

use super::reader::{Cx, Fields, Value};
use super::{DatasetPolicy, Origin, Source};
use crate::name::DatasetName;
use crate::schedule::Schedule;

/// How zfsrepl reaches a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// This host: `zfs` runs here.
    Local,
    /// Bare ssh: the remote needs only `zfs`.
    Ssh,
    /// ssh to a forced command running `zfsrepl serve --stdio`.
    SshAgent,
    /// zfsrepl's own TLS-PSK transport.
    Tls,
    /// Through a stunnel link (PSK), connecting to the local stunnel's port.
    Stunnel,
}

/// A `[host.NAME]` entry: how to reach a host. Plain data; transports use
/// what applies to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// The entry's name, used in dataset references (`NAME:pool/ds`).
    pub name: String,
    /// Host name or IP address (default: the entry's name).
    pub address: String,
    /// Remote user (ssh).
    pub user: Option<String>,
    /// Port (ssh, TLS, or the local stunnel accept port).
    pub port: Option<u16>,
    /// ssh private key.
    pub ssh_key: Option<PathBuf>,
    /// How to reach it.
    pub transport: Transport,
    /// Pre-shared keys in stunnel's `IDENTITY:KEY` format (tls, stunnel).
    pub psk_file: Option<PathBuf>,
    /// This side's PSK identity (tls, stunnel).
    pub identity: Option<String>,
    /// tls: a peer that acknowledges nothing for this long is dead (TCP
    /// keepalive and `TCP_USER_TIMEOUT`); `Some(0)` turns it off; `None`:
    /// the default (60 s). A link cut shorter than this is ridden out.
    pub dead_peer: Option<Duration>,
    /// tls: a connection that moves no byte for this long is stuck;
    /// `Some(0)` waits for ever; `None`: the default (10 min).
    pub io_timeout: Option<Duration>,
    /// Free text for humans and graphs.
    pub description: Option<String>,
    /// Where the entry is written.
    #[serde(skip)]
    pub origin: Origin,
}

impl Host {
    /// Whether the host is this one.
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.transport == Transport::Local
    }
}

/// A dataset on a host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DatasetRef {
    /// The `[host.NAME]` it is on; `None` for this host (also written
    /// `local:` or through a host with `transport = "local"`).
    pub host: Option<String>,
    /// The dataset.
    pub dataset: DatasetName,
}

impl std::fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(h) => write!(f, "{h}:{}", self.dataset),
            None => write!(f, "{}", self.dataset),
        }
    }
}

impl DatasetRef {
    /// Splits `HOST:pool/ds` from `pool/ds` (a `:` after a `/` belongs to
    /// the dataset name). `local:` gives `host = None`.
    ///
    /// # Errors
    /// An invalid dataset or host name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, ds) = match s.split_once(':') {
            Some((h, d)) if !h.contains('/') => (Some(h), d),
            _ => (None, s),
        };
        if let Some(h) = host
            && !valid_name(h)
        {
            return Err(format!(
                "invalid host name {h:?}: use letters, digits, - _ ."
            ));
        }
        let dataset = DatasetName::parse(ds).map_err(|e| e.to_string())?;
        Ok(Self {
            host: host.filter(|h| *h != "local").map(str::to_owned),
            dataset,
        })
    }

    /// The pool (first component).
    #[must_use]
    pub fn pool(&self) -> &str {
        self.dataset.pool()
    }
}

/// Which way a replication job moves data, seen from the host running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The source is here; targets are here or elsewhere.
    Push,
    /// The source is elsewhere; every target is here.
    Pull,
}

/// Stream compression on network legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Plain streams.
    None,
    /// zstd at this level (1..=19).
    Zstd(i32),
}

impl Compression {
    /// Parses `none`, `zstd` (level 3) or `zstd:N`.
    ///
    /// # Errors
    /// What is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "none" => Ok(Self::None),
            None if s == "zstd" => Ok(Self::Zstd(3)),
            Some(("zstd", n)) => match n.parse::<i32>() {
                Ok(l) if (1..=19).contains(&l) => Ok(Self::Zstd(l)),
                _ => Err(format!("zstd level must be 1..=19, not {n:?}")),
            },
            _ => Err(format!("expected none, zstd or zstd:LEVEL, not {s:?}")),
        }
    }
}

/// What a replicate job sends where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replicate {
    /// The source dataset (the root, with `recursive`).
    pub source: DatasetRef,
    /// The targets, each receiving the source's snapshots.
    pub targets: Vec<DatasetRef>,
    /// Push (source here) or pull (targets here).
    pub direction: Direction,
    /// Replicate descendants too.
    pub recursive: bool,
    /// Compression of network legs.
    pub compress: Compression,
    /// Allow rolling a target back over snapshots zfsrepl owns.
    pub force_rollback: bool,
    /// Set `readonly=on` on each target root.
    pub readonly: bool,
    /// First replication sends every snapshot (default: the newest only).
    pub all_snapshots: bool,
    /// Bandwidth limit in bytes per second.
    pub bwlimit: Option<u64>,
    /// Replication lag (age of the newest common snapshot) that warns in
    /// `zfsrepl check --daemon`.
    pub lag_warn: Option<Duration>,
    /// Replication lag that is critical.
    pub lag_crit: Option<Duration>,
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum JobKind {
    /// Take the snapshots that are due, by the datasets' `[dataset]` entries.
    Snapshot,
    /// Prune by the datasets' `[dataset]` retention, sparing what
    /// replication still needs.
    Prune,
    /// Replicate a source to targets.
    Replicate(Replicate),
    /// Refresh staging clones (the names of clone specs).
    Clone {
        /// Clone spec names.
        clones: Vec<String>,
    },
}

impl JobKind {
    /// `snapshot`, `prune`, `replicate` or `clone`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Prune => "prune",
            Self::Replicate(_) => "replicate",
            Self::Clone { .. } => "clone",
        }
    }
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// On a schedule.
    Schedule(Schedule),
    /// Each time the named job finished a run (successfully or not: a
    /// failed replication still lets pruning run, sparing what it needs).
    After(String),
}

/// A `[job.NAME]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// The entry's name.
    pub name: String,
    /// What it does.
    #[serde(flatten)]
    pub kind: JobKind,
    /// The datasets it acts on (snapshot, prune; empty otherwise).
    pub datasets: Vec<DatasetRef>,
    /// When it runs.
    pub trigger: Trigger,
    /// Deterministic delay in `[0, jitter)` added to each scheduled run.
    pub jitter: Duration,
    /// Retries of transient failures (default: the daemon's).
    pub retries: Option<u32>,
    /// `false`: defined but never run by schedule (`zfsrepl trigger` still
    /// runs it).
    pub enabled: bool,
    /// Where the entry is written.
    #[serde(skip)]
    pub origin: Origin,
}

/// The `[daemon]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonSettings {
    /// The control socket (Unix, mode 0600).
    pub control_socket: PathBuf,
    /// Where the state file lives.
    pub state_dir: PathBuf,
    /// Per-dataset lock files, shared with manual `zfsrepl send`/`prune`.
    pub lock_dir: PathBuf,
    /// Prometheus `/metrics` listen address; none: no metrics server.
    pub metrics_address: Option<SocketAddr>,
    /// Jobs running at once, in all.
    pub concurrency: u32,
    /// Jobs acting on one pool at once.
    pub per_pool: u32,
    /// Jobs talking to one remote host at once.
    pub per_host: u32,
    /// On stop, how long running jobs may finish before they are cancelled.
    pub stop_timeout: Duration,
    /// How far behind (age of its newest common snapshot) the slowest
    /// target may hold back pruning; beyond, pruning goes on and the
    /// operator is alerted.
    pub lag_limit: Duration,
    /// Retries of a transient failure.
    pub retries: u32,
    /// First retry delay, doubled each time.
    pub retry_backoff: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// The agent listener hosted by the daemon (`listen`, `psk-file`,
    /// `peers`), as `zfsrepl serve --listen` runs it; none: no listener.
    pub listen: Option<ListenSettings>,
}

/// `[daemon] listen`: where and to whom the daemon serves the agent over
/// TLS-PSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenSettings {
    /// The address to listen on.
    pub address: SocketAddr,
    /// stunnel-format secrets (`IDENTITY:KEY` lines).
    pub psk_file: PathBuf,
    /// The peers file: one `[[peer]]` of rights per identity.
    pub peers: PathBuf,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            control_socket: PathBuf::from("/run/zfsrepl/control.sock"),
            state_dir: PathBuf::from("/var/lib/zfsrepl"),
            lock_dir: PathBuf::from("/run/zfsrepl/locks"),
            metrics_address: None,
            concurrency: 4,
            per_pool: 2,
            per_host: 1,
            stop_timeout: Duration::from_secs(120),
            lag_limit: Duration::from_secs(7 * 86_400),
            retries: 3,
            retry_backoff: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            listen: None,
        }
    }
}

const HOST_KEYS: &[&str] = &[
    "address",
    "user",
    "port",
    "ssh-key",
    "transport",
    "psk-file",
    "identity",
    "dead-peer",
    "io-timeout",
    "description",
];
const JOB_KEYS: &[&str] = &[
    "kind",
    "datasets",
    "source",
    "targets",
    "direction",
    "recursive",
    "compress",
    "force-rollback",
    "readonly",
    "all-snapshots",
    "bwlimit",
    "lag-warn",
    "lag-crit",
    "clones",
    "schedule",
    "after",
    "jitter",
    "retries",
    "enabled",
];
const DAEMON_KEYS: &[&str] = &[
    "control-socket",
    "state-dir",
    "lock-dir",
    "metrics-address",
    "concurrency",
    "per-pool",
    "per-host",
    "stop-timeout",
    "lag-limit",
    "retries",
    "retry-backoff",
    "retry-max",
    "listen",
    "psk-file",
    "peers",
];

/// Host, job and daemon entries gathered from every file, checked against
/// each other once all are read.
#[derive(Default)]
pub(crate) struct Raw {
    hosts: BTreeMap<String, Host>,
    jobs: Vec<RawJob>,
    daemon: Option<(DaemonSettings, usize, Range<usize>)>,
}

struct RawJob {
    job: Job,
    /// Spans of references to check later.
    host_refs: Vec<(String, Range<usize>)>,
    after_span: Option<Range<usize>>,
    dataset_spans: Vec<Range<usize>>,
    /// Whether `direction` was written (else it follows the source).
    direction_set: bool,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn table<'a, 'i>(cx: &mut Cx<'_>, v: &'a Value<'i>, what: &str) -> Option<&'a DeTable<'i>> {
    let t = v.get_ref().as_table();
    if t.is_none() {
        cx.error(v.span(), format!("{what} must be a table"));
    }
    t
}

fn path(cx: &mut Cx<'_>, v: &Value<'_>, key: &str) -> Option<PathBuf> {
    let s = cx.string(v, key)?;
    if !s.starts_with('/') {
        cx.error_help(
            v.span(),
            format!("`{key}` = {s:?} is not an absolute path"),
            "the daemon runs from /; give the full path",
        );
        return None;
    }
    Some(PathBuf::from(s))
}

/// `listen`, `psk-file` and `peers` of `[daemon]`: all or none.
fn read_listen(cx: &mut Cx<'_>, f: &mut Fields<'_, '_>, d: &mut DaemonSettings) {
    let mut address = None;
    if let Some(v) = f.get("listen")
        && let Some(s) = cx.string(v, "listen")
    {
        match s.parse::<SocketAddr>() {
            Ok(a) => address = Some(a),
            Err(_) => cx.error_help(
                v.span(),
                format!("`listen` = {s:?} is not an IP address and port"),
                "e.g. \"0.0.0.0:8470\" or \"[::]:8470\"",
            ),
        }
    }
    let psk_file = f.get("psk-file").and_then(|v| path(cx, v, "psk-file"));
    let peers = f.get("peers").and_then(|v| path(cx, v, "peers"));
    let listen_span = f.key_span("listen");
    match (listen_span, address, psk_file, peers) {
        (_, Some(address), Some(psk_file), Some(peers)) => {
            d.listen = Some(ListenSettings {
                address,
                psk_file,
                peers,
            });
        }
        (Some(span), _, psk, peers) => {
            for (key, missing) in [("psk-file", psk.is_none()), ("peers", peers.is_none())] {
                if missing && f.key_span(key).is_none() {
                    cx.error_help(
                        span.clone(),
                        format!("`listen` needs `{key}`"),
                        "the listener serves the agent over TLS-PSK: give the keys (`psk-file`) and the peers' rights (`peers`)",
                    );
                }
            }
        }
        (None, ..) => {
            for key in ["psk-file", "peers"] {
                if let Some(span) = f.key_span(key) {
                    cx.error_help(
                        span,
                        format!("`{key}` without `listen`"),
                        "`psk-file` and `peers` belong to the daemon's listener: add `listen = \"ADDR:PORT\"` or remove them",
                    );
                }
            }
        }
    }
}

fn dataset_ref(cx: &mut Cx<'_>, s: &str, span: Range<usize>) -> Option<DatasetRef> {
    match DatasetRef::parse(s) {
        Ok(r) => Some(r),
        Err(e) => {
            cx.error_help(
                span,
                format!("invalid dataset reference {s:?}: {e}"),
                "write pool/ds (this host) or HOST:pool/ds (a [host.HOST] entry)",
            );
            None
        }
    }
}

impl Raw {
    /// Reads `[host.*]` of one file.
    pub(crate) fn read_hosts(&mut self, cx: &mut Cx<'_>, file: usize, v: &Value<'_>) {
        let Some(t) = table(cx, v, "`host`") else {
            return;
        };
        for (k, hv) in t.iter() {
            let name = k.get_ref().to_string();
            if !valid_name(&name) || name == "local" {
                cx.error_help(
                    k.span(),
                    format!("invalid host name {name:?}"),
                    "use letters, digits, - _ . (`local` is reserved for this host)",
                );
                continue;
            }
            let Some(ht) = table(cx, hv, &format!("host `{name}`")) else {
                continue;
            };
            let mut f = Fields::new(ht, HOST_KEYS, format!("host `{name}`"));
            let address = f
                .get("address")
                .and_then(|v| cx.string(v, "address"))
                .map_or_else(|| name.clone(), str::to_owned);
            let user = f
                .get("user")
                .and_then(|v| cx.string(v, "user"))
                .map(str::to_owned);
            let port = f
                .get("port")
                .and_then(|v| cx.int(v, "port", 1..65_536))
                .and_then(|n| u16::try_from(n).ok());
            let ssh_key = f.get("ssh-key").and_then(|v| path(cx, v, "ssh-key"));
            let psk_file = f.get("psk-file").and_then(|v| path(cx, v, "psk-file"));
            let identity = f
                .get("identity")
                .and_then(|v| cx.string(v, "identity"))
                .map(str::to_owned);
            let description = f
                .get("description")
                .and_then(|v| cx.string(v, "description"))
                .map(str::to_owned);
            let dead_peer = f.get("dead-peer").and_then(|v| cx.duration(v, "dead-peer"));
            let io_timeout = f
                .get("io-timeout")
                .and_then(|v| cx.duration(v, "io-timeout"));
            let transport = match f.get("transport") {
                None => Transport::Ssh,
                Some(v) => match cx.string(v, "transport") {
                    Some("local") => Transport::Local,
                    Some("ssh") => Transport::Ssh,
                    Some("ssh-agent") => Transport::SshAgent,
                    Some("tls") => Transport::Tls,
                    Some("stunnel") => Transport::Stunnel,
                    Some(o) => {
                        cx.error_help(
                            v.span(),
                            format!("unknown transport {o:?}"),
                            "use local, ssh, ssh-agent, tls or stunnel",
                        );
                        Transport::Ssh
                    }
                    None => Transport::Ssh,
                },
            };
            if matches!(transport, Transport::Tls | Transport::Stunnel) {
                if psk_file.is_none() {
                    cx.error_help(
                        k.span(),
                        format!("host `{name}`: transport {transport:?} needs `psk-file`")
                            .to_lowercase(),
                        "psk-file = \"/etc/stunnel/LINK.psk\" (stunnel's IDENTITY:KEY lines)",
                    );
                }
                if port.is_none() {
                    cx.error(
                        k.span(),
                        format!("host `{name}`: transport {transport:?} needs `port`")
                            .to_lowercase(),
                    );
                }
            }
            if transport != Transport::Tls {
                for key in ["dead-peer", "io-timeout"] {
                    if let Some(span) = f.key_span(key) {
                        cx.error_help(
                            span,
                            format!("host `{name}`: `{key}` applies to transport \"tls\" only"),
                            "ssh has ServerAliveInterval (ssh config); a stunnel link has its own TIMEOUT options",
                        );
                    }
                }
            }
            f.finish(cx);
            if let Some(prev) = self.hosts.get(&name) {
                let _ = prev;
                cx.error(k.span(), format!("host `{name}` is defined twice"));
                continue;
            }
            self.hosts.insert(
                name.clone(),
                Host {
                    name,
                    address,
                    user,
                    port,
                    ssh_key,
                    transport,
                    psk_file,
                    identity,
                    dead_peer,
                    io_timeout,
                    description,
                    origin: Origin {
                        file,
                        span: k.span(),
                    },
                },
            );
        }
    }

    /// Reads `[daemon]` of one file.
    pub(crate) fn read_daemon(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        key_span: Range<usize>,
        v: &Value<'_>,
    ) {
        let Some(t) = table(cx, v, "`daemon`") else {
            return;
        };
        let mut f = Fields::new(t, DAEMON_KEYS, "daemon");
        let mut d = DaemonSettings::default();
        for (key, slot) in [
            ("control-socket", &mut d.control_socket),
            ("state-dir", &mut d.state_dir),
            ("lock-dir", &mut d.lock_dir),
        ] {
            if let Some(p) = f.get(key).and_then(|v| path(cx, v, key)) {
                *slot = p;
            }
        }
        if let Some(v) = f.get("metrics-address")
            && let Some(s) = cx.string(v, "metrics-address")
        {
            match s.parse::<SocketAddr>() {
                _ if s == "none" => d.metrics_address = None,
                Ok(a) => d.metrics_address = Some(a),
                Err(_) => cx.error_help(
                    v.span(),
                    format!("`metrics-address` = {s:?} is not an IP address and port"),
                    "e.g. \"127.0.0.1:9811\", \"[::1]:9811\", or \"none\" for no metrics server",
                ),
            }
        }
        for (key, slot, max) in [
            ("concurrency", &mut d.concurrency, 1000),
            ("per-pool", &mut d.per_pool, 1000),
            ("per-host", &mut d.per_host, 1000),
            ("retries", &mut d.retries, 100),
        ] {
            let lo = i64::from(key != "retries");
            if let Some(n) = f.get(key).and_then(|v| cx.int(v, key, lo..max + 1)) {
                *slot = u32::try_from(n).unwrap_or(*slot);
            }
        }
        for (key, slot) in [
            ("stop-timeout", &mut d.stop_timeout),
            ("lag-limit", &mut d.lag_limit),
            ("retry-backoff", &mut d.retry_backoff),
            ("retry-max", &mut d.retry_max),
        ] {
            if let Some(x) = f.get(key).and_then(|v| cx.duration(v, key)) {
                *slot = x;
            }
        }
        read_listen(cx, &mut f, &mut d);
        if d.retry_backoff.is_zero() {
            cx.error(
                f.key_span("retry-backoff").unwrap_or(key_span.clone()),
                "`retry-backoff` must be more than 0s",
            );
        }
        f.finish(cx);
        if self.daemon.is_some() {
            cx.error_help(
                key_span,
                "a second [daemon] section",
                "write [daemon] in one policy file only",
            );
            return;
        }
        self.daemon = Some((d, file, key_span));
    }

    /// Reads `[job.*]` of one file.
    pub(crate) fn read_jobs(&mut self, cx: &mut Cx<'_>, file: usize, v: &Value<'_>) {
        let Some(t) = table(cx, v, "`job`") else {
            return;
        };
        for (k, jv) in t.iter() {
            let name = k.get_ref().to_string();
            if !valid_name(&name) {
                cx.error_help(
                    k.span(),
                    format!("invalid job name {name:?}"),
                    "use letters, digits, - _ .",
                );
                continue;
            }
            let Some(jt) = table(cx, jv, &format!("job `{name}`")) else {
                continue;
            };
            if let Some(j) = read_job(cx, file, &name, k.span(), jt) {
                if self.jobs.iter().any(|o| o.job.name == name) {
                    cx.error(k.span(), format!("job `{name}` is defined twice"));
                    continue;
                }
                self.jobs.push(j);
            }
        }
    }

    /// Checks references between entries and against the dataset entries;
    /// returns hosts, jobs (sorted by name) and daemon settings.
    pub(crate) fn finish(
        self,
        sources: &[Source],
        datasets: &[DatasetPolicy],
        diags: &mut Vec<super::Diagnostic>,
    ) -> (Vec<Host>, Vec<Job>, DaemonSettings) {
        let Self {
            hosts,
            mut jobs,
            daemon,
        } = self;
        let names: Vec<String> = jobs.iter().map(|j| j.job.name.clone()).collect();
        let covered = |d: &DatasetName| {
            datasets.iter().any(|e| &e.dataset == d)
                || datasets.iter().any(|e| {
                    e.recursion != super::Recursion::None
                        && d.is_within(&e.dataset)
                        && !e.exclude.iter().any(|x| d.is_within(x))
                })
        };
        for rj in &mut jobs {
            let src = &sources[rj.job.origin.file];
            // Host references: declared, and local hosts folded into None.
            for (h, span) in &rj.host_refs {
                if !hosts.contains_key(h) {
                    diags.push(src.diagnostic(
                        super::Severity::Error,
                        span.clone(),
                        format!("unknown host `{h}`"),
                        Some(if hosts.is_empty() {
                            "declare it with [host.NAME], or write `local:` for this host".into()
                        } else {
                            format!(
                                "declared hosts: {}",
                                hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        }),
                    ));
                }
            }
            let fold = |r: &mut DatasetRef| {
                if r.host
                    .as_ref()
                    .and_then(|h| hosts.get(h))
                    .is_some_and(Host::is_local)
                {
                    r.host = None;
                }
            };
            rj.job.datasets.iter_mut().for_each(fold);
            if let JobKind::Replicate(r) = &mut rj.job.kind {
                fold(&mut r.source);
                r.targets.iter_mut().for_each(fold);
                if !rj.direction_set {
                    r.direction = if r.source.host.is_some() {
                        Direction::Pull
                    } else {
                        Direction::Push
                    };
                }
            }
            if let Some(span) = &rj.after_span
                && let Trigger::After(a) = &rj.job.trigger
            {
                if *a == rj.job.name {
                    diags.push(src.error(span.clone(), format!("job `{a}` runs after itself")));
                } else if !names.contains(a) {
                    diags.push(src.diagnostic(
                        super::Severity::Error,
                        span.clone(),
                        format!("unknown job `{a}`"),
                        Some(format!("defined jobs: {}", names.join(", "))),
                    ));
                }
            }
            match &rj.job.kind {
                JobKind::Snapshot | JobKind::Prune => {
                    let kind = rj.job.kind.name();
                    for (d, span) in rj.job.datasets.iter().zip(&rj.dataset_spans) {
                        if kind == "snapshot" && d.host.is_some() {
                            diags.push(src.error(
                                span.clone(),
                                format!(
                                    "snapshot job `{}`: {d} is on another host; snapshots are taken where the daemon runs",
                                    rj.job.name
                                ),
                            ));
                        } else if !covered(&d.dataset) {
                            diags.push(src.diagnostic(
                                super::Severity::Error,
                                span.clone(),
                                format!(
                                    "{kind} job `{}`: no [dataset] entry covers `{}`",
                                    rj.job.name, d.dataset
                                ),
                                Some(format!(
                                    "the {kind} settings come from it: add [dataset.\"{}\"]",
                                    d.dataset
                                )),
                            ));
                        }
                    }
                }
                JobKind::Replicate(r) => {
                    let span = rj.job.origin.span.clone();
                    if r.source.host.is_some() && r.targets.iter().any(|t| t.host.is_some()) {
                        diags.push(src.diagnostic(
                            super::Severity::Error,
                            span,
                            format!(
                                "replicate job `{}`: source and a target are both on other hosts",
                                rj.job.name
                            ),
                            Some(
                                "a job runs on one side: push from this host, or pull into it"
                                    .into(),
                            ),
                        ));
                    } else {
                        let direction = if r.source.host.is_some() {
                            Direction::Pull
                        } else {
                            Direction::Push
                        };
                        if r.direction != direction {
                            diags.push(src.error(
                                span,
                                format!(
                                    "replicate job `{}`: direction = {:?} but the source {} is {}",
                                    rj.job.name,
                                    format!("{:?}", r.direction).to_lowercase(),
                                    r.source,
                                    if direction == Direction::Push {
                                        "on this host (that is a push)"
                                    } else {
                                        "on another host (that is a pull)"
                                    }
                                ),
                            ));
                        }
                    }
                    let mut seen = Vec::new();
                    for t in &r.targets {
                        if *t == r.source {
                            diags.push(src.error(
                                rj.job.origin.span.clone(),
                                format!(
                                    "replicate job `{}`: target {t} is the source",
                                    rj.job.name
                                ),
                            ));
                        }
                        if seen.contains(&t) {
                            diags.push(src.error(
                                rj.job.origin.span.clone(),
                                format!(
                                    "replicate job `{}`: target {t} is listed twice",
                                    rj.job.name
                                ),
                            ));
                        }
                        seen.push(t);
                    }
                }
                JobKind::Clone { .. } => {}
            }
        }
        // `after` cycles (a -> b -> a).
        for rj in &jobs {
            let mut at = rj.job.name.as_str();
            let mut path = vec![at];
            while let Some(Trigger::After(next)) = jobs
                .iter()
                .find(|j| j.job.name == at)
                .map(|j| &j.job.trigger)
            {
                if next == &rj.job.name {
                    if path.len() > 1 && path.iter().min() == Some(&rj.job.name.as_str()) {
                        path.push(next);
                        diags.push(sources[rj.job.origin.file].error(
                            rj.after_span.clone().unwrap_or(rj.job.origin.span.clone()),
                            format!(
                                "jobs run after each other in a circle: {}",
                                path.join(" -> ")
                            ),
                        ));
                    }
                    break;
                }
                if path.contains(&next.as_str()) || path.len() > jobs.len() {
                    break;
                }
                at = next;
                path.push(at);
            }
        }
        let mut out: Vec<Job> = jobs.into_iter().map(|j| j.job).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        (
            hosts.into_values().collect(),
            out,
            daemon.map(|(d, ..)| d).unwrap_or_default(),
        )
    }
}

fn read_job(
    cx: &mut Cx<'_>,
    file: usize,
    name: &str,
    span: Range<usize>,
    t: &DeTable<'_>,
) -> Option<RawJob> {
    let mut f = Fields::new(t, JOB_KEYS, format!("job `{name}`"));
    let mut host_refs = Vec::new();
    let mut refs = |cx: &mut Cx<'_>, v: &Value<'_>, key: &str| -> Vec<(DatasetRef, Range<usize>)> {
        let mut out = Vec::new();
        for (s, sp) in cx.strings(v, key).unwrap_or_default() {
            if let Some(r) = dataset_ref(cx, &s, sp.clone()) {
                if let Some(h) = &r.host {
                    host_refs.push((h.clone(), sp.clone()));
                }
                out.push((r, sp));
            }
        }
        out
    };
    let kind_v = f.get("kind");
    let kind_s = match kind_v {
        None => {
            cx.error_help(
                span.clone(),
                format!("job `{name}` has no `kind`"),
                "kind = \"snapshot\", \"prune\", \"replicate\" or \"clone\"",
            );
            None
        }
        Some(v) => match cx.string(v, "kind") {
            Some(k @ ("snapshot" | "prune" | "replicate" | "clone")) => Some(k),
            Some(o) => {
                cx.error_help(
                    v.span(),
                    format!("unknown job kind {o:?}"),
                    "use snapshot, prune, replicate or clone",
                );
                None
            }
            None => None,
        },
    };
    let datasets_v = f.get("datasets");
    let (datasets, dataset_spans): (Vec<_>, Vec<_>) = datasets_v
        .map(|v| refs(cx, v, "datasets"))
        .unwrap_or_default()
        .into_iter()
        .unzip();
    // Replication keys, read whatever the kind so that misplaced ones are
    // reported as such rather than as unknown.
    let repl_keys = [
        "source",
        "targets",
        "direction",
        "recursive",
        "compress",
        "force-rollback",
        "readonly",
        "all-snapshots",
        "bwlimit",
        "lag-warn",
        "lag-crit",
    ];
    let kind = match kind_s {
        Some("snapshot" | "prune") => {
            if datasets_v.is_none() {
                cx.error_help(
                    span.clone(),
                    format!(
                        "{} job `{name}` has no `datasets`",
                        kind_s.unwrap_or_default()
                    ),
                    "datasets = [\"pool/ds\", ...]",
                );
            }
            if let Some(v) = f.get("clones") {
                cx.error(v.span(), "`clones` is for clone jobs");
            }
            Some(if kind_s == Some("snapshot") {
                JobKind::Snapshot
            } else {
                JobKind::Prune
            })
        }
        Some("clone") => {
            if let Some(v) = datasets_v {
                cx.error(v.span(), "a clone job names `clones`, not `datasets`");
            }
            let clones = match f.get("clones") {
                Some(v) => cx
                    .strings(v, "clones")
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect(),
                None => {
                    cx.error_help(
                        span.clone(),
                        format!("clone job `{name}` has no `clones`"),
                        "clones = [\"NAME\", ...] naming clone specs",
                    );
                    Vec::new()
                }
            };
            Some(JobKind::Clone { clones })
        }
        Some("replicate") => {
            if let Some(v) = datasets_v {
                cx.error_help(
                    v.span(),
                    "a replicate job names a `source`, not `datasets`",
                    "source = \"pool/ds\" and targets = [\"HOST:pool/ds\", ...]",
                );
            }
            if let Some(v) = f.get("clones") {
                cx.error(v.span(), "`clones` is for clone jobs");
            }
            let source = match f.get("source") {
                Some(v) => cx
                    .string(v, "source")
                    .map(str::to_owned)
                    .and_then(|s| refs(cx, v, "source").into_iter().next().map(|r| (r, s))),
                None => {
                    cx.error_help(
                        span.clone(),
                        format!("replicate job `{name}` has no `source`"),
                        "source = \"pool/ds\" (push) or \"HOST:pool/ds\" (pull)",
                    );
                    None
                }
            };
            let targets: Vec<DatasetRef> = match f.get("targets") {
                Some(v) => {
                    let t: Vec<DatasetRef> =
                        refs(cx, v, "targets").into_iter().map(|(r, _)| r).collect();
                    if t.is_empty() && v.get_ref().as_array().is_some_and(|a| a.is_empty()) {
                        cx.error(v.span(), "`targets` is empty");
                    }
                    t
                }
                None => {
                    cx.error_help(
                        span.clone(),
                        format!("replicate job `{name}` has no `targets`"),
                        "targets = [\"HOST:pool/ds\", ...]",
                    );
                    Vec::new()
                }
            };
            let direction = match f.get("direction") {
                // Set once hosts are known (a `transport = "local"` host
                // is this one).
                None => Direction::Push,
                Some(v) => match cx.string(v, "direction") {
                    Some("push") => Direction::Push,
                    Some("pull") => Direction::Pull,
                    Some(o) => {
                        cx.error_help(
                            v.span(),
                            format!("unknown direction {o:?}"),
                            "use push or pull",
                        );
                        Direction::Push
                    }
                    None => Direction::Push,
                },
            };
            let b = |cx: &mut Cx<'_>, f: &mut Fields<'_, '_>, k: &'static str, d: bool| {
                f.get(k).and_then(|v| cx.bool(v, k)).unwrap_or(d)
            };
            let recursive = b(cx, &mut f, "recursive", true);
            let force_rollback = b(cx, &mut f, "force-rollback", false);
            let readonly = b(cx, &mut f, "readonly", false);
            let all_snapshots = b(cx, &mut f, "all-snapshots", false);
            let compress = match f.get("compress") {
                None => Compression::None,
                Some(v) => match cx.string(v, "compress").map(Compression::parse) {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        cx.error(v.span(), format!("`compress`: {e}"));
                        Compression::None
                    }
                    None => Compression::None,
                },
            };
            let bwlimit = f
                .get("bwlimit")
                .and_then(|v| cx.int(v, "bwlimit", 1..i64::MAX))
                .and_then(|n| u64::try_from(n).ok());
            let lag_warn = f.get("lag-warn").and_then(|v| cx.duration(v, "lag-warn"));
            let lag_crit = f.get("lag-crit").and_then(|v| cx.duration(v, "lag-crit"));
            source.map(|((source, _), _)| {
                JobKind::Replicate(Replicate {
                    source,
                    targets,
                    direction,
                    recursive,
                    compress,
                    force_rollback,
                    readonly,
                    all_snapshots,
                    bwlimit,
                    lag_warn,
                    lag_crit,
                })
            })
        }
        _ => {
            // Mark every key used so an unknown kind is the only error.
            for k in JOB_KEYS {
                let _ = f.get(k);
            }
            return None;
        }
    };
    if let Some(k) = kind_s
        && k != "replicate"
    {
        for key in repl_keys {
            if let Some(v) = f.get(key) {
                cx.error(
                    f.key_span(key).unwrap_or(v.span()),
                    format!("`{key}` is for replicate jobs, not {k} jobs"),
                );
            }
        }
    }
    let schedule = f.get("schedule");
    let after = f.get("after");
    let trigger = match (schedule, after) {
        (Some(s), None) => cx.string(s, "schedule").and_then(|text| match Schedule::parse(text) {
            Ok(x) => Some(Trigger::Schedule(x)),
            Err(e) => {
                cx.error_help(
                    s.span(),
                    format!("`schedule`: {e}"),
                    "e.g. \"every 15m\", \"hourly :05\", \"daily 03:00\", \"weekdays 02:30\", \"mon,thu 01:15\"",
                );
                None
            }
        }),
        (None, Some(a)) => cx.string(a, "after").map(|a| Trigger::After(a.to_owned())),
        (Some(_), Some(a)) => {
            cx.error_help(
                a.span(),
                format!("job `{name}` has both `schedule` and `after`"),
                "a job runs on a schedule, or after another job: pick one",
            );
            None
        }
        (None, None) => {
            cx.error_help(
                span.clone(),
                format!("job `{name}` has no `schedule`"),
                "schedule = \"every 15m\" (or after = \"OTHER-JOB\" to run when it finishes)",
            );
            None
        }
    };
    let jitter = f
        .get("jitter")
        .and_then(|v| cx.duration(v, "jitter"))
        .unwrap_or_default();
    if !jitter.is_zero()
        && let Some(Trigger::After(_)) = trigger
    {
        cx.error(
            f.key_span("jitter").unwrap_or(span.clone()),
            "`jitter` applies to scheduled jobs, not to `after` ones",
        );
    }
    let retries = f
        .get("retries")
        .and_then(|v| cx.int(v, "retries", 0..101))
        .and_then(|n| u32::try_from(n).ok());
    let enabled = f
        .get("enabled")
        .and_then(|v| cx.bool(v, "enabled"))
        .unwrap_or(true);
    let after_span = after.map(toml::Spanned::span);
    let direction_set = f.key_span("direction").is_some();
    f.finish(cx);
    Some(RawJob {
        job: Job {
            name: name.to_owned(),
            kind: kind?,
            datasets,
            trigger: trigger?,
            jitter,
            retries,
            enabled,
            origin: Origin { file, span },
        },
        host_refs,
        after_span,
        dataset_spans,
        direction_set,
    })
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
