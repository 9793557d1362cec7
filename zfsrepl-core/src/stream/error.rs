//! [`PipelineError`]: why a copy or a send → receive pipeline failed, with
//! the side that failed.

use std::io;

use crate::zfs::ZfsError;

/// Why a copy or pipeline failed.
///
/// The variants name the side at fault, so that callers can tell a receiver
/// that refused the stream from a sender that died, and the daemon can decide
/// whether to retry ([`PipelineError::is_transient`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The copy was cancelled through its [`super::CancelToken`]; both
    /// children were killed.
    #[error("stream cancelled")]
    Cancelled,
    /// The sender (`zfs send`) failed.
    #[error(transparent)]
    Send(ZfsError),
    /// The receiver (`zfs receive`) failed.
    #[error(transparent)]
    Recv(ZfsError),
    /// Reading the send stream failed.
    #[error("cannot read the send stream: {0}")]
    Read(io::Error),
    /// Writing the receive stream failed; `EPIPE` means the receiver stopped
    /// reading (usually because it exited: see its error).
    #[error("cannot write the receive stream: {0}")]
    Write(io::Error),
    /// Compressing or decompressing failed (corrupt or truncated zstd data).
    #[error("cannot decode or encode the stream: {0}")]
    Codec(io::Error),
    /// The copy itself failed (a system call on both descriptors, or a
    /// worker thread that could not start or panicked).
    #[error("cannot copy the stream: {0}")]
    Io(io::Error),
}

impl PipelineError {
    /// Whether running the same transfer again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Cancelled | Self::Codec(_) => false,
            Self::Send(e) | Self::Recv(e) => e.is_transient(),
            Self::Read(_) | Self::Write(_) | Self::Io(_) => true,
        }
    }

    /// Whether this is a broken pipe: the other side went away, which is
    /// never the root cause when that side has an error of its own.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Read(e) | Self::Write(e) | Self::Io(e) | Self::Codec(e) => {
                e.kind() == io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}
