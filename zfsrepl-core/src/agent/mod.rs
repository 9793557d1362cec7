//! The zfsrepl agent: a small framed protocol that lets a peer list, send,
//! receive and manage its own sync snapshots on a host, confined to the
//! dataset roots that host's config allows. No async runtime.
//!
//! - [`frame`]: `u32` big-endian length, a type byte (control, data, end,
//!   abort, keepalive), payload; bounded sizes, a decoder that never panics;
//! - [`proto`]: the JSON [`Request`]s and [`Response`]s of control frames;
//! - [`Server`]: answers one client on one `Read + Write` connection with a
//!   ZFS backend ([`ZfsCli`](crate::ZfsCli) or the model) under an
//!   [`AgentConfig`];
//! - [`AgentClient`]: the client, a [`ZfsRead`](crate::ZfsRead) +
//!   [`ZfsWrite`](crate::ZfsWrite) + [`ZfsStream`](crate::ZfsStream), so the
//!   replication executor pushes to or pulls from an agent unchanged;
//! - [`transport`]: stdio for `zfsrepl serve --stdio` (an ssh forced
//!   command) and the `ssh` child on the client side.
//!
//! The protocol is strictly request/response and half-duplex: one object
//! that reads and writes is a connection (a TLS stream, a pipe pair, a
//! socket). The design, the frames and the confinement rules are in
//! `docs/design/agent.md`.
//!
//! ```
//! use zfsrepl_core::agent::{AgentConfig, Request, PROTOCOL_VERSION};
//!
//! let config = AgentConfig::from_toml(
//!     "identity = \"off2\"\nread-roots = [\"tank/off\"]\nwrite-roots = [\"backup/off2\"]\n",
//!     "agent.toml",
//! )?;
//! assert!(config.writable(&"backup/off2/images".parse()?));
//! assert!(!config.writable(&"backup/other".parse()?));
//! // A traversal does not even parse as a request.
//! let bad = r#"{"op":"receive-abort","target":"backup/off2/../x"}"#;
//! assert!(serde_json::from_str::<Request>(bad).is_err());
//! # let _ = PROTOCOL_VERSION;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
pub mod config;
pub mod frame;
pub mod proto;
pub mod server;
pub mod transport;

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used)]
mod tests;

pub use client::{AgentClient, AgentRecvSink, AgentSendStream, Conn, StderrTail};
pub use config::{AgentConfig, AgentConfigError};
pub use frame::{
    DataFrames, Frame, FrameError, FrameKind, MAX_CONTROL, MAX_DATA, decode_all, read_frame,
    write_frame,
};
pub use proto::{Codec, JobId, PROTOCOL_VERSION, Request, Response, WireError};
pub use server::{SETTABLE_PROPS, Server, SessionStats};
pub use transport::{SshConn, StdioConn};
