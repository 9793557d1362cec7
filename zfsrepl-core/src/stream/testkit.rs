//! Test doubles of [`SendStream`] and [`RecvSink`] (feature `test-util`):
//! any local process as a sender or receiver (`head`, `cat`, `sh -c ...`),
//! for the real-pipe paths, and in-memory ones for the user-space path.

use std::ffi::OsString;
use std::io::{self, Cursor, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};

use crate::zfs::runner::{Child, ChildIo, LocalRunner, Runner, display_argv};
use crate::zfs::{RecvSink, SendStream, ZfsError, ZfsErrorKind, ZfsResult};

fn start(argv: &[&str], io: ChildIo) -> io::Result<(Child, String)> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let op = display_argv(&argv);
    let child = LocalRunner::new().spawn(&argv, io)?;
    Ok((child, op))
}

fn finish(child: Child, op: String) -> ZfsResult<()> {
    let argv = child
        .argv()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let fin = child
        .wait()
        .map_err(|e| ZfsError::new(op.clone(), ZfsErrorKind::Other, e.to_string()))?;
    if fin.status.success() {
        return Ok(());
    }
    let status = fin.status.code();
    Err(ZfsError {
        op,
        host: None,
        argv,
        status,
        stderr: fin.stderr,
        kind: if status.is_none() {
            ZfsErrorKind::Killed
        } else {
            ZfsErrorKind::Other
        },
    })
}

/// A local process whose stdout is the send stream (a pipe).
#[derive(Debug)]
pub struct ProcessSend {
    child: Child,
    op: String,
}

impl ProcessSend {
    /// Starts `argv` with its stdout piped to us.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn(argv: &[&str]) -> io::Result<Self> {
        let (child, op) = start(argv, ChildIo::Stdout)?;
        Ok(Self { child, op })
    }
}

impl Read for ProcessSend {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.child.stdout.as_mut() {
            Some(s) => s.read(buf),
            None => Ok(0),
        }
    }
}

impl SendStream for ProcessSend {
    fn raw_fd(&self) -> Option<RawFd> {
        self.child.stdout.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn finish(self) -> ZfsResult<()> {
        finish(self.child, self.op)
    }

    fn abort(self) {
        self.child.kill();
    }
}

/// A local process whose stdin is the receive sink (a pipe).
#[derive(Debug)]
pub struct ProcessRecv {
    child: Child,
    op: String,
}

impl ProcessRecv {
    /// Starts `argv` with its stdin piped from us.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn(argv: &[&str]) -> io::Result<Self> {
        let (child, op) = start(argv, ChildIo::Stdin)?;
        Ok(Self { child, op })
    }
}

impl Write for ProcessRecv {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.child.stdin.as_mut() {
            Some(s) => s.write(buf),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.child.stdin.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl RecvSink for ProcessRecv {
    fn raw_fd(&self) -> Option<RawFd> {
        self.child.stdin.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn finish(self) -> ZfsResult<()> {
        finish(self.child, self.op)
    }

    fn abort(self) {
        self.child.kill();
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
