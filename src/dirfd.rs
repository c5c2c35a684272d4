//! Filesystem helpers relative to directory fds, used by every layer that
//! writes: nothing here follows a symlink it did not get from the caller.
//! Directories are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`,
//! files with `O_NOFOLLOW`; removal and walks hold a bounded number of
//! descriptors whatever the depth. Every mutation is reported to
//! [`crate::fault`].

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{bail, Context};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

/// Opens the directory at `rel` (relative, `""` for `dir` itself) beneath `dir`,
/// refusing any symlink on the way (`ELOOP`) and any escape from `dir`. A path
/// longer than the kernel takes at once (`PATH_MAX`) is opened in steps, each
/// beneath the last, holding two descriptors at most.
pub fn open_dir(dir: BorrowedFd<'_>, rel: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut fd: Option<OwnedFd> = None;
    for chunk in path_chunks(rel, PATH_STEP) {
        let base = fd.as_ref().map_or(dir, |f| f.as_fd());
        fd = Some(openat2(base, if chunk.is_empty() { "." } else { chunk }, flags, resolve)?);
    }
    Ok(fd.expect("at least one chunk"))
}

/// The longest relative path [`open_dir`] passes to the kernel at once (under
/// `PATH_MAX`, 4096 with its NUL).
const PATH_STEP: usize = 3072;

/// Splits a relative path at `/`s into pieces of at most `max` bytes (a single
/// longer name is a piece of its own; the kernel refuses it); `""` is one piece.
fn path_chunks(rel: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = rel.trim_matches('/');
    while rest.len() > max {
        let cut = rest[..=max].rfind('/').or_else(|| rest.find('/')).unwrap_or(rest.len());
        out.push(&rest[..cut]);
        rest = rest[cut..].trim_start_matches('/');
    }
    out.push(rest);
    out
}

/// `openat2(2)`, retried when it answers `EAGAIN`: with `RESOLVE_BENEATH` or
/// `RESOLVE_IN_ROOT` the kernel gives up when a rename or mount anywhere on the
/// system raced with the lookup, and asks the caller to try again.
pub fn openat2(dir: BorrowedFd<'_>, rel: &str, flags: OFlags, resolve: ResolveFlags) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, rel, flags, Mode::empty(), resolve) {
            Err(rustix::io::Errno::AGAIN) if tries < 64 => tries += 1,
            r => return r,
        }
    }
}

/// Opens a directory given by a path the caller chose (a target directory, ROOT/etc):
/// unlike [`open_dir`], symlinks in it are the caller's to follow.
pub fn open_dir_path(path: &std::path::Path) -> anyhow::Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("cannot open directory {}", path.display()))
}

/// Splits a tree path (`/a/b/c`, `/` for the root) into its parent relative to the
/// tree's root (`a/b`) and its final name (`c`).
pub fn split_path(path: &str) -> (&str, &str) {
    let p = path.trim_start_matches('/');
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// What is at a name in a directory, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Absent,
    File,
    Symlink,
    Dir,
    /// A device, socket or fifo: nothing OSTree can describe.
    Other,
}

pub fn probe(dir: BorrowedFd<'_>, name: &str) -> anyhow::Result<(Entry, Option<rustix::fs::Stat>)> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let e = match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Entry::File,
                FileType::Symlink => Entry::Symlink,
                FileType::Directory => Entry::Dir,
                _ => Entry::Other,
            };
            Ok((e, Some(st)))
        }
        Err(Errno::NOENT) => Ok((Entry::Absent, None)),
        Err(e) => Err(e).with_context(|| format!("cannot stat {name}")),
    }
}

