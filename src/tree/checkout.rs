//! Materialising repository objects in a live tree, and checking what a live tree
//! holds against the repository.
//!
//! Everything here is relative to a directory fd and never follows a symlink inside
//! the tree: directories are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, entries are created with `O_EXCL | O_NOFOLLOW`, and
//! symlinks are only ever inspected with `lstat`-like calls. Every mutation is
//! reported to [`crate::fault`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps, XattrFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::dirfd::{open_dir, probe, Entry};
use crate::fault;
use crate::repo::objects::content_checksum_header;
use crate::repo::{Checksum, Content, DirMeta, FileKind, FileMeta, Repo, Xattrs};
use crate::tree::diff::NodeKind;

/// Names livefs gives its temporary entries. An entry with this prefix in a
/// directory livefs updates is a leftover of an interrupted run and is removed.
pub const TMP_PREFIX: &str = ".livefs-tmp-";

/// Present in a tree's root while livefs writes to it: found at the start of a
/// run, it says an earlier run died, and its temporary entries must be removed.
pub const IN_PROGRESS: &str = ".livefs-tmp-inprogress";

/// The temporary name used while `name` is being replaced: deterministic, so an
/// interrupted run's leftover is found and replaced by the next run.
pub fn tmp_name(name: &str) -> String {
    let h = Sha256::digest(name.as_bytes());
    let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{TMP_PREFIX}{hex}")
}

const ZERO_TIME: Timestamps = Timestamps {
    last_access: rustix::fs::Timespec { tv_sec: 0, tv_nsec: 0 },
    last_modification: rustix::fs::Timespec { tv_sec: 0, tv_nsec: 0 },
};

/// The path through which a symlink's own xattrs are reached: the directory fd's
/// magic link plus the final name, which `l*xattr` do not follow.
fn proc_path(dir: BorrowedFd<'_>, name: &str) -> String {
    format!("/proc/self/fd/{}/{name}", dir.as_raw_fd())
}

/// Sets each of `xattrs` on an open file or directory.
pub fn set_xattrs_fd(fd: BorrowedFd<'_>, xattrs: &Xattrs) -> anyhow::Result<()> {
    for (k, v) in xattrs {
        let name = std::ffi::CString::new(k.as_slice())?;
        rustix::fs::fsetxattr(fd, name.as_c_str(), v, XattrFlags::empty())
            .with_context(|| format!("cannot set xattr {}", name.to_string_lossy()))?;
    }
    Ok(())
}

