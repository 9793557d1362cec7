//! The client: [`AgentClient`] implements [`ZfsRead`], [`ZfsWrite`] and
//! [`ZfsStream`] over one agent connection, so the replication executor
//! drives a remote agent as it drives a local `zfs`.
//!
//! Streams run on a worker thread that owns the connection for the
//! stream's duration and talks to the executor through an OS pipe (whose
//! descriptor the executor splices into or out of): the pipe is the stream
//! the executor sees. Requests made while a stream runs wait for it to
//! end; a stream abandoned on our side ([`SendStream::abort`]) is drained by
//! its worker in the background, since the protocol is half-duplex.

use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::frame::{DataFrames, FrameError, FrameKind, MAX_DATA, read_frame_into, write_frame};
use super::proto::{Codec, JobId, PROTOCOL_VERSION, Request, Response, recv_message, send_message};
use super::server::{default_zstd_workers, read_some, zstd_encoder};
use crate::name::{BookmarkName, DatasetName, EntityName, SnapshotName};
use crate::replication::SyncJob;
use crate::zfs::{
    Capabilities, Dataset, DestroyOutcome, ListSpec, PropValue, RecvSink, RecvSpec, SendSpec,
    SendStream, ZfsError, ZfsErrorKind, ZfsRead, ZfsResult, ZfsStream, ZfsWrite,
};

/// A connection to an agent: one object that reads and writes (an ssh
/// child's stdio, a TLS stream, one end of a socket pair).
pub trait Conn: Read + Write + Send {}

impl<T: Read + Write + Send> Conn for T {}

/// A shared, bounded tail of a transport's diagnostics (ssh's stderr),
/// added to transport errors.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(pub Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    /// The tail as text, trimmed.
    #[must_use]
    pub fn text(&self) -> String {
        let b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&b).trim().to_owned()
    }
}

type Worker = JoinHandle<(Option<Box<dyn Conn>>, ZfsResult<()>)>;

/// Where the connection is.
enum Slot {
    /// Ready for a request.
    Idle(Box<dyn Conn>),
    /// A stream's worker has it (an abandoned stream being drained).
    Busy(Worker),
    /// Lent to a running stream.
    Lent,
    /// Lost: the reason.
    Broken(String),
}

/// What every stream half and the client share.
struct Shared {
    slot: Mutex<Slot>,
    host: Option<String>,
    stderr: Mutex<Option<StderrTail>>,
}

impl Shared {
    fn transport(&self, op: &str, e: &dyn std::fmt::Display) -> ZfsError {
        let mut msg = e.to_string();
        if let Some(t) = self
            .stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            // Give the transport a moment to say why it ended.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let tail = t.text();
            if !tail.is_empty() {
                msg.push_str(" | ");
                msg.push_str(&tail.replace('\n', " | "));
            }
        }
        let mut err = ZfsError::new(op, ZfsErrorKind::Transport, msg);
        err.host.clone_from(&self.host);
        err
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the connection for a request or a stream.
    fn take(&self, op: &str) -> ZfsResult<Box<dyn Conn>> {
        let mut slot = self.lock();
        match std::mem::replace(&mut *slot, Slot::Lent) {
            Slot::Idle(c) => Ok(c),
            Slot::Busy(h) => match h.join() {
                Ok((Some(c), _)) => Ok(c),
                Ok((None, r)) => {
                    let why = r
                        .err()
                        .map_or_else(|| "the connection was lost".to_owned(), |e| e.to_string());
                    *slot = Slot::Broken(why.clone());
                    Err(self.transport(op, &why))
                }
                Err(_) => {
                    *slot = Slot::Broken("a stream worker panicked".into());
                    Err(self.transport(op, &"a stream worker panicked"))
                }
            },
            Slot::Lent => Err(self.transport(
                op,
                &"the agent connection is in use by a running stream (one stream at a time)",
            )),
            Slot::Broken(why) => {
                *slot = Slot::Broken(why.clone());
                Err(self.transport(op, &format!("the agent connection was lost earlier: {why}")))
            }
        }
    }

