//! The live `/usr`: how it is mounted now, and switching it from one tree to
//! another in one mount operation.
//!
//! livefs's `/usr` is a read-only overlay `lowerdir=LAYER:DEPLOYMENT/usr`: the
//! physical booted deployment's `usr` (as ostree's own unlock uses it: on a
//! composefs host `/usr` is part of an overlay already) under a layer built off
//! to the side ([`crate::tree::layer`]). It has no upper directory, so nothing can
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
use serde::{Deserialize, Serialize};

use crate::dirfd;
use crate::fault;
use crate::host::mounts::MountInfo;
use crate::host::submounts::Submounts;
use crate::host::sysroot::Deployment;
use crate::host::Host;
use crate::repo::{Checksum, Repo, RepoMode};

/// Layer directory names: `usr.TARGET12.NONCE`.
const LAYER_PREFIX: &str = "usr.";
/// The mount source of livefs's overlays names their layer: `livefs:usr.…`.
/// (The `lowerdir=` option cannot: fsconfig(2) takes at most 256 bytes, so the
/// layers are passed as `/proc/self/fd/N` paths.)
const SOURCE_PREFIX: &str = "livefs:";
/// The mount source of a composefs image's `/usr` livefs mounted
/// (bootc's native composefs backend): `livefs:image.HEX`.
pub const IMAGE_SOURCE_PREFIX: &str = "livefs:image.";

/// How `ROOT/usr` is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum UsrState {
    /// No overlay: the read-only deployment content.
    Locked,
    /// livefs's read-only overlay of the layer named `layer` (in [`layers_dir`])
    /// over the deployment's `usr`.
    Livefs { layer: String },
    /// bootc's native composefs backend: `/usr` of the composefs image `image`,
    /// mounted by livefs (read-only, every file with the image's metadata).
    LivefsImage { image: Checksum },
    /// `ostree admin unlock --transient` (or rpm-ostree usroverlay): written
    /// through, file by file.
    OstreeTransient { upper: Option<PathBuf>, read_only: bool },
    /// `ostree admin unlock --hotfix`: persistent across reboots; refused.
    Hotfix,
    /// Some other overlay, which livefs does not touch.
    Other { description: String },
}

impl UsrState {
    /// Reads the deployment's origin and `/proc/self/mountinfo` (the last mount
    /// on `ROOT/usr` is the one on top); see [`UsrState::classify`].
    pub fn detect(root: &Path, deployment_path: &Path) -> anyhow::Result<UsrState> {
        let mut origin_path = deployment_path.as_os_str().to_owned();
        origin_path.push(".origin");
        let origin = std::fs::read_to_string(origin_path).unwrap_or_default();
        let usr = std::fs::canonicalize(root.join("usr"))
            .with_context(|| format!("cannot resolve {}/usr", root.display()))?;
        let mounts = crate::host::mounts::mounts()?;
        Ok(UsrState::classify(&origin, mounts.iter().rfind(|m| m.mount_point == usr)))
    }

    /// How `/usr` is mounted, from the deployment's origin file and the mount on
    /// top of `/usr` (if any).
    pub fn classify(origin: &str, top: Option<&MountInfo>) -> UsrState {
        if crate::repo::ini_section(origin, "origin").iter().any(|(k, v)| *k == "unlocked" && *v == "hotfix") {
            return UsrState::Hotfix;
        }
        let Some(m) = top.filter(|m| m.fstype == "overlay") else { return UsrState::Locked };
        if let Some(layer) = livefs_layer(m) {
            return UsrState::Livefs { layer };
        }
        if let Some(image) = m.source.strip_prefix(IMAGE_SOURCE_PREFIX).and_then(|h| h.parse().ok()) {
            return UsrState::LivefsImage { image };
        }
        let upper = m.super_options.split(',').find_map(|o| o.strip_prefix("upperdir=")).map(PathBuf::from);
        let read_only = m.options.split(',').any(|o| o == "ro");
        let name = upper
            .as_ref()
            .and_then(|u| u.parent())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        match (upper, name) {
            // ostree 2025.2 and older: /var/tmp/ostree-unlock-ovl.XXXXXX/upper; since
            // 2025.3: SYSROOT/ostree/deploy/OS/backing/CSUM.SERIAL/usr-transient/upper.
            (Some(upper), Some(n)) if n.starts_with("ostree-unlock-ovl.") || n == "usr-transient" => {
                UsrState::OstreeTransient { upper: Some(upper), read_only }
            }
            (Some(upper), _) if upper.ends_with(".usr-ovl-upper") => UsrState::Hotfix,
            (upper, _) => UsrState::Other { description: format!("overlay with upperdir {upper:?}") },
        }
    }
}

