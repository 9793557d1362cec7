//! Actions on the estate around the datasets: Proxmox container mount
//! points, NFS exports, proxies and stunnel links, as argv commands on the
//! host that owns each target.
//!
//! Everything here but [`run`] is pure: [`apply_actions`] says what
//! bringing one target into the state its policy section describes takes,
//! and [`before_swap_actions`] / [`after_swap_actions`] what a clone
//! refresh implies: withdraw the exports of the clones about to be renamed
//! (an NFS server holding one makes `zfs rename` fail), then export the new
//! clones, re-apply container bind mounts of them, reload proxies serving
//! from them. The
//! actions are data: a dry run prints them, [`run`] runs them with one
//! [`Runner`] per host, in order, and reports each outcome.
//!
//! No action goes through a shell. A file an action writes (a ganesha
//! export block, a stunnel configuration) is fed on the standard input of
//! `tee FILE`, so the content is never part of a command line.
//!
//! | target | action | argv |
//! |---|---|---|
//! | container | set a bind mount | `pct set CTID -mpN HOST_PATH,mp=PATH[,ro=1]` |
//! | export (ganesha) | write the EXPORT blocks | `tee CONFIG` (content on stdin) |
//! | export (ganesha) | export / unexport | `dbus-send --system ... ExportMgr.AddExport string:CONFIG string:EXPORT(Export_Id=N)` / `RemoveExport uint16:N` |
//! | export (exportfs) | export / unexport | `exportfs -o OPTS CLIENT:PATH` / `exportfs -u CLIENT:PATH` |
//! | export (sharenfs) | export / unexport | `zfs set sharenfs=rw=@CLIENT,... DATASET` / `zfs set sharenfs=off DATASET` |
//! | proxy | reload | the section's `reload` argv |
//! | tunnel | write each side's config, reload | `tee /etc/stunnel/NAME.conf`, `systemctl kill --signal=HUP stunnel@NAME.service` |

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;

use serde::Serialize;

use crate::name::DatasetName;
use crate::policy::targets::{Container, Export, ExportBackend, Proxy, Targets, Tunnel};
use crate::zfs::runner::{ChildIo, Runner, display_argv};

/// The D-Bus name, object and interface of nfs-ganesha's export manager.
pub const GANESHA_DEST: &str = "org.ganesha.nfsd";
/// The export manager's object path.
pub const GANESHA_OBJECT: &str = "/org/ganesha/nfsd/ExportMgr";
/// The export manager's interface.
pub const GANESHA_IFACE: &str = "org.ganesha.nfsd.exportmgr";

/// What an action does (for plans and reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Set a container's `mpN` bind mount.
    SetMount,
    /// Write a configuration file (content on stdin).
    WriteConfig,
    /// Export a path over NFS.
    Export,
    /// Withdraw an NFS export.
    Unexport,
    /// Reload a service (proxy or stunnel).
    Reload,
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SetMount => "set mount",
            Self::WriteConfig => "write config",
            Self::Export => "export",
            Self::Unexport => "unexport",
            Self::Reload => "reload",
        })
    }
}

/// One command on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetAction {
    /// The host it runs on (`None`: where zfsrepl runs).
    pub host: Option<String>,
    /// The section it belongs to, `kind.NAME` (e.g. `export.staging`).
    pub target: String,
    /// What it does.
    pub kind: ActionKind,
    /// The command (no shell).
    pub argv: Vec<String>,
    /// Fed on the command's standard input (files written with `tee`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Why it runs.
    pub why: String,
}

impl fmt::Display for TargetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let argv: Vec<OsString> = self.argv.iter().map(OsString::from).collect();
        write!(
            f,
            "[{}] {}: {} ({})",
            self.host.as_deref().unwrap_or("local"),
            self.target,
            display_argv(&argv),
            self.why
        )?;
        if let Some(s) = &self.stdin {
            write!(f, " <<{} bytes>>", s.len())?;
        }
        Ok(())
    }
}

fn s(x: impl Into<String>) -> String {
    x.into()
}

