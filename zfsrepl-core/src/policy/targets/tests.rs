use super::*;
use crate::policy::parse_str;

const BASE: &str = r#"
version = 1
[dataset."rpool/off"]
hourly = 24
recursive = "per-dataset"
"#;

/// Appended after the section under test, so line numbers do not move.
const HOSTS: &str = r#"
[host.ovh3]
transport = "local"
[host.h]
transport = "local"
[host.off2]
[host.a]
"#;

fn policy(extra: &str) -> crate::policy::Policy {
    let text = format!("{BASE}{extra}{HOSTS}");
    match parse_str("t.toml", &text) {
        Ok(p) => p,
        Err(d) => panic!("unexpected errors:\n{d}"),
    }
}

/// Every error rendered, `file:line:col: error: message` plus help.
fn errors(extra: &str) -> Vec<String> {
    let text = format!("{BASE}{extra}{HOSTS}");
    match parse_str("t.toml", &text) {
        Ok(p) => panic!("expected errors, got {:#?}", p.targets),
        Err(d) => {
            d.0.iter()
                .filter(|d| d.is_error())
                .map(|d| {
                    format!(
                        "{}:{}: {}{}",
                        d.line,
                        d.column,
                        d.message,
                        d.help
                            .as_ref()
                            .map(|h| format!(" ({h})"))
                            .unwrap_or_default()
                    )
                })
                .collect()
        }
    }
}

const FULL: &str = r#"
[clone.staging]
snapshot = "common"
pattern = "_daily$"
schedule = "daily 03:00"
stale-after = "2d"
pre-swap = ["/usr/local/bin/ready"]
post-swap = ["/usr/local/bin/restart", "staging"]
[clone.staging.pairs]
"rpool/off/products" = "rpool/staging/products"
"rpool/off/images" = "rpool/staging/images"
[clone.staging.properties]
readonly = "off"
[clone.staging.export-properties]
"zfsrepl:note" = "staging"

[container.off]
host = "off2"
ctid = 113
rootfs = "rpool/off/subvol-113-disk-0"
[container.off.mounts]
mp1 = { dataset = "rpool/off/images", path = "/mnt/off/images", read-only = true }
mp0 = { dataset = "rpool/off/products", path = "/mnt/off/products" }

[export.staging]
host = "ovh3"
clone = "staging"
clients = ["10.1.0.200", "10.1.0.0/24"]
options = ["rw", "no_root_squash"]
export-id = 100

[export.products-ro]
host = "ovh3"
dataset = "rpool/off/products"
path = "/srv/products"
clients = ["10.1.0.201"]
options = ["ro"]
backend = "exportfs"

[proxy.images]
host = "ovh3"
dataset = "rpool/staging/images"
server-name = "images.example"
reload = ["/usr/bin/systemctl", "reload", "nginx"]

[tunnel.off2-ovh3]
client = "off2"
server = "ovh3"
client-accept = "127.0.0.1:18023"
server-accept = 8023
server-connect = "127.0.0.1:22"
psk-identity = "off2-ovh3"
psk-file = "/etc/stunnel/psk/off2-ovh3.txt"
"#;

#[test]
fn every_section_reads() {
    let p = policy(FULL);
    let t = &p.targets;
    let c = t.clone_named("staging").unwrap();
    assert_eq!(c.snapshot, SnapshotChoice::Common);
    assert_eq!(c.pattern.as_deref(), Some("_daily$"));
    assert_eq!(c.schedule.as_ref().unwrap().to_string(), "daily 03:00");
    assert_eq!(c.stale_after, Duration::from_secs(2 * 86_400));
    let pairs: Vec<(&str, &str)> = c
        .pairs
        .iter()
        .map(|p| (p.source.as_str(), p.clone.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("rpool/off/products", "rpool/staging/products"),
            ("rpool/off/images", "rpool/staging/images")
        ]
    );
    let spec = c.spec();
    assert!(spec.selector.common);
    assert!(spec.validate().is_ok());
    assert_eq!(c.hooks().post_swap.unwrap()[1], "staging");

    let ct = &t.containers[0];
    assert_eq!((ct.host.as_str(), ct.ctid), ("off2", 113));
    let mps: Vec<(u8, String)> = ct.mounts.iter().map(|m| (m.index, m.pct_value())).collect();
    assert_eq!(
        mps,
        [
            (0, "/rpool/off/products,mp=/mnt/off/products".to_owned()),
            (1, "/rpool/off/images,mp=/mnt/off/images,ro=1".to_owned())
        ]
    );

    let e = &t.exports[1];
    assert_eq!(e.name, "staging");
    assert_eq!(e.backend, ExportBackend::Ganesha);
    assert_eq!(
        e.paths,
        ["/rpool/staging/products", "/rpool/staging/images"]
    );
    assert_eq!(e.config, "/etc/ganesha/zfsrepl/staging.conf");
    let e = &t.exports[0];
    assert_eq!(e.paths, ["/srv/products"]);
    assert_eq!(e.backend, ExportBackend::Exportfs);

    assert_eq!(t.proxies[0].path, "/rpool/staging/images");
    let tu = &t.tunnels[0];
    assert_eq!(tu.server_accept, 8023);
    assert_eq!(tu.reload_server[3], "stunnel@off2-ovh3.service");
    assert_eq!(tu.config, "/etc/stunnel/off2-ovh3.conf");
}

