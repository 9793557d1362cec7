//! The agent's side: [`Server::serve`] answers one client's requests on one
//! `Read + Write` connection, confined by an [`AgentConfig`].

use std::io::{self, Read, Write};

use super::config::AgentConfig;
use super::frame::{DataFrames, FrameError, FrameKind, MAX_DATA, read_frame_into, write_frame};
use super::proto::{
    Codec, PROTOCOL_VERSION, Request, Response, WireError, recv_message, send_message,
};
use crate::lock::{DatasetLock, LockDir, LockError};
use crate::name::{DatasetName, EntityName, SnapshotName};
use crate::replication::{OWNED_PREFIX, SyncJob};
use crate::zfs::resume::decode_resume_token;
use crate::zfs::{
    ListSpec, RecvSink, RecvSpec, SendSource, SendSpec, SendStream, VersionName, ZfsError,
    ZfsErrorKind, ZfsRead, ZfsStream, ZfsWrite,
};

/// The properties a peer may set on a writable dataset (through
/// [`Request::SetProps`] or `receive -o`): only ones that make a backup
/// safer.
pub const SETTABLE_PROPS: [(&str, &str); 3] = [
    ("readonly", "on"),
    ("canmount", "noauto"),
    ("canmount", "off"),
];

/// What a session did, for the log line at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Requests answered.
    pub requests: u64,
    /// Requests refused.
    pub refused: u64,
    /// Stream bytes sent (as framed: compressed when zstd).
    pub bytes_sent: u64,
    /// Stream bytes received (as framed).
    pub bytes_received: u64,
}

/// The agent: a ZFS backend and the confinement of the peer it serves.
///
/// `Z` is the ZFS it drives: [`ZfsCli`](crate::ZfsCli) on a real host, the
/// in-memory model in tests. One `Server` can serve many connections in
/// turn (or, with `Z: Sync`, at once from several threads).
#[derive(Debug)]
pub struct Server<Z> {
    config: AgentConfig,
    zfs: Z,
    zstd_workers: u32,
    chunk_budget: usize,
    locks: Option<LockDir>,
}

/// One connection's state.
struct Session {
    job: Option<SyncJob>,
    hello: bool,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    stats: SessionStats,
}

/// How a stream pump ended early.
enum Pump {
    /// Reading the local `zfs send` failed.
    Source(io::Error),
    /// Writing to the peer failed.
    Peer(io::Error),
}

/// zstd worker threads for compressing: the cores but one, at most 4.
#[must_use]
pub fn default_zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get().saturating_sub(1).min(4)).unwrap_or(0))
        .unwrap_or(0)
}

fn reply<T: Write>(conn: &mut T, s: &mut Session, r: &Response) -> Result<(), FrameError> {
    send_message(conn, r, &mut s.scratch)
}

fn err(e: &ZfsError) -> Response {
    Response::Error {
        error: WireError::from(e),
    }
}

