use std::sync::Arc;

use super::*;
use crate::policy::parse_str;
use crate::zfs::runner::ScriptedRunner;

const POLICY: &str = r#"
version = 1
[host.ovh3]
transport = "local"
[host.off2]
[dataset."rpool/off"]
hourly = 24
recursive = "per-dataset"

[clone.staging]
snapshot = "common"
[clone.staging.pairs]
"rpool/off/products" = "rpool/staging/products"
"rpool/off/images" = "rpool/staging/images"

[clone.other]
[clone.other.pairs]
"rpool/off/users" = "rpool/staging/users"

[container.staging]
host = "ovh3"
ctid = 200
[container.staging.mounts]
mp0 = { dataset = "rpool/staging/products", path = "/mnt/off/products" }
mp1 = { dataset = "rpool/off/orgs", path = "/mnt/off/orgs", read-only = true }
mp2 = { dataset = "rpool/staging/users", path = "/mnt/off/users" }

[export.staging]
host = "ovh3"
clone = "staging"
clients = ["10.1.0.200"]
options = ["rw", "no_root_squash"]
export-id = 100
pseudo = "/staging"

[export.kernel]
host = "ovh3"
dataset = "rpool/staging/images"
path = "/srv/images"
clients = ["10.1.0.201", "10.1.0.202"]
options = ["ro", "no_subtree_check"]
backend = "exportfs"

[export.zfs]
host = "ovh3"
dataset = "rpool/staging/products"
clients = ["10.1.0.0/24"]
options = ["rw", "no_root_squash"]
backend = "sharenfs"

[proxy.images]
host = "ovh3"
dataset = "rpool/staging/images/products"
reload = ["/usr/bin/systemctl", "reload", "nginx"]

[proxy.live]
host = "off2"
dataset = "rpool/off/images"
reload = ["/usr/sbin/nginx", "-s", "reload"]

[tunnel.off2-ovh3]
client = "off2"
server = "ovh3"
client-accept = "127.0.0.1:18023"
server-accept = 8023
server-connect = "127.0.0.1:22"
psk-identity = "off2-ovh3"
psk-file = "/etc/stunnel/psk/off2-ovh3.txt"
"#;

fn targets() -> Targets {
    parse_str("t.toml", POLICY).unwrap().targets
}

fn lines(actions: &[TargetAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| format!("{} {}", a.host.as_deref().unwrap_or("-"), a.argv.join(" ")))
        .collect()
}

fn ds(s: &str) -> DatasetName {
    DatasetName::parse(s).unwrap()
}

#[test]
fn a_refresh_implies_reexports_mounts_and_reloads_of_what_was_swapped() {
    let t = targets();
    let swapped = [ds("rpool/staging/products"), ds("rpool/staging/images")];
    let got = lines(&refresh_actions(&t, "staging", &swapped));
    let dbus = "dbus-send --system --print-reply --dest=org.ganesha.nfsd /org/ganesha/nfsd/ExportMgr org.ganesha.nfsd.exportmgr";
    // Before the swap: every export of a clone about to be renamed is
    // withdrawn (sharenfs moves with the dataset); after it: exported
    // again, the bind mount set again, the proxy reloaded.
    let want = [
        "ovh3 exportfs -u 10.1.0.201:/srv/images".to_owned(),
        "ovh3 exportfs -u 10.1.0.202:/srv/images".to_owned(),
        format!("ovh3 {dbus}.RemoveExport uint16:100"),
        format!("ovh3 {dbus}.RemoveExport uint16:101"),
        "ovh3 exportfs -o ro,no_subtree_check 10.1.0.201:/srv/images".to_owned(),
        "ovh3 exportfs -o ro,no_subtree_check 10.1.0.202:/srv/images".to_owned(),
        "ovh3 tee /etc/ganesha/zfsrepl/staging.conf".to_owned(),
        format!(
            "ovh3 {dbus}.AddExport string:/etc/ganesha/zfsrepl/staging.conf string:EXPORT(Export_Id=100)"
        ),
        format!(
            "ovh3 {dbus}.AddExport string:/etc/ganesha/zfsrepl/staging.conf string:EXPORT(Export_Id=101)"
        ),
        "ovh3 zfs set sharenfs=rw=@10.1.0.0/24,no_root_squash rpool/staging/products".to_owned(),
        "ovh3 pct set 200 -mp0 /rpool/staging/products,mp=/mnt/off/products".to_owned(),
        "ovh3 /usr/bin/systemctl reload nginx".to_owned(),
    ];
    let before = lines(&before_swap_actions(&t, "staging", &swapped));
    assert_eq!(before, want[..4]);
    let after = lines(&after_swap_actions(&t, "staging", &swapped));
    assert_eq!(after, want[4..]);
    assert_eq!(got, want, "{got:#?}");
}

