//! `zfsrepl daemon`, and its clients: `status`, `trigger`, `reload`, and
//! `check --daemon` (which reads the state file, so it works with the
//! daemon down too).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use jiff::Timestamp;
use zfsrepl_daemon::control::{self, Request, Response, Status};
use zfsrepl_daemon::daemon::{self, StartError};

/// Where the control socket is.
#[derive(Debug, Clone, Args)]
pub struct SocketArgs {
    /// The daemon's control socket (default: the policy's
    /// `[daemon] control-socket`, else /run/zfsrepl/control.sock).
    #[arg(long, value_name = "PATH", env = "ZFSREPL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Policy files, to find the control socket (default: /etc/zfsrepl/*.toml).
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
}

impl SocketArgs {
    fn path(&self) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        crate::policy_files(self.policies.clone())
            .ok()
            .and_then(|f| zfsrepl_core::policy::load(&f).ok())
            .map_or_else(
                || zfsrepl_core::policy::DaemonSettings::default().control_socket,
                |p| p.daemon.control_socket,
            )
    }
}

/// `zfsrepl daemon` arguments.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Policy file (repeatable). Default: /etc/zfsrepl/*.toml.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Control socket (overrides `[daemon] control-socket`).
    #[arg(long, value_name = "PATH", env = "ZFSREPL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// State directory (overrides `[daemon] state-dir`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Per-dataset lock directory (overrides `[daemon] lock-dir`).
    #[arg(long, value_name = "DIR", env = "ZFSREPL_LOCK_DIR")]
    pub lock_dir: Option<PathBuf>,
    /// Prometheus listen address (overrides `[daemon] metrics-address`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// Runs the daemon in the foreground.
pub fn run(a: DaemonArgs, zfs_bin: OsString) -> Result<ExitCode> {
    let files = crate::policy_files(a.policies)?;
    let opts = daemon::Options {
        policy_files: files,
        zfs_bin,
        control_socket: a.socket,
        state_dir: a.state_dir,
        lock_dir: a.lock_dir,
        metrics_address: a.metrics_address,
    };
    match daemon::run(opts) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(StartError::Policy(d)) => {
            eprintln!("{d}\n");
            eprintln!("zfsrepl: {} error(s) in policy", d.error_count());
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

fn ask(sock: &SocketArgs, req: &Request) -> Result<Response> {
    Ok(control::request(&sock.path(), req)?)
}

/// `zfsrepl trigger JOB`.
pub fn trigger(sock: &SocketArgs, job: &str) -> Result<ExitCode> {
    answer(ask(
        sock,
        &Request::Trigger {
            job: job.to_owned(),
        },
    )?)
}

/// `zfsrepl reload`.
pub fn reload(sock: &SocketArgs) -> Result<ExitCode> {
    answer(ask(sock, &Request::Reload)?)
}

fn answer(r: Response) -> Result<ExitCode> {
    match r {
        Response::Ok { message } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message } => {
            eprintln!("{message}");
            Ok(ExitCode::from(1))
        }
        Response::Status(_) => anyhow::bail!("unexpected answer from the daemon"),
    }
}

/// `zfsrepl status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print JSON (with --watch: one object per line).
    #[arg(long)]
    pub json: bool,
    /// Refresh every 2 seconds until interrupted.
    #[arg(long)]
    pub watch: bool,
}

fn ago(now: Timestamp, t: Option<Timestamp>) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let s = now.as_second() - t.as_second();
    let (n, future) = if s < 0 { (-s, true) } else { (s, false) };
    let d = zfsrepl_core::schedule::fmt_duration(Duration::from_secs(n.unsigned_abs()));
    let d = if n >= 86_400 {
        // Days and hours are enough.
        d.split_inclusive('h').next().unwrap_or(&d).to_owned()
    } else {
        d
    };
    if future {
        format!("in {d}")
    } else {
        format!("{d} ago")
    }
}