impl<Z> Server<Z>
where
    Z: ZfsRead + ZfsWrite + ZfsStream,
{
    /// A server for one peer's `config`, driving `zfs`.
    pub fn new(config: AgentConfig, zfs: Z) -> Self {
        Self {
            config,
            zfs,
            zstd_workers: default_zstd_workers(),
            chunk_budget: CHUNK_BUDGET,
            locks: None,
        }
    }

    /// Takes this host's per-dataset locks (the lock directory its daemon
    /// and manual runs use) on every dataset a peer writes: a receive holds
    /// the target's lock until its stream ends, and a rollback or a
    /// receive-abort holds it while it runs. A busy dataset is answered
    /// with a [`ZfsErrorKind::Busy`] error naming the holder, which the
    /// peer's daemon retries; a local prune or clone refresh of the same
    /// dataset never runs in the middle of a receive.
    #[must_use]
    pub fn with_locks(mut self, locks: LockDir) -> Self {
        self.locks = Some(locks);
        self
    }

    /// This host's lock on `ds`, for `op`, when the server takes locks.
    fn lock(&self, op: &'static str, ds: &DatasetName) -> Result<Option<DatasetLock>, ZfsError> {
        let Some(locks) = &self.locks else {
            return Ok(None);
        };
        let what = format!("zfsrepl agent: {op} for {}", self.config.who());
        locks
            .try_lock(None, ds, &what)
            .map(Some)
            .map_err(|e| match e {
                LockError::Busy { .. } => ZfsError::new(op, ZfsErrorKind::Busy, e.to_string()),
                // Most likely an agent user who cannot write the default
                // directory: say where the setting is.
                _ => ZfsError::new(
                    op,
                    ZfsErrorKind::Other,
                    format!(
                        "{e} (the agent's lock directory, shared with this host's daemon: \
                     zfsrepl serve --lock-dir DIR)"
                    ),
                ),
            })
    }

    /// A smaller listing budget, for tests of chunked listings.
    #[cfg(test)]
    pub(crate) fn with_chunk_budget(mut self, budget: usize) -> Self {
        self.chunk_budget = budget;
        self
    }

    /// zstd worker threads when this server compresses a stream it sends.
    #[must_use]
    pub fn with_zstd_workers(mut self, workers: u32) -> Self {
        self.zstd_workers = workers;
        self
    }

    /// The peer's confinement.
    #[must_use]
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The ZFS it drives.
    #[must_use]
    pub fn zfs(&self) -> &Z {
        &self.zfs
    }

    /// Answers requests on `conn` until the client closes it.
    ///
    /// Strictly request/response: the server reads a request, answers it
    /// (streaming in between for send and receive), and reads the next.
    /// Refusals are answered with an error and logged with the peer's
    /// identity; the session goes on. Garbage, truncated or oversized
    /// frames and protocol violations end the session (after a best-effort
    /// error reply).
    ///
    /// # Errors
    /// The [`FrameError`] that ended the session, other than a clean close
    /// between requests.
    pub fn serve<T: Read + Write>(&self, mut conn: T) -> Result<SessionStats, FrameError> {
        let mut s = Session {
            job: None,
            hello: false,
            buf: Vec::new(),
            scratch: Vec::new(),
            stats: SessionStats::default(),
        };
        let who = self.config.who();
        tracing::info!(identity = who, "agent session start");
        let result = self.session(&mut conn, &mut s);
        match &result {
            Ok(()) => tracing::info!(
                identity = who,
                requests = s.stats.requests,
                refused = s.stats.refused,
                bytes_sent = s.stats.bytes_sent,
                bytes_received = s.stats.bytes_received,
                "agent session end"
            ),
            Err(e) => tracing::warn!(identity = who, error = %e, "agent session failed"),
        }
        result.map(|()| s.stats)
    }

    fn session<T: Read + Write>(&self, conn: &mut T, s: &mut Session) -> Result<(), FrameError> {
        loop {
            let req: Request = match recv_message(conn, &mut s.buf) {
                Ok(r) => r,
                Err(FrameError::Closed) => return Ok(()),
                Err(e) => {
                    // Tell the client why, if it still listens.
                    let why = Response::Error {
                        error: WireError::refused("read request", e.to_string()),
                    };
                    let _ = reply(conn, s, &why);
                    return Err(e);
                }
            };
            s.stats.requests += 1;
            tracing::debug!(identity = self.config.who(), op = req.op(), "request");
            match req {
                Request::Hello { version, job } => {
                    let r = self.hello(s, version, job);
                    let ok = matches!(r, Response::Hello { .. });
                    reply(conn, s, &r)?;
                    if !ok {
                        return Err(FrameError::BadControl("hello refused".into()));
                    }
                }
                _ if !s.hello => {
                    let r = self.refuse(s, req.op(), "the first request must be hello".into());
                    reply(conn, s, &r)?;
                    return Err(FrameError::BadControl("no hello".into()));
                }
                Request::Send { spec, codec } => self.send(conn, s, &spec, codec)?,
                Request::Receive { spec, codec } => self.receive(conn, s, &spec, codec)?,
                other => {
                    for r in self.handle(s, other) {
                        reply(conn, s, &r)?;
                    }
                }
            }
        }
    }

    fn refuse(&self, s: &mut Session, op: &str, why: String) -> Response {
        s.stats.refused += 1;
        tracing::warn!(identity = self.config.who(), op, reason = %why, "agent refused a request");
        Response::Error {
            error: WireError::refused(op, why),
        }
    }

    fn hello(&self, s: &mut Session, version: u32, job: Option<super::JobId>) -> Response {
        if version != PROTOCOL_VERSION {
            return self.refuse(
                s,
                "hello",
                format!("protocol version {version} is not {PROTOCOL_VERSION}"),
            );
        }
        if let Some(id) = job {
            let j = SyncJob::new(&id.job, &id.target);
            if j.job() != id.job || j.target() != id.target {
                return self.refuse(
                    s,
                    "hello",
                    format!(
                        "job {:?} / target {:?} are not sanitised names",
                        id.job, id.target
                    ),
                );
            }
            s.job = Some(j);
        }
        s.hello = true;
        Response::Hello {
            version: PROTOCOL_VERSION,
            caps: self.zfs.capabilities().clone(),
            identity: self.config.identity.clone(),
        }
    }

    fn visible(&self, ds: &DatasetName, op: &str) -> Result<(), String> {
        if self.config.visible(ds) {
            Ok(())
        } else {
            Err(format!("{op}: {ds} is outside the roots this peer may use"))
        }
    }

    fn readable(&self, ds: &DatasetName) -> Result<(), String> {
        if self.config.readable(ds) {
            Ok(())
        } else {
            Err(format!("{ds} is outside the roots this peer may read"))
        }
    }

    fn writable(&self, ds: &DatasetName) -> Result<(), String> {
        if self.config.writable(ds) {
            Ok(())
        } else {
            Err(format!("{ds} is outside the roots this peer may write"))
        }
    }

    fn job(s: &Session) -> Result<&SyncJob, String> {
        s.job
            .as_ref()
            .ok_or_else(|| "the session declared no job at hello".to_owned())
    }

    fn owned(job: &SyncJob, short: &str, full: &str) -> Result<(), String> {
        if job.owns(short) {
            Ok(())
        } else {
            Err(format!(
                "{full} is not a sync snapshot of this job ({}...)",
                job.prefix()
            ))
        }
    }

    fn may_destroy(&self) -> Result<(), String> {
        if self.config.allow_destroy {
            Ok(())
        } else {
            Err("destroying is not allowed by this agent's config (allow-destroy)".into())
        }
    }

    /// Checks a send: every snapshot it reads must be readable.
    fn check_send(&self, spec: &SendSpec) -> Result<(), String> {
        match &spec.source {
            SendSource::Full { snapshot } => self.readable(&snapshot.dataset()),
            SendSource::Incremental { from, to, .. } => {
                let from_ds = match from {
                    VersionName::Snapshot(f) => f.dataset(),
                    VersionName::Bookmark(b) => b.dataset(),
                };
                self.readable(&from_ds)?;
                self.readable(&to.dataset())
            }
            SendSource::Resume { token } => {
                let t = decode_resume_token(token)
                    .map_err(|e| format!("the resume token does not decode: {e}"))?;
                let to = SnapshotName::parse(&t.toname)
                    .map_err(|e| format!("the resume token names {:?}: {e}", t.toname))?;
                self.readable(&to.dataset())
            }
        }
    }

    /// Checks a receive and returns the spec to run: never `-F` unless the
    /// config allows it, only safe `-o` values, and always unmounted where
    /// ZFS can.
    fn check_recv(&self, spec: &RecvSpec) -> Result<RecvSpec, String> {
        let target = spec
            .target
            .as_ref()
            .ok_or_else(|| "a receive needs a target dataset".to_owned())?;
        self.writable(target)?;
        if spec.force && !self.config.allow_rollback {
            return Err("receive -F is not allowed by this agent's config (allow-rollback)".into());
        }
        for (k, v) in &spec.set_props {
            if !SETTABLE_PROPS.contains(&(k.as_str(), v.as_str())) {
                return Err(format!("receive -o {k}={v} is not allowed"));
            }
        }
        let mut out = spec.clone();
        out.unmounted |= self.zfs.capabilities().recv_unmounted;
        Ok(out)
    }

    /// Checks a rollback: the dataset is writable, rollbacks are allowed,
    /// and every snapshot it would destroy is zfsrepl's.
    fn check_rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> Result<(), String> {
        if !self.config.allow_rollback {
            return Err("rollback is not allowed by this agent's config (allow-rollback)".into());
        }
        let ds = snapshot.dataset();
        self.writable(&ds)?;
        if !destroy_newer {
            return Ok(());
        }
        let spec = ListSpec {
            roots: vec![ds.clone()],
            recursive: false,
            snapshots: true,
            bookmarks: false,
            user_props: Vec::new(),
        };
        let list = self.zfs.list(&spec).map_err(|e| e.to_string())?;
        let Some(d) = list.iter().find(|d| d.name == ds) else {
            return Err(format!("{ds} does not exist"));
        };
        let Some(at) = d.snapshots().find(|v| v.name.as_str() == snapshot.as_str()) else {
            return Err(format!("{snapshot} does not exist"));
        };
        let foreign: Vec<&str> = d
            .snapshots()
            .filter(|v| v.createtxg > at.createtxg && !v.name.short().starts_with(OWNED_PREFIX))
            .map(|v| v.name.as_str())
            .collect();
        if foreign.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "rolling back to {snapshot} would destroy snapshots zfsrepl did not make: {}",
                foreign.join(", ")
            ))
        }
    }

    /// The requests without a stream: one response, or several for a big
    /// listing.
    fn handle(&self, s: &mut Session, req: Request) -> Vec<Response> {
        let op = req.op();
        if let Err(why) = self.check(s, &req) {
            return vec![self.refuse(s, op, why)];
        }
        match req {
            Request::List { spec } => match self.zfs.list(&spec) {
                Ok(datasets) => {
                    let chunks = list_chunks(datasets, self.chunk_budget);
                    let last = chunks.len().saturating_sub(1);
                    chunks
                        .into_iter()
                        .enumerate()
                        .map(|(i, datasets)| Response::List {
                            datasets,
                            more: i < last,
                        })
                        .collect()
                }
                Err(e) => vec![err(&e)],
            },
            Request::GetProps {
                names,
                props,
                recursive,
            } => {
                let props: Vec<&str> = props.iter().map(String::as_str).collect();
                match self.zfs.get_props(&names, &props, recursive) {
                    Ok(values) => {
                        let chunks = chunks_by_size(values, self.chunk_budget);
                        let last = chunks.len().saturating_sub(1);
                        chunks
                            .into_iter()
                            .enumerate()
                            .map(|(i, values)| Response::Props {
                                values,
                                more: i < last,
                            })
                            .collect()
                    }
                    Err(e) => vec![err(&e)],
                }
            }
            other => vec![self.run(s, other)],
        }
    }

    /// Whether the peer may make `req` (streams are checked where they
    /// start).
    fn check(&self, s: &Session, req: &Request) -> Result<(), String> {
        match req {
            Request::Hello { .. } | Request::Send { .. } | Request::Receive { .. } => Ok(()),
            Request::List { spec } if spec.roots.is_empty() => {
                Err("list: name the roots to list (all pools are not listed)".into())
            }
            Request::List { spec } => spec.roots.iter().try_for_each(|r| self.visible(r, "list")),
            Request::GetProps { names, .. } if names.is_empty() => {
                Err("get: name the datasets (all pools are not read)".into())
            }
            Request::GetProps { names, .. } => names
                .iter()
                .try_for_each(|n| self.visible(&n.dataset(), "get")),
            Request::Holds { snapshot } => self.visible(&snapshot.dataset(), "holds"),
            Request::Estimate { spec } => self.check_send(spec),
            Request::Snapshot {
                snapshots,
                recursive,
            } => {
                let job = Self::job(s)?;
                if *recursive && snapshots.len() != 1 {
                    return Err("a recursive snapshot names exactly one snapshot".into());
                }
                snapshots.iter().try_for_each(|sn| {
                    self.readable(&sn.dataset())?;
                    Self::owned(job, sn.snap(), sn.as_str())
                })
            }
            Request::Hold { snapshots } | Request::Release { snapshots } => {
                Self::job(s)?;
                snapshots
                    .iter()
                    .try_for_each(|sn| self.visible(&sn.dataset(), req.op()))
            }
            Request::DestroySnapshots { snapshots } => {
                self.may_destroy()?;
                let job = Self::job(s)?;
                snapshots.iter().try_for_each(|sn| {
                    self.visible(&sn.dataset(), "destroy")?;
                    Self::owned(job, sn.snap(), sn.as_str())
                })
            }
            Request::Bookmark { snapshot, bookmark } => {
                let job = Self::job(s)?;
                self.readable(&snapshot.dataset())?;
                if bookmark.dataset() != snapshot.dataset() {
                    return Err(format!(
                        "{bookmark} is not a bookmark of {snapshot}'s dataset"
                    ));
                }
                Self::owned(job, bookmark.mark(), bookmark.as_str())
            }
            Request::DestroyBookmark { bookmark } => {
                self.may_destroy()?;
                let job = Self::job(s)?;
                self.visible(&bookmark.dataset(), "destroy")?;
                Self::owned(job, bookmark.mark(), bookmark.as_str())
            }
            Request::SetProps { name, props } => {
                let EntityName::Dataset(ds) = name else {
                    return Err(format!("set: {name} is not a dataset"));
                };
                self.writable(ds)?;
                props.iter().try_for_each(|(k, v)| {
                    if SETTABLE_PROPS.contains(&(k.as_str(), v.as_str())) {
                        Ok(())
                    } else {
                        Err(format!("set {k}={v} is not allowed"))
                    }
                })
            }
            Request::Rollback {
                snapshot,
                destroy_newer,
            } => self.check_rollback(snapshot, *destroy_newer),
            Request::ReceiveAbort { target } => self.writable(target),
        }
    }

    /// Runs a checked request.
    fn run(&self, s: &Session, req: Request) -> Response {
        let z = &self.zfs;
        let done = |r: Result<(), ZfsError>| r.map_or_else(|e| err(&e), |()| Response::Done);
        let tag = || s.job.as_ref().map(SyncJob::hold_tag).unwrap_or_default();
        match req {
            Request::Holds { snapshot } => z
                .holds(&snapshot)
                .map_or_else(|e| err(&e), |tags| Response::Holds { tags }),
            Request::Estimate { spec } => z
                .send_estimate(&spec)
                .map_or_else(|e| err(&e), |bytes| Response::Estimate { bytes }),
            Request::Snapshot {
                snapshots,
                recursive: true,
            } => match snapshots.first() {
                Some(first) => done(z.snapshot_recursive(first, &[])),
                None => Response::Done,
            },
            Request::Snapshot { snapshots, .. } => done(z.snapshot(&snapshots, &[])),
            Request::Hold { snapshots } => done(z.hold(&tag(), &snapshots)),
            Request::Release { snapshots } => done(z.release(&tag(), &snapshots)),
            Request::DestroySnapshots { snapshots } => Response::Destroyed {
                outcomes: z
                    .destroy_snapshots(&snapshots)
                    .into_iter()
                    .map(|(n, r)| (n, r.err().as_ref().map(WireError::from)))
                    .collect(),
            },
            Request::Bookmark { snapshot, bookmark } => done(z.bookmark(&snapshot, &bookmark)),
            Request::DestroyBookmark { bookmark } => done(z.destroy_bookmark(&bookmark)),
            Request::SetProps { name, props } => done(z.set_props(&name, &props)),
            Request::Rollback {
                snapshot,
                destroy_newer,
            } => match self.lock("rollback", &snapshot.dataset()) {
                Ok(_lock) => done(z.rollback(&snapshot, destroy_newer)),
                Err(e) => err(&e),
            },
            Request::ReceiveAbort { target } => match self.lock("receive -A", &target) {
                Ok(_lock) => done(z.receive_abort(&target)),
                Err(e) => err(&e),
            },
            Request::Hello { .. }
            | Request::Send { .. }
            | Request::Receive { .. }
            | Request::List { .. }
            | Request::GetProps { .. } => Response::Error {
                error: WireError::refused("request", "not here"),
            },
        }
    }

    /// `Send`: Ready, data frames, end (or abort), the sender's status.
    fn send<T: Read + Write>(
        &self,
        conn: &mut T,
        s: &mut Session,
        spec: &SendSpec,
        codec: Codec,
    ) -> Result<(), FrameError> {
        if let Err(why) = self.check_send(spec) {
            let r = self.refuse(s, "send", why);
            return reply(conn, s, &r);
        }
        let mut stream = match self.zfs.send(spec) {
            Ok(st) => st,
            Err(e) => return reply(conn, s, &err(&e)),
        };
        if let Err(e) = reply(conn, s, &Response::Ready) {
            stream.abort();
            return Err(e);
        }
        let pumped = self.pump_out(conn, &mut stream, codec, &mut s.scratch);
        match pumped {
            Err(Pump::Peer(e)) => {
                stream.abort();
                Err(FrameError::Io(e))
            }
            Ok(bytes) => {
                s.stats.bytes_sent += bytes;
                match stream.finish() {
                    Ok(()) => {
                        write_frame(conn, FrameKind::End, b"")?;
                        reply(conn, s, &Response::Done)
                    }
                    Err(e) => {
                        write_frame(conn, FrameKind::Abort, b"zfs send failed")?;
                        reply(conn, s, &err(&e))
                    }
                }
            }
            Err(Pump::Source(read_err)) => {
                let e = match stream.finish() {
                    Err(e) => e,
                    Ok(()) => ZfsError::new("send", ZfsErrorKind::Other, read_err.to_string()),
                };
                write_frame(conn, FrameKind::Abort, b"zfs send failed")?;
                reply(conn, s, &err(&e))
            }
        }
    }

    /// Copies a local send stream to the peer as data frames; the framed
    /// bytes on success.
    fn pump_out<T: Write, S: SendStream>(
        &self,
        conn: &mut T,
        stream: &mut S,
        codec: Codec,
        scratch: &mut Vec<u8>,
    ) -> Result<u64, Pump> {
        let mut buf = vec![0u8; MAX_DATA];
        let mut frames = DataFrames::new(conn);
        match codec {
            Codec::Plain => {
                loop {
                    let n = read_some(stream, &mut buf).map_err(Pump::Source)?;
                    if n == 0 {
                        break;
                    }
                    super::frame::write_frame_with(
                        frames.get_mut(),
                        FrameKind::Data,
                        &buf[..n],
                        scratch,
                    )
                    .map_err(Pump::Peer)?;
                    frames.sent += n as u64;
                }
                let sent = frames.sent;
                frames.finish().map_err(Pump::Peer)?;
                Ok(sent)
            }
            Codec::Zstd { level } => {
                // The peer's level, within what costs bounded memory.
                let level = level.clamp(1, 19);
                let mut enc = zstd_encoder(frames, level, self.zstd_workers).map_err(Pump::Peer)?;
                loop {
                    let n = read_some(stream, &mut buf).map_err(Pump::Source)?;
                    if n == 0 {
                        break;
                    }
                    enc.write_all(&buf[..n]).map_err(Pump::Peer)?;
                }
                let frames = enc.finish().map_err(Pump::Peer)?;
                let sent = frames.sent;
                frames.finish().map_err(Pump::Peer)?;
                Ok(sent)
            }
        }
    }

    /// `Receive`: Ready, the client's data frames until end (or abort),
    /// the receiver's status. A receiver that fails mid-stream is left to
    /// exit while the rest of the stream is read and dropped, so the
    /// connection stays in step.
    fn receive<T: Read + Write>(
        &self,
        conn: &mut T,
        s: &mut Session,
        spec: &RecvSpec,
        codec: Codec,
    ) -> Result<(), FrameError> {
        let spec = match self.check_recv(spec) {
            Ok(sp) => sp,
            Err(why) => {
                let r = self.refuse(s, "receive", why);
                return reply(conn, s, &r);
            }
        };
        // check_recv made sure there is a target. The lock is held until
        // this function returns: the stream's end, or its failure.
        let _lock = match spec
            .target
            .as_ref()
            .map_or(Ok(None), |t| self.lock("receive", t))
        {
            Ok(l) => l,
            Err(e) => return reply(conn, s, &err(&e)),
        };
        let sink = match self.zfs.receive(&spec) {
            Ok(k) => k,
            Err(e) => return reply(conn, s, &err(&e)),
        };
        let sink = StreamGate::new(sink, self.config.allow_stream_props);
        let mut w = match codec {
            Codec::Plain => Inbound::Plain(sink),
            Codec::Zstd { .. } => match zstd::stream::write::Decoder::new(sink) {
                Ok(d) => Inbound::Zstd(d),
                Err(e) => {
                    let e = ZfsError::new("receive", ZfsErrorKind::Other, e.to_string());
                    return reply(conn, s, &err(&e));
                }
            },
        };
        if let Err(e) = reply(conn, s, &Response::Ready) {
            w.into_sink().inner.abort();
            return Err(e);
        }
        let mut failed: Option<io::Error> = None;
        loop {
            let kind = match read_frame_into(conn, &mut s.buf) {
                Ok(k) => k,
                Err(e) => {
                    w.into_sink().inner.abort();
                    return Err(match e {
                        FrameError::Closed => FrameError::Truncated {
                            expected: 1,
                            got: 0,
                        },
                        other => other,
                    });
                }
            };
            match kind {
                FrameKind::Data => {
                    s.stats.bytes_received += s.buf.len() as u64;
                    if failed.is_none()
                        && let Err(e) = w.write_all(&s.buf)
                    {
                        failed = Some(e);
                    }
                }
                FrameKind::End => {
                    if failed.is_none()
                        && let Err(e) = w.flush()
                    {
                        failed = Some(e);
                    }
                    let gate = w.into_sink();
                    if let Some(why) = gate.refused.clone() {
                        gate.inner.abort();
                        let r = self.refuse(s, "receive", why);
                        return reply(conn, s, &r);
                    }
                    let r = match (gate.inner.finish(), failed) {
                        (Err(e), _) => err(&e),
                        (Ok(()), None) => Response::Done,
                        (Ok(()), Some(io)) => err(&ZfsError::new(
                            "receive",
                            ZfsErrorKind::StreamInvalid,
                            io.to_string(),
                        )),
                    };
                    return reply(conn, s, &r);
                }
                FrameKind::Abort => {
                    w.into_sink().inner.abort();
                    let e = ZfsError::new(
                        "receive",
                        ZfsErrorKind::Killed,
                        format!(
                            "the client abandoned the stream: {}",
                            String::from_utf8_lossy(&s.buf)
                        ),
                    );
                    return reply(conn, s, &err(&e));
                }
                other => {
                    w.into_sink().inner.abort();
                    return Err(FrameError::Unexpected(other));
                }
            }
        }
    }
}