#[test]
fn refresh_actions_table() {
    let t = targets();
    // (swapped clones, expected number of actions, expected targets)
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &[]),
        // Only products: the ganesha export 100 (withdrawn, config
        // written, added), sharenfs, mp0.
        (
            &["rpool/staging/products"],
            &[
                "export.staging",
                "export.staging",
                "export.staging",
                "export.zfs",
                "container.staging",
            ],
        ),
        // Only images: exportfs (2 clients x 2), ganesha 101, the proxy below it.
        (
            &["rpool/staging/images"],
            &[
                "export.kernel",
                "export.kernel",
                "export.staging",
                "export.kernel",
                "export.kernel",
                "export.staging",
                "export.staging",
                "proxy.images",
            ],
        ),
        // Another section's clone: its mount only.
        (&["rpool/staging/users"], &["container.staging"]),
        // Unrelated dataset: nothing (live proxy is not a clone).
        (&["rpool/off/products"], &[]),
    ];
    for (swapped, want) in cases {
        let sw: Vec<DatasetName> = swapped.iter().map(|d| ds(d)).collect();
        let got: Vec<String> = refresh_actions(&t, "x", &sw)
            .into_iter()
            .map(|a| a.target)
            .collect();
        assert_eq!(&got, want, "swapped {swapped:?}");
    }
}

#[test]
fn apply_actions_cover_every_target() {
    let t = targets();
    let acts = apply_actions(&t, &|h| format!("{h}.internal"));
    let got = lines(&acts);
    assert_eq!(
        &got[..3],
        [
            "ovh3 pct set 200 -mp0 /rpool/staging/products,mp=/mnt/off/products",
            "ovh3 pct set 200 -mp1 /rpool/off/orgs,mp=/mnt/off/orgs,ro=1",
            "ovh3 pct set 200 -mp2 /rpool/staging/users,mp=/mnt/off/users",
        ]
    );
    // Every write goes through tee with the content on stdin.
    for a in &acts {
        assert_eq!(a.stdin.is_some(), a.argv[0] == "tee", "{a}");
    }
    let tunnel: Vec<&TargetAction> = acts
        .iter()
        .filter(|a| a.target == "tunnel.off2-ovh3")
        .collect();
    assert_eq!(
        lines(&tunnel.iter().map(|a| (*a).clone()).collect::<Vec<_>>()),
        [
            "ovh3 tee /etc/stunnel/off2-ovh3.conf",
            "ovh3 /usr/bin/systemctl kill --signal=HUP stunnel@off2-ovh3.service",
            "off2 tee /etc/stunnel/off2-ovh3.conf",
            "off2 /usr/bin/systemctl kill --signal=HUP stunnel@off2-ovh3.service",
        ]
    );
    let client = tunnel[2].stdin.as_deref().unwrap();
    assert!(client.contains("client = yes\naccept = 127.0.0.1:18023\nconnect = ovh3.internal:8023\nPSKidentity = off2-ovh3\nPSKsecrets = /etc/stunnel/psk/off2-ovh3.txt\n"), "{client}");
    let server = tunnel[0].stdin.as_deref().unwrap();
    assert!(
        server.contains("[off2-ovh3]\naccept = 8023\nconnect = 127.0.0.1:22\n"),
        "{server}"
    );
    assert!(!server.contains("client = yes"));
}

