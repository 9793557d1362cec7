//! The messages of the agent protocol: JSON in control frames.
//!
//! Every name in a request is one of the validated name types, so a request
//! carrying `pool/a/../b`, an empty component or a stray `@` does not even
//! parse ([`FrameError::BadControl`]).

use std::io::{Read, Write};

use serde::{Deserialize, Deserializer, Serialize};

use super::frame::{FrameError, FrameKind, read_frame_into, write_frame_with};
use crate::name::{BookmarkName, DatasetName, EntityName, SnapshotName};
use crate::zfs::{
    Capabilities, Dataset, ListSpec, PropValue, RecvSpec, SendSpec, ZfsError, ZfsErrorKind,
};

/// The protocol version this build speaks. A peer with another version is
/// refused at [`Request::Hello`].
pub const PROTOCOL_VERSION: u32 = 1;

/// How a stream's data frames are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "codec")]
pub enum Codec {
    /// The `zfs send` bytes as they are.
    #[default]
    Plain,
    /// zstd frames (with checksums), compressed by the sending side at
    /// `level` and decompressed in-process by the other.
    Zstd {
        /// The sender's level (1..=19).
        level: i32,
    },
}

/// The job a session acts for: its sync snapshots and hold tag are the only
/// ones the agent lets it take, hold, release or destroy (see
/// [`crate::replication::SyncJob`]). Both parts must already be sanitised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobId {
    /// The sanitised job name.
    pub job: String,
    /// The sanitised target name.
    pub target: String,
}

/// A request from the client; the server answers each with one
/// [`Response`] (after the stream, for `Send` and `Receive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Request {
    /// The first request of a session.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
        /// The job the session acts for (none: no snapshot, hold, release,
        /// bookmark or destroy is allowed).
        job: Option<JobId>,
    },
    /// [`ZfsRead::list`](crate::ZfsRead::list).
    List {
        /// What to list; every root must be inside the allowed roots.
        spec: ListSpec,
    },
    /// [`ZfsRead::get_props`](crate::ZfsRead::get_props).
    GetProps {
        /// Entities inside the allowed roots.
        names: Vec<EntityName>,
        /// Property names.
        props: Vec<String>,
        /// `-r`.
        recursive: bool,
    },
    /// [`ZfsRead::holds`](crate::ZfsRead::holds).
    Holds {
        /// The snapshot.
        snapshot: SnapshotName,
    },
    /// [`ZfsStream::send_estimate`](crate::ZfsStream::send_estimate).
    Estimate {
        /// The send, inside the read roots.
        spec: SendSpec,
    },
    /// Start `zfs send`: [`Response::Ready`], then data frames, then an end
    /// (or abort) frame, then the sender's [`Response`].
    Send {
        /// The send, inside the read roots.
        spec: SendSpec,
        /// How the server encodes the data.
        codec: Codec,
    },
    /// Start `zfs receive`: [`Response::Ready`], then the client's data
    /// frames and end (or abort) frame, then the receiver's [`Response`].
    Receive {
        /// The receive, inside the write roots.
        spec: RecvSpec,
        /// How the client encodes the data.
        codec: Codec,
    },
    /// Take the job's sync snapshots (read roots).
    Snapshot {
        /// Names the session's job owns.
        snapshots: Vec<SnapshotName>,
        /// `zfs snapshot -r` of the first.
        recursive: bool,
    },
    /// Place the job's hold tag.
    Hold {
        /// Snapshots inside the allowed roots.
        snapshots: Vec<SnapshotName>,
    },
    /// Release the job's hold tag.
    Release {
        /// Snapshots inside the allowed roots.
        snapshots: Vec<SnapshotName>,
    },
    /// Destroy the job's own sync snapshots (`allow-destroy`).
    DestroySnapshots {
        /// Names the session's job owns.
        snapshots: Vec<SnapshotName>,
    },
    /// Bookmark one of the job's sync snapshots under the same name.
    Bookmark {
        /// The snapshot.
        snapshot: SnapshotName,
        /// The bookmark, a name the job owns.
        bookmark: BookmarkName,
    },
    /// Destroy one of the job's sync bookmarks (`allow-destroy`).
    DestroyBookmark {
        /// The bookmark.
        bookmark: BookmarkName,
    },
    /// Set the properties a receiving side needs (`readonly=on`,
    /// `canmount=noauto`) on a dataset in the write roots.
    SetProps {
        /// The dataset.
        name: EntityName,
        /// `(property, value)` pairs.
        props: Vec<(String, String)>,
    },
    /// `zfs rollback` over zfsrepl's own snapshots only (`allow-rollback`).
    Rollback {
        /// The snapshot to roll back to.
        snapshot: SnapshotName,
        /// `-r`.
        destroy_newer: bool,
    },
    /// `zfs receive -A` on a dataset in the write roots.
    ReceiveAbort {
        /// The dataset.
        target: DatasetName,
    },
}

