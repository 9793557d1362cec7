//! Running an argv, locally or on a remote host over ssh, never through a
//! local shell.
//!
//! - [`LocalRunner`] executes the argv directly.
//! - [`SshRunner`] runs `ssh [options] -- HOST 'arg0' 'arg1' ...`: the remote
//!   command is the only string a shell ever sees (the remote login shell,
//!   which ssh always uses), and every argument is single-quoted exactly once
//!   by [`shell_quote`]. One master connection (`ControlMaster`) is opened on
//!   first use and reused by every later call, so a run costs one TCP and
//!   key exchange, not one per `zfs` command.
//!
//! Every child's stderr is drained by its own thread into a bounded tail
//! buffer while stdout is read: a child that fills a 64 KiB stderr pipe and
//! blocks would otherwise deadlock against a parent blocked on stdout.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How much of a child's stderr we keep (the tail; older bytes are dropped).
pub const STDERR_TAIL_BYTES: usize = 16 * 1024;

/// How long a child being stopped ([`Child::kill`], or dropped unwaited)
/// has to end by itself once its pipes are closed, before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where commands run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Host {
    /// This machine.
    Local,
    /// A remote machine reached by ssh.
    Ssh(SshTarget),
}

impl Host {
    /// `None` for local, the ssh destination otherwise (for error messages).
    #[must_use]
    pub fn label(&self) -> Option<String> {
        match self {
            Self::Local => None,
            Self::Ssh(t) => Some(t.to_string()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Ssh(t) => t.fmt(f),
        }
    }
}

/// An ssh destination and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    /// Remote user (`None`: ssh's default).
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port (`None`: 22 or ssh_config).
    pub port: Option<u16>,
    /// Private key file (`-i`).
    pub identity: Option<PathBuf>,
    /// Extra `-o key=value` options.
    pub options: Vec<String>,
    /// The ssh program (default `ssh`).
    pub program: Option<PathBuf>,
}

impl SshTarget {
    /// Parses `[user@]host`, with an optional `:port` only when the host is
    /// not an IPv6 literal (use `[::1]:22` for those).
    ///
    /// # Errors
    /// When the host is empty or the port is not a number.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
            Some(_) => return Err(format!("{s:?}: empty user before '@'")),
            None => (None, s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, tail) = r
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: missing ']'"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse().map_err(|_| format!("{s:?}: bad port {p:?}"))?),
                None if tail.is_empty() => None,
                None => return Err(format!("{s:?}: unexpected {tail:?} after ']'")),
            };
            (h.to_owned(), port)
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
            (
                h.to_owned(),
                Some(p.parse().map_err(|_| format!("{s:?}: bad port {p:?}"))?),
            )
        } else {
            (rest.to_owned(), None)
        };
        if host.is_empty() {
            return Err(format!("{s:?}: empty host"));
        }
        if host.starts_with('-') {
            return Err(format!("{s:?}: a host cannot start with '-'"));
        }
        Ok(Self {
            user,
            host,
            port,
            ..Self::default()
        })
    }

    /// `user@host` as ssh takes it.
    #[must_use]
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.destination())?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Quotes one argument for a POSIX shell: wrapped in single quotes, each
/// embedded `'` written as `'\''`. Arguments made only of characters no shell
/// treats specially are left bare, for readable logs.
#[must_use]
pub fn shell_quote(arg: &[u8]) -> Vec<u8> {
    let safe = !arg.is_empty()
        && arg
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_./:,=+@%".contains(&b));
    if safe {
        return arg.to_vec();
    }
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'\'');
    for &b in arg {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Joins an argv into one remote command line, each argument quoted once.
#[must_use]
pub fn remote_command(argv: &[OsString]) -> OsString {
    let mut line = Vec::new();
    for (i, a) in argv.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.extend(shell_quote(a.as_bytes()));
    }
    OsStr::from_bytes(&line).to_owned()
}

/// Renders an argv for messages and logs (quoted as a shell would need).
#[must_use]
pub fn display_argv(argv: &[OsString]) -> String {
    String::from_utf8_lossy(remote_command(argv).as_bytes()).into_owned()
}

/// Which of the child's standard streams we want as pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildIo {
    /// Capture stdout; stdin is `/dev/null`.
    Stdout,
    /// Feed stdin; stdout is `/dev/null`.
    Stdin,
}

