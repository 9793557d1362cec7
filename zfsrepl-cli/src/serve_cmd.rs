//! `zfsrepl serve --stdio`: the agent on standard input and output, as an
//! ssh forced command; `zfsrepl serve --listen`: the agent over TLS-PSK (or
//! plain TCP behind a local stunnel) to the peers of a peers file.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use zfsrepl_core::ZfsCli;
use zfsrepl_core::agent::{AgentConfig, FrameError, Server, StdioConn};
use zfsrepl_core::zfs::LocalRunner;

/// `zfsrepl serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve one client on standard input and output, then exit (for an
    /// ssh forced command).
    #[arg(long, required_unless_present = "listen")]
    pub stdio: bool,
    /// With --stdio, the agent config: the dataset roots the peer may read
    /// and write (default /etc/zfsrepl/agent.toml). With --listen, the
    /// peers file: one `[[peer]]` of the same keys per PSK identity
    /// (default /etc/zfsrepl/peers.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub net: crate::net_cmd::ListenArgs,
    /// The agent takes this host's lock on every dataset a peer receives
    /// into, rolls back or aborts a receive on, so that this host's daemon
    /// and manual runs never prune or refresh it mid-receive; a locked
    /// dataset is answered "busy" and the peer retries.
    #[command(flatten)]
    pub lock: crate::LockArgs,
}

/// Runs `zfsrepl serve`.
pub fn run(a: &ServeArgs, zfs_bin: OsString) -> Result<ExitCode> {
    if a.net.listen.is_some() {
        let config = a
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/zfsrepl/peers.toml"));
        return crate::net_cmd::run_listen(&a.net, &config, zfs_bin, a.lock.dir());
    }
    let path = a
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/zfsrepl/agent.toml"));
    let config = AgentConfig::load(&path)?;
    let who = config.who().to_owned();
    tracing::info!(
        identity = %who,
        ssh_connection = %std::env::var("SSH_CONNECTION").unwrap_or_default(),
        ssh_original_command = %std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default(),
        read_roots = ?config.read_roots,
        write_roots = ?config.write_roots,
        "zfsrepl agent on stdio"
    );
    let zfs = ZfsCli::probe(LocalRunner::new(), zfs_bin).context("probing the local zfs")?;
    let conn = StdioConn::new().context("standard input and output")?;
    match Server::new(config, zfs)
        .with_locks(a.lock.dir())
        .serve(conn)
    {
        Ok(_) => Ok(ExitCode::SUCCESS),
        // The client went away mid-request: nothing to tell it.
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("agent session for {who}"))),
    }
}
