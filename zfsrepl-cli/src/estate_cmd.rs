//! `zfsrepl graph` and `zfsrepl targets`: the estate around the datasets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use zfsrepl_core::graph::Estate;
use zfsrepl_core::policy::Policy;
use zfsrepl_core::target;

/// Output format of `zfsrepl graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Mermaid flowchart (renders in Markdown on most forges).
    Mermaid,
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// The graph's nodes and edges as JSON.
    Json,
}

/// `zfsrepl graph` arguments.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Host policies: each FILE is one host's policy; a DIRECTORY stands
    /// for every `*.toml` in it, each one host's. Without any, the policy
    /// in /etc/zfsrepl (all files together, this host).
    #[arg(value_name = "POLICY")]
    policies: Vec<PathBuf>,
    /// Same as POLICY (repeatable).
    #[arg(long = "policy", value_name = "FILE")]
    more: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    format: Format,
}

/// `zfsrepl targets` arguments.
#[derive(Debug, Args)]
pub struct TargetsArgs {
    #[command(flatten)]
    policy: crate::snapshot_cmd::PolicyArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn load_one(files: &[PathBuf]) -> Result<Policy> {
    crate::snapshot_cmd::load_policy(&crate::snapshot_cmd::PolicyArgs {
        policies: files.to_vec(),
        now: None,
    })
}

/// Expands directories into their `*.toml` files (sorted).
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "local".to_owned(), |s| s.to_string_lossy().into_owned())
}

/// Runs `zfsrepl graph`.
pub fn graph(a: GraphArgs) -> Result<ExitCode> {
    let given: Vec<PathBuf> = a.policies.into_iter().chain(a.more).collect();
    let mut policies = Vec::new();
    if given.is_empty() {
        let files = crate::policy_files(Vec::new())?;
        policies.push(("local".to_owned(), load_one(&files)?));
    } else {
        for f in expand(&given)? {
            let p = load_one(std::slice::from_ref(&f))?;
            policies.push((stem(&f), p));
        }
    }
    let estate = Estate::build(&policies);
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Mermaid => out.write_all(estate.mermaid().as_bytes())?,
        Format::Dot => out.write_all(estate.dot().as_bytes())?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &estate)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `zfsrepl targets`: each target of the policy, and the commands
/// that apply it and that a refresh of each clone section implies.
pub fn targets(a: TargetsArgs) -> Result<ExitCode> {
    let policy = crate::snapshot_cmd::load_policy(&a.policy)?;
    let address = |h: &str| {
        policy
            .hosts
            .iter()
            .find(|x| x.name == h)
            .map_or_else(|| h.to_owned(), |x| x.address.clone())
    };
    let t = &policy.targets;
    let apply = target::apply_actions(t, &address);
    type Phases = (Vec<target::TargetAction>, Vec<target::TargetAction>);
    let refresh: Vec<(String, Phases)> = t
        .clones
        .iter()
        .map(|c| {
            let clones: Vec<_> = c.clones().cloned().collect();
            (
                c.name.clone(),
                (
                    target::before_swap_actions(t, &c.name, &clones),
                    target::after_swap_actions(t, &c.name, &clones),
                ),
            )
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "targets": t,
            "apply": apply,
            "refresh": refresh.iter().map(|(n, (b, a))| serde_json::json!({"clone": n, "before-swap": b, "after-swap": a})).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if t.is_empty() {
        writeln!(out, "no targets in the policy")?;
        return Ok(ExitCode::SUCCESS);
    }
    let on = |h: Option<&str>| h.unwrap_or("local").to_owned();
    for (c, (_, (before, after))) in t.clones.iter().zip(&refresh) {
        let pairs: Vec<String> = c
            .pairs
            .iter()
            .map(|p| format!("{} -> {}", p.source, p.clone))
            .collect();
        let how = serde_json::to_value(c.snapshot)?;
        writeln!(
            out,
            "clone.{} on {}: {} ({} snapshot{})",
            c.name,
            on(c.host.as_deref()),
            pairs.join(", "),
            how.as_str().unwrap_or_default(),
            c.schedule
                .as_ref()
                .map_or_else(String::new, |s| format!(", {s}"))
        )?;
        if before.is_empty() && after.is_empty() {
            writeln!(out, "  a refresh implies no target action")?;
        }
        for act in before {
            writeln!(out, "  before the swap: {act}")?;
        }
        for act in after {
            writeln!(out, "  after the swap: {act}")?;
        }
    }
    let sections = t
        .containers
        .iter()
        .map(|c| {
            (
                format!("container.{}", c.name),
                format!("CT {} on {}", c.ctid, c.host),
            )
        })
        .chain(t.exports.iter().map(|e| {
            (
                format!("export.{}", e.name),
                format!(
                    "{} to {} on {}",
                    e.paths.join(" "),
                    e.clients.join(" "),
                    e.host
                ),
            )
        }))
        .chain(t.proxies.iter().map(|p| {
            (
                format!("proxy.{}", p.name),
                format!("{} serving {} on {}", p.service, p.path, p.host),
            )
        }))
        .chain(t.tunnels.iter().map(|x| {
            (
                format!("tunnel.{}", x.name),
                format!(
                    "{} -> {}:{} (PSK {})",
                    x.client, x.server, x.server_accept, x.psk_identity
                ),
            )
        }));
    for (name, what) in sections {
        writeln!(out, "{name}: {what}")?;
        for act in apply.iter().filter(|x| x.target == name) {
            writeln!(out, "  apply: {act}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
