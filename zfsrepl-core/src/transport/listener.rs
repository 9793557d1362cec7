//! The accept loop of `zfsrepl serve`: TLS-PSK (or plain TCP behind a local
//! stunnel), one thread per connection, each handed to the agent with the
//! rights of its identity. Refusals are logged with the identity.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::net::NetStream;
use super::peers::{PeerConfig, Peers};
use super::tls::{PskSecrets, TlsAcceptor, TlsError, TlsOptions};
use crate::stream::CancelToken;

/// How connections are authenticated.
#[derive(Debug, Clone)]
pub enum Listen {
    /// TLS-PSK: the client's identity picks the key and the rights.
    Tls {
        /// The handshake, with the keys of identities that have an entry.
        acceptor: Arc<TlsAcceptor>,
        /// Identities with a key but no peer entry (refused, and logged
        /// as such).
        no_entry: Arc<Vec<String>>,
    },
    /// Plain TCP from a stunnel on this host: every connection gets the
    /// rights of this one identity (stunnel's link identity), since stunnel
    /// does not pass the client's identity on.
    Plain {
        /// The peer entry all connections use.
        identity: String,
        /// Read/write timeout of plain connections.
        io_timeout: Option<Duration>,
        /// Accept only connections whose socket belongs to this uid (the
        /// stunnel user), checked in `/proc/net/tcp*`.
        peer_uid: Option<u32>,
    },
}

impl Listen {
    /// A TLS-PSK listener for the identities of `secrets` that have an
    /// entry in `peers`. Identities of the secrets file without one are
    /// left out, so they are refused in the handshake like strangers; the
    /// list of them is returned for the log.
    ///
    /// # Errors
    /// [`TlsError::Setup`]; [`TlsError::Secrets`] when no identity of the
    /// file has an entry.
    pub fn tls(
        secrets: &PskSecrets,
        peers: &Peers,
        opts: &TlsOptions,
    ) -> Result<(Self, Vec<String>), TlsError> {
        let mut usable = secrets.clone();
        let ignored: Vec<String> = secrets
            .identities()
            .filter(|id| peers.get(id).is_none())
            .map(str::to_owned)
            .collect();
        usable.retain(|id| peers.get(id).is_some());
        if usable.is_empty() {
            return Err(TlsError::Secrets(
                super::tls::SecretsError::NoSuchIdentity {
                    identity: "(no identity of the secrets file has a peer entry)".into(),
                },
            ));
        }
        let acceptor = TlsAcceptor::new(Arc::new(usable), opts)?;
        Ok((
            Self::Tls {
                acceptor: Arc::new(acceptor),
                no_entry: Arc::new(ignored.clone()),
            },
            ignored,
        ))
    }
}

/// Refuses a plain-TCP listen address that is not loopback, unless
/// `force`: plain connections carry no authentication and no encryption,
/// and are only for a stunnel on the same host.
///
/// # Errors
/// A message saying why.
pub fn check_plain_addr(addr: &SocketAddr, force: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || force {
        Ok(())
    } else {
        Err(format!(
            "refusing plain TCP on {addr}: it has no authentication or encryption and is only for a stunnel on this host; listen on 127.0.0.1 (or pass --force-plain)"
        ))
    }
}

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Most connections served at once; more are closed at once. Default 16.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
        }
    }
}

/// Accepts connections on `listener` until `cancel` fires, authenticates
/// each (in its own thread, so a slow handshake blocks nobody else) and
/// calls `handler` with the stream and the rights of its identity.
///
/// Returns when cancelled; connections being served run on in their
/// threads until their handler returns.
///
/// # Errors
/// When the listener fails (not when a connection does: that is logged).
pub fn serve<H>(
    listener: &TcpListener,
    listen: &Listen,
    peers: &Arc<Peers>,
    opts: ServeOptions,
    cancel: &CancelToken,
    handler: Arc<H>,
) -> std::io::Result<()>
where
    H: Fn(NetStream, &PeerConfig) + Send + Sync + 'static,
{
    let on_refused: OnRefused = Arc::new(|| {});
    serve_counting(listener, listen, peers, opts, cancel, handler, &on_refused)
}

/// What [`serve_counting`] calls for each connection turned away.
pub type OnRefused = Arc<dyn Fn() + Send + Sync>;

