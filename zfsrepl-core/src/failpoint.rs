//! Crash points for crash-safety tests: `ZFSREPL_FAILPOINTS="NAME[@N],..."`
//! in the environment makes the process abort (as `kill -9` would: no
//! destructors, no cleanup, nothing flushed that was not written) the
//! `N`th time (default the first) it reaches [`hit`]`("NAME")`.
//!
//! Unset, which is always the case outside tests, a point costs one
//! atomic load after the first call. The variable is read once per
//! process. The points are listed where they are used (`grep
//! failpoint::hit`): the daemon's state file has one at every write step,
//! and replication's cleanup one after the receives and after each side's
//! holds and releases.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the points.
pub const ENV: &str = "ZFSREPL_FAILPOINTS";

struct Armed {
    /// Point -> (the hit that aborts, hits so far).
    points: BTreeMap<String, (u64, AtomicU64)>,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().map(|v| parse(&v)))
        .as_ref()
}

fn parse(spec: &str) -> Armed {
    let points = spec
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, nth) = match p.split_once('@') {
                Some((n, k)) => (n, k.parse().unwrap_or(1).max(1)),
                None => (p, 1),
            };
            (name.to_owned(), (nth, AtomicU64::new(0)))
        })
        .collect();
    Armed { points }
}

/// Aborts the process here if `name` is armed and this is its fatal hit.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if let Some((nth, seen)) = a.points.get(name)
        && seen.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        eprintln!("zfsrepl: failpoint {name} reached: aborting ({ENV})");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_counts() {
        let a = parse("state-rename@3, state-fsync,,bad@x");
        let get = |n: &str| a.points.get(n).map(|p| p.0);
        assert_eq!(get("state-rename"), Some(3));
        assert_eq!(get("state-fsync"), Some(1));
        assert_eq!(get("bad"), Some(1));
        assert_eq!(a.points.len(), 3);
    }

    #[test]
    fn unarmed_points_do_nothing() {
        // The test process has no ZFSREPL_FAILPOINTS naming this point.
        hit("no-such-point");
    }
}
