//! The OSTree sysroot: deployments, boot loader entries, and which deployment is
//! booted and which is pending — read the way libostree defines them.
//!
//! - Deployments are `ostree/deploy/OS/deploy/CHECKSUM.SERIAL/` directories.
//! - Boot loader entries (`boot/loader/entries/*.conf`) name a deployment with
//!   `ostree=/ostree/boot.N/OS/BOOTCSUM/SERIAL`, a symlink chain inside the sysroot,
//!   resolved here with `RESOLVE_IN_ROOT` so it can never leave the sysroot.
//! - The booted deployment is the one `ROOT/run/ostree-booted` names
//!   (`backing-root-device-inode`, see [`crate::host::booted`]); when the record does not name
//!   one (ostree before 2024.2), the deployment directory that *is* ROOT (same
//!   device and inode).
//! - The pending deployment is the staged one if there is one (rpm-ostree and bootc
//!   stage by default: `ROOT/run/ostree/staged-deployment` names it, see
//!   [`staged`]); otherwise the default boot entry (highest `version`) when it is
//!   not the booted one — of the booted stateroot only, as libostree's
//!   `query_deployments_for(booted osname)` and rpm-ostree have it: a deployment of
//!   another stateroot is another OS install (its own `/etc` and `/var`), which
//!   the next boot may start ([`System::next_boot_elsewhere`]) but which is never
//!   this one's update.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustix::fs::{FlockOperation, Mode, OFlags, ResolveFlags};
use serde::Serialize;

use crate::host::booted::{Backend, BootRecord};
use crate::host::layout;
use crate::host::staged;
use crate::repo::{Checksum, Repo};

/// One deployment: a checkout of a commit for an OS (stateroot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub osname: String,
    pub checksum: Checksum,
    pub serial: u32,
    /// The deployment's root directory.
    pub path: PathBuf,
    /// The kernel arguments of its boot entry (but for those naming the
    /// deployment: `ostree=`, `init=/ostree/boot.…`), if it has one.
    #[serde(skip)]
    pub kargs: Option<String>,
    #[serde(skip)]
    dev_ino: (u64, u64),
    /// A composefs image with its state directory (bootc's native backend),
    /// not an OSTree deployment.
    #[serde(skip)]
    image: bool,
}

impl Deployment {
    /// The deployment of composefs image `checksum`, its state in `path`.
    pub fn image(osname: &str, checksum: Checksum, path: PathBuf) -> Deployment {
        Deployment { osname: osname.into(), checksum, serial: 0, path, kargs: None, dev_ino: (0, 0), image: true }
    }

    /// `CHECKSUM.SERIAL`, as ostree names the directory; an image's name.
    pub fn id(&self) -> String {
        if self.image {
            return self.checksum.to_hex();
        }
        format!("{}.{}", self.checksum, self.serial)
    }

    /// Whether this is a composefs image's deployment (bootc's native backend).
    pub fn is_image(&self) -> bool {
        self.image
    }

    /// ostree's run-time state of this deployment (`ROOT/…`).
    pub fn state_dir(&self) -> String {
        layout::deployment_state(&self.id())
    }

    /// livefs's layers of this deployment (`SYSROOT/…`).
    pub fn layers_dir(&self) -> String {
        layout::layers(&self.osname, &self.id())
    }
}

/// What livefs needs to know about the running system.
#[derive(Debug)]
pub struct System {
    /// The running system's root (normally `/`).
    pub root: PathBuf,
    /// The physical root (normally `/sysroot`).
    pub sysroot: PathBuf,
    pub deployments: Vec<Deployment>,
    pub booted: Deployment,
    /// The booted stateroot's next deployment.
    pub pending: Option<Deployment>,
    /// The deployment the next boot starts when it is another stateroot's.
    pub next_boot_elsewhere: Option<Deployment>,
    /// Why the pending deployment could not be determined (a malformed staged
    /// record): only an apply of the pending deployment fails on it.
    pub pending_error: Option<String>,
    /// What `ROOT/run/ostree-booted` says of this boot.
    pub boot: BootRecord,
    /// The deployment loaded at `ROOT/run/nextroot` (`ostree admin
    /// prepare-soft-reboot`): the next `systemctl reboot` is a soft reboot into it.
    pub next_root: Option<Deployment>,
}

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("no deployment in {sysroot} is the running root {root}")]
    NoBootedDeployment { root: String, sysroot: String },
    #[error("the staged deployment {name} is not in {sysroot}/ostree/deploy")]
    StagedMissing { name: String, sysroot: String },
}

