//! `zfsrepl`: the command-line face of zfsrepl. Argument parsing and
//! rendering only; everything about ZFS lives in `zfsrepl-core`.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

mod clone_cmd;
mod daemon_cmd;
mod estate_cmd;
mod net_cmd;
mod send_cmd;
mod serve_cmd;
mod snapshot_cmd;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use zfsrepl_core::zfs::{LocalRunner, Runner, SshRunner, SshTarget};
use zfsrepl_core::{Capabilities, Dataset, DatasetName, ListSpec, ZfsCli, ZfsRead};

/// ZFS snapshot and replication engine: snapshots, retention, replication
/// and staging clones from one policy.
///
/// zfsrepl drives the installed `zfs` binary (locally, or on another host over
/// ssh with one reused connection), probes what that ZFS can do and adapts:
/// Debian's zfs-fuse and OpenZFS 2.x are both supported.
///
/// Examples:
///
///   zfsrepl zfs caps                 what the local ZFS can do
///
///   zfsrepl zfs caps root@ovh3       the same for a remote host, over ssh
///
///   zfsrepl list tank/off            datasets and snapshots under tank/off
///
///   zfsrepl list --json              every pool, as JSON
#[derive(Debug, Parser)]
#[command(name = "zfsrepl", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The `zfs` binary to run (on the remote host too, with a HOST).
    #[arg(long, global = true, env = "ZFSREPL_ZFS", default_value = "zfs")]
    zfs: OsString,
    /// Log what runs: -v for each zfs command, -vv for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Talk to ZFS directly.
    #[command(subcommand)]
    Zfs(ZfsCommand),
    /// List datasets and their snapshots with guid, createtxg and creation.
    ///
    /// One `zfs` process per ROOT, however many datasets and snapshots lie
    /// below it. Without ROOTs, lists every pool.
    List(ListArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Take the snapshots the policy says are due now.
    ///
    /// For every dataset the policy governs, each period (yearly ... frequently)
    /// with a count above 0 is due when it has no snapshot yet or its newest
    /// is older than the period's last preferred time (sanoid's rule). All
    /// snapshots of a run share one timestamp. Snapshots of several datasets
    /// with the same name are taken in one atomic `zfs snapshot` per pool
    /// where ZFS can; atomic (recursive) entries use `zfs snapshot -r`.
    ///
    /// Examples:
    ///
    ///   zfsrepl snapshot --dry-run                   what is due, and why
    ///
    ///   zfsrepl snapshot --policy /etc/sanoid/sanoid.conf --now 2026-11-22T05:00:00Z
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Destroy the snapshots the policy no longer keeps.
    ///
    /// Only snapshots zfsrepl owns are candidates: those with the policy's
    /// prefix, or sanoid's `autosnap_*` when the policy continues a sanoid
    /// chain. A snapshot is destroyed only when no rule keeps it (sanoid's
    /// counts, the retention grid, keep-last, keep-regex); held snapshots
    /// are never destroyed, nor what replication still needs according to
    /// the daemon's state (the newest common snapshot with each target).
    /// Datasets another zfsrepl is working on (per-dataset locks) are
    /// skipped. `--dry-run` prints every snapshot with the reasons it is
    /// kept or destroyed.
    ///
    /// Example: zfsrepl prune --dry-run --now 2026-12-01T00:00:00Z
    Prune(snapshot_cmd::PruneArgs),
    /// Nagios check of snapshot freshness (and, with --pools, pool health
    /// and capacity): one line, exit 0 OK, 1 WARNING, 2 CRITICAL.
    ///
    /// For each monitored dataset and each period with a count above 0, the
    /// newest snapshot's age is compared with the policy's `<period>-warn`
    /// and `<period>-crit` thresholds, as `sanoid --monitor-snapshots` does.
    Check(snapshot_cmd::CheckArgs),
    /// Replicate a dataset (with -r, a tree) to another pool or host.
    ///
    /// Source and target are `pool/ds` on this host or `[user@]host:pool/ds`
    /// over ssh (one connection per host). The common base is matched by
    /// guid; the plan sends one `-I` range from it, a full stream the first
    /// time, or reports a conflict (no common base, target diverged or
    /// modified) with both sides' snapshots and changes nothing. Never
    /// `receive -F`; received unmounted, with canmount=noauto.
    ///
    /// Each run first takes a sync snapshot
    /// `zfsrepl_sync_<job>_<target>_<UTC time>` on the source (not with
    /// --no-sync-snap). After a dataset's transfer succeeded, its new base is
    /// held on both sides (tag `zfsrepl:<job>:<target>`), the previous
    /// base released, and this job's older sync snapshots destroyed on both
    /// sides; other jobs' and tools' snapshots are never touched, and a
    /// failed dataset keeps its old base.
    ///
    /// Examples:
    ///
    ///   zfsrepl send --dry-run tank/off backup/off
    ///
    ///   zfsrepl send -r tank/off root@ovh3:rpool/backups/off2
    ///
    ///   zfsrepl send --job off-to-ovh3 --readonly --compress zstd tank/off root@ovh3:rpool/b/off
    ///
    /// With --agent, a remote side is the zfsrepl agent (`zfsrepl serve
    /// --stdio`, the ssh key's forced command) instead of bare `zfs`: the
    /// remote host confines the key to the roots its agent config allows.
    ///
    ///   zfsrepl send --agent --compress zstd -r tank/off backup@ovh3:rpool/b/off
    Send(send_cmd::SendArgs),
    /// Serve the zfsrepl agent protocol to one peer (`zfsrepl send --agent`).
    ///
    /// With --stdio the agent serves one client on standard input and
    /// output: it is meant as an ssh forced command, so that the key can do
    /// nothing but speak the agent protocol within the roots of its config.
    /// In ~/.ssh/authorized_keys of the user that may run `zfs` (one line):
    ///
    ///   command="zfsrepl serve --stdio --config /etc/zfsrepl/agent.toml",restrict ssh-ed25519 AAAA...
    ///
    /// The config (TOML) says what the peer may do; anything else is
    /// refused with an error and logged (to stderr, which ssh passes to the
    /// client) with the identity:
    ///
    ///   identity = "off1"               # a label for logs
    ///
    ///   read-roots = ["tank/off"]       # may list and send from these trees
    ///
    ///   write-roots = ["backup/off1"]   # may receive into these trees
    ///
    ///   allow-destroy = true            # its job's own older sync snapshots
    ///
    ///   allow-rollback = false          # rollback over zfsrepl snapshots, receive -F
    ///
    ///   allow-stream-props = false      # receive `zfs send -p/-R` streams
    ///
    /// Receives are always unmounted where ZFS can; only readonly=on and
    /// canmount=noauto|off may be set; snapshots, holds, bookmarks and
    /// destroys are limited to the client's job's own sync snapshots
    /// (`zfsrepl_sync_<job>_<target>_<time>`). The client runs, for example:
    ///
    ///   zfsrepl send --agent --compress zstd tank/off backup@off2:backup/off1
    ///
    /// With --listen ADDR the agent serves many peers over the network,
    /// authenticated by TLS-PSK with stunnel's secrets file (IDENTITY:KEY
    /// lines, one unique key per link; the file must be owned by this user
    /// and readable by nobody else). --config then names a peers file: one
    /// `[[peer]]` table per PSK identity, with the keys above (identity
    /// required). An identity with no entry, an unknown identity and a
    /// wrong key are refused at the handshake and logged with the identity.
    /// Peers never destroy the newest snapshot of a dataset, a held
    /// snapshot, or anything but their job's own sync snapshots:
    ///
    ///   zfsrepl serve --listen 0.0.0.0:8999 --psk-file /etc/zfsrepl/psk.txt --config /etc/zfsrepl/peers.toml
    ///
    ///   zfsrepl send -r --compress zstd tank/off tls://ovh3:8999/rpool/backups/off2 --psk-file /etc/zfsrepl/psk.txt --identity off2-to-ovh3
    ///
    /// Behind an existing stunnel (which holds the key and passes plain TCP
    /// on), listen plain on loopback with the link's identity:
    ///
    ///   zfsrepl serve --listen 127.0.0.1:9000 --plain --identity off2-to-ovh3 --config /etc/zfsrepl/peers.toml
    ///
    ///   zfsrepl send tank/off stunnel://127.0.0.1:9001/rpool/backups/off2   (a local stunnel client port)
    Serve(serve_cmd::ServeArgs),
    /// Staging clones: writable clones refreshed atomically from snapshots.
    #[command(subcommand)]
    Clone(clone_cmd::CloneCommand),
    /// Run the daemon in the foreground: the policy's jobs on their
    /// schedules, with no cron.
    ///
    /// Jobs (`[job.NAME]` in the policy) snapshot, replicate, prune and
    /// refresh clones on a schedule (`every 15m`, `daily 03:00`, ...) or
    /// after another job (`after = "snap"`: the chain snapshot -> replicate
    /// -> prune). Concurrency is bounded globally, per pool and per remote
    /// host; two jobs never act on one dataset at once (nor a manual `send`
    /// or `prune`: they share per-dataset locks). Transient failures are
    /// retried with exponential backoff. Pruning spares what replication
    /// needs. SIGHUP (or `zfsrepl reload`) re-reads the policy and keeps the
    /// old one if the new has errors; SIGTERM lets running jobs finish up to
    /// `stop-timeout`, then cancels them. Under systemd (Type=notify) it
    /// reports readiness and pings the watchdog.
    ///
    /// Example: zfsrepl daemon --policy /etc/zfsrepl/off2.toml
    Daemon(daemon_cmd::DaemonArgs),
    /// The daemon's jobs: last run, result, next run, lag per target.
    ///
    /// Example: zfsrepl status --watch
    Status(daemon_cmd::StatusArgs),
    /// Ask the daemon to run a job now (even a disabled one).
    Trigger {
        /// The job's name.
        job: String,
        #[command(flatten)]
        socket: daemon_cmd::SocketArgs,
    },
    /// Ask the daemon to re-read its policy files (like SIGHUP); on errors
    /// it keeps the old policy and this prints why.
    Reload {
        #[command(flatten)]
        socket: daemon_cmd::SocketArgs,
    },
    /// Draw the estate from its policies: hosts, datasets, replication
    /// (schedule, transport), clones, exports, containers, proxies, tunnels.
    ///
    /// Each POLICY file is one host's policy (a directory: each *.toml in
    /// it); their host names are taken to mean the same machines, so the
    /// pushes of one host meet the datasets of the next. Mermaid by default
    /// (paste into Markdown), or Graphviz DOT.
    ///
    /// Examples:
    ///
    ///   zfsrepl graph policies/openfoodfacts/
    ///
    ///   zfsrepl graph --format dot off2.toml ovh3.toml | dot -Tsvg > estate.svg
    Graph(estate_cmd::GraphArgs),
    /// List the policy's targets (containers, exports, proxies, tunnels,
    /// clone sections) with the commands that apply each one and the
    /// commands a refresh of each clone section implies; runs nothing.
    ///
    /// Example: zfsrepl targets --policy /etc/zfsrepl/ovh3.toml
    Targets(estate_cmd::TargetsArgs),
    /// Write man pages or shell completions into DIR (for packaging).
    #[command(hide = true)]
    Generate {
        /// `man` (zfsrepl.1 and one page per subcommand) or `completions`
        /// (bash, zsh, fish).
        #[arg(value_parser = ["man", "completions"])]
        what: String,
        /// Output directory (created).
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check policy files and report every problem.
    ///
    /// Each problem is printed as `file:line:col: error: ...` with the source
    /// line and a caret. Exits 0 when the files are valid (warnings are
    /// printed but do not fail), 2 when any has an error.
    ///
    /// Without FILEs, checks /etc/zfsrepl/*.toml.
    Check {
        /// Policy files, read together as one policy.
        #[arg(value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
        /// Print the validated policy (or the problems) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a sanoid.conf into an equivalent zfsrepl policy.
    ///
    /// Snapshots keep sanoid's `autosnap_` names, so the existing chain
    /// continues without a gap and sanoid's snapshots are pruned on
    /// schedule. A policy can also use a sanoid.conf directly with
    /// `sanoid-conf = "/etc/sanoid/sanoid.conf"`.
    ///
    /// Example: zfsrepl policy import-sanoid /etc/sanoid/sanoid.conf -o /etc/zfsrepl/policy.toml
    ImportSanoid {
        /// The sanoid.conf to read.
        #[arg(value_name = "SANOID_CONF")]
        file: std::path::PathBuf,
        /// The time zone sanoid ran in (Debian's timer runs it with TZ=UTC).
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Write the policy here instead of standard output (never
        /// overwrites an existing file).
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ZfsCommand {
    /// Probe and print what the ZFS on HOST (default: this machine) can do.
    ///
    /// The probe runs at most four `zfs` commands and touches no pool. A
    /// missing feature means zfsrepl uses a documented fallback, for example
    /// one `zfs destroy` per snapshot where comma-batched destroy is missing.
    Caps {
        /// `[user@]host[:port]` to probe over ssh.
        host: Option<String>,
        #[command(flatten)]
        ssh: SshArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct SshArgs {
    /// ssh port (overrides HOST's :port).
    #[arg(long, value_name = "PORT")]
    ssh_port: Option<u16>,
    /// ssh private key file.
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<std::path::PathBuf>,
    /// Extra ssh option, as for `ssh -o` (repeatable).
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    ssh_options: Vec<String>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Datasets to list, recursively.
    #[arg(value_name = "ROOT", value_parser = parse_dataset)]
    roots: Vec<DatasetName>,
    /// List on this host over ssh: `[user@]host[:port]`.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    #[command(flatten)]
    ssh: SshArgs,
    /// Only the ROOTs themselves, not their children.
    #[arg(long)]
    no_recursive: bool,
    /// Datasets only, no snapshots.
    #[arg(long)]
    no_snapshots: bool,
    /// Print JSON (exact numbers; creation in seconds since the epoch).
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_dataset(s: &str) -> Result<DatasetName, String> {
    DatasetName::parse(s).map_err(|e| e.to_string())
}

fn runner(host: Option<&str>, ssh: &SshArgs) -> Result<Box<dyn Runner>> {
    let Some(h) = host else {
        return Ok(Box::new(LocalRunner::new()));
    };
    let mut t = SshTarget::parse(h).map_err(anyhow::Error::msg)?;
    if ssh.ssh_port.is_some() {
        t.port = ssh.ssh_port;
    }
    t.identity.clone_from(&ssh.ssh_key);
    t.options.clone_from(&ssh.ssh_options);
    Ok(Box::new(
        SshRunner::new(t).context("preparing ssh control directory")?,
    ))
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no (fallback)" }
}

fn print_caps(c: &Capabilities, host: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<23}{host}", "host:")?;
    writeln!(out, "{:<23}{}", "zfs:", c.flavor)?;
    writeln!(
        out,
        "{:<23}{}",
        "version:",
        c.version.as_deref().unwrap_or("unknown (no `zfs version`)")
    )?;
    let rows = [
        (
            "list -p",
            c.list_parsable,
            "exact listing via `zfs get -Hp -r`",
        ),
        (
            "bookmarks",
            c.bookmarks,
            "incremental bases must stay as snapshots",
        ),
        ("holds", c.holds, "no holds placed"),
        (
            "holds listing",
            c.holds_list,
            "hold counts read from userrefs",
        ),
        (
            "atomic multi-snapshot",
            c.multi_snapshot,
            "`snapshot -r` or one per dataset",
        ),
        (
            "comma destroy",
            c.comma_destroy,
            "one `zfs destroy` per snapshot",
        ),
        (
            "destroy -n",
            c.destroy_dry_run,
            "dry runs are planned, not asked of zfs",
        ),
        ("send -c", c.send_compressed, "uncompressed stream"),
        ("send -L", c.send_large_blocks, "blocks split to 128K"),
        ("send -e", c.send_embedded, "plain blocks"),
        ("send -w (raw)", c.send_raw, "no raw encrypted sends"),
        (
            "send -nvP estimate",
            c.send_estimate,
            "no size estimate before sending",
        ),
        (
            "resumable send/recv",
            c.resumable,
            "interrupted transfers restart",
        ),
        ("recv -u", c.recv_unmounted, "received datasets are mounted"),
        ("recv -o/-x", c.recv_props, "properties received as sent"),
    ];
    for (name, have, fallback) in rows {
        if have {
            writeln!(out, "{:<23}yes", format!("{name}:"))?;
        } else {
            writeln!(out, "{:<23}{}: {fallback}", format!("{name}:"), yes(have))?;
        }
    }
    Ok(())
}

fn fmt_time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(
        |_| secs.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn print_list(datasets: &[Dataset]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<8} {:>20} {:>10} {:<19} {:>8} {:>5}  NAME",
        "TYPE", "GUID", "CREATETXG", "CREATION (UTC)", "USED", "HOLDS"
    )?;
    for d in datasets {
        let kind = match d.kind {
            zfsrepl_core::zfs::DatasetKind::Filesystem => "fs",
            zfsrepl_core::zfs::DatasetKind::Volume => "volume",
        };
        writeln!(
            out,
            "{kind:<8} {:>20} {:>10} {:<19} {:>8} {:>5}  {}",
            d.guid,
            d.createtxg,
            fmt_time(d.creation),
            fmt_bytes(d.used),
            "-",
            d.name
        )?;
        for v in &d.versions {
            let kind = if v.name.is_bookmark() {
                "bookmark"
            } else {
                "snapshot"
            };
            let holds = v.userrefs.map_or_else(|| "-".to_owned(), |n| n.to_string());
            let used = v.used.map_or_else(|| "-".to_owned(), fmt_bytes);
            writeln!(
                out,
                "{kind:<8} {:>20} {:>10} {:<19} {used:>8} {holds:>5}  {}",
                v.guid,
                v.createtxg,
                fmt_time(v.creation),
                v.name
            )?;
        }
    }
    Ok(())
}

pub(crate) fn pools<R: Runner>(zfs: &ZfsCli<R>, bin: &OsString) -> Result<Vec<DatasetName>> {
    let argv = [
        bin.clone(),
        "list".into(),
        "-H".into(),
        "-o".into(),
        "name".into(),
        "-d".into(),
        "0".into(),
    ];
    let out = zfs.runner().run(&argv).context("listing pools")?;
    if !out.status.success() {
        anyhow::bail!("cannot list pools: {}", out.stderr.trim());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| DatasetName::parse(l).map_err(anyhow::Error::from))
        .collect()
}

/// Where per-dataset locks live (shared with the daemon).
#[derive(Debug, Clone, clap::Args)]
pub struct LockArgs {
    /// Directory of per-dataset lock files, shared with the daemon so that
    /// they never act on the same dataset at once.
    #[arg(long, value_name = "DIR", env = "ZFSREPL_LOCK_DIR", default_value = zfsrepl_core::lock::DEFAULT_DIR)]
    pub lock_dir: std::path::PathBuf,
}

impl LockArgs {
    /// The lock directory.
    #[must_use]
    pub fn dir(&self) -> zfsrepl_core::lock::LockDir {
        zfsrepl_core::lock::LockDir::new(&self.lock_dir)
    }
}

/// The policy files to read: those given, or `/etc/zfsrepl/*.toml`.
pub(crate) fn policy_files(given: Vec<std::path::PathBuf>) -> Result<Vec<std::path::PathBuf>> {
    if !given.is_empty() {
        return Ok(given);
    }
    let dir = std::path::Path::new("/etc/zfsrepl");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("no policy files given and cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no policy files given and none in {}", dir.display());
    }
    Ok(files)
}

fn policy_check(files: Vec<std::path::PathBuf>, json: bool) -> Result<ExitCode> {
    let files = policy_files(files)?;
    match zfsrepl_core::policy::load_with_warnings(&files) {
        Ok((policy, warnings)) => {
            if !warnings.0.is_empty() {
                eprintln!("{warnings}\n");
            }
            if json {
                serde_json::to_writer_pretty(std::io::stdout().lock(), &policy)?;
                println!();
            } else {
                for f in &policy.sources {
                    println!("{}: ok", f.display());
                }
                println!(
                    "{} dataset entries, {} warning(s)",
                    policy.datasets.len(),
                    warnings.0.len()
                );
                if !policy.jobs.is_empty() || !policy.hosts.is_empty() {
                    println!(
                        "{} job(s), {} host(s)",
                        policy.jobs.len(),
                        policy.hosts.len()
                    );
                }
                let t = &policy.targets;
                if !t.is_empty() {
                    println!(
                        "{} clone(s), {} container(s), {} export(s), {} proxy(ies), {} tunnel(s)",
                        t.clones.len(),
                        t.containers.len(),
                        t.exports.len(),
                        t.proxies.len(),
                        t.tunnels.len()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            if json {
                serde_json::to_writer_pretty(std::io::stdout().lock(), &diags)?;
                println!();
            }
            eprintln!("{diags}\n");
            eprintln!("zfsrepl: {} error(s) in policy", diags.error_count());
            Ok(ExitCode::from(2))
        }
    }
}

/// `zfsrepl generate man|completions DIR`.
fn generate(what: &str, dir: &std::path::Path) -> Result<ExitCode> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    if what == "man" {
        clap_mangen::generate_to(cmd, dir)?;
    } else {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            clap_complete::generate_to(shell, &mut cmd, "zfsrepl", dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import_sanoid(
    file: &std::path::Path,
    timezone: &str,
    output: Option<&std::path::Path>,
) -> Result<ExitCode> {
    use zfsrepl_core::policy::{Source, parse_str, sanoid};
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (toml, warnings) = match sanoid::import(&Source::new(file, text), timezone) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}\n");
            eprintln!(
                "zfsrepl: {} error(s) in {}",
                d.error_count(),
                file.display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    if !warnings.0.is_empty() {
        eprintln!("{warnings}\n");
    }
    // The result must be a valid policy; anything else is our bug.
    if let Err(d) = parse_str("imported.toml", &toml) {
        anyhow::bail!("the imported policy does not validate (a zfsrepl bug):\n{d}");
    }
    match output {
        Some(out) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)
                .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
            f.write_all(toml.as_bytes())?;
            eprintln!("wrote {}", out.display());
        }
        None => print!("{toml}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Policy(PolicyCommand::Check { files, json }) => return policy_check(files, json),
        Command::Snapshot(a) => return snapshot_cmd::run(a, cli.global.zfs),
        Command::Prune(a) => return snapshot_cmd::prune(a, cli.global.zfs),
        Command::Check(a) => return snapshot_cmd::check(a, cli.global.zfs),
        Command::Send(a) => return net_cmd::send_with_retries(&a, &cli.global.zfs),
        Command::Serve(a) => return serve_cmd::run(&a, cli.global.zfs),
        Command::Clone(c) => return clone_cmd::run(c, cli.global.zfs),
        Command::Daemon(a) => return daemon_cmd::run(a, cli.global.zfs),
        Command::Status(a) => return daemon_cmd::status(&a),
        Command::Trigger { job, socket } => return daemon_cmd::trigger(&socket, &job),
        Command::Reload { socket } => return daemon_cmd::reload(&socket),
        Command::Graph(a) => return estate_cmd::graph(a),
        Command::Targets(a) => return estate_cmd::targets(a),
        Command::Generate { what, dir } => return generate(&what, &dir),
        Command::Policy(PolicyCommand::ImportSanoid {
            file,
            timezone,
            output,
        }) => return import_sanoid(&file, &timezone, output.as_deref()),
        Command::Zfs(ZfsCommand::Caps { host, ssh, json }) => {
            let r = runner(host.as_deref(), &ssh)?;
            let label = r.host().to_string();
            let zfs = ZfsCli::probe(r, cli.global.zfs.clone())?;
            if json {
                serde_json::to_writer_pretty(std::io::stdout().lock(), zfs.capabilities())?;
                println!();
            } else {
                print_caps(zfs.capabilities(), &label)?;
            }
        }
        Command::List(a) => {
            let r = runner(a.host.as_deref(), &a.ssh)?;
            let zfs = ZfsCli::probe(r, cli.global.zfs.clone())?;
            let roots = if a.roots.is_empty() {
                pools(&zfs, &cli.global.zfs)?
            } else {
                a.roots
            };
            let spec = ListSpec {
                roots,
                recursive: !a.no_recursive,
                snapshots: !a.no_snapshots,
                bookmarks: !a.no_snapshots,
                user_props: Vec::new(),
            };
            let datasets = zfs.list(&spec)?;
            if a.json {
                serde_json::to_writer_pretty(std::io::stdout().lock(), &datasets)?;
                println!();
            } else {
                print_list(&datasets)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let daemon = matches!(cli.command, Command::Daemon(_));
    let level = match cli.global.verbose {
        0 if daemon => "info",
        0 => "warn",
        1 => "info,zfsrepl_core=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZFSREPL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Under systemd stderr goes to the journal, which stamps each line
    // itself: no time and no colours there.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .with_ansi(false)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("zfsrepl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
