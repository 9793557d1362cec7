//! `zfs send`: checks the request as OpenZFS does, plans which snapshot
//! records the stream carries (full, `-i`, `-I`, from a bookmark, `-R`,
//! `-t`), and encodes them.

use std::io;
use std::os::fd::RawFd;

use crate::name::{DatasetName, Guid, SnapshotName};
use crate::zfs::{SendSource, SendSpec, SendStream, VersionName, ZfsErrorKind as K, ZfsResult};

use super::state::{Ds, State, err, not_found};
use super::stream::{DatasetBegin, Encoder, ResumeToken, SnapBegin, StreamHeader};

/// The reading end of a model `zfs send`: the whole stream, produced when
/// the send starts (snapshots do not change), read from memory. It has no
/// file descriptor, so data paths fall back to copying.
#[derive(Debug, Clone)]
pub struct FakeSendStream {
    data: io::Cursor<Vec<u8>>,
}

impl FakeSendStream {
    /// The stream's length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.get_ref().len()
    }

    /// Whether the stream is empty (never, for a stream `send` returned).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.get_ref().is_empty()
    }

    /// The whole stream, whatever has been read.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.data.into_inner()
    }
}

impl io::Read for FakeSendStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl SendStream for FakeSendStream {
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn finish(self) -> ZfsResult<()> {
        Ok(())
    }

    fn abort(self) {}
}

/// One dataset's part of a stream.
struct Part {
    begin: DatasetBegin,
    records: Vec<SnapBegin>,
}

/// How the request reads on a command line (for errors).
fn describe(spec: &SendSpec) -> String {
    let f = &spec.flags;
    let mut flags = String::new();
    for (on, c) in [
        (f.replicate, 'R'),
        (f.props, 'p'),
        (f.dedup, 'D'),
        (f.compressed, 'c'),
        (f.large_blocks, 'L'),
        (f.embedded, 'e'),
        (f.raw, 'w'),
    ] {
        if on {
            flags.push(c);
        }
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!("-{flags} ")
    };
    match &spec.source {
        SendSource::Full { snapshot } => format!("send {flags}{snapshot}"),
        SendSource::Incremental {
            from,
            to,
            intermediates,
        } => {
            format!(
                "send {flags}-{} {from} {to}",
                if *intermediates { 'I' } else { 'i' }
            )
        }
        SendSource::Resume { .. } => format!("send {flags}-t <token>"),
    }
}

/// Refuses what this ZFS cannot do before any process would run.
fn check_caps(state: &State, spec: &SendSpec, op: &str) -> ZfsResult<()> {
    let c = &state.caps;
    let f = &spec.flags;
    for (wanted, have, flag) in [
        (f.compressed, c.send_compressed, 'c'),
        (f.large_blocks, c.send_large_blocks, 'L'),
        (f.embedded, c.send_embedded, 'e'),
        (f.raw, c.send_raw, 'w'),
    ] {
        if wanted && !have {
            return Err(err(op, K::Unsupported, format!("invalid option '{flag}'")));
        }
    }
    match &spec.source {
        SendSource::Resume { .. } if !c.resumable => {
            Err(err(op, K::Unsupported, "invalid option 't'"))
        }
        SendSource::Incremental {
            from: VersionName::Bookmark(_),
            ..
        } if !c.bookmarks => Err(err(
            op,
            K::Unsupported,
            "bookmarks are not supported by this ZFS",
        )),
        _ => Ok(()),
    }
}

