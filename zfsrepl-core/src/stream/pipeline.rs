//! [`Pipeline`]: owns a sender and a receiver, copies between them, ends
//! both, and explains a failure by its cause rather than by its symptoms.

use std::fmt;

use serde::Serialize;

use super::cancel::CancelToken;
use super::copy::{CopyOptions, CopyStats, Progress, copy_counted};
use super::error::PipelineError;
use super::pipe::enlarge_pipe;
use crate::zfs::{RecvSink, SendStream, ZfsError};

/// How one side (sender or receiver) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "error")]
pub enum SideOutcome {
    /// It exited successfully.
    Completed,
    /// It exited with an error.
    Failed(ZfsError),
    /// We stopped it (killed and reaped) because of a cancel or of a failure
    /// elsewhere; it had nothing to say.
    Aborted,
}

impl SideOutcome {
    fn from_result(r: Result<(), ZfsError>) -> Self {
        match r {
            Ok(()) => Self::Completed,
            Err(e) => Self::Failed(e),
        }
    }

    /// The error, when it failed.
    #[must_use]
    pub fn error(&self) -> Option<&ZfsError> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for SideOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completed => f.write_str("completed"),
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::Aborted => f.write_str("aborted"),
        }
    }
}

/// Everything a send → receive pipeline did: the bytes moved, how each side
/// ended, and, on failure, which error is the cause.
#[derive(Debug)]
pub struct PipelineOutcome {
    /// Bytes moved and time taken (also when the pipeline failed).
    pub stats: CopyStats,
    /// How the sender ended.
    pub send: SideOutcome,
    /// How the receiver ended.
    pub recv: SideOutcome,
    /// The error that explains the failure; `None` on success.
    pub cause: Option<PipelineError>,
    /// Errors that followed from the cause, for the record (the broken pipe
    /// we hit writing to a receiver that had died, a receiver's "truncated
    /// stream" after its sender failed, ...).
    pub secondary: Vec<PipelineError>,
}

impl PipelineOutcome {
    /// Whether both sides completed and every byte was delivered.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.cause.is_none()
    }

    /// The stats on success, the cause otherwise.
    ///
    /// # Errors
    /// The cause of the failure (see [`PipelineOutcome::cause`]).
    pub fn into_result(self) -> Result<CopyStats, PipelineError> {
        match self.cause {
            None => Ok(self.stats),
            Some(e) => Err(e),
        }
    }
}

/// Runs a send → receive pipeline: see [`Pipeline::run`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Pipeline;

impl Pipeline {
    /// Enlarges both pipes to [`CopyOptions::pipe_size`], [`copy`](super::copy())s the
    /// sender's stream into the receiver, then ends both sides and reports
    /// how each ended.
    ///
    /// Blame goes to the side that failed first, so that a symptom never
    /// hides its cause:
    /// - the receiver stopped reading (we hit `EPIPE`): its own error is the
    ///   cause, the broken pipe is secondary, and the sender, stuck writing
    ///   into a pipe no one reads, is aborted;
    /// - the stream ended: the sender is waited for first (it has closed its
    ///   output), then the receiver; a sender's error is the cause and a
    ///   receiver's complaint about the stream it cut short is secondary;
    /// - a read error: the sender's error, if it has one, is the cause; the
    ///   receiver is aborted;
    /// - cancel or any other copy failure: both sides are aborted (killed
    ///   and reaped), and the cancel or failure is the cause.
    ///
    /// Cancelling never leaves a child behind.
    pub fn run<S: SendStream, R: RecvSink>(
        mut send: S,
        mut recv: R,
        opts: &CopyOptions,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> PipelineOutcome {
        for fd in [send.raw_fd(), recv.raw_fd()].into_iter().flatten() {
            // Not a pipe (socket, in-memory) or not allowed: run as it is.
            if let Err(e) = enlarge_pipe(fd, opts.pipe_size) {
                tracing::debug!(error = %e, "pipe size left as it was");
            }
        }
        let (stats, copied) = copy_counted(&mut send, &mut recv, opts, progress, cancel);
        let mut secondary = Vec::new();
        let (send, recv, cause) = match copied {
            Ok(()) => {
                let send = SideOutcome::from_result(send.finish());
                let recv = SideOutcome::from_result(recv.finish());
                let cause = match (&send, &recv) {
                    (SideOutcome::Failed(s), r) => {
                        if let Some(r) = r.error() {
                            secondary.push(PipelineError::Recv(r.clone()));
                        }
                        Some(PipelineError::Send(s.clone()))
                    }
                    (_, SideOutcome::Failed(r)) => Some(PipelineError::Recv(r.clone())),
                    _ => None,
                };
                (send, recv, cause)
            }
            Err(PipelineError::Write(e)) => {
                // The receiver has closed its input: it has exited or is
                // exiting, and its exit status and stderr say why.
                let recv = SideOutcome::from_result(recv.finish());
                send.abort();
                let cause = match recv.error() {
                    Some(r) => {
                        secondary.push(PipelineError::Write(e));
                        PipelineError::Recv(r.clone())
                    }
                    None => PipelineError::Write(e),
                };
                (SideOutcome::Aborted, recv, Some(cause))
            }
            Err(PipelineError::Read(e)) => {
                recv.abort();
                let send = SideOutcome::from_result(send.finish());
                let cause = match send.error() {
                    Some(s) => {
                        secondary.push(PipelineError::Read(e));
                        PipelineError::Send(s.clone())
                    }
                    None => PipelineError::Read(e),
                };
                (send, SideOutcome::Aborted, Some(cause))
            }
            Err(e) => {
                send.abort();
                recv.abort();
                (SideOutcome::Aborted, SideOutcome::Aborted, Some(e))
            }
        };
        PipelineOutcome {
            stats,
            send,
            recv,
            cause,
            secondary,
        }
    }
}
