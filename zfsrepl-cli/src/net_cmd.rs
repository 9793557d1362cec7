//! The network legs of `zfsrepl send` (`tls://` and `stunnel://` sides,
//! through the agent protocol) and `zfsrepl serve --listen`.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use zfsrepl_core::ZfsCli;
use zfsrepl_core::agent::{AgentClient, FrameError, Server};
use zfsrepl_core::stream::CancelToken;
use zfsrepl_core::transport::tls::{PskSecrets, TlsConnector, TlsOptions, TlsVersions};
use zfsrepl_core::transport::{
    LinkKind, Listen, NetStream, NetTarget, PeerConfig, Peers, RetentionFloor, ServeOptions,
    check_plain_addr, serve,
};
use zfsrepl_core::zfs::LocalRunner;

use crate::send_cmd::{Compress, SendArgs, replicate, side, sync_job};

/// TLS options shared by `send` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// stunnel-format PSK secrets (`IDENTITY:KEY` lines); must be owned by
    /// this user and readable by nobody else.
    #[arg(long, value_name = "FILE")]
    pub psk_file: Option<PathBuf>,
    /// TLS versions: `auto` (1.3, falling back to 1.2 PSK suites for older
    /// stunnels), `tls13` or `tls12`.
    #[arg(long, value_name = "V", default_value = "auto", value_parser = parse_versions)]
    pub tls_versions: TlsVersions,
    /// Seconds a network read or write may make no progress before the
    /// peer counts as dead (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub io_timeout: u64,
    /// Seconds after which the kernel's keepalive probes declare a silent
    /// peer dead, even with no data in flight (0: off).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub dead_peer: u64,
}

fn parse_versions(s: &str) -> Result<TlsVersions, String> {
    match s {
        "auto" => Ok(TlsVersions::Auto),
        "tls13" | "1.3" => Ok(TlsVersions::Tls13),
        "tls12" | "1.2" => Ok(TlsVersions::Tls12),
        _ => Err(format!("expected auto, tls13 or tls12, not {s:?}")),
    }
}

fn secs(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n))
}

impl TlsArgs {
    fn options(&self) -> TlsOptions {
        TlsOptions::default()
            .with_versions(self.tls_versions)
            .with_io_timeout(secs(self.io_timeout))
            .with_dead_peer(secs(self.dead_peer))
    }

    fn secrets(&self) -> Result<PskSecrets> {
        let Some(path) = &self.psk_file else {
            bail!("a tls:// side needs --psk-file FILE (stunnel's IDENTITY:KEY format)");
        };
        Ok(PskSecrets::load(path)?)
    }
}

/// Connects to the agent at a `tls://` or `stunnel://` side.
fn net_side(t: &NetTarget, a: &SendArgs) -> Result<AgentClient> {
    let label = format!("{t}");
    let stream = match t.kind {
        LinkKind::Tls => {
            let secrets = a.tls.secrets()?;
            let c = TlsConnector::new(&secrets, a.identity.as_deref(), &a.tls.options())?;
            NetStream::Tls(Box::new(c.connect(&t.addr)?))
        }
        LinkKind::Stunnel => {
            if a.tls.psk_file.is_some() || a.identity.is_some() {
                bail!(
                    "{label}: stunnel:// goes through a local stunnel that holds the key; drop --psk-file/--identity"
                );
            }
            let addr = t
                .addr
                .to_socket_addrs()
                .with_context(|| format!("resolving {}", t.addr))?
                .next()
                .with_context(|| format!("{} resolves to nothing", t.addr))?;
            if !addr.ip().is_loopback() {
                bail!(
                    "{label}: stunnel:// is plain TCP into a stunnel client on this host; use a loopback address (or tls:// for a remote zfsrepl)"
                );
            }
            let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(15))
                .with_context(|| format!("connecting to the local stunnel at {addr}"))?;
            tcp.set_nodelay(true)?;
            let s = NetStream::Plain(tcp);
            s.set_io_timeout(secs(a.tls.io_timeout))?;
            s
        }
    };
    let protocol = stream.protocol();
    let mut client = AgentClient::connect(stream, Some(label.clone()), Some(sync_job(a)))
        .with_context(|| format!("the zfsrepl agent at {label}"))?;
    tracing::info!(target = %label, %protocol, identity = ?client.identity(), "agent connected");
    if let Compress::Zstd(level) = a.compress {
        client.set_compression(Some(level));
    }
    Ok(client)
}

