//! The transient overlay on `/usr`: how `/usr` is mounted now, making it a
//! read-only overlay whose changes the next reboot throws away, and the private
//! writable view through which only livefs writes.
//!
//! Where the upper directory lives: `ROOT/var/tmp/livefs-ovl.ID.NONCE/`, next to
//! ostree's own transient unlock (`/var/tmp/ostree-unlock-ovl.*`). It is on disk,
//! not in RAM, so a large update cannot exhaust memory; the name is new for every
//! unlock, so no later boot reuses it (the kernel forgets the overlay at reboot and
//! livefs deletes stale upper directories the next time it runs).
//!
//! Read-only for everyone else: the overlay is created with `fsmount(…,
//! MOUNT_ATTR_RDONLY)` and attached on `/usr`. To write, livefs clones that mount
//! with `open_tree(OPEN_TREE_CLONE)` — a detached copy no other process can
//! reach — and clears the read-only flag of the clone only (`mount_setattr`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustix::fs::{Mode, OFlags, CWD};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};
use serde::Serialize;

/// Upper directories livefs creates, under `ROOT/var/tmp`.
const UPPER_PREFIX: &str = "livefs-ovl.";

/// How `ROOT/usr` is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum UsrState {
    /// No overlay: the read-only deployment content.
    Locked,
    /// An overlay livefs made (transient, read-only to others).
    Livefs { upper: PathBuf, read_only: bool },
    /// `ostree admin unlock --transient` (or rpm-ostree usroverlay): accepted.
    OstreeTransient { upper: Option<PathBuf>, read_only: bool },
    /// `ostree admin unlock --hotfix`: persistent across reboots; refused.
    Hotfix,
    /// Some other overlay, which livefs does not touch.
    Other { description: String },
}

impl UsrState {
    /// Reads `/proc/self/mountinfo` and the deployment's unlock flags.
    pub fn detect(root: &Path, deployment_path: &Path) -> anyhow::Result<UsrState> {
        let mut origin_path = deployment_path.as_os_str().to_owned();
        origin_path.push(".origin");
        let origin = std::fs::read_to_string(origin_path).unwrap_or_default();
        if crate::repo::ini_section(&origin, "origin").iter().any(|(k, v)| *k == "unlocked" && *v == "hotfix") {
            return Ok(UsrState::Hotfix);
        }
        let usr = std::fs::canonicalize(root.join("usr"))
            .with_context(|| format!("cannot resolve {}/usr", root.display()))?;
        // The last mount on a path is the one on top.
        let Some(m) = crate::mounts::mounts()?.into_iter().rfind(|m| m.mount_point == usr) else {
            return Ok(UsrState::Locked);
        };
        if m.fstype != "overlay" {
            return Ok(UsrState::Locked);
        }
        let upper = m.super_options.split(',').find_map(|o| o.strip_prefix("upperdir=")).map(PathBuf::from);
        let read_only = m.options.split(',').any(|o| o == "ro");
        let name = upper
            .as_ref()
            .and_then(|u| u.parent())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        Ok(match (upper, name) {
            (Some(upper), Some(n)) if n.starts_with(UPPER_PREFIX) => UsrState::Livefs { upper, read_only },
            // ostree 2025.2 and older: /var/tmp/ostree-unlock-ovl.XXXXXX/upper; since
            // 2025.3: SYSROOT/ostree/deploy/OS/backing/CSUM.SERIAL/usr-transient/upper.
            (Some(upper), Some(n)) if n.starts_with("ostree-unlock-ovl.") || n == "usr-transient" => {
                UsrState::OstreeTransient { upper: Some(upper), read_only }
            }
            (Some(upper), _) if upper.ends_with(".usr-ovl-upper") => UsrState::Hotfix,
            (upper, _) => UsrState::Other { description: format!("overlay with upperdir {upper:?}") },
        })
    }

    /// The upper directory of an overlay that livefs may write through.
    pub fn upper(&self) -> Option<&Path> {
        match self {
            UsrState::Livefs { upper, .. } => Some(upper),
            UsrState::OstreeTransient { upper, .. } => upper.as_deref(),
            _ => None,
        }
    }
}

/// The SELinux label xattr: an overlay's root takes its upper directory's label,
/// so the upper and work directories get `/usr`'s (ostree #762).
const SELINUX_XATTR: &std::ffi::CStr = c"security.selinux";