#[test]
fn unknown_keys_get_suggestions() {
    let e = errors(
        r#"
[clone.s]
snapshots = "newest"
[clone.s.pairs]
"rpool/off/a" = "rpool/st/a"
"#,
    );
    assert_eq!(
        e,
        ["8:1: unknown key `snapshots` in clone `s` (did you mean `snapshot`?)"]
    );
    let e = errors(
        r#"
[proxy.p]
host = "h"
dataset = "rpool/off/a"
reload = ["/bin/true"]
server_name = "x"
"#,
    );
    assert_eq!(
        e,
        ["11:1: unknown key `server_name` in proxy `p` (did you mean `server-name`?)"]
    );
}

#[test]
fn cross_references_are_located() {
    let e = errors(
        r#"
[clone.s]
[clone.s.pairs]
"rpool/other/a" = "rpool/st/a"

[export.x]
host = "h"
clone = "stagin"
clients = ["c"]
export-id = 1

[proxy.p]
host = "h"
dataset = "tank/nope"
reload = ["/bin/true"]
"#,
    );
    assert_eq!(
        e,
        [
            "9:1: unknown dataset `rpool/other/a` (no [dataset.\"...\"] entry (or recursive parent), job or clone of this policy covers it)",
            "13:9: unknown clone `stagin` (defined [clone.NAME] sections: s)",
            "19:11: unknown dataset `tank/nope` (no [dataset.\"...\"] entry (or recursive parent), job or clone of this policy covers it)",
        ]
    );
    // A dataset below a clone is known (a proxy serving part of a clone).
    let p = policy(
        r#"
[clone.s]
[clone.s.pairs]
"rpool/off/a" = "rpool/st/a"
[proxy.p]
host = "h"
dataset = "rpool/st/a/sub"
reload = ["/bin/true"]
"#,
    );
    assert_eq!(p.targets.proxies[0].dataset.as_str(), "rpool/st/a/sub");
}

#[test]
fn hosts_are_declared_and_only_this_hosts_datasets_are_checked() {
    let e = errors(
        r#"
[proxy.p]
host = "ovh"
dataset = "rpool/off/a"
reload = ["/bin/true"]
[proxy.q]
host = "local"
dataset = "rpool/nope"
reload = ["/bin/true"]
"#,
    );
    assert_eq!(
        e,
        [
            "8:8: unknown host `ovh` (did you mean `ovh3`?)",
            "13:11: unknown dataset `rpool/nope` (no [dataset.\"...\"] entry (or recursive parent), job or clone of this policy covers it)",
        ]
    );
    // A section on another host may name that host's datasets.
    let p = policy(
        r#"
[proxy.p]
host = "off2"
dataset = "tank/elsewhere"
reload = ["/bin/true"]
"#,
    );
    assert_eq!(p.targets.proxies[0].host, "off2");
    // Datasets that jobs replicate here are known; clone jobs name clones.
    let p = policy(
        r#"
[job.pull]
kind = "replicate"
source = "off2:zfs-hdd/off"
targets = ["tank/backups/off"]
schedule = "hourly :05"
[clone.s]
[clone.s.pairs]
"tank/backups/off/products" = "tank/st/products"
[job.refresh]
kind = "clone"
clones = ["s"]
schedule = "daily 03:00"
"#,
    );
    assert_eq!(p.targets.clones[0].pairs.len(), 1);
    let e = errors(
        r#"
[job.refresh]
kind = "clone"
clones = ["staging"]
schedule = "daily 03:00"
"#,
    );
    assert_eq!(
        e,
        ["7:6: clone job `refresh`: unknown clone `staging` (defined [clone.NAME] sections: none)"]
    );
}

