//! The estate around the datasets: staging clones, Proxmox containers, NFS
//! exports, proxies and stunnel links, read from a policy's `[clone.NAME]`,
//! `[container.NAME]`, `[export.NAME]`, `[proxy.NAME]` and `[tunnel.NAME]`
//! tables with the same located diagnostics as the rest of the policy.
//!
//! ```toml
//! [clone.staging]
//! host = "ovh3"                       # where the clones live (default: here)
//! snapshot = "common"                 # "newest" (default), "common" or "pattern"
//! pattern = "^autosnap_.*_daily$"     # required with "pattern", optional otherwise
//! schedule = "daily 03:00"             # the daemon's schedule syntax
//! stale-after = "3d"                  # `zfsrepl check` warns about older origins
//! pre-swap = ["/usr/local/bin/staging-ready"]
//! post-swap = ["/usr/local/bin/staging-restart"]
//! hook-timeout = "5m"
//! [clone.staging.pairs]               # source = clone, in order
//! "rpool/off/products" = "rpool/staging/products"
//! "rpool/off/images" = "rpool/staging/images"
//! [clone.staging.properties]          # zfs clone -o
//! readonly = "off"
//! [clone.staging.export-properties]   # set once in place
//! "zfsrepl:note" = "staging"
//!
//! [container.off]
//! host = "off2"
//! ctid = 113
//! address = "10.1.0.113"              # optional: for NFS clients and the graph
//! rootfs = "zfs-nvme/pve/subvol-113-disk-0"
//! [container.off.mounts]
//! mp0 = { dataset = "zfs-hdd/off/products", path = "/mnt/off/products" }
//! mp1 = { dataset = "zfs-hdd/off/images", path = "/mnt/off/images", read-only = true }
//!
//! [export.staging]
//! host = "ovh3"
//! clone = "staging"                   # every clone of [clone.staging]; or dataset = "..."
//! path = "/staging"                   # optional: where they are mounted (default /<dataset>)
//! clients = ["10.1.0.200"]
//! options = ["rw", "no_root_squash"]
//! backend = "ganesha"                 # or "exportfs", "sharenfs"
//! export-id = 100                     # ganesha: first Export_Id
//!
//! [proxy.images]
//! host = "ovh3"
//! service = "nginx"
//! dataset = "rpool/off/images"
//! server-name = "images.openfoodfacts.org"
//! reload = ["/usr/bin/systemctl", "reload", "nginx"]
//!
//! [tunnel.off2-ovh3]
//! client = "off2"                     # runs the stunnel client
//! server = "ovh3"                     # runs the stunnel server
//! client-accept = "127.0.0.1:18023"
//! server-accept = 8023
//! server-connect = "127.0.0.1:22"
//! psk-identity = "off2-ovh3"
//! psk-file = "/etc/stunnel/psk/off2-ovh3.txt"
//! ```
//!
//! Cross-references are checked once every file is read: hosts must be
//! `[host.NAME]` sections, datasets must be governed by a dataset entry (or
//! be a clone source or clone), clones must be `[clone.NAME]` sections.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use serde::Serialize;
use toml::de::DeTable;

use super::diagnostic::{Diagnostic, Severity, Source};
use super::reader::{Cx, Fields, Value};
use super::{DatasetPolicy, Host, Job, JobKind, Origin};
use crate::clone::{CloneHooks, ClonePair, CloneSpec, OWNER_PROP, Selector};
use crate::name::DatasetName;
use crate::schedule::Schedule;

/// The top-level tables this module reads.
pub(crate) const SECTIONS: &[&str] = &["clone", "container", "export", "proxy", "tunnel"];

const CLONE_KEYS: &[&str] = &[
    "host",
    "pairs",
    "snapshot",
    "pattern",
    "properties",
    "export-properties",
    "schedule",
    "stale-after",
    "pre-swap",
    "post-swap",
    "hook-timeout",
];
const CONTAINER_KEYS: &[&str] = &["host", "ctid", "address", "rootfs", "mounts"];
const MOUNT_KEYS: &[&str] = &["dataset", "path", "host-path", "read-only", "backup"];
const EXPORT_KEYS: &[&str] = &[
    "host",
    "dataset",
    "clone",
    "path",
    "clients",
    "options",
    "backend",
    "export-id",
    "pseudo",
    "config",
];
const PROXY_KEYS: &[&str] = &[
    "host",
    "service",
    "dataset",
    "path",
    "server-name",
    "reload",
];
const TUNNEL_KEYS: &[&str] = &[
    "client",
    "server",
    "client-accept",
    "server-accept",
    "server-connect",
    "psk-identity",
    "psk-file",
    "config",
    "reload-client",
    "reload-server",
];

/// NFS export options zfsrepl understands (exportfs spelling).
pub const EXPORT_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "sync",
    "async",
    "root_squash",
    "no_root_squash",
    "all_squash",
    "no_all_squash",
    "subtree_check",
    "no_subtree_check",
    "secure",
    "insecure",
    "crossmnt",
];

/// Default age after which a clone's origin is reported stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(3 * 86_400);

/// Which snapshot a clone section clones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotChoice {
    /// Each source's newest (matching `pattern`, if given).
    Newest,
    /// The newest snapshot common to every source (matching `pattern`).
    Common,
    /// The newest matching `pattern` (required).
    Pattern,
}

