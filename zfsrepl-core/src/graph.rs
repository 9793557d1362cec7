//! The estate drawn from its policies: hosts, datasets, replication edges
//! (with schedule and transport), snapshots, clones, exports, containers,
//! proxies and stunnel links, as Mermaid (for Markdown) or Graphviz DOT.
//!
//! Each policy is one host's: its datasets and jobs without a host are on
//! the host whose `[host.NAME]` has `transport = "local"` (else on a host
//! named after the file). Host names are taken to mean the same machine
//! across policies, so off2's push to `ovh3:` and ovh3's own policy meet
//! at the same nodes. [`Estate::build`] is pure; so are the renderers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::name::DatasetName;
use crate::policy::targets::ExportBackend;
use crate::policy::{JobKind, Policy, Transport, Trigger};

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A dataset (or a tree of them).
    Dataset,
    /// A staging clone.
    Clone,
    /// An NFS export.
    Export,
    /// An NFS client.
    Client,
    /// A Proxmox container.
    Container,
    /// A proxy serving files.
    Proxy,
}

/// One node, inside its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Stable identifier (letters, digits, `_`).
    pub id: String,
    /// The host it is on (`None`: outside every host, e.g. NFS clients).
    pub host: Option<String>,
    /// What it is.
    pub kind: NodeKind,
    /// What is printed.
    pub label: String,
}

/// What an edge means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// A replication job.
    Replicate,
    /// A clone made from a source's snapshots.
    Clone,
    /// An export of a dataset, or the export serving a client.
    Export,
    /// A container bind mount.
    Mount,
    /// A proxy serving from a dataset.
    Serve,
    /// A stunnel link between hosts.
    Tunnel,
}

/// One edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// From node id (a host id for tunnels).
    pub from: String,
    /// To node id (a host id for tunnels).
    pub to: String,
    /// What it is.
    pub kind: EdgeKind,
    /// What is printed on it.
    pub label: String,
}

/// A host box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostBox {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description, when a policy gives one.
    pub description: Option<String>,
}

/// The whole drawing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Estate {
    /// Hosts, by name.
    pub hosts: Vec<HostBox>,
    /// Nodes, in the order met.
    pub nodes: Vec<Node>,
    /// Edges, in the order met, without duplicates.
    pub edges: Vec<Edge>,
}

fn ident(prefix: &str, parts: &[&str]) -> String {
    let mut s = String::from(prefix);
    for p in parts {
        s.push('_');
        for c in p.chars() {
            if c.is_ascii_alphanumeric() {
                s.push(c);
            } else {
                // Keep ids distinct for names differing only in punctuation.
                let _ = write!(s, "_{:x}_", u32::from(c));
            }
        }
    }
    s
}

/// The host a policy is about: its `transport = "local"` host, else the
/// given fallback (the file stem).
#[must_use]
pub fn local_host(policy: &Policy, fallback: &str) -> String {
    policy
        .hosts
        .iter()
        .find(|h| h.transport == Transport::Local)
        .map_or_else(|| fallback.to_owned(), |h| h.name.clone())
}

#[derive(Default)]
struct Builder {
    estate: Estate,
    index: BTreeMap<String, usize>,
}

impl Builder {
    fn host(&mut self, name: &str, description: Option<&str>) -> String {
        let id = ident("h", &[name]);
        match self.estate.hosts.iter_mut().find(|h| h.name == name) {
            Some(h) => {
                if h.description.is_none() {
                    h.description = description.map(str::to_owned);
                }
            }
            None => self.estate.hosts.push(HostBox {
                id: id.clone(),
                name: name.to_owned(),
                description: description.map(str::to_owned),
            }),
        }
        id
    }

