//! The live `/usr`: how it is mounted now, and switching it from one tree to
//! another in one mount operation.
//!
//! livefs's `/usr` is a read-only overlay `lowerdir=LAYER:DEPLOYMENT/usr`: the
//! physical booted deployment's `usr` (as ostree's own unlock uses it: on a
//! composefs host `/usr` is part of an overlay already) under a layer built off
//! to the side ([`crate::layer`]). It has no upper directory, so nothing can
//! write to it, and the kernel forgets it at reboot.
//!
//! Switching: the new overlay is created detached (`fsmount`), then
//! - over an overlay of livefs's, mounted **beneath** it (`MOVE_MOUNT_BENEATH`,
//!   Linux 6.5+) and the old one detached: every new lookup sees the whole new
//!   tree, and a process holding a directory of the old tree keeps a consistent
//!   old view; on older kernels it is stacked on top;
//! - over the plain `/usr`, attached on top.
//!
//! Going back to the booted `/usr` ([`detach`]) lazily detaches livefs's
//! overlays. Layers live in `SYSROOT/ostree/deploy/OS/backing/CSUM.SERIAL/livefs/`
//! next to ostree's own unlock state: on the filesystem of the repository (so
//! objects can be hardlinked), where no tmpfiles cleaner ages them (unlike
//! `/var/tmp`), written through a private writable clone of the sysroot's mount
//! when it is read-only. A layer no mount uses is removed by the next run.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustix::fs::{Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags};
use serde::Serialize;

use crate::checkout;
use crate::fault;
use crate::mounts::MountInfo;
use crate::repo::{Repo, RepoMode};
use crate::submounts::Submounts;
use crate::sysroot::Deployment;

/// The directory of livefs's layers in a deployment's backing directory.
const LAYERS_DIR: &str = "livefs";
/// Layer directory names: `usr.TARGET12.NONCE`.
const LAYER_PREFIX: &str = "usr.";
/// The mount source of livefs's overlays names their layer: `livefs:usr.…`.
/// (The `lowerdir=` option cannot: fsconfig(2) takes at most 256 bytes, so the
/// layers are passed as `/proc/self/fd/N` paths.)
const SOURCE_PREFIX: &str = "livefs:";

/// How `ROOT/usr` is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum UsrState {
    /// No overlay: the read-only deployment content.
    Locked,
    /// livefs's read-only overlay of the layer named `layer` (in [`layers_dir`])
    /// over the deployment's `usr`.
    Livefs { layer: String },
    /// `ostree admin unlock --transient` (or rpm-ostree usroverlay): written
    /// through, file by file.
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
        if let Some(layer) = livefs_layer(&m) {
            return Ok(UsrState::Livefs { layer });
        }
        let upper = m.super_options.split(',').find_map(|o| o.strip_prefix("upperdir=")).map(PathBuf::from);
        let read_only = m.options.split(',').any(|o| o == "ro");
        let name = upper
            .as_ref()
            .and_then(|u| u.parent())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        Ok(match (upper, name) {
            // ostree 2025.2 and older: /var/tmp/ostree-unlock-ovl.XXXXXX/upper; since
            // 2025.3: SYSROOT/ostree/deploy/OS/backing/CSUM.SERIAL/usr-transient/upper.
            (Some(upper), Some(n)) if n.starts_with("ostree-unlock-ovl.") || n == "usr-transient" => {
                UsrState::OstreeTransient { upper: Some(upper), read_only }
            }
            (Some(upper), _) if upper.ends_with(".usr-ovl-upper") => UsrState::Hotfix,
            (upper, _) => UsrState::Other { description: format!("overlay with upperdir {upper:?}") },
        })
    }
}

/// The layer name of an overlay livefs mounted, from its mount source.
fn livefs_layer(m: &MountInfo) -> Option<String> {
    let name = m.source.strip_prefix(SOURCE_PREFIX)?;
    (m.fstype == "overlay" && name.starts_with(LAYER_PREFIX) && !name.contains('/')).then(|| name.to_string())
}

/// Where a deployment's layers live.
pub fn layers_dir(sysroot: &Path, deployment: &Deployment) -> PathBuf {
    sysroot.join("ostree/deploy").join(&deployment.osname).join("backing").join(deployment.id()).join(LAYERS_DIR)
}