/// `drr_magic` of a ZFS send stream's BEGIN record.
const DMU_BACKUP_MAGIC: u64 = 0x2_f5ba_cbac;

/// `DMU_GET_STREAM_HDRTYPE` of a compound stream. `send -p` and `-R` make
/// one whose BEGIN payload (a packed nvlist) has an `fss` list with the
/// properties (and, with `-R`, the descendants); `send -I` makes one too,
/// but without `fss` (zfs-fuse sends no payload at all, OpenZFS only
/// `fromsnap`/`tosnap`/`not_recursive`).
const DMU_COMPOUNDSTREAM: u64 = 2;

/// Size of a `dmu_replay_record`: the BEGIN record before its payload.
const BEGIN_RECORD: usize = 312;

/// The largest BEGIN payload the gate buffers to inspect; a larger one
/// (only a big `-R` tree has one) is refused unless stream properties are
/// allowed.
const MAX_BEGIN_PAYLOAD: usize = 1 << 20;

/// Holds back the first bytes of a receive until the stream's BEGIN record
/// (and, for a compound stream, its payload) shows whether it carries
/// properties or descendants; such a stream is refused before
/// `zfs receive` sees a byte of it (unless allowed). Streams that are not
/// ZFS streams at all are left to `zfs receive` to reject.
struct StreamGate<R> {
    inner: R,
    head: Vec<u8>,
    /// How many bytes `head` must reach before the verdict.
    want: usize,
    open: bool,
    refused: Option<String>,
}

