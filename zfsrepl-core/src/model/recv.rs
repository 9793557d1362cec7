//! `zfs receive`: a sink that decodes the stream as it is written and
//! applies each snapshot when its record ends, as ZFS commits each
//! snapshot of a multi-snapshot stream. A receive that fails stops taking
//! input (writes then fail with `BrokenPipe`, as the pipe of a `zfs
//! receive` that exited would); one cut short keeps the snapshots that
//! arrived whole, and with `-s` saves the partial one with a resume token.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::name::DatasetName;
use crate::zfs::{RecvSink, RecvSpec, ZfsError, ZfsErrorKind as K, ZfsResult};

use super::props;
use super::recv_check::{self, Plan};
use super::state::{Ds, Partial, Snap, State, err};
use super::stream::{
    self, DatasetBegin, Decoded, Frame, MAGIC, ResumeToken, SnapBegin, StreamHeader,
};

/// The writing end of a model `zfs receive`.
///
/// Bytes are decoded as they are written; each snapshot is applied when
/// its record ends. Once the receive has failed, further writes fail with
/// [`io::ErrorKind::BrokenPipe`] and [`RecvSink::finish`] returns the
/// failure. `finish` on a stream without its end record, and
/// [`RecvSink::abort`], are an interrupted receive: whole snapshots stay,
/// the partial one is dropped, or kept as resume state with `-s`.
#[derive(Debug)]
pub struct FakeRecvSink {
    shared: Arc<Mutex<State>>,
    spec: RecvSpec,
    target: DatasetName,
    op: String,
    /// Bytes written but not yet decoded.
    pending: Vec<u8>,
    magic_seen: bool,
    header: Option<StreamHeader>,
    datasets_seen: usize,
    dataset: Option<DatasetCtx>,
    record: Option<RecordCtx>,
    ended: bool,
    failed: Option<ZfsError>,
}

/// The dataset whose records are arriving.
#[derive(Debug)]
struct DatasetCtx {
    begin: DatasetBegin,
    target: DatasetName,
    /// The first dataset of the stream: `-o` applies to it.
    top: bool,
}

/// The snapshot record that is arriving.
#[derive(Debug)]
struct RecordCtx {
    begin: SnapBegin,
    /// Payload bytes so far, counted from the start of the record (a
    /// resumed stream starts at its offset).
    received: u64,
    plan: Plan,
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts `zfs receive`: checks the flags and the command line.
pub(crate) fn receive(shared: &Arc<Mutex<State>>, spec: &RecvSpec) -> ZfsResult<FakeRecvSink> {
    let mut state = lock(shared);
    let name = spec
        .target
        .as_ref()
        .map_or("<none>".to_owned(), ToString::to_string);
    let op = format!("receive {name}");
    let caps = &state.caps;
    // Refused up front by a capability-aware caller: no process runs.
    if spec.resumable && !caps.resumable {
        return Err(err(&op, K::Unsupported, "invalid option 's'"));
    }
    if (!spec.set_props.is_empty() || !spec.exclude_props.is_empty()) && !caps.recv_props {
        return Err(err(&op, K::Unsupported, "invalid option 'o'"));
    }
    if spec.unmounted && !caps.recv_unmounted {
        return Err(err(&op, K::Unsupported, "invalid option 'u'"));
    }
    state.count();
    let Some(target) = spec.target.clone() else {
        return Err(err(&op, K::InvalidArgument, "missing snapshot argument"));
    };
    for (k, v) in &spec.set_props {
        props::check_recv(k)
            .and_then(|()| props::check_set(props::On::Filesystem, k, v))
            .map_err(|why| err(&op, K::InvalidArgument, format!("cannot receive: {why}")))?;
    }
    for k in &spec.exclude_props {
        props::check_recv(k)
            .map_err(|why| err(&op, K::InvalidArgument, format!("cannot receive: {why}")))?;
    }
    // -d maps names below the given dataset, which must exist.
    if spec.discard_path && state.get(&target).is_none() {
        return Err(err(
            &op,
            K::NotFound,
            format!("cannot receive: destination '{target}' does not exist"),
        ));
    }
    drop(state);
    Ok(FakeRecvSink {
        shared: Arc::clone(shared),
        spec: spec.clone(),
        target,
        op,
        pending: Vec::new(),
        magic_seen: false,
        header: None,
        datasets_seen: 0,
        dataset: None,
        record: None,
        ended: false,
        failed: None,
    })
}

impl FakeRecvSink {
    fn invalid(&self, why: impl std::fmt::Display) -> ZfsError {
        err(
            &self.op,
            K::StreamInvalid,
            format!("cannot receive: invalid stream ({why})"),
        )
    }