fn action(
    host: &str,
    target: String,
    kind: ActionKind,
    argv: Vec<String>,
    why: impl Into<String>,
) -> TargetAction {
    TargetAction {
        host: Some(host.to_owned()),
        target,
        kind,
        argv,
        stdin: None,
        why: why.into(),
    }
}

fn write_file(host: &str, target: String, path: &str, content: String, why: &str) -> TargetAction {
    TargetAction {
        host: Some(host.to_owned()),
        target,
        kind: ActionKind::WriteConfig,
        argv: vec![s("tee"), path.to_owned()],
        stdin: Some(content),
        why: why.to_owned(),
    }
}

/// `pct set CTID -mpN VALUE` for one of the container's mounts.
#[must_use]
pub fn set_mount(ct: &Container, index: u8, why: &str) -> Option<TargetAction> {
    let m = ct.mounts.iter().find(|m| m.index == index)?;
    Some(action(
        &ct.host,
        format!("container.{}", ct.name),
        ActionKind::SetMount,
        vec![
            s("pct"),
            s("set"),
            ct.ctid.to_string(),
            format!("-mp{}", m.index),
            m.pct_value(),
        ],
        why,
    ))
}

/// The `Export_Id` of the `k`th dataset of a ganesha export.
#[must_use]
pub fn export_id(e: &Export, k: usize) -> u16 {
    e.export_id
        .saturating_add(u16::try_from(k).unwrap_or(u16::MAX))
}

/// The ganesha configuration zfsrepl writes for an export section: one
/// `EXPORT` block per dataset (VFS FSAL), with the clients and options.
#[must_use]
pub fn ganesha_config(e: &Export) -> String {
    let has = |o: &str| e.options.iter().any(|x| x == o);
    let access = if has("ro") { "RO" } else { "RW" };
    let squash = if has("no_root_squash") {
        "No_Root_Squash"
    } else if has("all_squash") {
        "All_Squash"
    } else {
        "Root_Squash"
    };
    let mut out = format!(
        "# Written by zfsrepl for [export.{}]; changes are overwritten.\n",
        e.name
    );
    for (k, path) in e.paths.iter().enumerate() {
        let pseudo = match &e.pseudo {
            Some(p) => format!(
                "{}/{}",
                p.trim_end_matches('/'),
                path.rsplit('/').next().unwrap_or_default()
            ),
            None => path.clone(),
        };
        out.push_str(&format!(
            "EXPORT {{\n    Export_Id = {};\n    Path = \"{path}\";\n    Pseudo = \"{pseudo}\";\n    \
             Protocols = 3, 4;\n    Transports = TCP;\n    SecType = sys;\n    Access_Type = None;\n    \
             Squash = {squash};\n    FSAL {{ Name = VFS; }}\n    CLIENT {{\n        Clients = {};\n        \
             Access_Type = {access};\n    }}\n}}\n",
            export_id(e, k),
            e.clients.join(", ")
        ));
    }
    out
}

fn dbus(method: &str, args: Vec<String>) -> Vec<String> {
    let mut v = vec![
        s("dbus-send"),
        s("--system"),
        s("--print-reply"),
        format!("--dest={GANESHA_DEST}"),
        s(GANESHA_OBJECT),
        format!("{GANESHA_IFACE}.{method}"),
    ];
    v.extend(args);
    v
}

/// The value of `sharenfs` for an export (OpenZFS on Linux syntax).
#[must_use]
pub fn sharenfs_value(e: &Export) -> String {
    let access = if e.options.iter().any(|o| o == "ro") {
        "ro"
    } else {
        "rw"
    };
    let clients: Vec<String> = e.clients.iter().map(|c| format!("@{c}")).collect();
    let mut parts = vec![format!("{access}={}", clients.join(":"))];
    parts.extend(
        e.options
            .iter()
            .filter(|o| *o != "rw" && *o != "ro")
            .cloned(),
    );
    parts.join(",")
}

