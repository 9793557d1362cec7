//! `zfsrepl clone refresh` and `zfsrepl clone list`.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use zfsrepl_core::clone::{
    self, CloneHooks, ClonePair, ClonePlan, CloneReport, CloneSpec, ItemAction, OWNER_PROP,
    Selector,
};
use zfsrepl_core::zfs::LocalRunner;
use zfsrepl_core::{DatasetName, ListSpec, ZfsCli, ZfsRead};

/// Staging clones.
#[derive(Debug, Subcommand)]
pub enum CloneCommand {
    /// Refresh writable clones from the newest snapshots, atomically.
    ///
    /// Each --pair SOURCE=CLONE keeps CLONE a clone of a snapshot of SOURCE.
    /// The new clone is made as CLONE.zfsrepl-new, unmounted; once all are
    /// made (and the --pre-swap hook agreed), each old clone is unmounted and
    /// renamed to `CLONE.zfsrepl-old-<time>`, the new one renamed into place
    /// and mounted, then the old one is destroyed when nothing uses it
    /// (otherwise a later refresh retries).
    /// If anything fails before the swap completes, the previous clones keep
    /// serving. Clones carry the property zfsrepl:clone=NAME; a dataset in
    /// the way without it is never renamed or destroyed: the refresh is
    /// refused instead.
    ///
    /// Examples:
    ///
    ///   zfsrepl clone refresh staging --common --dry-run \
    ///       --pair 'rpool/off/products=rpool/staging/products' \
    ///       --pair 'rpool/off/images=rpool/staging/images'
    ///
    ///   zfsrepl clone refresh nightly --match '_daily$' \
    ///       --pair tank/db=tank/stage/db --export sharenfs='rw=@10.1.0.0/24'
    ///
    /// With --policy, NAME is a [clone.NAME] section of the policy (pairs,
    /// snapshot choice, properties, hooks and host from there), and the
    /// actions the swap implies on the estate run once the new clones are in
    /// place: exports of the clones withdrawn and exported again, container
    /// bind mounts of them set again, proxies serving from them reloaded
    /// (each as an argv on its host; --dry-run lists them):
    ///
    ///   zfsrepl clone refresh staging --policy /etc/zfsrepl/ovh3.toml --dry-run
    Refresh(Box<RefreshArgs>),
    /// List the clones zfsrepl manages under ROOTs (default: every pool).
    List {
        /// Datasets to search, recursively.
        #[arg(value_name = "ROOT", value_parser = crate::parse_dataset)]
        roots: Vec<DatasetName>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `zfsrepl clone refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The spec's name: recorded on its clones as zfsrepl:clone=NAME
    /// (letters, digits, `-`, `_`, `.`).
    name: String,
    /// SOURCE=CLONE (repeatable; ZFS names cannot contain `=`).
    #[arg(long = "pair", value_name = "SOURCE=CLONE", required_unless_present = "policies", value_parser = parse_pair)]
    pairs: Vec<ClonePair>,
    /// Policy file (repeatable): NAME is its [clone.NAME] section, and the
    /// target actions the refresh implies run after the swap.
    #[arg(long = "policy", value_name = "FILE", conflicts_with_all = ["pairs", "common", "pattern", "set", "export", "pre_swap", "post_swap"])]
    policies: Vec<std::path::PathBuf>,
    /// Clone the newest snapshot present in every SOURCE (by name), so all
    /// clones show the same point in time.
    #[arg(long)]
    common: bool,
    /// Only snapshots whose name (after `@`) matches this regular expression.
    #[arg(long = "match", value_name = "REGEX")]
    pattern: Option<regex::Regex>,
    /// Property for the new clones, `zfs clone -o` (repeatable).
    #[arg(long = "set", value_name = "PROP=VALUE", value_parser = parse_prop)]
    set: Vec<(String, String)>,
    /// Property set once a clone is in place, e.g. sharenfs (repeatable).
    #[arg(long = "export", value_name = "PROP=VALUE", value_parser = parse_prop)]
    export: Vec<(String, String)>,
    /// Command (argv, no shell; repeat for each argument) run when the new
    /// clones exist and the old still serve; failing cancels the refresh.
    #[arg(long = "pre-swap", value_name = "ARG", num_args = 1..)]
    pre_swap: Vec<String>,
    /// Command (argv, no shell) run once the new clones are in place.
    #[arg(long = "post-swap", value_name = "ARG", num_args = 1..)]
    post_swap: Vec<String>,
    /// Time limit for each hook, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    hook_timeout: u64,
    /// Print the plan and change nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print the plan and report as JSON.
    #[arg(long)]
    json: bool,
    /// The time of the run (names the old clones; for tests).
    #[arg(long, value_name = "TIME", hide = true)]
    now: Option<jiff::Timestamp>,
}

fn parse_pair(s: &str) -> Result<ClonePair, String> {
    let (a, b) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected SOURCE=CLONE"))?;
    Ok(ClonePair {
        source: DatasetName::parse(a).map_err(|e| e.to_string())?,
        clone: DatasetName::parse(b).map_err(|e| e.to_string())?,
    })
}

fn parse_prop(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PROP=VALUE"))?;
    if k.is_empty() || k == OWNER_PROP {
        return Err(format!("{k:?}: not a property zfsrepl lets you set here"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Runs a `clone` subcommand.
pub fn run(cmd: CloneCommand, zfs_bin: OsString) -> Result<ExitCode> {
    match cmd {
        CloneCommand::Refresh(a) => refresh(*a, zfs_bin),
        CloneCommand::List { roots, json } => list(&roots, json, zfs_bin),
    }
}

fn refresh(a: RefreshArgs, zfs_bin: OsString) -> Result<ExitCode> {
    if !a.policies.is_empty() {
        return refresh_from_policy(a, zfs_bin);
    }
    let spec = CloneSpec {
        name: a.name,
        pairs: a.pairs,
        selector: Selector {
            pattern: a.pattern,
            common: a.common,
        },
        properties: a.set,
        export_properties: a.export,
    };
    spec.validate()?;
    let hooks = CloneHooks {
        pre_swap: (!a.pre_swap.is_empty()).then_some(a.pre_swap),
        post_swap: (!a.post_swap.is_empty()).then_some(a.post_swap),
        timeout: Duration::from_secs(a.hook_timeout),
    };
    let zfs = ZfsCli::probe(LocalRunner::new(), zfs_bin)?;
    let now = a.now.unwrap_or_else(jiff::Timestamp::now);
    let (plan, report) = clone::refresh(&zfs, &spec, &hooks, now, a.dry_run)
        .context("listing the sources and clones")?;
    if a.json {
        let v = serde_json::json!({ "plan": plan, "report": report });
        serde_json::to_writer_pretty(std::io::stdout().lock(), &v)?;
        println!();
    } else {
        print_plan(&plan, a.dry_run)?;
        if let Some(r) = &report {
            print_report(r)?;
        }
    }
    let failed = plan.refused.is_some() || report.as_ref().is_some_and(|r| !r.is_ok());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `zfsrepl clone refresh NAME --policy FILE`.
fn refresh_from_policy(a: RefreshArgs, zfs_bin: OsString) -> Result<ExitCode> {
    use zfsrepl_core::target;
    let policy = crate::snapshot_cmd::load_policy(&crate::snapshot_cmd::PolicyArgs {
        policies: a.policies.clone(),
        now: None,
    })?;
    let Some(section) = policy.targets.clone_named(&a.name) else {
        let names: Vec<&str> = policy
            .targets
            .clones
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        anyhow::bail!(
            "the policy has no [clone.{}] section (it has: {})",
            a.name,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    };
    let spec = section.spec();
    spec.validate()?;
    let mut hooks = section.hooks();
    if a.hook_timeout != 300 {
        hooks.timeout = Duration::from_secs(a.hook_timeout);
    }
    let runner =
        target::host_runner(&policy.hosts, section.host.as_deref()).with_context(|| {
            format!(
                "reaching the clones' host {}",
                section.host.as_deref().unwrap_or("local")
            )
        })?;
    let zfs = ZfsCli::probe(runner, zfs_bin)?;
    let now = a.now.unwrap_or_else(jiff::Timestamp::now);
    let hosts = policy.hosts.clone();
    let runner_for = |h: Option<&str>| target::host_runner(&hosts, h);
    let r = target::refresh_clone(&zfs, &policy.targets, section, now, a.dry_run, &runner_for)
        .context("listing the sources and clones")?;
    if a.json {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &r)?;
        println!();
    } else {
        print_plan(&r.plan, a.dry_run)?;
        let mut out = std::io::stdout().lock();
        if a.dry_run {
            for (k, act) in r.actions.iter().enumerate() {
                let when = if k < r.before { "before" } else { "after" };
                writeln!(out, "{when} the swap would run {act}")?;
            }
        }
        drop(out);
        if let Some(rep) = &r.report {
            print_report(rep)?;
        }
        let mut out = std::io::stdout().lock();
        for o in &r.outcomes {
            match &o.error {
                None => writeln!(out, "ran {}", o.action)?,
                Some(e) => writeln!(out, "FAILED {}: {e}", o.action)?,
            }
        }
    }
    Ok(if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(plan: &ClonePlan, dry_run: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if let Some(why) = &plan.refused {
        writeln!(out, "clone {}: refused: {why}", plan.spec)?;
        return Ok(());
    }
    let verb = if dry_run { "would" } else { "will" };
    for d in &plan.cleanup {
        writeln!(out, "{verb} destroy leftover {d}")?;
    }
    for i in &plan.items {
        match &i.action {
            ItemAction::UpToDate => writeln!(out, "{}: up to date ({})", i.clone, i.snapshot)?,
            ItemAction::Create { .. } => {
                writeln!(out, "{}: {verb} create from {}", i.clone, i.snapshot)?;
            }
            ItemAction::Replace { current_origin, .. } => writeln!(
                out,
                "{}: {verb} replace ({} -> {})",
                i.clone,
                current_origin
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), ToString::to_string),
                i.snapshot
            )?,
        }
    }
    Ok(())
}

fn print_report(r: &CloneReport) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for d in &r.swapped {
        writeln!(out, "{d}: refreshed")?;
    }
    for (d, why) in &r.left_behind {
        writeln!(out, "{d}: left for a later run: {why}")?;
    }
    for (hook, outcome) in &r.hooks {
        if !outcome.is_ok() {
            writeln!(out, "{hook} hook: {outcome:?}")?;
        }
    }
    if let Some(e) = &r.error {
        writeln!(out, "error: {e}")?;
    }
    Ok(())
}

fn list(roots: &[DatasetName], json: bool, zfs_bin: OsString) -> Result<ExitCode> {
    let zfs = ZfsCli::probe(LocalRunner::new(), zfs_bin.clone())?;
    let roots = if roots.is_empty() {
        crate::pools(&zfs, &zfs_bin)?
    } else {
        roots.to_vec()
    };
    let spec = ListSpec {
        roots,
        recursive: true,
        snapshots: false,
        bookmarks: false,
        user_props: vec![OWNER_PROP.to_owned()],
    };
    let ours: Vec<_> = zfs
        .list(&spec)?
        .into_iter()
        .filter(|d| d.origin.is_some() && d.user_props.contains_key(OWNER_PROP))
        .collect();
    if json {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &ours)?;
        println!();
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<16} {:<40} ORIGIN", "SPEC", "CLONE")?;
    for d in &ours {
        let owner = d.user_props.get(OWNER_PROP).map_or("-", String::as_str);
        let origin = d.origin.as_ref().map_or("-", |o| o.as_str());
        if d.name.as_str().contains(clone::OLD_MARK) || d.name.as_str().ends_with(clone::NEW_SUFFIX)
        {
            writeln!(
                out,
                "{:<16} {:<40} {origin} (leftover, removed by the next refresh)",
                owner, d.name
            )?;
        } else {
            writeln!(out, "{:<16} {:<40} {origin}", owner, d.name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
