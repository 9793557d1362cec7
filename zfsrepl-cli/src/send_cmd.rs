//! `zfsrepl send`: replicate a dataset (or a tree) to another place, locally
//! or over ssh on either side.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use zfsrepl_core::agent::{AgentClient, SshConn};
use zfsrepl_core::replication::execute::{ExecOptions, ExecProgress, ExecReport, execute};
use zfsrepl_core::replication::gather::gather_tree_input;
use zfsrepl_core::replication::{
    InitialPolicy, ReplicationPlan, ReplicationPolicy, Step, SyncJob, plan_tree,
};
use zfsrepl_core::stream::{CancelToken, CopyOptions, Progress};
use zfsrepl_core::zfs::{LocalRunner, SshRunner, SshTarget};
use zfsrepl_core::{DatasetName, Runner, ZfsCli, ZfsRead, ZfsStream, ZfsWrite};

/// `zfsrepl send` arguments.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Source: `pool/ds` here, `[user@]host:pool/ds` over ssh,
    /// `tls://host:port/pool/ds` (a `zfsrepl serve --listen`, TLS-PSK) or
    /// `stunnel://127.0.0.1:port/pool/ds` (plain TCP into a local stunnel
    /// client port that carries it to a `zfsrepl serve`).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Target: the same forms as SRC.
    #[arg(value_name = "DST")]
    pub dst: String,
    /// Replicate the source's descendants too (parents first).
    #[arg(short, long)]
    pub recursive: bool,
    /// Print the plan and send nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan or the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// First replication sends every snapshot, oldest first (default: only
    /// the newest).
    #[arg(long)]
    pub all_snapshots: bool,
    /// Bandwidth limit in bytes per second.
    #[arg(long, value_name = "BYTES")]
    pub bwlimit: Option<u64>,
    /// ssh port for remote sides.
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// ssh private key for remote sides.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// Extra ssh option, as for `ssh -o` (repeatable).
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
    /// Send existing snapshots only: take no sync snapshot first.
    #[arg(long)]
    pub no_sync_snap: bool,
    /// With --no-sync-snap: place no hold on the new base either (as
    /// syncoid --no-sync-snap). Other tools may then destroy the base and
    /// the next run needs a full send.
    #[arg(long, requires = "no_sync_snap")]
    pub no_hold: bool,
    /// Roll the target back when it diverged or was modified, over
    /// snapshots zfsrepl owns only (never `receive -F`).
    #[arg(long)]
    pub force_rollback: bool,
    /// The job's name in sync snapshots and hold tags (default: derived
    /// from SRC).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Set readonly=on on the target's top dataset.
    #[arg(long)]
    pub readonly: bool,
    /// Compress the ssh leg: `none`, `zstd` (level 3) or `zstd:N`. In bare
    /// ssh mode zfsrepl compresses in-process and the target host runs
    /// `zstd -dc | zfs receive` (it needs a `zstd` binary; checked first).
    /// With --agent, zstd runs in-process on both ends, push and pull.
    #[arg(long, value_name = "ALGO", default_value = "none", value_parser = parse_compress)]
    pub compress: Compress,
    /// Remote sides run the zfsrepl agent (`zfsrepl serve --stdio`, best as
    /// the ssh key's forced command; see `zfsrepl serve --help`) instead of
    /// bare `zfs` commands: the remote host confines the key to the
    /// dataset roots its agent config allows.
    #[arg(long)]
    pub agent: bool,
    /// The zfsrepl program on remote hosts with --agent (ignored when the
    /// key has a forced command).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "zfsrepl",
        requires = "agent"
    )]
    pub remote_zfsrepl: OsString,
    /// The PSK identity for tls:// sides (default: the first of
    /// --psk-file, as stunnel's PSKidentity).
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub tls: crate::net_cmd::TlsArgs,
    /// Run again up to N times when a run fails (a dropped link, a busy
    /// target), waiting --retry-wait seconds, doubled after each attempt.
    /// Refused keys and identities are not retried.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Seconds before the first retry.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub retry_wait: u64,
    #[command(flatten)]
    pub lock: crate::LockArgs,
}