    fn put(&self, c: Option<Box<dyn Conn>>, why: impl FnOnce() -> String) {
        *self.lock() = match c {
            Some(c) => Slot::Idle(c),
            None => Slot::Broken(why()),
        };
    }

    fn park(&self, h: Worker) {
        *self.lock() = Slot::Busy(h);
    }

    fn finish(&self, h: Worker) -> ZfsResult<()> {
        match h.join() {
            Ok((c, r)) => {
                let why = r.as_ref().err().map(ToString::to_string);
                self.put(c, || why.unwrap_or_else(|| "lost".into()));
                r
            }
            Err(_) => {
                self.put(None, || "a stream worker panicked".into());
                Err(self.transport("stream", &"a stream worker panicked"))
            }
        }
    }
}

/// The client side of an agent connection, usable wherever the executor
/// wants a ZFS: list, properties, holds, the job's own snapshots, and
/// streams in both directions.
///
/// Operations the agent does not offer (create, destroy datasets, clone,
/// rename, inherit) return [`ZfsErrorKind::Unsupported`]; what it refuses
/// returns [`ZfsErrorKind::PermissionDenied`] with the agent's reason.
pub struct AgentClient {
    shared: Arc<Shared>,
    caps: Capabilities,
    identity: Option<String>,
    job: Option<SyncJob>,
    codec: Codec,
    zstd_workers: u32,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("host", &self.shared.host)
            .field("identity", &self.identity)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Greets the agent on `conn` (protocol version, the job this session
    /// acts for) and learns its capabilities. `host` names the agent in
    /// errors.
    ///
    /// # Errors
    /// A transport error when the agent does not answer as an agent; the
    /// agent's refusal (another protocol version, a bad job name).
    pub fn connect<C: Conn + 'static>(
        conn: C,
        host: Option<String>,
        job: Option<SyncJob>,
    ) -> ZfsResult<Self> {
        Self::connect_with(Box::new(conn), host, job, None)
    }

