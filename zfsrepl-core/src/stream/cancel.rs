//! [`CancelToken`]: a flag that stops a copy, plus a pipe that wakes a copy
//! blocked in `poll(2)` at once instead of at its next timeout.

use std::io::{PipeReader, PipeWriter, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::sys;

/// Cancels copies and pipelines from another thread.
///
/// Clones share one state: cancelling any clone cancels them all. A copy
/// notices a cancel immediately while it waits for data (the token's wake-up
/// pipe is polled alongside the stream descriptors), and otherwise within one
/// chunk or one poll period (100 ms).
#[derive(Debug, Clone)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cancelled: AtomicBool,
    /// Readable once cancelled: the reading end is polled, never read, so
    /// it stays readable for every waiter. `None` when no pipe could be
    /// made (out of descriptors); waiters then fall back to their timeouts.
    wake: Option<(PipeReader, PipeWriter)>,
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A token that is not cancelled (costs two file descriptors).
    #[must_use]
    pub fn new() -> Self {
        let wake = match std::io::pipe() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(error = %e, "no wake-up pipe for a cancel token; polling only");
                None
            }
        };
        Self {
            inner: Arc::new(Inner {
                cancelled: AtomicBool::new(false),
                wake,
            }),
        }
    }

    /// Requests cancellation. Idempotent.
    pub fn cancel(&self) {
        if !self.inner.cancelled.swap(true, Ordering::SeqCst)
            && let Some((_, w)) = &self.inner.wake
        {
            // Written exactly once, into an empty pipe: cannot block.
            let _ = (&*w).write(&[1]);
        }
    }

    /// Whether cancellation was requested.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// The descriptor that becomes readable on cancel, for `poll(2)`.
    pub(crate) fn wake_fd(&self) -> Option<RawFd> {
        self.inner.wake.as_ref().map(|(r, _)| r.as_raw_fd())
    }

    /// Sleeps for `d`, or less if cancelled meanwhile. Returns `true` when
    /// cancelled.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.is_cancelled() {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.wake_fd() {
                Some(fd) => {
                    let mut fds = [sys::pollfd {
                        fd,
                        events: sys::POLLIN,
                        revents: 0,
                    }];
                    if sys::poll(&mut fds, left).is_err() {
                        std::thread::sleep(left.min(POLL_PERIOD));
                    }
                }
                None => std::thread::sleep(left.min(POLL_PERIOD)),
            }
        }
    }
}

/// The longest a copy waits in one `poll(2)` before it looks at the cancel
/// flag and reports progress again.
pub(crate) const POLL_PERIOD: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_wakes_a_sleeper_at_once() {
        let t = CancelToken::new();
        let t2 = t.clone();
        let start = Instant::now();
        let h = std::thread::spawn(move || t2.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        t.cancel();
        t.cancel();
        assert!(h.join().unwrap());
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(t.is_cancelled());
    }

    #[test]
    fn sleep_without_cancel_sleeps() {
        let t = CancelToken::new();
        let start = Instant::now();
        assert!(!t.sleep(Duration::from_millis(30)));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
