//! Pipe sizing: bigger pipes mean fewer context switches between `zfs send`,
//! us and `zfs recv`, and let a splice move up to a whole pipe at once.

use std::io;
use std::os::fd::RawFd;

use super::sys;

/// Where Linux publishes the largest pipe an unprivileged process may ask for.
pub const PIPE_MAX_SIZE_PATH: &str = "/proc/sys/fs/pipe-max-size";

/// The size [`crate::stream::Pipeline`] asks for by default: 1 MiB (also
/// Linux's default `pipe-max-size`).
pub const DEFAULT_PIPE_SIZE: usize = 1 << 20;

/// The largest pipe an unprivileged process may create
/// (`/proc/sys/fs/pipe-max-size`).
///
/// # Errors
/// When the file cannot be read or does not hold a number (not Linux, or
/// `/proc` not mounted).
pub fn pipe_max_size() -> io::Result<usize> {
    let text = std::fs::read_to_string(PIPE_MAX_SIZE_PATH)?;
    text.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{PIPE_MAX_SIZE_PATH}: {text:?}: {e}"),
        )
    })
}

/// Whether `fd` is a pipe or FIFO (the ends of `zfs send` and `zfs recv`
/// children are).
///
/// # Errors
/// When `fd` is not an open descriptor.
pub fn is_pipe(fd: RawFd) -> io::Result<bool> {
    sys::is_pipe(fd)
}

/// The current capacity of the pipe `fd` in bytes.
///
/// # Errors
/// When `fd` is not a pipe (`EBADF`).
pub fn pipe_size(fd: RawFd) -> io::Result<usize> {
    sys::pipe_size(fd)
}

/// Grows the pipe `fd` to at least `want` bytes where allowed, and returns
/// the capacity it ends up with (which may be smaller than `want`, and is
/// never made smaller than it was).
///
/// The request is capped at [`pipe_max_size`], which unprivileged processes
/// may not exceed. Even below it the kernel refuses (`EPERM`) once the user's
/// pipes together pass `pipe-user-pages-soft`/`-hard`; then smaller sizes are
/// tried, halving down to the current one, and the pipe is left as it was if
/// none is allowed: a small pipe is slower, not wrong.
///
/// # Errors
/// When `fd` is not a pipe, or `fcntl` fails other than with `EPERM`.
pub fn enlarge_pipe(fd: RawFd, want: usize) -> io::Result<usize> {
    let current = sys::pipe_size(fd)?;
    // Without /proc, assume Linux's default limit rather than failing.
    let max = pipe_max_size().unwrap_or(DEFAULT_PIPE_SIZE);
    let mut target = want.min(max);
    while target > current {
        match sys::set_pipe_size(fd, target) {
            Ok(size) => {
                tracing::debug!(bytes = size, "pipe enlarged");
                return Ok(size);
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => target /= 2,
            Err(e) => return Err(e),
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn max_size_is_readable_here() {
        let max = pipe_max_size().unwrap();
        assert!(max >= 4096, "{max}");
    }

    #[test]
    fn enlarge_grows_caps_and_never_shrinks() {
        let (r, _w) = std::io::pipe().unwrap();
        let fd = r.as_raw_fd();
        assert!(is_pipe(fd).unwrap());
        let before = pipe_size(fd).unwrap();
        let max = pipe_max_size().unwrap();
        let got = enlarge_pipe(fd, 1 << 20).unwrap();
        assert!(got >= before.min(1 << 20));
        assert!(got <= max.max(before), "{got} > {max}");
        assert_eq!(pipe_size(fd).unwrap(), got);
        // Asking for less than it has leaves it alone.
        assert_eq!(enlarge_pipe(fd, 4096).unwrap(), got);
        // Asking for far more than the limit is capped, not an error.
        let huge = enlarge_pipe(fd, 1 << 40).unwrap();
        assert!(huge <= max.max(got));
    }

    #[test]
    fn not_a_pipe() {
        let f = tempfile::tempfile().unwrap();
        assert!(!is_pipe(f.as_raw_fd()).unwrap());
        assert!(enlarge_pipe(f.as_raw_fd(), 1 << 20).is_err());
    }
}