/// `zfsrepl send` with a `tls://` or `stunnel://` side; the other side is
/// local or over ssh (bare `zfs`), or network too.
pub fn run_send(a: &SendArgs, zfs_bin: &OsString) -> Result<ExitCode> {
    let parse = |s: &str| NetTarget::parse(s).transpose().map_err(anyhow::Error::from);
    let (sn, dn) = (parse(&a.src)?, parse(&a.dst)?);
    if a.agent {
        bail!("--agent is for ssh sides; tls:// and stunnel:// sides always use the agent");
    }
    match (sn, dn) {
        (Some(s), Some(d)) => replicate(
            a,
            &net_side(&s, a)?,
            &net_side(&d, a)?,
            &s.dataset,
            &d.dataset,
        ),
        // The network side first: a bad key or file fails before any zfs runs.
        (Some(s), None) => {
            let src = net_side(&s, a)?;
            let (dr, dst_ds) = side(&a.dst, a)?;
            let dst = ZfsCli::probe(dr, zfs_bin.clone())?;
            replicate(a, &src, &dst, &s.dataset, &dst_ds)
        }
        (None, Some(d)) => {
            let dst = net_side(&d, a)?;
            let (sr, src_ds) = side(&a.src, a)?;
            let src = ZfsCli::probe(sr, zfs_bin.clone())?;
            replicate(a, &src, &dst, &src_ds, &d.dataset)
        }
        (None, None) => bail!("no tls:// or stunnel:// side"),
    }
}

/// `zfsrepl send` with `--retries`: a failed run (an error, or datasets
/// that failed) is run again after `--retry-wait` seconds, doubled each
/// time. Planning starts afresh each time, so a retry continues from what
/// the last attempt completed. Refused keys or identities and bad
/// arguments are not retried.
pub fn send_with_retries(a: &SendArgs, zfs_bin: &OsString) -> Result<ExitCode> {
    let mut wait = Duration::from_secs(a.retry_wait);
    for attempt in 0..=a.retries {
        let last = attempt == a.retries;
        match crate::send_cmd::run(a.clone(), zfs_bin.clone()) {
            Ok(code) if code == ExitCode::SUCCESS || last => return Ok(code),
            Err(e) if last || !retryable(&e) => return Err(e),
            Ok(_) => eprintln!(
                "zfsrepl send: attempt {} of {} failed; retrying in {}s",
                attempt + 1,
                a.retries + 1,
                wait.as_secs()
            ),
            Err(e) => eprintln!(
                "zfsrepl send: attempt {} of {} failed: {e:#}; retrying in {}s",
                attempt + 1,
                a.retries + 1,
                wait.as_secs()
            ),
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(3600));
    }
    Ok(ExitCode::from(1))
}

/// Failures a later attempt may not repeat: the network, the transport,
/// busy or unavailable ZFS; not refused keys, bad files or arguments.
fn retryable(e: &anyhow::Error) -> bool {
    use zfsrepl_core::transport::tls::{SecretsError, TlsError};
    use zfsrepl_core::{NameError, ZfsError};
    for c in e.chain() {
        if let Some(t) = c.downcast_ref::<TlsError>() {
            return !t.is_auth_failure() && !matches!(t, TlsError::Secrets(_) | TlsError::Setup(_));
        }
        if c.downcast_ref::<SecretsError>().is_some()
            || c.downcast_ref::<NameError>().is_some()
            || c.downcast_ref::<zfsrepl_core::transport::PeersError>()
                .is_some()
            || c.downcast_ref::<zfsrepl_core::transport::TargetError>()
                .is_some()
        {
            return false;
        }
        if let Some(z) = c.downcast_ref::<ZfsError>() {
            return z.kind.is_transient();
        }
        if c.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
    }
    false
}

/// Whether a side is a network endpoint (`tls://`, `stunnel://`).
pub fn is_net(s: &str) -> bool {
    NetTarget::parse(s).is_some()
}

/// `zfsrepl serve --listen` arguments (flattened into `serve`'s).
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Listen on ADDR (`host:port`; port 0 picks one, printed on stderr)
    /// and serve the agent to every peer of the --config peers file.
    #[arg(long, value_name = "ADDR", conflicts_with = "stdio")]
    pub listen: Option<String>,
    /// Plain TCP instead of TLS-PSK: only behind a stunnel on this host,
    /// which holds the key; every connection gets the rights of --identity.
    /// Refused on a non-loopback address unless --force-plain.
    #[arg(long, requires = "listen")]
    pub plain: bool,
    /// With --plain: the peer entry (stunnel's link identity) every
    /// connection is served as.
    #[arg(long, value_name = "ID", requires = "plain")]
    pub identity: Option<String>,
    /// With --plain: accept only connections from sockets of this user
    /// (name or uid), normally stunnel's (`stunnel4` on Debian), so other
    /// local users cannot use the port.
    #[arg(long, value_name = "USER", requires = "plain")]
    pub plain_user: Option<String>,
    /// Allow --plain on a non-loopback address (unauthenticated and
    /// unencrypted: only on a network you trust entirely).
    #[arg(long, requires = "plain")]
    pub force_plain: bool,
    /// Most connections served at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_connections: usize,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// A user name (from /etc/passwd) or a numeric uid.
