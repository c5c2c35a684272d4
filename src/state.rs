//! The live state of a running system, kept in `ROOT/run/livefs/` so that a
//! reboot (which throws the overlay away) also forgets it.
//!
//! ```text
//!            apply B                 done
//!   Booted ───────────▶ Applying{A→B} ──────▶ Live{B}
//!     ▲  ▲                  │  ▲                 │
//!     │  │ reset done       │  │ apply again     │ apply C: Applying{B→C}
//!     │  └──────────────────┘  └─ (interrupted:  │ reset:   Applying{B→booted}
//!     │                           resumed)       │
//!     └──────────────── reset done ◀─────────────┘
//! ```
//!
//! *Booted*: `/usr` holds the booted commit. *Applying{from, to}*: an apply is in
//! progress — found at start, it was interrupted. *Live{commit}*: `/usr` holds
//! `commit` — checked against what is mounted on `/usr` whenever it is read:
//! `/run` survives a soft reboot, the overlay may not, and a *Live* state whose
//! overlay is gone reads as *UsrLost{commit}* (see `live::reconcile`). The state file also names the booted deployment, so a state written
//! for another boot is recognised as stale (and means *Booted*).
//!
//! # Design: every state has a way out
//!
//! What a transition does, in order, and where it can fail or be killed:
//!
//! 1. Checks (plan, policy, space, the `/etc` dry run): read only. A failure
//!    leaves the state as it was.
//! 2. *Applying{from, to}* is written, and the refs `livefs/live` (= from) and
//!    `livefs/inprogress` (= to) pin both commits, so `ostree prune` or an
//!    undeploy cannot take the objects a resume or a reset needs.
//! 3. `/usr` switches in one mount operation (a layer built off to the side,
//!    see `overlay.rs`): before it `/usr` shows `from`, after it `to`, never a mix.
//! 4. `/etc` is merged path by path, each change journaled first
//!    (`etc-journal/`); a path that cannot be changed is reported and left as it
//!    was (contained, never aborting the rest).
//! 5. Pending triggers, replaced files and changed units are recorded.
//! 6. *Live{to}* (or *Booted*) is written; stale refs and layers are removed;
//!    the triggers run (a failed one stays pending, tried at most 3 times).
//!
//! Ways out, from each state found at start:
//! - *Booted*, *Live*: any apply or reset.
//! - *Applying{from, to}*: `livefs apply` (without `--target`) resumes `to`, even
//!   if the pending deployment was undeployed since (its objects are pinned);
//!   rebuilding the layer and re-merging `/etc` are idempotent (journaled paths
//!   are not journaled twice; paths already as the target has them are skipped).
//!   `livefs reset` needs neither `to` nor the merge to succeed: it detaches the
//!   overlay (only the booted deployment is needed) and restores `/etc` from the
//!   journal alone; a path it cannot put back stays in the journal for the next
//!   reset, and the state still becomes *Booted*. Only over an ostree transient
//!   unlock (written file by file) does a reset finish the interrupted apply
//!   first.
//! - A state file that does not parse makes `apply` refuse and say so; `reset`
//!   goes back from it as from an interrupted apply. One of another boot is
//!   ignored.
//!
//! Every record here is written atomically (temporary file, fsync, rename, fsync
//! of the directory) and counts as a crash point for the fault-injection sweeps.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::checkout;
use crate::repo::{Checksum, Repo};

/// What `/usr` holds, as far as livefs is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LiveState {
    /// Nothing applied: `/usr` holds the booted commit.
    Booted,
    /// An apply from `from` to `to` started and has not finished.
    Applying { from: Checksum, to: Checksum },
    /// `/usr` holds `commit`.
    Live { commit: Checksum },
    /// Recorded as *Live{commit}*, but `/usr` shows no overlay any more: a soft
    /// reboot (which keeps `/run`) or an unmount took it away. `/usr` holds the
    /// booted commit again while `/etc` still carries `commit`'s changes: `apply`
    /// brings `/usr` back (or goes on to another target), `reset` restores `/etc`.
    /// Never written: what `Live` reads as when the mounts disagree.
    UsrLost { commit: Checksum },
}

impl LiveState {
    /// The commit `/usr` holds when no apply is in progress.
    pub fn current(&self, booted: Checksum) -> Option<Checksum> {
        match *self {
            LiveState::Booted | LiveState::UsrLost { .. } => Some(booted),
            LiveState::Live { commit } => Some(commit),
            LiveState::Applying { .. } => None,
        }
    }