/// What the start of a stream says.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Not (yet) recognisable as a ZFS stream: let `zfs receive` judge.
    Unknown,
    /// A plain stream: no properties.
    Plain,
    /// A compound stream whose BEGIN payload is this long.
    Compound { payload: usize },
}

/// The BEGIN record's header type and payload length, when `head` (at
/// least 24 bytes) starts with one in either byte order.
fn stream_head(head: &[u8]) -> Head {
    let word = |i: usize| -> Option<[u8; 8]> { head.get(i..i + 8)?.try_into().ok() };
    let (Some(magic), Some(info), Some(kind), Some(len)) = (
        word(8),
        word(16),
        head.get(..4),
        head.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()),
    ) else {
        return Head::Unknown;
    };
    if kind != [0, 0, 0, 0] {
        return Head::Unknown;
    }
    let (hdrtype, payload) = if u64::from_le_bytes(magic) == DMU_BACKUP_MAGIC {
        (u64::from_le_bytes(info) & 3, u32::from_le_bytes(len))
    } else if u64::from_be_bytes(magic) == DMU_BACKUP_MAGIC {
        (u64::from_be_bytes(info) & 3, u32::from_be_bytes(len))
    } else {
        return Head::Unknown;
    };
    if hdrtype == DMU_COMPOUNDSTREAM {
        Head::Compound {
            payload: usize::try_from(payload).unwrap_or(usize::MAX),
        }
    } else {
        Head::Plain
    }
}

