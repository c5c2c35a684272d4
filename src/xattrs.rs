//! Reading extended attributes, sorted by name as OSTree stores them.
//!
//! The list and each value are read with a size query then a read, retried when
//! the attribute grew in between (`ERANGE`).

use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::io::Errno;

/// Extended attributes as (name, value) pairs, sorted by name as OSTree stores them.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads a variable-size attribute blob: `query` gives its size, `read` fills a buffer.
fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    loop {
        let n = query()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        match read(&mut buf) {
            Ok(m) => {
                buf.truncate(m);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn collect(list: Vec<u8>, get: impl Fn(&CString) -> rustix::io::Result<Vec<u8>>) -> anyhow::Result<Xattrs> {
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name)?;
        match get(&cname) {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed between the list and the read.
            Err(Errno::NODATA) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot read xattr {}", cname.to_string_lossy())))
            }
        }
    }
    out.sort();
    Ok(out)
}

/// All xattrs of an open file or directory.
pub fn of_fd(fd: BorrowedFd<'_>) -> anyhow::Result<Xattrs> {
    let list = read_sized(|| rustix::fs::flistxattr_query(fd), |b| rustix::fs::flistxattr(fd, b))?;
    collect(list, |name| read_sized(|| rustix::fs::fgetxattr_query(fd, name), |b| rustix::fs::fgetxattr(fd, name, b)))
}

/// All xattrs of a path, not following a final symlink.
pub fn of_path(path: &Path) -> anyhow::Result<Xattrs> {
    let list = read_sized(|| rustix::fs::llistxattr_query(path), |b| rustix::fs::llistxattr(path, b))?;
    collect(list, |name| {
        read_sized(|| rustix::fs::lgetxattr_query(path, name), |b| rustix::fs::lgetxattr(path, name, b))
    })
}

/// One xattr of an open file.
pub fn get_fd(fd: BorrowedFd<'_>, name: &str) -> rustix::io::Result<Vec<u8>> {
    read_sized(|| rustix::fs::fgetxattr_query(fd, name), |b| rustix::fs::fgetxattr(fd, name, b))
}