    fn node(&mut self, host: Option<&str>, kind: NodeKind, key: &str, label: &str) -> String {
        if let Some(h) = host {
            self.host(h, None);
        }
        let prefix = match kind {
            NodeKind::Dataset | NodeKind::Clone => "d",
            NodeKind::Export => "e",
            NodeKind::Client => "c",
            NodeKind::Container => "ct",
            NodeKind::Proxy => "p",
        };
        let id = ident(prefix, &[host.unwrap_or("ext"), key]);
        match self.index.get(&id) {
            Some(&i) => {
                let n = &mut self.estate.nodes[i];
                // A dataset later known as a clone is drawn as one, and a
                // policy's own entry labels it better than a reference.
                if kind == NodeKind::Clone {
                    n.kind = NodeKind::Clone;
                }
                if n.label == key && label != key {
                    label.clone_into(&mut n.label);
                }
            }
            None => {
                self.index.insert(id.clone(), self.estate.nodes.len());
                self.estate.nodes.push(Node {
                    id: id.clone(),
                    host: host.map(str::to_owned),
                    kind,
                    label: label.to_owned(),
                });
            }
        }
        id
    }

    fn dataset(&mut self, host: &str, d: &DatasetName) -> String {
        self.node(Some(host), NodeKind::Dataset, d.as_str(), d.as_str())
    }

    fn edge(&mut self, from: String, to: String, kind: EdgeKind, label: String) {
        let e = Edge {
            from,
            to,
            kind,
            label,
        };
        if !self.estate.edges.contains(&e) {
            self.estate.edges.push(e);
        }
    }
}

fn trigger(t: &Trigger) -> String {
    match t {
        Trigger::Schedule(s) => s.to_string(),
        Trigger::After(j) => format!("after {j}"),
    }
}

fn transport(t: Transport) -> &'static str {
    match t {
        Transport::Local => "local",
        Transport::Ssh => "ssh",
        Transport::SshAgent => "ssh agent",
        Transport::Tls => "TLS-PSK",
        Transport::Stunnel => "stunnel PSK",
    }
}