/// Where a deployment's layers are written: the sysroot's directory, writable
/// (through a private writable clone of its mount when that is read-only), and
/// the repository's `objects` seen through that same mount — link(2) fails with
/// `EXDEV` between two mounts even of one filesystem, so a layer written through
/// the clone must link from it.
pub struct LayerSite {
    sysroot: PathBuf,
    /// The layers directory, relative to the sysroot.
    rel: String,
    writable: OwnedFd,
    /// The deepest existing directory of the layers' path: where they will be.
    nearest: OwnedFd,
    objects: Option<OwnedFd>,
    links: bool,
}

impl LayerSite {
    pub fn open(sysroot: &Path, deployment: &Deployment, repo: &Repo) -> anyhow::Result<LayerSite> {
        let writable = writable_sysroot(sysroot)?;
        let objects = objects_beneath(repo, writable.as_fd(), sysroot);
        let rel = format!("ostree/deploy/{}/backing/{}/{LAYERS_DIR}", deployment.osname, deployment.id());
        let mut nearest = rustix::io::dup(&writable)?;
        for c in rel.split('/') {
            match checkout::open_dir(nearest.as_fd(), c) {
                Ok(fd) => nearest = fd,
                Err(Errno::NOENT) => break,
                Err(e) => return Err(e).with_context(|| format!("cannot open {}/{rel}", sysroot.display())),
            }
        }
        // The repository's own objects, found through the mount the layers will
        // be on (not another filesystem mounted on the way): a link works.
        let mount_of = |fd: BorrowedFd<'_>| {
            rustix::fs::statx(fd, "", rustix::fs::AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::MNT_ID)
                .map(|st| st.stx_mnt_id)
                .ok()
        };
        let links = repo.mode() == RepoMode::Bare
            && objects
                .as_ref()
                .is_some_and(|o| mount_of(o.as_fd()).is_some() && mount_of(o.as_fd()) == mount_of(nearest.as_fd()));
        Ok(LayerSite { sysroot: sysroot.to_path_buf(), rel, writable, nearest, objects, links })
    }

    /// Whether the layer's files will be hardlinks of the repository's objects
    /// (else copies: what the space preflight counts).
    pub fn links(&self) -> bool {
        self.links
    }

    /// The filesystem the layers are written to, for the space preflight.
    pub fn filesystem(&self) -> BorrowedFd<'_> {
        self.nearest.as_fd()
    }

    /// The repository's objects, to link from into a layer of this site.
    pub fn objects(&self) -> Option<BorrowedFd<'_>> {
        self.objects.as_ref().map(|fd| fd.as_fd())
    }

    /// A new, empty layer directory for `target` and a writable fd on it.
    pub fn new_layer(&self, target: &str) -> anyhow::Result<(PathBuf, OwnedFd)> {
        let base = make_dirs(self.writable.as_fd(), &self.rel)
            .with_context(|| format!("cannot create {}/{}", self.sysroot.display(), self.rel))?;
        let nonce =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!("{LAYER_PREFIX}{}.{nonce:x}", &target[..12.min(target.len())]);
        rustix::fs::mkdirat(&base, name.as_str(), Mode::from_raw_mode(0o755))
            .with_context(|| format!("cannot create layer {name}"))?;
        fault::mutation();
        let fd = checkout::open_dir(base.as_fd(), &name)?;
        Ok((self.sysroot.join(&self.rel).join(name), fd))
    }
}

/// `repo`'s `objects` directory opened beneath `mount`, the directory
/// `mount_path` seen through another mount; `None` when the repository is not
/// beneath `mount_path`, or what is there is another directory.
fn objects_beneath(repo: &Repo, mount: BorrowedFd<'_>, mount_path: &Path) -> Option<OwnedFd> {
    let rel = repo.path().strip_prefix(mount_path).ok()?.join("objects");
    let fd = checkout::open_dir(mount, rel.to_str()?).ok()?;
    let (a, b) = (rustix::fs::fstat(&fd).ok()?, rustix::fs::fstat(repo.objects()).ok()?);
    ((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)).then_some(fd)
}

/// The sysroot's directory, writable: through a private writable clone of its
/// mount when that is read-only (Fedora CoreOS); everyone else still sees it
/// read-only. The clone lives as long as the fd (and fds opened through it).
fn writable_sysroot(sysroot: &Path) -> anyhow::Result<OwnedFd> {
    let fd = checkout::open_dir_path(sysroot)?;
    let vfs = rustix::fs::fstatvfs(&fd).with_context(|| format!("cannot stat {}", sysroot.display()))?;
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return crate::mounts::writable_clone(sysroot);
    }
    Ok(fd)
}