    /// [`AgentClient::connect`], with the transport's stderr for messages.
    ///
    /// # Errors
    /// As [`AgentClient::connect`].
    pub fn connect_with(
        conn: Box<dyn Conn>,
        host: Option<String>,
        job: Option<SyncJob>,
        stderr: Option<StderrTail>,
    ) -> ZfsResult<Self> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::Idle(conn)),
            host,
            stderr: Mutex::new(stderr),
        });
        let mut client = Self {
            shared,
            caps: Capabilities::zfs_fuse(),
            identity: None,
            job: job.clone(),
            codec: Codec::Plain,
            zstd_workers: default_zstd_workers(),
        };
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            job: job.map(|j| JobId {
                job: j.job().to_owned(),
                target: j.target().to_owned(),
            }),
        };
        match client.call("hello", &hello)? {
            Response::Hello {
                version,
                caps,
                identity,
            } if version == PROTOCOL_VERSION => {
                client.caps = caps;
                client.identity = identity;
                Ok(client)
            }
            Response::Hello { version, .. } => Err(client.other(
                "hello",
                format!("the agent speaks protocol {version}, this zfsrepl {PROTOCOL_VERSION}"),
            )),
            other => Err(client.unexpected("hello", &other)),
        }
    }

    /// Compress streams this client sends (push) and ask the agent to
    /// compress streams it sends (pull) with zstd at `level`; `None`:
    /// plain.
    pub fn set_compression(&mut self, level: Option<i32>) {
        self.codec = level.map_or(Codec::Plain, |level| Codec::Zstd { level });
    }

    /// zstd worker threads when this client compresses.
    pub fn set_zstd_workers(&mut self, workers: u32) {
        self.zstd_workers = workers;
    }

    /// The identity the agent knows us by, if its config names one.
    #[must_use]
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The job this session acts for.
    #[must_use]
    pub fn job(&self) -> Option<&SyncJob> {
        self.job.as_ref()
    }

    fn other(&self, op: &str, msg: String) -> ZfsError {
        let mut e = ZfsError::new(op, ZfsErrorKind::Other, msg);
        e.host.clone_from(&self.shared.host);
        e
    }

    fn unexpected(&self, op: &str, r: &Response) -> ZfsError {
        self.other(op, format!("unexpected reply from the agent: {r:?}"))
    }

    /// One request, one response; the agent's errors become [`ZfsError`]s.
    fn call(&self, op: &str, req: &Request) -> ZfsResult<Response> {
        let mut c = self.shared.take(op)?;
        let r = exchange(&mut c, req);
        match r {
            Ok(Response::Error { error }) => {
                self.shared.put(Some(c), String::new);
                Err(error.into_zfs(self.shared.host.as_deref()))
            }
            Ok(resp) => {
                self.shared.put(Some(c), String::new);
                Ok(resp)
            }
            Err(e) => {
                let why = e.to_string();
                self.shared.put(None, || why.clone());
                Err(self.shared.transport(op, &why))
            }
        }
    }

    /// One request, and every response while they say `more`.
    fn call_all(&self, op: &str, req: &Request) -> ZfsResult<Vec<Response>> {
        let first = self.call(op, req)?;
        let more = |r: &Response| {
            matches!(
                r,
                Response::List { more: true, .. } | Response::Props { more: true, .. }
            )
        };
        let mut out = vec![first];
        while out.last().is_some_and(more) {
            let mut c = self.shared.take(op)?;
            match recv_message::<Response>(&mut c, &mut Vec::new()) {
                Ok(r) => {
                    self.shared.put(Some(c), String::new);
                    out.push(r);
                }
                Err(e) => {
                    let why = e.to_string();
                    self.shared.put(None, || why.clone());
                    return Err(self.shared.transport(op, &why));
                }
            }
        }
        Ok(out)
    }

    fn done(&self, op: &str, req: &Request) -> ZfsResult<()> {
        match self.call(op, req)? {
            Response::Done => Ok(()),
            other => Err(self.unexpected(op, &other)),
        }
    }

    fn unsupported(&self, op: String) -> ZfsError {
        let mut e = ZfsError::new(
            op,
            ZfsErrorKind::Unsupported,
            "not offered by the zfsrepl agent",
        );
        e.host.clone_from(&self.shared.host);
        e
    }

    fn check_tag(&self, op: &str, tag: &str) -> ZfsResult<()> {
        match &self.job {
            Some(j) if j.hold_tag() == tag => Ok(()),
            _ => {
                let mut e = ZfsError::new(
                    op,
                    ZfsErrorKind::InvalidArgument,
                    format!(
                        "the agent holds and releases only this session's job tag, not {tag:?}"
                    ),
                );
                e.host.clone_from(&self.shared.host);
                Err(e)
            }
        }
    }

    fn no_props(&self, op: &str, props: &[(String, String)]) -> ZfsResult<()> {
        if props.is_empty() {
            Ok(())
        } else {
            Err(self.unsupported(format!("{op} with properties")))
        }
    }
}

impl ZfsRead for AgentClient {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn list(&self, spec: &ListSpec) -> ZfsResult<Vec<Dataset>> {
        let mut out: Vec<Dataset> = Vec::new();
        for r in self.call_all("list", &Request::List { spec: spec.clone() })? {
            let Response::List { datasets, .. } = r else {
                return Err(self.unexpected("list", &r));
            };
            for d in datasets {
                // A dataset too big for one response continues in the next.
                match out.last_mut() {
                    Some(last) if last.name == d.name => last.versions.extend(d.versions),
                    _ => out.push(d),
                }
            }
        }
        Ok(out)
    }

    fn get_props(
        &self,
        names: &[EntityName],
        props: &[&str],
        recursive: bool,
    ) -> ZfsResult<Vec<PropValue>> {
        let req = Request::GetProps {
            names: names.to_vec(),
            props: props.iter().map(|p| (*p).to_owned()).collect(),
            recursive,
        };
        let mut out = Vec::new();
        for r in self.call_all("get", &req)? {
            let Response::Props { values, .. } = r else {
                return Err(self.unexpected("get", &r));
            };
            out.extend(values);
        }
        Ok(out)
    }