/// Exporting the `k`th dataset of an export.
#[must_use]
pub fn export_one(e: &Export, k: usize, why: &str) -> Vec<TargetAction> {
    let target = format!("export.{}", e.name);
    let (Some(path), Some(ds)) = (e.paths.get(k), e.datasets.get(k)) else {
        return Vec::new();
    };
    match e.backend {
        ExportBackend::Ganesha => vec![action(
            &e.host,
            target,
            ActionKind::Export,
            dbus(
                "AddExport",
                vec![
                    format!("string:{}", e.config),
                    format!("string:EXPORT(Export_Id={})", export_id(e, k)),
                ],
            ),
            why,
        )],
        ExportBackend::Exportfs => {
            let opts = if e.options.is_empty() {
                s("ro")
            } else {
                e.options.join(",")
            };
            e.clients
                .iter()
                .map(|c| {
                    action(
                        &e.host,
                        target.clone(),
                        ActionKind::Export,
                        vec![s("exportfs"), s("-o"), opts.clone(), format!("{c}:{path}")],
                        why,
                    )
                })
                .collect()
        }
        ExportBackend::Sharenfs => vec![action(
            &e.host,
            target,
            ActionKind::Export,
            vec![
                s("zfs"),
                s("set"),
                format!("sharenfs={}", sharenfs_value(e)),
                ds.to_string(),
            ],
            why,
        )],
    }
}

/// Withdrawing the `k`th dataset of an export.
#[must_use]
pub fn unexport_one(e: &Export, k: usize, why: &str) -> Vec<TargetAction> {
    let target = format!("export.{}", e.name);
    let (Some(path), Some(ds)) = (e.paths.get(k), e.datasets.get(k)) else {
        return Vec::new();
    };
    match e.backend {
        ExportBackend::Ganesha => vec![action(
            &e.host,
            target,
            ActionKind::Unexport,
            dbus("RemoveExport", vec![format!("uint16:{}", export_id(e, k))]),
            why,
        )],
        ExportBackend::Exportfs => e
            .clients
            .iter()
            .map(|c| {
                action(
                    &e.host,
                    target.clone(),
                    ActionKind::Unexport,
                    vec![s("exportfs"), s("-u"), format!("{c}:{path}")],
                    why,
                )
            })
            .collect(),
        ExportBackend::Sharenfs => vec![action(
            &e.host,
            target,
            ActionKind::Unexport,
            vec![s("zfs"), s("set"), s("sharenfs=off"), ds.to_string()],
            why,
        )],
    }
}

/// Reloading a proxy.
#[must_use]
pub fn reload_proxy(p: &Proxy, why: &str) -> TargetAction {
    action(
        &p.host,
        format!("proxy.{}", p.name),
        ActionKind::Reload,
        p.reload.clone(),
        why,
    )
}

/// Which side of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The stunnel client (accepts plain connections, connects with TLS).
    Client,
    /// The stunnel server (accepts TLS, forwards plain).
    Server,
}

/// One side's stunnel configuration file: in the foreground without a pid
/// file (as Debian's `stunnel@NAME` unit runs it), one service named after
/// the tunnel. `server_address` is how the client reaches the server host
/// (its address from `[host.NAME]`).
#[must_use]
pub fn stunnel_config(t: &Tunnel, side: Side, server_address: &str) -> String {
    let mut out = format!(
        "; Written by zfsrepl for [tunnel.{}] ({} side); changes are overwritten.\n\
         foreground = yes\npid =\n\n[{}]\n",
        t.name,
        match side {
            Side::Client => "client",
            Side::Server => "server",
        },
        t.name
    );
    match side {
        Side::Client => {
            out.push_str("client = yes\n");
            out.push_str(&format!("accept = {}\n", t.client_accept));
            out.push_str(&format!("connect = {server_address}:{}\n", t.server_accept));
            out.push_str(&format!("PSKidentity = {}\n", t.psk_identity));
        }
        Side::Server => {
            out.push_str(&format!("accept = {}\n", t.server_accept));
            out.push_str(&format!("connect = {}\n", t.server_connect));
        }
    }
    out.push_str(&format!("PSKsecrets = {}\n", t.psk_file));
    out.push_str("ciphers = PSK\n");
    out
}