/// A `[clone.NAME]` section: a staging clone spec with its host, schedule
/// and hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloneTarget {
    /// The section's name (the clones' `zfsrepl:clone` value).
    pub name: String,
    /// Where the clones live (`None`: where zfsrepl runs).
    pub host: Option<String>,
    /// Source -> clone, in the order written.
    pub pairs: Vec<ClonePair>,
    /// Which snapshot.
    pub snapshot: SnapshotChoice,
    /// Snapshot short-name pattern (a regular expression).
    pub pattern: Option<String>,
    /// `zfs clone -o` properties.
    pub properties: Vec<(String, String)>,
    /// Properties set once a clone is in place.
    pub export_properties: Vec<(String, String)>,
    /// When the clones are refreshed (`daily 03:00`, `every 6h`: the
    /// daemon's schedule syntax); a `[job]` of kind `clone` may run it too.
    pub schedule: Option<Schedule>,
    /// Origins older than this are reported by `zfsrepl check`.
    pub stale_after: Duration,
    /// Run before the swap (argv); failing cancels the refresh.
    pub pre_swap: Option<Vec<String>>,
    /// Run after the swap (argv).
    pub post_swap: Option<Vec<String>>,
    /// Time limit per hook.
    pub hook_timeout: Duration,
    /// Where it is written.
    #[serde(skip)]
    pub origin: Origin,
}

impl CloneTarget {
    /// The planner's spec.
    ///
    /// # Panics
    /// Never for a validated policy (the pattern was compiled when read).
    #[must_use]
    pub fn spec(&self) -> CloneSpec {
        CloneSpec {
            name: self.name.clone(),
            pairs: self.pairs.clone(),
            selector: Selector {
                pattern: self
                    .pattern
                    .as_deref()
                    .and_then(|p| regex::Regex::new(p).ok()),
                common: self.snapshot == SnapshotChoice::Common,
            },
            properties: self.properties.clone(),
            export_properties: self.export_properties.clone(),
        }
    }

    /// The refresh hooks.
    #[must_use]
    pub fn hooks(&self) -> CloneHooks {
        CloneHooks {
            pre_swap: self.pre_swap.clone(),
            post_swap: self.post_swap.clone(),
            timeout: self.hook_timeout,
        }
    }

    /// The clone datasets.
    pub fn clones(&self) -> impl Iterator<Item = &DatasetName> {
        self.pairs.iter().map(|p| &p.clone)
    }
}

/// One Proxmox `mpN` bind mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountPoint {
    /// N of `mpN`.
    pub index: u8,
    /// The dataset mounted.
    pub dataset: DatasetName,
    /// The dataset's path on the host (default `/` + dataset name).
    pub host_path: String,
    /// The path inside the container.
    pub path: String,
    /// Mounted read-only (`ro=1`).
    pub read_only: bool,
    /// Included in vzdump backups (`backup=1`); bind mounts default to no.
    pub backup: bool,
}

impl MountPoint {
    /// The `pct set -mpN` value: `HOST_PATH,mp=PATH[,ro=1][,backup=1]`.
    #[must_use]
    pub fn pct_value(&self) -> String {
        let mut v = format!("{},mp={}", self.host_path, self.path);
        if self.read_only {
            v.push_str(",ro=1");
        }
        if self.backup {
            v.push_str(",backup=1");
        }
        v
    }
}

/// A `[container.NAME]` section: a Proxmox LXC container and its bind
/// mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The section's name.
    pub name: String,
    /// The Proxmox node it runs on.
    pub host: String,
    /// Its CTID (100 and up).
    pub ctid: u32,
    /// Its network address, when other sections name it (an NFS client).
    pub address: Option<String>,
    /// Its root file system subvolume, when on ZFS.
    pub rootfs: Option<DatasetName>,
    /// Its `mpN` bind mounts, by N.
    pub mounts: Vec<MountPoint>,
    /// Where it is written.
    #[serde(skip)]
    pub origin: Origin,
}

/// How an export is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportBackend {
    /// nfs-ganesha (userspace), driven over D-Bus.
    Ganesha,
    /// The kernel server, driven with `exportfs`.
    Exportfs,
    /// The dataset's `sharenfs` property (`zfs share`).
    Sharenfs,
}

/// An `[export.NAME]` section: NFS exports of datasets (or of a clone
/// section's clones) to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// The section's name.
    pub name: String,
    /// The NFS server host.
    pub host: String,
    /// The datasets exported (one, or every clone of `clone`).
    pub datasets: Vec<DatasetName>,
    /// The clone section exported, when it is one.
    pub clone: Option<String>,
    /// The exported path of each dataset: `/` + its name by default; `path`
    /// with `dataset` gives it, `path` with `clone` gives the directory the
    /// clones are mounted in (each at `path/<last name component>`).
    pub paths: Vec<String>,
    /// Client hosts or networks.
    pub clients: Vec<String>,
    /// Options, exportfs spelling.
    pub options: Vec<String>,
    /// Which server.
    pub backend: ExportBackend,
    /// ganesha: the first `Export_Id` (one per dataset, counting up).
    pub export_id: u16,
    /// ganesha: the NFSv4 pseudo path prefix (default: the path).
    pub pseudo: Option<String>,
    /// ganesha: the export configuration file zfsrepl writes.
    pub config: String,
    /// Where it is written.
    #[serde(skip)]
    pub origin: Origin,
}

/// A `[proxy.NAME]` section: a service serving files from a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proxy {
    /// The section's name.
    pub name: String,
    /// Where it runs.
    pub host: String,
    /// The service (e.g. `nginx`).
    pub service: String,
    /// The dataset it serves from.
    pub dataset: DatasetName,
    /// The directory served (default: the dataset's mount point).
    pub path: String,
    /// The public name, for the graph.
    pub server_name: Option<String>,
    /// The command that reloads it (argv).
    pub reload: Vec<String>,
    /// Where it is written.
    #[serde(skip)]
    pub origin: Origin,
}