/// Whether a compound stream's BEGIN payload (a packed nvlist, XDR or
/// native) names the `fss` list of `send -p`/`-R`. A snapshot literally
/// named `fss` also matches: refused, on the safe side.
fn payload_has_fss(payload: &[u8]) -> bool {
    payload.windows(4).any(|w| w == b"fss\0") || payload.windows(7).any(|w| w == b"\0\0\0\x03fss")
}

impl<R: Write> StreamGate<R> {
    /// Enough for the BEGIN record's type, payload length, magic and
    /// version word.
    const HEAD: usize = 24;

    fn new(inner: R, allow_props: bool) -> Self {
        Self {
            inner,
            head: Vec::with_capacity(BEGIN_RECORD),
            want: Self::HEAD,
            open: allow_props,
            refused: None,
        }
    }

    fn refuse(&mut self, why: &str) -> io::Error {
        let why = format!("{why}, which this agent's config does not allow (allow-stream-props)");
        self.refused = Some(why.clone());
        io::Error::new(io::ErrorKind::PermissionDenied, why)
    }

    /// Decides once `head` holds `want` bytes (or the stream ended early):
    /// asks for more, refuses, or opens the gate.
    fn check(&mut self, ended: bool) -> io::Result<()> {
        if let Head::Compound { payload } = stream_head(&self.head) {
            if payload > MAX_BEGIN_PAYLOAD {
                return Err(self.refuse(
                    "the stream's compound header is too large to inspect (a zfs send -R tree)",
                ));
            }
            let full = BEGIN_RECORD + payload;
            if self.head.len() < full && !ended {
                self.want = full;
                return Ok(());
            }
            let body = self.head.get(BEGIN_RECORD..).unwrap_or_default();
            if payload_has_fss(body) {
                return Err(
                    self.refuse("the stream carries properties or descendants (zfs send -p/-R)")
                );
            }
        }
        self.open = true;
        let head = std::mem::take(&mut self.head);
        self.inner.write_all(&head)
    }
}