    /// Decodes and handles every complete frame pending.
    fn process(&mut self) {
        let mut at = 0;
        while !self.ended && self.failed.is_none() {
            let buf = &self.pending[at..];
            if !self.magic_seen {
                let n = buf.len().min(MAGIC.len());
                if buf[..n] != MAGIC[..n] {
                    self.failed = Some(self.invalid("bad magic number"));
                } else if n == MAGIC.len() {
                    self.magic_seen = true;
                    at += n;
                    continue;
                }
                break;
            }
            match stream::decode_frame(buf) {
                Decoded::Incomplete => break,
                Decoded::Invalid(why) => self.failed = Some(self.invalid(why)),
                Decoded::Frame(frame, n) => {
                    at += n;
                    if let Err(e) = self.handle(frame) {
                        self.failed = Some(e);
                    }
                }
            }
        }
        if self.ended || self.failed.is_some() {
            // The receiver stopped reading: the rest is never looked at.
            self.pending.clear();
        } else {
            self.pending.drain(..at);
        }
    }

    fn handle(&mut self, frame: Frame) -> ZfsResult<()> {
        let unexpected = |s: &Self, what: &str| s.invalid(format!("unexpected {what} record"));
        match frame {
            Frame::Header(h) => {
                if self.header.is_some() {
                    return Err(unexpected(self, "header"));
                }
                self.header = Some(h);
            }
            Frame::Dataset(d) => {
                if self.header.is_none() || self.record.is_some() {
                    return Err(unexpected(self, "dataset"));
                }
                let target = self.map_target(&d.name)?;
                self.prune_for_replication(&d, &target);
                self.dataset = Some(DatasetCtx {
                    begin: d,
                    target,
                    top: self.datasets_seen == 0,
                });
                self.datasets_seen += 1;
            }
            Frame::Begin(b) => {
                let Some(ds) = &self.dataset else {
                    return Err(unexpected(self, "begin"));
                };
                if self.record.is_some() {
                    return Err(unexpected(self, "begin"));
                }
                let resuming = self.resuming();
                if !resuming && b.resume_offset > 0 {
                    return Err(unexpected(self, "resume"));
                }
                let plan = {
                    let state = lock(&self.shared);
                    recv_check::check(&state, &self.spec, &self.op, &ds.target, &b, resuming)?
                };
                self.record = Some(RecordCtx {
                    received: b.resume_offset,
                    begin: *b,
                    plan,
                });
            }
            Frame::Payload(bytes) => {
                let Some(rec) = &mut self.record else {
                    return Err(unexpected(self, "write"));
                };
                let start = rec.received;
                let guid = rec.begin.toguid;
                let end = start + bytes.len() as u64;
                if end > rec.begin.payload_len
                    || bytes
                        .iter()
                        .zip(start..)
                        .any(|(&b, i)| b != stream::payload_byte(guid, i))
                {
                    return Err(self.invalid("checksum mismatch"));
                }
                rec.received = end;
            }
            Frame::EndSnapshot => {
                let Some(rec) = self.record.take() else {
                    return Err(unexpected(self, "end"));
                };
                if rec.received != rec.begin.payload_len {
                    return Err(self.invalid("checksum mismatch"));
                }
                self.commit(&rec)?;
            }
            Frame::End => {
                if self.record.is_some() || self.header.is_none() {
                    return Err(unexpected(self, "end"));
                }
                self.ended = true;
            }
        }
        Ok(())
    }

    fn resuming(&self) -> bool {
        self.header.as_ref().is_some_and(|h| h.resume)
    }