/// Renders a status as a table.
#[must_use]
pub fn render(s: &Status) -> String {
    let now = s.now;
    let mut rows = vec![[
        "JOB".to_owned(),
        "KIND".into(),
        "SCHEDULE".into(),
        "LAST RUN".into(),
        "RESULT".into(),
        "NEXT RUN".into(),
        "RUNS".into(),
        "FAILED".into(),
        "BYTES".into(),
    ]];
    let mut extra: Vec<(usize, String)> = Vec::new();
    for j in &s.jobs {
        let result = if j.running {
            "running".to_owned()
        } else {
            match j.state.last_result {
                None => "-".into(),
                Some(r) => format!("{r:?}").to_lowercase(),
            }
        };
        let next = match (j.retry, j.next_run) {
            (Some((n, at)), _) => format!("retry {n} {}", ago(now, Some(at))),
            (None, Some(t)) => ago(now, Some(t)),
            (None, None) if !j.enabled => "disabled".into(),
            (None, None) => "-".into(),
        };
        rows.push([
            j.name.clone(),
            j.kind.clone(),
            j.schedule.clone(),
            ago(now, j.state.last_run),
            result,
            next,
            j.state.runs.to_string(),
            j.state.failures.to_string(),
            j.state.bytes.to_string(),
        ]);
        let row = rows.len() - 1;
        for t in &j.targets {
            extra.push((
                row,
                format!(
                    "    -> {}: lag {}{}, common {}",
                    t.target,
                    t.lag
                        .map_or("-".into(), |l| zfsrepl_core::schedule::fmt_duration(
                            Duration::from_secs(l.unsigned_abs())
                        )),
                    if t.lag_limit_exceeded {
                        " (PAST THE LAG LIMIT)"
                    } else {
                        ""
                    },
                    t.common.as_deref().unwrap_or("none")
                ),
            ));
        }
        if let (Some(e), Some(control_result)) = (&j.state.last_error, j.state.last_result)
            && control_result != zfsrepl_daemon::state::RunResult::Ok
        {
            extra.push((row, format!("    error: {e}")));
        }
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "zfsrepl daemon pid {}, up {}, policy loaded {}{}\n",
        s.pid,
        ago(now, Some(s.started)).trim_end_matches(" ago"),
        ago(now, Some(s.policy_loaded)),
        if s.stopping { ", STOPPING" } else { "" }
    );
    if let Some(l) = &s.listener {
        out.push_str(&format!(
            "agent listener on {}: {} session(s) now, {} accepted, {} refused\n",
            l.address, l.sessions_active, l.sessions_accepted, l.sessions_refused
        ));
    }
    if let Some(e) = &s.reload_error {
        out.push_str(&format!("last reload REFUSED (old policy kept):\n{e}\n"));
    }
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        for (_, e) in extra.iter().filter(|(row, _)| *row == i) {
            out.push_str(e);
            out.push('\n');
        }
    }
    for a in &s.alerts {
        out.push_str(&format!(
            "ALERT: {} -> {} ({}) is {} behind, past the lag limit: pruning no longer waits for it\n",
            a.job,
            a.target,
            a.dataset,
            zfsrepl_core::schedule::fmt_duration(Duration::from_secs(a.lag.unsigned_abs()))
        ));
    }
    out
}

