//! A second "host" for network tests: a Linux network namespace joined to
//! this one by a veth pair, so that a server can run "elsewhere" and the
//! link between the two can be cut and restored. Needs root and iproute2
//! (`.ci/run` installs it); a failure to set it up panics, never skips.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a veth link to this one (`10.213.N.1` here,
/// `10.213.N.2` there), torn down on drop.
#[derive(Debug)]
pub struct NetNs {
    /// The namespace's name (for `ip netns exec NAME ...`).
    pub name: String,
    /// This side's address.
    pub here: String,
    /// The namespace side's address.
    pub there: String,
    veth: String,
}

/// Runs `ip ARGS`.
///
/// # Panics
/// When `ip` cannot be run or fails.
pub fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run ip (install iproute2): {e}");
    });
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl NetNs {
    /// Creates the namespace and its link, both up.
    ///
    /// # Panics
    /// When `ip` fails (not root, no iproute2).
    #[must_use]
    pub fn new() -> Self {
        let id = std::process::id();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("zfsrepl_t{id}_{n}");
        // Interface names are at most 15 bytes.
        let tag = (id % 10_000) * 10 + n % 10;
        let veth = format!("zr{tag}a");
        let peer = format!("zr{tag}b");
        let net = 1 + (id.wrapping_mul(7).wrapping_add(n)) % 250;
        let (here, there) = (format!("10.213.{net}.1"), format!("10.213.{net}.2"));
        // Leftovers of a killed earlier run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        ip(&["netns", "add", &name]);
        let ns = Self {
            name,
            here,
            there,
            veth,
        };
        ip(&[
            "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/24", ns.here), "dev", &ns.veth]);
        ip(&["link", "set", &ns.veth, "up"]);
        ns.inside(&["link", "set", "lo", "up"]);
        ns.inside(&["addr", "add", &format!("{}/24", ns.there), "dev", &peer]);
        ns.inside(&["link", "set", &peer, "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    ///
    /// # Panics
    /// When it fails.
    pub fn inside(&self, args: &[&str]) {
        let mut a = vec!["netns", "exec", &self.name, "ip"];
        a.extend_from_slice(args);
        ip(&a);
    }

    /// Cuts (`false`) or restores (`true`) the link.
    ///
    /// # Panics
    /// When `ip` fails.
    pub fn link(&self, up: bool) {
        ip(&["link", "set", &self.veth, if up { "up" } else { "down" }]);
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
