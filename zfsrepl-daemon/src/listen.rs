//! The agent listener hosted by the daemon (`[daemon] listen`): the same
//! TLS-PSK accept loop as `zfsrepl serve --listen`, on a thread of its own,
//! serving each peer of the peers file with the rights of its `[[peer]]`
//! entry.
//!
//! Started with the daemon (which refuses to start when the secrets file is
//! unsafe, the peers file is wrong or the address is taken), stopped on
//! SIGTERM with the rest (sessions in flight get the stop timeout), and
//! restarted on reload when `listen`, `psk-file` or `peers` changed.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};
use zfsrepl_core::ZfsCli;
use zfsrepl_core::agent::{FrameError, Server};
use zfsrepl_core::lock::LockDir;
use zfsrepl_core::policy::ListenSettings;
use zfsrepl_core::stream::CancelToken;
use zfsrepl_core::transport::tls::{PskSecrets, TlsOptions};
use zfsrepl_core::transport::{
    Listen, NetStream, OnRefused, PeerConfig, Peers, RetentionFloor, ServeOptions, serve_counting,
};
use zfsrepl_core::zfs::LocalRunner;

use crate::metrics::Metrics;

/// The listener's part of the daemon's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// The address it listens on.
    pub address: String,
    /// Sessions being served now.
    pub sessions_active: usize,
    /// Sessions accepted (authenticated) since it started.
    pub sessions_accepted: u64,
    /// Connections refused since it started (authentication failed, no
    /// `[[peer]]` entry, too many at once).
    #[serde(default)]
    pub sessions_refused: u64,
}

/// Counts shared with the session threads.
#[derive(Debug, Default)]
struct Counts {
    active: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// Decrements the active count when a session ends, even by a panic.
struct Session<'a> {
    counts: &'a Counts,
    metrics: &'a Metrics,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.counts.active.fetch_sub(1, Ordering::SeqCst);
        self.metrics.agent_session_ended();
    }
}

/// A running accept loop.
#[derive(Debug)]
pub struct AgentListener {
    settings: ListenSettings,
    local: SocketAddr,
    cancel: CancelToken,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
}

impl AgentListener {
    /// Reads the peers and secrets files, binds the address and starts
    /// accepting on a thread of its own.
    ///
    /// # Errors
    /// A message naming the file or address at fault: the peers file does
    /// not parse, the secrets file is unsafe or unreadable, the address
    /// is taken, `zfs` does not answer.
    ///
    /// Sessions take the daemon's own per-dataset `locks` on what they
    /// write (see [`Server::with_locks`]), so a peer's receive and this
    /// daemon's jobs never act on one dataset at once.
    pub fn start(
        s: &ListenSettings,
        zfs_bin: OsString,
        metrics: Arc<Metrics>,
        locks: LockDir,
    ) -> Result<Self, String> {
        let peers = Peers::load(&s.peers).map_err(|e| format!("listen: {e}"))?;
        let secrets = PskSecrets::load(&s.psk_file).map_err(|e| format!("listen: {e}"))?;
        let (listen, ignored) = Listen::tls(&secrets, &peers, &TlsOptions::default())
            .map_err(|e| format!("listen: {e}"))?;
        for id in ignored {
            warn!(identity = %id, "identity in the PSK file has no [[peer]] entry: it will be refused");
        }
        for p in peers.iter() {
            if secrets.key(p.who().as_bytes()).is_none() {
                warn!(identity = %p.who(), "peer has no key in the PSK file: it cannot connect");
            }
        }
        let zfs = ZfsCli::probe(LocalRunner::new(), zfs_bin)
            .map_err(|e| format!("listen: probing the local zfs: {e}"))?;
        let listener = TcpListener::bind(s.address)
            .map_err(|e| format!("cannot listen on {}: {e}", s.address))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("listen: {}: {e}", s.address))?;
        let floor = RetentionFloor::new(Arc::new(zfs));
        let counts = Arc::new(Counts::default());
        let (c, m) = (counts.clone(), metrics.clone());
        let on_refused: OnRefused = Arc::new(move || {
            c.refused.fetch_add(1, Ordering::SeqCst);
            m.agent_session_refused();
        });
        let c = counts.clone();
        let handler = move |stream: NetStream, peer: &PeerConfig| {
            c.active.fetch_add(1, Ordering::SeqCst);
            c.accepted.fetch_add(1, Ordering::SeqCst);
            metrics.agent_session_started(peer.who());
            let _session = Session {
                counts: &c,
                metrics: &metrics,
            };
            let server = Server::new(peer.clone(), floor.clone()).with_locks(locks.clone());
            match server.serve(stream) {
                Ok(_) | Err(FrameError::Closed) => {}
                Err(e) => {
                    warn!(identity = %peer.who(), error = %e, "agent session ended with an error");
                }
            }
        };
        let cancel = CancelToken::new();
        let stop = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("agent-listener".into())
            .spawn(move || {
                if let Err(e) = serve_counting(
                    &listener,
                    &listen,
                    &Arc::new(peers),
                    ServeOptions::default(),
                    &stop,
                    Arc::new(handler),
                    &on_refused,
                ) {
                    error!(error = %e, "the agent listener failed");
                }
            })
            .map_err(|e| format!("listen: cannot start a thread: {e}"))?;
        info!(address = %local, peers = %s.peers.display(), "agent listener on {local} (TLS-PSK)");
        Ok(Self {
            settings: s.clone(),
            local,
            cancel,
            thread: Some(thread),
            counts,
        })
    }

    /// The settings it runs with.
    #[must_use]
    pub fn settings(&self) -> &ListenSettings {
        &self.settings
    }

    /// Sessions being served now.
    #[must_use]
    pub fn active(&self) -> usize {
        self.counts.active.load(Ordering::SeqCst)
    }

    /// What `zfsrepl status` shows.
    #[must_use]
    pub fn status(&self) -> ListenerStatus {
        ListenerStatus {
            address: self.local.to_string(),
            sessions_active: self.active(),
            sessions_accepted: self.counts.accepted.load(Ordering::SeqCst),
            sessions_refused: self.counts.refused.load(Ordering::SeqCst),
        }
    }

    /// Stops accepting and closes the port (within a tenth of a second);
    /// sessions being served run on until they end.
    pub fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            info!(address = %self.local, "agent listener stopped");
        }
    }
}

impl Drop for AgentListener {
    fn drop(&mut self) {
        self.stop();
    }
}
