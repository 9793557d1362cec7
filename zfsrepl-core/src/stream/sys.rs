//! The only unsafe code of the data path: thin wrappers of `splice(2)`,
//! `poll(2)`, `fstat(2)` and the pipe-size `fcntl(2)`s, each returning
//! `io::Result`.
//!
//! The descriptors are raw because [`crate::zfs::SendStream::raw_fd`] and
//! [`crate::zfs::RecvSink::raw_fd`] hand out raw ones. None of these calls
//! dereferences anything the descriptor points to in our address space, so a
//! stale descriptor yields `EBADF` (or acts on whatever file now has that
//! number), never memory unsafety; callers keep the streams borrowed while
//! they use the descriptors, which keeps them open.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;
use std::time::Duration;

pub(crate) use libc::{POLLIN, POLLNVAL, POLLOUT, pollfd};
pub(crate) use libc::{SPLICE_F_MORE, SPLICE_F_MOVE, SPLICE_F_NONBLOCK};

/// Moves up to `len` bytes from `fd_in` to `fd_out` inside the kernel; one
/// of them must be a pipe. Returns 0 at end of input.
pub(crate) fn splice(
    fd_in: RawFd,
    fd_out: RawFd,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    // SAFETY: both offsets are null (use and advance the file positions), so
    // the kernel reads and writes no memory of ours; `len` only bounds what
    // moves between the two kernel objects.
    let n = unsafe { libc::splice(fd_in, ptr::null_mut(), fd_out, ptr::null_mut(), len, flags) };
    // A negative ssize_t fails the conversion: that is the error case.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The capacity of the pipe `fd` in bytes (`F_GETPIPE_SZ`).
pub(crate) fn pipe_size(fd: RawFd) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no argument and touches no user memory.
    let n = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Sets the capacity of the pipe `fd` (`F_SETPIPE_SZ`); the kernel rounds
/// up to a power-of-two number of pages and returns the size it set.
pub(crate) fn set_pipe_size(fd: RawFd, size: usize) -> io::Result<usize> {
    let arg = libc::c_int::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pipe size too large"))?;
    // SAFETY: F_SETPIPE_SZ takes an int by value and touches no user memory.
    let n = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, arg) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether `fd` is a pipe (or FIFO).
pub(crate) fn is_pipe(fd: RawFd) -> io::Result<bool> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of one `struct stat`, which is all
    // fstat writes; it is read only after fstat reported success.
    let rc = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// Waits until one of `fds` is ready or `timeout` passes; returns how many
/// have non-zero `revents`. `EINTR` counts as a timeout (0), as callers loop.
pub(crate) fn poll(fds: &mut [pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"))?;
    // SAFETY: the pointer and length come from one live, exclusively
    // borrowed slice of `pollfd`, which is exactly what poll reads and writes.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) };
    match usize::try_from(n) {
        Ok(n) => Ok(n),
        Err(_) => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            }
        }
    }
}