/// `--compress`: `none`, `zstd` or `zstd:LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Plain streams.
    None,
    /// zstd at this level (1..=19).
    Zstd(i32),
}

fn parse_compress(s: &str) -> Result<Compress, String> {
    match s.split_once(':') {
        None if s == "none" => Ok(Compress::None),
        None if s == "zstd" => Ok(Compress::Zstd(3)),
        Some(("zstd", n)) => match n.parse::<i32>() {
            Ok(l) if (1..=19).contains(&l) => Ok(Compress::Zstd(l)),
            _ => Err(format!("zstd level must be 1..=19, not {n:?}")),
        },
        _ => Err(format!("expected none, zstd or zstd:LEVEL, not {s:?}")),
    }
}

/// Splits `[user@]host:pool/ds` from `pool/ds`. A `:` counts as the host
/// separator only when no `/` comes before it (so `tank/a:b` is local).
fn split_side(s: &str) -> Result<(Option<&str>, DatasetName)> {
    let (host, ds) = match s.split_once(':') {
        Some((h, d)) if !h.contains('/') && !h.is_empty() => (Some(h), d),
        _ => (None, s),
    };
    let ds = DatasetName::parse(ds).with_context(|| format!("{s:?}"))?;
    Ok((host, ds))
}

/// The ssh destination of a remote side, with the ssh options.
fn ssh_target(host: &str, a: &SendArgs) -> Result<SshTarget> {
    let mut t = SshTarget::parse(host).map_err(anyhow::Error::msg)?;
    if a.ssh_port.is_some() {
        t.port = a.ssh_port;
    }
    t.identity.clone_from(&a.ssh_key);
    t.options.clone_from(&a.ssh_options);
    Ok(t)
}

pub(crate) fn side(s: &str, a: &SendArgs) -> Result<(Box<dyn Runner>, DatasetName)> {
    let (host, ds) = split_side(s)?;
    let runner: Box<dyn Runner> = match host {
        None => Box::new(LocalRunner::new()),
        Some(h) => Box::new(SshRunner::new(ssh_target(h, a)?)?),
    };
    Ok((runner, ds))
}

/// Connects to the agent on `host` over ssh: `ssh HOST 'zfsrepl' 'serve'
/// '--stdio'` (each argument quoted once; a forced command replaces it).
fn agent_side(host: &str, a: &SendArgs, zfs_bin: &OsString) -> Result<AgentClient> {
    let target = ssh_target(host, a)?;
    let label = target.to_string();
    let mut argv: Vec<OsString> = vec![a.remote_zfsrepl.clone(), "serve".into(), "--stdio".into()];
    if zfs_bin != "zfs" {
        argv.extend(["--zfs".into(), zfs_bin.clone()]);
    }
    let conn = SshConn::start(target, &argv).with_context(|| format!("starting ssh to {label}"))?;
    let stderr = conn.stderr();
    let mut client = AgentClient::connect_with(
        Box::new(conn),
        Some(label.clone()),
        Some(sync_job(a)),
        Some(stderr),
    )
    .with_context(|| format!("the zfsrepl agent on {label}"))?;
    if let Compress::Zstd(level) = a.compress {
        client.set_compression(Some(level));
    }
    Ok(client)
}

/// Bare-ssh compression: only the push leg (a target over ssh), whose host
/// must have `zstd` to decompress.
fn compress_leg(
    src: &ZfsCli<Box<dyn Runner>>,
    dst: &mut ZfsCli<Box<dyn Runner>>,
    level: i32,
) -> Result<()> {
    let remote = |z: &ZfsCli<Box<dyn Runner>>| z.runner().host().label();
    match (remote(src), remote(dst)) {
        (_, Some(host)) => {
            if !dst.has_remote_zstd()? {
                anyhow::bail!(
                    "--compress zstd: {host} has no `zstd` to decompress with; install it, or use --compress none"
                );
            }
            dst.set_receive_compression(Some(level));
        }
        (Some(host), None) => anyhow::bail!(
            "--compress in bare ssh mode compresses a target over ssh; the source {host} is remote (pull) and is sent plain: use --compress none"
        ),
        (None, None) => eprintln!("--compress: both sides are local, nothing to compress"),
    }
    Ok(())
}