/// Builds the stream `zfs send` would write.
pub(crate) fn send(state: &mut State, spec: &SendSpec) -> ZfsResult<FakeSendStream> {
    let op = describe(spec);
    check_caps(state, spec, &op)?;
    state.count();
    let limit = state.payload_limit;
    let f = &spec.flags;
    let with_props = f.props || f.replicate;
    let (header, parts) = match &spec.source {
        SendSource::Full { snapshot } => {
            state.need_snap(snapshot, &op)?;
            let top = snapshot.dataset();
            let header = header(&top, spec, false);
            let mut parts = Vec::new();
            for name in datasets(state, &top, f.replicate) {
                let ds = state.get(&name).expect("listed");
                let Some(ti) = ds.snap_index(snapshot.snap()) else {
                    continue; // -R skips descendants without the snapshot
                };
                // -R replicates every snapshot up to the named one.
                let first = if f.replicate { 0 } else { ti };
                parts.push(part(
                    &name,
                    ds,
                    spec,
                    chain(&name, ds, None, first, ti, with_props, limit),
                ));
            }
            (header, parts)
        }
        SendSource::Incremental {
            from,
            to,
            intermediates,
        } => {
            let (base_guid, base_txg, base_bytes) =
                check_incremental(state, &op, spec, from, to, *intermediates)?;
            let top = to.dataset();
            let header = header(&top, spec, false);
            let mut parts = Vec::new();
            for name in datasets(state, &top, f.replicate) {
                let ds = state.get(&name).expect("listed");
                let Some(ti) = ds.snap_index(to.snap()) else {
                    continue;
                };
                let records = if name == top {
                    // -I: every snapshot after the base, by txg; -i: `to` only.
                    let start = if *intermediates {
                        ds.snaps.partition_point(|s| s.createtxg <= base_txg)
                    } else {
                        ti
                    };
                    chain(
                        &name,
                        ds,
                        Some((base_guid, base_bytes)),
                        start,
                        ti,
                        with_props,
                        limit,
                    )
                } else {
                    match ds.snap_index(from.short()) {
                        // A descendant that has the base: the same increment.
                        Some(fi) if fi < ti => {
                            let base = &ds.snaps[fi];
                            let start = if *intermediates { fi + 1 } else { ti };
                            chain(
                                &name,
                                ds,
                                Some((base.guid, base.data_bytes)),
                                start,
                                ti,
                                with_props,
                                limit,
                            )
                        }
                        // A descendant created since: sent in full.
                        _ => chain(
                            &name,
                            ds,
                            None,
                            if *intermediates { 0 } else { ti },
                            ti,
                            with_props,
                            limit,
                        ),
                    }
                };
                parts.push(part(&name, ds, spec, records));
            }
            (header, parts)
        }
        SendSource::Resume { token } => resume(state, &op, token, limit)?,
    };
    let mut enc = Encoder::new(&header);
    for p in &parts {
        enc.dataset(&p.begin);
        for r in &p.records {
            enc.snapshot(r);
        }
    }
    let mut data = enc.finish();
    data.resize(data.len() + state.send_trailer, 0);
    Ok(FakeSendStream {
        data: io::Cursor::new(data),
    })
}

fn header(top: &DatasetName, spec: &SendSpec, resume: bool) -> StreamHeader {
    StreamHeader {
        sendfs: top.clone(),
        replicate: spec.flags.replicate,
        props: spec.flags.props || spec.flags.replicate,
        resume,
    }
}

/// The datasets a stream covers: the top, and with `-R` its descendants.
fn datasets(state: &State, top: &DatasetName, replicate: bool) -> Vec<DatasetName> {
    if replicate {
        state.subtree(top)
    } else {
        vec![top.clone()]
    }
}

fn part(name: &DatasetName, ds: &Ds, spec: &SendSpec, records: Vec<SnapBegin>) -> Part {
    let with_props = spec.flags.props || spec.flags.replicate;
    Part {
        begin: DatasetBegin {
            name: name.clone(),
            kind: ds.kind,
            props: with_props.then(|| ds.props.effective()),
            snapshots: spec
                .flags
                .replicate
                .then(|| ds.snaps.iter().map(|s| s.guid).collect()),
        },
        records,
    }
}

/// Records for snapshots `first..=last` of `ds`, each incremental from the
/// previous one; the first from `base`, or full without one.
fn chain(
    name: &DatasetName,
    ds: &Ds,
    base: Option<(Guid, u64)>,
    first: usize,
    last: usize,
    with_props: bool,
    limit: u64,
) -> Vec<SnapBegin> {
    let mut prev = base;
    let mut out = Vec::new();
    for s in &ds.snaps[first..=last] {
        let delta = match prev {
            None => s.data_bytes,
            Some((_, bytes)) => s.data_bytes.saturating_sub(bytes),
        };
        out.push(SnapBegin {
            toname: super::state::snap_name(name, &s.name),
            toguid: s.guid,
            fromguid: prev.map(|(g, _)| g),
            creation: s.creation,
            content: s.content,
            data_bytes: s.data_bytes,
            props: if with_props {
                s.props.effective()
            } else {
                Default::default()
            },
            payload_len: delta.min(limit),
            resume_offset: 0,
        });
        prev = Some((s.guid, s.data_bytes));
    }
    out
}