impl Estate {
    /// Draws the estate from `(host name fallback, policy)` pairs.
    #[must_use]
    pub fn build(policies: &[(String, Policy)]) -> Self {
        let mut b = Builder::default();
        // Containers by address, so an NFS client that is one of them is
        // drawn as that container.
        let containers: BTreeMap<&str, (&str, &str, u32)> = policies
            .iter()
            .flat_map(|(_, p)| &p.targets.containers)
            .filter_map(|c| {
                c.address
                    .as_deref()
                    .map(|a| (a, (c.host.as_str(), c.name.as_str(), c.ctid)))
            })
            .collect();
        for (fallback, p) in policies {
            let here = local_host(p, fallback);
            let on = |h: &Option<String>| h.clone().unwrap_or_else(|| here.clone());
            for h in &p.hosts {
                if h.transport == Transport::Local || h.description.is_some() {
                    b.host(&h.name, h.description.as_deref());
                }
            }
            b.host(&here, None);
            // Snapshot schedules by dataset, from snapshot jobs.
            let mut snap_sched: BTreeMap<&DatasetName, String> = BTreeMap::new();
            for j in &p.jobs {
                if j.kind == JobKind::Snapshot {
                    for d in j.datasets.iter().filter(|d| d.host.is_none()) {
                        snap_sched.insert(&d.dataset, trigger(&j.trigger));
                    }
                }
            }
            for d in &p.datasets {
                let c = &d.settings.counts;
                let mut keep = Vec::new();
                for (n, what) in [
                    (c.frequently, "frequent"),
                    (c.hourly, "hourly"),
                    (c.daily, "daily"),
                    (c.weekly, "weekly"),
                    (c.monthly, "monthly"),
                    (c.yearly, "yearly"),
                ] {
                    if n > 0 {
                        keep.push(format!("{n} {what}"));
                    }
                }
                let tree = if d.recursion == crate::policy::Recursion::None {
                    ""
                } else {
                    "/…"
                };
                let mut label = format!("{}{tree}", d.dataset);
                if !keep.is_empty() {
                    let verb = if d.settings.autosnap {
                        "snapshots"
                    } else {
                        "keeps"
                    };
                    let _ = write!(label, "<br/>{verb}: {}", keep.join(", "));
                    if let Some(s) = snap_sched.get(&d.dataset) {
                        let _ = write!(label, " ({s})");
                    }
                }
                b.node(Some(&here), NodeKind::Dataset, d.dataset.as_str(), &label);
            }
            for j in &p.jobs {
                let JobKind::Replicate(r) = &j.kind else {
                    continue;
                };
                let src_host = on(&r.source.host);
                let from = b.dataset(&src_host, &r.source.dataset);
                for t in &r.targets {
                    let to_host = on(&t.host);
                    let to = b.dataset(&to_host, &t.dataset);
                    let remote = if t.host.is_some() {
                        &t.host
                    } else {
                        &r.source.host
                    };
                    let via = remote
                        .as_ref()
                        .and_then(|h| p.hosts.iter().find(|x| &x.name == h))
                        .map_or("local", |h| transport(h.transport));
                    let mut label = format!("{} {}, {via}", j.name, trigger(&j.trigger));
                    if let crate::policy::Compression::Zstd(l) = r.compress {
                        let _ = write!(label, ", zstd:{l}");
                    }
                    b.edge(from.clone(), to, EdgeKind::Replicate, label);
                }
            }
            let t = &p.targets;
            for c in &t.clones {
                let h = on(&c.host);
                let how = match c.snapshot {
                    crate::policy::targets::SnapshotChoice::Newest => "newest",
                    crate::policy::targets::SnapshotChoice::Common => "common",
                    crate::policy::targets::SnapshotChoice::Pattern => "pattern",
                };
                let mut label = format!("clone {} ({how}", c.name);
                if let Some(s) = &c.schedule {
                    let _ = write!(label, ", {s}");
                }
                label.push(')');
                for pair in &c.pairs {
                    let from = b.dataset(&h, &pair.source);
                    let to = b.node(
                        Some(&h),
                        NodeKind::Clone,
                        pair.clone.as_str(),
                        pair.clone.as_str(),
                    );
                    b.edge(from, to, EdgeKind::Clone, label.clone());
                }
            }
            for e in &t.exports {
                let backend = match e.backend {
                    ExportBackend::Ganesha => "nfs-ganesha",
                    ExportBackend::Exportfs => "kernel NFS",
                    ExportBackend::Sharenfs => "sharenfs",
                };
                let ex = b.node(
                    Some(&e.host),
                    NodeKind::Export,
                    &e.name,
                    &format!("NFS export {} ({backend})", e.name),
                );
                for d in &e.datasets {
                    let from = b.dataset(&e.host, d);
                    b.edge(from, ex.clone(), EdgeKind::Export, String::new());
                }
                for c in &e.clients {
                    let to = match containers.get(c.as_str()) {
                        Some((h, name, ctid)) => b.node(
                            Some(h),
                            NodeKind::Container,
                            name,
                            &format!("CT {ctid} {name}"),
                        ),
                        None => b.node(None, NodeKind::Client, c, &format!("NFS client {c}")),
                    };
                    b.edge(ex.clone(), to, EdgeKind::Export, e.options.join(","));
                }
            }
            for ct in &t.containers {
                let node = b.node(
                    Some(&ct.host),
                    NodeKind::Container,
                    &ct.name,
                    &format!("CT {} {}", ct.ctid, ct.name),
                );
                if let Some(r) = &ct.rootfs {
                    let from = b.dataset(&ct.host, r);
                    b.edge(from, node.clone(), EdgeKind::Mount, "rootfs".into());
                }
                for m in &ct.mounts {
                    let from = b.dataset(&ct.host, &m.dataset);
                    b.edge(
                        from,
                        node.clone(),
                        EdgeKind::Mount,
                        format!("mp{} {}", m.index, m.path),
                    );
                }
            }
            for px in &t.proxies {
                let label = match &px.server_name {
                    Some(n) => format!("{} {n}", px.service),
                    None => format!("{} {}", px.service, px.name),
                };
                let node = b.node(Some(&px.host), NodeKind::Proxy, &px.name, &label);
                let from = b.dataset(&px.host, &px.dataset);
                b.edge(from, node, EdgeKind::Serve, format!("serves {}", px.path));
            }
            for tu in &t.tunnels {
                let from = b.host(&tu.client, None);
                let to = b.host(&tu.server, None);
                b.edge(
                    from,
                    to,
                    EdgeKind::Tunnel,
                    format!(
                        "stunnel {} PSK {} :{}",
                        tu.name, tu.psk_identity, tu.server_accept
                    ),
                );
            }
        }
        b.estate
    }

