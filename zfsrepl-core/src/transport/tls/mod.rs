//! TLS with pre-shared keys (TLS-PSK), compatible with stunnel's `PSKsecrets`.
//!
//! - [`PskSecrets`] reads stunnel's `IDENTITY:KEY` file and refuses one that
//!   others may read; keys are wiped from memory when dropped.
//! - [`TlsConnector::connect`] opens a client connection with one identity;
//!   [`TlsAcceptor::accept`] serves any identity of the file, taking the key
//!   by the identity the client sends, and refusing (with the identity in the
//!   error, for the log) one it does not know.
//! - [`TlsStream`] is `Read + Write` over TCP.
//!
//! Protocol: TLS 1.3 where the peer has it (external PSK through OpenSSL's
//! PSK callbacks, which bind the key to SHA-256, so the TLS 1.3 suites are
//! `TLS_AES_128_GCM_SHA256` and `TLS_CHACHA20_POLY1305_SHA256`); otherwise
//! TLS 1.2 with the PSK cipher suites, as older stunnels speak. Server
//! certificates are never used or accepted: a handshake succeeds only when
//! both sides hold the same key for the identity. The server issues no
//! session tickets, so every connection proves the key again.
//!
//! Dead peers: the TCP socket has keepalive probes and `TCP_USER_TIMEOUT`
//! ([`TlsOptions::dead_peer`]), the kernel's heartbeats, which notice a host
//! or link that vanished within that time even while no data flows; and
//! every read and write gives up after [`TlsOptions::io_timeout`] without
//! progress (a peer that is alive but stuck). Both surface as
//! [`std::io::ErrorKind::TimedOut`] errors naming the peer.
//!
//! Bandwidth limits are applied where the bytes are moved
//! ([`crate::stream::CopyOptions::bwlimit`]), whatever the transport.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use zfsrepl_core::transport::tls::{PskSecrets, TlsConnector, TlsOptions};
//!
//! let secrets = PskSecrets::load("/etc/zfsrepl/psk.txt".as_ref())?;
//! let connector = TlsConnector::new(&secrets, Some("off2-to-ovh3"), &TlsOptions::default())?;
//! let mut conn = connector.connect("ovh3.example:8999")?;
//! conn.write_all(b"hello")?;
//! println!("{} {}", conn.version(), conn.cipher());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod secrets;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions,
    SslSessionCacheMode, SslStream, SslVersion,
};
use serde::{Deserialize, Serialize};

pub use secrets::{
    LineProblem, MAX_IDENTITY_LEN, MAX_KEY_LEN, MIN_KEY_LEN, PskKey, PskSecrets, SecretsError,
};

/// TLS 1.2 PSK suites offered, best first: AES-GCM (hardware-accelerated
/// almost everywhere), then ChaCha20 with and without ephemeral ECDH. All
/// are in stunnel's default `HIGH:!aNULL:!SSLv2:!DH:!kDHEPSK` and in its
/// common `ciphers = PSK`.
pub const TLS12_PSK_CIPHERS: &str =
    "PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:ECDHE-PSK-CHACHA20-POLY1305:PSK-CHACHA20-POLY1305";

/// TLS 1.3 suites usable with a PSK bound to SHA-256 (OpenSSL's PSK
/// callbacks, which stunnel uses too).
pub const TLS13_PSK_SUITES: &str = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

/// Which TLS versions to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsVersions {
    /// TLS 1.3 when the peer has it, else TLS 1.2 (default).
    #[default]
    Auto,
    /// TLS 1.3 only.
    Tls13,
    /// TLS 1.2 only (the PSK cipher suites).
    Tls12,
}

impl TlsVersions {
    fn range(self) -> (SslVersion, SslVersion) {
        match self {
            Self::Auto => (SslVersion::TLS1_2, SslVersion::TLS1_3),
            Self::Tls13 => (SslVersion::TLS1_3, SslVersion::TLS1_3),
            Self::Tls12 => (SslVersion::TLS1_2, SslVersion::TLS1_2),
        }
    }
}