/// Writing and reloading both sides of a tunnel.
#[must_use]
pub fn tunnel_actions(t: &Tunnel, server_address: &str) -> Vec<TargetAction> {
    let target = format!("tunnel.{}", t.name);
    let path = &t.config;
    vec![
        write_file(
            &t.server,
            target.clone(),
            path,
            stunnel_config(t, Side::Server, server_address),
            "server side of the link",
        ),
        action(
            &t.server,
            target.clone(),
            ActionKind::Reload,
            t.reload_server.clone(),
            "load the server side",
        ),
        write_file(
            &t.client,
            target.clone(),
            path,
            stunnel_config(t, Side::Client, server_address),
            "client side of the link",
        ),
        action(
            &t.client,
            target,
            ActionKind::Reload,
            t.reload_client.clone(),
            "load the client side",
        ),
    ]
}

/// What bringing every target into the state its section describes takes
/// (`zfsrepl targets`): each container's mounts, each export (config, then
/// export), each proxy's reload, each tunnel's configs and reloads.
/// `address(host)` is how other hosts reach `host`.
#[must_use]
pub fn apply_actions(t: &Targets, address: &dyn Fn(&str) -> String) -> Vec<TargetAction> {
    let mut out = Vec::new();
    for ct in &t.containers {
        for m in &ct.mounts {
            out.extend(set_mount(ct, m.index, &format!("bind mount {}", m.dataset)));
        }
    }
    for e in &t.exports {
        if e.backend == ExportBackend::Ganesha {
            out.push(write_file(
                &e.host,
                format!("export.{}", e.name),
                &e.config,
                ganesha_config(e),
                "ganesha EXPORT blocks",
            ));
        }
        for k in 0..e.datasets.len() {
            out.extend(export_one(e, k, &format!("export {}", e.datasets[k])));
        }
    }
    for p in &t.proxies {
        out.push(reload_proxy(p, &format!("serve {}", p.path)));
    }
    for tu in &t.tunnels {
        out.extend(tunnel_actions(tu, &address(&tu.server)));
    }
    out
}

/// What a refresh of the clone section `clone` must do before the clones
/// in `replaced` (each about to be renamed aside) are swapped: withdraw
/// their NFS exports (ganesha `RemoveExport`, `exportfs -u`), because a
/// server holding an exported file system open makes `zfs rename` fail
/// ("target is busy": seen with nfs-ganesha on zfs-fuse, and knfsd holds
/// its exports the same way). `sharenfs` exports move with the dataset and
/// need nothing. Pure.
#[must_use]
pub fn before_swap_actions(
    t: &Targets,
    clone: &str,
    replaced: &[DatasetName],
) -> Vec<TargetAction> {
    let hit = |d: &DatasetName| replaced.iter().any(|c| d.is_within(c));
    let mut out = Vec::new();
    for e in t
        .exports
        .iter()
        .filter(|e| e.backend != ExportBackend::Sharenfs)
    {
        for (k, d) in e.datasets.iter().enumerate() {
            if hit(d) {
                out.extend(unexport_one(
                    e,
                    k,
                    &format!("{d} is about to be swapped by clone {clone}"),
                ));
            }
        }
    }
    out
}

/// What a refresh of the clone section `clone` implies once the clones in
/// `in_place` are where they belong (in this order): their exports written
/// (ganesha) and exported again, so the server opens the new file system;
/// each container bind mount of one set again; each proxy serving from one
/// reloaded. Also what restores the old clones' exports when a swap is
/// abandoned after [`before_swap_actions`] ran. Pure.
#[must_use]
pub fn after_swap_actions(t: &Targets, clone: &str, in_place: &[DatasetName]) -> Vec<TargetAction> {
    let hit = |d: &DatasetName| in_place.iter().any(|c| d.is_within(c));
    let why = |d: &DatasetName| format!("{d} refreshed by clone {clone}");
    let mut out = Vec::new();
    for e in &t.exports {
        let ks: Vec<usize> = (0..e.datasets.len())
            .filter(|&k| hit(&e.datasets[k]))
            .collect();
        if ks.is_empty() {
            continue;
        }
        if e.backend == ExportBackend::Ganesha {
            out.push(write_file(
                &e.host,
                format!("export.{}", e.name),
                &e.config,
                ganesha_config(e),
                "ganesha EXPORT blocks",
            ));
        }
        for k in ks {
            out.extend(export_one(e, k, &why(&e.datasets[k])));
        }
    }
    for ct in &t.containers {
        for m in &ct.mounts {
            if hit(&m.dataset) {
                out.extend(set_mount(ct, m.index, &why(&m.dataset)));
            }
        }
    }
    for p in &t.proxies {
        if hit(&p.dataset) {
            out.push(reload_proxy(p, &why(&p.dataset)));
        }
    }
    out
}

