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
//! ```
//! use zfsrepl_core::stream::{CancelToken, CopyOptions, NoProgress, Pipeline};
//! # #[cfg(feature = "test-util")] {
//! use zfsrepl_core::stream::testkit::{MemRecv, MemSend};
//!
//! let recv = MemRecv::new();
//! let got = recv.received();
//! let outcome = Pipeline::run(
//!     MemSend::new(b"a zfs stream".to_vec()),
//!     recv,
//!     &CopyOptions::default(),
//!     &NoProgress,
//!     &CancelToken::new(),
//! );
//! assert_eq!(outcome.into_result()?.bytes, 12);
//! assert_eq!(&*got.lock().unwrap(), b"a zfs stream");
//! # }
//! # Ok::<(), zfsrepl_core::stream::PipelineError>(())
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