/// Protocol choices and timeouts of TLS-PSK connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsOptions {
    /// TLS versions (default: 1.3 with a fallback to 1.2).
    pub versions: TlsVersions,
    /// OpenSSL cipher list for TLS 1.2 (default [`TLS12_PSK_CIPHERS`]).
    pub tls12_ciphers: String,
    /// OpenSSL suites for TLS 1.3 (default [`TLS13_PSK_SUITES`]).
    pub tls13_suites: String,
    /// How long a TCP connect may take. Default 15 s.
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// How long the handshake may take. Default 15 s.
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// A read or write that makes no progress for this long fails with
    /// `TimedOut` (a peer alive but stuck). `None` (0 in a file): wait
    /// forever. Default 10 min, above the longest a `zfs receive` may pause
    /// between records.
    #[serde(with = "opt_secs")]
    pub io_timeout: Option<Duration>,
    /// Kernel heartbeats: TCP keepalive probes start after a third of this
    /// idle time, and a peer that acknowledges neither them nor sent data
    /// for this long is dead (`TCP_USER_TIMEOUT`). `None` (0 in a file):
    /// off. Default 60 s.
    #[serde(with = "opt_secs")]
    pub dead_peer: Option<Duration>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            versions: TlsVersions::Auto,
            tls12_ciphers: TLS12_PSK_CIPHERS.to_owned(),
            tls13_suites: TLS13_PSK_SUITES.to_owned(),
            connect_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(15),
            io_timeout: Some(Duration::from_secs(600)),
            dead_peer: Some(Duration::from_secs(60)),
        }
    }
}

impl TlsOptions {
    /// These options with other versions.
    #[must_use]
    pub fn with_versions(mut self, v: TlsVersions) -> Self {
        self.versions = v;
        self
    }

    /// These options with another I/O timeout.
    #[must_use]
    pub fn with_io_timeout(mut self, t: Option<Duration>) -> Self {
        self.io_timeout = t;
        self
    }

    /// These options with another dead-peer time.
    #[must_use]
    pub fn with_dead_peer(mut self, t: Option<Duration>) -> Self {
        self.dead_peer = t;
        self
    }

    /// These options with other connect and handshake timeouts.
    #[must_use]
    pub fn with_setup_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self.handshake_timeout = t;
        self
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    #[allow(clippy::ref_option)] // serde's `with` signature
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        // 0 is "off": TOML has no null.
        s.serialize_f64(d.map_or(0.0, |d| d.as_secs_f64()))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v = f64::deserialize(d)?;
        let d = Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)?;
        Ok((!d.is_zero()).then_some(d))
    }
}