impl System {
    /// A system of the given deployments (bootc's native backend: no other
    /// stateroot, no `ostree admin prepare-soft-reboot`).
    pub fn new(
        root: &Path,
        sysroot: &Path,
        deployments: Vec<Deployment>,
        booted: Deployment,
        pending: Option<Deployment>,
        pending_error: Option<String>,
        boot: BootRecord,
    ) -> System {
        System {
            root: root.to_path_buf(),
            sysroot: sysroot.to_path_buf(),
            deployments,
            booted,
            pending,
            next_boot_elsewhere: None,
            pending_error,
            boot,
            next_root: None,
        }
    }

    /// Reads the OSTree deployments under `sysroot` and identifies those of
    /// `root` (which booted as `boot` says), holding ostree's sysroot lock.
    pub fn load(root: &Path, sysroot: &Path, boot: BootRecord) -> anyhow::Result<System> {
        // One spelling of every path under the sysroot (layers are matched against
        // the overlays' lowerdir= by path).
        let sysroot =
            &std::fs::canonicalize(sysroot).with_context(|| format!("cannot open sysroot {}", sysroot.display()))?;
        let sysroot_fd = rustix::fs::open(sysroot, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("cannot open sysroot {}", sysroot.display()))?;
        let _lock = SysrootLock::shared(&sysroot_fd, sysroot)?;
        let deployments = list_deployments(sysroot)?;
        let mut deployments = deployments;
        let entries = boot_entries(&sysroot_fd, sysroot, &deployments)?;
        for e in &entries {
            deployments[e.deployment].kargs = Some(e.kargs.clone());
        }
        let root_id = match boot.backing_root {
            Some(id) => id,
            None => {
                let st = rustix::fs::stat(root).with_context(|| format!("cannot stat {}", root.display()))?;
                (st.st_dev, st.st_ino)
            }
        };
        let booted = deployments.iter().find(|d| d.dev_ino == root_id).cloned().ok_or_else(|| {
            SystemError::NoBootedDeployment { root: root.display().to_string(), sysroot: sysroot.display().to_string() }
        })?;
        let (staged, pending_error) = match staged::staged_name(root) {
            Ok(None) => (None, None),
            Ok(Some(name)) => match deployments.iter().find(|d| d.id() == name) {
                Some(d) => (Some(d.clone()), None),
                None => {
                    let e = SystemError::StagedMissing { name, sysroot: sysroot.display().to_string() };
                    (None, Some(e.to_string()))
                }
            },
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let (pending, next_boot_elsewhere) =
            pending_of(&booted, staged, pending_error.is_some(), &entries, &deployments);
        let next_root = next_root(root, &deployments);
        Ok(System {
            root: root.to_path_buf(),
            sysroot: sysroot.to_path_buf(),
            deployments,
            booted,
            pending,
            next_boot_elsewhere,
            pending_error,
            boot,
            next_root,
        })
    }

    /// Takes ostree's sysroot lock (released on drop): what livefs pins under it
    /// cannot be undeployed and pruned by `ostree admin` in between. bootc's
    /// composefs backend has no such lock: its garbage collection keeps what a
    /// ref names, and livefs's pins are refs.
    pub fn lock(&self) -> anyhow::Result<Option<SysrootLock>> {
        if self.boot.backend == Backend::Composefs {
            return Ok(None);
        }
        let fd = rustix::fs::open(&self.sysroot, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("cannot open sysroot {}", self.sysroot.display()))?;
        SysrootLock::acquire(&fd, &self.sysroot).map(Some)
    }

    /// The system's repository: OSTree's, or the composefs repository.
    pub fn repo(&self) -> anyhow::Result<Repo> {
        match self.boot.backend {
            Backend::Ostree => Repo::open(&self.sysroot.join(layout::REPO)),
            Backend::Composefs => Repo::open(&self.sysroot.join(layout::COMPOSEFS_REPO)),
        }
    }
}

/// The booted stateroot's pending deployment, as libostree's
/// `query_deployments_for(booted osname)` finds it: the staged one if it is
/// this stateroot's, else its boot entry ranked first above the booted one; and
/// the deployment the next boot starts when it is another stateroot's.
fn pending_of(
    booted: &Deployment,
    staged: Option<Deployment>,
    staged_unknown: bool,
    entries: &[BootEntry],
    deployments: &[Deployment],
) -> (Option<Deployment>, Option<Deployment>) {
    let booted_version = entries.iter().find(|e| deployments[e.deployment] == *booted).map(|e| e.version);
    // The first entry above the booted one of the deployments `which` accepts.
    let first_above = |which: &dyn Fn(&Deployment) -> bool| {
        entries
            .iter()
            .filter(|e| which(&deployments[e.deployment]) && booted_version.map_or(true, |b| e.version > b))
            .max_by_key(|e| e.version)
            .map(|e| deployments[e.deployment].clone())
            .filter(|d| d != booted)
    };
    let next_boot = if staged_unknown { None } else { staged.clone().or_else(|| first_above(&|_| true)) };
    let elsewhere = next_boot.filter(|d| d.osname != booted.osname);
    let pending = match staged {
        Some(d) if d.osname == booted.osname => Some(d).filter(|d| d != booted),
        _ if staged_unknown => None,
        _ => first_above(&|d| d.osname == booted.osname),
    };
    (pending, elsewhere)
}

/// The deployment `ostree admin prepare-soft-reboot` loaded: `ROOT/run/nextroot`
/// is a mount, and `ROOT/run/ostree/nextroot-booted` (what becomes
/// `/run/ostree-booted` after the switch) names its directory by device and inode.
fn next_root(root: &Path, deployments: &[Deployment]) -> Option<Deployment> {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, CWD};
    let st = rustix::fs::statx(CWD, root.join(layout::NEXT_ROOT), AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
        .ok()?;
    if !st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT) {
        return None;
    }
    let record = BootRecord::parse(&std::fs::read(root.join(layout::NEXT_ROOT_BOOTED)).ok()?).ok()?;
    let id = record.backing_root?;
    deployments.iter().find(|d| d.dev_ino == id).cloned()
}

