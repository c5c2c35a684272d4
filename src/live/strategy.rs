//! The apply strategy: whether an update can go live as it is, or what a live
//! apply cannot deliver and so needs a reboot (bootc #165 asks the same
//! question of `bootc upgrade`).
//!
//! A reboot is needed for:
//! - a new kernel (`usr/lib/modules/KVER/vmlinuz` for a KVER that is not running),
//!   or a changed running kernel or initramfs: the kernel cannot be swapped live;
//! - changed kernel arguments between the booted and the target deployment;
//! - a changed systemd manager (`/usr/lib/systemd/systemd`): PID 1 keeps running
//!   the old binary until `systemctl daemon-reexec` at least.

use serde::{Deserialize, Serialize};

use crate::tree::diff::Diff;

/// What a live apply of an update delivers, and what it costs the running system.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Strategy {
    /// The whole update can go live (nothing below needs a reboot).
    pub live: bool,
    /// What only a reboot (or, for the manager, a re-exec) delivers.
    pub reboot_for: Vec<String>,
    /// The existing paths of `/usr` it replaces or removes (what
    /// `--allow-replacement` allows).
    pub replaces: Vec<String>,
    /// The units and processes this update alone would need restarted (what
    /// earlier transitions of this boot left is in the top-level report).
    pub restarts: crate::systemd::needs_restart::Restarts,
}

/// The strategy of the `/usr` difference `diff` (booted or live → target) on a
/// system running kernel `release`, with kernel arguments `booted_kargs` now and
/// `target_kargs` in the target's boot entry (when it has one).
pub fn of(diff: &Diff, release: &str, booted_kargs: Option<&str>, target_kargs: Option<&str>) -> Strategy {
    let mut reboot_for = Vec::new();
    let changed = diff.modified.iter().map(|m| &m.path).chain(diff.added.iter().map(|n| &n.path));
    for path in changed {
        let Some(rest) = path.strip_prefix("/lib/modules/") else {
            if path == "/lib/systemd/systemd" {
                reboot_for.push(
                    "a changed systemd manager (/usr/lib/systemd/systemd): `systemctl daemon-reexec` at least".into(),
                );
            }
            continue;
        };
        match rest.split_once('/') {
            Some((kver, "vmlinuz")) if kver != release => reboot_for.push(format!("a new kernel ({kver})")),
            Some((kver, "vmlinuz")) => reboot_for.push(format!("a changed kernel ({kver}, running)")),
            Some((kver, "initramfs.img")) => reboot_for.push(format!("a changed initramfs ({kver})")),
            _ => {}
        }
    }
    if let (Some(a), Some(b)) = (booted_kargs, target_kargs) {
        if a != b {
            reboot_for.push(format!("changed kernel arguments (\"{a}\" -> \"{b}\")"));
        }
    }
    reboot_for.sort();
    reboot_for.dedup();
    Strategy { live: reboot_for.is_empty(), reboot_for, ..Default::default() }
}
