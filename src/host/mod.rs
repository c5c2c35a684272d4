//! The running host: where things are ([`layout`]), its deployments
//! ([`sysroot`], [`booted`], [`staged`]), its mounts ([`mounts`], [`submounts`]),
//! the `/usr` overlay ([`overlay`]), livefs's records in `/run` ([`rundir`]) and
//! the reboot sentinel ([`reboot_required`]).
//! A command opens the host once ([`Host::open`]) and passes it down.

pub mod booted;
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
}

impl Host {
    pub fn open(paths: &Paths) -> anyhow::Result<Host> {
        let system = System::load(&paths.root, &paths.sysroot)?;
        let root = crate::dirfd::open_dir_path(&paths.root)?;
        let run = RunDir::new(root.as_fd(), &paths.root)?;
        let usr = UsrState::detect(&paths.root, &system.booted.path)?;
        Ok(Host { paths: paths.clone(), root, run, system, usr, etc: OnceCell::new() })
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