/// Mounts a fresh, read-only, transient overlay on `ROOT/usr` whose lower layer is
/// `lower` — the physical deployment's `usr`, as ostree's own unlock has it (on a
/// composefs-booted host `/usr` is part of an overlay already, and overlays stack
/// only two deep) — and writes ostree's `unlocked-transient` flag so `ostree admin
/// status` shows it. Returns the upper directory.
pub fn unlock(root: &Path, lower: &Path, deployment_id: &str) -> anyhow::Result<PathBuf> {
    let usr = root.join("usr");
    let base = root.join("var/tmp");
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = base.join(format!("{UPPER_PREFIX}{}.{nonce:x}", &deployment_id[..12.min(deployment_id.len())]));
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [&dir, &upper, &work] {
        std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    // The merged root takes the upper root's attributes: give it /usr's.
    let st = rustix::fs::stat(lower).with_context(|| format!("cannot stat {}", lower.display()))?;
    rustix::fs::chown(&upper, Some(rustix::fs::Uid::from_raw(st.st_uid)), Some(rustix::fs::Gid::from_raw(st.st_gid)))?;
    rustix::fs::chmod(&upper, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    label_like(lower, &[&upper, &work])?;

    let mount = |redirect: bool| -> anyhow::Result<OwnedFd> {
        let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).context("overlayfs is not available")?;
        rustix::mount::fsconfig_set_string(&fs, "lowerdir", lower)?;
        rustix::mount::fsconfig_set_string(&fs, "upperdir", &upper)?;
        rustix::mount::fsconfig_set_string(&fs, "workdir", &work)?;
        if redirect {
            // Lets directories of the lower layer be renamed (atomic removal).
            rustix::mount::fsconfig_set_string(&fs, "redirect_dir", "on")?;
        }
        rustix::mount::fsconfig_create(&fs)?;
        Ok(rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_RDONLY)?)
    };
    let mnt = mount(true)
        .or_else(|_| mount(false))
        .with_context(|| format!("cannot mount an overlay on {} (lower {})", usr.display(), lower.display()))?;
    rustix::mount::move_mount(mnt.as_fd(), "", CWD, &usr, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .with_context(|| format!("cannot attach the overlay on {}", usr.display()))?;

    let flag_dir = root.join("run/ostree/deployment-state").join(deployment_id);
    std::fs::create_dir_all(&flag_dir).with_context(|| format!("cannot create {}", flag_dir.display()))?;
    std::fs::write(flag_dir.join("unlocked-transient"), b"")
        .with_context(|| format!("cannot write {}/unlocked-transient", flag_dir.display()))?;
    Ok(upper)
}

/// Gives `dirs` the SELinux label of `like`, when it has one.
fn label_like(like: &Path, dirs: &[&Path]) -> anyhow::Result<()> {
    let mut buf = [0u8; 4096];
    let n = match rustix::fs::lgetxattr(like, SELINUX_XATTR, &mut buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read the SELinux label of {}", like.display())),
    };
    for d in dirs {
        rustix::fs::lsetxattr(*d, SELINUX_XATTR, &buf[..n], rustix::fs::XattrFlags::empty())
            .with_context(|| format!("cannot label {} like {}", d.display(), like.display()))?;
    }
    Ok(())
}

/// A writable view of `ROOT/usr` that only this process can reach: a detached
/// clone of the overlay mount with its read-only flag cleared. Dropping the fd
/// detaches the view.
pub fn writable_view(root: &Path) -> anyhow::Result<OwnedFd> {
    crate::mounts::writable_clone(&root.join("usr"))
}

/// Deletes upper directories of earlier boots (or of overlays no longer mounted),
/// keeping `keep`.
pub fn remove_stale_uppers(root: &Path, keep: Option<&Path>) -> anyhow::Result<()> {
    let base = root.join("var/tmp");
    let Ok(fd) = rustix::fs::open(&base, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
        return Ok(());
    };
    let keep_name = keep.and_then(|k| k.parent()).and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    for name in crate::checkout::list(fd.as_fd())? {
        if name.starts_with(UPPER_PREFIX) && Some(&name) != keep_name.as_ref() {
            crate::checkout::remove(fd.as_fd(), &name)
                .with_context(|| format!("cannot remove {}/{name}", base.display()))?;
        }
    }
    Ok(())
}

/// Bytes the upper directory holds (allocated blocks), and the free space of its
/// filesystem.
pub fn upper_usage(upper: &Path) -> anyhow::Result<(u64, u64)> {
    let mut used = 0u64;
    let mut stack = vec![upper.to_path_buf()];
    while let Some(p) = stack.pop() {
        let st = rustix::fs::lstat(&p)?;
        used += st.st_blocks as u64 * 512;
        if st.st_mode & crate::repo::objects::S_IFMT == crate::repo::objects::S_IFDIR {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    let vfs = rustix::fs::statvfs(upper)?;
    Ok((used, vfs.f_bavail * vfs.f_frsize))
}

/// Refuses states livefs must not write through.
pub fn check_writable(state: &UsrState) -> anyhow::Result<()> {
    match state {
        UsrState::Hotfix => bail!(
            "/usr is unlocked in hotfix mode (persistent across reboots); livefs only writes to a transient overlay"
        ),
        UsrState::Other { description } => {
            bail!("/usr is already mounted as an {description} that livefs did not make")
        }
        _ => Ok(()),
    }
}