    fn holds(&self, snapshot: &SnapshotName) -> ZfsResult<Vec<String>> {
        let req = Request::Holds {
            snapshot: snapshot.clone(),
        };
        match self.call("holds", &req)? {
            Response::Holds { tags } => Ok(tags),
            other => Err(self.unexpected("holds", &other)),
        }
    }
}

impl ZfsWrite for AgentClient {
    fn create(&self, name: &DatasetName, _: &[(String, String)], _: bool) -> ZfsResult<()> {
        Err(self.unsupported(format!("create {name}")))
    }

    fn snapshot(&self, snapshots: &[SnapshotName], props: &[(String, String)]) -> ZfsResult<()> {
        self.no_props("snapshot", props)?;
        self.done(
            "snapshot",
            &Request::Snapshot {
                snapshots: snapshots.to_vec(),
                recursive: false,
            },
        )
    }

    fn snapshot_recursive(
        &self,
        snapshot: &SnapshotName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        self.no_props("snapshot -r", props)?;
        self.done(
            "snapshot -r",
            &Request::Snapshot {
                snapshots: vec![snapshot.clone()],
                recursive: true,
            },
        )
    }

    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Vec<DestroyOutcome> {
        if snapshots.is_empty() {
            return Vec::new();
        }
        let req = Request::DestroySnapshots {
            snapshots: snapshots.to_vec(),
        };
        let host = self.shared.host.as_deref();
        match self.call("destroy", &req) {
            Ok(Response::Destroyed { outcomes }) => outcomes
                .into_iter()
                .map(|(n, e)| (n, e.map_or(Ok(()), |e| Err(e.into_zfs(host)))))
                .collect(),
            Ok(other) => {
                let e = self.unexpected("destroy", &other);
                snapshots
                    .iter()
                    .map(|s| (s.clone(), Err(e.clone())))
                    .collect()
            }
            Err(e) => snapshots
                .iter()
                .map(|s| (s.clone(), Err(e.clone())))
                .collect(),
        }
    }

    fn destroy_dataset(&self, name: &DatasetName, _: bool) -> ZfsResult<()> {
        Err(self.unsupported(format!("destroy {name}")))
    }

    fn hold(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        self.check_tag("hold", tag)?;
        self.done(
            "hold",
            &Request::Hold {
                snapshots: snapshots.to_vec(),
            },
        )
    }

    fn release(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        self.check_tag("release", tag)?;
        self.done(
            "release",
            &Request::Release {
                snapshots: snapshots.to_vec(),
            },
        )
    }

    fn bookmark(&self, snapshot: &SnapshotName, bookmark: &BookmarkName) -> ZfsResult<()> {
        self.done(
            "bookmark",
            &Request::Bookmark {
                snapshot: snapshot.clone(),
                bookmark: bookmark.clone(),
            },
        )
    }

    fn destroy_bookmark(&self, bookmark: &BookmarkName) -> ZfsResult<()> {
        self.done(
            "destroy",
            &Request::DestroyBookmark {
                bookmark: bookmark.clone(),
            },
        )
    }

    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        _: &DatasetName,
        _: &[(String, String)],
    ) -> ZfsResult<()> {
        Err(self.unsupported(format!("clone {snapshot}")))
    }

    fn promote(&self, clone: &DatasetName) -> ZfsResult<()> {
        Err(self.unsupported(format!("promote {clone}")))
    }

    fn rename(&self, from: &EntityName, _: &EntityName) -> ZfsResult<()> {
        Err(self.unsupported(format!("rename {from}")))
    }

    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> ZfsResult<()> {
        self.done(
            "rollback",
            &Request::Rollback {
                snapshot: snapshot.clone(),
                destroy_newer,
            },
        )
    }

    fn set_props(&self, name: &EntityName, props: &[(String, String)]) -> ZfsResult<()> {
        self.done(
            "set",
            &Request::SetProps {
                name: name.clone(),
                props: props.to_vec(),
            },
        )
    }

    fn receive_abort(&self, target: &DatasetName) -> ZfsResult<()> {
        self.done(
            "receive -A",
            &Request::ReceiveAbort {
                target: target.clone(),
            },
        )
    }

    fn inherit(&self, name: &EntityName, property: &str) -> ZfsResult<()> {
        Err(self.unsupported(format!("inherit {property} {name}")))
    }
}