    /// Where a dataset of the stream lands: with `-d`, the target plus the
    /// sent name without its pool; otherwise the target plus the sent name
    /// relative to the dataset named on the `zfs send` command line.
    fn map_target(&self, sent: &DatasetName) -> ZfsResult<DatasetName> {
        let header = self.header.as_ref().expect("checked");
        let rel = if self.spec.discard_path {
            &sent.as_str()[sent.pool().len()..]
        } else if sent.is_within(&header.sendfs) {
            &sent.as_str()[header.sendfs.as_str().len()..]
        } else {
            return Err(self.invalid(format!("dataset {sent} is outside {}", header.sendfs)));
        };
        DatasetName::parse(&format!("{}{rel}", self.target))
            .map_err(|e| err(&self.op, K::InvalidArgument, format!("cannot receive: {e}")))
    }

    /// `zfs receive -F` of a replication stream first destroys the target's
    /// snapshots that the sender no longer has (failures are ignored, as
    /// libzfs does; the receive then fails or not on its own terms).
    fn prune_for_replication(&self, d: &DatasetBegin, target: &DatasetName) {
        let replicate = self
            .header
            .as_ref()
            .is_some_and(|h| h.replicate && !h.resume);
        let (true, true, Some(keep)) = (replicate, self.spec.force, &d.snapshots) else {
            return;
        };
        let mut state = lock(&self.shared);
        let Some(t) = state.get(target) else {
            return;
        };
        let doomed: Vec<String> = t
            .snaps
            .iter()
            .filter(|s| !keep.contains(&s.guid) && s.holds.is_empty())
            .map(|s| s.name.clone())
            .filter(|n| {
                state
                    .dependents(&super::state::snap_name(target, n))
                    .is_empty()
            })
            .collect();
        if doomed.is_empty() {
            return;
        }
        if let Some(t) = state.get_mut(target) {
            t.snaps.retain(|s| !doomed.contains(&s.name));
        }
        state.tick();
    }

    /// Applies a record that arrived whole, re-checking it against the
    /// target as it is now.
    fn commit(&self, rec: &RecordCtx) -> ZfsResult<()> {
        let ds = self.dataset.as_ref().expect("records are inside a dataset");
        let mut state = lock(&self.shared);
        let plan = recv_check::check(
            &state,
            &self.spec,
            &self.op,
            &ds.target,
            &rec.begin,
            self.resuming(),
        )?;
        apply(&mut state, &self.spec, ds, &rec.begin, &plan);
        Ok(())
    }

