//! `zfsrepl send`: replicate a dataset (or a tree) to another place, locally
//! or over ssh on either side.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use zfsrepl_core::replication::execute::execute;
use zfsrepl_core::replication::{ReplicationPolicy, TreeInput, plan_tree};
use zfsrepl_core::stream::{CancelToken, CopyOptions};
use zfsrepl_core::zfs::{ListSpec, LocalRunner, SshRunner, SshTarget};
use zfsrepl_core::{DatasetName, Runner, ZfsCli, ZfsErrorKind, ZfsRead};

/// `zfsrepl send` arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Source: `pool/ds` here, or `[user@]host:pool/ds` over ssh.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Target: `pool/ds` here, or `[user@]host:pool/ds` over ssh.
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
}

/// Splits `[user@]host:pool/ds` from `pool/ds`. A `:` counts as the host
/// separator only when no `/` comes before it (so `tank/a:b` is local).
fn side(s: &str, a: &SendArgs) -> Result<(Box<dyn Runner>, DatasetName)> {
    let (host, ds) = match s.split_once(':') {
        Some((h, d)) if !h.contains('/') && !h.is_empty() => (Some(h), d),
        _ => (None, s),
    };
    let ds = DatasetName::parse(ds).with_context(|| format!("{s:?}"))?;
    let runner: Box<dyn Runner> = match host {
        None => Box::new(LocalRunner::new()),
        Some(h) => {
            let mut t = SshTarget::parse(h).map_err(anyhow::Error::msg)?;
            if a.ssh_port.is_some() {
                t.port = a.ssh_port;
            }
            t.identity.clone_from(&a.ssh_key);
            t.options.clone_from(&a.ssh_options);
            Box::new(SshRunner::new(t)?)
        }
    };
    Ok((runner, ds))
}

/// Runs `zfsrepl send`.
pub fn run(a: SendArgs, zfs_bin: OsString) -> Result<ExitCode> {
    let (sr, src_ds) = side(&a.src, &a)?;
    let (dr, dst_ds) = side(&a.dst, &a)?;
    let src = ZfsCli::probe(sr, zfs_bin.clone())?;
    let dst = ZfsCli::probe(dr, zfs_bin)?;
    let spec = |root: &DatasetName| ListSpec {
        recursive: a.recursive,
        ..ListSpec::all(vec![root.clone()])
    };
    let source = src.list(&spec(&src_ds))?;
    let target = match dst.list(&spec(&dst_ds)) {
        Ok(t) => t,
        Err(e) if e.kind == ZfsErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut policy = ReplicationPolicy::default();
    if a.all_snapshots {
        policy.initial = zfsrepl_core::replication::InitialPolicy::AllOldestFirst;
    }
    // The plan may only use what both sides support.
    let mut caps = dst.capabilities().clone();
    let s = src.capabilities();
    caps.bookmarks &= s.bookmarks;
    caps.resumable &= s.resumable;
    let plan = plan_tree(
        &TreeInput {
            source_root: src_ds,
            target_root: dst_ds,
            source,
            target,
            target_modified: Default::default(),
            resume_tokens: Default::default(),
        },
        &policy,
        &caps,
    );
    let mut out = std::io::stdout().lock();
    if a.dry_run {
        if a.json {
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
        } else {
            for d in &plan.datasets {
                match d.conflict() {
                    Some(c) => writeln!(out, "{} -> {}: CONFLICT: {c}", d.source, d.target)?,
                    None if d.steps().is_empty() => {
                        writeln!(out, "{} -> {}: up to date", d.source, d.target)?
                    }
                    None => {
                        for s in d.steps() {
                            writeln!(out, "{} -> {}: {s}", d.source, d.target)?;
                        }
                    }
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = CopyOptions {
        bwlimit: a.bwlimit,
        ..CopyOptions::default()
    };
    let tty = std::io::stderr().is_terminal();
    let progress = move |bytes: u64, elapsed: Duration| {
        if tty {
            let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001) / 1_048_576.0;
            eprint!(
                "\r{:.1} MiB sent, {rate:.1} MiB/s   ",
                bytes as f64 / 1_048_576.0
            );
        }
    };
    let report = execute(
        &src,
        &dst,
        dst.capabilities(),
        &plan,
        &opts,
        &progress,
        &CancelToken::new(),
    );
    if tty {
        eprintln!();
    }
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for d in &report.datasets {
            match &d.error {
                None if d.steps_done == 0 => {
                    writeln!(out, "{} -> {}: up to date", d.source, d.target)?
                }
                None => writeln!(
                    out,
                    "{} -> {}: {} step(s), {} bytes",
                    d.source, d.target, d.steps_done, d.bytes
                )?,
                Some(e) => writeln!(out, "{} -> {}: FAILED: {e}", d.source, d.target)?,
            }
        }
    }
    Ok(if report.failures() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