/// ostree's own lock on the sysroot (`ostree/lock`), taken as ostree takes it (a
/// record lock, which conflicts with ostree's open-file-description lock).
pub struct SysrootLock(OwnedFd);

impl SysrootLock {
    /// A read lock, for reading the deployments while no ostree process
    /// changes them. A user who may not open the lock file (ostree makes it
    /// 0600) reads without it, as `ostree admin status` always does.
    fn shared(sysroot_fd: &OwnedFd, sysroot: &Path) -> anyhow::Result<Option<SysrootLock>> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = match rustix::fs::openat(sysroot_fd, layout::SYSROOT_LOCK, flags, Mode::empty()) {
            Ok(fd) => fd,
            // No ostree process ever locked it, or this user may not read it.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::ACCESS) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}/ostree/lock", sysroot.display())),
        };
        if rustix::fs::fcntl_lock(&fd, FlockOperation::NonBlockingLockShared).is_err() {
            crate::messages::progress(crate::messages::Progress::WaitingForSysrootLock);
            rustix::fs::fcntl_lock(&fd, FlockOperation::LockShared)
                .with_context(|| format!("cannot lock {}/ostree/lock", sysroot.display()))?;
        }
        Ok(Some(SysrootLock(fd)))
    }

    fn acquire(sysroot_fd: &OwnedFd, sysroot: &Path) -> anyhow::Result<SysrootLock> {
        let open = |dir: &OwnedFd| {
            rustix::fs::openat(
                dir,
                layout::SYSROOT_LOCK,
                OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o600),
            )
        };
        // A write lock needs a writable fd: on a sysroot mounted read-only, open the
        // same file through a private writable clone of the mount.
        let fd = match open(sysroot_fd) {
            Err(rustix::io::Errno::ROFS) => open(&crate::host::mounts::writable_clone(sysroot)?),
            r => r,
        }
        .with_context(|| format!("cannot open {}/ostree/lock", sysroot.display()))?;
        if rustix::fs::fcntl_lock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            crate::messages::progress(crate::messages::Progress::WaitingForSysrootLock);
            rustix::fs::fcntl_lock(&fd, FlockOperation::LockExclusive)
                .with_context(|| format!("cannot lock {}/ostree/lock", sysroot.display()))?;
        }
        Ok(SysrootLock(fd))
    }
}