/// Reads a whole file of `dir` with plain `read(2)` calls, not following a
/// symlink (std's `read_to_end` on a `File` adds an `fstat` and an `lseek` per
/// file: two thirds more syscalls when a diff reads thousands of small objects).
///
/// A read that fills less than the buffer ends it: a regular file returns short
/// only at its end, which saves the read that would return 0 (half the reads of
/// a diff). Not for pipes or special files.
pub fn read(dir: BorrowedFd<'_>, rel: &str) -> std::io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(dir, rel, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let room = buf.capacity() - buf.len();
        match rustix::io::read(&fd, rustix::buffer::spare_capacity(&mut buf)) {
            Ok(0) => return Ok(buf),
            Ok(n) if n < room => return Ok(buf),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads a whole file at `rel` beneath `dir`, following symlinks that stay
/// beneath it (a composefs repository's `images/HEX` → `../objects/XX/REST`),
/// never one that leaves it.
pub fn read_following(dir: BorrowedFd<'_>, rel: &str) -> std::io::Result<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = openat2(dir, rel, flags, ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS)?;
    // Sized once (an image is megabytes): no regrowth, no copies.
    let size = rustix::fs::fstat(&fd).map(|st| st.st_size as usize).unwrap_or(0);
    let mut out = Vec::with_capacity(size + 1);
    std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut out)?;
    Ok(out)
}

/// A file of `dir`, not following a symlink; `None` when it does not exist.
pub fn read_optional(dir: BorrowedFd<'_>, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    match read(dir, name) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replaces `name` in `dir` with `bytes` so that a crash leaves the old or the
/// new content, never a mix: a temporary file beside it, fsync, rename, fsync of
/// the directory, never following a symlink. Every record livefs keeps in `/run`
/// is written this way, readable by root only.
pub fn write_atomic(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_mode(dir, name, bytes, 0o600)
}

/// [`write_atomic`] of a file with permissions `mode` (whatever the umask).
pub fn write_atomic_mode(dir: BorrowedFd<'_>, name: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = format!("{name}.tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(mode),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()?;
    rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
    rustix::fs::fsync(dir)?;
    // A crash point of its own: the crash sweeps kill livefs after record writes too.
    crate::fault::mutation();
    Ok(())
}

/// Opens `rel` under `dir`, creating missing directories (mode `mode`), never
/// following symlinks.
pub fn make_dirs(dir: BorrowedFd<'_>, rel: &str, mode: u32) -> anyhow::Result<OwnedFd> {
    let mut fd = rustix::io::dup(dir)?;
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        match rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(mode)) {
            Ok(()) => crate::fault::mutation(),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {c}")),
        }
        fd = open_dir(fd.as_fd(), c).with_context(|| format!("cannot open {c}"))?;
    }
    Ok(fd)
}

