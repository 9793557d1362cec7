//! A real stunnel (Debian's `stunnel4`) for interoperability tests: one
//! service, a generated configuration in a private directory, loopback
//! ports, killed on drop.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback TCP port (bound and released: another process may take
/// it in between, which tests accept).
///
/// # Panics
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

/// The TLS settings of a stunnel service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunnelTls {
    /// stunnel's defaults: TLS 1.3 where both sides have it.
    Default,
    /// `sslVersion = TLSv1.3`.
    Tls13,
    /// `sslVersion = TLSv1.2` and `ciphers = PSK`, as older links run.
    Tls12Psk,
}

/// One stunnel service.
#[derive(Debug, Clone)]
pub struct StunnelSpec {
    /// `client = yes` (plain in, TLS out) or a server (TLS in, plain out).
    pub client: bool,
    /// The `connect` address (`host:port`).
    pub connect: String,
    /// The PSKsecrets file's text.
    pub secrets: String,
    /// `PSKidentity` (clients).
    pub identity: Option<String>,
    /// Versions and ciphers.
    pub tls: StunnelTls,
}

/// A running stunnel; killed on drop.
#[derive(Debug)]
pub struct Stunnel {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Stunnel {
    /// Starts stunnel on a free loopback port and waits until it listens.
    ///
    /// # Panics
    /// When `stunnel` is missing (`.ci/run` installs `stunnel4`) or does
    /// not come up within 10 s (its log is in the message).
    #[must_use]
    pub fn start(spec: &StunnelSpec) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let d = dir.path();
        let secrets = d.join("psk.txt");
        std::fs::write(&secrets, &spec.secrets).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let mut conf = format!(
            "foreground = yes\npid =\ndebug = 7\noutput = {log}\n\n[zfsrepl]\nclient = {client}\naccept = 127.0.0.1:{port}\nconnect = {connect}\nPSKsecrets = {secrets}\n",
            log = d.join("stunnel.log").display(),
            client = if spec.client { "yes" } else { "no" },
            connect = spec.connect,
            secrets = secrets.display(),
        );
        if let Some(id) = &spec.identity {
            conf.push_str(&format!("PSKidentity = {id}\n"));
        }
        match spec.tls {
            StunnelTls::Default => {}
            StunnelTls::Tls13 => conf.push_str("sslVersion = TLSv1.3\n"),
            StunnelTls::Tls12Psk => conf.push_str("sslVersion = TLSv1.2\nciphers = PSK\n"),
        }
        std::fs::write(d.join("stunnel.conf"), conf).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new("stunnel")
            .arg(d.join("stunnel.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run stunnel (install stunnel4): {e}"));
        let mut s = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if s.log().contains("Configuration successful") {
                return s;
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("stunnel exited ({st}):\n{}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "stunnel did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The loopback port it accepts on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    #[must_use]
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("stunnel.log")
    }

    /// Its private directory (configuration, secrets, log).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
