//! The error of one `zfs` operation: what ran, where, how it ended, the tail
//! of its stderr, and a kind that callers match on (never the message text).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, classified from the exit status and stderr of `zfs`
/// (see [`super::stderr::classify`]) or produced by the in-memory model.
///
/// Match on these kinds above the `zfs` module; never on message text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ZfsErrorKind {
    /// The dataset, snapshot or bookmark does not exist.
    NotFound,
    /// The dataset, snapshot or bookmark already exists.
    AlreadyExists,
    /// The dataset is busy (mounted and in use, being received into, ...).
    Busy,
    /// A snapshot has user holds and cannot be destroyed.
    Held,
    /// The dataset has dependent clones.
    HasClones,
    /// The dataset has children (or snapshots) and needs a recursive destroy.
    HasChildren,
    /// The pool is out of space or over quota.
    NoSpace,
    /// The user lacks the permission (not root and no `zfs allow`).
    PermissionDenied,
    /// The pool or dataset is read-only.
    ReadOnly,
    /// This ZFS does not support the operation or an option we passed.
    Unsupported,
    /// ZFS rejected our arguments (a bug in the caller, or an unsupported flag).
    InvalidArgument,
    /// The pool is not available (suspended, faulted, I/O errors).
    PoolUnavailable,
    /// The ZFS service cannot be reached (zfs-fuse daemon down, no kernel module).
    ServiceUnavailable,
    /// The receive stream is corrupt or not a ZFS stream.
    StreamInvalid,
    /// The stream was cut short (the sender died or the link dropped).
    StreamTruncated,
    /// An incremental stream's base is missing on the target, or does not match.
    MissingBase,
    /// The target was modified since its most recent snapshot.
    TargetModified,
    /// The target has snapshots newer than the incremental base; `-F` would
    /// destroy them.
    TargetHasNewerSnapshots,
    /// The target exists and a full stream would need `-F` to overwrite it.
    TargetExists,
    /// The stream's guid does not match what the target expects.
    GuidMismatch,
    /// A resume token is invalid, stale or does not match the target.
    ResumeTokenInvalid,
    /// The target holds a partially received state (resume token) that must be
    /// resumed or aborted first.
    ResumablePending,
    /// The remote transport (ssh) failed before `zfs` ran.
    Transport,
    /// The process was killed by a signal or cancelled.
    Killed,
    /// The process could not be started (binary missing, fork failure).
    Spawn,
    /// Anything not classified above; see the stderr tail.
    Other,
}

impl ZfsErrorKind {
    /// Whether retrying the same operation later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Busy
                | Self::Transport
                | Self::StreamTruncated
                | Self::ServiceUnavailable
                | Self::Killed
                | Self::PoolUnavailable
        )
    }
}

impl fmt::Display for ZfsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::NotFound => "does not exist",
            Self::AlreadyExists => "already exists",
            Self::Busy => "busy",
            Self::Held => "has user holds",
            Self::HasClones => "has dependent clones",
            Self::HasChildren => "has children",
            Self::NoSpace => "out of space",
            Self::PermissionDenied => "permission denied",
            Self::ReadOnly => "read-only",
            Self::Unsupported => "not supported by this ZFS",
            Self::InvalidArgument => "invalid argument",
            Self::PoolUnavailable => "pool unavailable",
            Self::ServiceUnavailable => "ZFS service unavailable",
            Self::StreamInvalid => "invalid stream",
            Self::StreamTruncated => "stream truncated",
            Self::MissingBase => "incremental base missing or mismatched",
            Self::TargetModified => "target modified since its last snapshot",
            Self::TargetHasNewerSnapshots => "target has newer snapshots",
            Self::TargetExists => "target exists",
            Self::GuidMismatch => "guid mismatch",
            Self::ResumeTokenInvalid => "invalid resume token",
            Self::ResumablePending => "partial receive pending",
            Self::Transport => "transport failure",
            Self::Killed => "killed",
            Self::Spawn => "could not start",
            Self::Other => "failed",
        };
        f.write_str(s)
    }
}

/// The failure of one `zfs` (or `zpool`) operation.
///
/// Displays as `cannot <op> on <host>: <kind>: <stderr tail>`, for example
/// `cannot destroy tank/a@x: busy: cannot destroy snapshot tank/a@x: dataset is busy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZfsError {
    /// The operation, in words (`destroy tank/a@x`).
    pub op: String,
    /// The host it ran on; `None` for local.
    pub host: Option<String>,
    /// The argv that ran (empty for the in-memory model).
    pub argv: Vec<String>,
    /// The exit code, when the process exited normally.
    pub status: Option<i32>,
    /// The last lines of stderr (bounded).
    pub stderr: String,
    /// The classified kind.
    pub kind: ZfsErrorKind,
}

impl ZfsError {
    /// An error with no process behind it (model, validation, unsupported
    /// capability).
    #[must_use]
    pub fn new(op: impl Into<String>, kind: ZfsErrorKind, message: impl Into<String>) -> Self {
        Self {
            op: op.into(),
            host: None,
            argv: Vec::new(),
            status: None,
            stderr: message.into(),
            kind,
        }
    }

    /// Whether retrying later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

impl fmt::Display for ZfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}", self.op)?;
        if let Some(h) = &self.host {
            write!(f, " on {h}")?;
        }
        write!(f, ": {}", self.kind)?;
        let tail = self.stderr.trim();
        if !tail.is_empty() {
            write!(f, ": {}", tail.replace('\n', " | "))?;
        }
        if self.kind == ZfsErrorKind::ServiceUnavailable {
            write!(
                f,
                " (hint: is ZFS loaded? on zfs-fuse hosts start the daemon with `zfs-fuse`)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ZfsError {}

/// Result of a `zfs` operation.
pub type ZfsResult<T> = Result<T, ZfsError>;