/// A `[tunnel.NAME]` section: a stunnel TLS-PSK link between two hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tunnel {
    /// The section's name (also the stunnel service name).
    pub name: String,
    /// The host running the stunnel client.
    pub client: String,
    /// The host running the stunnel server.
    pub server: String,
    /// Where the client accepts plain connections (`[ADDR:]PORT`).
    pub client_accept: String,
    /// The server's TLS port.
    pub server_accept: u16,
    /// Where the server forwards to (`[ADDR:]PORT`).
    pub server_connect: String,
    /// The PSK identity of this link.
    pub psk_identity: String,
    /// The PSK file (`identity:key` lines), on both hosts.
    pub psk_file: String,
    /// The stunnel configuration file zfsrepl writes on each side
    /// (default `/etc/stunnel/NAME.conf`, Debian's `stunnel@NAME` unit).
    pub config: String,
    /// Reloads the client side (default: SIGHUP to `stunnel@NAME.service`,
    /// which re-reads the file without dropping established connections).
    pub reload_client: Vec<String>,
    /// Reloads the server side (same default).
    pub reload_server: Vec<String>,
    /// Where it is written.
    #[serde(skip)]
    pub origin: Origin,
}

/// Everything of a policy that is not a dataset entry or a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Targets {
    /// `[clone.NAME]`, by name.
    pub clones: Vec<CloneTarget>,
    /// `[container.NAME]`, by name.
    pub containers: Vec<Container>,
    /// `[export.NAME]`, by name.
    pub exports: Vec<Export>,
    /// `[proxy.NAME]`, by name.
    pub proxies: Vec<Proxy>,
    /// `[tunnel.NAME]`, by name.
    pub tunnels: Vec<Tunnel>,
}

impl Targets {
    /// The clone section named `name`.
    #[must_use]
    pub fn clone_named(&self, name: &str) -> Option<&CloneTarget> {
        self.clones.iter().find(|c| c.name == name)
    }

    /// True when nothing is defined.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.clones.is_empty()
            && self.containers.is_empty()
            && self.exports.is_empty()
            && self.proxies.is_empty()
            && self.tunnels.is_empty()
    }
}

/// A reference to check once all files are read.
#[derive(Debug, Clone)]
enum Ref {
    Host(String),
    /// A dataset, on the section's host (`None`: this host).
    Dataset(DatasetName, Option<String>),
    Clone(String),
}