    /// The edges of a kind, as `(from label, to label, edge label)`.
    #[must_use]
    pub fn edges_of(&self, kind: EdgeKind) -> Vec<(String, String, String)> {
        let label = |id: &str| {
            self.nodes
                .iter()
                .find(|n| n.id == id)
                .map(|n| {
                    format!(
                        "{}:{}",
                        n.host.as_deref().unwrap_or("-"),
                        first_line(&n.label)
                    )
                })
                .or_else(|| {
                    self.hosts
                        .iter()
                        .find(|h| h.id == id)
                        .map(|h| h.name.clone())
                })
                .unwrap_or_default()
        };
        self.edges
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| (label(&e.from), label(&e.to), e.label.clone()))
            .collect()
    }

    /// Mermaid `flowchart LR`, one subgraph per host.
    #[must_use]
    pub fn mermaid(&self) -> String {
        let q = |s: &str| s.replace('"', "#quot;");
        let mut out = String::from("flowchart LR\n");
        for h in &self.hosts {
            let title = match &h.description {
                Some(d) => format!("{}<br/><small>{}</small>", h.name, d),
                None => h.name.clone(),
            };
            let _ = writeln!(out, "  subgraph {}[\"{}\"]", h.id, q(&title));
            for n in self
                .nodes
                .iter()
                .filter(|n| n.host.as_deref() == Some(&h.name))
            {
                let _ = writeln!(out, "    {}", mermaid_node(n, &q));
            }
            out.push_str("  end\n");
        }
        for n in self.nodes.iter().filter(|n| n.host.is_none()) {
            let _ = writeln!(out, "  {}", mermaid_node(n, &q));
        }
        for e in &self.edges {
            let arrow = match e.kind {
                EdgeKind::Replicate => "==>",
                EdgeKind::Tunnel => "-.-",
                _ => "-->",
            };
            if e.label.is_empty() {
                let _ = writeln!(out, "  {} {arrow} {}", e.from, e.to);
            } else {
                let _ = writeln!(out, "  {} {arrow}|\"{}\"| {}", e.from, q(&e.label), e.to);
            }
        }
        out
    }

    /// Graphviz DOT, one cluster per host.
    #[must_use]
    pub fn dot(&self) -> String {
        let q = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace("<br/>", "\\n")
        };
        let mut out = String::from(
            "digraph estate {\n  rankdir=LR;\n  compound=true;\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
        );
        for h in &self.hosts {
            let title = match &h.description {
                Some(d) => format!("{}\n{d}", h.name),
                None => h.name.clone(),
            };
            let _ = writeln!(
                out,
                "  subgraph cluster_{} {{\n    label=\"{}\";",
                h.id,
                q(&title)
            );
            // An invisible anchor so host-to-host edges (tunnels) can attach.
            let _ = writeln!(out, "    {} [shape=point, style=invis];", h.id);
            for n in self
                .nodes
                .iter()
                .filter(|n| n.host.as_deref() == Some(&h.name))
            {
                let _ = writeln!(
                    out,
                    "    {} [label=\"{}\"{}];",
                    n.id,
                    q(&n.label),
                    dot_style(n.kind)
                );
            }
            out.push_str("  }\n");
        }
        for n in self.nodes.iter().filter(|n| n.host.is_none()) {
            let _ = writeln!(
                out,
                "  {} [label=\"{}\"{}];",
                n.id,
                q(&n.label),
                dot_style(n.kind)
            );
        }
        for e in &self.edges {
            let style = match e.kind {
                EdgeKind::Replicate => ", penwidth=2, color=darkgreen",
                EdgeKind::Tunnel => ", style=dashed, dir=none, color=gray40",
                EdgeKind::Clone => ", color=orange",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  {} -> {} [label=\"{}\"{style}];",
                e.from,
                e.to,
                q(&e.label)
            );
        }
        out.push_str("}\n");
        out
    }
}

fn first_line(s: &str) -> &str {
    s.split("<br/>").next().unwrap_or(s)
}

