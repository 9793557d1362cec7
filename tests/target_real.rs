//! Target actions run for real where this machine can run the component:
//! a stunnel PSK link written and reloaded from a policy's `[tunnel]`
//! section (two real `stunnel4` processes), and an NFS export written from
//! a policy's `[export]` section served by a real nfs-ganesha and read back
//! with libnfs's client.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zfsrepl_core::Runner;
use zfsrepl_core::target::{self, ActionKind};
use zfsrepl_core::zfs::LocalRunner;

/// Kills and reaps its child on drop, so a failing test leaves no daemon.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn local(_: Option<&str>) -> std::io::Result<Arc<dyn Runner>> {
    Ok(Arc::new(LocalRunner::new()))
}

/// Sends a line through `port` and returns the reply line, retrying the
/// connection until `deadline` (stunnel needs a moment after a reload).
fn round_trip(port: u16, line: &str, deadline: Instant) -> Result<String, String> {
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                if s.write_all(format!("{line}\n").as_bytes()).is_ok() {
                    let mut reply = String::new();
                    match BufReader::new(&s).read_line(&mut reply) {
                        Ok(n) if n > 0 => return Ok(reply),
                        Ok(_) => last = "connection closed without a reply".into(),
                        Err(e) => last = e.to_string(),
                    }
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

fn stunnel(conf: &Path) -> Daemon {
    Daemon(
        Command::new("stunnel4")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel4 must be installed (apt-get install stunnel4; .ci/run does)"),
    )
}

/// A `[tunnel]` section applied for real: both sides' configurations are
/// written by `tee` (content on stdin) and each stunnel reloaded with the
/// section's reload argv (SIGHUP, as the default `systemctl kill
/// --signal=HUP` sends); data then flows client -> TLS-PSK -> server ->
/// the forwarded service and back.
#[test]
fn a_tunnel_section_written_and_reloaded_carries_data_over_tls_psk() {
    // The service behind the server side: echoes each line, prefixed.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() {
                    let _ = s.write_all(format!("echo: {line}").as_bytes());
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let psk = dir.path().join("link.psk");
    std::fs::write(&psk, "off2-ovh3:8rZxk3Q4pR2vT7wYb9cD1eF6gH0jK5mN\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Both sides start with a placeholder service, as after a boot with an
    // old configuration; the policy's is applied with a reload.
    let server_conf = dir.path().join("server.conf");
    let client_conf = dir.path().join("client.conf");
    for (c, client) in [
        (&server_conf, ""),
        (&client_conf, "client = yes\nPSKidentity = off2-ovh3\n"),
    ] {
        std::fs::write(
            c,
            format!(
                "foreground = yes\npid =\n[placeholder]\n{client}accept = 127.0.0.1:{}\nconnect = 127.0.0.1:9\nPSKsecrets = {}\nciphers = PSK\n",
                free_port(),
                psk.display()
            ),
        )
        .unwrap();
    }
    let server = stunnel(&server_conf);
    let client = stunnel(&client_conf);
    std::thread::sleep(Duration::from_millis(300));
    let (server_port, client_port) = (free_port(), free_port());
    let policy = format!(
        r#"version = 1
[host.off2]
transport = "local"
[host.ovh3]
transport = "local"
address = "127.0.0.1"
[dataset."tank/x"]
hourly = 1
[tunnel.off2-ovh3]
client = "off2"
server = "ovh3"
client-accept = "127.0.0.1:{client_port}"
server-accept = {server_port}
server-connect = "127.0.0.1:{echo_port}"
psk-identity = "off2-ovh3"
psk-file = "{}"
config = "{}"
reload-server = ["/bin/kill", "-HUP", "{}"]
reload-client = ["/bin/kill", "-HUP", "{}"]
"#,
        psk.display(),
        server_conf.display(),
        server.0.id(),
        client.0.id()
    );
    let p = zfsrepl_core::policy::parse_str("ovh3.toml", &policy).unwrap_or_else(|d| panic!("{d}"));
    let mut actions = target::apply_actions(&p.targets, &|_| "127.0.0.1".to_owned());
    assert_eq!(actions.len(), 4, "{actions:#?}");
    // Both "hosts" are this machine: the client side gets its own file.
    assert_eq!(actions[2].kind, ActionKind::WriteConfig);
    actions[2].argv[1] = client_conf.display().to_string();
    let out = target::run(&actions, &local);
    for o in &out {
        assert_eq!(o.error, None, "{}", o.action);
    }
    let client_text = std::fs::read_to_string(&client_conf).unwrap();
    assert!(client_text.contains("client = yes"), "{client_text}");
    let reply = round_trip(
        client_port,
        "ping through the tunnel",
        Instant::now() + Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("no reply through the tunnel: {e}"));
    assert_eq!(reply, "echo: ping through the tunnel\n");

    // A client with another key is refused by the server side.
    std::fs::write(&psk, "off2-ovh3:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n").unwrap();
    let wrong_port = free_port();
    let wrong_conf = dir.path().join("wrong.conf");
    let mut t = p.targets.tunnels[0].clone();
    t.client_accept = format!("127.0.0.1:{wrong_port}");
    std::fs::write(
        &wrong_conf,
        target::stunnel_config(&t, target::Side::Client, "127.0.0.1"),
    )
    .unwrap();
    let _wrong = stunnel(&wrong_conf);
    let r = round_trip(wrong_port, "sneak", Instant::now() + Duration::from_secs(3));
    assert!(r.is_err(), "a wrong PSK got through: {r:?}");
    drop((client, server));
}

/// The EXPORT blocks zfsrepl writes for an `[export]` section, served by a
/// real nfs-ganesha (VFS FSAL) and read back with libnfs's `nfs-cat` over
/// NFSv4: the file written into the exported directory comes back.
#[test]
fn an_export_section_served_by_nfs_ganesha_is_readable_over_nfs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("products");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "served by ganesha\n").unwrap();
    let port = free_port();
    let policy = format!(
        r#"version = 1
[host.ovh3]
transport = "local"
[dataset."rpool/staging"]
hourly = 1
recursive = "per-dataset"
[export.staging]
host = "ovh3"
dataset = "rpool/staging/products"
path = "{}"
clients = ["127.0.0.1"]
options = ["ro", "no_root_squash"]
export-id = 77
pseudo = "/staging"
config = "{}"
"#,
        data.display(),
        dir.path().join("zfsrepl-exports.conf").display()
    );
    let p = zfsrepl_core::policy::parse_str("ovh3.toml", &policy).unwrap_or_else(|d| panic!("{d}"));
    let actions = target::apply_actions(&p.targets, &|h| h.to_owned());
    // The config write runs for real; the D-Bus AddExport needs a running
    // server on the system bus, so ganesha is started with the file instead.
    let write: Vec<_> = actions
        .iter()
        .filter(|a| a.kind == ActionKind::WriteConfig)
        .cloned()
        .collect();
    assert_eq!(write.len(), 1);
    let out = target::run(&write, &local);
    assert_eq!(out[0].error, None);
    let main = dir.path().join("ganesha.conf");
    std::fs::write(
        &main,
        format!(
            "NFS_CORE_PARAM {{\n    NFS_Port = {port};\n    Protocols = 4;\n    Enable_NLM = false;\n    Enable_RQUOTA = false;\n    Bind_addr = 127.0.0.1;\n}}\n\
             NFSV4 {{\n    Graceless = true;\n    Only_Numeric_Owners = true;\n}}\n\
             NFS_KRB5 {{ Active_krb5 = false; }}\n\
             %include \"{}\"\n",
            dir.path().join("zfsrepl-exports.conf").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("ganesha.log");
    let pid = dir.path().join("ganesha.pid");
    let recovery = dir.path().join("recovery");
    std::fs::create_dir(&recovery).unwrap();
    let _ganesha = Daemon(
        Command::new("ganesha.nfsd")
            .args(["-F", "-f"])
            .arg(&main)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(&pid)
            .args(["-N", "NIV_EVENT"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfs-ganesha must be installed (apt-get install nfs-ganesha nfs-ganesha-vfs; .ci/run does)"),
    );
    let url = format!("nfs://127.0.0.1/staging/products/hello.txt?version=4&nfsport={port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("nfs-cat")
            .arg(&url)
            .output()
            .expect("libnfs-utils must be installed (nfs-cat)");
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "served by ganesha\n");
            break;
        }
        let last = String::from_utf8_lossy(&out.stderr).into_owned();
        if Instant::now() > deadline {
            let mut l = String::new();
            let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut l));
            panic!("nfs-cat {url} kept failing: {last}\nganesha log:\n{l}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