impl Drop for SysrootLock {
    fn drop(&mut self) {
        let _ = rustix::fs::fcntl_lock(&self.0, FlockOperation::Unlock);
    }
}

fn list_deployments(sysroot: &Path) -> anyhow::Result<Vec<Deployment>> {
    let deploy = sysroot.join(layout::DEPLOY);
    let mut out = Vec::new();
    let oses = std::fs::read_dir(&deploy).with_context(|| format!("cannot list {}", deploy.display()))?;
    for os in oses {
        let os = os?;
        let osname = os.file_name().to_string_lossy().into_owned();
        let dir = os.path().join("deploy");
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((csum, serial)) = name.split_once('.') else { continue };
            let (Ok(checksum), Ok(serial)) = (csum.parse::<Checksum>(), serial.parse::<u32>()) else { continue };
            let st = rustix::fs::lstat(e.path())?;
            if st.st_mode & crate::repo::objects::S_IFMT != crate::repo::objects::S_IFDIR {
                continue;
            }
            out.push(Deployment {
                osname: osname.clone(),
                checksum,
                serial,
                path: e.path(),
                kargs: None,
                dev_ino: (st.st_dev, st.st_ino),
                image: false,
            });
        }
    }
    out.sort_by(|a, b| (&a.osname, a.id()).cmp(&(&b.osname, b.id())));
    Ok(out)
}

/// A boot loader entry that names a deployment.
struct BootEntry {
    version: u64,
    /// Index in the deployment list.
    deployment: usize,
    /// Its kernel arguments, but for those naming the deployment.
    kargs: String,
}

