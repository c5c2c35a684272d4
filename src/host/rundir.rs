//! livefs's records directory, `ROOT/run/livefs`: on a tmpfs, so a reboot (which
//! throws the overlay away) also forgets them. Opened once per command, relative
//! to ROOT, never following a symlink (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
//! `O_NOFOLLOW`): a planted symlink makes livefs fail, never write elsewhere.
//!
//! Every record is written atomically ([`dirfd::write_atomic`]) and counts as a
//! crash point for the fault-injection sweeps. Two reserve files keep room for
//! the records of a transition in a full `/run` (see [`RunDir::reserve`]).

use std::cell::OnceCell;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::dirfd;
use crate::host::layout;

/// The files that keep room for livefs's records in a full `/run` (see
/// [`RunDir::reserve`]): the first an apply may give back, the second only a reset.
const RESERVES: [&str; 2] = ["reserve.apply", "reserve.reset"];
/// Each reserve's size: far more than the records a transition writes.
const RESERVE_BYTES: usize = 64 << 10;

/// The records directory and its records: readable by every user (status).
const DIR_MODE: u32 = 0o755;
const RECORD_MODE: u32 = 0o644;

/// Set by the way back (a reset): it may use the second reserve too.
static WAY_BACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process goes back to the booted state (`livefs reset`): its records
/// may use the reserve kept for the way back.
pub fn allow_way_back_reserve() {
    WAY_BACK.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether an error is a full filesystem (or quota).
pub fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
            || c.downcast_ref::<rustix::io::Errno>()
                .is_some_and(|n| *n == rustix::io::Errno::NOSPC || *n == rustix::io::Errno::DQUOT)
    })
}

/// `ROOT/run/livefs`, opened (or created) once, on first use.
#[derive(Debug)]
pub struct RunDir {
    root: OwnedFd,
    /// For messages only.
    path: PathBuf,
    dir: OnceCell<OwnedFd>,
}

/// Another livefs holds the lock (and kept it for as long as this one waited).
#[derive(Debug, thiserror::Error)]
#[error("another livefs is running on this system (it holds {}; waited {waited} s, see --lock-timeout)", .lock.display())]
pub struct Busy {
    pub lock: PathBuf,
    pub waited: u64,
}

/// Held while livefs changes the system; released on drop (or process death).
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] OwnedFd);

impl RunDir {
    /// The records directory of the system whose root is `root` (opened at `root_path`).
    pub fn new(root: BorrowedFd<'_>, root_path: &Path) -> anyhow::Result<RunDir> {
        Ok(RunDir { root: rustix::io::dup(root)?, path: root_path.join(layout::RUN_DIR), dir: OnceCell::new() })
    }