#[test]
fn ganesha_config_has_one_block_per_dataset() {
    let t = targets();
    let e = t.exports.iter().find(|e| e.name == "staging").unwrap();
    let c = ganesha_config(e);
    assert_eq!(c.matches("EXPORT {").count(), 2);
    assert!(c.contains("Export_Id = 100;\n    Path = \"/rpool/staging/products\";\n    Pseudo = \"/staging/products\";"), "{c}");
    assert!(c.contains("Export_Id = 101;\n    Path = \"/rpool/staging/images\";\n    Pseudo = \"/staging/images\";"), "{c}");
    assert!(c.contains("Squash = No_Root_Squash;"));
    assert!(c.contains("Clients = 10.1.0.200;\n        Access_Type = RW;"));
}

#[test]
fn run_records_each_argv_on_its_host_and_reports_failures() {
    let t = targets();
    let mut acts: Vec<TargetAction> = refresh_actions(&t, "staging", &[ds("rpool/staging/images")]);
    // ScriptedRunner starts no process: the writes (tee with stdin) are
    // tested for real (writes_run_tee_for_real, tests/target_real.rs).
    acts.retain(|a| a.stdin.is_none());
    let ovh3 = Arc::new(ScriptedRunner::new());
    ovh3.on(
        "RemoveExport",
        1,
        "",
        "Error org.freedesktop.DBus.Error.ServiceUnknown",
    );
    let hosts: std::sync::Mutex<Vec<Option<String>>> = std::sync::Mutex::new(Vec::new());
    let r = ovh3.clone();
    let out = run(&acts, &|h| {
        hosts.lock().unwrap().push(h.map(str::to_owned));
        Ok(r.clone() as Arc<dyn Runner>)
    });
    // One runner per host, asked for once.
    assert_eq!(*hosts.lock().unwrap(), [Some("ovh3".to_owned())]);
    assert_eq!(
        ovh3.argvs(),
        acts.iter().map(|a| a.argv.clone()).collect::<Vec<_>>()
    );
    let failed: Vec<&str> = out
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.action.argv[5].as_str())
        .collect();
    assert_eq!(failed, ["org.ganesha.nfsd.exportmgr.RemoveExport"]);
    assert!(out.iter().any(|o| {
        o.error
            .as_deref()
            .is_some_and(|e| e.contains("ServiceUnknown"))
    }));
    // The next actions still ran.
    assert_eq!(out.len(), acts.len());
}

#[test]
fn run_reports_an_unreachable_host_per_action() {
    let t = targets();
    let acts = refresh_actions(&t, "staging", &[ds("rpool/staging/products")]);
    let out = run(&acts, &|_| Err(std::io::Error::other("ssh: no route")));
    assert!(out.iter().all(|o| {
        o.error
            .as_deref()
            .is_some_and(|e| e == "no connection to ovh3: ssh: no route")
    }));
}

#[test]
fn writes_run_tee_for_real() {
    // The stdin path of `run`, on this machine.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.conf");
    let a = TargetAction {
        host: None,
        target: "export.t".into(),
        kind: ActionKind::WriteConfig,
        argv: vec!["tee".into(), path.display().to_string()],
        stdin: Some("EXPORT { Export_Id = 1; }\n".into()),
        why: "test".into(),
    };
    let out = run(std::slice::from_ref(&a), &|_| {
        Ok(Arc::new(crate::zfs::LocalRunner::new()) as Arc<dyn Runner>)
    });
    assert_eq!(out[0].error, None);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "EXPORT { Export_Id = 1; }\n"
    );
    assert!(a.to_string().starts_with("[local] export.t: tee "));
}
