//! Properties: the native ones the model knows, user properties
//! (`module:name`), how values inherit down the tree, and the checks
//! `zfs set`, `zfs inherit` and `zfs receive -o/-x` make.

use crate::name::DatasetName;

use super::state::State;

/// What a property is being set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum On {
    Filesystem,
    Volume,
    Snapshot,
    Bookmark,
}

/// The native properties the model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Native {
    Type,
    Name,
    Guid,
    Createtxg,
    Creation,
    Used,
    Referenced,
    Written,
    Origin,
    Userrefs,
    Mounted,
    ReceiveResumeToken,
    Mountpoint,
    Readonly,
    Sharenfs,
    Sharesmb,
    Canmount,
}

impl Native {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "type" => Self::Type,
            "name" => Self::Name,
            "guid" => Self::Guid,
            "createtxg" => Self::Createtxg,
            "creation" => Self::Creation,
            "used" => Self::Used,
            "referenced" | "refer" => Self::Referenced,
            "written" => Self::Written,
            "origin" => Self::Origin,
            "userrefs" => Self::Userrefs,
            "mounted" => Self::Mounted,
            "receive_resume_token" => Self::ReceiveResumeToken,
            "mountpoint" => Self::Mountpoint,
            "readonly" | "rdonly" => Self::Readonly,
            "sharenfs" => Self::Sharenfs,
            "sharesmb" => Self::Sharesmb,
            "canmount" => Self::Canmount,
            _ => return None,
        })
    }

    /// Can be set with `zfs set`.
    pub(crate) fn settable(self) -> bool {
        matches!(
            self,
            Self::Mountpoint | Self::Readonly | Self::Sharenfs | Self::Sharesmb | Self::Canmount
        )
    }

    /// Children inherit it (`canmount` is settable but deliberately not
    /// inherited by ZFS, so a parent's `canmount=off` does not hide the
    /// children).
    pub(crate) fn inheritable(self) -> bool {
        matches!(
            self,
            Self::Mountpoint | Self::Readonly | Self::Sharenfs | Self::Sharesmb
        )
    }

    /// Applies to filesystems only, not volumes.
    fn fs_only(self) -> bool {
        matches!(
            self,
            Self::Mountpoint | Self::Sharenfs | Self::Sharesmb | Self::Canmount | Self::Mounted
        )
    }
}

/// ZFS's rule for user property names: lowercase letters, digits and
/// `- _ . :`, with at least one `:`, at most 255 bytes.
pub(crate) fn is_user_prop(name: &str) -> bool {
    name.len() < 256
        && name.contains(':')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b))
}

/// The longest property value ZFS stores.
const MAX_VALUE_LEN: usize = 8191;

/// Checks `zfs set prop=value` on an entity; the error is ZFS's reason.
pub(crate) fn check_set(on: On, prop: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("'{prop}' value is too long"));
    }
    if is_user_prop(prop) {
        return match on {
            On::Bookmark => Err("this property can not be modified for bookmarks".into()),
            _ => Ok(()),
        };
    }
    let Some(native) = Native::parse(prop) else {
        return Err(format!("invalid property '{prop}'"));
    };
    if !native.settable() {
        return Err(format!("'{prop}' is readonly"));
    }
    match on {
        On::Snapshot => return Err("this property can not be modified for snapshots".into()),
        On::Bookmark => return Err("this property can not be modified for bookmarks".into()),
        On::Volume if native.fs_only() => {
            return Err(format!("'{prop}' does not apply to datasets of this type"));
        }
        _ => {}
    }
    let ok = match native {
        Native::Readonly => matches!(value, "on" | "off"),
        Native::Canmount => matches!(value, "on" | "off" | "noauto"),
        Native::Mountpoint => value.starts_with('/') || matches!(value, "none" | "legacy"),
        _ => true,
    };
    if ok {
        Ok(())
    } else if native == Native::Mountpoint {
        Err("'mountpoint' must be an absolute path, 'none', or 'legacy'".into())
    } else {
        Err(format!(
            "'{prop}' must be one of 'on | off{}'",
            if native == Native::Canmount {
                " | noauto"
            } else {
                ""
            }
        ))
    }
}

/// Checks `zfs inherit prop` on an entity.
pub(crate) fn check_inherit(on: On, prop: &str) -> Result<(), String> {
    if is_user_prop(prop) {
        return match on {
            On::Bookmark => Err("this property can not be modified for bookmarks".into()),
            _ => Ok(()),
        };
    }
    match Native::parse(prop) {
        None => Err(format!("invalid property '{prop}'")),
        Some(n) if !n.settable() => Err(format!("'{prop}' property is read-only")),
        Some(Native::Canmount) => Err("'canmount' property cannot be inherited".into()),
        Some(_) if matches!(on, On::Snapshot | On::Bookmark) => {
            Err("this property can not be modified for snapshots".into())
        }
        Some(_) => Ok(()),
    }
}

/// Checks a property named in `zfs receive -o` or `-x`: user properties and
/// settable native ones only.
pub(crate) fn check_recv(prop: &str) -> Result<(), String> {
    if is_user_prop(prop) || Native::parse(prop).is_some_and(Native::settable) {
        Ok(())
    } else {
        Err(format!("invalid property '{prop}'"))
    }
}

/// The value and source of a settable or user property on a dataset:
/// set here, else inherited from the nearest ancestor that sets it (for
/// inheritable ones), else the default. `None` for an unset user property.
pub(crate) fn dataset_value(
    state: &State,
    name: &DatasetName,
    prop: &str,
) -> Option<(String, String)> {
    let ds = state.get(name)?;
    let native = Native::parse(prop);
    if native.is_some_and(Native::fs_only) && !ds.is_fs() {
        return Some(("-".into(), "-".into()));
    }
    if let Some((v, src)) = ds.props.get(prop) {
        return Some((v.to_owned(), src.as_str().to_owned()));
    }
    if native.is_none_or(Native::inheritable) {
        let mut cur = name.parent();
        while let Some(p) = cur {
            if let Some((v, _)) = state.get(&p).and_then(|d| d.props.get(prop)) {
                let v = if native == Some(Native::Mountpoint) && v.starts_with('/') {
                    // A child's mountpoint follows its ancestor's, plus the
                    // path between them.
                    let rel = &name.as_str()[p.as_str().len()..];
                    format!("{}{rel}", v.trim_end_matches('/'))
                } else {
                    v.to_owned()
                };
                return Some((v, format!("inherited from {p}")));
            }
            cur = p.parent();
        }
    }
    let default = match native? {
        Native::Mountpoint => format!("/{name}"),
        Native::Readonly | Native::Sharenfs | Native::Sharesmb => "off".into(),
        Native::Canmount => "on".into(),
        _ => return None,
    };
    Some((default, "default".into()))
}
