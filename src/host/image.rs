//! bootc's native composefs backend: `/usr` switched to a composefs image's
//! `/usr`. There is no layer to build — nothing can stack on the composefs
//! root (overlayfs allows two levels, the root's overlay is one), and an
//! object has no metadata of its own to link — so the target image itself is
//! mounted, fresh: its EROFS file (the metadata of every file) under an
//! overlay with the repository's `objects/` as the data-only lower (their
//! content), `verity=require` where this boot enforces fs-verity, read-only.
//! That is what the initramfs mounts as `/`; livefs mounts the image's `usr`
//! directory alone (the overlay's lower is the EROFS mount's `usr`) and puts
//! it on `/usr` as [`overlay::attach_usr`] puts a layer. Zero bytes are
//! written, and every file comes with its true mode, owner and xattrs.
//!
//! Needs Linux 6.12 (EROFS mounted from a file) and 6.15 (detached mounts as
//! overlay layers); the hosts of this backend run newer ones.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::host::overlay::{self, UsrState, IMAGE_SOURCE_PREFIX};
use crate::host::submounts::Submounts;
use crate::host::Host;
use crate::repo::composefs::Store;
use crate::repo::Checksum;

/// A filesystem context whose kernel messages are kept for the error: the
/// kernel says there why a mount option or a layer was refused.
struct FsContext(OwnedFd);

impl FsContext {
    fn open(fstype: &str) -> anyhow::Result<FsContext> {
        let fd = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)
            .with_context(|| format!("{fstype} is not available in this kernel"))?;
        Ok(FsContext(fd))
    }

    /// The kernel's messages of this context, one line.
    fn messages(&self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = rustix::io::read(&self.0, &mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
        out.join("; ")
    }

    /// Runs a configuration step; a failure carries the kernel's messages.
    fn step(&self, what: &str, r: rustix::io::Result<()>) -> anyhow::Result<()> {
        r.map_err(|e| {
            let said = self.messages();
            let said = if said.is_empty() { String::new() } else { format!(" (the kernel says: {said})") };
            anyhow::anyhow!("{what}: {e}{said}")
        })
    }
}

/// Mounts the `/usr` of image `image` of `store`, detached: `fsverity`
/// says whether the objects' fs-verity digests are required.
pub fn mount_usr(store: &Store, image: Checksum, fsverity: bool) -> anyhow::Result<OwnedFd> {
    let file = store.open_image(image)?;
    let erofs = FsContext::open("erofs")?;
    let what = format!("cannot mount image {image}");
    erofs.step(&what, rustix::mount::fsconfig_set_flag(&erofs.0, "ro"))?;
    // EROFS takes its source by name: the image file, by its descriptor's.
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    erofs.step(&what, rustix::mount::fsconfig_set_string(&erofs.0, "source", source.as_str()))?;
    erofs.step(&what, rustix::mount::fsconfig_create(&erofs.0))?;
    let meta = rustix::mount::fsmount(&erofs.0, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_RDONLY)
        .with_context(|| what.clone())?;
    let usr = rustix::fs::openat(&meta, "usr", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("image {image} has no /usr"))?;
    let objects = store.objects_dir()?;
    let ovl = FsContext::open("overlay")?;
    let set = |key: &str, value: &str| ovl.step(&what, rustix::mount::fsconfig_set_string(&ovl.0, key, value));
    set("source", &format!("{IMAGE_SOURCE_PREFIX}{image}"))?;
    set("metacopy", "on")?;
    set("redirect_dir", "on")?;
    if fsverity {
        set("verity", "require")?;
    }
    ovl.step(&what, rustix::mount::fsconfig_set_fd(&ovl.0, "lowerdir+", &usr))?;
    ovl.step(&what, rustix::mount::fsconfig_set_fd(&ovl.0, "datadir+", &objects))?;
    ovl.step(&what, rustix::mount::fsconfig_set_flag(&ovl.0, "ro"))?;
    ovl.step(&what, rustix::mount::fsconfig_create(&ovl.0))?;
    rustix::mount::fsmount(&ovl.0, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_RDONLY)
        .with_context(|| what)
}

/// Switches `ROOT/usr` to image `image`'s `/usr`, mounted by [`mount_usr`],
/// in one mount operation, carrying the mounts below `/usr` across. Returns
/// the new state of `/usr`.
pub fn switch(host: &Host, mnt: OwnedFd, image: Checksum, carried: &mut Submounts) -> anyhow::Result<UsrState> {
    overlay::attach_usr(host, mnt.as_fd(), carried)?;
    Ok(UsrState::LivefsImage { image })
}