/// This run's job and target: `--job` or the source spec, and the target
/// spec, sanitised into snapshot-name characters.
pub(crate) fn sync_job(a: &SendArgs) -> SyncJob {
    SyncJob::new(a.job.as_deref().unwrap_or(&a.src), &a.dst)
}

fn policy(a: &SendArgs, job: &SyncJob) -> ReplicationPolicy {
    let mut policy = ReplicationPolicy {
        force_rollback: a.force_rollback,
        sync_prefix: Some(job.prefix()),
        ..ReplicationPolicy::default()
    };
    if a.all_snapshots {
        policy.initial = InitialPolicy::AllOldestFirst;
    }
    policy
}

/// Takes the sync snapshot (recursively for `-r`) on the source.
fn take_sync_snapshot<Z: ZfsWrite + ?Sized>(
    src: &Z,
    root: &DatasetName,
    name: &str,
    recursive: bool,
) -> Result<()> {
    let snap = root.snapshot(name)?;
    if recursive {
        src.snapshot_recursive(&snap, &[])?;
    } else {
        src.snapshot(std::slice::from_ref(&snap), &[])?;
    }
    Ok(())
}

fn print_plan(out: &mut impl Write, plan: &ReplicationPlan, json: bool) -> Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, plan)?;
        writeln!(out)?;
        return Ok(());
    }
    for d in &plan.datasets {
        match d.conflict() {
            Some(c) => writeln!(out, "{} -> {}: CONFLICT: {c}", d.source, d.target)?,
            None if d.steps().is_empty() => {
                writeln!(out, "{} -> {}: up to date", d.source, d.target)?;
            }
            None => {
                if d.discard_partial_receive {
                    writeln!(out, "{} -> {}: discard partial receive", d.source, d.target)?;
                }
                if let Some(rb) = &d.rollback {
                    writeln!(
                        out,
                        "{} -> {}: rollback -r to {}",
                        d.source, d.target, rb.to
                    )?;
                }
                for s in d.steps() {
                    writeln!(out, "{} -> {}: {s}", d.source, d.target)?;
                }
            }
        }
    }
    Ok(())
}

fn print_report(out: &mut impl Write, report: &ExecReport, json: bool) -> Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    for d in &report.datasets {
        match &d.error {
            None if d.steps_done == 0 => {
                writeln!(out, "{} -> {}: up to date", d.source, d.target)?;
            }
            None => writeln!(
                out,
                "{} -> {}: {} step(s), {} bytes",
                d.source, d.target, d.steps_done, d.bytes
            )?,
            Some(e) => writeln!(out, "{} -> {}: FAILED: {e}", d.source, d.target)?,
        }
        for c in &d.cleaned {
            writeln!(out, "{} -> {}: cleaned {c}", d.source, d.target)?;
        }
        for w in &d.warnings {
            writeln!(out, "{} -> {}: WARNING: {w}", d.source, d.target)?;
        }
    }
    for w in &report.warnings {
        writeln!(out, "WARNING: {w}")?;
    }
    Ok(())
}

/// Progress on a terminal: bytes and rate, and the ETA where the source
/// estimated the step's size. Silent when stderr is not a terminal.
struct TermProgress {
    tty: bool,
    /// The current step's estimate and when the step started.
    step: Mutex<(Option<u64>, Instant)>,
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// One progress line: bytes, rate, and the ETA where the size is known.
fn progress_line(bytes: u64, elapsed: Duration, estimate: Option<u64>) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = bytes as f64 / secs;
    let eta = match estimate {
        Some(total) if rate > 0.0 && total > bytes => {
            format!(", ETA {:.0}s", (total - bytes) as f64 / rate)
        }
        _ => String::new(),
    };
    let of = estimate.map_or(String::new(), |t| format!(" of {:.1}", mib(t)));
    format!(
        "{:.1}{of} MiB, {:.1} MiB/s{eta}",
        mib(bytes),
        rate / 1_048_576.0
    )
}

