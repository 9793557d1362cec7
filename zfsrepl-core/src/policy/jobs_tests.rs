use std::time::Duration;

use super::*;
use crate::policy::parse_str;
use crate::schedule::{Times, Weekdays};

const FULL: &str = r#"
version = 1
timezone = "Europe/Paris"

[dataset."zfs-hdd/off"]
recursive = "per-dataset"
hourly = 36

[dataset."zfs-hdd/backups/off2"]
recursive = "per-dataset"
autosnap = false

[host.off2]
transport = "local"

[host.off1]
address = "off1.example.org"
user = "root"
port = 2222
ssh-key = "/etc/zfsrepl/id_ed25519"

[host.ovh3]
address = "127.0.0.1"
port = 8470
transport = "stunnel"
psk-file = "/etc/stunnel/off2-ovh3.psk"
identity = "off2"
description = "OVH, other datacentre"

[job.snap]
kind = "snapshot"
datasets = ["zfs-hdd/off"]
schedule = "every 15m"
jitter = "30s"

[job.repl]
kind = "replicate"
source = "off2:zfs-hdd/off"
targets = ["off1:zfs-hdd/backups/off2/off", "ovh3:rpool/backups/off2/off", "local:zfs-hdd/backups/off2/copy"]
after = "snap"
compress = "zstd:6"
bwlimit = 50_000_000
lag-warn = "2h"

[job.prune]
kind = "prune"
datasets = ["zfs-hdd/off", "off1:zfs-hdd/backups/off2/off"]
after = "repl"
retries = 0

[job.pull]
kind = "replicate"
source = "off1:zfs-hdd/off/images"
targets = ["zfs-hdd/backups/off2/images"]
recursive = false
schedule = "weekdays 02:30"
enabled = false

[job.staging]
kind = "clone"
clones = ["staging-products"]
schedule = "daily 03:00"

[daemon]
control-socket = "/run/zfsrepl/c.sock"
metrics-address = "127.0.0.1:9811"
concurrency = 8
per-pool = 3
per-host = 2
stop-timeout = "90s"
lag-limit = "3d"
retries = 5

# Clone jobs name clone sections (policy/targets.rs).
[clone.staging-products]
[clone.staging-products.pairs]
"zfs-hdd/off/products" = "zfs-hdd/staging/products"
"#;

fn job<'p>(p: &'p crate::policy::Policy, name: &str) -> &'p Job {
    p.jobs
        .iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

fn ds(s: &str) -> DatasetRef {
    DatasetRef::parse(s).unwrap()
}

#[test]
fn a_full_daemon_policy() {
    let p = parse_str("off2.toml", FULL).unwrap_or_else(|d| panic!("{d}"));
    let hosts: Vec<&str> = p.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(hosts, ["off1", "off2", "ovh3"]);
    let off1 = &p.hosts[0];
    assert_eq!(
        (
            off1.address.as_str(),
            off1.user.as_deref(),
            off1.port,
            off1.transport
        ),
        ("off1.example.org", Some("root"), Some(2222), Transport::Ssh)
    );
    assert_eq!(p.hosts[1].address, "off2", "address defaults to the name");
    assert!(p.hosts[1].is_local());
    let ovh3 = &p.hosts[2];
    assert_eq!(ovh3.transport, Transport::Stunnel);
    assert_eq!(ovh3.identity.as_deref(), Some("off2"));

    let jobs: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(jobs, ["prune", "pull", "repl", "snap", "staging"]);
    let snap = job(&p, "snap");
    assert_eq!(snap.kind, JobKind::Snapshot);
    assert_eq!(
        snap.trigger,
        Trigger::Schedule(Schedule::Every {
            interval: Duration::from_secs(900)
        })
    );
    assert_eq!(snap.jitter, Duration::from_secs(30));
    assert!(snap.enabled);

    let JobKind::Replicate(r) = &job(&p, "repl").kind else {
        panic!("repl is a replicate job")
    };
    // off2 has transport = "local": its datasets are this host's.
    assert_eq!(r.source, ds("zfs-hdd/off"));
    assert_eq!(r.direction, Direction::Push);
    assert_eq!(
        r.targets,
        [
            ds("off1:zfs-hdd/backups/off2/off"),
            ds("ovh3:rpool/backups/off2/off"),
            ds("zfs-hdd/backups/off2/copy"),
        ]
    );
    assert!(r.recursive, "default");
    assert_eq!(r.compress, Compression::Zstd(6));
    assert_eq!(r.bwlimit, Some(50_000_000));
    assert_eq!(r.lag_warn, Some(Duration::from_secs(7200)));
    assert_eq!(job(&p, "repl").trigger, Trigger::After("snap".into()));

    let prune = job(&p, "prune");
    assert_eq!(prune.retries, Some(0));
    assert_eq!(prune.datasets[1].host.as_deref(), Some("off1"));

    let pull = job(&p, "pull");
    let JobKind::Replicate(r) = &pull.kind else {
        panic!()
    };
    assert_eq!((r.direction, r.recursive), (Direction::Pull, false));
    assert!(!pull.enabled);
    assert_eq!(
        pull.trigger,
        Trigger::Schedule(Schedule::Calendar {
            days: Weekdays::WORKDAYS,
            times: Times::At(vec![(2, 30)])
        })
    );
    assert_eq!(
        job(&p, "staging").kind,
        JobKind::Clone {
            clones: vec!["staging-products".into()]
        }
    );

    let d = &p.daemon;
    assert_eq!(
        d.control_socket,
        std::path::Path::new("/run/zfsrepl/c.sock")
    );
    assert_eq!(
        d.state_dir,
        std::path::Path::new("/var/lib/zfsrepl"),
        "default"
    );
    assert_eq!(d.metrics_address, Some("127.0.0.1:9811".parse().unwrap()));
    assert_eq!(
        (d.concurrency, d.per_pool, d.per_host, d.retries),
        (8, 3, 2, 5)
    );
    assert_eq!(d.stop_timeout, Duration::from_secs(90));
    assert_eq!(d.lag_limit, Duration::from_secs(3 * 86_400));
    // The policy serializes (for `policy show --json` and the daemon's status).
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["jobs"][2]["kind"], "replicate");
}