impl<R: Write> Write for StreamGate<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.refused.is_some() {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if self.open {
            return self.inner.write(buf);
        }
        let n = buf.len().min(self.want - self.head.len());
        self.head.extend_from_slice(&buf[..n]);
        if self.head.len() == self.want {
            self.check(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.open && self.refused.is_none() {
            // A stream shorter than what the gate waits for: decide on what
            // there is (zfs judges a truncated stream).
            self.check(true)?;
        }
        self.inner.flush()
    }
}

/// The JSON budget of one listing response: the control bound less room
/// for the envelope.
const CHUNK_BUDGET: usize = super::frame::MAX_CONTROL - 4096;

fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |j| j.len())
}

/// Splits items into runs whose JSON stays within `budget` (an item over
/// the budget goes alone).
pub(crate) fn chunks_by_size<T: serde::Serialize>(items: Vec<T>, budget: usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let (mut cur, mut size) = (Vec::new(), 0);
    for it in items {
        let n = json_len(&it) + 1;
        if size + n > budget && !cur.is_empty() {
            chunks.push(std::mem::take(&mut cur));
            size = 0;
        }
        cur.push(it);
        size += n;
    }
    if !cur.is_empty() || chunks.is_empty() {
        chunks.push(cur);
    }
    chunks
}

