//! The reboot sentinel: `/run/reboot-required` (and `.pkgs`), the files
//! Debian's update-notifier, unattended-upgrades, kured and fleet agents watch.
//! livefs writes them while something only a (soft) reboot delivers is left:
//! what the live state lacks (`live`), and a pending deployment the automatic
//! run left for the reboot (`pending`) — and removes them when that is moot:
//! only the files it wrote itself (remembered by inode in `/run/livefs`), never
//! a sentinel someone else left.

use std::os::fd::AsFd;

use anyhow::Context;
use rustix::fs::AtFlags;
use serde::{Deserialize, Serialize};

use crate::dirfd;
use crate::host::{layout, Host};
use crate::repo::Checksum;

/// What livefs remembers of the sentinel it wrote, and why it is there.
const RECORD: &str = "reboot-required.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Record {
    /// The sentinel livefs wrote (its device and inode), if any.
    dev: Option<u64>,
    ino: Option<u64>,
    /// What the live state leaves to a (soft) reboot.
    live: Vec<String>,
    /// A deployment not applied live, and why.
    pending: Option<Left>,
}

/// A pending deployment left for the reboot, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    pub commit: Checksum,
    pub reasons: Vec<String>,
}

impl Record {
    /// The sentinel's lines: one per reason.
    fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.live.clone();
        if let Some(p) = &self.pending {
            let short = &p.commit.to_hex()[..12];
            out.extend(p.reasons.iter().map(|r| format!("deployment {short} not applied live: {r}")));
        }
        out
    }
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

/// The live state at `to` leaves `reasons` (empty: nothing) to a reboot. A
/// deployment left for the reboot is no longer left once it is live.
pub fn set_live(host: &Host, to: Checksum, reasons: &[String]) -> anyhow::Result<()> {
    host.ensure_locked()?;
    let mut record: Record = host.run.read_record::<Option<Record>>(RECORD)?.unwrap_or_default();
    record.live = reasons.to_vec();
    if record.pending.as_ref().is_some_and(|p| p.commit == to) {
        record.pending = None;
    }
    sync(host, record)
}

/// The pending deployment left for the reboot, and why (`None`: none is).
pub fn set_pending(host: &Host, left: Option<Left>) -> anyhow::Result<()> {
    host.ensure_locked()?;
    let mut record: Record = host.run.read_record::<Option<Record>>(RECORD)?.unwrap_or_default();
    record.pending = left;
    sync(host, record)
}

/// Brings the sentinel in line with `record`'s reasons.
fn sync(host: &Host, mut record: Record) -> anyhow::Result<()> {
    let run = dirfd::open_dir(host.root.as_fd(), layout::RUN)
        .with_context(|| format!("cannot open {}/{}", host.paths.root.display(), layout::RUN))?;
    let st = rustix::fs::statat(&run, layout::REBOOT_REQUIRED, AtFlags::SYMLINK_NOFOLLOW).ok();
    let ours = matches!(st, Some(st) if (Some(st.st_dev), Some(st.st_ino)) == (record.dev, record.ino));
    let lines = record.lines();
    match step(!lines.is_empty(), st.is_some(), ours) {
        Step::Leave => {}
        Step::Remove => {
            for name in [layout::REBOOT_REQUIRED, layout::REBOOT_REQUIRED_PKGS] {
                match rustix::fs::unlinkat(&run, name, AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot remove /run/{name}")),
                }
            }
            (record.dev, record.ino) = (None, None);
        }
        Step::Write => {
            let pkgs: String = lines.iter().map(|r| format!("livefs: {r}\n")).collect();
            // World-readable, as apt's: login banners and agents read them.
            dirfd::write_atomic_mode(run.as_fd(), layout::REBOOT_REQUIRED_PKGS, pkgs.as_bytes(), 0o644)?;
            let sentinel = b"*** System restart required ***\n";
            dirfd::write_atomic_mode(run.as_fd(), layout::REBOOT_REQUIRED, sentinel, 0o644)?;
            let st = rustix::fs::statat(&run, layout::REBOOT_REQUIRED, AtFlags::SYMLINK_NOFOLLOW)?;
            (record.dev, record.ino) = (Some(st.st_dev), Some(st.st_ino));
        }
    }
    host.run.write_record(RECORD, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_say_what_the_live_state_and_the_pending_deployment_leave() {
        let commit = Checksum::sha256([0xab; 32]);
        let record = Record {
            live: vec!["the C library".into()],
            pending: Some(Left { commit, reasons: vec!["a new kernel (6.1.0-99)".into()] }),
            ..Record::default()
        };
        assert_eq!(
            record.lines(),
            ["the C library", "deployment abababababab not applied live: a new kernel (6.1.0-99)"]
        );
        assert!(Record::default().lines().is_empty());
        // A record written by an older livefs of this boot still reads.
        let old: Record = serde_json::from_str(r#"{"dev": 5, "ino": 7}"#).unwrap();
        assert_eq!((old.dev, old.ino, old.live.len()), (Some(5), Some(7), 0));
    }

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