    /// The state after `/usr` reached `commit`: live at it, or booted again.
    pub fn reached(commit: Checksum, booted: Checksum) -> LiveState {
        if commit == booted {
            LiveState::Booted
        } else {
            LiveState::Live { commit }
        }
    }
}

/// The persisted record: the state and the deployment it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    deployment: String,
    #[serde(flatten)]
    state: LiveState,
}

/// The state directory of a running system, `ROOT/run/livefs`. Everything in it
/// is opened relative to it, and it relative to ROOT, never following a symlink
/// (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, `O_NOFOLLOW`): a planted symlink
/// makes livefs fail, never write elsewhere.
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    dir: PathBuf,
}

/// What transitions since boot did to the unit files (absolute paths as on the
/// running system): `--restart` starts what became wanted and stops what went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnitEvents {
    /// Added `…/TARGET.wants/UNIT` (or `.requires/`) links.
    pub wanted: BTreeSet<String>,
    /// Removed unit files.
    pub removed: BTreeSet<String>,
    /// Units livefs failed to restart, reload or start: started by the next
    /// `livefs restart` once they are fixed.
    pub failed: BTreeSet<String>,
}

/// The files that keep room for livefs's records in a full `/run` (see
/// [`StateDir::reserve`]): the first an apply may give back, the second only a reset.
const RESERVES: [&str; 2] = ["reserve.apply", "reserve.reset"];
/// Each reserve's size: far more than the records a transition writes.
const RESERVE_BYTES: usize = 64 << 10;

/// Set by the way back (a reset): it may use the second reserve too.
static WAY_BACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process goes back to the booted state (`livefs reset`): its records
/// may use the reserve kept for the way back.
pub fn allow_way_back_reserve() {
    WAY_BACK.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether an error is a full filesystem (or quota).
fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
            || c.downcast_ref::<rustix::io::Errno>()
                .is_some_and(|n| *n == rustix::io::Errno::NOSPC || *n == rustix::io::Errno::DQUOT)
    })
}