    /// The stream ended early (closed, or the receive killed): keep the
    /// partial record as resume state with `-s`; report the truncation.
    fn interrupted(&mut self) -> ZfsError {
        let what = match (&self.record, self.resuming()) {
            (_, true) => "cannot receive resume stream",
            (Some(r), _) if r.begin.fromguid.is_some() => "cannot receive incremental stream",
            (Some(_), _) => "cannot receive new filesystem stream",
            (None, _) => "cannot receive",
        };
        let Some(rec) = self.record.take() else {
            return err(
                &self.op,
                K::StreamTruncated,
                format!("{what}: failed to read from stream"),
            );
        };
        let truncated = format!("{what}: checksum mismatch or incomplete stream");
        if !self.spec.resumable || rec.plan == Plan::Skip {
            return err(&self.op, K::StreamTruncated, truncated);
        }
        let ds = self.dataset.as_ref().expect("records are inside a dataset");
        let mut state = lock(&self.shared);
        let resuming = self.resuming();
        // The target may have changed while the stream arrived.
        let Ok(plan) = recv_check::check(
            &state, &self.spec, &self.op, &ds.target, &rec.begin, resuming,
        ) else {
            return err(&self.op, K::StreamTruncated, truncated);
        };
        let token = save_partial(&mut state, ds, &rec.begin, rec.received, &plan);
        err(
            &self.op,
            K::StreamTruncated,
            format!(
                "{truncated}.\nPartially received snapshot is saved.\nA resuming stream can be generated on the sending system by running:\n    zfs send -t {token}"
            ),
        )
    }
}

/// Records a partial receive on the target (creating the placeholder of a
/// new filesystem); returns the token.
fn save_partial(
    state: &mut State,
    ds: &DatasetCtx,
    begin: &SnapBegin,
    bytes: u64,
    plan: &Plan,
) -> String {
    let (begin, new_fs) = match (plan, state.get(&ds.target).and_then(|t| t.partial.as_ref())) {
        // A resumed stream carries no properties: keep the first record.
        (Plan::Resume, Some(p)) => (p.begin.clone(), p.new_fs),
        _ => (begin.clone(), *plan == Plan::Create),
    };
    let token = ResumeToken {
        toname: begin.toname.clone(),
        toguid: begin.toguid,
        fromguid: begin.fromguid,
        bytes,
        target: ds.target.clone(),
    }
    .encode();
    let stamp = state.tick();
    if new_fs && state.get(&ds.target).is_none() {
        if let Some(parent) = ds.target.parent() {
            state.ensure_parents(&parent);
        }
        let guid = state.new_guid();
        let mut t = Ds::new(ds.begin.kind, guid, stamp);
        t.mounted = false;
        state.datasets.insert(ds.target.clone(), t);
    }
    if let Some(t) = state.get_mut(&ds.target) {
        t.partial = Some(Partial {
            begin,
            bytes,
            token: token.clone(),
            new_fs,
        });
    }
    token
}

/// Applies one checked record to the target.
fn apply(state: &mut State, spec: &RecvSpec, ds: &DatasetCtx, rec: &SnapBegin, plan: &Plan) {
    let (rec, new_fs) = match plan {
        Plan::Skip => return,
        Plan::Resume => {
            let p = state
                .get(&ds.target)
                .and_then(|t| t.partial.clone())
                .expect("checked: the target holds the partial state");
            let new_fs = p.new_fs || p.begin.fromguid.is_none();
            (p.begin, new_fs)
        }
        Plan::Create | Plan::Overwrite => (rec.clone(), true),
        Plan::Incremental { .. } => (rec.clone(), false),
    };
    let stamp = state.tick();
    if *plan == Plan::Create {
        if let Some(parent) = ds.target.parent() {
            state.ensure_parents(&parent);
        }
        let guid = state.new_guid();
        state
            .datasets
            .insert(ds.target.clone(), Ds::new(ds.begin.kind, guid, stamp));
    }
    let t = state.get_mut(&ds.target).expect("created or checked");
    if let Plan::Incremental { destroy } = plan {
        t.snaps.retain(|s| !destroy.contains(&s.name));
    }
    t.partial = None;
    t.content = rec.content;
    t.data_bytes = rec.data_bytes;
    t.modified = false;
    if new_fs {
        t.kind = ds.begin.kind;
    }
    let excluded = |k: &String| spec.exclude_props.contains(k);
    if let Some(props) = &ds.begin.props {
        // A -p stream's properties replace what was received before.
        t.props.received = props
            .iter()
            .filter(|(k, _)| !excluded(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    t.props.received.retain(|k, _| !excluded(k));
    if ds.top {
        // -o sets a local value, as `zfs set` just before the receive.
        t.props.local.extend(spec.set_props.iter().cloned());
    }
    if new_fs {
        // A new filesystem is mounted unless -u (or canmount) says not.
        t.mounted = t.can_mount() && !spec.unmounted;
    }
    let mut snap = Snap {
        name: rec.toname.snap().to_owned(),
        // ZFS keeps the sender's snapshot guid: replication matches on it.
        guid: rec.toguid,
        createtxg: stamp.txg,
        // ... and its creation time.
        creation: rec.creation,
        content: rec.content,
        data_bytes: rec.data_bytes,
        holds: Default::default(),
        props: Default::default(),
    };
    snap.props.received = rec
        .props
        .iter()
        .filter(|(k, _)| !excluded(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    t.insert_snap(snap);
}

impl io::Write for FakeRecvSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "zfs receive exited",
            ));
        }
        if self.ended {
            if self
                .shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .recv_exits_at_end
            {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "zfs receive exited at the end record",
                ));
            }
            // Trailing bytes after the end record are never read.
            return Ok(buf.len());
        }
        self.pending.extend_from_slice(buf);
        self.process();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RecvSink for FakeRecvSink {
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn finish(mut self) -> ZfsResult<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.ended {
            return Ok(());
        }
        Err(self.interrupted())
    }

    fn abort(mut self) {
        if self.failed.is_none() && !self.ended {
            let _ = self.interrupted();
        }
    }
}