/// [`serve`], calling `on_refused` for each connection turned away: too
/// many at once, authentication failed, no peer entry, not from the
/// stunnel user.
///
/// # Errors
/// As [`serve`].
pub fn serve_counting<H>(
    listener: &TcpListener,
    listen: &Listen,
    peers: &Arc<Peers>,
    opts: ServeOptions,
    cancel: &CancelToken,
    handler: Arc<H>,
    on_refused: &OnRefused,
) -> std::io::Result<()>
where
    H: Fn(NetStream, &PeerConfig) + Send + Sync + 'static,
{
    if let Listen::Plain { identity, .. } = listen
        && peers.get(identity).is_none()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("plain listener: identity {identity:?} has no peer entry"),
        ));
    }
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (tcp, from) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if cancel.sleep(Duration::from_millis(50)) {
                    return Ok(());
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accept failed");
                if cancel.sleep(Duration::from_millis(500)) {
                    return Ok(());
                }
                continue;
            }
        };
        if cancel.is_cancelled() {
            return Ok(());
        }
        if active.load(Ordering::SeqCst) >= opts.max_connections {
            tracing::warn!(peer = %from, max = opts.max_connections, "too many connections: refused");
            on_refused();
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (listen, peers, handler, active, on_refused) = (
            listen.clone(),
            peers.clone(),
            handler.clone(),
            active.clone(),
            on_refused.clone(),
        );
        std::thread::spawn(move || {
            if !serve_one(tcp, from, &listen, &peers, &*handler) {
                on_refused();
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Authenticates one connection and serves it; false when it was refused.
fn serve_one<H>(
    tcp: TcpStream,
    from: SocketAddr,
    listen: &Listen,
    peers: &Peers,
    handler: &H,
) -> bool
where
    H: Fn(NetStream, &PeerConfig),
{
    if let Err(e) = tcp.set_nonblocking(false) {
        tracing::warn!(peer = %from, error = %e, "cannot set the socket blocking");
        return false;
    }
    let (stream, identity) = match listen {
        Listen::Tls { acceptor, no_entry } => match acceptor.accept(tcp) {
            Ok(s) => {
                let id = s.identity().to_owned();
                (NetStream::Tls(Box::new(s)), id)
            }
            Err(TlsError::UnknownIdentity { identity, .. }) if no_entry.contains(&identity) => {
                tracing::warn!(peer = %from, identity = %identity, "connection refused: the identity has a key but no [[peer]] entry");
                return false;
            }
            Err(e) => {
                // UnknownIdentity and KeyMismatch name the identity.
                tracing::warn!(peer = %from, error = %e, "connection refused");
                return false;
            }
        },
        Listen::Plain {
            identity,
            io_timeout,
            peer_uid,
        } => {
            if let Some(want) = peer_uid {
                match super::peeruid::peer_uid(&tcp) {
                    Ok(Some(uid)) if uid == *want => {}
                    Ok(uid) => {
                        tracing::warn!(peer = %from, uid = ?uid, want = *want, "plain connection refused: not from the stunnel user");
                        return false;
                    }
                    Err(e) => {
                        tracing::warn!(peer = %from, error = %e, "plain connection refused: cannot tell who connected");
                        return false;
                    }
                }
            }
            let _ = tcp.set_nodelay(true);
            let s = NetStream::Plain(tcp);
            if let Err(e) = s.set_io_timeout(*io_timeout) {
                tracing::warn!(peer = %from, error = %e, "cannot set timeouts");
                return false;
            }
            (s, identity.clone())
        }
    };
    let Some(peer) = peers.get(&identity) else {
        // Cannot happen for TLS (only identities with an entry have keys)
        // nor for plain (checked at start); refused all the same.
        tracing::warn!(peer = %from, identity = %identity, "identity has no peer entry: refused");
        return false;
    };
    tracing::info!(peer = %from, identity = %identity, protocol = %stream.protocol(), "connection accepted");
    handler(stream, peer);
    tracing::info!(peer = %from, identity = %identity, "connection closed");
    true
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::path::Path;

    use super::*;
    use crate::transport::tls::TlsConnector;

    const K: &str = "0123456789abcdeX";

    fn start(listen: Listen, peers: Peers) -> (String, CancelToken, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let cancel = CancelToken::new();
        let c = cancel.clone();
        let h = std::thread::spawn(move || {
            let handler = Arc::new(|mut s: NetStream, p: &PeerConfig| {
                let _ =
                    s.write_all(format!("{} {}", p.who(), p.write_roots[0].as_str()).as_bytes());
                let _ = s.shutdown();
            });
            serve(
                &l,
                &listen,
                &Arc::new(peers),
                ServeOptions::default(),
                &c,
                handler,
            )
            .unwrap();
        });
        (addr, cancel, h)
    }

    fn peers() -> Peers {
        Peers::parse(
            "[[peer]]\nidentity = \"a\"\nwrite-roots = [\"tank/a b\"]\n",
            Path::new("p.toml"),
        )
        .unwrap()
    }

    #[test]
    fn serves_known_identities_and_refuses_others() {
        let secrets = PskSecrets::parse(format!("a:{K}\nb:{K}\n").as_bytes()).unwrap();
        let (listen, ignored) = Listen::tls(&secrets, &peers(), &TlsOptions::default()).unwrap();
        assert_eq!(ignored, ["b"]);
        let (addr, cancel, h) = start(listen, peers());
        for (id, ok) in [("a", true), ("b", false), ("a", true)] {
            let c = TlsConnector::new(&secrets, Some(id), &TlsOptions::default()).unwrap();
            match c.connect(&addr) {
                Ok(mut s) => {
                    assert!(ok, "{id}");
                    let mut got = String::new();
                    s.read_to_string(&mut got).unwrap();
                    assert_eq!(got, "a tank/a b");
                }
                Err(e) => assert!(!ok && e.is_auth_failure(), "{id}: {e}"),
            }
        }
        cancel.cancel();
        h.join().unwrap();
    }

    #[test]
    fn connections_over_the_limit_are_closed() {
        let secrets = PskSecrets::parse(format!("a:{K}\n").as_bytes()).unwrap();
        let (listen, _) = Listen::tls(&secrets, &peers(), &TlsOptions::default()).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let cancel = CancelToken::new();
        let c2 = cancel.clone();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let h = std::thread::spawn(move || {
            // The first session holds its slot until released.
            let handler = Arc::new(move |mut s: NetStream, _: &PeerConfig| {
                let _ = s.write_all(b"in");
                let _ = s.flush();
                let _ = release_rx.lock().unwrap().recv();
                let _ = s.shutdown();
            });
            let opts = ServeOptions { max_connections: 1 };
            serve(&l, &listen, &Arc::new(peers()), opts, &c2, handler).unwrap();
        });
        let c = TlsConnector::new(&secrets, None, &TlsOptions::default()).unwrap();
        let mut first = c.connect(&addr).unwrap();
        let mut buf = [0u8; 2];
        first.read_exact(&mut buf).unwrap();
        let e = c.connect(&addr).unwrap_err();
        assert!(!e.is_auth_failure(), "{e}");
        release_tx.send(()).unwrap();
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).unwrap();
        // The slot is free again.
        std::thread::sleep(Duration::from_millis(100));
        let mut again = c.connect(&addr).unwrap();
        again.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"in");
        release_tx.send(()).unwrap();
        cancel.cancel();
        h.join().unwrap();
    }

    #[test]
    fn ipv6_loopback_and_plain_peer_uid_over_ipv6() {
        let secrets = PskSecrets::parse(format!("a:{K}\n").as_bytes()).unwrap();
        let (listen, _) = Listen::tls(&secrets, &peers(), &TlsOptions::default()).unwrap();
        let l = TcpListener::bind("[::1]:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert!(addr.starts_with("[::1]:"), "{addr}");
        let cancel = CancelToken::new();
        let c2 = cancel.clone();
        let h = std::thread::spawn(move || {
            let handler = Arc::new(|mut s: NetStream, p: &PeerConfig| {
                let _ = s.write_all(p.who().as_bytes());
                let _ = s.shutdown();
            });
            serve(
                &l,
                &listen,
                &Arc::new(peers()),
                ServeOptions::default(),
                &c2,
                handler,
            )
            .unwrap();
        });
        let c = TlsConnector::new(&secrets, None, &TlsOptions::default()).unwrap();
        let mut s = c.connect(&addr).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "a");
        cancel.cancel();
        h.join().unwrap();
        // The peer's uid is found in /proc/net/tcp6 too.
        let l = TcpListener::bind("[::1]:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(
            crate::transport::peer_uid(&s).unwrap(),
            Some(crate::transport::tls::secrets_effective_uid())
        );
    }

    #[test]
    fn plain_listener_uses_its_identity_and_needs_loopback() {
        let (addr, cancel, h) = start(
            Listen::Plain {
                identity: "a".into(),
                io_timeout: None,
                peer_uid: Some(crate::transport::tls::secrets_effective_uid()),
            },
            peers(),
        );
        let mut s = TcpStream::connect(&addr).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "a tank/a b");
        cancel.cancel();
        h.join().unwrap();

        // A connection from another user than the stunnel user: refused.
        let other = crate::transport::tls::secrets_effective_uid().wrapping_add(1);
        let (addr, cancel, h) = start(
            Listen::Plain {
                identity: "a".into(),
                io_timeout: None,
                peer_uid: Some(other),
            },
            peers(),
        );
        let mut s = TcpStream::connect(&addr).unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        assert_eq!(got, "");
        cancel.cancel();
        h.join().unwrap();

        assert!(check_plain_addr(&"127.0.0.1:1".parse().unwrap(), false).is_ok());
        assert!(check_plain_addr(&"[::1]:1".parse().unwrap(), false).is_ok());
        let e = check_plain_addr(&"0.0.0.0:1".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("--force-plain"), "{e}");
        assert!(check_plain_addr(&"10.1.2.3:1".parse().unwrap(), false).is_err());
        assert!(check_plain_addr(&"10.1.2.3:1".parse().unwrap(), true).is_ok());

        // An identity without an entry cannot be served plain.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = serve(
            &l,
            &Listen::Plain {
                identity: "zz".into(),
                io_timeout: None,
                peer_uid: None,
            },
            &Arc::new(peers()),
            ServeOptions::default(),
            &CancelToken::new(),
            Arc::new(|_: NetStream, _: &PeerConfig| {}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"zz\""), "{e}");
    }
}