/// A running child whose stderr is being drained.
///
/// Dropping it without [`Child::wait`] kills and reaps the process, a last
/// defence against leaking `zfs send` processes.
pub struct Child {
    argv: Vec<OsString>,
    child: Option<std::process::Child>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// The child's stdin, with [`ChildIo::Stdin`].
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, with [`ChildIo::Stdout`].
    pub stdout: Option<ChildStdout>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("argv", &display_argv(&self.argv))
            .finish_non_exhaustive()
    }
}

/// How a child ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// The tail of its stderr.
    pub stderr: String,
}

impl Child {
    /// The argv that started it (before ssh wrapping).
    #[must_use]
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// Closes stdin, waits for exit and collects the stderr tail.
    ///
    /// # Errors
    /// When waiting fails.
    pub fn wait(mut self) -> io::Result<Finished> {
        drop(self.stdin.take());
        drop(self.stdout.take());
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("reaped"))?;
        let status = child.wait()?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ok(Finished {
            status,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Stops the child and reaps it: its pipes are closed, it is given
    /// [`STOP_GRACE`] to end by itself, then it is killed (SIGKILL).
    ///
    /// With its pipes closed, a `zfs send` ends within milliseconds (its
    /// next write fails) and a `zfs receive` at once (its stream ends
    /// early, so it fails, keeping a resume token where asked), each
    /// through its own cleanup; an ssh client ends and lets the remote
    /// command end the same way. A `zfs send -I` killed while its ioctl
    /// runs, by contrast, leaves its temporary holds behind on zfs-fuse
    /// (kernel OpenZFS releases them), holds that keep those snapshots
    /// from being pruned.
    pub fn kill(mut self) {
        self.kill_in_place();
    }

    fn kill_in_place(&mut self) {
        drop(self.stdin.take());
        drop(self.stdout.take());
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + STOP_GRACE;
            let mut nap = Duration::from_millis(1);
            let mut running = matches!(c.try_wait(), Ok(None));
            while running && Instant::now() < deadline {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(50));
                running = matches!(c.try_wait(), Ok(None));
            }
            if running {
                // Worth knowing: on zfs-fuse a `zfs send` killed now leaves
                // holds that keep its snapshots from being pruned.
                tracing::warn!(
                    command = %display_argv(&self.argv),
                    "still running {STOP_GRACE:?} after its pipes were closed: killed (SIGKILL)"
                );
            }
            // Already reaped by `try_wait` when it ended: then a no-op.
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_in_place();
    }
}

/// The output of a command run to completion.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// All of stdout.
    pub stdout: Vec<u8>,
    /// The tail of stderr.
    pub stderr: String,
}

/// Runs argvs somewhere. Implementations count every process they start.
pub trait Runner: Send + Sync {
    /// Where commands run.
    fn host(&self) -> &Host;

    /// Starts `argv` with the requested pipes; stderr is always drained into
    /// a bounded tail.
    ///
    /// # Errors
    /// When the process cannot be started.
    fn spawn(&self, argv: &[OsString], io: ChildIo) -> io::Result<Child>;

    /// How many processes this runner has started.
    fn invocations(&self) -> u64;

    /// Starts `first | second` on a remote host: one remote shell line,
    /// each argument quoted once ([`shell_quote`]). The exit status is the
    /// second command's. Only remote runners can; the default says
    /// [`io::ErrorKind::Unsupported`].
    ///
    /// # Errors
    /// When the runner is local, or the process cannot be started.
    fn spawn_piped(
        &self,
        first: &[OsString],
        second: &[OsString],
        io: ChildIo,
    ) -> io::Result<Child> {
        let _ = (first, second, io);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a remote pipeline needs a remote shell (ssh)",
        ))
    }

    /// Runs `argv` to completion, reading stdout and stderr concurrently.
    ///
    /// # Errors
    /// When the process cannot be started or read.
    fn run(&self, argv: &[OsString]) -> io::Result<Output> {
        let mut child = self.spawn(argv, ChildIo::Stdout)?;
        let mut stdout = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut stdout)?;
        }
        let fin = child.wait()?;
        Ok(Output {
            status: fin.status,
            stdout,
            stderr: fin.stderr,
        })
    }
}

