//! The running host: where things are ([`layout`]), its deployments
//! ([`sysroot`], [`booted`], [`staged`]), its mounts ([`mounts`], [`submounts`]),
//! the `/usr` overlay ([`overlay`]), livefs's records in `/run` ([`rundir`]) and
//! the reboot sentinel ([`reboot_required`]).
//! A command opens the host once and passes it down: one that may change the
//! system through [`Host::lock`], which reads everything it decides from only
//! once it holds livefs's lock; `status` through [`Host::read_only`].

pub mod booted;
pub mod composefs;
pub mod image;
pub mod layout;
pub mod mounts;
pub mod overlay;
pub mod reboot_required;
pub mod rundir;
pub mod staged;
pub mod submounts;
pub mod sysroot;

use std::cell::OnceCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::Context;
use std::path::PathBuf;

use overlay::UsrState;
use rundir::RunDir;
use sysroot::System;

/// Where the running system is.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The running system's root, normally `/`.
    pub root: PathBuf,
    /// The physical root, normally `ROOT/sysroot`.
    pub sysroot: PathBuf,
}

/// The running system, opened once per command: ROOT and its records directory
/// as handles, the deployments, and how `/usr` is mounted at the start.
///
/// A command that may change the system can only get one through
/// [`Host::lock`]: everything here was read while the lock was held, so a run
/// that waited for another sees what that one left, never what was there
/// before it waited.
pub struct Host {
    pub paths: Paths,
    /// ROOT, opened once: what livefs writes under it is opened beneath it.
    pub root: OwnedFd,
    /// `ROOT/run/livefs`.
    pub run: RunDir,
    pub system: System,
    /// How `/usr` is mounted: detected when the command starts, updated by
    /// the switches the command makes.
    pub usr: UsrState,
    etc: OnceCell<OwnedFd>,
    /// livefs's lock, held from before anything above was read (none: read only).
    lock: Option<rundir::Lock>,
}

impl Host {
    /// Opens the host for a command that may change it: takes livefs's lock
    /// (waiting up to `wait` for another livefs, [`rundir::Busy`] after), then
    /// reads the deployments, the mount table and how `/usr` is mounted.
    pub fn lock(paths: &Paths, wait: std::time::Duration) -> anyhow::Result<Host> {
        // Not an OSTree host: refused before anything (the records directory) is
        // created. The record is the initramfs's, written once a boot: read once.
        let boot = booted::BootRecord::read(&paths.root)?;
        let root = crate::dirfd::open_dir_path(&paths.root)?;
        let run = RunDir::new(root.as_fd(), &paths.root)?;
        let lock = run.lock(wait)?;
        // A mount table read before the lock may predate another livefs's switch.
        mounts::changed();
        Host::load(paths, boot, root, run, Some(lock))
    }

    /// Opens the host to read it (`status`), without the lock: it may change
    /// under a reader, who changes nothing.
    pub fn read_only(paths: &Paths) -> anyhow::Result<Host> {
        let boot = booted::BootRecord::read(&paths.root)?;
        let root = crate::dirfd::open_dir_path(&paths.root)?;
        let run = RunDir::new(root.as_fd(), &paths.root)?;
        Host::load(paths, boot, root, run, None)
    }

    fn load(
        paths: &Paths,
        boot: booted::BootRecord,
        root: OwnedFd,
        run: RunDir,
        lock: Option<rundir::Lock>,
    ) -> anyhow::Result<Host> {
        let system = match boot.backend {
            booted::Backend::Ostree => System::load(&paths.root, &paths.sysroot, boot)?,
            booted::Backend::Composefs => composefs::load(&paths.root, &paths.sysroot, boot)?,
        };
        let usr = UsrState::detect(&paths.root, &system.booted.path)?;
        Ok(Host { paths: paths.clone(), root, run, system, usr, etc: OnceCell::new(), lock })
    }

    /// Fails unless this command holds livefs's lock: every change to the
    /// running system (a mount, ostree's unlock flag, the reboot sentinel)
    /// checks it, so a host opened to read cannot change anything.
    pub fn ensure_locked(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.lock.is_some(), "internal error: a change to the running system without livefs's lock");
        Ok(())
    }

    /// `ROOT/etc`, opened beneath ROOT (never through a symlink) on first use.
    pub fn etc(&self) -> anyhow::Result<BorrowedFd<'_>> {
        if let Some(fd) = self.etc.get() {
            return Ok(fd.as_fd());
        }
        let fd = crate::dirfd::open_dir(self.root.as_fd(), "etc")
            .with_context(|| format!("cannot open {}/etc", self.paths.root.display()))?;
        Ok(self.etc.get_or_init(|| fd).as_fd())
    }

    /// How `/usr` is mounted now, read again from the mount table.
    pub fn usr_now(&self) -> anyhow::Result<UsrState> {
        UsrState::detect(&self.paths.root, &self.system.booted.path)
    }
}