impl Request {
    /// The operation's name, for logs.
    #[must_use]
    pub fn op(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::List { .. } => "list",
            Self::GetProps { .. } => "get-props",
            Self::Holds { .. } => "holds",
            Self::Estimate { .. } => "estimate",
            Self::Send { .. } => "send",
            Self::Receive { .. } => "receive",
            Self::Snapshot { .. } => "snapshot",
            Self::Hold { .. } => "hold",
            Self::Release { .. } => "release",
            Self::DestroySnapshots { .. } => "destroy-snapshots",
            Self::Bookmark { .. } => "bookmark",
            Self::DestroyBookmark { .. } => "destroy-bookmark",
            Self::SetProps { .. } => "set-props",
            Self::Rollback { .. } => "rollback",
            Self::ReceiveAbort { .. } => "receive-abort",
        }
    }
}

/// An error as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The operation, in words.
    pub op: String,
    /// The classified kind (an unknown kind from a newer peer reads as
    /// [`ZfsErrorKind::Other`]).
    #[serde(deserialize_with = "lenient_kind")]
    pub kind: ZfsErrorKind,
    /// The message (stderr tail or refusal reason).
    pub message: String,
    /// The agent refused the request (outside the allowed roots, not the
    /// job's own, not allowed by its config); nothing ran.
    #[serde(default)]
    pub refused: bool,
}

fn lenient_kind<'de, D: Deserializer<'de>>(d: D) -> Result<ZfsErrorKind, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).unwrap_or(ZfsErrorKind::Other))
}

impl WireError {
    /// A refusal.
    #[must_use]
    pub fn refused(op: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            op: op.into(),
            kind: ZfsErrorKind::PermissionDenied,
            message: message.into(),
            refused: true,
        }
    }

    /// The error as the client reports it, with the agent's host.
    #[must_use]
    pub fn into_zfs(self, host: Option<&str>) -> ZfsError {
        let message = if self.refused {
            format!("refused by the zfsrepl agent: {}", self.message)
        } else {
            self.message
        };
        let mut e = ZfsError::new(self.op, self.kind, message);
        e.host = host.map(str::to_owned);
        e
    }
}

impl From<&ZfsError> for WireError {
    fn from(e: &ZfsError) -> Self {
        Self {
            op: e.op.clone(),
            kind: e.kind.clone(),
            message: e.stderr.clone(),
            refused: false,
        }
    }
}

/// The server's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "reply")]
pub enum Response {
    /// The answer to [`Request::Hello`].
    Hello {
        /// The server's [`PROTOCOL_VERSION`].
        version: u32,
        /// What the server's ZFS can do.
        caps: Capabilities,
        /// The identity the server knows the client by, if any.
        identity: Option<String>,
    },
    /// Done.
    Done,
    /// The stream may start.
    Ready,
    /// Datasets, as [`ZfsRead::list`](crate::ZfsRead::list) returns them.
    /// A listing too big for one control frame comes in several responses,
    /// all but the last with `more`; a dataset too big for one is split
    /// into consecutive parts (same name, versions continued), which the
    /// client joins.
    List {
        /// The datasets.
        datasets: Vec<Dataset>,
        /// Another `List` response follows.
        #[serde(default)]
        more: bool,
    },
    /// Property values, in several responses (with `more`) when too many
    /// for one control frame.
    Props {
        /// The values.
        values: Vec<PropValue>,
        /// Another `Props` response follows.
        #[serde(default)]
        more: bool,
    },
    /// Hold tags.
    Holds {
        /// The tags.
        tags: Vec<String>,
    },
    /// A stream size estimate.
    Estimate {
        /// Bytes, where ZFS could estimate.
        bytes: Option<u64>,
    },
    /// One outcome per snapshot of a [`Request::DestroySnapshots`].
    Destroyed {
        /// `(snapshot, error)`; no error means destroyed.
        outcomes: Vec<(SnapshotName, Option<WireError>)>,
    },
    /// The request failed or was refused.
    Error {
        /// Why.
        error: WireError,
    },
}

/// Writes a message as one control frame and flushes.
///
/// # Errors
/// When it cannot be serialised, is over [`super::MAX_CONTROL`], or writing
/// fails.
pub fn send_message<T: Serialize>(
    w: &mut (impl Write + ?Sized),
    msg: &T,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let json = serde_json::to_vec(msg).map_err(|e| FrameError::BadControl(e.to_string()))?;
    write_frame_with(w, FrameKind::Control, &json, scratch)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame that must be a control frame, and parses it.
///
/// # Errors
/// [`FrameError::Unexpected`] for another kind, [`FrameError::BadControl`]
/// for JSON that is not a `T`, any error of
/// [`read_frame_into`].
pub fn recv_message<T: for<'de> Deserialize<'de>>(
    r: &mut (impl Read + ?Sized),
    buf: &mut Vec<u8>,
) -> Result<T, FrameError> {
    match read_frame_into(r, buf)? {
        FrameKind::Control => parse_message(buf),
        other => Err(FrameError::Unexpected(other)),
    }
}

/// Parses a control payload.
///
/// # Errors
/// [`FrameError::BadControl`] with serde's message (which names the bad
/// name and why it is invalid).
pub fn parse_message<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::BadControl(e.to_string()))
}