/// Why a TLS-PSK connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The secrets file was refused.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// OpenSSL refused our settings (a cipher list it does not know, ...).
    #[error("TLS setup: {0}")]
    Setup(String),
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port` as given.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The handshake did not finish in [`TlsOptions::handshake_timeout`].
    #[error("TLS handshake with {peer} timed out")]
    Timeout {
        /// The peer's address.
        peer: String,
    },
    /// (Server) the client's identity is not in the secrets file.
    #[error("TLS-PSK client {peer} refused: unknown identity {identity:?}")]
    UnknownIdentity {
        /// The client's address.
        peer: String,
        /// The identity it sent (lossy UTF-8).
        identity: String,
    },
    /// (Server) the client sent a known identity but the handshake failed,
    /// almost always because its key differs from ours.
    #[error(
        "TLS-PSK client {peer} refused: handshake for identity {identity:?} failed (wrong key?): {detail}"
    )]
    KeyMismatch {
        /// The client's address.
        peer: String,
        /// The identity it sent.
        identity: String,
        /// OpenSSL's reason.
        detail: String,
    },
    /// (Client) the server refused our identity or key (it answered with
    /// an alert: unknown identity, decrypt error, handshake failure).
    #[error(
        "TLS-PSK server {peer} refused identity {identity:?}: wrong key, or an identity it does not know ({detail})"
    )]
    Refused {
        /// The server's address.
        peer: String,
        /// Our identity.
        identity: String,
        /// OpenSSL's reason.
        detail: String,
    },
    /// Any other handshake failure (the peer closed, spoke something other
    /// than TLS-PSK, ...).
    #[error("TLS handshake with {peer} failed: {detail}")]
    Handshake {
        /// The peer's address.
        peer: String,
        /// OpenSSL's or the socket's reason.
        detail: String,
    },
}

impl TlsError {
    /// Whether the peer (or we) refused the identity or the key: retrying
    /// will not help until the secrets are fixed.
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Self::UnknownIdentity { .. } | Self::KeyMismatch { .. } | Self::Refused { .. }
        )
    }
}

impl From<ErrorStack> for TlsError {
    fn from(e: ErrorStack) -> Self {
        Self::Setup(e.to_string())
    }
}

/// A context with what client and server share.
fn base_context(opts: &TlsOptions) -> Result<SslContextBuilder, TlsError> {
    let mut b = SslContextBuilder::new(SslMethod::tls())?;
    let (min, max) = opts.versions.range();
    b.set_min_proto_version(Some(min))?;
    b.set_max_proto_version(Some(max))?;
    b.set_cipher_list(&opts.tls12_ciphers)?;
    b.set_ciphersuites(&opts.tls13_suites)?;
    // No tickets, no session cache, no renegotiation, no compression: every
    // connection is a full PSK handshake.
    b.set_options(
        SslOptions::NO_TICKET
            | SslOptions::NO_COMPRESSION
            | SslOptions::NO_RENEGOTIATION
            | SslOptions::CIPHER_SERVER_PREFERENCE,
    );
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    // Several records per read(2): fewer system calls on bulk streams.
    b.set_read_ahead(true);
    Ok(b)
}

/// Kernel heartbeats and Nagle off on a fresh TCP socket.
fn tune_socket(tcp: &TcpStream, opts: &TlsOptions) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let sock = socket2::SockRef::from(tcp);
    if let Some(dead) = opts.dead_peer {
        let idle = (dead / 3).max(Duration::from_secs(1));
        let interval = (dead / 9).max(Duration::from_secs(1));
        sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(interval)
                .with_retries(3),
        )?;
        sock.set_tcp_user_timeout(Some(dead))?;
    }
    Ok(())
}

/// The peer's address for messages.
fn peer_label(tcp: &TcpStream) -> String {
    tcp.peer_addr()
        .map_or_else(|_| "<unknown peer>".to_owned(), |a| a.to_string())
}

/// Makes client connections with one identity of a secrets file.
pub struct TlsConnector {
    ctx: SslContext,
    identity: String,
    opts: TlsOptions,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("identity", &self.identity)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector for `identity` (default: the file's first, as stunnel's
    /// `PSKidentity`). It keeps a copy of that one key only.
    ///
    /// # Errors
    /// [`TlsError::Secrets`] when the identity is not in the file,
    /// [`TlsError::Setup`] when OpenSSL refuses the options.
    pub fn new(
        secrets: &PskSecrets,
        identity: Option<&str>,
        opts: &TlsOptions,
    ) -> Result<Self, TlsError> {
        let (identity, key) = secrets.client_identity(identity)?;
        let mut b = base_context(opts)?;
        let id = identity.as_bytes().to_vec();
        let key = key.clone();
        b.set_psk_client_callback(move |_ssl, _hint, id_buf, psk_buf| {
            // The identity goes out as a C string.
            if id.len() + 1 > id_buf.len() || key.len() > psk_buf.len() {
                return Ok(0);
            }
            id_buf[..id.len()].copy_from_slice(&id);
            id_buf[id.len()] = 0;
            psk_buf[..key.len()].copy_from_slice(key.as_bytes());
            Ok(key.len())
        });
        Ok(Self {
            ctx: b.build(),
            identity: identity.to_owned(),
            opts: opts.clone(),
        })
    }

    /// The identity this connector presents.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Connects to `addr` (`host:port`; every address it resolves to is
    /// tried in turn) and makes the handshake.
    ///
    /// # Errors
    /// [`TlsError::Connect`], then those of [`Self::handshake`].
    pub fn connect(&self, addr: &str) -> Result<TlsStream, TlsError> {
        let tcp = connect_tcp(addr, self.opts.connect_timeout)?;
        self.handshake(tcp)
    }

    /// Makes the client handshake on a connected socket.
    ///
    /// # Errors
    /// [`TlsError::Refused`] when the server refuses our identity or key,
    /// [`TlsError::Timeout`], [`TlsError::Handshake`].
    pub fn handshake(&self, tcp: TcpStream) -> Result<TlsStream, TlsError> {
        let peer = peer_label(&tcp);
        let hs = |e: io::Error| TlsError::Handshake {
            peer: peer.clone(),
            detail: e.to_string(),
        };
        tune_socket(&tcp, &self.opts).map_err(hs)?;
        tcp.set_read_timeout(Some(self.opts.handshake_timeout))
            .map_err(hs)?;
        tcp.set_write_timeout(Some(self.opts.handshake_timeout))
            .map_err(hs)?;
        let ssl = Ssl::new(&self.ctx)?;
        match ssl.connect(tcp) {
            Ok(s) => TlsStream::established(s, self.identity.clone(), peer, &self.opts),
            Err(e) => Err(classify_client(e, &peer, &self.identity)),
        }
    }
}

/// Connects TCP to the first address of `addr` that answers.
fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, TlsError> {
    let err = |source| TlsError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(err)?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(err(last))
}

/// The identity a client offered, kept by the server callback for the log.
#[derive(Debug, Clone)]
struct Offered {
    identity: Vec<u8>,
    known: bool,
}

/// Serves TLS-PSK: the key is chosen by the identity the client sends.
pub struct TlsAcceptor {
    ctx: SslContext,
    offered: openssl::ex_data::Index<Ssl, Offered>,
    opts: TlsOptions,
    identities: usize,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("identities", &self.identities)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor for every identity of `secrets`.
    ///
    /// # Errors
    /// [`TlsError::Setup`] when OpenSSL refuses the options.
    pub fn new(secrets: Arc<PskSecrets>, opts: &TlsOptions) -> Result<Self, TlsError> {
        let mut b = base_context(opts)?;
        b.set_num_tickets(0)?;
        let offered = Ssl::new_ex_index::<Offered>()?;
        let identities = secrets.len();
        b.set_psk_server_callback(move |ssl, identity, psk_buf| {
            let identity = identity.unwrap_or_default();
            let key = secrets.key(identity).filter(|k| k.len() <= psk_buf.len());
            ssl.set_ex_data(
                offered,
                Offered {
                    identity: identity.to_vec(),
                    known: key.is_some(),
                },
            );
            Ok(key.map_or(0, |k| {
                psk_buf[..k.len()].copy_from_slice(k.as_bytes());
                k.len()
            }))
        });
        Ok(Self {
            ctx: b.build(),
            offered,
            opts: opts.clone(),
            identities,
        })
    }

    /// Makes the server handshake on an accepted socket.
    ///
    /// # Errors
    /// [`TlsError::UnknownIdentity`] and [`TlsError::KeyMismatch`] (log them:
    /// they name the identity), [`TlsError::Timeout`],
    /// [`TlsError::Handshake`].
    pub fn accept(&self, tcp: TcpStream) -> Result<TlsStream, TlsError> {
        let peer = peer_label(&tcp);
        let hs = |e: io::Error| TlsError::Handshake {
            peer: peer.clone(),
            detail: e.to_string(),
        };
        tune_socket(&tcp, &self.opts).map_err(hs)?;
        tcp.set_read_timeout(Some(self.opts.handshake_timeout))
            .map_err(hs)?;
        tcp.set_write_timeout(Some(self.opts.handshake_timeout))
            .map_err(hs)?;
        let ssl = Ssl::new(&self.ctx)?;
        match ssl.accept(tcp) {
            Ok(s) => {
                let identity = s
                    .ssl()
                    .ex_data(self.offered)
                    .map(|o| String::from_utf8_lossy(&o.identity).into_owned())
                    .unwrap_or_default();
                TlsStream::established(s, identity, peer, &self.opts)
            }
            Err(e) => Err(self.classify_server(e, &peer)),
        }
    }

    fn classify_server(&self, e: HandshakeError<TcpStream>, peer: &str) -> TlsError {
        let (offered, detail, timed_out) = match &e {
            HandshakeError::SetupFailure(s) => (None, s.to_string(), false),
            HandshakeError::Failure(m) | HandshakeError::WouldBlock(m) => (
                m.ssl().ex_data(self.offered).cloned(),
                m.error().to_string(),
                is_timeout(m.error()),
            ),
        };
        match offered {
            Some(o) if !o.known => TlsError::UnknownIdentity {
                peer: peer.to_owned(),
                identity: escape_identity(&o.identity),
            },
            Some(o) if !timed_out && !peer_closed(&detail) => TlsError::KeyMismatch {
                peer: peer.to_owned(),
                identity: escape_identity(&o.identity),
                detail,
            },
            _ if timed_out => TlsError::Timeout {
                peer: peer.to_owned(),
            },
            _ => TlsError::Handshake {
                peer: peer.to_owned(),
                detail,
            },
        }
    }
}

/// An identity from the network, printable: lossy UTF-8 with control
/// characters escaped.
fn escape_identity(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn is_timeout(e: &openssl::ssl::Error) -> bool {
    matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE)
        || e.io_error().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            )
        })
}

/// The peer went away before finishing (not a key problem).
fn peer_closed(detail: &str) -> bool {
    detail.contains("unexpected eof") || detail.contains("Connection reset")
}

/// Alerts a TLS-PSK server sends for an unknown identity or a wrong key.
fn is_refusal(detail: &str) -> bool {
    [
        "alert handshake failure",
        "alert decrypt error",
        "alert bad record mac",
        "alert unknown psk identity",
        "alert illegal parameter",
        "decryption failed or bad record mac",
    ]
    .iter()
    .any(|a| detail.contains(a))
}

fn classify_client(e: HandshakeError<TcpStream>, peer: &str, identity: &str) -> TlsError {
    match e {
        HandshakeError::SetupFailure(s) => TlsError::Setup(s.to_string()),
        HandshakeError::Failure(m) | HandshakeError::WouldBlock(m) => {
            let detail = m.error().to_string();
            if is_timeout(m.error()) {
                TlsError::Timeout {
                    peer: peer.to_owned(),
                }
            } else if is_refusal(&detail) {
                TlsError::Refused {
                    peer: peer.to_owned(),
                    identity: identity.to_owned(),
                    detail,
                }
            } else {
                TlsError::Handshake {
                    peer: peer.to_owned(),
                    detail,
                }
            }
        }
    }
}

/// An established TLS-PSK connection over TCP.
///
/// One thread reads and writes it at a time (OpenSSL's state is not
/// split); the agent protocol is request/response, so that suffices.
/// A clean end of the peer's data is a TLS `close_notify`: a connection cut
/// without one reads as an error (`UnexpectedEof`), never as a short but
/// complete stream.
pub struct TlsStream {
    inner: SslStream<TcpStream>,
    identity: String,
    peer: String,
    io_timeout: Option<Duration>,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("peer", &self.peer)
            .field("identity", &self.identity)
            .field("version", &self.version())
            .field("cipher", &self.cipher())
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    fn established(
        inner: SslStream<TcpStream>,
        identity: String,
        peer: String,
        opts: &TlsOptions,
    ) -> Result<Self, TlsError> {
        let s = Self {
            inner,
            identity,
            peer,
            io_timeout: opts.io_timeout,
        };
        s.set_io_timeout(opts.io_timeout)
            .map_err(|e| TlsError::Handshake {
                peer: s.peer.clone(),
                detail: e.to_string(),
            })?;
        Ok(s)
    }

    /// The PSK identity of the connection (ours on a client, the client's on
    /// a server).
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The peer's address.
    #[must_use]
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The negotiated protocol, e.g. `TLSv1.3`.
    #[must_use]
    pub fn version(&self) -> &'static str {
        self.inner.ssl().version_str()
    }

    /// The negotiated cipher suite, e.g. `TLS_AES_128_GCM_SHA256`.
    #[must_use]
    pub fn cipher(&self) -> &'static str {
        self.inner
            .ssl()
            .current_cipher()
            .map_or("none", openssl::ssl::SslCipherRef::name)
    }

    /// The TCP socket underneath.
    #[must_use]
    pub fn tcp(&self) -> &TcpStream {
        self.inner.get_ref()
    }

    /// Changes the read/write timeout (see [`TlsOptions::io_timeout`]).
    ///
    /// # Errors
    /// The socket's.
    pub fn set_io_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(t)?;
        self.tcp().set_write_timeout(t)
    }

    /// Ends our direction cleanly: sends `close_notify` and shuts the TCP
    /// write side, so the peer reads a clean end. Reading may go on.
    ///
    /// # Errors
    /// The socket's.
    pub fn shutdown(&mut self) -> io::Result<()> {
        match self.inner.shutdown() {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => {}
            Err(e) => {
                return Err(e
                    .into_io_error()
                    .unwrap_or_else(|e| io::Error::other(e.to_string())));
            }
        }
        match self.tcp().shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }

    fn io_error(&self, e: io::Error, what: &str) -> io::Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{what} {}: no progress for {:?} (dead or stuck peer)",
                    self.peer,
                    self.io_timeout.unwrap_or_default()
                ),
            ),
            // OpenSSL 3 reports a TCP end without `close_notify` this way:
            // a truncated stream, never a clean end.
            _ if e.to_string().contains("unexpected eof") => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{what} {}: connection closed without TLS close_notify (truncated)",
                    self.peer
                ),
            ),
            kind => io::Error::new(kind, format!("{what} {}: {e}", self.peer)),
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.ssl_read(buf) {
                Ok(n) => return Ok(n),
                // The peer's close_notify: a clean end.
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Ok(0),
                // TCP ended without close_notify (the `openssl` crate's own
                // `Read` calls this a clean end): the stream was cut.
                Err(e) if e.code() == ErrorCode::SYSCALL && e.io_error().is_none() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "TLS read from {}: connection closed without TLS close_notify (truncated)",
                            self.peer
                        ),
                    ));
                }
                // A non-application record (a session ticket, a key update).
                Err(e) if e.code() == ErrorCode::WANT_READ && e.io_error().is_none() => {}
                Err(e) => {
                    let e = e
                        .into_io_error()
                        .unwrap_or_else(|e| io::Error::other(e.to_string()));
                    return Err(self.io_error(e, "TLS read from"));
                }
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .write(buf)
            .map_err(|e| self.io_error(e, "TLS write to"))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .flush()
            .map_err(|e| self.io_error(e, "TLS flush to"))
    }
}