impl AgentClient {
    /// Sends a stream request and waits for Ready; the connection comes
    /// back for the worker.
    fn start_stream(&self, op: &str, req: &Request) -> ZfsResult<Box<dyn Conn>> {
        let mut c = self.shared.take(op)?;
        let r = exchange(&mut c, req);
        match r {
            Ok(Response::Ready) => Ok(c),
            Ok(Response::Error { error }) => {
                self.shared.put(Some(c), String::new);
                Err(error.into_zfs(self.shared.host.as_deref()))
            }
            Ok(other) => {
                self.shared.put(None, || "protocol error".into());
                Err(self.unexpected(op, &other))
            }
            Err(e) => {
                let why = e.to_string();
                self.shared.put(None, || why.clone());
                Err(self.shared.transport(op, &why))
            }
        }
    }
}

/// Sends a request and reads the response. When sending fails, what the
/// peer said before it went away (a shell's "command not found", an error
/// reply) explains more than the broken pipe.
fn exchange(c: &mut Box<dyn Conn>, req: &Request) -> Result<Response, FrameError> {
    let mut scratch = Vec::new();
    let mut buf = Vec::new();
    if let Err(e) = send_message(c, req, &mut scratch) {
        return match recv_message::<Response>(c, &mut buf) {
            Ok(Response::Error { error }) => Ok(Response::Error { error }),
            Err(said @ (FrameError::NotAgent(_) | FrameError::BadControl(_))) => Err(said),
            _ => Err(e),
        };
    }
    recv_message::<Response>(c, &mut buf)
}

fn pipe(op: &str) -> ZfsResult<(PipeReader, PipeWriter)> {
    std::io::pipe().map_err(|e| ZfsError::new(op, ZfsErrorKind::Spawn, e.to_string()))
}

fn spawn_worker(
    name: &str,
    f: impl FnOnce() -> (Option<Box<dyn Conn>>, ZfsResult<()>) + Send + 'static,
) -> io::Result<Worker> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

impl ZfsStream for AgentClient {
    type Send = AgentSendStream;
    type Recv = AgentRecvSink;

    fn send(&self, spec: &SendSpec) -> ZfsResult<AgentSendStream> {
        let (reader, writer) = pipe("send")?;
        let req = Request::Send {
            spec: spec.clone(),
            codec: self.codec,
        };
        let conn = self.start_stream("send", &req)?;
        let shared = Arc::clone(&self.shared);
        let codec = self.codec;
        let worker = spawn_worker("zfsrepl-agent-in", move || {
            inbound(conn, writer, codec, &shared)
        });
        match worker {
            Ok(h) => Ok(AgentSendStream {
                reader: Some(reader),
                worker: Some(h),
                shared: Arc::clone(&self.shared),
            }),
            Err(e) => {
                self.shared.put(None, || "cannot start a thread".into());
                Err(ZfsError::new("send", ZfsErrorKind::Spawn, e.to_string()))
            }
        }
    }

    fn receive(&self, spec: &RecvSpec) -> ZfsResult<AgentRecvSink> {
        let (reader, writer) = pipe("receive")?;
        let req = Request::Receive {
            spec: spec.clone(),
            codec: self.codec,
        };
        let conn = self.start_stream("receive", &req)?;
        let shared = Arc::clone(&self.shared);
        let abort = Arc::new(AtomicBool::new(false));
        let (codec, workers, flag) = (self.codec, self.zstd_workers, Arc::clone(&abort));
        let worker = spawn_worker("zfsrepl-agent-out", move || {
            outbound(conn, reader, codec, workers, &flag, &shared)
        });
        match worker {
            Ok(h) => Ok(AgentRecvSink {
                writer: Some(writer),
                abort,
                worker: Some(h),
                shared: Arc::clone(&self.shared),
            }),
            Err(e) => {
                self.shared.put(None, || "cannot start a thread".into());
                Err(ZfsError::new("receive", ZfsErrorKind::Spawn, e.to_string()))
            }
        }
    }

