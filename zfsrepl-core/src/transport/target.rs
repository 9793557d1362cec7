//! Network endpoints on the command line: `tls://HOST:PORT/pool/ds` (native
//! TLS-PSK to a `zfsrepl serve`) and `stunnel://HOST:PORT/pool/ds` (plain
//! TCP into a local stunnel client port, which carries it over TLS-PSK).

use std::fmt;

use crate::name::{DatasetName, NameError};

/// How a network endpoint is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Native TLS-PSK (`tls://`).
    Tls,
    /// Plain TCP to a local stunnel client port (`stunnel://`).
    Stunnel,
}

/// A dataset on a `zfsrepl serve` across the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetTarget {
    /// TLS or through stunnel.
    pub kind: LinkKind,
    /// `host:port` (IPv6 as `[addr]:port`), ready for `connect`.
    pub addr: String,
    /// The dataset on the server.
    pub dataset: DatasetName,
}

/// Why a `tls://` or `stunnel://` endpoint is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// No `/pool/ds` after the address.
    #[error("{0:?}: expected SCHEME://HOST:PORT/POOL/DATASET")]
    NoDataset(String),
    /// The host or port is missing or malformed.
    #[error("{spec:?}: {problem}")]
    Address {
        /// The endpoint as given.
        spec: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The dataset name is invalid.
    #[error("{spec:?}: {source}")]
    Dataset {
        /// The endpoint as given.
        spec: String,
        /// Why.
        #[source]
        source: NameError,
    },
}

impl NetTarget {
    /// Parses `tls://HOST:PORT/pool/ds` or `stunnel://HOST:PORT/pool/ds`;
    /// `None` when `s` has neither scheme (a local or ssh endpoint). The
    /// port is required; the dataset is everything after the first `/`
    /// following the address, so it may hold spaces, `:` and the like.
    ///
    /// # Errors
    /// [`TargetError`] for a malformed address or dataset.
    pub fn parse(s: &str) -> Option<Result<Self, TargetError>> {
        let (kind, rest) = if let Some(r) = s.strip_prefix("tls://") {
            (LinkKind::Tls, r)
        } else if let Some(r) = s.strip_prefix("stunnel://") {
            (LinkKind::Stunnel, r)
        } else {
            return None;
        };
        Some(Self::parse_rest(s, kind, rest))
    }

    fn parse_rest(spec: &str, kind: LinkKind, rest: &str) -> Result<Self, TargetError> {
        let bad = |problem| TargetError::Address {
            spec: spec.to_owned(),
            problem,
        };
        // The address ends at the first '/' (after a bracketed IPv6 host).
        let after_host = if rest.starts_with('[') {
            rest.find(']')
                .ok_or(bad("unclosed '[' in an IPv6 address"))?
                + 1
        } else {
            0
        };
        let slash = rest[after_host..]
            .find('/')
            .map(|i| i + after_host)
            .ok_or_else(|| TargetError::NoDataset(spec.to_owned()))?;
        let (addr, ds) = (&rest[..slash], &rest[slash + 1..]);
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or(bad("the address needs a port: HOST:PORT"))?;
        if host.is_empty() || host == "[]" {
            return Err(bad("empty host"));
        }
        if !host.starts_with('[') && host.contains(':') {
            return Err(bad("write an IPv6 address in brackets: [addr]:port"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        {
            return Err(bad("the host has a space, a control character or '@'"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(bad("the port must be a number from 1 to 65535")),
        }
        let dataset = DatasetName::parse(ds).map_err(|source| TargetError::Dataset {
            spec: spec.to_owned(),
            source,
        })?;
        Ok(Self {
            kind,
            addr: addr.to_owned(),
            dataset,
        })
    }
}

impl fmt::Display for NetTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            LinkKind::Tls => "tls",
            LinkKind::Stunnel => "stunnel",
        };
        write!(f, "{scheme}://{}/{}", self.addr, self.dataset.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let ok = [
            (
                "tls://ovh3:8999/rpool/b/off",
                LinkKind::Tls,
                "ovh3:8999",
                "rpool/b/off",
            ),
            (
                "stunnel://127.0.0.1:9001/tank/a b:c/-x.y",
                LinkKind::Stunnel,
                "127.0.0.1:9001",
                "tank/a b:c/-x.y",
            ),
            ("tls://[::1]:8999/tank", LinkKind::Tls, "[::1]:8999", "tank"),
            (
                "tls://10.0.0.2:1/tank/x:1/y",
                LinkKind::Tls,
                "10.0.0.2:1",
                "tank/x:1/y",
            ),
        ];
        for (s, kind, addr, ds) in ok {
            let t = NetTarget::parse(s).unwrap().unwrap();
            assert_eq!(
                (t.kind, t.addr.as_str(), t.dataset.as_str()),
                (kind, addr, ds),
                "{s}"
            );
            assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn other_schemes_are_not_network_targets() {
        for s in [
            "tank/a",
            "root@ovh3:rpool/a",
            "tls:/x",
            "TLS://h:1/t",
            "ssh://h/t",
        ] {
            assert!(NetTarget::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn refuses_malformed() {
        for s in [
            "tls://ovh3/rpool",       // no port
            "tls://ovh3:0/rpool",     // port 0
            "tls://ovh3:99999/rpool", // port too big
            "tls://ovh3:x/rpool",     // port not a number
            "tls://:8999/rpool",      // no host
            "tls://ovh3:8999",        // no dataset
            "tls://ovh3:8999/",       // empty dataset
            "tls://ovh3:8999/a@b",    // a snapshot
            "tls://::1:8999/tank",    // IPv6 without brackets
            "tls://[::1:8999/tank",   // unclosed bracket
            "tls://a b:8999/tank",    // space in host
            "tls://u@h:8999/tank",    // ssh-style user
            "stunnel://h:1/-tank",    // pool name starting with '-'
            "tls://h:1/tank//a",      // empty component
        ] {
            assert!(NetTarget::parse(s).unwrap().is_err(), "{s}");
        }
    }
}