impl UsrState {
    /// Whether `/usr` shows a tree livefs mounted (a layer, an image).
    pub fn is_livefs(&self) -> bool {
        matches!(self, UsrState::Livefs { .. } | UsrState::LivefsImage { .. })
    }
}

/// The layer name of an overlay livefs mounted, from its mount source.
fn livefs_layer(m: &MountInfo) -> Option<String> {
    let name = m.source.strip_prefix(SOURCE_PREFIX)?;
    (m.fstype == "overlay" && name.starts_with(LAYER_PREFIX) && !name.contains('/')).then(|| name.to_string())
}

/// Where a deployment's layers live.
pub fn layers_dir(sysroot: &Path, deployment: &Deployment) -> PathBuf {
    sysroot.join(deployment.layers_dir())
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
        let rel = deployment.layers_dir();
        let mut nearest = rustix::io::dup(&writable)?;
        for c in rel.split('/') {
            match crate::dirfd::open_dir(nearest.as_fd(), c) {
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

    /// Where the layer `name` of this site is (built earlier, kept for a way
    /// back); `None` for a name livefs never gives a layer.
    pub fn layer_path(&self, name: &str) -> Option<PathBuf> {
        let ours = name.starts_with(LAYER_PREFIX) && !name.contains('/') && name != LAYER_PREFIX;
        ours.then(|| self.sysroot.join(&self.rel).join(name))
    }

    /// A new, empty layer directory for `target` and a writable fd on it.
    pub fn new_layer(&self, target: &str) -> anyhow::Result<(PathBuf, OwnedFd)> {
        let base = dirfd::make_dirs(self.writable.as_fd(), &self.rel, 0o755)
            .with_context(|| format!("cannot create {}/{}", self.sysroot.display(), self.rel))?;
        let nonce =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!("{LAYER_PREFIX}{}.{nonce:x}", &target[..12.min(target.len())]);
        rustix::fs::mkdirat(&base, name.as_str(), Mode::from_raw_mode(0o755))
            .with_context(|| format!("cannot create layer {name}"))?;
        fault::mutation();
        let fd = crate::dirfd::open_dir(base.as_fd(), &name)?;
        Ok((self.sysroot.join(&self.rel).join(name), fd))
    }
}

/// `repo`'s `objects` directory opened beneath `mount`, the directory
/// `mount_path` seen through another mount; `None` when the repository is not
/// beneath `mount_path`, or what is there is another directory.
fn objects_beneath(repo: &Repo, mount: BorrowedFd<'_>, mount_path: &Path) -> Option<OwnedFd> {
    let rel = repo.path().strip_prefix(mount_path).ok()?.join("objects");
    let fd = crate::dirfd::open_dir(mount, rel.to_str()?).ok()?;
    let (a, b) = (rustix::fs::fstat(&fd).ok()?, rustix::fs::fstat(repo.objects()).ok()?);
    ((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)).then_some(fd)
}

/// The sysroot's directory, writable: through a private writable clone of its
/// mount when that is read-only (Fedora CoreOS); everyone else still sees it
/// read-only. The clone lives as long as the fd (and fds opened through it).
fn writable_sysroot(sysroot: &Path) -> anyhow::Result<OwnedFd> {
    let fd = crate::dirfd::open_dir_path(sysroot)?;
    let vfs = rustix::fs::fstatvfs(&fd).with_context(|| format!("cannot stat {}", sysroot.display()))?;
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return crate::host::mounts::writable_clone(sysroot);
    }
    Ok(fd)
}

/// A detached, read-only overlay of `layer` over `lower`, its source naming the
/// layer. No upper directory: the superblock itself is read-only.
fn new_overlay(layer: &Path, lower: &Path) -> anyhow::Result<OwnedFd> {
    let name = layer.file_name().and_then(|n| n.to_str()).context("a layer without a name")?;
    let open = |p: &Path| {
        rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("cannot open {}", p.display()))
    };
    let (layer_fd, lower_fd) = (open(layer)?, open(lower)?);
    let lowers = format!("/proc/self/fd/{}:/proc/self/fd/{}", layer_fd.as_raw_fd(), lower_fd.as_raw_fd());
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).context("overlayfs is not available")?;
    rustix::mount::fsconfig_set_string(&fs, "source", format!("{SOURCE_PREFIX}{name}").as_str())
        .and_then(|()| rustix::mount::fsconfig_set_string(&fs, "lowerdir", lowers.as_str()))
        .and_then(|()| rustix::mount::fsconfig_set_flag(&fs, "ro"))
        .and_then(|()| rustix::mount::fsconfig_create(&fs))
        .with_context(|| format!("cannot create the overlay of {} over {}", layer.display(), lower.display()))?;
    Ok(rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_RDONLY)?)
}

