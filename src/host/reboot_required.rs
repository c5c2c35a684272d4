//! The reboot sentinel: `/run/reboot-required` (and `.pkgs`), the files
//! Debian's update-notifier, unattended-upgrades, kured and fleet agents watch.
//! livefs writes them while the live state leaves something only a (soft)
//! reboot delivers, and removes them when that is moot — only the files it wrote
//! itself (remembered by inode in `/run/livefs`), never a sentinel someone else
//! left.

use std::os::fd::AsFd;

use anyhow::Context;
use rustix::fs::AtFlags;
use serde::{Deserialize, Serialize};

use crate::dirfd;
use crate::host::{layout, Host};

/// What livefs remembers of the sentinel it wrote.
const RECORD: &str = "reboot-required.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Written {
    dev: u64,
    ino: u64,
}

/// What to do with the sentinel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write,
    Remove,
    Leave,
}

/// The sentinel step when a reboot is (or is not) `required`, the file exists
/// or not, and what is there is livefs's own or not.
fn step(required: bool, exists: bool, ours: bool) -> Step {
    match (required, exists, ours) {
        // Ours (or none): written afresh, with this update's reasons.
        (true, false, _) | (true, true, true) => Step::Write,
        // Someone else's says it already: theirs to keep.
        (true, true, false) => Step::Leave,
        (false, true, true) => Step::Remove,
        (false, _, _) => Step::Leave,
    }
}

/// Brings the sentinel in line: `reasons` is what only a reboot (or a soft
/// reboot) delivers of the live state, empty when nothing.
pub fn update(host: &Host, reasons: &[String]) -> anyhow::Result<()> {
    host.ensure_locked()?;
    let run = dirfd::open_dir(host.root.as_fd(), layout::RUN)
        .with_context(|| format!("cannot open {}/{}", host.paths.root.display(), layout::RUN))?;
    let st = rustix::fs::statat(&run, layout::REBOOT_REQUIRED, AtFlags::SYMLINK_NOFOLLOW).ok();
    let recorded: Option<Written> = host.run.read_record(RECORD)?;
    let ours = matches!((st, recorded), (Some(st), Some(w)) if (st.st_dev, st.st_ino) == (w.dev, w.ino));
    match step(!reasons.is_empty(), st.is_some(), ours) {
        Step::Leave => Ok(()),
        Step::Remove => {
            for name in [layout::REBOOT_REQUIRED, layout::REBOOT_REQUIRED_PKGS] {
                match rustix::fs::unlinkat(&run, name, AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot remove /run/{name}")),
                }
            }
            host.run.remove(RECORD)
        }
        Step::Write => {
            let pkgs: String = reasons.iter().map(|r| format!("livefs: {r}\n")).collect();
            // World-readable, as apt's: login banners and agents read them.
            dirfd::write_atomic_mode(run.as_fd(), layout::REBOOT_REQUIRED_PKGS, pkgs.as_bytes(), 0o644)?;
            let sentinel = b"*** System restart required ***\n";
            dirfd::write_atomic_mode(run.as_fd(), layout::REBOOT_REQUIRED, sentinel, 0o644)?;
            let st = rustix::fs::statat(&run, layout::REBOOT_REQUIRED, AtFlags::SYMLINK_NOFOLLOW)?;
            host.run.write_record(RECORD, &Some(Written { dev: st.st_dev, ino: st.st_ino }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_livefs_own_sentinel_is_rewritten_or_removed() {
        use Step::*;
        let cases = [
            // (required, exists, ours) -> step
            ((true, false, false), Write),
            ((true, true, true), Write),
            ((true, true, false), Leave),
            ((false, true, true), Remove),
            ((false, true, false), Leave),
            ((false, false, false), Leave),
        ];
        for ((required, exists, ours), want) in cases {
            assert_eq!(step(required, exists, ours), want, "required {required}, exists {exists}, ours {ours}");
        }
    }
}