/// Opens `rel` under `dir`, creating missing directories, never following symlinks.
fn make_dirs(dir: BorrowedFd<'_>, rel: &str) -> anyhow::Result<OwnedFd> {
    let mut fd = rustix::io::dup(dir)?;
    for c in rel.split('/') {
        match rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(0o755)) {
            Ok(()) => fault::mutation(),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        fd = checkout::open_dir(fd.as_fd(), c)?;
    }
    Ok(fd)
}

/// Switches `ROOT/usr` to the read-only overlay of `layer` over `lower` (the
/// booted deployment's `usr`), in one mount operation, with the mounts below
/// `/usr` (`carried`) attached in the new tree; writes ostree's
/// `unlocked-transient` flag so `ostree admin status` shows the unlock.
pub fn switch(
    root: &Path,
    lower: &Path,
    layer: &Path,
    deployment: &Deployment,
    carried: &mut Submounts,
) -> anyhow::Result<()> {
    let usr = root.join("usr");
    let name = layer.file_name().and_then(|n| n.to_str()).context("a layer without a name")?;
    let open = |p: &Path| {
        rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("cannot open {}", p.display()))
    };
    let (layer_fd, lower_fd) = (open(layer)?, open(lower)?);
    let lowers = format!("/proc/self/fd/{}:/proc/self/fd/{}", layer_fd.as_raw_fd(), lower_fd.as_raw_fd());
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).context("overlayfs is not available")?;
    // No upper directory: the superblock itself is read-only.
    rustix::mount::fsconfig_set_string(&fs, "source", format!("{SOURCE_PREFIX}{name}").as_str())
        .and_then(|()| rustix::mount::fsconfig_set_string(&fs, "lowerdir", lowers.as_str()))
        .and_then(|()| rustix::mount::fsconfig_set_flag(&fs, "ro"))
        .and_then(|()| rustix::mount::fsconfig_create(&fs))
        .with_context(|| format!("cannot create the overlay of {} over {}", layer.display(), lower.display()))?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_RDONLY)?;
    carried.attach_detached(mnt.as_fd())?;
    let attach = |flags: MoveMountFlags| {
        rustix::mount::move_mount(mnt.as_fd(), "", CWD, &usr, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | flags)
    };
    let on_ours = matches!(UsrState::detect(root, &deployment.path)?, UsrState::Livefs { .. });
    if on_ours {
        match attach(MoveMountFlags::MOVE_MOUNT_BENEATH) {
            Ok(()) => {
                fault::mutation();
                carried.attach(mnt.as_fd())?;
                rustix::mount::unmount(&usr, UnmountFlags::DETACH)
                    .with_context(|| format!("cannot detach the previous overlay of {}", usr.display()))?;
            }
            // Before Linux 6.5: stack the new tree on top of the old one.
            Err(Errno::INVAL) => attach(MoveMountFlags::empty())?,
            Err(e) => return Err(e).with_context(|| format!("cannot attach the overlay beneath {}", usr.display())),
        }
    } else {
        attach(MoveMountFlags::empty()).with_context(|| format!("cannot attach the overlay on {}", usr.display()))?;
    }
    fault::mutation();
    carried.attach(mnt.as_fd())?;
    unlock_flag(root, deployment, true)
}

/// Writes (or removes) ostree's `run/ostree/deployment-state/CSUM.SERIAL/
/// unlocked-transient` flag beneath ROOT, never following a symlink.
fn unlock_flag(root: &Path, deployment: &Deployment, present: bool) -> anyhow::Result<()> {
    let rel = format!("run/ostree/deployment-state/{}", deployment.id());
    let what = || format!("{}/{rel}/unlocked-transient", root.display());
    let root_fd = checkout::open_dir_path(root)?;
    if present {
        let dir = make_dirs(root_fd.as_fd(), &rel).with_context(what)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        rustix::fs::openat(&dir, "unlocked-transient", flags, Mode::from_raw_mode(0o644)).with_context(what)?;
        return Ok(());
    }
    match checkout::open_dir(root_fd.as_fd(), &rel) {
        Ok(dir) => match rustix::fs::unlinkat(&dir, "unlocked-transient", rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e).with_context(what),
        },
        Err(_) => Ok(()),
    }
}

/// Removes ostree's `unlocked-transient` flag of a `/usr` that shows no overlay
/// any more (a soft reboot took livefs's away): the flag must not outlive it.
pub fn forget_unlock(root: &Path, deployment: &Deployment) -> anyhow::Result<()> {
    unlock_flag(root, deployment, false)
}