fn user_uid(user: &str) -> Result<u32> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(user))
                .then(|| f.nth(1).and_then(|u| u.parse().ok()))
                .flatten()
        })
        .with_context(|| format!("--plain-user {user:?}: no such user"))
}

/// Runs `zfsrepl serve --listen`.
pub fn run_listen(
    l: &ListenArgs,
    config: &std::path::Path,
    zfs_bin: OsString,
    locks: zfsrepl_core::lock::LockDir,
) -> Result<ExitCode> {
    let Some(addr) = &l.listen else {
        bail!("--listen ADDR is required");
    };
    let peers = Peers::load(config)?;
    let listener = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    let listen = if l.plain {
        check_plain_addr(&local, l.force_plain).map_err(anyhow::Error::msg)?;
        let Some(identity) = &l.identity else {
            bail!("--plain needs --identity ID: the peer entry its connections are served as");
        };
        if peers.get(identity).is_none() {
            bail!(
                "--identity {identity:?} has no [[peer]] entry in {}",
                config.display()
            );
        }
        if l.tls.psk_file.is_some() {
            bail!("--plain: the local stunnel holds the keys; drop --psk-file");
        }
        Listen::Plain {
            identity: identity.clone(),
            io_timeout: secs(l.tls.io_timeout),
            peer_uid: l.plain_user.as_deref().map(user_uid).transpose()?,
        }
    } else {
        let secrets = l.tls.secrets()?;
        let (listen, ignored) = Listen::tls(&secrets, &peers, &l.tls.options())?;
        for id in ignored {
            tracing::warn!(identity = %id, "identity in the PSK file has no [[peer]] entry: it will be refused");
        }
        for p in peers.iter() {
            if secrets.key(p.who().as_bytes()).is_none() {
                tracing::warn!(identity = %p.who(), "peer has no key in the PSK file: it cannot connect");
            }
        }
        listen
    };
    let zfs =
        Arc::new(ZfsCli::probe(LocalRunner::new(), zfs_bin).context("probing the local zfs")?);
    let floor = RetentionFloor::new(zfs);
    let handler = move |stream: NetStream, peer: &PeerConfig| {
        let who = peer.who().to_owned();
        let server = Server::new(peer.clone(), floor.clone()).with_locks(locks.clone());
        match server.serve(stream) {
            Ok(_) | Err(FrameError::Closed) => {}
            Err(e) => {
                tracing::warn!(identity = %who, error = %e, "agent session ended with an error")
            }
        }
    };
    let mode = if l.plain {
        "plain TCP (behind stunnel)"
    } else {
        "TLS-PSK"
    };
    eprintln!("zfsrepl serve: listening on {local} ({mode})");
    serve(
        &listener,
        &listen,
        &Arc::new(peers),
        ServeOptions {
            max_connections: l.max_connections.max(1),
        },
        &CancelToken::new(),
        Arc::new(handler),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsrepl_core::transport::tls::TlsError;
    use zfsrepl_core::{ZfsError, ZfsErrorKind};

    #[test]
    fn only_transient_failures_are_retried() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cases: Vec<(anyhow::Error, bool)> = vec![
            (
                TlsError::Connect {
                    addr: "h:1".into(),
                    source: io(),
                }
                .into(),
                true,
            ),
            (TlsError::Timeout { peer: "h:1".into() }.into(), true),
            (
                TlsError::Refused {
                    peer: "h:1".into(),
                    identity: "a".into(),
                    detail: "alert decrypt error".into(),
                }
                .into(),
                false,
            ),
            (
                anyhow::Error::new(ZfsError::new("recv", ZfsErrorKind::Transport, "cut"))
                    .context("the zfsrepl agent at tls://h:1/t"),
                true,
            ),
            (
                ZfsError::new("recv", ZfsErrorKind::TargetModified, "x").into(),
                false,
            ),
            (anyhow::Error::new(io()).context("connecting"), true),
            (anyhow::anyhow!("a tls:// side needs --psk-file"), false),
        ];
        for (e, want) in cases {
            assert_eq!(retryable(&e), want, "{e:#}");
        }
    }

    #[test]
    fn users_by_name_or_uid() {
        assert_eq!(user_uid("root").unwrap(), 0);
        assert_eq!(user_uid("995").unwrap(), 995);
        assert!(user_uid("no such user here").is_err());
    }

    #[test]
    fn tls_versions_values() {
        assert_eq!(parse_versions("auto"), Ok(TlsVersions::Auto));
        assert_eq!(parse_versions("tls13"), Ok(TlsVersions::Tls13));
        assert_eq!(parse_versions("1.2"), Ok(TlsVersions::Tls12));
        assert!(parse_versions("ssl3").is_err());
        assert_eq!(secs(0), None);
        assert_eq!(secs(3), Some(Duration::from_secs(3)));
    }
}
