//! A private `sshd` on a loopback port for tests (Debian's openssh-server):
//! its own host key, a client key, and keys pinned to forced commands.
//! Panics, never skips, when sshd or ssh-keygen are missing.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: a failure is the test failing

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::zfs::SshTarget;

/// A running `sshd`, killed on drop.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn keygen(file: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(file)
        .status()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(st.success());
}

impl Sshd {
    /// Starts sshd with a host key and one unrestricted client key
    /// ([`Sshd::target`]).
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
             PidFile {pid}\nStrictModes no\nUsePAM no\nPermitRootLogin yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n\
             MaxStartups 100\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("/usr/sbin/sshd (openssh-server) must be installed");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, dir, port }
    }

    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A private directory that lives as long as the sshd.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `root@127.0.0.1` on its port with the unrestricted client key.
    #[must_use]
    pub fn target(&self) -> SshTarget {
        self.target_with(&self.dir.path().join("client_key"))
    }

    /// `root@127.0.0.1` on its port with `key`.
    #[must_use]
    pub fn target_with(&self, key: &Path) -> SshTarget {
        let mut t = SshTarget::parse(&format!("root@127.0.0.1:{}", self.port)).unwrap();
        t.identity = Some(key.to_path_buf());
        t.options = self.ssh_options();
        t
    }

    /// The `-o` options that make ssh trust this sshd quietly.
    #[must_use]
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "StrictHostKeyChecking=no".into(),
            format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ),
            "LogLevel=ERROR".into(),
        ]
    }

    /// A new client key pinned to `command` (a forced command, with
    /// `restrict`); returns its private key file.
    #[must_use]
    pub fn forced_key(&self, name: &str, command: &str) -> PathBuf {
        let key = self.dir.path().join(name);
        keygen(&key);
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let line = format!(
            "command=\"{}\",restrict {}\n",
            command.replace('\\', "\\\\").replace('"', "\\\""),
            public.trim()
        );
        let ak = self.dir.path().join("authorized_keys");
        let mut all = std::fs::read_to_string(&ak).unwrap();
        all.push_str(&line);
        std::fs::write(&ak, all).unwrap();
        key
    }

    /// Connections sshd accepted so far.
    #[must_use]
    pub fn accepted_connections(&self) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// Its log file.
    #[must_use]
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