/// Switches `ROOT/usr` to the read-only overlay of `layer` over the booted
/// deployment's `usr`, in one mount operation, with the mounts below `/usr`
/// (`carried`) attached in the new tree; writes ostree's `unlocked-transient`
/// flag so `ostree admin status` shows the unlock. Returns the new state of `/usr`.
pub fn switch(host: &Host, layer: &Path, carried: &mut Submounts) -> anyhow::Result<UsrState> {
    host.ensure_locked()?;
    let lower = host.system.booted.path.join("usr");
    let mnt = new_overlay(layer, &lower)?;
    attach_usr(host, mnt.as_fd(), carried)?;
    unlock_flag(host, true)?;
    let layer = layer.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(UsrState::Livefs { layer })
}

/// Puts the detached tree `mnt` on `ROOT/usr` in one mount operation, with the
/// mounts below `/usr` (`carried`) attached in it: beneath a tree of livefs's
/// (which is then detached), else on top of the booted `/usr`.
pub fn attach_usr(host: &Host, mnt: BorrowedFd<'_>, carried: &mut Submounts) -> anyhow::Result<()> {
    host.ensure_locked()?;
    let usr = host.paths.root.join("usr");
    carried.attach_detached(mnt)?;
    let attach = |flags: MoveMountFlags| {
        let r = rustix::mount::move_mount(mnt, "", CWD, &usr, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | flags);
        crate::host::mounts::changed();
        r
    };
    if host.usr.is_livefs() {
        match attach(MoveMountFlags::MOVE_MOUNT_BENEATH) {
            Ok(()) => {
                fault::mutation();
                carried.attach(mnt)?;
                let detached = rustix::mount::unmount(&usr, UnmountFlags::DETACH);
                crate::host::mounts::changed();
                detached.with_context(|| format!("cannot detach the previous tree of {}", usr.display()))?;
            }
            // Before Linux 6.5: stack the new tree on top of the old one.
            Err(Errno::INVAL) => attach(MoveMountFlags::empty())?,
            Err(e) => return Err(e).with_context(|| format!("cannot attach the new tree beneath {}", usr.display())),
        }
    } else {
        attach(MoveMountFlags::empty()).with_context(|| format!("cannot attach the new tree on {}", usr.display()))?;
    }
    fault::mutation();
    carried.attach(mnt)?;
    Ok(())
}

/// Writes (or removes) ostree's `unlocked-transient` flag of the booted
/// deployment (in its `run/ostree/deployment-state/`) beneath ROOT, never
/// following a symlink.
fn unlock_flag(host: &Host, present: bool) -> anyhow::Result<()> {
    // bootc's native composefs backend has no ostree deployment state.
    if host.system.booted.is_image() {
        return Ok(());
    }
    let rel = host.system.booted.state_dir();
    let what = || format!("{}/{rel}/unlocked-transient", host.paths.root.display());
    if present {
        let dir = dirfd::make_dirs(host.root.as_fd(), &rel, 0o755).with_context(what)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        rustix::fs::openat(&dir, "unlocked-transient", flags, Mode::from_raw_mode(0o644)).with_context(what)?;
        return Ok(());
    }
    match dirfd::open_dir(host.root.as_fd(), &rel) {
        Ok(dir) => match rustix::fs::unlinkat(&dir, "unlocked-transient", rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e).with_context(what),
        },
        Err(_) => Ok(()),
    }
}

/// Removes ostree's `unlocked-transient` flag of a `/usr` that shows no overlay
/// any more (a soft reboot took livefs's away): the flag must not outlive it.
pub fn forget_unlock(host: &Host) -> anyhow::Result<()> {
    host.ensure_locked()?;
    unlock_flag(host, false)
}

/// Brings back the booted `/usr`: lazily detaches livefs's overlays from
/// `ROOT/usr` (a process holding the old tree keeps it until it lets go), with
/// the mounts below `/usr` (`carried`) attached again where the booted tree
/// does not show them, and removes ostree's unlock flag. Returns the new state
/// of `/usr`.
pub fn detach(host: &Host, carried: &mut Submounts) -> anyhow::Result<UsrState> {
    host.ensure_locked()?;
    let usr = host.paths.root.join("usr");
    // Stacked trees (kernels before 6.5) are detached one by one.
    while host.usr_now()?.is_livefs() {
        let detached = rustix::mount::unmount(&usr, UnmountFlags::DETACH);
        crate::host::mounts::changed();
        detached.with_context(|| format!("cannot detach the overlay of {}", usr.display()))?;
        fault::mutation();
    }
    let tree = rustix::fs::open(&usr, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("cannot open {}", usr.display()))?;
    carried.attach(tree.as_fd())?;
    unlock_flag(host, false)?;
    host.usr_now()
}

