//! [`copy`]: moves a send stream into a receive sink, with `splice(2)` when
//! the kernel can do it (one end is a pipe) and a buffered loop otherwise,
//! counting bytes, reporting progress, limiting the rate and honouring
//! cancellation.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cancel::{CancelToken, POLL_PERIOD};
use super::error::PipelineError;
use super::pipe::{DEFAULT_PIPE_SIZE, is_pipe};
use super::sys;
use crate::zfs::{RecvSink, SendStream};

/// How a copy moves data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOptions {
    /// Bandwidth limit in bytes per second (`None` or `Some(0)`: unlimited).
    /// Exact on average over a second; bursts after a stall are limited to
    /// 100 ms worth of data.
    pub bwlimit: Option<u64>,
    /// The most bytes moved per system call (splice) and the size of the
    /// buffer of the user-space loop. Default 1 MiB.
    pub chunk_size: usize,
    /// The capacity [`super::Pipeline`] asks for on both pipes (capped at
    /// `/proc/sys/fs/pipe-max-size`). Default 1 MiB.
    pub pipe_size: usize,
    /// How often, at most, [`Progress::update`] is called. Default 100 ms.
    pub progress_interval: Duration,
    /// Use `splice(2)` where possible (default). `false` forces the copy
    /// through a user-space buffer, for comparisons and for debugging.
    pub splice: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            bwlimit: None,
            chunk_size: 1 << 20,
            pipe_size: DEFAULT_PIPE_SIZE,
            progress_interval: POLL_PERIOD,
            splice: true,
        }
    }
}

/// The path the bytes took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMethod {
    /// `splice(2)` between the two descriptors: no copy through user space.
    Splice,
    /// `read` into a buffer and `write` from it.
    Buffered,
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStats {
    /// Bytes moved from the sender to the receiver.
    pub bytes: u64,
    /// Wall time of the copy.
    pub elapsed: Duration,
    /// The path the bytes took.
    pub method: CopyMethod,
}

impl CopyStats {
    /// Average throughput in bytes per second (0 for an instant copy).
    #[must_use]
    pub fn bytes_per_sec(&self) -> u64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            // `as` saturates; the precision lost is irrelevant for a rate.
            (self.bytes as f64 / secs) as u64
        } else {
            0
        }
    }
}

/// Receives progress reports of a running copy.
pub trait Progress {
    /// Called with the bytes moved so far and the time since the copy began;
    /// at most once per [`CopyOptions::progress_interval`] while data flows
    /// or the copy waits, and once more at the end.
    fn update(&self, bytes: u64, elapsed: Duration);
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _bytes: u64, _elapsed: Duration) {}
}

impl<F: Fn(u64, Duration)> Progress for F {
    fn update(&self, bytes: u64, elapsed: Duration) {
        self(bytes, elapsed);
    }
}

/// Most credit a rate limit keeps after a stall: without a cap, a source
/// that paused for a minute could then burst at full speed for a minute.
const MAX_CREDIT: Duration = Duration::from_millis(100);

/// Paces a byte stream at `rate` bytes per second: after each chunk the copy
/// sleeps until the bytes so far are "paid for".
#[derive(Debug)]
struct Pacer {
    rate: u64,
    paid_until: Instant,
}

impl Pacer {
    /// Chunks of 1/16 s of data keep the flow smooth (and a cancel prompt)
    /// without making the system calls tiny.
    fn chunk(&self, max: usize) -> usize {
        let c = usize::try_from(self.rate / 16).unwrap_or(usize::MAX);
        c.max(512).min(max).max(1)
    }

    /// Accounts for `n` bytes just moved; returns how long to sleep.
    fn pay(&mut self, n: usize, now: Instant) -> Duration {
        if let Some(floor) = now.checked_sub(MAX_CREDIT) {
            self.paid_until = self.paid_until.max(floor);
        }
        let cost = Duration::from_secs_f64(n as f64 / self.rate as f64);
        self.paid_until += cost;
        self.paid_until.saturating_duration_since(now)
    }
}

/// Counts bytes, reports progress and applies the rate limit.
struct Meter<'a> {
    start: Instant,
    last_report: Instant,
    interval: Duration,
    bytes: u64,
    progress: &'a dyn Progress,
    pacer: Option<Pacer>,
}

impl<'a> Meter<'a> {
    fn new(opts: &CopyOptions, progress: &'a dyn Progress) -> Self {
        let start = Instant::now();
        Self {
            start,
            last_report: start,
            interval: opts.progress_interval,
            bytes: 0,
            progress,
            pacer: opts.bwlimit.filter(|&r| r > 0).map(|rate| Pacer {
                rate,
                paid_until: start,
            }),
        }
    }

    fn chunk(&self, max: usize) -> usize {
        self.pacer.as_ref().map_or(max, |p| p.chunk(max)).max(1)
    }

