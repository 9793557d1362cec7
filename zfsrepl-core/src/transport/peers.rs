//! Who may do what on a `zfsrepl serve`: each PSK identity maps to an
//! [`AgentConfig`]: the dataset roots it may send from (read) and receive
//! into (write), and whether it may destroy its own sync snapshots or roll
//! back. Anything else is refused, and an identity with no entry is refused
//! at the handshake.
//!
//! ```toml
//! # /etc/zfsrepl/peers.toml
//! [[peer]]
//! identity = "off2-to-ovh3"              # as in the PSK secrets file
//! write-roots = ["rpool/backups/off2"]   # it may push into these
//! read-roots = []                        # it may pull from these
//! allow-destroy = true                   # its own zfsrepl_sync_* only
//! allow-rollback = false                 # roll back over zfsrepl snapshots
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::agent::AgentConfig;

/// The rights of one identity (its `identity` is always set).
pub type PeerConfig = AgentConfig;

/// The peers of a server, by identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peers {
    peers: Vec<AgentConfig>,
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
    peer: Vec<AgentConfig>,
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
    /// [`PeersError::Syntax`] and [`PeersError::Invalid`]: a missing, empty
    /// or duplicate identity, a peer granted nothing, overlapping roots of
    /// one kind, a write root shared with another identity (two links would
    /// fight over one tree), rollbacks without write roots.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PeersError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| PeersError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut peers: Vec<AgentConfig> = Vec::new();
        for p in raw.peer {
            let identity = p.identity.clone().unwrap_or_default();
            let bad = |problem: String| PeersError::Invalid {
                path: path.to_owned(),
                identity: identity.clone(),
                problem,
            };
            if identity.is_empty() || identity.chars().any(char::is_control) {
                return Err(bad(
                    "the identity is missing, empty or has control characters".into(),
                ));
            }
            if peers.iter().any(|q| q.who() == identity) {
                return Err(bad("listed twice".into()));
            }
            if p.write_roots.is_empty() && p.read_roots.is_empty() {
                return Err(bad(
                    "grants nothing: give it write-roots or read-roots".into()
                ));
            }
            if p.allow_rollback && p.write_roots.is_empty() {
                return Err(bad("allow-rollback needs write-roots".into()));
            }
            for list in [&p.write_roots, &p.read_roots] {
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
                for a in &p.write_roots {
                    if let Some(b) = q
                        .write_roots
                        .iter()
                        .find(|b| a.is_within(b) || b.is_within(a))
                    {
                        return Err(bad(format!(
                            "write root {:?} overlaps {:?} of peer {:?}",
                            a.as_str(),
                            b.as_str(),
                            q.who()
                        )));
                    }
                }
            }
            peers.push(p);
        }
        Ok(Self { peers })
    }

    /// The rights of `identity`, if it has an entry.
    #[must_use]
    pub fn get(&self, identity: &str) -> Option<&AgentConfig> {
        self.peers
            .iter()
            .find(|p| p.identity.as_deref() == Some(identity))
    }

    /// Every peer, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &AgentConfig> {
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
write-roots = ["rpool/b/off2", "rpool/b/x y:z"]
allow-destroy = true

[[peer]]
identity = "ovh3-pull"
read-roots = ["rpool/b/off2"]
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
            ("[[peer]]\nidentity = \"\"\nread-roots = [\"t\"]\n", "empty"),
            (
                "[[peer]]\nidentity = \"a\\u001b\"\nread-roots = [\"t\"]\n",
                "control",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nread-roots = [\"t\"]\n[[peer]]\nidentity = \"a\"\nread-roots = [\"u\"]\n",
                "twice",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nread-roots = [\"t\"]\nallow-rollback = true\n",
                "needs write-roots",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nwrite-roots = [\"t/a\", \"t\"]\n",
                "overlaps another",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nwrite-roots = [\"t/a\"]\n[[peer]]\nidentity = \"b\"\nwrite-roots = [\"t\"]\n",
                "of peer \"a\"",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nwrite-roots = [\"t@snap\"]\n",
                "line",
            ),
            (
                "[[peer]]\nidentity = \"a\"\nrecieve = [\"t\"]\n",
                "unknown field",
            ),
            ("[[peer]]\nwrite-roots = [\"t\"]\n", "missing"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("peers config peers.toml"), "{e}");
        }
    }

    #[test]
    fn distinct_write_roots_and_shared_read_roots_are_fine() {
        parse(
            "[[peer]]\nidentity = \"a\"\nwrite-roots = [\"t/a\"]\nread-roots = [\"t\"]\n\
             [[peer]]\nidentity = \"b\"\nwrite-roots = [\"t/ab\"]\nread-roots = [\"t\"]\n",
        )
        .unwrap();
    }
}
