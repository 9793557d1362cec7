//! Network transports for the agent protocol.
//!
//! - [`tls`]: TLS-PSK over TCP, compatible with stunnel's `PSKsecrets`
//!   files and with a real stunnel at either end.
//! - [`NetStream`]: one connection, TLS-PSK or plain TCP to a local
//!   stunnel, as one `Read + Write` object.
//! - [`NetTarget`]: `tls://HOST:PORT/pool/ds` and
//!   `stunnel://HOST:PORT/pool/ds` endpoints.
//! - [`Peers`]: which identity may receive into or send from which roots.
//! - [`serve`]: the accept loop of `zfsrepl serve`, refusing (and logging
//!   with the identity) unknown identities, wrong keys and identities with
//!   no peer entry.
//! - [`RetentionFloor`]: the server's ZFS with floors below every peer
//!   request (never the newest snapshot of a dataset, never a held one,
//!   never a dataset).
mod floor;
mod listener;
mod net;
mod peers;
mod peeruid;
mod target;
pub mod tls;

pub use floor::RetentionFloor;
pub use listener::{Listen, OnRefused, ServeOptions, check_plain_addr, serve, serve_counting};
pub use net::NetStream;
pub use peers::{PeerConfig, Peers, PeersError};
pub use peeruid::peer_uid;
pub use target::{LinkKind, NetTarget, TargetError};
