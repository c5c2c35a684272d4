//! Mount helpers shared by the layers that meet the running system: reading
//! `/proc/self/mountinfo`, and private writable clones of read-only mounts (the
//! `/usr` overlay, a sysroot mounted read-only as Fedora CoreOS does).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rustix::fs::{Mode, OFlags, CWD};
use rustix::mount::{MountAttrFlags, OpenTreeFlags};

/// One line of `/proc/self/mountinfo`.
pub struct MountInfo {
    /// The mount's ID (what `statx(2)` reports as `stx_mnt_id`).
    pub id: u64,
    pub mount_point: PathBuf,
    /// The filesystem's device (`st_dev` of its files).
    pub dev: u64,
    /// Per-mount options (`ro`, `nosuid`, …).
    pub options: String,
    pub fstype: String,
    /// The mount source (`/dev/vda`, `overlay`, or a name the mounter chose).
    pub source: String,
    /// Per-filesystem options (`upperdir=…`, …).
    pub super_options: String,
}

impl MountInfo {
    pub fn parse(line: &str) -> Option<MountInfo> {
        let (head, tail) = line.split_once(" - ")?;
        let head: Vec<&str> = head.split(' ').collect();
        let tail: Vec<&str> = tail.split(' ').collect();
        let (major, minor) = head.get(2)?.split_once(':')?;
        Some(MountInfo {
            id: head.first()?.parse().ok()?,
            dev: rustix::fs::makedev(major.parse().ok()?, minor.parse().ok()?),
            mount_point: PathBuf::from(unescape(head.get(4)?)),
            options: head.get(5)?.to_string(),
            fstype: tail.first()?.to_string(),
            source: unescape(tail.get(1)?),
            super_options: unescape(tail.get(2)?),
        })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount table as last read, until livefs itself changes it ([`changed`]).
static TABLE: Mutex<Option<Arc<[MountInfo]>>> = Mutex::new(None);

/// The mounts of this process's namespace, bottom to top: read once per
/// command, and again only after livefs mounted or unmounted something.
pub fn mounts() -> anyhow::Result<Arc<[MountInfo]>> {
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(t) = &*table {
        return Ok(t.clone());
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let t: Arc<[MountInfo]> = info.lines().filter_map(MountInfo::parse).collect();
    *table = Some(t.clone());
    Ok(t)
}

/// Says livefs changed the mount table: the next [`mounts`] reads it again.
pub fn changed() {
    *TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
}

/// A private, writable clone of the mount holding `path` (rooted at `path`), when
/// that mount is read-only but its filesystem is not — `/usr` under livefs, or a
/// sysroot mounted read-only as Fedora CoreOS does. Dropping the fd detaches it.
pub fn writable_clone(path: &Path) -> anyhow::Result<OwnedFd> {
    let clone = rustix::mount::open_tree(CWD, path, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC)
        .with_context(|| format!("cannot clone the mount of {}", path.display()))?;
    clear_read_only(&clone).with_context(|| format!("cannot make a private writable view of {}", path.display()))?;
    let fd = rustix::fs::openat(&clone, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(fd)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {attr_clr: MOUNT_ATTR_RDONLY})`, which
/// rustix does not wrap.
fn clear_read_only(mount: &OwnedFd) -> anyhow::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: MountAttrFlags::MOUNT_ATTR_RDONLY.bits().into(),
        propagation: 0,
        userns_fd: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: the path is a valid NUL-terminated string, `attr` outlives the call
    // and its size is passed; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