/// What reading the files collected: the sections, and the references to
/// check.
#[derive(Debug, Default)]
pub(crate) struct RawTargets {
    targets: Targets,
    refs: Vec<(usize, Range<usize>, Ref)>,
    /// The host of the section being read (for its dataset references).
    at: Option<String>,
    /// (kind, name) -> where it is first defined (`file:line:col`), to
    /// refuse duplicates across files.
    seen: BTreeMap<(&'static str, String), String>,
}

fn origin(file: usize, span: &Range<usize>) -> Origin {
    Origin {
        file,
        span: span.clone(),
    }
}

fn section_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl RawTargets {
    /// Reads the target sections of one file's top-level table.
    pub(crate) fn read(&mut self, cx: &mut Cx<'_>, file: usize, top: &mut Fields<'_, '_>) {
        for &kind in SECTIONS {
            let Some(v) = top.get(kind) else { continue };
            let Some(t) = v.get_ref().as_table() else {
                cx.error(
                    v.span(),
                    format!("`{kind}` must be a table of sections: [{kind}.NAME]"),
                );
                continue;
            };
            for (k, sv) in t.iter() {
                let name: &str = k.get_ref();
                let span = k.span();
                if !section_name_ok(name) {
                    cx.error_help(
                        span.clone(),
                        format!("{kind} name {name:?} is not usable"),
                        "use letters, digits, `-`, `_` and `.` (at most 64)",
                    );
                    continue;
                }
                let Some(st) = sv.get_ref().as_table() else {
                    cx.error(
                        sv.span(),
                        format!("{kind} `{name}` must be a table: [{kind}.{name}]"),
                    );
                    continue;
                };
                if let Some(first) = self.seen.get(&(kind, name.to_owned())) {
                    cx.error_help(
                        span.clone(),
                        format!("{kind} `{name}` is defined twice"),
                        format!("the first is at {first}"),
                    );
                    continue;
                }
                let at = cx.src.error(span.clone(), "");
                self.seen.insert(
                    (kind, name.to_owned()),
                    format!("{}:{}:{}", at.file.display(), at.line, at.column),
                );
                let what = format!("{kind} `{name}`");
                match kind {
                    "clone" => self.read_clone(cx, file, name, &span, st, what),
                    "container" => self.read_container(cx, file, name, &span, st, what),
                    "export" => self.read_export(cx, file, name, &span, st, what),
                    "proxy" => self.read_proxy(cx, file, name, &span, st, what),
                    _ => self.read_tunnel(cx, file, name, &span, st, what),
                }
            }
        }
    }

    fn host(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        f: &mut Fields<'_, '_>,
        key: &'static str,
        required: Option<(&str, &Range<usize>)>,
    ) -> Option<String> {
        match f.get(key) {
            Some(v) => {
                let h = cx.string(v, key)?.to_owned();
                self.refs.push((file, v.span(), Ref::Host(h.clone())));
                Some(h)
            }
            None => {
                if let Some((what, span)) = required {
                    cx.error_help(
                        span.clone(),
                        format!("{what} has no `{key}`"),
                        format!("name the [host.NAME] it is on: {key} = \"NAME\""),
                    );
                }
                None
            }
        }
    }

    fn dataset(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        v: &Value<'_>,
        key: &str,
    ) -> Option<DatasetName> {
        let s = cx.string(v, key)?;
        match DatasetName::parse(s) {
            Ok(d) => {
                self.refs
                    .push((file, v.span(), Ref::Dataset(d.clone(), self.at.clone())));
                Some(d)
            }
            Err(e) => {
                cx.error(v.span(), format!("`{key}`: invalid dataset name: {e}"));
                None
            }
        }
    }

    fn read_clone(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        name: &str,
        span: &Range<usize>,
        t: &DeTable<'_>,
        what: String,
    ) {
        let mut f = Fields::new(t, CLONE_KEYS, what.clone());
        let host = self.host(cx, file, &mut f, "host", None);
        self.at.clone_from(&host);
        let mut pairs = Vec::new();
        match f.get("pairs") {
            None => cx.error_help(
                span.clone(),
                format!("{what} has no `pairs`"),
                format!("add [clone.{name}.pairs] with \"pool/source\" = \"pool/clone\" lines"),
            ),
            Some(v) => match v.get_ref().as_table() {
                None => cx.error(
                    v.span(),
                    "`pairs` must be a table of \"source\" = \"clone\" datasets",
                ),
                Some(pt) => {
                    for (k, cv) in pt.iter() {
                        let src = match DatasetName::parse(k.get_ref()) {
                            Ok(d) => d,
                            Err(e) => {
                                cx.error(k.span(), format!("invalid source dataset name: {e}"));
                                continue;
                            }
                        };
                        let Some(s) = cx.string(cv, "pairs") else {
                            continue;
                        };
                        let clone = match DatasetName::parse(s) {
                            Ok(d) => d,
                            Err(e) => {
                                cx.error(cv.span(), format!("invalid clone dataset name: {e}"));
                                continue;
                            }
                        };
                        self.refs
                            .push((file, k.span(), Ref::Dataset(src.clone(), host.clone())));
                        pairs.push(ClonePair { source: src, clone });
                    }
                    if pt.is_empty() {
                        cx.error(v.span(), format!("{what}: `pairs` is empty"));
                    }
                }
            },
        }
        let mut pattern = None;
        if let Some(v) = f.get("pattern")
            && let Some(p) = cx.string(v, "pattern")
        {
            match regex::Regex::new(p) {
                Ok(_) => pattern = Some(p.to_owned()),
                Err(e) => cx.error(
                    v.span(),
                    format!("`pattern` is not a regular expression: {e}"),
                ),
            }
        }
        let snapshot = match f.get("snapshot") {
            None => SnapshotChoice::Newest,
            Some(v) => match cx.string(v, "snapshot") {
                Some("newest") => SnapshotChoice::Newest,
                Some("common") => SnapshotChoice::Common,
                Some("pattern") => {
                    if pattern.is_none() && f.key_span("pattern").is_none() {
                        cx.error_help(
                            v.span(),
                            "`snapshot = \"pattern\"` needs a `pattern`",
                            "for example pattern = \"^autosnap_.*_daily$\"",
                        );
                    }
                    SnapshotChoice::Pattern
                }
                Some(other) => {
                    cx.error_help(
                        v.span(),
                        format!("unknown snapshot choice {other:?}"),
                        "use \"newest\", \"common\" (newest common to every source) or \"pattern\"",
                    );
                    SnapshotChoice::Newest
                }
                None => SnapshotChoice::Newest,
            },
        };
        let properties = props(cx, &mut f, "properties");
        let export_properties = props(cx, &mut f, "export-properties");
        let schedule = f.get("schedule").and_then(|v| {
            let text = cx.string(v, "schedule")?;
            match Schedule::parse(text) {
                Ok(Schedule::Every { interval }) if interval < Duration::from_secs(60) => {
                    cx.error(v.span(), "`schedule`: refresh clones at most once a minute");
                    None
                }
                Ok(x) => Some(x),
                Err(e) => {
                    cx.error_help(
                        v.span(),
                        format!("`schedule`: {e}"),
                        "e.g. \"daily 03:00\", \"every 6h\", \"weekdays 02:30\"",
                    );
                    None
                }
            }
        });
        let stale_after = f
            .get("stale-after")
            .and_then(|v| cx.duration(v, "stale-after"))
            .unwrap_or(DEFAULT_STALE_AFTER);
        let pre_swap = f.get("pre-swap").and_then(|v| cx.argv(v, "pre-swap"));
        let post_swap = f.get("post-swap").and_then(|v| cx.argv(v, "post-swap"));
        let hook_timeout = f
            .get("hook-timeout")
            .and_then(|v| cx.duration(v, "hook-timeout"))
            .unwrap_or(Duration::from_secs(300));
        f.finish(cx);
        let target = CloneTarget {
            name: name.to_owned(),
            host,
            pairs,
            snapshot,
            pattern,
            properties,
            export_properties,
            schedule,
            stale_after,
            pre_swap,
            post_swap,
            hook_timeout,
            origin: origin(file, span),
        };
        if !target.pairs.is_empty()
            && let Err(e) = target.spec().validate()
        {
            cx.error(span.clone(), e.to_string());
        }
        self.targets.clones.push(target);
    }

    fn read_container(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        name: &str,
        span: &Range<usize>,
        t: &DeTable<'_>,
        what: String,
    ) {
        let mut f = Fields::new(t, CONTAINER_KEYS, what.clone());
        let host = self.host(cx, file, &mut f, "host", Some((&what, span)));
        self.at.clone_from(&host);
        let ctid = match f.get("ctid") {
            Some(v) => cx.int(v, "ctid", 100..1_000_000_000),
            None => {
                cx.error_help(
                    span.clone(),
                    format!("{what} has no `ctid`"),
                    "give its Proxmox CTID, e.g. ctid = 113",
                );
                None
            }
        };
        let address = f
            .get("address")
            .and_then(|v| cx.string(v, "address"))
            .map(str::to_owned);
        let rootfs = f
            .get("rootfs")
            .and_then(|v| self.dataset(cx, file, v, "rootfs"));
        let mut mounts: Vec<MountPoint> = Vec::new();
        if let Some(v) = f.get("mounts") {
            match v.get_ref().as_table() {
                None => cx.error(
                    v.span(),
                    "`mounts` must be a table: mp0 = { dataset = \"...\", path = \"...\" }",
                ),
                Some(mt) => {
                    for (k, mv) in mt.iter() {
                        let key: &str = k.get_ref();
                        let index = key
                            .strip_prefix("mp")
                            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                            .and_then(|n| n.parse::<u8>().ok());
                        let Some(index) = index else {
                            cx.error_help(
                                k.span(),
                                format!("mount point `{key}` is not mpN"),
                                "Proxmox names bind mounts mp0, mp1, ... mp255",
                            );
                            continue;
                        };
                        let Some(m) = mv.get_ref().as_table() else {
                            cx.error(
                                mv.span(),
                                format!("`{key}` must be {{ dataset = \"...\", path = \"...\" }}"),
                            );
                            continue;
                        };
                        let mut mf = Fields::new(m, MOUNT_KEYS, format!("{what} mount {key}"));
                        let dataset = mf
                            .get("dataset")
                            .and_then(|v| self.dataset(cx, file, v, "dataset"));
                        let path = mf.get("path").and_then(|v| abs_path(cx, v, "path"));
                        let host_path = mf
                            .get("host-path")
                            .and_then(|v| abs_path(cx, v, "host-path"));
                        let read_only = mf
                            .get("read-only")
                            .and_then(|v| cx.bool(v, "read-only"))
                            .unwrap_or(false);
                        let backup = mf
                            .get("backup")
                            .and_then(|v| cx.bool(v, "backup"))
                            .unwrap_or(false);
                        if mf.key_span("dataset").is_none() {
                            cx.error(k.span(), format!("`{key}` has no `dataset`"));
                        }
                        if mf.key_span("path").is_none() {
                            cx.error(k.span(), format!("`{key}` has no `path`"));
                        }
                        mf.finish(cx);
                        let (Some(dataset), Some(path)) = (dataset, path) else {
                            continue;
                        };
                        if mounts.iter().any(|o| o.path == path) {
                            cx.error(k.span(), format!("two mounts at {path}"));
                        }
                        mounts.push(MountPoint {
                            index,
                            host_path: host_path.unwrap_or_else(|| format!("/{dataset}")),
                            dataset,
                            path,
                            read_only,
                            backup,
                        });
                    }
                }
            }
        }
        f.finish(cx);
        mounts.sort_by_key(|m| m.index);
        let (Some(host), Some(ctid)) = (host, ctid) else {
            return;
        };
        self.targets.containers.push(Container {
            name: name.to_owned(),
            host,
            ctid: u32::try_from(ctid).unwrap_or(u32::MAX),
            address,
            rootfs,
            mounts,
            origin: origin(file, span),
        });
    }

    fn read_export(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        name: &str,
        span: &Range<usize>,
        t: &DeTable<'_>,
        what: String,
    ) {
        let mut f = Fields::new(t, EXPORT_KEYS, what.clone());
        let host = self.host(cx, file, &mut f, "host", Some((&what, span)));
        self.at.clone_from(&host);
        let dataset = f
            .get("dataset")
            .and_then(|v| self.dataset(cx, file, v, "dataset"));
        let clone = f.get("clone").and_then(|v| {
            let c = cx.string(v, "clone")?.to_owned();
            self.refs.push((file, v.span(), Ref::Clone(c.clone())));
            Some(c)
        });
        match (f.key_span("dataset"), f.key_span("clone")) {
            (None, None) => cx.error_help(
                span.clone(),
                format!("{what} exports nothing"),
                "add dataset = \"pool/fs\", or clone = \"NAME\" for every clone of [clone.NAME]",
            ),
            (Some(_), Some(c)) => cx.error(c, "give `dataset` or `clone`, not both"),
            _ => {}
        }
        let path = f.get("path").and_then(|v| abs_path(cx, v, "path"));
        let clients = match f.get("clients") {
            Some(v) => cx.strings(v, "clients").unwrap_or_default(),
            None => {
                cx.error_help(
                    span.clone(),
                    format!("{what} has no `clients`"),
                    "name the hosts or networks allowed, e.g. clients = [\"10.1.0.200\"]",
                );
                Vec::new()
            }
        };
        for (c, sp) in &clients {
            if c.is_empty() || c.contains(|ch: char| ch.is_whitespace() || "(),;\"'".contains(ch)) {
                cx.error(sp.clone(), format!("client {c:?} is not a host or network"));
            }
        }
        let options = f
            .get("options")
            .and_then(|v| cx.strings(v, "options"))
            .unwrap_or_default();
        for (o, sp) in &options {
            if !EXPORT_OPTIONS.contains(&o.as_str()) {
                let help = super::reader::suggest(o, EXPORT_OPTIONS).map_or_else(
                    || format!("known options: {}", EXPORT_OPTIONS.join(", ")),
                    |s| format!("did you mean `{s}`?"),
                );
                cx.error_help(sp.clone(), format!("unknown export option {o:?}"), help);
            }
        }
        if options.iter().any(|(o, _)| o == "rw") && options.iter().any(|(o, _)| o == "ro") {
            cx.error(span.clone(), format!("{what}: both `rw` and `ro`"));
        }
        let backend = match f.get("backend") {
            None => ExportBackend::Ganesha,
            Some(v) => match cx.string(v, "backend") {
                Some("ganesha" | "nfs-ganesha") => ExportBackend::Ganesha,
                Some("exportfs" | "kernel") => ExportBackend::Exportfs,
                Some("sharenfs") => ExportBackend::Sharenfs,
                Some(o) => {
                    cx.error_help(
                        v.span(),
                        format!("unknown export backend {o:?}"),
                        "use \"ganesha\" (nfs-ganesha over D-Bus), \"exportfs\" (kernel server) or \"sharenfs\"",
                    );
                    ExportBackend::Ganesha
                }
                None => ExportBackend::Ganesha,
            },
        };
        let export_id = f
            .get("export-id")
            .and_then(|v| cx.int(v, "export-id", 1..65_536))
            .and_then(|n| u16::try_from(n).ok());
        let pseudo = f.get("pseudo").and_then(|v| abs_path(cx, v, "pseudo"));
        let config = f.get("config").and_then(|v| abs_path(cx, v, "config"));
        if backend != ExportBackend::Ganesha {
            for key in ["export-id", "pseudo", "config"] {
                if let Some(sp) = f.key_span(key) {
                    cx.error(sp, format!("`{key}` is for the ganesha backend only"));
                }
            }
        } else if export_id.is_none() && f.key_span("export-id").is_none() {
            cx.error_help(
                span.clone(),
                format!("{what}: ganesha needs an `export-id`"),
                "a number unique on the server, e.g. export-id = 100",
            );
        }
        f.finish(cx);
        let Some(host) = host else { return };
        self.targets.exports.push(Export {
            name: name.to_owned(),
            host,
            datasets: dataset.into_iter().collect(),
            clone,
            paths: path.into_iter().collect(),
            clients: clients.into_iter().map(|(c, _)| c).collect(),
            options: options.into_iter().map(|(o, _)| o).collect(),
            backend,
            export_id: export_id.unwrap_or(1),
            pseudo,
            config: config.unwrap_or_else(|| format!("/etc/ganesha/zfsrepl/{name}.conf")),
            origin: origin(file, span),
        });
    }

    fn read_proxy(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        name: &str,
        span: &Range<usize>,
        t: &DeTable<'_>,
        what: String,
    ) {
        let mut f = Fields::new(t, PROXY_KEYS, what.clone());
        let host = self.host(cx, file, &mut f, "host", Some((&what, span)));
        self.at.clone_from(&host);
        let service = f
            .get("service")
            .and_then(|v| cx.string(v, "service"))
            .map(str::to_owned);
        let dataset = match f.get("dataset") {
            Some(v) => self.dataset(cx, file, v, "dataset"),
            None => {
                cx.error(span.clone(), format!("{what} has no `dataset`"));
                None
            }
        };
        let path = f.get("path").and_then(|v| abs_path(cx, v, "path"));
        let server_name = f
            .get("server-name")
            .and_then(|v| cx.string(v, "server-name"))
            .map(str::to_owned);
        let reload = match f.get("reload") {
            Some(v) => cx.argv(v, "reload"),
            None => {
                cx.error_help(
                    span.clone(),
                    format!("{what} has no `reload`"),
                    "the argv that reloads it, e.g. reload = [\"/usr/bin/systemctl\", \"reload\", \"nginx\"]",
                );
                None
            }
        };
        f.finish(cx);
        let (Some(host), Some(dataset), Some(reload)) = (host, dataset, reload) else {
            return;
        };
        self.targets.proxies.push(Proxy {
            name: name.to_owned(),
            host,
            service: service.unwrap_or_else(|| "nginx".into()),
            path: path.unwrap_or_else(|| format!("/{dataset}")),
            dataset,
            server_name,
            reload,
            origin: origin(file, span),
        });
    }

    fn read_tunnel(
        &mut self,
        cx: &mut Cx<'_>,
        file: usize,
        name: &str,
        span: &Range<usize>,
        t: &DeTable<'_>,
        what: String,
    ) {
        let mut f = Fields::new(t, TUNNEL_KEYS, what.clone());
        let client = self.host(cx, file, &mut f, "client", Some((&what, span)));
        let server = self.host(cx, file, &mut f, "server", Some((&what, span)));
        let req_str = |f: &mut Fields<'_, '_>, cx: &mut Cx<'_>, key: &'static str| match f.get(key)
        {
            Some(v) => cx.string(v, key).map(str::to_owned),
            None => {
                cx.error(span.clone(), format!("{what} has no `{key}`"));
                None
            }
        };
        let client_accept = req_str(&mut f, cx, "client-accept");
        let server_connect = req_str(&mut f, cx, "server-connect");
        let psk_identity = req_str(&mut f, cx, "psk-identity");
        let psk_file = req_str(&mut f, cx, "psk-file");
        for key in ["client-accept", "server-connect"] {
            if let Some(v) = t.get(key)
                && let Some(s) = v.get_ref().as_str()
                && !endpoint_ok(s)
            {
                cx.error_help(
                    v.span(),
                    format!("`{key}` = {s:?} is not [ADDRESS:]PORT"),
                    "for example \"127.0.0.1:18023\" or \"8023\"",
                );
            }
        }
        if let Some(v) = t.get("psk-file")
            && let Some(s) = v.get_ref().as_str()
            && !s.starts_with('/')
        {
            cx.error(v.span(), "`psk-file` must be an absolute path");
        }
        if let Some(v) = t.get("psk-identity")
            && let Some(s) = v.get_ref().as_str()
            && (s.is_empty() || s.contains(':') || s.contains(char::is_whitespace))
        {
            cx.error(
                v.span(),
                "`psk-identity` must be a word without `:` (the PSK file is identity:key)",
            );
        }
        let server_accept = match f.get("server-accept") {
            Some(v) => cx
                .int(v, "server-accept", 1..65_536)
                .and_then(|n| u16::try_from(n).ok()),
            None => {
                cx.error(span.clone(), format!("{what} has no `server-accept`"));
                None
            }
        };
        let config = f.get("config").and_then(|v| abs_path(cx, v, "config"));
        let default_reload = || {
            vec![
                "/usr/bin/systemctl".to_owned(),
                "kill".to_owned(),
                "--signal=HUP".to_owned(),
                format!("stunnel@{name}.service"),
            ]
        };
        let reload_client = f
            .get("reload-client")
            .and_then(|v| cx.argv(v, "reload-client"))
            .unwrap_or_else(default_reload);
        let reload_server = f
            .get("reload-server")
            .and_then(|v| cx.argv(v, "reload-server"))
            .unwrap_or_else(default_reload);
        f.finish(cx);
        if let (Some(c), Some(s)) = (&client, &server)
            && c == s
        {
            cx.error(
                span.clone(),
                format!("{what}: client and server are both {c}"),
            );
        }
        let (
            Some(client),
            Some(server),
            Some(client_accept),
            Some(server_accept),
            Some(server_connect),
            Some(psk_identity),
            Some(psk_file),
        ) = (
            client,
            server,
            client_accept,
            server_accept,
            server_connect,
            psk_identity,
            psk_file,
        )
        else {
            return;
        };
        self.targets.tunnels.push(Tunnel {
            name: name.to_owned(),
            client,
            server,
            client_accept,
            server_accept,
            server_connect,
            psk_identity,
            psk_file,
            config: config.unwrap_or_else(|| format!("/etc/stunnel/{name}.conf")),
            reload_client,
            reload_server,
            origin: origin(file, span),
        });
    }

    /// Checks the references against every file's hosts, datasets and
    /// clones, and returns the sections sorted by name.
    pub(crate) fn finish(
        mut self,
        sources: &[Source],
        hosts: &[Host],
        datasets: &[DatasetPolicy],
        jobs: &[Job],
        diags: &mut Vec<Diagnostic>,
    ) -> Targets {
        // Datasets on this host that jobs name (replication sources and
        // targets here, snapshot and prune datasets).
        let mut extra_datasets: Vec<DatasetName> = Vec::new();
        for j in jobs {
            extra_datasets.extend(
                j.datasets
                    .iter()
                    .filter(|r| r.host.is_none())
                    .map(|r| r.dataset.clone()),
            );
            if let JobKind::Replicate(r) = &j.kind {
                extra_datasets.extend(
                    std::iter::once(&r.source)
                        .chain(&r.targets)
                        .filter(|r| r.host.is_none())
                        .map(|r| r.dataset.clone()),
                );
            }
        }
        let host_names: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let is_here = |h: Option<&String>| {
            h.is_none_or(|h| h == "local" || hosts.iter().any(|x| &x.name == h && x.is_local()))
        };
        let t = &mut self.targets;
        // Exports of a clone section: its clones.
        for e in &mut t.exports {
            if let Some(c) = &e.clone
                && let Some(ct) = t.clones.iter().find(|x| &x.name == c)
            {
                e.datasets = ct.clones().cloned().collect();
                // `path` with `clone`: where the clones are mounted, each
                // under its last name component.
                if let Some(root) = e.paths.pop() {
                    e.paths = e
                        .datasets
                        .iter()
                        .map(|d| {
                            format!(
                                "{}/{}",
                                root.trim_end_matches('/'),
                                d.as_str().rsplit('/').next().unwrap_or_default()
                            )
                        })
                        .collect();
                }
            }
            if e.paths.is_empty() {
                e.paths = e.datasets.iter().map(|d| format!("/{d}")).collect();
            }
        }
        let clone_names: Vec<&str> = t.clones.iter().map(|c| c.name.as_str()).collect();
        let known = |d: &DatasetName| {
            datasets.iter().any(|p| {
                p.dataset == *d
                    || (p.recursion != super::Recursion::None
                        && d.is_within(&p.dataset)
                        && !p.exclude.iter().any(|x| d.is_within(x)))
            }) || extra_datasets.iter().any(|x| d.is_within(x))
                || t.clones
                    .iter()
                    .any(|c| c.pairs.iter().any(|p| d.is_within(&p.clone)))
        };
        for (file, span, r) in &self.refs {
            let src = &sources[*file];
            match r {
                Ref::Host(h) => {
                    if h != "local" && !host_names.contains(h.as_str()) {
                        let names: Vec<&str> = host_names.iter().copied().collect();
                        diags.push(src.diagnostic(
                            Severity::Error,
                            span.clone(),
                            format!("unknown host `{h}`"),
                            Some(did_you_mean(
                                h,
                                &names,
                                "declare it with [host.NAME] (or write \"local\" for this host); declared",
                            )),
                        ));
                    }
                }
                Ref::Dataset(d, at) => {
                    // Only this host's datasets are known to its policy.
                    if is_here(at.as_ref()) && !known(d) {
                        diags.push(src.diagnostic(
                            Severity::Error,
                            span.clone(),
                            format!("unknown dataset `{d}`"),
                            Some(
                                "no [dataset.\"...\"] entry (or recursive parent), job or clone \
                                 of this policy covers it"
                                    .into(),
                            ),
                        ));
                    }
                }
                Ref::Clone(c) => {
                    if !clone_names.contains(&c.as_str()) {
                        diags.push(src.diagnostic(
                            Severity::Error,
                            span.clone(),
                            format!("unknown clone `{c}`"),
                            Some(did_you_mean(
                                c,
                                &clone_names,
                                "defined [clone.NAME] sections",
                            )),
                        ));
                    }
                }
            }
        }
        // Clone jobs name clone sections.
        for j in jobs {
            if let JobKind::Clone { clones } = &j.kind {
                for c in clones {
                    if !clone_names.contains(&c.as_str()) {
                        diags.push(sources[j.origin.file].diagnostic(
                            Severity::Error,
                            j.origin.span.clone(),
                            format!("clone job `{}`: unknown clone `{c}`", j.name),
                            Some(did_you_mean(
                                c,
                                &clone_names,
                                "defined [clone.NAME] sections",
                            )),
                        ));
                    }
                }
            }
        }
        // A clone section's clones must not be another section's.
        for (i, a) in t.clones.iter().enumerate() {
            for b in &t.clones[i + 1..] {
                for ca in a.clones() {
                    if b.clones().any(|cb| ca.is_within(cb) || cb.is_within(ca)) {
                        diags.push(sources[b.origin.file].error(
                            b.origin.span.clone(),
                            format!("clone {ca} is also managed by [clone.{}]", a.name),
                        ));
                    }
                }
            }
            // The clone property is zfsrepl's.
            if a.properties
                .iter()
                .chain(&a.export_properties)
                .any(|(k, _)| k == OWNER_PROP)
            {
                diags.push(sources[a.origin.file].error(
                    a.origin.span.clone(),
                    format!("`{OWNER_PROP}` is set by zfsrepl; do not set it"),
                ));
            }
        }
        // ganesha export ids are unique per server.
        let mut ids: BTreeMap<(&str, u16), &str> = BTreeMap::new();
        for e in &t.exports {
            if e.backend != ExportBackend::Ganesha {
                continue;
            }
            for k in 0..e.datasets.len() {
                let id = e
                    .export_id
                    .saturating_add(u16::try_from(k).unwrap_or(u16::MAX));
                if let Some(other) = ids.insert((e.host.as_str(), id), &e.name)
                    && other != e.name
                {
                    diags.push(sources[e.origin.file].error(
                        e.origin.span.clone(),
                        format!(
                            "Export_Id {id} on {} is also used by [export.{other}]",
                            e.host
                        ),
                    ));
                }
            }
        }
        // A stunnel host reached through a tunnel of this policy: the
        // tunnel's client side must accept where the host says it listens.
        for tu in &t.tunnels {
            if !is_here(Some(&tu.client)) {
                continue;
            }
            let Some(h) = hosts
                .iter()
                .find(|h| h.name == tu.server && h.transport == super::Transport::Stunnel)
            else {
                continue;
            };
            let (addr, port) = match tu.client_accept.rsplit_once(':') {
                Some((a, p)) => (a, p),
                None => ("", tu.client_accept.as_str()),
            };
            let port_ok = h.port.is_none_or(|p| p.to_string() == port);
            let addr_ok = addr.is_empty() || addr == h.address;
            if !port_ok || !addr_ok {
                diags.push(sources[tu.origin.file].diagnostic(
                    Severity::Error,
                    tu.origin.span.clone(),
                    format!(
                        "tunnel `{}` accepts on {} but [host.{}] is reached through {}:{}",
                        tu.name,
                        tu.client_accept,
                        h.name,
                        h.address,
                        h.port.map_or_else(|| "?".to_owned(), |p| p.to_string())
                    ),
                    Some("make `client-accept` and the host's address:port the same".into()),
                ));
            }
        }
        // Two containers with one CTID on one host.
        for (i, a) in t.containers.iter().enumerate() {
            for b in &t.containers[i + 1..] {
                if a.host == b.host && a.ctid == b.ctid {
                    diags.push(sources[b.origin.file].error(
                        b.origin.span.clone(),
                        format!(
                            "CTID {} on {} is also [container.{}]",
                            b.ctid, b.host, a.name
                        ),
                    ));
                }
            }
        }
        t.clones.sort_by(|a, b| a.name.cmp(&b.name));
        t.containers.sort_by(|a, b| a.name.cmp(&b.name));
        t.exports.sort_by(|a, b| a.name.cmp(&b.name));
        t.proxies.sort_by(|a, b| a.name.cmp(&b.name));
        t.tunnels.sort_by(|a, b| a.name.cmp(&b.name));
        self.targets
    }
}

fn did_you_mean(name: &str, known: &[&str], what: &str) -> String {
    match super::reader::suggest(name, known) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("{what}: none"),
        None => format!("{what}: {}", known.join(", ")),
    }
}