    fn send_estimate(&self, spec: &SendSpec) -> ZfsResult<Option<u64>> {
        match self.call("send -nvP", &Request::Estimate { spec: spec.clone() })? {
            Response::Estimate { bytes } => Ok(bytes),
            other => Err(self.unexpected("send -nvP", &other)),
        }
    }
}

/// Reads the final response after an end or abort frame.
fn final_status(c: &mut Box<dyn Conn>, buf: &mut Vec<u8>) -> Result<Response, FrameError> {
    recv_message::<Response>(c, buf)
}

/// The pull worker: data frames from the agent, decoded, into the pipe the
/// executor reads. When the executor stops reading, the rest is drained.
fn inbound(
    mut c: Box<dyn Conn>,
    pipe: PipeWriter,
    codec: Codec,
    shared: &Shared,
) -> (Option<Box<dyn Conn>>, ZfsResult<()>) {
    let host = shared.host.clone();
    let mut out: Option<Box<dyn Write + Send>> = match codec {
        Codec::Plain => Some(Box::new(pipe)),
        Codec::Zstd { .. } => match zstd::stream::write::Decoder::new(pipe) {
            Ok(d) => Some(Box::new(d)),
            Err(_) => None,
        },
    };
    let mut buf = Vec::with_capacity(MAX_DATA);
    let mut local_err: Option<io::Error> = None;
    loop {
        match read_frame_into(&mut c, &mut buf) {
            Ok(FrameKind::Data) => {
                if let Some(w) = &mut out
                    && let Err(e) = w.write_all(&buf)
                {
                    // The executor stopped reading (abort), or zstd found
                    // the data corrupt: drain the rest.
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        local_err = Some(e);
                    }
                    out = None;
                }
            }
            Ok(FrameKind::End) => {
                if let Some(mut w) = out.take()
                    && let Err(e) = w.flush()
                {
                    local_err = Some(e);
                }
                let r = match final_status(&mut c, &mut buf) {
                    Ok(Response::Done) => match local_err {
                        None => Ok(()),
                        Some(e) => {
                            let mut z = ZfsError::new(
                                "send",
                                ZfsErrorKind::StreamInvalid,
                                format!("decoding the agent's stream: {e}"),
                            );
                            z.host.clone_from(&host);
                            Err(z)
                        }
                    },
                    Ok(Response::Error { error }) => Err(error.into_zfs(host.as_deref())),
                    Ok(other) => {
                        return (
                            None,
                            Err(shared.transport("send", &format!("unexpected reply {other:?}"))),
                        );
                    }
                    Err(e) => return (None, Err(shared.transport("send", &e))),
                };
                return (Some(c), r);
            }
            Ok(FrameKind::Abort) => {
                drop(out.take());
                let r = match final_status(&mut c, &mut buf) {
                    Ok(Response::Error { error }) => error.into_zfs(host.as_deref()),
                    Ok(_) => {
                        let mut z = ZfsError::new(
                            "send",
                            ZfsErrorKind::StreamTruncated,
                            "the agent abandoned the stream",
                        );
                        z.host.clone_from(&host);
                        z
                    }
                    Err(e) => return (None, Err(shared.transport("send", &e))),
                };
                return (Some(c), Err(r));
            }
            Ok(other) => {
                let e = FrameError::Unexpected(other);
                return (None, Err(shared.transport("send", &e)));
            }
            Err(e) => return (None, Err(shared.transport("send", &e))),
        }
    }
}

