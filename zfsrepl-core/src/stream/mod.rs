//! The data path: moving a `zfs send` stream into a `zfs receive`.
//!
//! - [`copy`] moves bytes from a [`SendStream`](crate::zfs::SendStream) into
//!   a [`RecvSink`](crate::zfs::RecvSink) with `splice(2)` (pipe to pipe,
//!   never through user space) where the descriptors allow it and a buffered
//!   loop otherwise, counting bytes, reporting [`Progress`], limiting the rate
//!   ([`CopyOptions::bwlimit`]) and stopping on a [`CancelToken`].
//! - [`Pipeline::run`] owns both children: it enlarges their pipes
//!   ([`enlarge_pipe`]), copies, ends both and reports both sides in a
//!   [`PipelineOutcome`] whose [`cause`](PipelineOutcome::cause) is the real
//!   failure, not the broken pipe it caused on the other side.
//! - [`ZstdEncoder`] and [`ZstdDecoder`] compress in-process for network
//!   legs, on a bounded pipeline of threads ([`compress_copy`],
//!   [`decompress_copy`]).
//!
//! One local replication step, `zfs send` spliced into `zfs receive`:
//!
//! ```no_run
//! use zfsrepl_core::stream::{CancelToken, CopyOptions, Pipeline};
//! use zfsrepl_core::zfs::{LocalRunner, RecvSpec, SendFlags, SendSource, SendSpec, ZfsStream};
//! use zfsrepl_core::{DatasetName, ZfsCli};
//!
//! let zfs = ZfsCli::probe(LocalRunner::new(), "zfs")?;
//! let snapshot = DatasetName::parse("tank/data")?.snapshot("zfsrepl_1")?;
//! let send = zfs.send(&SendSpec {
//!     source: SendSource::Full { snapshot },
//!     flags: SendFlags::default(),
//! })?;
//! let recv = zfs.receive(&RecvSpec {
//!     target: Some(DatasetName::parse("backup/data")?),
//!     unmounted: true,
//!     ..RecvSpec::default()
//! })?;
//! let progress = |bytes: u64, elapsed: std::time::Duration| {
//!     eprintln!("{bytes} bytes in {elapsed:?}");
//! };
//! let cancel = CancelToken::new(); // clone it to another thread to stop the copy
//! let outcome = Pipeline::run(send, recv, &CopyOptions::default(), &progress, &cancel);
//! // The cause names the side that failed first; `outcome.secondary` has the rest.
//! let stats = outcome.into_result()?;
//! println!("{} bytes by {:?}", stats.bytes, stats.method);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cancel;
mod compress;
mod copy;
mod error;
mod pipe;
mod pipeline;
mod sys;
#[cfg(any(test, feature = "test-util"))]
pub mod testkit;

pub use cancel::CancelToken;
pub use compress::{
    BufferOptions, CodecStats, ZstdDecoder, ZstdEncoder, compress_copy, decompress_copy,
};
pub use copy::{CopyMethod, CopyOptions, CopyStats, NoProgress, Progress, copy};
pub use error::PipelineError;
pub use pipe::{
    DEFAULT_PIPE_SIZE, PIPE_MAX_SIZE_PATH, enlarge_pipe, is_pipe, pipe_max_size, pipe_size,
};
pub use pipeline::{Pipeline, PipelineOutcome, SideOutcome};

#[cfg(test)]
mod tests;
