//! Every policy under `policies/` (one directory per estate, one file per
//! host) parses and validates without errors or warnings, and the Open
//! Food Facts estate draws the flows of its documentation.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use zfsrepl_core::graph::{EdgeKind, Estate};
use zfsrepl_core::policy::Policy;

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn load(f: &Path) -> Policy {
    match zfsrepl_core::policy::load_with_warnings(&[f.to_path_buf()]) {
        Ok((p, warnings)) => {
            assert!(warnings.0.is_empty(), "{}:\n{warnings}", f.display());
            p
        }
        Err(d) => panic!("{} is invalid:\n{d}", f.display()),
    }
}

/// The estate's host policies, each with its file stem.
fn estate(name: &str) -> Vec<(String, Policy)> {
    let mut files = Vec::new();
    toml_files(&policies_dir().join(name), &mut files);
    files.sort();
    files
        .iter()
        .map(|f| {
            (
                f.file_stem().unwrap().to_string_lossy().into_owned(),
                load(f),
            )
        })
        .collect()
}

#[test]
fn every_shipped_policy_is_valid() {
    let mut files = Vec::new();
    toml_files(&policies_dir(), &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the estates' policies under {}",
        policies_dir().display()
    );
    for f in &files {
        let p = load(f);
        assert!(!p.datasets.is_empty(), "{} has no datasets", f.display());
        // One host policy per file: its own host is declared local.
        assert!(
            p.hosts
                .iter()
                .any(|h| h.is_local() && f.file_stem().is_some_and(|s| *s == *h.name)),
            "{}: declare [host.{}] with transport = \"local\"",
            f.display(),
            f.file_stem().unwrap().to_string_lossy()
        );
    }
}

fn has(edges: &[(String, String, String)], from: &str, to: &str, label: &str) -> bool {
    edges
        .iter()
        .any(|(f, t, l)| f == from && t == to && l.contains(label))
}

#[test]
fn the_openfoodfacts_estate_draws_its_key_edges() {
    let e = Estate::build(&estate("openfoodfacts"));
    let hosts: Vec<&str> = e.hosts.iter().map(|h| h.name.as_str()).collect();
    for h in ["off1", "off2", "ovh1", "ovh2", "ovh3"] {
        assert!(hosts.contains(&h), "{hosts:?}");
    }
    let repl = e.edges_of(EdgeKind::Replicate);
    // off2 -> off1 (same datacentre, ssh) and -> ovh3 (stunnel PSK), per flavor.
    for flavor in ["off", "obf", "opf", "opff", "off-pro"] {
        assert!(
            has(
                &repl,
                &format!("off2:zfs-hdd/{flavor}/…"),
                &format!("off1:zfs-hdd/backups/off2/{flavor}"),
                ", ssh, zstd:3"
            ),
            "{flavor}: {repl:#?}"
        );
        assert!(
            has(
                &repl,
                &format!("off2:zfs-hdd/{flavor}/…"),
                &format!("ovh3:rpool/backups/off2/{flavor}"),
                ", stunnel PSK, zstd:3"
            ),
            "{flavor}: {repl:#?}"
        );
    }
    // Proxmox HA replication every few minutes.
    assert!(
        has(
            &repl,
            "off2:zfs-nvme/pve/…",
            "off1:zfs-nvme/pve/…",
            "ha-pve every 5m, ssh"
        ),
        "{repl:#?}"
    );
    assert!(
        has(
            &repl,
            "ovh1:rpool/data/…",
            "ovh2:rpool/data",
            "ha after snap, ssh"
        ),
        "{repl:#?}"
    );
    // Staging clones of products and images on ovh3, from the replicas.
    let clones = e.edges_of(EdgeKind::Clone);
    assert!(has(
        &clones,
        "ovh3:rpool/backups/off2/off/products",
        "ovh3:rpool/staging/off/products",
        "clone staging (common, daily 04:00)"
    ));
    assert!(has(
        &clones,
        "ovh3:rpool/backups/off2/off/images",
        "ovh3:rpool/staging/off/images",
        "clone staging"
    ));
    // Exported over NFS to the staging VM.
    let exports = e.edges_of(EdgeKind::Export);
    assert!(has(
        &exports,
        "ovh3:rpool/staging/off/products",
        "ovh3:NFS export staging (nfs-ganesha)",
        ""
    ));
    // The client is the staging container on ovh1 (seed 001: 10.1.0.CTID).
    assert!(has(
        &exports,
        "ovh3:NFS export staging (nfs-ganesha)",
        "ovh1:CT 200 staging",
        "rw,no_root_squash"
    ));
    // NGINX serving images from the replicated dataset on ovh3, and on off2.
    let serve = e.edges_of(EdgeKind::Serve);
    assert!(has(
        &serve,
        "ovh3:rpool/backups/off2/off/images",
        "ovh3:nginx images.openfoodfacts.org",
        "serves /rpool/backups/off2/off/images/products"
    ));
    assert!(has(
        &serve,
        "off2:zfs-hdd/off/images",
        "off2:nginx images.openfoodfacts.org",
        ""
    ));
    // Bind mounts into the flavor containers.
    let mounts = e.edges_of(EdgeKind::Mount);
    assert!(has(
        &mounts,
        "off2:zfs-hdd/off/products",
        "off2:CT 113 off",
        "mp0 /mnt/off/products"
    ));
    assert!(has(
        &mounts,
        "off2:zfs-hdd/off-pro/images",
        "off2:CT 113 off",
        "mp5 /mnt/off-pro/images"
    ));
    // The stunnel link, drawn once though both hosts' policies define it.
    let tunnels = e.edges_of(EdgeKind::Tunnel);
    assert_eq!(
        tunnels,
        [(
            "off2".to_owned(),
            "ovh3".to_owned(),
            "stunnel off2-ovh3 PSK off2-ovh3 :8470".to_owned()
        )]
    );
    // Mermaid: a flowchart with one subgraph per host.
    let m = e.mermaid();
    assert!(m.starts_with("flowchart LR\n"));
    assert_eq!(m.matches("\n  subgraph ").count(), hosts.len());
    assert_eq!(m.matches("\n  end\n").count(), hosts.len());
}

#[test]
fn the_dot_output_parses_with_graphviz() {
    use std::io::Write;
    for name in ["openfoodfacts", "webplatform"] {
        let dot = Estate::build(&estate(name)).dot();
        let mut child = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("graphviz `dot` must be installed (apt-get install graphviz; .ci/run does)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: dot refused the graph: {}\n{dot}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = String::from_utf8(out.stdout).unwrap();
        assert!(svg.contains("<svg"), "{name}");
        assert!(svg.contains("stunnel") || name != "openfoodfacts");
    }
}

#[test]
fn docs_estate_md_is_up_to_date() {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/estate.md"))
            .unwrap();
    for name in ["openfoodfacts", "webplatform"] {
        let m = Estate::build(&estate(name)).mermaid();
        assert!(
            doc.contains(&format!("## {name}\n")) && doc.contains(&m),
            "docs/estate.md is out of date for {name}: run scripts/estate-doc.sh"
        );
    }
}