fn props(cx: &mut Cx<'_>, f: &mut Fields<'_, '_>, key: &'static str) -> Vec<(String, String)> {
    let Some(v) = f.get(key) else {
        return Vec::new();
    };
    let Some(t) = v.get_ref().as_table() else {
        cx.error(
            v.span(),
            format!("`{key}` must be a table of property = \"value\""),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, pv) in t.iter() {
        let name: &str = k.get_ref();
        let value = match (pv.get_ref().as_str(), pv.get_ref().as_bool()) {
            (Some(s), _) => s.to_owned(),
            (None, Some(b)) => if b { "on" } else { "off" }.to_owned(),
            _ => {
                cx.error(pv.span(), format!("property `{name}` must be a string"));
                continue;
            }
        };
        if name.is_empty() || name.contains(|c: char| c == '=' || c.is_whitespace()) {
            cx.error(k.span(), format!("`{name}` is not a property name"));
            continue;
        }
        if name == OWNER_PROP {
            cx.error(
                k.span(),
                format!("`{OWNER_PROP}` is set by zfsrepl; do not set it"),
            );
            continue;
        }
        out.push((name.to_owned(), value));
    }
    out
}

fn abs_path(cx: &mut Cx<'_>, v: &Value<'_>, key: &str) -> Option<String> {
    let s = cx.string(v, key)?;
    if !s.starts_with('/') || s.contains('\0') || s.contains(',') {
        cx.error_help(
            v.span(),
            format!("`{key}` = {s:?} must be an absolute path"),
            "start it with `/` (and no `,`, which Proxmox and exportfs read as a separator)",
        );
        return None;
    }
    Some(s.to_owned())
}

fn endpoint_ok(s: &str) -> bool {
    let port = s.rsplit_once(':').map_or(s, |(_, p)| p);
    port.parse::<u16>().is_ok_and(|p| p > 0) && !s.contains(char::is_whitespace)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
