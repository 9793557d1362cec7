//! Who may do what on a `zfsrepl serve`: each PSK identity maps to the
//! dataset roots it may receive into and send from, and whether it may ask
//! for destroys of its own sync snapshots. Anything else is refused.
//!
//! ```toml
//! # /etc/zfsrepl/peers.toml
//! [[peer]]
//! identity = "off2-to-ovh3"          # as in the PSK secrets file
//! receive = ["rpool/backups/off2"]   # roots it may write (push to us)
//! send = []                          # roots it may read (pull from us)
//! destroy-sync-snapshots = true      # its own zfsrepl_sync_* only
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::name::DatasetName;

/// One identity's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The PSK identity.
    pub identity: String,
    /// Roots it may receive into (it writes these and their descendants).
    pub write_roots: Vec<DatasetName>,
    /// Roots it may send from (it reads these and their descendants).
    pub read_roots: Vec<DatasetName>,
    /// Whether it may destroy snapshots, and then only its own sync
    /// snapshots below its write roots.
    pub allow_destroy: bool,
}

/// The peers of a server, by identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peers {
    peers: Vec<PeerConfig>,
}

/// Why a peers file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeersError {
    /// Unreadable.
    #[error("peers config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML or not the schema.
    #[error("peers config {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's message, with the line and column.
        message: String,
    },
    /// The schema is right but the content is not.
    #[error("peers config {path}: peer {identity:?}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The peer.
        identity: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    peer: Vec<RawPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPeer {
    identity: String,
    #[serde(default)]
    receive: Vec<DatasetName>,
    #[serde(default)]
    send: Vec<DatasetName>,
    #[serde(default)]
    destroy_sync_snapshots: bool,
}

impl Peers {
    /// Reads a peers file.
    ///
    /// # Errors
    /// [`PeersError`].
    pub fn load(path: &Path) -> Result<Self, PeersError> {
        let text = std::fs::read_to_string(path).map_err(|source| PeersError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses a peers file's text (`path` is for messages).
    ///
    /// # Errors
    /// [`PeersError::Syntax`] and [`PeersError::Invalid`]: an empty or
    /// duplicate identity, a peer granted nothing, a root listed twice, a
    /// write root shared with another identity (two links would fight over
    /// one tree).
    pub fn parse(text: &str, path: &Path) -> Result<Self, PeersError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| PeersError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut peers: Vec<PeerConfig> = Vec::new();
        for p in raw.peer {
            let bad = |problem: String| PeersError::Invalid {
                path: path.to_owned(),
                identity: p.identity.clone(),
                problem,
            };
            if p.identity.is_empty() || p.identity.chars().any(char::is_control) {
                return Err(bad("the identity is empty or has control characters".into()));
            }
            if peers.iter().any(|q| q.identity == p.identity) {
                return Err(bad("listed twice".into()));
            }
            if p.receive.is_empty() && p.send.is_empty() {
                return Err(bad("grants nothing: give it receive or send roots".into()));
            }
            if p.destroy_sync_snapshots && p.receive.is_empty() {
                return Err(bad("destroy-sync-snapshots needs receive roots".into()));
            }
            for list in [&p.receive, &p.send] {
                for (i, a) in list.iter().enumerate() {
                    if list[..i].iter().any(|b| a.is_within(b) || b.is_within(a)) {
                        return Err(bad(format!(
                            "root {:?} overlaps another of its roots",
                            a.as_str()
                        )));
                    }
                }
            }
            for q in &peers {
                for a in &p.receive {
                    if let Some(b) = q
                        .write_roots
                        .iter()
                        .find(|b| a.is_within(b) || b.is_within(a))
                    {
                        return Err(bad(format!(
                            "receive root {:?} overlaps {:?} of peer {:?}",
                            a.as_str(),
                            b.as_str(),
                            q.identity
                        )));
                    }
                }
            }
            peers.push(PeerConfig {
                identity: p.identity,
                write_roots: p.receive,
                read_roots: p.send,
                allow_destroy: p.destroy_sync_snapshots,
            });
        }
        Ok(Self { peers })
    }

    /// Peers built in memory.
    #[must_use]
    pub fn from_configs(peers: Vec<PeerConfig>) -> Self {
        Self { peers }
    }

    /// The rights of `identity`, if it has an entry.
    #[must_use]
    pub fn get(&self, identity: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.identity == identity)
    }

    /// Every peer, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &PeerConfig> {
        self.peers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Peers, PeersError> {
        Peers::parse(text, Path::new("peers.toml"))
    }

    #[test]
    fn parses_peers() {
        let p = parse(
            r#"
[[peer]]
identity = "off2 to ovh3"
receive = ["rpool/b/off2", "rpool/b/x y:z"]
destroy-sync-snapshots = true

[[peer]]
identity = "ovh3-pull"
send = ["rpool/b/off2"]
"#,
        )
        .unwrap();
        let a = p.get("off2 to ovh3").unwrap();
        assert_eq!(a.write_roots.len(), 2);
        assert!(a.read_roots.is_empty() && a.allow_destroy);
        let b = p.get("ovh3-pull").unwrap();
        assert!(b.write_roots.is_empty() && !b.allow_destroy);
        assert!(p.get("nobody").is_none());
        assert!(p.get("").is_none());
        assert!(parse("").unwrap().get("x").is_none());
    }

    #[test]
    fn refuses_bad_peers() {
        for (text, want) in [
            ("[[peer]]\nidentity = \"a\"\n", "grants nothing"),
            ("[[peer]]\nidentity = \"\"\nsend = [\"t\"]\n", "empty"),
            (
                "[[peer]]\nidentity = \"a\\u001b\"\nsend = [\"t\"]\n",
                "control",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nsend = [\"t\"]\n[[peer]]\nidentity = \"a\"\nsend = [\"u\"]\n",
                "twice",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nsend = [\"t\"]\ndestroy-sync-snapshots = true\n",
                "needs receive",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nreceive = [\"t/a\", \"t\"]\n",
                "overlaps another",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nreceive = [\"t/a\"]\n[[peer]]\nidentity = \"b\"\nreceive = [\"t\"]\n",
                "of peer \"a\"",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nreceive = [\"t@snap\"]\n",
                "line",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nrecieve = [\"t\"]\n",
                "unknown field",
            ),
            ("[[peer]]\nreceive = [\"t\"]\n", "identity"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("peers config peers.toml"), "{e}");
        }
    }

    #[test]
    fn distinct_write_roots_and_shared_read_roots_are_fine() {
        parse(
            "[[peer]]\nidentity = \"a\"\nreceive = [\"t/a\"]\nsend = [\"t\"]\n\
             [[peer]]\nidentity = \"b\"\nreceive = [\"t/ab\"]\nsend = [\"t\"]\n",
        )
        .unwrap();
    }
}