/// Writes the file object `checksum` as the new entry `name` in `dir` (which must
/// not exist), with its content, owner, mode, xattrs and an mtime of 0, as an
/// OSTree checkout has it. The content is checked against the checksum while it is
/// written; on a mismatch the entry is removed and an error returned. Returns the
/// bytes of content written.
pub fn write_file(repo: &Repo, dir: BorrowedFd<'_>, name: &str, checksum: Checksum) -> anyhow::Result<u64> {
    let (meta, content) = repo.open_file(checksum).with_context(|| format!("cannot read file object {checksum}"))?;
    let mut hasher = Sha256::new();
    hasher.update(content_checksum_header(&meta));
    if let FileKind::Symlink { target } = &meta.kind {
        if repo.names_content() && Checksum::sha256(hasher.finalize().into()) != checksum {
            bail!("file object {checksum} does not match its checksum");
        }
        rustix::fs::symlinkat(target.as_str(), dir, name).with_context(|| format!("cannot create symlink {name}"))?;
        fault::mutation();
        let result = (|| -> anyhow::Result<()> {
            rustix::fs::chownat(dir, name, Some(uid(meta.uid)), Some(gid(meta.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
            for (k, v) in &meta.xattrs {
                let xname = std::ffi::CString::new(k.as_slice())?;
                rustix::fs::lsetxattr(proc_path(dir, name), xname.as_c_str(), v, XattrFlags::empty())?;
            }
            rustix::fs::utimensat(dir, name, &ZERO_TIME, AtFlags::SYMLINK_NOFOLLOW)?;
            Ok(())
        })();
        result.with_context(|| format!("cannot set the metadata of symlink {name}"))?;
        fault::mutation();
        return Ok(0);
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("cannot create {name}"))?;
    fault::mutation();
    let mut out = File::from(fd);
    let written = match copy_content(content, &mut out, &mut hasher, meta.size()) {
        Ok(n) => n,
        Err(e) => {
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
            return Err(e.context(format!("cannot write {name}")));
        }
    };
    fault::mutation();
    let named = !repo.names_content() || Checksum::sha256(hasher.finalize().into()) == checksum;
    if !named || written != meta.size() {
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        bail!("file object {checksum} does not match its checksum (while writing {name})");
    }
    set_file_meta(out.as_fd(), &meta).with_context(|| format!("cannot set the metadata of {name}"))?;
    fault::mutation();
    Ok(written)
}

/// Owner first (it clears set-id bits and capabilities), then mode, xattrs, time.
fn set_file_meta(fd: BorrowedFd<'_>, meta: &FileMeta) -> anyhow::Result<()> {
    rustix::fs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
    set_xattrs_fd(fd, &meta.xattrs)?;
    rustix::fs::futimens(fd, &ZERO_TIME)?;
    Ok(())
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

const CHUNK: usize = 256 << 10;

/// A copy buffer no larger than the file needs (zeroing 256 KiB for each small
/// file costs more than copying it).
fn buffer(size: u64) -> Vec<u8> {
    vec![0u8; (size as usize).clamp(4096, CHUNK)]
}

/// Streams a file object's content into `out`, hashing what ends up in `out`.
fn copy_content(content: Content, out: &mut File, hasher: &mut Sha256, size: u64) -> anyhow::Result<u64> {
    let mut buf = buffer(size);
    match content {
        Content::Raw(src) => {
            // In-kernel copy (a reflink where the filesystem shares extents), then
            // hash what was written: the check covers the bytes that will be renamed
            // into place.
            // Once the kernel said it cannot copy between these filesystems, it
            // will not for the next file either.
            static NO_COPY_RANGE: AtomicBool = AtomicBool::new(false);
            if NO_COPY_RANGE.load(Ordering::Relaxed) {
                return stream(&mut File::from(OwnedFd::from(src)), out, hasher, &mut buf);
            }
            let mut copied = 0u64;
            loop {
                let want = (size - copied).min(1 << 30) as usize;
                if want == 0 {
                    break;
                }
                match rustix::fs::copy_file_range(&src, None, &*out, None, want) {
                    Ok(0) => break,
                    Ok(n) => copied += n as u64,
                    Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if copied == 0 => {
                        NO_COPY_RANGE.store(true, Ordering::Relaxed);
                        return stream(&mut File::from(OwnedFd::from(src)), out, hasher, &mut buf);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            out.seek(SeekFrom::Start(0))?;
            let mut total = 0u64;
            loop {
                let n = out.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Ok(total)
        }
        Content::Deflate(mut src) => stream(&mut *src, out, hasher, &mut buf),
        Content::Inline(mut src) => stream(&mut src, out, hasher, &mut buf),
        Content::Symlink => Ok(0),
    }
}

fn stream(src: &mut impl Read, out: &mut File, hasher: &mut Sha256, buf: &mut [u8]) -> anyhow::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match src.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("cannot read object content")),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok(total)
}

/// Creates the directory `name` in `dir` with the dirmeta `meta`, or brings an
/// existing directory's metadata to it. Returns the directory's fd.
pub fn make_dir(repo: &Repo, dir: BorrowedFd<'_>, name: &str, meta: Checksum) -> anyhow::Result<OwnedFd> {
    let m = repo.read_dirmeta(meta)?;
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => fault::mutation(),
        Err(Errno::EXIST) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create directory {name}")),
    }
    let fd = open_dir(dir, name).with_context(|| format!("cannot open directory {name}"))?;
    set_dir_meta(fd.as_fd(), &m, &[]).with_context(|| format!("cannot set the metadata of {name}"))?;
    Ok(fd)
}

/// Sets a directory's owner, mode and xattrs to `meta`, removing the xattrs named
/// in `drop` (those the old version had and the new one has not).
pub fn set_dir_meta(fd: BorrowedFd<'_>, meta: &DirMeta, drop: &[Vec<u8>]) -> anyhow::Result<()> {
    rustix::fs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
    for k in drop {
        let name = std::ffi::CString::new(k.as_slice())?;
        match rustix::fs::fremovexattr(fd, name.as_c_str()) {
            Ok(()) | Err(Errno::NODATA) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove xattr {}", name.to_string_lossy())),
        }
    }
    set_xattrs_fd(fd, &meta.xattrs)?;
    fault::mutation();
    Ok(())
}

/// Changes a directory from the metadata `from` to `to`: owner, mode, and xattrs
/// (removing those `from` has and `to` has not; others on disk are left alone).
pub fn change_dir_meta(fd: BorrowedFd<'_>, from: &DirMeta, to: &DirMeta) -> anyhow::Result<()> {
    let drop: Vec<Vec<u8>> =
        from.xattrs.iter().filter(|(k, _)| !to.xattrs.iter().any(|(n, _)| n == k)).map(|(k, _)| k.clone()).collect();
    set_dir_meta(fd, to, &drop)
}

/// Writes a whole tree's content into the (empty) directory `dir`.
pub fn populate(repo: &Repo, dir: BorrowedFd<'_>, tree: Checksum) -> anyhow::Result<u64> {
    let t = repo.read_dirtree(tree)?;
    let mut bytes = 0;
    for f in t.files() {
        bytes += write_file(repo, dir, f.name, f.checksum)?;
    }
    for d in t.dirs() {
        let fd = make_dir(repo, dir, d.name, d.meta)?;
        bytes += populate(repo, fd.as_fd(), d.tree).with_context(|| format!("in {}", d.name))?;
    }
    Ok(bytes)
}

/// Whether comparisons with the repository include extended attributes.
///
/// `/usr` is compared exactly. `/etc` is compared as ostree compares it when it
/// finds the admin's changes (`OSTREE_DIFF_FLAGS_IGNORE_XATTRS`): on SELinux hosts
/// the labels of `usr/etc` and of the real `/etc` differ, so a label (or any
/// xattr-only) difference is not a local edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrCheck {
    Compare,
    Ignore,
}

/// Whether the directory open as `fd` has the owner, mode (and, with
/// [`XattrCheck::Compare`], xattrs) of `meta`.
pub fn dir_meta_matches(fd: BorrowedFd<'_>, meta: &DirMeta, xattrs: XattrCheck) -> anyhow::Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(st.st_uid == meta.uid
        && st.st_gid == meta.gid
        && st.st_mode == meta.mode
        && (xattrs == XattrCheck::Ignore || crate::xattrs::of_fd(fd)? == meta.xattrs))
}

/// Whether `name` in `dir` is exactly `node` of the repository: type, owner, mode,
/// xattrs, symlink target and content; for a directory, recursively, with no extra
/// entries.
pub fn matches(
    repo: &Repo,
    dir: BorrowedFd<'_>,
    name: &str,
    node: &NodeKind,
    xattrs: XattrCheck,
) -> anyhow::Result<bool> {
    let compare = xattrs == XattrCheck::Compare;
    let (entry, st) = probe(dir, name)?;
    let Some(st) = st else { return Ok(false) };
    match node {
        NodeKind::File(c) => {
            let meta = repo.read_file_meta(*c)?;
            if st.st_uid != meta.uid || st.st_gid != meta.gid || st.st_mode != meta.mode {
                return Ok(false);
            }
            match (&meta.kind, entry) {
                (FileKind::Symlink { target }, Entry::Symlink) => {
                    let t = rustix::fs::readlinkat(dir, name, Vec::new())?;
                    Ok(t.as_bytes() == target.as_bytes() && (!compare || symlink_xattrs(dir, name)? == meta.xattrs))
                }
                (FileKind::Regular { size }, Entry::File) if st.st_size as u64 == *size => {
                    let fd = rustix::fs::openat(
                        dir,
                        name,
                        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )?;
                    if compare && crate::xattrs::of_fd(fd.as_fd())? != meta.xattrs {
                        return Ok(false);
                    }
                    same_content(repo, *c, &meta, File::from(fd))
                }
                _ => Ok(false),
            }
        }
        NodeKind::Dir { tree, meta } => {
            if entry != Entry::Dir {
                return Ok(false);
            }
            let fd = open_dir(dir, name)?;
            if !dir_meta_matches(fd.as_fd(), &repo.read_dirmeta(*meta)?, xattrs)? {
                return Ok(false);
            }
            tree_matches(repo, fd.as_fd(), *tree, xattrs)
        }
    }
}

/// Whether `live` holds the content of file object `c` (of metadata `meta`):
/// its name is the SHA-256 of the content (OSTree), or, in a composefs image,
/// the content is compared with the image's bytes or its object.
fn same_content(repo: &Repo, c: Checksum, meta: &FileMeta, mut live: File) -> anyhow::Result<bool> {
    let mut buf = buffer(meta.size());
    if !repo.names_content() {
        let (_, content) = repo.open_file(c)?;
        let mut theirs: Box<dyn Read> = match content {
            Content::Raw(f) => Box::new(f),
            Content::Inline(b) => Box::new(b),
            Content::Deflate(d) => d,
            Content::Symlink => return Ok(false),
        };
        let mut other = buffer(meta.size());
        loop {
            let n = read_full(&mut live, &mut buf)?;
            let m = read_full(&mut *theirs, &mut other[..buf.len()])?;
            if n != m || buf[..n] != other[..m] {
                return Ok(false);
            }
            if n == 0 {
                return Ok(true);
            }
        }
    }
    let mut h = Sha256::new();
    h.update(content_checksum_header(meta));
    loop {
        let n = live.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Checksum::sha256(h.finalize().into()) == c)
}

/// Reads until `buf` is full or the stream ends; how much was read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether the directory `fd` holds exactly the entries of `tree`, recursively.
pub fn tree_matches(repo: &Repo, fd: BorrowedFd<'_>, tree: Checksum, xattrs: XattrCheck) -> anyhow::Result<bool> {
    let t = repo.read_dirtree(tree)?;
    let mut want: Vec<&str> = t.files().map(|f| f.name).chain(t.dirs().map(|d| d.name)).collect();
    want.sort();
    // A name that is not UTF-8 is in no OSTree tree: the directory differs.
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(fd).context("cannot read directory")? {
        let e = e.context("cannot read directory")?;
        match e.file_name().to_str() {
            Ok("." | "..") => {}
            Ok(n) => names.push(n.to_string()),
            Err(_) => return Ok(false),
        }
    }
    names.sort();
    if names != want {
        return Ok(false);
    }
    for f in t.files() {
        if !matches(repo, fd, f.name, &NodeKind::File(f.checksum), xattrs)? {
            return Ok(false);
        }
    }
    for d in t.dirs() {
        if !matches(repo, fd, d.name, &NodeKind::Dir { tree: d.tree, meta: d.meta }, xattrs)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn symlink_xattrs(dir: BorrowedFd<'_>, name: &str) -> anyhow::Result<Xattrs> {
    crate::xattrs::of_path(std::path::Path::new(&proc_path(dir, name)))
}