/// Splits a listing into runs within `budget`; a dataset over the budget
/// is split into parts of its versions (same name and fields), which the
/// client joins back.
pub(crate) fn list_chunks(
    datasets: Vec<crate::zfs::Dataset>,
    budget: usize,
) -> Vec<Vec<crate::zfs::Dataset>> {
    let mut parts = Vec::with_capacity(datasets.len());
    for d in datasets {
        if json_len(&d) <= budget {
            parts.push(d);
            continue;
        }
        let mut head = d.clone();
        head.versions.clear();
        let base = json_len(&head);
        let (mut part, mut size) = (head.clone(), base);
        for v in d.versions {
            let n = json_len(&v) + 1;
            if size + n > budget && !part.versions.is_empty() {
                parts.push(std::mem::replace(&mut part, head.clone()));
                size = base;
            }
            part.versions.push(v);
            size += n;
        }
        parts.push(part);
    }
    chunks_by_size(parts, budget)
}

/// A receive's input: plain, or through a zstd decoder.
enum Inbound<R: RecvSink> {
    Plain(StreamGate<R>),
    Zstd(zstd::stream::write::Decoder<'static, StreamGate<R>>),
}

impl<R: RecvSink> Inbound<R> {
    fn into_sink(self) -> StreamGate<R> {
        match self {
            Self::Plain(r) => r,
            Self::Zstd(d) => d.into_inner(),
        }
    }
}

impl<R: RecvSink> Write for Inbound<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.write(buf),
            Self::Zstd(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(r) => r.flush(),
            Self::Zstd(d) => d.flush(),
        }
    }
}