#[test]
fn no_daemon_sections_give_defaults() {
    let p = parse_str("p.toml", "version = 1\n").unwrap();
    assert!(p.jobs.is_empty() && p.hosts.is_empty());
    assert_eq!(p.daemon, DaemonSettings::default());
}

/// docs/design/daemon.md documented `metrics-address = "none"` before the
/// parser accepted it.
#[test]
fn metrics_address_none_means_no_metrics_server() {
    let p = parse_str(
        "p.toml",
        "version = 1\n[daemon]\nmetrics-address = \"none\"\n",
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.daemon.metrics_address, None);
}

#[test]
fn a_daemon_listener() {
    let p = parse_str(
        "p.toml",
        "version = 1\n[daemon]\nlisten = \"[::]:8470\"\npsk-file = \"/etc/zfsrepl/psk\"\npeers = \"/etc/zfsrepl/peers.toml\"\n",
    )
    .unwrap();
    assert_eq!(
        p.daemon.listen,
        Some(ListenSettings {
            address: "[::]:8470".parse().unwrap(),
            psk_file: "/etc/zfsrepl/psk".into(),
            peers: "/etc/zfsrepl/peers.toml".into(),
        })
    );
}

#[test]
fn dataset_references() {
    assert_eq!(ds("tank/a").host, None);
    assert_eq!(ds("local:tank/a").host, None);
    assert_eq!(ds("off1:tank/a").host.as_deref(), Some("off1"));
    // A colon after a slash belongs to the dataset name.
    let r = ds("tank/a:b");
    assert_eq!((r.host, r.dataset.as_str()), (None, "tank/a:b"));
    assert_eq!(ds("off1:tank/x").to_string(), "off1:tank/x");
    assert!(DatasetRef::parse("off 1:tank/a").is_err());
    assert!(DatasetRef::parse("off1:").is_err());
}

fn errors(text: &str) -> Vec<String> {
    let text = format!("version = 1\n[dataset.\"tank/a\"]\nrecursive = \"per-dataset\"\n{text}");
    match parse_str("p.toml", &text) {
        Ok(p) => panic!("expected errors, got {p:#?}"),
        Err(d) => {
            d.0.iter()
                .filter(|d| d.is_error())
                .map(ToString::to_string)
                .collect()
        }
    }
}