/// Refs that pin the commits livefs uses against pruning.
pub const REF_LIVE: &str = "livefs/live";
pub const REF_INPROGRESS: &str = "livefs/inprogress";

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir { root: root.to_path_buf(), dir: root.join("run/livefs") }
    }

    /// The directory, opened safely; `None` when it does not exist and `create`
    /// is not asked.
    fn open(&self, create: bool) -> anyhow::Result<Option<OwnedFd>> {
        let root = checkout::open_dir_path(&self.root)?;
        if create {
            let run = checkout::open_dir(root.as_fd(), "run")
                .with_context(|| format!("cannot open {}/run", self.root.display()))?;
            match rustix::fs::mkdirat(&run, "livefs", Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", self.dir.display())),
            }
        }
        match checkout::open_dir(root.as_fd(), "run/livefs") {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) if !create => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot open {} (not a directory of livefs's?)", self.dir.display()))
            }
        }
    }

    /// A file's bytes, `None` when it does not exist.
    pub fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(dir) = self.open(false)? else { return Ok(None) };
        read_at(dir.as_fd(), name).with_context(|| format!("cannot read {}/{name}", self.dir.display()))
    }

    /// Replaces a file atomically (see [`write_atomic_at`]). On a full `/run`,
    /// the space reserved for it (see [`StateDir::reserve`]) is given back
    /// first: `reserve.apply`, then, on the way back, `reserve.reset`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let dir = self.open(true)?.expect("created");
        let mut result = write_atomic_at(dir.as_fd(), name, bytes);
        let usable = if WAY_BACK.load(std::sync::atomic::Ordering::Relaxed) { 2 } else { 1 };
        for reserve in &RESERVES[..usable] {
            if !result.as_ref().is_err_and(is_no_space) {
                break;
            }
            if rustix::fs::unlinkat(&dir, *reserve, rustix::fs::AtFlags::empty()).is_ok() {
                result = write_atomic_at(dir.as_fd(), name, bytes);
            }
        }
        if result.is_err() {
            // A partial temporary file would only take more of a full /run.
            let _ = rustix::fs::unlinkat(&dir, format!("{name}.tmp").as_str(), rustix::fs::AtFlags::empty());
        }
        result.with_context(|| format!("cannot write {}/{name}", self.dir.display()))
    }

    /// Keeps room in `ROOT/run/livefs` for the records a transition writes once
    /// `/usr` has switched, so that a full `/run` never stops it half-way nor
    /// blocks the way back: two files of [`RESERVE_BYTES`], one an apply may give
    /// back, one only the way back (a reset) may. Fails, before anything
    /// changes, when `/run` has not that much room.
    pub fn reserve(&self) -> anyhow::Result<()> {
        let dir = self.open(true)?.expect("created");
        for name in RESERVES {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o600))
                .with_context(|| format!("cannot create {}/{name}", self.dir.display()))?;
            if rustix::fs::fstat(&fd)?.st_size as usize >= RESERVE_BYTES {
                continue;
            }
            let written = std::fs::File::from(fd).write_all(&[0u8; RESERVE_BYTES]);
            if let Err(e) = written {
                let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!("{} has no room for livefs's records ({RESERVE_BYTES} bytes)", self.dir.display())
                });
            }
        }
        Ok(())
    }

    /// Removes a file or a whole subdirectory, if present, atomically: it is
    /// renamed to `NAME.old` first (a leftover of a killed removal is finished
    /// here too), so a kill never leaves half of it under its name.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = self.open(false)? else { return Ok(()) };
        let old = format!("{name}.old");
        let what = || format!("cannot remove {}/{name}", self.dir.display());
        checkout::remove(dir.as_fd(), &old).with_context(what)?;
        match rustix::fs::renameat(&dir, name, &dir, old.as_str()) {
            Ok(()) => crate::fault::mutation(),
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e).with_context(what),
        }
        checkout::remove(dir.as_fd(), &old).with_context(what)
    }

    /// A subdirectory (the `/etc` journal), opened safely; created if asked.
    pub fn subdir(&self, name: &str, create: bool) -> anyhow::Result<Option<OwnedFd>> {
        let Some(dir) = self.open(create)? else { return Ok(None) };
        if create {
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot create {}/{name}", self.dir.display())),
            }
        }
        match checkout::open_dir(dir.as_fd(), name) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) if !create => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot open {}/{name}", self.dir.display())),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Takes the lock that lets one livefs at a time change the system.
    pub fn lock(&self) -> anyhow::Result<Lock> {
        let dir = self.open(true)?.expect("created");
        let path = self.dir.join("lock");
        let fd = rustix::fs::openat(
            &dir,
            "lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| anyhow::anyhow!("another livefs is running on this system (it holds {})", path.display()))?;
        Ok(Lock(fd))
    }

    /// The state for the booted deployment `deployment` (`CHECKSUM.SERIAL`); a
    /// missing file, or one written for another deployment, means *Booted*.
    pub fn load(&self, deployment: &str) -> anyhow::Result<LiveState> {
        let Some(bytes) = self.read("state.json")? else { return Ok(LiveState::Booted) };
        let r: Record = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt (`livefs reset` still works)", self.file().display()))?;
        Ok(if r.deployment == deployment { r.state } else { LiveState::Booted })
    }

    /// Files replaced or removed in `/usr` since boot (processes may hold them).
    pub fn replaced(&self) -> anyhow::Result<HashSet<String>> {
        self.read_record("replaced.json")
    }

    pub fn save_replaced(&self, set: &HashSet<String>) -> anyhow::Result<()> {
        self.write("replaced.json", &serde_json::to_vec(set)?)
    }

    /// Unit files changed since boot, with when they changed (systemd's monotonic
    /// clock, in µs): a unit started before that runs the old definition.
    pub fn unit_changes(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.read_record("units.json")
    }

    pub fn save_unit_changes(&self, units: &BTreeMap<String, u64>) -> anyhow::Result<()> {
        self.write("units.json", &serde_json::to_vec(units)?)
    }

    /// Unit files added to `*.wants/` and `*.requires/` directories, and unit
    /// files removed, since boot: what `--restart` starts and stops.
    pub fn unit_events(&self) -> anyhow::Result<UnitEvents> {
        self.read_record("unit-events.json")
    }

    pub fn save_unit_events(&self, events: &UnitEvents) -> anyhow::Result<()> {
        self.write("unit-events.json", &serde_json::to_vec(events)?)
    }

    /// The layers `/usr` was switched to in this boot, with the device of their
    /// overlay: a layer switched away from is kept while a process still holds
    /// a directory of that overlay.
    pub fn layers(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.read_record("layers.json")
    }

    pub fn save_layer(&self, name: &str, dev: u64) -> anyhow::Result<()> {
        let mut layers = self.layers()?;
        layers.insert(name.to_string(), dev);
        self.write("layers.json", &serde_json::to_vec(&layers)?)
    }

    /// A JSON record of this directory; missing (or corrupt, with a warning)
    /// means empty.
    pub fn read_record<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> anyhow::Result<T> {
        let Some(bytes) = self.read(name)? else { return Ok(T::default()) };
        // These records only refine reports (restart hints, layers to keep,
        // triggers to retry): one that does not parse must not stop an apply or
        // a reset.
        Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            eprintln!("livefs: warning: {}/{name} is corrupt ({e}); ignoring it", self.dir.display());
            T::default()
        }))
    }

    /// Persists `state` atomically.
    pub fn save(&self, deployment: &str, state: LiveState) -> anyhow::Result<()> {
        let record = Record { deployment: deployment.to_string(), state };
        let mut bytes = serde_json::to_vec_pretty(&record)?;
        bytes.push(b'\n');
        self.write("state.json", &bytes)
    }
}

