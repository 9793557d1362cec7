//! Test doubles of [`SendStream`] and [`RecvSink`] (feature `test-util`):
//! any local process as a sender or receiver (`head`, `cat`, `sh -c ...`),
//! for the real-pipe paths, and in-memory ones for the user-space path.

use std::ffi::OsString;
use std::io::{self, Cursor, Read, Write};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, PoisonError};

use crate::zfs::cli::{CliRecvSink, CliSendStream};
use crate::zfs::runner::{Child, ChildIo, LocalRunner, Runner, display_argv};
use crate::zfs::{RecvSink, SendStream, ZfsError, ZfsResult};

fn start(argv: &[&str], io: ChildIo) -> io::Result<(Child, String)> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let op = display_argv(&argv);
    let child = LocalRunner::new().spawn(&argv, io)?;
    Ok((child, op))
}

/// A local process whose stdout is the send stream (a pipe): the same type
/// as a real `zfs send`, with the same error handling.
pub type ProcessSend = CliSendStream;

/// A local process whose stdin is the receive sink (a pipe): the same type
/// as a real `zfs receive`.
pub type ProcessRecv = CliRecvSink;

impl CliSendStream {
    /// Starts `argv` with its stdout piped to us.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn(argv: &[&str]) -> io::Result<Self> {
        let (child, op) = start(argv, ChildIo::Stdout)?;
        Ok(Self::from_child(child, op))
    }
}

impl CliRecvSink {
    /// Starts `argv` with its stdin piped from us.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn(argv: &[&str]) -> io::Result<Self> {
        let (child, op) = start(argv, ChildIo::Stdin)?;
        Ok(Self::from_child(child, op))
    }
}

/// An in-memory send stream (no descriptor: the copy takes the user-space
/// path), optionally failing when finished.
#[derive(Debug)]
pub struct MemSend {
    data: Cursor<Vec<u8>>,
    fail: Option<ZfsError>,
}

impl MemSend {
    /// A sender that yields `data` and succeeds.
    #[must_use]
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data: Cursor::new(data),
            fail: None,
        }
    }

    /// A sender that yields `data`, then reports `error` from `finish`.
    #[must_use]
    pub fn failing(data: Vec<u8>, error: ZfsError) -> Self {
        Self {
            data: Cursor::new(data),
            fail: Some(error),
        }
    }
}

impl Read for MemSend {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl SendStream for MemSend {
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn finish(self) -> ZfsResult<()> {
        self.fail.map_or(Ok(()), Err)
    }

    fn abort(self) {}
}

/// An in-memory receive sink; what it received stays readable through
/// [`MemRecv::received`] after the sink is consumed.
#[derive(Debug, Default)]
pub struct MemRecv {
    data: Arc<Mutex<Vec<u8>>>,
    limit: Option<(usize, ZfsError)>,
}

impl MemRecv {
    /// A sink that takes everything and succeeds.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink that takes `n` bytes, then refuses more (`EPIPE`, as a
    /// receiver that exited) and reports `error` from `finish`.
    #[must_use]
    pub fn failing_after(n: usize, error: ZfsError) -> Self {
        Self {
            data: Arc::default(),
            limit: Some((n, error)),
        }
    }

    /// A handle on the bytes received so far.
    #[must_use]
    pub fn received(&self) -> Arc<Mutex<Vec<u8>>> {
        Arc::clone(&self.data)
    }
}

impl Write for MemRecv {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self
            .limit
            .as_ref()
            .map_or(usize::MAX, |(n, _)| n.saturating_sub(data.len()));
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        let n = room.min(buf.len());
        data.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RecvSink for MemRecv {
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn finish(self) -> ZfsResult<()> {
        self.limit.map_or(Ok(()), |(_, e)| Err(e))
    }

    fn abort(self) {}
}