#[test]
fn located_errors() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[job.s]\nkind = \"snapshot\"\ndatasets = [\"tank/a\"]\nschedule = \"every 15\"\n",
            &["p.toml:7:12: error: `schedule`: interval \"15\": 15 has no unit"],
        ),
        (
            "[job.s]\nkind = \"snapshots\"\n",
            &["p.toml:5:8: error: unknown job kind \"snapshots\""],
        ),
        (
            "[job.s]\nkind = \"snapshot\"\ndatasets = [\"tank/a\"]\nshedule = \"every 1h\"\n",
            &[
                "job `s` has no `schedule`",
                "p.toml:7:1: error: unknown key `shedule` in job `s`",
                "did you mean `schedule`?",
            ],
        ),
        (
            "[job.s]\nkind = \"snapshot\"\ndatasets = [\"other/x\"]\nschedule = \"daily 03:00\"\n",
            &["p.toml:6:13: error: snapshot job `s`: no [dataset] entry covers `other/x`"],
        ),
        (
            "[job.s]\nkind = \"snapshot\"\ndatasets = [\"far:tank/a\"]\nschedule = \"daily 03:00\"\n",
            &["p.toml:6:13: error: unknown host `far`"],
        ),
        (
            "[host.far]\n[job.s]\nkind = \"snapshot\"\ndatasets = [\"far:tank/a\"]\nschedule = \"daily 03:00\"\n",
            &["snapshots are taken where the daemon runs"],
        ),
        (
            "[job.r]\nkind = \"replicate\"\nsource = \"tank/a\"\ntargets = [\"tank/b\"]\nafter = \"nope\"\n",
            &["p.toml:8:9: error: unknown job `nope`"],
        ),
        (
            "[job.r]\nkind = \"replicate\"\nsource = \"tank/a\"\ntargets = [\"tank/b\"]\nschedule = \"every 1h\"\nafter = \"r\"\n",
            &["has both `schedule` and `after`"],
        ),
        (
            "[job.a]\nkind = \"prune\"\ndatasets = [\"tank/a\"]\nafter = \"b\"\n[job.b]\nkind = \"prune\"\ndatasets = [\"tank/a\"]\nafter = \"a\"\n",
            &["in a circle: a -> b -> a"],
        ),
        (
            "[host.x]\n[host.y]\n[job.r]\nkind = \"replicate\"\nsource = \"x:tank/a\"\ntargets = [\"y:tank/b\"]\nschedule = \"every 1h\"\n",
            &["source and a target are both on other hosts"],
        ),
        (
            "[job.r]\nkind = \"replicate\"\nsource = \"tank/a\"\ntargets = [\"tank/b\"]\ndirection = \"pull\"\nschedule = \"every 1h\"\n",
            &["direction = \"pull\" but the source tank/a is on this host"],
        ),
        (
            "[job.r]\nkind = \"replicate\"\nsource = \"tank/a\"\ntargets = [\"tank/a\"]\ncompress = \"lz4\"\nschedule = \"every 1h\"\n",
            &[
                "`compress`: expected none, zstd",
                "target tank/a is the source",
            ],
        ),
        (
            "[job.p]\nkind = \"prune\"\ndatasets = [\"tank/a\"]\ntargets = [\"tank/b\"]\nschedule = \"every 1h\"\n",
            &["p.toml:7:1: error: `targets` is for replicate jobs, not prune jobs"],
        ),
        (
            "[job.p]\nkind = \"prune\"\ndatasets = [\"tank/a\"]\nafter = \"p2\"\njitter = \"1m\"\n[job.p2]\nkind = \"prune\"\ndatasets = [\"tank/a\"]\nschedule = \"hourly :5\"\n",
            &[
                "`jitter` applies to scheduled jobs",
                "hourly takes a minute :00 to :59",
            ],
        ),
        (
            "[host.t]\ntransport = \"tls\"\n[host.local]\n",
            &[
                "transport tls needs `psk-file`",
                "transport tls needs `port`",
                "invalid host name \"local\"",
            ],
        ),
        (
            "[host.t]\ntransport = \"telnet\"\nssh-key = \"id_rsa\"\n",
            &[
                "unknown transport \"telnet\"",
                "`ssh-key` = \"id_rsa\" is not an absolute path",
            ],
        ),
        (
            "[daemon]\nmetrics-address = \"localhost\"\nconcurrency = 0\nstop-timeout = \"soon\"\nlag_limit = \"1d\"\n",
            &[
                "p.toml:5:19: error: `metrics-address` = \"localhost\" is not an IP address and port",
                "`concurrency` = 0 is out of range 1..=1000",
                "`stop-timeout` = \"soon\"",
                "did you mean `lag-limit`?",
            ],
        ),
        (
            "[daemon]\nlisten = \"127.0.0.1:8470\"\n",
            &[
                "p.toml:5:1: error: `listen` needs `psk-file`",
                "p.toml:5:1: error: `listen` needs `peers`",
            ],
        ),
        (
            "[daemon]\nlisten = \"off1:8470\"\npsk-file = \"k.psk\"\npeers = \"/etc/p.toml\"\n",
            &[
                "p.toml:5:10: error: `listen` = \"off1:8470\" is not an IP address and port",
                "`psk-file` = \"k.psk\" is not an absolute path",
            ],
        ),
        (
            "[daemon]\npsk-file = \"/k.psk\"\n",
            &["p.toml:5:1: error: `psk-file` without `listen`"],
        ),
        (
            "[job.c]\nkind = \"clone\"\ndatasets = [\"tank/a\"]\nschedule = \"daily 03:00\"\n",
            &[
                "a clone job names `clones`, not `datasets`",
                "clone job `c` has no `clones`",
            ],
        ),
    ];
    for (text, want) in cases {
        let got = errors(text).join("\n");
        for w in *want {
            assert!(got.contains(w), "for\n{text}\nwant {w:?} in\n{got}");
        }
    }
}