/// A file of `dir`, not following a symlink; `None` when it does not exist.
pub fn read_at(dir: BorrowedFd<'_>, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let fd = match rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Replaces `name` in `dir` with `bytes` so that a crash leaves the old or the
/// new content, never a mix: a temporary file beside it, fsync, rename, fsync of
/// the directory, never following a symlink. Every record livefs keeps in `/run`
/// is written this way.
pub fn write_atomic_at(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = format!("{name}.tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()?;
    rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
    rustix::fs::fsync(dir)?;
    // A crash point of its own: the crash sweeps kill livefs after state writes too.
    crate::fault::mutation();
    Ok(())
}

/// Held while livefs changes the system; released on drop (or process death).
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] OwnedFd);

/// Points the refs `livefs/live` and `livefs/inprogress` at what `state` uses,
/// removing those it does not use.
pub fn sync_refs(repo: &Repo, state: LiveState) -> anyhow::Result<()> {
    let (live, inprogress) = match state {
        LiveState::Booted => (None, None),
        LiveState::Applying { from, to } => (Some(from), Some(to)),
        // The lost commit stays pinned: `/etc` carries it until an apply or reset.
        LiveState::Live { commit } | LiveState::UsrLost { commit } => (Some(commit), None),
    };
    let set = |repo: &Repo| -> anyhow::Result<()> {
        repo.set_ref(REF_LIVE, live)?;
        repo.set_ref(REF_INPROGRESS, inprogress)
    };
    match set(repo) {
        // A sysroot mounted read-only (Fedora CoreOS): write through a private
        // writable clone of its mount; everyone else still sees it read-only.
        Err(e) if is_read_only(&e) => {
            let view = crate::mounts::writable_clone(repo.path())?;
            let path = Path::new("/proc/self/fd").join(std::os::fd::AsRawFd::as_raw_fd(&view).to_string());
            set(&Repo::open(&path)?).with_context(|| format!("in {}", repo.path().display()))
        }
        r => r,
    }
}

fn is_read_only(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(|io| io.raw_os_error() == Some(libc::EROFS))
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrip_and_staleness() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let s = StateDir::new(dir.path());
        assert_eq!(s.load("a.0").unwrap(), LiveState::Booted);
        let (a, b) = (Checksum([1; 32]), Checksum([2; 32]));
        s.save("a.0", LiveState::Applying { from: a, to: b }).unwrap();
        assert_eq!(s.load("a.0").unwrap(), LiveState::Applying { from: a, to: b });
        assert_eq!(s.load("b.0").unwrap(), LiveState::Booted, "a state of another boot is stale");
        s.save("a.0", LiveState::reached(b, a)).unwrap();
        assert_eq!(s.load("a.0").unwrap(), LiveState::Live { commit: b });
        assert_eq!(LiveState::reached(a, a), LiveState::Booted);
    }

    #[test]
    fn one_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let s = StateDir::new(dir.path());
        let held = s.lock().unwrap();
        let err = s.lock().unwrap_err().to_string();
        assert!(err.contains("another livefs is running"), "{err}");
        drop(held);
        s.lock().unwrap();
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("run/livefs")).unwrap();
        let s = StateDir::new(dir.path());
        assert!(s.save("a.0", LiveState::Booted).is_err());
        assert!(s.lock().is_err());
        std::fs::remove_file(dir.path().join("run/livefs")).unwrap();
        std::fs::create_dir(dir.path().join("run/livefs")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("state"), dir.path().join("run/livefs/state.json.tmp"))
            .unwrap();
        assert!(s.save("a.0", LiveState::Booted).is_err(), "wrote through a symlink");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "something was written elsewhere");
    }
}