    /// Where it is, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory, if it exists.
    fn existing(&self) -> anyhow::Result<Option<BorrowedFd<'_>>> {
        if let Some(fd) = self.dir.get() {
            return Ok(Some(fd.as_fd()));
        }
        match dirfd::open_dir(self.root.as_fd(), layout::RUN_DIR) {
            Ok(fd) => Ok(Some(self.dir.get_or_init(|| fd).as_fd())),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot open {} (not a directory of livefs's?)", self.path.display()))
            }
        }
    }

    /// The directory, created if missing; readable by every user, as
    /// `/run/ostree` is, so that `livefs status` answers anyone (what only root
    /// may read, the `/etc` journal, is in a subdirectory of its own).
    fn created(&self) -> anyhow::Result<BorrowedFd<'_>> {
        if self.dir.get().is_none() {
            let (parent, name) = dirfd::split_path(layout::RUN_DIR);
            let run = dirfd::open_dir(self.root.as_fd(), parent)
                .with_context(|| format!("cannot open {}", self.path.parent().unwrap_or(&self.path).display()))?;
            match rustix::fs::mkdirat(&run, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", self.path.display())),
            }
        }
        let dir = self.existing()?.with_context(|| format!("{} vanished", self.path.display()))?;
        // Made 0700 by a livefs of this boot before status answered any user.
        if rustix::fs::fstat(dir)?.st_mode & 0o7777 != DIR_MODE {
            rustix::fs::fchmod(dir, Mode::from_raw_mode(DIR_MODE))
                .with_context(|| format!("cannot set the mode of {}", self.path.display()))?;
        }
        Ok(dir)
    }

    /// A file's bytes, `None` when it does not exist.
    pub fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(dir) = self.existing()? else { return Ok(None) };
        dirfd::read_optional(dir, name).with_context(|| format!("cannot read {}/{name}", self.path.display()))
    }

    /// Replaces a file atomically (see [`dirfd::write_atomic`]). On a full
    /// `/run`, the space reserved for it (see [`RunDir::reserve`]) is given back
    /// first: `reserve.apply`, then, on the way back, `reserve.reset`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let dir = self.created()?;
        let write = || dirfd::write_atomic_mode(dir, name, bytes, RECORD_MODE);
        let mut result = write();
        let usable = if WAY_BACK.load(std::sync::atomic::Ordering::Relaxed) { 2 } else { 1 };
        for reserve in &RESERVES[..usable] {
            if !result.as_ref().is_err_and(is_no_space) {
                break;
            }
            if rustix::fs::unlinkat(dir, *reserve, rustix::fs::AtFlags::empty()).is_ok() {
                result = write();
            }
        }
        if result.is_err() {
            // A partial temporary file would only take more of a full /run.
            let _ = rustix::fs::unlinkat(dir, format!("{name}.tmp").as_str(), rustix::fs::AtFlags::empty());
        }
        result.with_context(|| format!("cannot write {}/{name}", self.path.display()))
    }

    /// Keeps room for the records a transition writes once `/usr` has switched,
    /// so that a full `/run` never stops it half-way nor blocks the way back:
    /// two files of `RESERVE_BYTES`, one an apply may give back, one only the
    /// way back (a reset) may. Fails, before anything changes, when `/run` has
    /// not that much room.
    pub fn reserve(&self) -> anyhow::Result<()> {
        let dir = self.created()?;
        for name in RESERVES {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
                .with_context(|| format!("cannot create {}/{name}", self.path.display()))?;
            if rustix::fs::fstat(&fd)?.st_size as usize >= RESERVE_BYTES {
                continue;
            }
            let written = std::fs::File::from(fd).write_all(&[0u8; RESERVE_BYTES]);
            if let Err(e) = written {
                let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!("{} has no room for livefs's records ({RESERVE_BYTES} bytes)", self.path.display())
                });
            }
        }
        Ok(())
    }

    /// Removes a file or a whole subdirectory, if present, atomically: it is
    /// renamed to `NAME.old` first (a leftover of a killed removal is finished
    /// here too), so a kill never leaves half of it under its name.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = self.existing()? else { return Ok(()) };
        let old = format!("{name}.old");
        let what = || format!("cannot remove {}/{name}", self.path.display());
        dirfd::remove(dir, &old).with_context(what)?;
        match rustix::fs::renameat(dir, name, dir, old.as_str()) {
            Ok(()) => crate::fault::mutation(),
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e).with_context(what),
        }
        dirfd::remove(dir, &old).with_context(what)
    }

    /// A subdirectory (the `/etc` journal), opened safely; created if asked.
    pub fn subdir(&self, name: &str, create: bool) -> anyhow::Result<Option<OwnedFd>> {
        let dir = if create {
            let dir = self.created()?;
            match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot create {}/{name}", self.path.display())),
            }
            dir
        } else {
            let Some(dir) = self.existing()? else { return Ok(None) };
            dir
        };
        match dirfd::open_dir(dir, name) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) if !create => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot open {}/{name}", self.path.display())),
        }
    }

    /// Takes the lock that lets one livefs at a time change the system,
    /// waiting up to `wait` for another livefs to let go of it ([`Busy`] after).
    /// Only [`crate::host::Host::lock`] takes it, before it reads the host.
    pub(super) fn lock(&self, wait: Duration) -> anyhow::Result<Lock> {
        let dir = self.created()?;
        let path = self.path.join("lock");
        let fd = rustix::fs::openat(
            dir,
            "lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        let until = Instant::now() + wait;
        let mut told = false;
        loop {
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Lock(fd)),
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < until => {
                    if !told {
                        crate::messages::progress(crate::messages::Progress::WaitingForLock {
                            seconds: wait.as_secs(),
                        });
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => return Err(Busy { lock: path, waited: wait.as_secs() }.into()),
                Err(e) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
            }
        }
    }

    /// A JSON record of this directory; missing (or corrupt, with a warning)
    /// means empty.
    pub fn read_record<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> anyhow::Result<T> {
        let Some(bytes) = self.read(name)? else { return Ok(T::default()) };
        // These records only refine reports (restart hints, layers to keep,
        // triggers to retry): one that does not parse must not stop an apply or
        // a reset.
        Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            crate::messages::warn(format!("{}/{name} is corrupt ({e}); ignoring it", self.path.display()));
            T::default()
        }))
    }

    /// Writes a JSON record.
    pub fn write_record<T: serde::Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        self.write(name, &serde_json::to_vec(value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir(root: &Path) -> RunDir {
        RunDir::new(dirfd::open_dir_path(root).unwrap().as_fd(), root).unwrap()
    }

    #[test]
    fn one_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let s = run_dir(dir.path());
        let held = s.lock(Duration::ZERO).unwrap();
        let err = s.lock(Duration::from_millis(300)).unwrap_err();
        assert!(err.downcast_ref::<Busy>().is_some(), "{err:#}");
        assert!(err.to_string().contains("another livefs is running"), "{err}");
        drop(held);
        s.lock(Duration::ZERO).unwrap();
    }

    /// Records are readable by every user (status answers anyone); the /etc
    /// journal, which holds copies of the admin's files, by root only; a
    /// directory an older livefs made 0700 is opened up on the next write.
    #[test]
    fn records_are_public_and_the_journal_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o7777;
        let s = run_dir(dir.path());
        s.write("state.json", b"{}").unwrap();
        s.subdir("etc-journal", true).unwrap();
        assert_eq!((mode("run/livefs"), mode("run/livefs/state.json")), (0o755, 0o644));
        assert_eq!(mode("run/livefs/etc-journal"), 0o700);
        std::fs::set_permissions(dir.path().join("run/livefs"), std::fs::Permissions::from_mode(0o700)).unwrap();
        run_dir(dir.path()).write("state.json", b"{}").unwrap();
        assert_eq!(mode("run/livefs"), 0o755);
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("run/livefs")).unwrap();
        assert!(run_dir(dir.path()).write("state.json", b"{}").is_err());
        assert!(run_dir(dir.path()).lock(Duration::ZERO).is_err());
        std::fs::remove_file(dir.path().join("run/livefs")).unwrap();
        std::fs::create_dir(dir.path().join("run/livefs")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("state"), dir.path().join("run/livefs/state.json.tmp"))
            .unwrap();
        assert!(run_dir(dir.path()).write("state.json", b"{}").is_err(), "wrote through a symlink");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "something was written elsewhere");
    }
}