    fn moved(&mut self, n: usize, cancel: &CancelToken) -> Result<(), PipelineError> {
        self.bytes += n as u64;
        if let Some(p) = &mut self.pacer {
            let nap = p.pay(n, Instant::now());
            if !nap.is_zero() && cancel.sleep(nap) {
                return Err(PipelineError::Cancelled);
            }
        }
        self.tick();
        Ok(())
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_report) >= self.interval {
            self.last_report = now;
            self.progress.update(self.bytes, now - self.start);
        }
    }

    fn stats(&self, method: CopyMethod) -> CopyStats {
        CopyStats {
            bytes: self.bytes,
            elapsed: self.start.elapsed(),
            method,
        }
    }
}

/// Copies everything `src` produces into `dst`, until the end of `src`.
///
/// When both ends have descriptors ([`SendStream::raw_fd`],
/// [`RecvSink::raw_fd`]) and at least one is a pipe, the kernel moves the
/// data with `splice(2)`: `zfs send`'s pipe straight into `zfs recv`'s pipe,
/// never through our memory. `splice` needs a pipe on one side because a pipe
/// is the kernel's page buffer that it hands over; between two sockets or
/// files it refuses (`EINVAL`), and so does it for some file types, in which
/// case (and for in-memory streams) the copy goes through a user-space
/// buffer instead. [`CopyStats::method`] says which path was taken.
///
/// The copy waits for data with `poll(2)` on the stream descriptors and the
/// cancel token's wake-up pipe, so a cancel stops it at once even when no
/// data flows. It never finishes or aborts the streams: that is the caller's
/// job ([`super::Pipeline::run`] does both). The process must ignore
/// `SIGPIPE` (Rust programs do), or a receiver that dies would kill it.
///
/// # Errors
/// - [`PipelineError::Cancelled`] when `cancel` fires;
/// - [`PipelineError::Read`] when reading `src` fails;
/// - [`PipelineError::Write`] when writing `dst` fails (`EPIPE`: the receiver
///   stopped reading);
/// - [`PipelineError::Io`] when splicing fails for another reason.
pub fn copy<S: SendStream, R: RecvSink>(
    src: &mut S,
    dst: &mut R,
    opts: &CopyOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CopyStats, PipelineError> {
    let (stats, result) = copy_counted(src, dst, opts, progress, cancel);
    result.map(|()| stats)
}

/// [`copy`], returning what was moved also when it fails.
pub(crate) fn copy_counted<S: SendStream, R: RecvSink>(
    src: &mut S,
    dst: &mut R,
    opts: &CopyOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> (CopyStats, Result<(), PipelineError>) {
    let mut meter = Meter::new(opts, progress);
    let chunk = opts.chunk_size.max(1);
    let src_fd = src.raw_fd();
    let dst_fd = dst.raw_fd();
    let mut method = CopyMethod::Buffered;
    let mut result = None;
    if let (true, Some(s), Some(d)) = (opts.splice, src_fd, dst_fd)
        && (is_pipe(s).unwrap_or(false) || is_pipe(d).unwrap_or(false))
    {
        method = CopyMethod::Splice;
        match splice_loop(s, d, chunk, &mut meter, cancel) {
            Ok(Spliced::Done) => result = Some(Ok(())),
            Ok(Spliced::Unsupported) => {
                tracing::debug!("splice refused these descriptors; copying through user space");
                method = CopyMethod::Buffered;
            }
            Err(e) => result = Some(Err(e)),
        }
    }
    let result = match result {
        Some(r) => r,
        None => buffered_loop(src, dst, src_fd, dst_fd, chunk, &mut meter, cancel),
    };
    let stats = meter.stats(method);
    progress.update(stats.bytes, stats.elapsed);
    let duration_ms = u64::try_from(stats.elapsed.as_millis()).unwrap_or(u64::MAX);
    match &result {
        Ok(()) => tracing::debug!(
            bytes = stats.bytes,
            duration_ms,
            bytes_per_sec = stats.bytes_per_sec(),
            method = ?stats.method,
            "stream copied"
        ),
        Err(e) => {
            tracing::debug!(bytes = stats.bytes, duration_ms, error = %e, "stream copy stopped")
        }
    }
    (stats, result)
}

/// How a splice loop ended without error.
enum Spliced {
    /// End of input.
    Done,
    /// The kernel cannot splice these descriptors; nothing was moved.
    Unsupported,
}

fn splice_loop(
    src: RawFd,
    dst: RawFd,
    chunk: usize,
    meter: &mut Meter<'_>,
    cancel: &CancelToken,
) -> Result<Spliced, PipelineError> {
    // SPLICE_F_MORE tells a socket on the output side that more follows, so
    // it may coalesce segments (as MSG_MORE does). Set it only while chunks
    // come back full, i.e. while the sender is ahead of us; on a partial chunk
    // the sender may pause, and data held back would sit unsent.
    let mut more = false;
    loop {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let len = meter.chunk(chunk);
        // NONBLOCK makes the pipe ends never block in splice: waiting happens
        // in poll, where a cancel can interrupt it. MOVE is a hint to move
        // pages instead of copying them.
        let mut flags = sys::SPLICE_F_MOVE | sys::SPLICE_F_NONBLOCK;
        if more {
            flags |= sys::SPLICE_F_MORE;
        }
        match sys::splice(src, dst, len, flags) {
            Ok(0) => return Ok(Spliced::Done),
            Ok(n) => {
                more = n == len;
                meter.moved(n, cancel)?;
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    // Either side may be the blocker: wait for input first,
                    // then for room, so that poll never spins on the side
                    // that is already ready.
                    wait(src, sys::POLLIN, meter, cancel)?;
                    wait(dst, sys::POLLOUT, meter, cancel)?;
                }
                Some(libc::EINTR) => {}
                Some(libc::EPIPE) => return Err(PipelineError::Write(e)),
                Some(libc::EINVAL) if meter.bytes == 0 => return Ok(Spliced::Unsupported),
                _ => return Err(PipelineError::Io(e)),
            },
        }
    }
}

/// Waits until `fd` has `events` (or an error or hang-up, which the next
/// system call on it will report), checking `cancel` and reporting
/// progress at least every [`POLL_PERIOD`].
fn wait(
    fd: RawFd,
    events: libc::c_short,
    meter: &mut Meter<'_>,
    cancel: &CancelToken,
) -> Result<(), PipelineError> {
    let mut fds = [
        sys::pollfd {
            fd,
            events,
            revents: 0,
        },
        sys::pollfd {
            // A negative fd is ignored by poll: no wake-up pipe, timeouts only.
            fd: cancel.wake_fd().unwrap_or(-1),
            events: sys::POLLIN,
            revents: 0,
        },
    ];
    loop {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        fds[0].revents = 0;
        fds[1].revents = 0;
        // Never a zero timeout: that would spin.
        let timeout = POLL_PERIOD
            .min(meter.interval)
            .max(Duration::from_millis(1));
        sys::poll(&mut fds, timeout).map_err(PipelineError::Io)?;
        if fds[0].revents & sys::POLLNVAL != 0 {
            return Err(PipelineError::Io(io::Error::from_raw_os_error(libc::EBADF)));
        }
        if fds[0].revents != 0 {
            return Ok(());
        }
        meter.tick();
    }
}

fn buffered_loop<S: Read, R: Write>(
    src: &mut S,
    dst: &mut R,
    src_fd: Option<RawFd>,
    dst_fd: Option<RawFd>,
    chunk: usize,
    meter: &mut Meter<'_>,
    cancel: &CancelToken,
) -> Result<(), PipelineError> {
    let mut buf = vec![0u8; chunk];
    loop {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        // Waiting in poll rather than in read keeps a stalled sender
        // cancellable.
        if let Some(fd) = src_fd {
            wait(fd, sys::POLLIN, meter, cancel)?;
        }
        let len = meter.chunk(buf.len());
        let n = match src.read(&mut buf[..len]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if src_fd.is_none() && cancel.sleep(Duration::from_millis(1)) {
                    return Err(PipelineError::Cancelled);
                }
                continue;
            }
            Err(e) => return Err(PipelineError::Read(e)),
        };
        if let Some(fd) = dst_fd {
            wait(fd, sys::POLLOUT, meter, cancel)?;
        }
        dst.write_all(&buf[..n]).map_err(PipelineError::Write)?;
        meter.moved(n, cancel)?;
    }
    dst.flush().map_err(PipelineError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_is_exact_on_average() {
        let t0 = Instant::now();
        let mut p = Pacer {
            rate: 1000,
            paid_until: t0,
        };
        assert_eq!(p.chunk(1 << 20), 512);
        // Moving 2000 bytes at once costs 2 s.
        assert_eq!(p.pay(2000, t0), Duration::from_secs(2));
        // After a long stall, only 100 ms of credit remain.
        let later = t0 + Duration::from_secs(60);
        let nap = p.pay(1000, later);
        assert_eq!(nap, Duration::from_millis(900));
    }

    #[test]
    fn pacer_chunks_are_bounded() {
        let p = Pacer {
            rate: 1 << 30,
            paid_until: Instant::now(),
        };
        assert_eq!(p.chunk(1 << 20), 1 << 20);
        assert_eq!(p.chunk(100), 100);
        let p = Pacer {
            rate: 4 << 20,
            paid_until: Instant::now(),
        };
        assert_eq!(p.chunk(1 << 20), 256 << 10);
    }
}
