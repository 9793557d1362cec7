//! What one peer may do through the agent: [`AgentConfig`], read from a
//! small TOML file.
//!
//! ```toml
//! # /etc/zfsrepl/agent.toml
//! identity = "off2"                  # a label for logs (TLS: the PSK identity)
//! read-roots = ["tank/off"]          # the peer may send (read) these trees
//! write-roots = ["backup/off2"]      # and receive into these
//! allow-destroy = true               # destroy its own older sync snapshots
//! allow-rollback = false             # roll back over zfsrepl snapshots / receive -F
//! allow-stream-props = false         # receive `send -p`/`-R` streams (properties)
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::name::DatasetName;

/// The confinement of one peer.
///
/// A dataset is readable when it is a read root or lies below one, and
/// writable likewise for the write roots. Everything else is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentConfig {
    /// Who the peer is, for logs (with TLS-PSK, the PSK identity this
    /// config belongs to).
    #[serde(default)]
    pub identity: Option<String>,
    /// Trees the peer may list and send from (and take, hold and bookmark
    /// its job's sync snapshots in).
    #[serde(default)]
    pub read_roots: Vec<DatasetName>,
    /// Trees the peer may list and receive into.
    #[serde(default)]
    pub write_roots: Vec<DatasetName>,
    /// The peer may destroy its own job's sync snapshots and bookmarks
    /// (inside either kind of root).
    #[serde(default)]
    pub allow_destroy: bool,
    /// The peer may roll a writable dataset back over snapshots zfsrepl
    /// made, and receive with `-F` when it asks for it.
    #[serde(default)]
    pub allow_rollback: bool,
    /// The peer may receive streams that carry properties or descendants
    /// (`zfs send -p`/`-R`: a compound stream), whose `mountpoint` or
    /// `sharenfs` would otherwise take effect on this host. zfsrepl itself
    /// never sends them.
    #[serde(default)]
    pub allow_stream_props: bool,
}

/// Why a config file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML for an [`AgentConfig`] (unknown keys, invalid
    /// dataset names).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// It allows nothing.
    #[error("{path}: no read-roots and no write-roots: the agent would refuse everything")]
    Empty {
        /// The file.
        path: String,
    },
}

impl AgentConfig {
    /// Parses a config; `path` is for messages.
    ///
    /// # Errors
    /// [`AgentConfigError::Parse`] or [`AgentConfigError::Empty`].
    pub fn from_toml(text: &str, path: &str) -> Result<Self, AgentConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| AgentConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if c.read_roots.is_empty() && c.write_roots.is_empty() {
            return Err(AgentConfigError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(c)
    }

    /// Reads and parses a config file.
    ///
    /// # Errors
    /// As [`AgentConfig::from_toml`], and [`AgentConfigError::Read`].
    pub fn load(path: &Path) -> Result<Self, AgentConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AgentConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text, &shown)
    }

    /// Whether the peer may read (list, send from) `ds`.
    #[must_use]
    pub fn readable(&self, ds: &DatasetName) -> bool {
        self.read_roots.iter().any(|r| ds.is_within(r))
    }

    /// Whether the peer may write (receive into) `ds`.
    #[must_use]
    pub fn writable(&self, ds: &DatasetName) -> bool {
        self.write_roots.iter().any(|r| ds.is_within(r))
    }

    /// Whether `ds` lies in any root.
    #[must_use]
    pub fn visible(&self, ds: &DatasetName) -> bool {
        self.readable(ds) || self.writable(ds)
    }

    /// The identity for logs (`-` when none).
    #[must_use]
    pub fn who(&self) -> &str {
        self.identity.as_deref().unwrap_or("-")
    }
}