/// Brings back the booted `/usr`: lazily detaches livefs's overlays from
/// `ROOT/usr` (a process holding the old tree keeps it until it lets go), with
/// the mounts below `/usr` (`carried`) attached again where the booted tree
/// does not show them, and removes ostree's unlock flag.
pub fn detach(root: &Path, deployment: &Deployment, carried: &mut Submounts) -> anyhow::Result<()> {
    let usr = root.join("usr");
    while let UsrState::Livefs { .. } = UsrState::detect(root, &deployment.path)? {
        rustix::mount::unmount(&usr, UnmountFlags::DETACH)
            .with_context(|| format!("cannot detach the overlay of {}", usr.display()))?;
        fault::mutation();
    }
    let tree = rustix::fs::open(&usr, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("cannot open {}", usr.display()))?;
    carried.attach(tree.as_fd())?;
    unlock_flag(root, deployment, false)
}

/// Removes the layers of every deployment that no mount uses — those of earlier
/// boots and those switched away from — except those `held` says a process still
/// looks into (through a lazily detached overlay).
pub fn remove_stale_layers(
    sysroot: &Path,
    deployments: &[Deployment],
    held: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let in_use: Vec<String> = crate::mounts::mounts()?.iter().filter_map(livefs_layer).collect();
    for d in deployments {
        let dir = layers_dir(sysroot, d);
        if !dir.exists() {
            continue;
        }
        let rel = dir.strip_prefix(sysroot).expect("under the sysroot").to_string_lossy().into_owned();
        let writable = checkout::open_dir(writable_sysroot(sysroot)?.as_fd(), &rel)
            .with_context(|| format!("cannot open {}", dir.display()))?;
        for name in checkout::list_prefixed(writable.as_fd(), LAYER_PREFIX)? {
            if !in_use.contains(&name) && !held(&name) {
                checkout::remove(writable.as_fd(), &name)
                    .with_context(|| format!("cannot remove the stale layer {}/{name}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// Bytes a layer holds: written (copies, directories, whiteouts: allocated
/// blocks) and linked (files that are repository objects' inodes), and the free
/// space of its filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct LayerUsage {
    pub layer: PathBuf,
    pub bytes_written: u64,
    pub bytes_linked: u64,
    pub free: u64,
}

pub fn layer_usage(layer: &Path) -> anyhow::Result<LayerUsage> {
    let (mut written, mut linked) = (0u64, 0u64);
    let (parent, name) = match (layer.parent(), layer.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => anyhow::bail!("{} is not a layer directory", layer.display()),
    };
    let parent_fd = checkout::open_dir_path(parent)?;
    let name = std::ffi::CString::new(name.as_encoded_bytes()).context("a layer name with a NUL byte")?;
    // Walked dirfd-relative with bounded descriptors: a layer may hold paths
    // longer than PATH_MAX and deeper than the open-file limit.
    checkout::walk(parent_fd.as_fd(), &name, &mut |v| {
        match v {
            checkout::Visit::Entry { stat, .. } if stat.st_nlink > 1 => linked += stat.st_size as u64,
            checkout::Visit::Entry { stat, .. } | checkout::Visit::Enter { stat, .. } => {
                written += stat.st_blocks as u64 * 512
            }
            checkout::Visit::Leave { .. } => {}
        }
        Ok(())
    })
    .with_context(|| format!("cannot measure the layer {}", layer.display()))?;
    let vfs = rustix::fs::statvfs(layer)?;
    Ok(LayerUsage {
        layer: layer.to_path_buf(),
        bytes_written: written,
        bytes_linked: linked,
        free: vfs.f_bavail * vfs.f_frsize,
    })
}

/// A writable view of `ROOT/usr` that only this process can reach: a detached
/// clone of an ostree transient unlock's overlay mount with its read-only flag
/// cleared. Dropping the fd detaches the view.
pub fn writable_view(root: &Path) -> anyhow::Result<OwnedFd> {
    crate::mounts::writable_clone(&root.join("usr"))
}

/// `/usr` states livefs refuses to change (a policy refusal: nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum UsrRefusal {
    #[error("/usr is unlocked in hotfix mode (persistent across reboots); livefs only makes transient changes")]
    Hotfix,
    #[error("/usr is already mounted as an {0} that livefs did not make")]
    Foreign(String),
}

/// Refuses states livefs must not change.
pub fn check_usable(state: &UsrState) -> Result<(), UsrRefusal> {
    match state {
        UsrState::Hotfix => Err(UsrRefusal::Hotfix),
        UsrState::Other { description } => Err(UsrRefusal::Foreign(description.clone())),
        _ => Ok(()),
    }
}