/// Removes the layers of every deployment that no mount uses — those of earlier
/// boots and those switched away from — except those `held` says a process still
/// looks into (through a lazily detached overlay).
pub fn remove_stale_layers(
    sysroot: &Path,
    deployments: &[Deployment],
    held: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let in_use: Vec<String> = crate::host::mounts::mounts()?.iter().filter_map(livefs_layer).collect();
    for d in deployments {
        let rel = d.layers_dir();
        let dir = sysroot.join(&rel);
        if !dir.exists() {
            continue;
        }
        let writable = crate::dirfd::open_dir(writable_sysroot(sysroot)?.as_fd(), &rel)
            .with_context(|| format!("cannot open {}", dir.display()))?;
        for name in crate::dirfd::list_prefixed(writable.as_fd(), LAYER_PREFIX)? {
            if !in_use.contains(&name) && !held(&name) {
                crate::dirfd::remove(writable.as_fd(), &name)
                    .with_context(|| format!("cannot remove the stale layer {}/{name}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// Bytes a layer holds: written (copies, directories, whiteouts: allocated
/// blocks) and linked (files that are repository objects' inodes), and the free
/// space of its filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    let parent_fd = crate::dirfd::open_dir_path(parent)?;
    let name = std::ffi::CString::new(name.as_encoded_bytes()).context("a layer name with a NUL byte")?;
    // Walked dirfd-relative with bounded descriptors: a layer may hold paths
    // longer than PATH_MAX and deeper than the open-file limit.
    crate::dirfd::walk(parent_fd.as_fd(), &name, &mut |v| {
        match v {
            crate::dirfd::Visit::Entry { stat, .. } if stat.st_nlink > 1 => linked += stat.st_size as u64,
            crate::dirfd::Visit::Entry { stat, .. } | crate::dirfd::Visit::Enter { stat, .. } => {
                written += stat.st_blocks as u64 * 512
            }
            crate::dirfd::Visit::Leave { .. } => {}
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
    crate::host::mounts::writable_clone(&root.join("usr"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usr_is_classified_from_its_top_mount_and_the_origin() {
        let line = |opts: &str, source: &str, fstype: &str, sopts: &str| {
            MountInfo::parse(&format!("90 60 0:50 / /usr {opts} shared:40 - {fstype} {source} {sopts}")).unwrap()
        };
        let ours = line("ro,relatime", "livefs:usr.0123456789ab.17", "overlay", "ro,lowerdir=/proc/self/fd/4");
        let old_unlock =
            line("rw,relatime", "overlay", "overlay", "rw,lowerdir=usr,upperdir=/var/tmp/ostree-unlock-ovl.AB12/upper");
        let new_unlock = line(
            "ro,relatime",
            "overlay",
            "overlay",
            "rw,upperdir=/sysroot/ostree/deploy/os/backing/abc.0/usr-transient/upper",
        );
        let hotfix =
            line("rw", "overlay", "overlay", "rw,upperdir=/sysroot/ostree/deploy/os/deploy/abc.0/.usr-ovl-upper");
        let foreign = line("rw", "overlay", "overlay", "rw,upperdir=/srv/mine");
        let named_like_ours = line("ro", "livefs:usr.x/../y", "overlay", "ro");
        let bind = line("ro", "/dev/vda3", "ext4", "rw");
        let composefs_origin = "[origin]\nrefspec=os:stable\n";
        let hotfix_origin = "[origin]\nrefspec=os:stable\nunlocked=hotfix\n";
        let cases: &[(&str, Option<&MountInfo>, UsrState)] = &[
            (composefs_origin, None, UsrState::Locked),
            (composefs_origin, Some(&bind), UsrState::Locked),
            (composefs_origin, Some(&ours), UsrState::Livefs { layer: "usr.0123456789ab.17".into() }),
            (
                composefs_origin,
                Some(&old_unlock),
                UsrState::OstreeTransient {
                    upper: Some("/var/tmp/ostree-unlock-ovl.AB12/upper".into()),
                    read_only: false,
                },
            ),
            (
                composefs_origin,
                Some(&new_unlock),
                UsrState::OstreeTransient {
                    upper: Some("/sysroot/ostree/deploy/os/backing/abc.0/usr-transient/upper".into()),
                    read_only: true,
                },
            ),
            (composefs_origin, Some(&hotfix), UsrState::Hotfix),
            // The origin says hotfix even when nothing is mounted (yet).
            (hotfix_origin, None, UsrState::Hotfix),
            (
                composefs_origin,
                Some(&foreign),
                UsrState::Other { description: "overlay with upperdir Some(\"/srv/mine\")".into() },
            ),
            (
                composefs_origin,
                Some(&named_like_ours),
                UsrState::Other { description: "overlay with upperdir None".into() },
            ),
        ];
        for (origin, top, want) in cases {
            assert_eq!(UsrState::classify(origin, *top), *want, "{:?}", top.map(|m| &m.source));
        }
    }
}