#[test]
fn a_second_daemon_section_in_another_file_is_refused() {
    use crate::policy::{Source, validate};
    let a = Source::new("a.toml", "version = 1\n[daemon]\nconcurrency = 2\n");
    let b = Source::new(
        "b.toml",
        "[daemon]\nconcurrency = 3\n[host.x]\n[job.j]\nkind = \"clone\"\nclones = [\"c\"]\nschedule = \"every 1h\"\n",
    );
    let e = validate(&[a.clone(), b]).unwrap_err().to_string();
    assert!(
        e.contains("b.toml:1:2: error: a second [daemon] section"),
        "{e}"
    );
    // Hosts and jobs of several files come together.
    let b = Source::new(
        "b.toml",
        "[host.x]\n[job.j]\nkind = \"replicate\"\nsource = \"tank/a\"\ntargets = [\"x:tank/a\"]\nschedule = \"every 1h\"\n",
    );
    let c = Source::new("c.toml", "[host.x]\n");
    let e = validate(&[a.clone(), b.clone(), c])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.toml:1:7: error: host `x` is defined twice"),
        "{e}"
    );
    let (p, _) = validate(&[a, b]).unwrap();
    assert_eq!(
        (p.hosts.len(), p.jobs.len(), p.daemon.concurrency),
        (1, 1, 2)
    );
}

#[test]
fn schedules_serialize_as_text() {
    let p = parse_str("off2.toml", FULL).unwrap();
    let json = serde_json::to_value(&p.jobs).unwrap();
    let snap = json
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "snap")
        .unwrap();
    assert_eq!(snap["trigger"]["schedule"], "every 15m");
    let repl = json
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "repl")
        .unwrap();
    assert_eq!(repl["trigger"]["after"], "snap");
    assert_eq!(repl["targets"][0]["host"], "off1");
}

/// A TLS link's dead-peer and I/O timeouts are the host's to set (a link
/// cut shorter than `dead-peer` is ridden out); `0s` turns one off; they
/// mean nothing to other transports, which say so.
#[test]
fn tls_hosts_set_their_timeouts() {
    let p = parse_str(
        "p.toml",
        "version = 1\n[host.ovh3]\ntransport = \"tls\"\nport = 8470\npsk-file = \"/etc/zfsrepl/psk\"\n\
         dead-peer = \"5m\"\nio-timeout = \"0s\"\n[host.off1]\ntransport = \"tls\"\nport = 8470\n\
         psk-file = \"/etc/zfsrepl/psk\"\n",
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let h = |n: &str| p.hosts.iter().find(|h| h.name == n).unwrap();
    assert_eq!(h("ovh3").dead_peer, Some(Duration::from_secs(300)));
    assert_eq!(h("ovh3").io_timeout, Some(Duration::ZERO));
    assert_eq!((h("off1").dead_peer, h("off1").io_timeout), (None, None));
    let e = errors("[host.off2]\ndead-peer = \"1m\"\n");
    assert!(
        e.iter()
            .any(|e| e.contains("`dead-peer` applies to transport \"tls\" only")),
        "{e:?}"
    );
}