#[test]
fn value_problems() {
    let e = errors(
        r#"
[clone.s]
snapshot = "pattern"
pre-swap = "/bin/ready now"
[clone.s.pairs]
"rpool/off/a" = "st"

[container.c]
host = "h"
ctid = 42
[container.c.mounts]
mount0 = { dataset = "rpool/off/a", path = "/mnt/a" }
mp1 = { dataset = "rpool/off/a", path = "mnt/b" }

[export.x]
host = "h"
dataset = "rpool/off/a"
clients = ["a b"]
options = ["rw", "no_root_sqash"]
backend = "exportfs"
export-id = 3

[tunnel.t]
client = "a"
server = "a"
client-accept = "localhost"
server-accept = 70000
server-connect = "22"
psk-identity = "a:b"
psk-file = "psk.txt"
"#,
    );
    let want = [
        "8:12: `snapshot = \"pattern\"` needs a `pattern` (for example pattern = \"^autosnap_.*_daily$\")",
        "9:12: `pre-swap` must be an argv array, not a command line (zfsrepl runs hooks without a shell: write [\"/path/to/program\", \"arg1\", \"arg2\"])",
        "7:8: clone spec \"s\": st: a clone needs a parent dataset",
        "15:8: `ctid` = 42 is out of range 100..=999999999",
        "17:1: mount point `mount0` is not mpN (Proxmox names bind mounts mp0, mp1, ... mp255)",
        "18:41: `path` = \"mnt/b\" must be an absolute path (start it with `/` (and no `,`, which Proxmox and exportfs read as a separator))",
        "23:12: client \"a b\" is not a host or network",
        "24:18: unknown export option \"no_root_sqash\" (did you mean `no_root_squash`?)",
        "26:1: `export-id` is for the ganesha backend only",
        "31:17: `client-accept` = \"localhost\" is not [ADDRESS:]PORT (for example \"127.0.0.1:18023\" or \"8023\")",
        "35:12: `psk-file` must be an absolute path",
        "34:16: `psk-identity` must be a word without `:` (the PSK file is identity:key)",
        "32:17: `server-accept` = 70000 is out of range 1..=65535",
        "28:9: tunnel `t`: client and server are both a",
    ];
    assert_eq!(e, want, "{e:#?}");
}

#[test]
fn duplicates_across_files_and_ids() {
    let a = Source::new(
        "a.toml",
        format!("{BASE}\n[clone.s]\n[clone.s.pairs]\n\"rpool/off/a\" = \"rpool/st/a\"\n"),
    );
    let b = Source::new(
        "b.toml",
        "[clone.s]\n[clone.s.pairs]\n\"rpool/off/b\" = \"rpool/st/b\"\n\
         [export.e1]\nhost = \"h\"\ndataset = \"rpool/off/a\"\nclients = [\"c\"]\nexport-id = 5\n\
         [export.e2]\nhost = \"h\"\nclone = \"s\"\nclients = [\"c\"]\nexport-id = 5\n[host.h]\n",
    );
    let d = crate::policy::validate(&[a, b]).unwrap_err();
    let msgs: Vec<String> =
        d.0.iter()
            .map(|d| {
                format!(
                    "{}:{}:{} {}{}",
                    d.file.display(),
                    d.line,
                    d.column,
                    d.message,
                    d.help
                        .as_ref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                )
            })
            .collect();
    assert_eq!(
        msgs,
        [
            "b.toml:1:8 clone `s` is defined twice (the first is at a.toml:7:8)",
            "b.toml:9:9 Export_Id 5 on h is also used by [export.e1]",
        ]
    );
}

#[test]
fn a_stunnel_host_and_its_tunnel_agree_on_the_port() {
    let tunnel = |accept: &str| {
        format!(
            r#"
[host.here]
transport = "local"
[host.far]
address = "127.0.0.1"
port = 8470
transport = "stunnel"
psk-file = "/etc/stunnel/psk"
[tunnel.link]
client = "here"
server = "far"
client-accept = "{accept}"
server-accept = 8470
server-connect = "127.0.0.1:22"
psk-identity = "link"
psk-file = "/etc/stunnel/psk"
"#
        )
    };
    let _ = policy(&tunnel("127.0.0.1:8470"));
    let _ = policy(&tunnel("8470"));
    let e = errors(&tunnel("127.0.0.1:8471"));
    assert_eq!(
        e,
        [
            "14:9: tunnel `link` accepts on 127.0.0.1:8471 but [host.far] is reached through 127.0.0.1:8470 (make `client-accept` and the host's address:port the same)"
        ]
    );
}
