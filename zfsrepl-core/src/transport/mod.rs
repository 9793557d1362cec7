//! Network transports for the agent protocol.
//!
//! - [`tls`]: TLS-PSK over TCP, compatible with stunnel's `PSKsecrets`
//!   files and with a real stunnel at either end.
pub mod tls;