/// Everything a refresh that replaces every clone in `swapped` implies:
/// [`before_swap_actions`] then [`after_swap_actions`] (what `zfsrepl
/// targets` lists). Pure; an empty `swapped` implies nothing.
#[must_use]
pub fn refresh_actions(t: &Targets, clone: &str, swapped: &[DatasetName]) -> Vec<TargetAction> {
    let mut out = before_swap_actions(t, clone, swapped);
    out.extend(after_swap_actions(t, clone, swapped));
    out
}

/// What [`refresh_clone`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CloneRefresh {
    /// The plan.
    pub plan: crate::clone::ClonePlan,
    /// What the refresh did (none on a dry run).
    pub report: Option<crate::clone::CloneReport>,
    /// The target actions, in order: on a dry run those it would run
    /// (the first `before` before the swap), else those it ran.
    pub actions: Vec<TargetAction>,
    /// How many of `actions` come before the swap.
    pub before: usize,
    /// How the actions ran (empty on a dry run).
    pub outcomes: Vec<ActionOutcome>,
}

impl CloneRefresh {
    /// True when nothing was refused and nothing failed.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.plan.refused.is_none()
            && self
                .report
                .as_ref()
                .is_none_or(crate::clone::CloneReport::is_ok)
    }
}

/// Refreshes the policy's clone section `section` on `zfs` (the section's
/// host) at `now`, running the target actions the swap implies on their
/// hosts through `runner`: [`before_swap_actions`] for the clones about to
/// be replaced, [`after_swap_actions`] for those in place (and to restore
/// the previous ones when the swap is abandoned). With `dry_run`, plans
/// and lists the actions, changing nothing.
///
/// # Errors
/// When listing the sources and clones fails.
pub fn refresh_clone<Z: crate::zfs::ZfsRead + crate::zfs::ZfsWrite + ?Sized>(
    zfs: &Z,
    targets: &Targets,
    section: &crate::policy::targets::CloneTarget,
    now: jiff::Timestamp,
    dry_run: bool,
    runner: &RunnerFor<'_>,
) -> crate::zfs::ZfsResult<CloneRefresh> {
    use crate::clone::{self, ItemAction};
    let spec = section.spec();
    let (sources, existing) = clone::list_for(zfs, &spec)?;
    let plan = clone::plan(&clone::CloneInput {
        spec: &spec,
        sources: &sources,
        existing: &existing,
        now,
    });
    let name = section.name.as_str();
    if dry_run || plan.refused.is_some() {
        let mut actions = Vec::new();
        let mut before = 0;
        if plan.refused.is_none() {
            let replaced: Vec<DatasetName> = plan
                .items
                .iter()
                .filter(|i| matches!(i.action, ItemAction::Replace { .. }))
                .map(|i| i.clone.clone())
                .collect();
            let swapping: Vec<DatasetName> = plan
                .items
                .iter()
                .filter(|i| i.action.temp().is_some())
                .map(|i| i.clone.clone())
                .collect();
            actions = before_swap_actions(targets, name, &replaced);
            before = actions.len();
            actions.extend(after_swap_actions(targets, name, &swapping));
        }
        let report = (!dry_run).then(|| clone::execute(zfs, &spec, &plan, &section.hooks()));
        return Ok(CloneRefresh {
            plan,
            report,
            actions,
            before,
            outcomes: Vec::new(),
        });
    }
    let ran = std::cell::RefCell::new((Vec::new(), 0usize, Vec::new()));
    let step = |acts: Vec<TargetAction>, is_before: bool| {
        let out = run(&acts, runner);
        let failed = out.iter().filter(|o| o.error.is_some()).count();
        let mut r = ran.borrow_mut();
        if is_before {
            r.1 += acts.len();
        }
        r.0.extend(acts);
        r.2.extend(out);
        (failed > 0).then(|| format!("{failed} target action(s) failed"))
    };
    let report = clone::execute_with(
        zfs,
        &spec,
        &plan,
        &section.hooks(),
        &mut |r| step(before_swap_actions(targets, name, r), true),
        &mut |s| step(after_swap_actions(targets, name, s), false),
    );
    let (actions, before, outcomes) = ran.into_inner();
    Ok(CloneRefresh {
        plan,
        report: Some(report),
        actions,
        before,
        outcomes,
    })
}