/// The boot loader entries that name a deployment.
fn boot_entries(sysroot_fd: &OwnedFd, sysroot: &Path, deployments: &[Deployment]) -> anyhow::Result<Vec<BootEntry>> {
    let dir = sysroot.join("boot/loader/entries");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for e in entries {
        let e = e?;
        if !e.file_name().to_string_lossy().ends_with(".conf") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).with_context(|| format!("cannot read {}", e.path().display()))?;
        let mut version = 0u64;
        let mut target = None;
        let mut kargs = String::new();
        for line in text.lines() {
            let (key, value) = line.trim().split_once(char::is_whitespace).unwrap_or((line.trim(), ""));
            match key {
                "version" => version = value.trim().parse().unwrap_or(0),
                "options" => {
                    target = value.split_whitespace().find_map(|o| o.strip_prefix("ostree=")).map(str::to_string);
                    // The arguments that name the deployment itself (ostree=, and
                    // init= pointing into it) differ between any two deployments.
                    let own: Vec<&str> = value
                        .split_whitespace()
                        .filter(|o| !o.split_once('=').is_some_and(|(_, v)| v.starts_with("/ostree/boot.")))
                        .collect();
                    kargs = own.join(" ");
                }
                _ => {}
            }
        }
        let Some(target) = target else { continue };
        let rel = target.trim_start_matches('/');
        let fd = match crate::dirfd::openat2(
            sysroot_fd.as_fd(),
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            ResolveFlags::IN_ROOT,
        ) {
            Ok(fd) => fd,
            Err(err) => {
                bail!("boot entry {} names ostree={target}, which cannot be resolved: {err}", e.path().display())
            }
        };
        let st = rustix::fs::fstat(fd.as_fd())?;
        if let Some(i) = deployments.iter().position(|d| d.dev_ino == (st.st_dev, st.st_ino)) {
            out.push(BootEntry { version, deployment: i, kargs });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(osname: &str, byte: u8) -> Deployment {
        Deployment {
            osname: osname.into(),
            checksum: Checksum::from_bytes(&[byte; 32]).unwrap(),
            serial: 0,
            path: PathBuf::from(format!("/d/{osname}/{byte}")),
            kargs: None,
            dev_ino: (1, byte.into()),
            image: false,
        }
    }

    /// Reading takes a shared lock where the file can be opened, and goes on
    /// without one where it does not exist (no ostree process ever locked it).
    #[test]
    fn reading_locks_shared_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ostree")).unwrap();
        let fd = crate::dirfd::open_dir_path(dir.path()).unwrap();
        assert!(SysrootLock::shared(&fd, dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join("ostree/lock"), b"").unwrap();
        let first = SysrootLock::shared(&fd, dir.path()).unwrap();
        assert!(first.is_some());
        // Readers share it.
        assert!(SysrootLock::shared(&fd, dir.path()).unwrap().is_some());
    }

    /// Boot entries (index, version), the staged deployment, whether the staged
    /// record is unreadable → the pending deployment, the next boot elsewhere.
    type Case<'a> = (Vec<(usize, u64)>, Option<&'a Deployment>, bool, Option<&'a Deployment>, Option<&'a Deployment>);

    /// Only the booted stateroot's deployments are pending; another's that the
    /// next boot starts is named apart.
    #[test]
    fn pending_is_the_booted_stateroots() {
        let (a, b, c, x) =
            (deployment("demo", 1), deployment("demo", 2), deployment("demo", 3), deployment("other", 9));
        let all = [a.clone(), b.clone(), c.clone(), x.clone()];
        let entries = |versions: &[(usize, u64)]| -> Vec<BootEntry> {
            versions
                .iter()
                .map(|&(deployment, version)| BootEntry { version, deployment, kargs: String::new() })
                .collect()
        };
        let name = |d: &Option<Deployment>| d.as_ref().map(|d| d.path.display().to_string());
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            // entries (index, version), staged, staged unknown → pending, next boot elsewhere
            (vec![(0, 1), (1, 2)], None, false, Some(&b), None),
            (vec![(0, 2), (1, 1)], None, false, None, None),
            (vec![(0, 1)], None, false, None, None),
            // Another stateroot deployed on top: nothing pending here; the next boot is elsewhere.
            (vec![(0, 1), (3, 2)], None, false, None, Some(&x)),
            // This stateroot's B still ranks above the booted A, as libostree has it.
            (vec![(0, 1), (1, 2), (3, 3)], None, false, Some(&b), Some(&x)),
            (vec![(0, 1), (2, 2), (1, 3)], None, false, Some(&b), None),
            // Staged: this stateroot's wins; another's is the next boot, not pending.
            (vec![(0, 1), (1, 2)], Some(&c), false, Some(&c), None),
            (vec![(0, 1)], Some(&x), false, None, Some(&x)),
            (vec![(0, 1), (1, 2)], Some(&x), false, Some(&b), Some(&x)),
            // A staged record that cannot be read: nothing is known to be pending.
            (vec![(0, 1), (1, 2)], None, true, None, None),
        ];
        for (versions, staged, unknown, pending, elsewhere) in cases {
            let got = pending_of(&a, staged.cloned(), unknown, &entries(&versions), &all);
            assert_eq!(
                (name(&got.0), name(&got.1)),
                (name(&pending.cloned()), name(&elsewhere.cloned())),
                "{versions:?} staged {:?}",
                staged.map(|d| &d.path)
            );
        }
    }
}