fn mermaid_node(n: &Node, q: &dyn Fn(&str) -> String) -> String {
    let l = q(&n.label);
    match n.kind {
        NodeKind::Dataset => format!("{}[(\"{l}\")]", n.id),
        NodeKind::Clone => format!("{}[/\"{l}\"/]", n.id),
        NodeKind::Export => format!("{}{{{{\"{l}\"}}}}", n.id),
        NodeKind::Client => format!("{}([\"{l}\"])", n.id),
        NodeKind::Container => format!("{}[[\"{l}\"]]", n.id),
        NodeKind::Proxy => format!("{}>\"{l}\"]", n.id),
    }
}

fn dot_style(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Dataset => ", shape=cylinder",
        NodeKind::Clone => ", shape=cylinder, style=dashed",
        NodeKind::Export => ", shape=hexagon",
        NodeKind::Client => ", shape=ellipse",
        NodeKind::Container => ", shape=box3d",
        NodeKind::Proxy => ", shape=cds",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::policy::parse_str;

    fn estate(files: &[(&str, &str)]) -> Estate {
        let ps: Vec<(String, Policy)> = files
            .iter()
            .map(|(n, t)| {
                (
                    (*n).to_owned(),
                    parse_str(format!("{n}.toml"), t).unwrap_or_else(|d| panic!("{d}")),
                )
            })
            .collect();
        Estate::build(&ps)
    }

    const A: &str = r#"version = 1
[host.a]
transport = "local"
description = "say \"hi\""
[host.b]
[dataset."tank/x-y"]
hourly = 2
[dataset."tank/x_y"]
hourly = 2
[job.push]
kind = "replicate"
source = "tank/x-y"
targets = ["b:pool/copy"]
schedule = "every 15m"
"#;

    const B: &str = r#"version = 1
[host.b]
transport = "local"
[host.a]
[dataset."pool/copy"]
autosnap = false
daily = 7
[job.pull]
kind = "replicate"
source = "a:tank/x-y"
targets = ["pool/copy"]
schedule = "every 15m"
"#;

    #[test]
    fn policies_meet_at_shared_host_names() {
        let e = estate(&[("a", A), ("b", B)]);
        let hosts: Vec<&str> = e.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["a", "b"]);
        // One node per (host, dataset); punctuation keeps ids apart.
        let ids: Vec<&str> = e.nodes.iter().map(|n| n.id.as_str()).collect();
        let mut dedup = ids.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(ids.len(), dedup.len(), "{ids:?}");
        assert!(
            ids.iter()
                .all(|i| i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        );
        // The push from a and the pull into b are two jobs, one edge each,
        // between the same two nodes; b's own entry labels its dataset.
        let r = e.edges_of(EdgeKind::Replicate);
        assert_eq!(
            r,
            [
                (
                    "a:tank/x-y".to_owned(),
                    "b:pool/copy".to_owned(),
                    "push every 15m, ssh".to_owned()
                ),
                (
                    "a:tank/x-y".to_owned(),
                    "b:pool/copy".to_owned(),
                    "pull every 15m, ssh".to_owned()
                ),
            ]
        );
        let copy = e
            .nodes
            .iter()
            .find(|n| n.label.starts_with("pool/copy"))
            .unwrap();
        // sanoid defaults fill what the entry does not set.
        assert_eq!(
            copy.label,
            "pool/copy<br/>keeps: 48 hourly, 7 daily, 6 monthly"
        );
    }

    #[test]
    fn renderers_escape_what_their_syntax_needs() {
        let e = estate(&[("a", A)]);
        let m = e.mermaid();
        assert!(m.contains("say #quot;hi#quot;"), "{m}");
        assert!(!m.contains("say \"hi\""));
        let d = e.dot();
        assert!(d.contains("say \\\"hi\\\""), "{d}");
        assert!(d.contains("\\n"), "line breaks become \\n in DOT");
        assert!(!d.contains("<br/>"));
        // Every edge endpoint is a declared node or host anchor.
        for edge in &e.edges {
            for id in [&edge.from, &edge.to] {
                assert!(
                    d.contains(&format!("    {id} [")),
                    "{id} is not declared:\n{d}"
                );
            }
        }
    }
}