/// Checks an incremental request as `zfs send` does; returns the base's
/// guid, createtxg and data size.
fn check_incremental(
    state: &State,
    op: &str,
    spec: &SendSpec,
    from: &VersionName,
    to: &SnapshotName,
    intermediates: bool,
) -> ZfsResult<(Guid, crate::name::Txg, u64)> {
    let to_snap = state.need_snap(to, op)?;
    let (guid, txg, bytes) = match from {
        VersionName::Snapshot(f) => {
            if f.dataset() != to.dataset() {
                return Err(err(
                    op,
                    K::InvalidArgument,
                    "incremental source must be in same filesystem",
                ));
            }
            let s = state.need_snap(f, op)?;
            (s.guid, s.createtxg, s.data_bytes)
        }
        VersionName::Bookmark(b) => {
            // A bookmark has no data: it can only start a single increment,
            // never -I's list of snapshots, nor the -R/-p package format.
            if intermediates {
                return Err(err(
                    op,
                    K::InvalidArgument,
                    "Error: multiple snapshots cannot be sent from a bookmark.",
                ));
            }
            if spec.flags.replicate || spec.flags.props {
                return Err(err(
                    op,
                    K::InvalidArgument,
                    "Error: Unsupported flag with filesystem or bookmark.",
                ));
            }
            if b.dataset() != to.dataset() {
                return Err(err(
                    op,
                    K::InvalidArgument,
                    "incremental source must be in same filesystem",
                ));
            }
            let m = state.mark(b).ok_or_else(|| not_found(op, b.as_str()))?;
            (m.guid, m.createtxg, m.data_bytes)
        }
    };
    if txg >= to_snap.createtxg {
        return Err(err(
            op,
            K::InvalidArgument,
            format!("cannot send '{to}': not an earlier snapshot from the same fs"),
        ));
    }
    Ok((guid, txg, bytes))
}

/// `zfs send -t token`: the interrupted snapshot's record, from the offset
/// the receiver reached, without properties (as OpenZFS).
fn resume(
    state: &State,
    op: &str,
    token: &str,
    limit: u64,
) -> ZfsResult<(StreamHeader, Vec<Part>)> {
    let invalid = |msg: String| {
        err(
            op,
            K::ResumeTokenInvalid,
            format!("cannot resume send: {msg}"),
        )
    };
    let tok = ResumeToken::decode(token).map_err(invalid)?;
    let name = tok.toname.dataset();
    let gone = || {
        invalid(format!(
            "'{}' used in the initial send no longer exists",
            tok.toname
        ))
    };
    let ds = state.get(&name).ok_or_else(gone)?;
    let ti = ds.snap_index(tok.toname.snap()).ok_or_else(gone)?;
    if ds.snaps[ti].guid != tok.toguid {
        return Err(invalid(format!(
            "'{}' is not the snapshot the initial send sent (guid mismatch)",
            tok.toname
        )));
    }
    let base = match tok.fromguid {
        None => None,
        Some(g) => {
            let bytes = ds
                .snaps
                .iter()
                .find(|s| s.guid == g)
                .map(|s| s.data_bytes)
                .or_else(|| ds.marks.iter().find(|m| m.guid == g).map(|m| m.data_bytes))
                .ok_or_else(|| {
                    invalid(format!(
                        "incremental source {g} of the initial send no longer exists"
                    ))
                })?;
            Some((g, bytes))
        }
    };
    let mut records = chain(&name, ds, base, ti, ti, false, limit);
    let rec = records.first_mut().expect("one record");
    if tok.bytes > rec.payload_len {
        return Err(invalid(
            "resume token offset is past the end of the stream".into(),
        ));
    }
    rec.resume_offset = tok.bytes;
    let header = StreamHeader {
        sendfs: name.clone(),
        replicate: false,
        props: false,
        resume: true,
    };
    let part = Part {
        begin: DatasetBegin {
            name,
            kind: ds.kind,
            props: None,
            snapshots: None,
        },
        records,
    };
    Ok((header, vec![part]))
}