/// `zfsrepl status`.
pub fn status(a: &StatusArgs) -> Result<ExitCode> {
    let path = a.socket.path();
    let mut out = std::io::stdout().lock();
    loop {
        let s = match control::request(&path, &Request::Status)? {
            Response::Status(s) => s,
            Response::Error { message } => anyhow::bail!("{message}"),
            Response::Ok { .. } => anyhow::bail!("unexpected answer from the daemon"),
        };
        if a.json {
            // Rendered first, so that a closed pipe is an io::Error (a
            // quiet exit) rather than a serde one.
            let text = if a.watch {
                serde_json::to_string(&s)?
            } else {
                serde_json::to_string_pretty(&s)?
            };
            writeln!(out, "{text}")?;
        } else {
            if a.watch {
                // Home and clear: a live view.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{}", render(&s))?;
        }
        out.flush()?;
        if !a.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `zfsrepl check --daemon`: replication lag and job failures from the
/// daemon's state file, as one Nagios line (0 OK, 1 WARNING, 2 CRITICAL).
pub fn check_daemon(
    policy: &zfsrepl_core::policy::Policy,
    state_dir: Option<PathBuf>,
    now: Timestamp,
) -> Result<(u8, String)> {
    use zfsrepl_core::policy::JobKind;
    let dir = state_dir.unwrap_or_else(|| policy.daemon.state_dir.clone());
    let path = zfsrepl_daemon::state::state_path(&dir);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the daemon state {} (has the daemon run?)",
            path.display()
        )
    })?;
    let state: zfsrepl_daemon::state::State =
        serde_json::from_slice(&text).with_context(|| format!("{} is corrupt", path.display()))?;
    let limit = i64::try_from(policy.daemon.lag_limit.as_secs()).unwrap_or(i64::MAX);
    let mut level = 0u8;
    let mut parts = Vec::new();
    for j in &policy.jobs {
        if let Some(js) = state.jobs.get(&j.name)
            && js.last_result == Some(zfsrepl_daemon::state::RunResult::Failed)
        {
            level = level.max(1);
            parts.push(format!(
                "job {} failed: {}",
                j.name,
                js.last_error.as_deref().unwrap_or("?")
            ));
        }
        let JobKind::Replicate(r) = &j.kind else {
            continue;
        };
        for t in &r.targets {
            let key = t.to_string();
            let lag = state
                .cursors
                .get(&j.name)
                .and_then(|c| c.get(&key))
                .and_then(zfsrepl_daemon::state::Cursor::oldest_common)
                .map(|o| now.as_second() - o);
            let secs = |d: Option<Duration>| d.and_then(|d| i64::try_from(d.as_secs()).ok());
            let (warn, crit) = (secs(r.lag_warn), secs(r.lag_crit));
            let fmt = |l: i64| {
                zfsrepl_core::schedule::fmt_duration(Duration::from_secs(l.unsigned_abs()))
            };
            match lag {
                None => {
                    level = level.max(1);
                    parts.push(format!("{} -> {key}: no common snapshot yet", j.name));
                }
                Some(l) if l > limit || crit.is_some_and(|c| l > c) => {
                    level = 2;
                    parts.push(format!("{} -> {key}: lag {} (critical)", j.name, fmt(l)));
                }
                Some(l) if warn.is_some_and(|w| l > w) => {
                    level = level.max(1);
                    parts.push(format!("{} -> {key}: lag {} (warning)", j.name, fmt(l)));
                }
                Some(l) => parts.push(format!("{} -> {key}: lag {}", j.name, fmt(l))),
            }
        }
    }
    let word = ["OK", "WARNING", "CRITICAL"][usize::from(level)];
    let line = if parts.is_empty() {
        format!("{word}: no daemon jobs to check")
    } else {
        format!("{word}: {}", parts.join(", "))
    };
    Ok((level, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let t = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        assert_eq!(ago(now, t("2026-12-06T11:59:30Z")), "30s ago");
        assert_eq!(ago(now, t("2026-12-06T12:15:00Z")), "in 15m");
        assert_eq!(ago(now, t("2026-12-04T10:05:00Z")), "2d1h ago");
        assert_eq!(ago(now, None), "-");
    }

    #[test]
    fn the_table_shows_jobs_targets_errors_and_alerts() {
        use zfsrepl_daemon::control::{JobStatus, TargetStatus};
        use zfsrepl_daemon::state::{JobState, RunResult};
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let s = Status {
            pid: 42,
            started: at("2026-12-06T10:00:00Z"),
            now,
            policy_files: Vec::new(),
            policy_loaded: at("2026-12-06T11:00:00Z"),
            reload_error: Some("p.toml:3:1: error: unknown key".into()),
            stopping: false,
            jobs: vec![
                JobStatus {
                    name: "repl".into(),
                    kind: "replicate".into(),
                    schedule: "after snap".into(),
                    enabled: true,
                    running: false,
                    queued: false,
                    next_run: None,
                    retry: Some((1, at("2026-12-06T12:00:30Z"))),
                    state: JobState {
                        last_run: Some(at("2026-12-06T11:59:00Z")),
                        last_result: Some(RunResult::Failed),
                        last_error: Some("cannot send: transport failure".into()),
                        runs: 3,
                        failures: 1,
                        bytes: 4096,
                        ..JobState::default()
                    },
                    targets: vec![TargetStatus {
                        target: "off1:b/a".into(),
                        lag: Some(5400),
                        common: Some("zfsrepl_x".into()),
                        lag_limit_exceeded: false,
                    }],
                },
                JobStatus {
                    name: "snap".into(),
                    kind: "snapshot".into(),
                    schedule: "every 15m".into(),
                    enabled: true,
                    running: true,
                    queued: false,
                    next_run: Some(at("2026-12-06T12:15:00Z")),
                    retry: None,
                    state: JobState::default(),
                    targets: Vec::new(),
                },
            ],
            alerts: Vec::new(),
            listener: Some(zfsrepl_daemon::listen::ListenerStatus {
                address: "0.0.0.0:8470".into(),
                sessions_active: 1,
                sessions_accepted: 7,
                sessions_refused: 2,
            }),
        };
        let t = render(&s);
        for want in [
            "zfsrepl daemon pid 42, up 2h, policy loaded 1h ago",
            "agent listener on 0.0.0.0:8470: 1 session(s) now, 7 accepted, 2 refused",
            "last reload REFUSED (old policy kept):\np.toml:3:1",
            "repl  replicate  after snap  1m ago    failed   retry 1 in 30s",
            "    -> off1:b/a: lag 1h30m, common zfsrepl_x",
            "    error: cannot send: transport failure",
            "snap  snapshot   every 15m   -         running  in 15m",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
    }
}