/// Runners behind references and smart pointers are runners too.
macro_rules! forward_runner {
    ($($t:ty),*) => {$(
        impl<R: Runner + ?Sized> Runner for $t {
            fn host(&self) -> &Host {
                (**self).host()
            }
            fn spawn(&self, argv: &[OsString], io: ChildIo) -> io::Result<Child> {
                (**self).spawn(argv, io)
            }
            fn invocations(&self) -> u64 {
                (**self).invocations()
            }
            fn spawn_piped(
                &self,
                first: &[OsString],
                second: &[OsString],
                io: ChildIo,
            ) -> io::Result<Child> {
                (**self).spawn_piped(first, second, io)
            }
            fn run(&self, argv: &[OsString]) -> io::Result<Output> {
                (**self).run(argv)
            }
        }
    )*};
}

forward_runner!(&R, Box<R>, std::sync::Arc<R>);

/// Drains a reader into a buffer that keeps only the last `cap` bytes.
pub(crate) fn drain_tail(mut r: impl Read, cap: usize) -> Vec<u8> {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * cap {
                    tail.drain(..tail.len() - cap);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if tail.len() > cap {
        tail.drain(..tail.len() - cap);
    }
    tail
}

fn start(mut cmd: Command, argv: &[OsString], io: ChildIo) -> io::Result<Child> {
    cmd.stderr(Stdio::piped());
    match io {
        ChildIo::Stdout => cmd.stdin(Stdio::null()).stdout(Stdio::piped()),
        ChildIo::Stdin => cmd.stdin(Stdio::piped()).stdout(Stdio::null()),
    };
    let mut child = cmd.spawn()?;
    let stderr = child.stderr.take().map(|e| {
        std::thread::Builder::new()
            .name("zfsrepl-stderr".into())
            .spawn(move || drain_tail(e, STDERR_TAIL_BYTES))
    });
    let stderr = match stderr {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        None => None,
    };
    tracing::debug!(argv = %display_argv(argv), "process start");
    Ok(Child {
        argv: argv.to_vec(),
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        child: Some(child),
        stderr,
    })
}

/// Runs argvs on this machine.
#[derive(Debug, Default)]
pub struct LocalRunner {
    count: AtomicU64,
}

impl LocalRunner {
    /// A new local runner.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

const LOCAL: Host = Host::Local;

impl Runner for LocalRunner {
    fn host(&self) -> &Host {
        &LOCAL
    }

    fn spawn(&self, argv: &[OsString], io: ChildIo) -> io::Result<Child> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(prog);
        cmd.args(args);
        start(cmd, argv, io)
    }

    fn invocations(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Runs argvs on a remote host over ssh, reusing one master connection.
#[derive(Debug)]
pub struct SshRunner {
    host: Host,
    target: SshTarget,
    control_dir: PathBuf,
    count: AtomicU64,
}

impl SshRunner {
    /// A runner for `target`. The master connection opens on first use and
    /// closes when the runner is dropped.
    ///
    /// # Errors
    /// When the private directory for the control socket cannot be made.
    pub fn new(target: SshTarget) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // Short path: unix socket paths are limited to 108 bytes, and %C
        // (a hash of the connection) keeps the file name short.
        let dir = std::env::temp_dir().join(format!(
            "zfsrepl-ssh-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self {
            host: Host::Ssh(target.clone()),
            target,
            control_dir: dir,
            count: AtomicU64::new(0),
        })
    }

    /// The ssh argv (without the remote command) this runner uses.
    #[must_use]
    pub fn ssh_argv(&self) -> Vec<OsString> {
        let t = &self.target;
        let mut a: Vec<OsString> = vec![
            t.program
                .clone()
                .map_or_else(|| "ssh".into(), PathBuf::into_os_string),
        ];
        let mut opt = |s: String| {
            a.push("-o".into());
            a.push(s.into());
        };
        opt("BatchMode=yes".into());
        opt("ControlMaster=auto".into());
        opt(format!(
            "ControlPath={}/%C",
            self.control_dir.to_string_lossy()
        ));
        opt("ControlPersist=300".into());
        opt("ServerAliveInterval=15".into());
        for o in &t.options {
            opt(o.clone());
        }
        if let Some(p) = t.port {
            a.push("-p".into());
            a.push(p.to_string().into());
        }
        if let Some(i) = &t.identity {
            a.push("-i".into());
            a.push(i.clone().into_os_string());
        }
        a.push("--".into());
        a.push(t.destination().into());
        a
    }

    /// The full local argv that runs `argv` remotely.
    #[must_use]
    pub fn wrap(&self, argv: &[OsString]) -> Vec<OsString> {
        let mut a = self.ssh_argv();
        a.push(remote_command(argv));
        a
    }
}

impl Runner for SshRunner {
    fn host(&self) -> &Host {
        &self.host
    }

    fn spawn(&self, argv: &[OsString], io: ChildIo) -> io::Result<Child> {
        if argv.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let full = self.wrap(argv);
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..]);
        start(cmd, argv, io)
    }

    fn spawn_piped(
        &self,
        first: &[OsString],
        second: &[OsString],
        io: ChildIo,
    ) -> io::Result<Child> {
        if first.is_empty() || second.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut line = remote_command(first);
        line.push(" | ");
        line.push(remote_command(second));
        let mut full = self.ssh_argv();
        full.push(line);
        let mut shown = first.to_vec();
        shown.push("|".into());
        shown.extend_from_slice(second);
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..]);
        start(cmd, &shown, io)
    }

    fn invocations(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for SshRunner {
    fn drop(&mut self) {
        // Close the master connection if one was opened, then the directory.
        let sock_exists = std::fs::read_dir(&self.control_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if sock_exists {
            let mut a = self.ssh_argv();
            let dest = a.pop();
            a.pop(); // "--"
            a.extend(["-O".into(), "exit".into(), "--".into()]);
            a.extend(dest);
            let _ = Command::new(&a[0])
                .args(&a[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn quoting_is_once_and_exact() {
        let cases: &[(&str, &str)] = &[
            ("zfs", "zfs"),
            ("tank/a", "tank/a"),
            ("", "''"),
            ("a b", "'a b'"),
            ("it's", "'it'\\''s'"),
            ("$(reboot)", "'$(reboot)'"),
            ("a;b", "'a;b'"),
            ("-x", "-x"),
            ("`id`", "'`id`'"),
            ("a\nb", "'a\nb'"),
            ("*", "'*'"),
            ("~", "'~'"),
        ];
        for (input, want) in cases {
            assert_eq!(
                String::from_utf8(shell_quote(input.as_bytes())).unwrap(),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn quoted_args_survive_a_real_shell() {
        // The remote side runs the line through `sh -c`; do the same here and
        // check that every hostile argument comes back byte for byte.
        let hostile = [
            "tank/with space@snap 1",
            "tank/-dash",
            "it's",
            "$(touch /tmp/zfsrepl-pwned)",
            "a;b|c&d",
            "\"dq\"",
            "back\\slash",
            "new\nline",
            "",
            "*",
        ];
        let mut argv = os(&["printf", "%s\\0"]);
        argv.extend(hostile.iter().map(OsString::from));
        let line = remote_command(&argv);
        let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
        assert!(out.status.success());
        let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        for (i, h) in hostile.iter().enumerate() {
            assert_eq!(got[i], h.as_bytes());
        }
        assert!(!std::path::Path::new("/tmp/zfsrepl-pwned").exists());
    }

    #[test]
    fn ssh_argv_shape() {
        let mut t = SshTarget::parse("backup@ovh3:2222").unwrap();
        t.identity = Some("/root/.ssh/id ed25519".into());
        let r = SshRunner::new(t).unwrap();
        let argv = r.wrap(&os(&["zfs", "list", "-H", "tank/a b"]));
        let s: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(s[0], "ssh");
        assert!(s.contains(&"BatchMode=yes".to_string()));
        assert!(s.iter().any(|a| a.starts_with("ControlPath=")));
        let n = s.len();
        assert_eq!(
            &s[n - 3..],
            &["--", "backup@ovh3", "zfs list -H 'tank/a b'"]
        );
        assert!(s.contains(&"/root/.ssh/id ed25519".to_string()));
        assert!(s.windows(2).any(|w| w == ["-p", "2222"]));
    }

    #[test]
    fn ssh_target_parse() {
        let t = SshTarget::parse("root@10.0.0.1").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str(), t.port),
            (Some("root"), "10.0.0.1", None)
        );
        let t = SshTarget::parse("[::1]:2200").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(2200)));
        let t = SshTarget::parse("fe80::1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("fe80::1", None));
        assert!(SshTarget::parse("-oProxyCommand=x").is_err());
        assert!(SshTarget::parse("h:port").is_err());
        assert!(SshTarget::parse("@h").is_err());
        assert!(SshTarget::parse("").is_err());
    }

    #[test]
    fn local_run_reads_both_streams_without_deadlock() {
        // 1 MiB on stderr and stdout at once: a runner that read stdout first
        // without draining stderr would hang here.
        let r = LocalRunner::new();
        let argv = os(&[
            "sh",
            "-c",
            "head -c 1048576 /dev/zero >&2; head -c 1048576 /dev/zero; echo tail >&2; exit 3",
        ]);
        let out = r.run(&argv).unwrap();
        assert_eq!(out.stdout.len(), 1 << 20);
        assert_eq!(out.status.code(), Some(3));
        assert!(out.stderr.len() <= STDERR_TAIL_BYTES);
        assert!(out.stderr.ends_with("tail\n"));
        assert_eq!(r.invocations(), 1);
    }

    /// A child stopped by SIGKILL after the grace is logged (on zfs-fuse
    /// such a `zfs send` leaves holds behind); one that ends by itself once
    /// its pipe closes is not.
    #[test]
    fn a_child_killed_after_the_grace_is_logged() {
        #[derive(Clone, Default)]
        struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Log {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = Log::default();
        let w = log.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let r = LocalRunner::new();
            // `yes` dies of its closed pipe at once.
            r.spawn(&os(&["yes"]), ChildIo::Stdout).unwrap().kill();
            // `sleep` never notices it.
            r.spawn(&os(&["sleep", "30"]), ChildIo::Stdout)
                .unwrap()
                .kill();
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let warned: Vec<&str> = text.lines().filter(|l| l.contains("SIGKILL")).collect();
        assert_eq!(warned.len(), 1, "{text}");
        assert!(warned[0].contains("sleep 30"), "{text}");
    }

    #[test]
    fn drop_kills_child() {
        let r = LocalRunner::new();
        let child = r.spawn(&os(&["sleep", "30"]), ChildIo::Stdout).unwrap();
        let t = std::time::Instant::now();
        drop(child);
        assert!(t.elapsed().as_secs() < 5);
    }
}

/// A runner that starts no process: it records every argv and answers from
/// a script, for tests of argv building and error handling (seam ii in
/// STYLE.md E3). Unscripted commands succeed with empty output.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct ScriptedRunner {
    calls: std::sync::Mutex<Vec<Vec<String>>>,
    argvs: std::sync::Mutex<Vec<Vec<String>>>,
    script: std::sync::Mutex<Vec<(String, i32, String, String)>>,
}

#[cfg(any(test, feature = "test-util"))]
impl ScriptedRunner {
    /// A runner whose commands all succeed with no output.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers the first command whose rendered argv contains `needle`
    /// with `code`, `stdout` and `stderr` (later rules first).
    pub fn on(&self, needle: &str, code: i32, stdout: &str, stderr: &str) {
        if let Ok(mut s) = self.script.lock() {
            s.insert(0, (needle.into(), code, stdout.into(), stderr.into()));
        }
    }

    /// Every argv run so far, without the program name.
    #[must_use]
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Every argv run so far, program name included.
    #[must_use]
    pub fn argvs(&self) -> Vec<Vec<String>> {
        self.argvs.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Runner for ScriptedRunner {
    fn host(&self) -> &Host {
        &LOCAL
    }

    fn spawn(&self, _argv: &[OsString], _io: ChildIo) -> io::Result<Child> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ScriptedRunner starts no processes",
        ))
    }

    fn invocations(&self) -> u64 {
        self.calls.lock().map_or(0, |c| c.len() as u64)
    }

    fn run(&self, argv: &[OsString]) -> io::Result<Output> {
        use std::os::unix::process::ExitStatusExt;
        let args: Vec<String> = argv[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = display_argv(&argv[1..]);
        if let Ok(mut c) = self.calls.lock() {
            c.push(args);
        }
        if let Ok(mut c) = self.argvs.lock() {
            c.push(
                argv.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            );
        }
        let hit = self
            .script
            .lock()
            .ok()
            .and_then(|s| s.iter().find(|(n, ..)| line.contains(n.as_str())).cloned());
        let (code, out, err) =
            hit.map_or((0, String::new(), String::new()), |(_, c, o, e)| (c, o, e));
        Ok(Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: out.into_bytes(),
            stderr: err,
        })
    }
}
