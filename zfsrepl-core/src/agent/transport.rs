//! Connections for the agent protocol over stdio: [`StdioConn`] for the
//! server (`zfsrepl serve --stdio`, an ssh forced command), [`SshConn`] for
//! the client (an `ssh` child whose stdin and stdout are the connection).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::StderrTail;
use crate::zfs::runner::STDERR_TAIL_BYTES;
use crate::zfs::{SshRunner, SshTarget};

/// This process's stdin and stdout as one connection, unbuffered (on
/// duplicates of descriptors 0 and 1, so nothing else in the process writes
/// into the stream through `std::io::stdout`'s buffer).
#[derive(Debug)]
pub struct StdioConn {
    stdin: File,
    stdout: File,
}

impl StdioConn {
    /// Duplicates descriptors 0 and 1.
    ///
    /// # Errors
    /// When a descriptor cannot be duplicated.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            stdin: File::from(io::stdin().as_fd().try_clone_to_owned()?),
            stdout: File::from(io::stdout().as_fd().try_clone_to_owned()?),
        })
    }
}

impl Read for StdioConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stdin.read(buf)
    }
}

impl Write for StdioConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdout.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()
    }
}

/// An `ssh` child running the remote agent: its stdin and stdout are the
/// connection, its stderr is kept in a bounded tail for messages.
///
/// The remote command is built by [`SshRunner::wrap`]: each argument
/// quoted once, no local shell. With a forced command in the remote
/// `authorized_keys` (`command="zfsrepl serve --stdio --config ..."`), sshd
/// runs that instead and the argv sent is ignored.
pub struct SshConn {
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    tail: StderrTail,
    // Dropped last: closes the ssh master connection.
    _runner: SshRunner,
}

impl std::fmt::Debug for SshConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConn")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl SshConn {
    /// Starts `ssh TARGET 'remote_argv...'`.
    ///
    /// # Errors
    /// When ssh cannot be started.
    pub fn start(target: SshTarget, remote_argv: &[OsString]) -> io::Result<Self> {
        let runner = SshRunner::new(target)?;
        let full = runner.wrap(remote_argv);
        let (prog, args) = full
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
        tracing::debug!(argv = %crate::zfs::runner::display_argv(&full), "agent over ssh");
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let tail = StderrTail::default();
        if let Some(mut err) = child.stderr.take() {
            let t = tail.clone();
            // Not joined: a backgrounded ssh master may keep the pipe open.
            let _ = std::thread::Builder::new()
                .name("zfsrepl-ssh-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = err.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut v =
                            t.0.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        v.extend_from_slice(&buf[..n]);
                        if v.len() > STDERR_TAIL_BYTES {
                            let cut = v.len() - STDERR_TAIL_BYTES;
                            v.drain(..cut);
                        }
                    }
                });
        }
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("ssh started without pipes"));
        };
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout,
            tail,
            _runner: runner,
        })
    }

    /// ssh's stderr so far.
    #[must_use]
    pub fn stderr(&self) -> StderrTail {
        self.tail.clone()
    }
}

impl Read for SshConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Write for SshConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stdin {
            Some(w) => w.write(buf),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stdin {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for SshConn {
    fn drop(&mut self) {
        // EOF between requests ends the agent's session; give it a moment
        // to exit, then make sure.
        drop(self.stdin.take());
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