/// The push worker: the pipe the executor writes, encoded, as data frames
/// to the agent; then end (or abort, when the executor aborted) and the
/// receiver's status.
fn outbound(
    mut c: Box<dyn Conn>,
    mut pipe: PipeReader,
    codec: Codec,
    workers: u32,
    abort: &AtomicBool,
    shared: &Shared,
) -> (Option<Box<dyn Conn>>, ZfsResult<()>) {
    let host = shared.host.clone();
    let mut buf = vec![0u8; MAX_DATA];
    let pumped: io::Result<()> = (|| {
        let frames = DataFrames::new(&mut c);
        match codec {
            Codec::Plain => {
                let mut scratch = Vec::with_capacity(MAX_DATA + 8);
                let mut frames = frames;
                loop {
                    let n = read_some(&mut pipe, &mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    super::frame::write_frame_with(
                        frames.get_mut(),
                        FrameKind::Data,
                        &buf[..n],
                        &mut scratch,
                    )?;
                }
                frames.finish()?;
            }
            Codec::Zstd { level } => {
                let mut enc = zstd_encoder(frames, level, workers)?;
                loop {
                    let n = read_some(&mut pipe, &mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    enc.write_all(&buf[..n])?;
                }
                enc.finish()?.finish()?;
            }
        }
        Ok(())
    })();
    if let Err(e) = pumped {
        let why = format!("writing the stream to the agent: {e}");
        return (None, Err(shared.transport("receive", &why)));
    }
    let aborted = abort.load(Ordering::SeqCst);
    let ended = if aborted {
        write_frame(&mut c, FrameKind::Abort, b"the sending side stopped")
    } else {
        write_frame(&mut c, FrameKind::End, b"")
    };
    if let Err(e) = ended.and_then(|()| c.flush()) {
        return (None, Err(shared.transport("receive", &e)));
    }
    let mut rbuf = Vec::new();
    match final_status(&mut c, &mut rbuf) {
        Ok(Response::Done) => (Some(c), Ok(())),
        Ok(Response::Error { error }) => (Some(c), Err(error.into_zfs(host.as_deref()))),
        Ok(other) => (
            None,
            Err(shared.transport("receive", &format!("unexpected reply {other:?}"))),
        ),
        Err(e) => (None, Err(shared.transport("receive", &e))),
    }
}

/// A `zfs send` running on the agent, read through a local pipe.
pub struct AgentSendStream {
    reader: Option<PipeReader>,
    worker: Option<Worker>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentSendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSendStream").finish_non_exhaustive()
    }
}

impl Read for AgentSendStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.reader {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl SendStream for AgentSendStream {
    fn raw_fd(&self) -> Option<RawFd> {
        self.reader.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn finish(mut self) -> ZfsResult<()> {
        drop(self.reader.take());
        match self.worker.take() {
            Some(h) => self.shared.finish(h),
            None => Ok(()),
        }
    }

    fn abort(mut self) {
        drop(self.reader.take());
        if let Some(h) = self.worker.take() {
            self.shared.park(h);
        }
    }
}

impl Drop for AgentSendStream {
    fn drop(&mut self) {
        drop(self.reader.take());
        if let Some(h) = self.worker.take() {
            self.shared.park(h);
        }
    }
}

/// A `zfs receive` running on the agent, written through a local pipe.
pub struct AgentRecvSink {
    writer: Option<PipeWriter>,
    abort: Arc<AtomicBool>,
    worker: Option<Worker>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentRecvSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRecvSink").finish_non_exhaustive()
    }
}

impl Write for AgentRecvSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RecvSink for AgentRecvSink {
    fn raw_fd(&self) -> Option<RawFd> {
        self.writer.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn finish(mut self) -> ZfsResult<()> {
        drop(self.writer.take());
        match self.worker.take() {
            Some(h) => self.shared.finish(h),
            None => Ok(()),
        }
    }

    fn abort(mut self) {
        self.abort.store(true, Ordering::SeqCst);
        drop(self.writer.take());
        if let Some(h) = self.worker.take() {
            self.shared.park(h);
        }
    }
}

impl Drop for AgentRecvSink {
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.abort.store(true, Ordering::SeqCst);
        }
        drop(self.writer.take());
        if let Some(h) = self.worker.take() {
            self.shared.park(h);
        }
    }
}