/// Moves the entry `tmp` of `dir` to `name` atomically: a rename, or, when a
/// directory is involved on either side, an exchange (`RENAME_EXCHANGE`) and the
/// removal of what was there.
pub fn swap_into(dir: BorrowedFd<'_>, tmp: &str, name: &str) -> anyhow::Result<()> {
    match rustix::fs::renameat(dir, tmp, dir, name) {
        Ok(()) => {
            crate::fault::mutation();
            Ok(())
        }
        Err(Errno::ISDIR | Errno::NOTDIR | Errno::NOTEMPTY | Errno::EXIST) => {
            rustix::fs::renameat_with(dir, tmp, dir, name, RenameFlags::EXCHANGE).context("cannot swap entries")?;
            crate::fault::mutation();
            remove(dir, tmp)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` from `dir`, recursively for a directory, never following
/// symlinks, with a bounded number of open descriptors whatever the depth.
pub fn remove(dir: BorrowedFd<'_>, name: &str) -> anyhow::Result<()> {
    match probe(dir, name)?.0 {
        Entry::Absent => return Ok(()),
        Entry::Dir => {
            let name = std::ffi::CString::new(name).context("a name with a NUL byte")?;
            walk(dir, &name, &mut |v| {
                let (parent, name, flags) = match v {
                    Visit::Entry { dir, name, .. } => (dir, name, AtFlags::empty()),
                    Visit::Leave { dir, name } => (dir, name, AtFlags::REMOVEDIR),
                    Visit::Enter { .. } => return Ok(()),
                };
                rustix::fs::unlinkat(parent, name, flags)
                    .with_context(|| format!("cannot remove {}", name.to_string_lossy()))?;
                crate::fault::mutation();
                Ok(())
            })
            .with_context(|| format!("in {}", name.to_string_lossy()))?;
            return Ok(());
        }
        _ => rustix::fs::unlinkat(dir, name, AtFlags::empty()).with_context(|| format!("cannot remove {name}"))?,
    }
    crate::fault::mutation();
    Ok(())
}

/// What [`walk`] visits.
pub enum Visit<'a> {
    /// An entry that is not a directory, in its directory `dir`.
    Entry { dir: BorrowedFd<'a>, name: &'a CStr, stat: &'a rustix::fs::Stat },
    /// A directory, before its entries (`dir` is its parent).
    Enter { dir: BorrowedFd<'a>, name: &'a CStr, stat: &'a rustix::fs::Stat },
    /// A directory, after its entries (`dir` is its parent).
    Leave { dir: BorrowedFd<'a>, name: &'a CStr },
}

/// One directory being walked: its remaining entries and identity.
struct Frame {
    name: std::ffi::CString,
    names: Vec<std::ffi::CString>,
    next: usize,
    id: (u64, u64),
}

/// Walks the directory `name` in `dir` depth-first, never following symlinks,
/// holding a bounded number of descriptors whatever its depth: a directory's
/// names are read before it is entered, and it is left through `..`, checked
/// (device and inode) to be the directory it was entered from. Entries that
/// vanish meanwhile are passed over.
pub fn walk(
    dir: BorrowedFd<'_>,
    name: &CStr,
    visit: &mut dyn FnMut(Visit<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    visit(Visit::Enter { dir, name, stat: &st })?;
    let frame = |fd: &OwnedFd, name: &CStr| -> anyhow::Result<Frame> {
        let st = rustix::fs::fstat(fd)?;
        let mut names = Vec::new();
        for e in rustix::fs::Dir::read_from(fd).context("cannot read directory")? {
            let e = e.context("cannot read directory")?;
            if e.file_name() != c"." && e.file_name() != c".." {
                names.push(e.file_name().to_owned());
            }
        }
        Ok(Frame { name: name.to_owned(), names, next: 0, id: (st.st_dev, st.st_ino) })
    };
    let mut cur = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    if rustix::fs::fstat(&cur).map(|s| (s.st_dev, s.st_ino))? != (st.st_dev, st.st_ino) {
        bail!("{} changed while it was walked", name.to_string_lossy());
    }
    let mut stack = vec![frame(&cur, name)?];
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.names.get(top.next).cloned() {
            top.next += 1;
            let st = match rustix::fs::statat(&cur, &child, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot stat {}", child.to_string_lossy())),
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                visit(Visit::Entry { dir: cur.as_fd(), name: &child, stat: &st })?;
                continue;
            }
            visit(Visit::Enter { dir: cur.as_fd(), name: &child, stat: &st })?;
            let fd = rustix::fs::openat(&cur, &child, flags, Mode::empty())
                .with_context(|| format!("cannot open {}", child.to_string_lossy()))?;
            let f = frame(&fd, &child)?;
            if f.id != (st.st_dev, st.st_ino) {
                bail!("{} changed while it was walked", child.to_string_lossy());
            }
            stack.push(f);
            cur = fd;
            continue;
        }
        let done = stack.pop().expect("a frame");
        let Some(parent) = stack.last() else {
            visit(Visit::Leave { dir, name: &done.name })?;
            break;
        };
        let up = rustix::fs::openat(&cur, "..", flags, Mode::empty())?;
        if rustix::fs::fstat(&up).map(|s| (s.st_dev, s.st_ino))? != parent.id {
            bail!("{} moved while it was walked", done.name.to_string_lossy());
        }
        cur = up;
        visit(Visit::Leave { dir: cur.as_fd(), name: &done.name })?;
    }
    Ok(())
}

/// The names in a directory, without `.` and `..`, sorted.
pub fn list(dir: BorrowedFd<'_>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir).context("cannot read directory")? {
        let e = e.context("cannot read directory")?;
        let name = e.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        out.push(cstr_name(name)?);
    }
    out.sort();
    Ok(out)
}

/// The names in a directory that start with `prefix`, sorted; other names —
/// anyone else's, non-UTF-8 ones included — are passed over, never an error.
pub fn list_prefixed(dir: BorrowedFd<'_>, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir).context("cannot read directory")? {
        let e = e.context("cannot read directory")?;
        if let Ok(name) = e.file_name().to_str() {
            if name.starts_with(prefix) {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn cstr_name(name: &CStr) -> anyhow::Result<String> {
    name.to_str().map(str::to_string).with_context(|| format!("non-UTF-8 name {name:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_paths_are_opened_in_steps_under_path_max() {
        let cases: &[(&str, usize, &[&str])] = &[
            ("", 8, &[""]),
            ("a/b", 8, &["a/b"]),
            ("aaa/bbb/ccc", 8, &["aaa/bbb", "ccc"]),
            ("aaa/bbb/ccc/ddd", 7, &["aaa/bbb", "ccc/ddd"]),
            // A name longer than a step is a step of its own (the kernel judges it).
            ("abcdefghij/k", 4, &["abcdefghij", "k"]),
            ("/a/b/", 8, &["a/b"]),
        ];
        for (rel, max, want) in cases {
            assert_eq!(super::path_chunks(rel, *max), *want, "{rel} by {max}");
        }
    }
}
