//! The control socket: a Unix stream socket (mode 0600, so root only)
//! speaking one JSON request line and one JSON response line per
//! connection. `zfsrepl status`, `trigger` and `reload` are its clients;
//! the client side here is synchronous (the CLI has no runtime).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::protect::LagAlert;
use crate::state::JobState;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "cmd")]
pub enum Request {
    /// The daemon's status.
    Status,
    /// Run a job now (even a disabled one).
    Trigger {
        /// The job.
        job: String,
    },
    /// Re-read the policies (as SIGHUP).
    Reload,
}

/// One replication target of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `host:pool/ds` or `pool/ds`.
    pub target: String,
    /// Age of the oldest newest-common snapshot across the tree, seconds.
    pub lag: Option<i64>,
    /// The root's newest common snapshot.
    pub common: Option<String>,
    /// Past the daemon's lag limit.
    pub lag_limit_exceeded: bool,
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Its name.
    pub name: String,
    /// snapshot, prune, replicate or clone.
    pub kind: String,
    /// `every 15m`, `after snap`, ...
    pub schedule: String,
    /// Runs on its schedule.
    pub enabled: bool,
    /// Running now (or waiting for a concurrency slot).
    pub running: bool,
    /// Will run again as soon as the current run ends.
    pub queued: bool,
    /// The next scheduled run.
    pub next_run: Option<Timestamp>,
    /// A retry is pending: (attempt number, when).
    pub retry: Option<(u32, Timestamp)>,
    /// Last runs.
    #[serde(flatten)]
    pub state: JobState,
    /// Replication targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
}

/// The daemon's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Process id.
    pub pid: u32,
    /// When it started.
    pub started: Timestamp,
    /// Its clock now.
    pub now: Timestamp,
    /// The policy files.
    pub policy_files: Vec<PathBuf>,
    /// When the policy in force was loaded.
    pub policy_loaded: Timestamp,
    /// Why the last reload was refused (the old policy stayed).
    pub reload_error: Option<String>,
    /// Shutting down.
    pub stopping: bool,
    /// Every job, by name.
    pub jobs: Vec<JobStatus>,
    /// Targets past the lag limit.
    pub alerts: Vec<LagAlert>,
    /// The agent listener (`[daemon] listen`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<crate::listen::ListenerStatus>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Response {
    /// Done; a message for humans.
    Ok {
        /// What happened.
        message: String,
    },
    /// The status.
    Status(Box<Status>),
    /// Refused or failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Sends one request and reads the response.
///
/// # Errors
/// When the socket cannot be reached (no daemon running) or the answer is
/// not understood.
pub fn request(socket: &Path, req: &Request) -> io::Result<Response> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the daemon at {}: {e} (is `zfsrepl daemon` running? --socket or ZFSREPL_SOCKET names another)",
                socket.display()
            ),
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp)?;
    serde_json::from_str(&resp).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer from the daemon: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r = serde_json::to_string(&Request::Trigger { job: "snap".into() }).unwrap();
        assert_eq!(r, r#"{"cmd":"trigger","job":"snap"}"#);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        let ok = serde_json::to_string(&Response::Ok {
            message: "x".into(),
        })
        .unwrap();
        assert_eq!(ok, r#"{"result":"ok","message":"x"}"#);
    }
}