impl Progress for TermProgress {
    fn update(&self, bytes: u64, elapsed: Duration) {
        if !self.tty {
            return;
        }
        let estimate = self.step.lock().map(|s| s.0).unwrap_or(None);
        eprint!("\r{}      ", progress_line(bytes, elapsed, estimate));
    }
}

impl ExecProgress for TermProgress {
    fn step_started(
        &self,
        source: &DatasetName,
        _target: &DatasetName,
        step: &Step,
        estimate: Option<u64>,
    ) {
        if let Ok(mut s) = self.step.lock() {
            *s = (estimate, Instant::now());
        }
        if self.tty {
            eprintln!("\r{source}: {step}");
        }
    }
}

/// The host part of a `[user@]host:pool/ds` spec, for lock keys.
fn host_of(s: &str) -> Option<&str> {
    match s.split_once(':') {
        Some((h, _)) if !h.contains('/') && !h.is_empty() => Some(h),
        _ => None,
    }
}

/// Runs `zfsrepl send`.
pub fn run(a: SendArgs, zfs_bin: OsString) -> Result<ExitCode> {
    if crate::net_cmd::is_net(&a.src) || crate::net_cmd::is_net(&a.dst) {
        return crate::net_cmd::run_send(&a, &zfs_bin);
    }
    if a.agent {
        return run_agent(&a, &zfs_bin);
    }
    let (sr, src_ds) = side(&a.src, &a)?;
    let (dr, dst_ds) = side(&a.dst, &a)?;
    // Both roots, so that the daemon (or another send or prune) does not
    // act on them meanwhile; a dry run changes nothing and locks nothing.
    let _locks = if a.dry_run {
        Vec::new()
    } else {
        a.lock.dir().try_lock_all(
            [(host_of(&a.src), &src_ds), (host_of(&a.dst), &dst_ds)],
            &format!("zfsrepl send {} {}", a.src, a.dst),
        )?
    };
    let src = ZfsCli::probe(sr, zfs_bin.clone())?;
    let mut dst = ZfsCli::probe(dr, zfs_bin)?;
    if let Compress::Zstd(level) = a.compress {
        compress_leg(&src, &mut dst, level)?;
    }
    replicate(&a, &src, &dst, &src_ds, &dst_ds)
}

/// `zfsrepl send --agent`: remote sides through their agents, local sides
/// through the local `zfs`.
fn run_agent(a: &SendArgs, zfs_bin: &OsString) -> Result<ExitCode> {
    let (sh, src_ds) = split_side(&a.src)?;
    let (dh, dst_ds) = split_side(&a.dst)?;
    let local = || ZfsCli::probe(LocalRunner::new(), zfs_bin.clone());
    match (sh, dh) {
        (None, None) => {
            eprintln!("--agent: both sides are local, no agent involved");
            replicate(a, &local()?, &local()?, &src_ds, &dst_ds)
        }
        (None, Some(d)) => replicate(a, &local()?, &agent_side(d, a, zfs_bin)?, &src_ds, &dst_ds),
        (Some(s), None) => replicate(a, &agent_side(s, a, zfs_bin)?, &local()?, &src_ds, &dst_ds),
        (Some(s), Some(d)) => replicate(
            a,
            &agent_side(s, a, zfs_bin)?,
            &agent_side(d, a, zfs_bin)?,
            &src_ds,
            &dst_ds,
        ),
    }
}