/// A zstd encoder with checksums, multithreaded with `workers` > 0.
pub(crate) fn zstd_encoder<W: Write>(
    w: W,
    level: i32,
    workers: u32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(w, level)?;
    enc.include_checksum(true)?;
    if workers > 0 {
        enc.multithread(workers)?;
    }
    Ok(enc)
}

/// One read, retried on `EINTR`.
pub(crate) fn read_some(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    /// A BEGIN record (little-endian) with `hdrtype` and `payload`.
    fn begin(hdrtype: u64, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; BEGIN_RECORD];
        r[4..8].copy_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_le_bytes());
        r[8..16].copy_from_slice(&DMU_BACKUP_MAGIC.to_le_bytes());
        r[16..24].copy_from_slice(&(0x11_0000 | hdrtype).to_le_bytes());
        r.extend_from_slice(payload);
        r.extend_from_slice(b"records follow");
        r
    }

    /// Feeds `stream` in `chunk`-byte writes; what reached the sink, or
    /// the refusal.
    fn feed(stream: &[u8], chunk: usize) -> Result<Vec<u8>, String> {
        let mut g = StreamGate::new(Vec::new(), false);
        for c in stream.chunks(chunk) {
            let mut c = c;
            while !c.is_empty() {
                let n = g.write(c).map_err(|e| e.to_string())?;
                c = &c[n..];
            }
        }
        g.flush().map_err(|e| e.to_string())?;
        Ok(g.inner)
    }

    #[test]
    fn plain_and_dash_capital_i_streams_pass_whole() {
        // zfs-fuse's `send -I`: compound, no payload; OpenZFS's: compound
        // with fromsnap/tosnap/not_recursive, no fss.
        let xdr_no_fss = b"\0\0\0\x06tosnap\0\0\0\0\0\x02s2\0\0\0\0\0\x0dnot_recursive";
        for s in [begin(1, b""), begin(2, b""), begin(2, xdr_no_fss)] {
            for chunk in [1, 7, 24, 313, 4096] {
                assert_eq!(
                    feed(&s, chunk).as_deref(),
                    Ok(s.as_slice()),
                    "chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn property_streams_are_refused_before_a_byte_passes() {
        let xdr_fss = b"\0\0\0\x06tosnap\0\0\0\0\0\x03fss\0\0\0\0\0";
        let native_fss = b"\x08\0\0\0fss\0";
        for s in [begin(2, xdr_fss), begin(2, native_fss)] {
            for chunk in [1, 24, 4096] {
                let e = feed(&s, chunk).unwrap_err();
                assert!(e.contains("allow-stream-props"), "{e}");
            }
        }
        let huge = begin(2, &vec![0u8; MAX_BEGIN_PAYLOAD + 1]);
        assert!(feed(&huge, 4096).unwrap_err().contains("too large"));
    }

    #[test]
    fn short_or_foreign_streams_are_left_to_zfs() {
        for s in [
            b"".to_vec(),
            b"not a stream at all".to_vec(),
            begin(2, b"fss")[..100].to_vec(),
        ] {
            assert_eq!(feed(&s, 5).as_deref(), Ok(s.as_slice()));
        }
    }
}
