//! Mounts below `/usr` carried across a switch of `/usr`: ostree's state
//! overlays (`ostree-state-overlay@usr-local.service`, `…@usr-lib-opt`), an
//! admin's bind mounts, and whatever was mounted on a live `/usr`.
//!
//! A new overlay attached on `/usr` hides every mount below it, and detaching
//! an overlay takes the mounts made on it along. As systemd-sysext does when it
//! replaces its `/usr` overlay, the visible mounts below `/usr` are cloned
//! (`open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: the same filesystems, with what
//! is mounted below them) before the switch, and each clone is attached at its
//! path in the new tree — into the new overlay before it becomes visible where
//! the kernel allows mounting on a detached tree, else right after. A mount the
//! new tree already shows (the booted `/usr`'s own, uncovered by a reset) is
//! left as it is. Cloning happens before anything changes: a mount that cannot
//! be carried refuses the transition, naming it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::Context;
use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

/// One mount below `/usr`, cloned, with what identifies its root.
pub struct Carried {
    /// Its path relative to `/usr` (`local`, `lib/opt`).
    pub rel: String,
    clone: OwnedFd,
    /// Device and inode of its root: the same mount seen again is not attached twice.
    dev: (u32, u32),
    ino: u64,
    /// Attached into the new tree already.
    attached: bool,
}

/// The mounts below a `/usr`, outermost first (each carries the mounts below it).
#[derive(Default)]
pub struct Submounts {
    pub carried: Vec<Carried>,
}

/// A mount below `/usr` that cannot be carried across a switch (a refusal:
/// nothing changed).
#[derive(Debug, thiserror::Error)]
#[error("cannot carry the mount on {path} across the switch of /usr ({why}); unmount it first")]
pub struct Uncarriable {
    pub path: String,
    pub why: String,
}

/// The outermost mount points strictly below `usr` among `(id, mount point)`
/// pairs, bottom to top, that are visible (`visible(id, path)`): a mount below
/// another one travels with it.
pub fn outermost<'a>(
    usr: &Path,
    mounts: impl IntoIterator<Item = (u64, &'a Path)>,
    visible: impl Fn(u64, &Path) -> bool,
) -> Vec<String> {
    let mut points: Vec<&Path> = mounts
        .into_iter()
        .filter(|(_, p)| p.starts_with(usr) && *p != usr)
        .filter(|&(id, p)| visible(id, p))
        .map(|(_, p)| p)
        .collect();
    points.sort();
    points.dedup();
    let mut out: Vec<&Path> = Vec::new();
    for p in points {
        if !out.iter().any(|o| p.starts_with(o)) {
            out.push(p);
        }
    }
    out.iter().filter_map(|p| p.strip_prefix(usr).ok()).map(|p| p.to_string_lossy().into_owned()).collect()
}

fn statx_at(dir: BorrowedFd<'_>, rel: &str, mask: StatxFlags) -> rustix::io::Result<rustix::fs::Statx> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | if rel.is_empty() { AtFlags::EMPTY_PATH } else { AtFlags::empty() };
    rustix::fs::statx(dir, rel, flags, mask)
}

impl Submounts {
    /// Clones every visible mount below `usr` (a path of this mount namespace).
    pub fn collect(usr: &Path) -> anyhow::Result<Submounts> {
        let usr = std::fs::canonicalize(usr).with_context(|| format!("cannot resolve {}", usr.display()))?;
        let mounts = crate::host::mounts::mounts()?;
        // Listed mounts may be covered (by livefs's own overlay, say): only those
        // the path resolves to now are carried.
        let visible = |id: u64, p: &Path| {
            rustix::fs::statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID).is_ok_and(|st| st.stx_mnt_id == id)
        };
        let rels = outermost(&usr, mounts.iter().map(|m| (m.id, m.mount_point.as_path())), visible);
        let mut carried = Vec::new();
        for rel in rels {
            let path = usr.join(&rel);
            let uncarriable = |e: Errno| Uncarriable { path: path.display().to_string(), why: e.to_string() };
            let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE;
            let clone = rustix::mount::open_tree(CWD, &path, flags).map_err(uncarriable)?;
            let st = statx_at(clone.as_fd(), "", StatxFlags::INO).map_err(uncarriable)?;
            carried.push(Carried {
                rel,
                clone,
                dev: (st.stx_dev_major, st.stx_dev_minor),
                ino: st.stx_ino,
                attached: false,
            });
        }
        Ok(Submounts { carried })
    }

    /// The paths, relative to `/usr`, the new tree must have for the mounts.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.carried.iter().map(|c| c.rel.as_str())
    }

    /// Attaches the clones into `tree`, the root of the new `/usr` (a mount fd:
    /// detached, or attached already). On a detached tree, a kernel that does
    /// not allow it (before Linux 6.15) answers `EINVAL`: those are left for
    /// [`Submounts::attach`] after the switch.
    pub fn attach_detached(&mut self, tree: BorrowedFd<'_>) -> anyhow::Result<()> {
        for c in self.carried.iter_mut().filter(|c| !c.attached) {
            match move_into(c, tree) {
                Ok(()) => c.attached = true,
                Err(Errno::INVAL) => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("cannot carry the mount on /usr/{}", c.rel)),
            }
        }
        Ok(())
    }

    /// Attaches what is not attached yet into `tree`, the new `/usr` now
    /// visible, unless the tree shows that mount there already.
    pub fn attach(&mut self, tree: BorrowedFd<'_>) -> anyhow::Result<()> {
        for c in self.carried.iter_mut().filter(|c| !c.attached) {
            let shown = statx_at(tree, &c.rel, StatxFlags::INO).is_ok_and(|st| {
                (st.stx_dev_major, st.stx_dev_minor, st.stx_ino) == (c.dev.0, c.dev.1, c.ino)
                    && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
            });
            if !shown {
                move_into(c, tree).with_context(|| format!("cannot carry the mount on /usr/{}", c.rel))?;
                crate::fault::mutation();
            }
            c.attached = true;
        }
        Ok(())
    }
}

fn move_into(c: &Carried, tree: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let r =
        rustix::mount::move_mount(c.clone.as_fd(), "", tree, c.rel.as_str(), MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH);
    crate::host::mounts::changed();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outermost_visible_mounts_below_usr() {
        let usr = Path::new("/r/usr");
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            // /usr itself and what is beside it are not below it.
            (&["/r/usr", "/r/usrx", "/r", "/r/var"], &[]),
            (&["/r/usr/local"], &["local"]),
            // A mount below another travels with it (recursive clone).
            (&["/r/usr/local", "/r/usr/local/nested", "/r/usr/lib/opt"], &["lib/opt", "local"]),
            // A path listed twice (covered and visible) is carried once.
            (&["/r/usr/local", "/r/usr/local"], &["local"]),
            // Covered mounts (id 99 here) are not carried.
            (&["/r/usr/hidden", "/r/usr/share"], &["share"]),
        ];
        for (mounts, want) in cases {
            let list: Vec<(u64, &Path)> =
                mounts.iter().map(|m| (if m.ends_with("hidden") { 99 } else { 1 }, Path::new(*m))).collect();
            let got = outermost(usr, list, |id, _| id != 99);
            assert_eq!(got, *want, "{mounts:?}");
        }
    }
}