/// Sync snapshot, listing, plan, and (unless a dry run) execution and
/// report, between any two ZFS ends.
pub(crate) fn replicate<S, D>(
    a: &SendArgs,
    src: &S,
    dst: &D,
    src_ds: &DatasetName,
    dst_ds: &DatasetName,
) -> Result<ExitCode>
where
    S: ZfsRead + ZfsWrite + ZfsStream,
    D: ZfsRead + ZfsWrite + ZfsStream,
{
    let (src_ds, dst_ds) = (src_ds.clone(), dst_ds.clone());
    let job = sync_job(a);
    let mut out = std::io::stdout().lock();
    if !a.no_sync_snap {
        let name = job.snapshot_name(jiff::Timestamp::now());
        if a.dry_run {
            if !a.json {
                writeln!(out, "{src_ds}: would take sync snapshot @{name}")?;
            }
        } else {
            take_sync_snapshot(src, &src_ds, &name, a.recursive)?;
        }
    }
    let input = gather_tree_input(src, dst, &src_ds, &dst_ds, a.recursive)?;
    // The plan may only use what both sides support.
    let mut caps = dst.capabilities().clone();
    let s = src.capabilities();
    caps.bookmarks &= s.bookmarks;
    caps.resumable &= s.resumable;
    let plan = plan_tree(&input, &policy(a, &job), &caps);
    if a.dry_run {
        print_plan(&mut out, &plan, a.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let tty = std::io::stderr().is_terminal();
    let progress = TermProgress {
        tty,
        step: Mutex::new((None, Instant::now())),
    };
    let opts = ExecOptions {
        copy: CopyOptions {
            bwlimit: a.bwlimit,
            ..CopyOptions::default()
        },
        sync: (!a.no_hold).then_some(job),
        readonly: a.readonly,
        estimate: tty,
    };
    let report = execute(
        src,
        dst,
        &input,
        &plan,
        &opts,
        &progress,
        &CancelToken::new(),
    );
    if tty {
        eprintln!();
    }
    print_report(&mut out, &report, a.json)?;
    Ok(if report.failures() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_the_eta_only_with_an_estimate() {
        let two_s = Duration::from_secs(2);
        assert_eq!(
            progress_line(4 << 20, two_s, Some(10 << 20)),
            "4.0 of 10.0 MiB, 2.0 MiB/s, ETA 3s"
        );
        // zfs-fuse: no `send -nvP`, bytes and rate only.
        assert_eq!(progress_line(4 << 20, two_s, None), "4.0 MiB, 2.0 MiB/s");
    }

    #[test]
    fn compress_values() {
        assert_eq!(parse_compress("none"), Ok(Compress::None));
        assert_eq!(parse_compress("zstd"), Ok(Compress::Zstd(3)));
        assert_eq!(parse_compress("zstd:19"), Ok(Compress::Zstd(19)));
        assert!(parse_compress("zstd:0").is_err());
        assert!(parse_compress("lz4").is_err());
    }

    #[test]
    fn job_names_default_to_the_source_and_sanitise() {
        let a = SendArgs {
            src: "tank/data".into(),
            dst: "root@ovh3:rpool/b".into(),
            recursive: false,
            dry_run: false,
            json: false,
            all_snapshots: false,
            bwlimit: None,
            ssh_port: None,
            ssh_key: None,
            ssh_options: Vec::new(),
            no_sync_snap: false,
            no_hold: false,
            force_rollback: false,
            job: None,
            readonly: false,
            compress: Compress::None,
            agent: false,
            remote_zfsrepl: "zfsrepl".into(),
            identity: None,
            retries: 0,
            retry_wait: 5,
            tls: crate::net_cmd::TlsArgs {
                psk_file: None,
                tls_versions: zfsrepl_core::transport::tls::TlsVersions::Auto,
                io_timeout: 600,
                dead_peer: 60,
            },
            lock: crate::LockArgs {
                lock_dir: "/run/zfsrepl/locks".into(),
            },
        };
        assert_eq!(
            sync_job(&a).prefix(),
            "zfsrepl_sync_tank-data_root-ovh3:rpool-b_"
        );
        let named = SendArgs {
            job: Some("nightly".into()),
            ..a
        };
        assert_eq!(
            sync_job(&named).hold_tag(),
            "zfsrepl:nightly:root-ovh3:rpool-b"
        );
    }
}
