//! What the installed ZFS can do, probed once per host and cached.
//!
//! The probe costs at most three `zfs` processes and touches no pool:
//! 1. `zfs` with no arguments prints its usage, which names the commands
//!    (`bookmark`, `holds`, `version`) and most flags (`send [-DLPbcehnpsvw]`,
//!    `receive [-vMnsFhu]`, `list [-Hp]`, `destroy [-dnpRrv]`, the
//!    multi-snapshot `snapshot ... <fs>@<snap> ...` and comma-destroy
//!    `<snap>[%<snap>][,...]` forms);
//! 2. `zfs version`, where the usage lists it, for the version string;
//! 3. `zfs receive -u` with an empty stream and a name that cannot exist, to
//!    learn whether `-u` is accepted (zfs-fuse accepts it without listing it).

use serde::{Deserialize, Serialize};

/// The features of one host's ZFS that change which commands we build.
///
/// Every planner and executor consults these instead of assuming: a missing
/// capability means a documented fallback (one destroy per snapshot, `get -Hp`
/// instead of `list -p`, userrefs instead of hold tags), shown in plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)]
pub struct Capabilities {
    /// The implementation and version, when it says (`zfs-2.2.2`,
    /// `zfs-kmod-2.2.2`); `None` when `zfs version` does not exist.
    pub version: Option<String>,
    /// A short label for humans: `openzfs`, `zfs-fuse`, `unknown`.
    pub flavor: String,
    /// `zfs list -p` (exact numbers from `list`); without it we list with
    /// `zfs get -Hp -r`.
    pub list_parsable: bool,
    /// `zfs list -t bookmark` / `zfs bookmark`.
    pub bookmarks: bool,
    /// `zfs hold` / `zfs release`.
    pub holds: bool,
    /// `zfs holds` can list tags (zfs-fuse needs a missing Python helper).
    pub holds_list: bool,
    /// Several snapshots in one atomic `zfs snapshot a@x b@x`.
    pub multi_snapshot: bool,
    /// `zfs destroy fs@a,b,c`.
    pub comma_destroy: bool,
    /// `zfs destroy -n`.
    pub destroy_dry_run: bool,
    /// `zfs send -c`.
    pub send_compressed: bool,
    /// `zfs send -L`.
    pub send_large_blocks: bool,
    /// `zfs send -e`.
    pub send_embedded: bool,
    /// `zfs send -w`.
    pub send_raw: bool,
    /// `zfs send -n -v -P` size estimates.
    pub send_estimate: bool,
    /// `zfs send -t TOKEN` and `zfs receive -s`.
    pub resumable: bool,
    /// `zfs receive -u`.
    pub recv_unmounted: bool,
    /// `zfs receive -o` / `-x`.
    pub recv_props: bool,
}

impl Capabilities {
    /// Modern OpenZFS (2.x): everything.
    #[must_use]
    pub fn openzfs() -> Self {
        Self {
            version: Some("zfs-2.2.0 (model)".into()),
            flavor: "openzfs".into(),
            list_parsable: true,
            bookmarks: true,
            holds: true,
            holds_list: true,
            multi_snapshot: true,
            comma_destroy: true,
            destroy_dry_run: true,
            send_compressed: true,
            send_large_blocks: true,
            send_embedded: true,
            send_raw: true,
            send_estimate: true,
            resumable: true,
            recv_unmounted: true,
            recv_props: true,
        }
    }

    /// Debian's zfs-fuse 0.7 (pool version 23), as verified on real pools.
    #[must_use]
    pub fn zfs_fuse() -> Self {
        Self {
            version: None,
            flavor: "zfs-fuse".into(),
            list_parsable: false,
            bookmarks: false,
            holds: true,
            holds_list: false,
            multi_snapshot: false,
            comma_destroy: false,
            destroy_dry_run: false,
            send_compressed: false,
            send_large_blocks: false,
            send_embedded: false,
            send_raw: false,
            send_estimate: false,
            resumable: false,
            recv_unmounted: true,
            recv_props: false,
        }
    }
}