/// The runner for commands on a policy host: this machine for `None`,
/// `local` or a host with `transport = "local"`; ssh to the host's address
/// (user, port, key) for `ssh` and `ssh-agent`; ssh through the local
/// stunnel port for `stunnel` (the link's server side forwards to sshd).
/// zfsrepl's TLS transport carries replication streams only, so a `tls`
/// host cannot run target commands.
///
/// # Errors
/// An unknown host, a `tls` host, or an ssh setup failure.
pub fn host_runner(
    hosts: &[crate::policy::Host],
    name: Option<&str>,
) -> std::io::Result<std::sync::Arc<dyn Runner>> {
    use crate::policy::Transport;
    use crate::zfs::{LocalRunner, SshRunner, SshTarget};
    let Some(name) = name.filter(|n| *n != "local") else {
        return Ok(std::sync::Arc::new(LocalRunner::new()));
    };
    let h = hosts
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| std::io::Error::other(format!("unknown host {name:?}")))?;
    match h.transport {
        Transport::Local => Ok(std::sync::Arc::new(LocalRunner::new())),
        Transport::Ssh | Transport::SshAgent | Transport::Stunnel => {
            let t = SshTarget {
                user: h.user.clone(),
                host: h.address.clone(),
                port: h.port,
                identity: h.ssh_key.clone(),
                ..SshTarget::default()
            };
            Ok(std::sync::Arc::new(SshRunner::new(t)?))
        }
        Transport::Tls => Err(std::io::Error::other(format!(
            "host {name} is reached over zfsrepl's TLS transport, which runs no commands; \
             give it an ssh transport to act on its targets"
        ))),
    }
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    /// The action.
    pub action: TargetAction,
    /// `None` on success, else what went wrong (exit status and stderr).
    pub error: Option<String>,
}

/// Gives the runner for a host (`None`: where zfsrepl runs).
pub type RunnerFor<'a> = dyn Fn(Option<&str>) -> std::io::Result<std::sync::Arc<dyn Runner>> + 'a;

/// Runs actions in order, each on its host's runner (`runner(host)`; an
/// error there fails that action). An action that fails does not stop the
/// others: each target is independent, and the report says which failed.
pub fn run(actions: &[TargetAction], runner: &RunnerFor<'_>) -> Vec<ActionOutcome> {
    let mut runners: BTreeMap<Option<String>, std::sync::Arc<dyn Runner>> = BTreeMap::new();
    actions
        .iter()
        .map(|a| {
            let r = match runners.get(&a.host) {
                Some(r) => Ok(r.clone()),
                None => runner(a.host.as_deref()).inspect(|r| {
                    runners.insert(a.host.clone(), r.clone());
                }),
            };
            let error = match r {
                Err(e) => Some(format!(
                    "no connection to {}: {e}",
                    a.host.as_deref().unwrap_or("local")
                )),
                Ok(r) => run_one(r.as_ref(), a).err(),
            };
            ActionOutcome {
                action: a.clone(),
                error,
            }
        })
        .collect()
}

fn run_one(r: &dyn Runner, a: &TargetAction) -> Result<(), String> {
    let argv: Vec<OsString> = a.argv.iter().map(OsString::from).collect();
    let (status, stderr) = match &a.stdin {
        None => {
            let out = r.run(&argv).map_err(|e| e.to_string())?;
            (out.status, out.stderr)
        }
        Some(content) => {
            let mut child = r.spawn(&argv, ChildIo::Stdin).map_err(|e| e.to_string())?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(content.as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            let fin = child.wait().map_err(|e| e.to_string())?;
            (fin.status, fin.stderr)
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", stderr.trim()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
