//! A reader of the EROFS images composefs makes (composefs-rs, bootc's native
//! backend): the superblock, inodes (compact and extended), directories,
//! extended attributes (inline and shared), inline and block data. A file's
//! content is either in the image (small files, symlink targets) or an object
//! of the repository, named by its `trusted.overlay.redirect` xattr and checked
//! by `trusted.overlay.metacopy`'s fs-verity digest — which overlayfs reads; the
//! image itself holds no data of those. Read-only, over the image's bytes, every
//! offset checked: a malformed image is an error naming what is wrong.

use anyhow::{bail, ensure, Context};

/// EROFS's magic, at byte 1024 (after composefs's own header).
const MAGIC: u32 = 0xE0F5_E1E2;
const SUPERBLOCK: usize = 1024;
/// The inode slot size: inode `nid` is at `meta_blkaddr * block + nid * 32`.
const SLOT: usize = 32;

/// Data layouts (bits 1–3 of an inode's format field).
const FLAT_PLAIN: u16 = 0;
const FLAT_INLINE: u16 = 4;
const CHUNK_BASED: u16 = 8;

/// The standard xattr name prefixes, by `name_index`.
const PREFIXES: [&[u8]; 7] =
    [b"", b"user.", b"system.posix_acl_access", b"system.posix_acl_default", b"trusted.", b"lustre.", b"security."];

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

/// An EROFS image, over its bytes.
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    block: usize,
    /// Where inode slots and shared xattrs start.
    meta: usize,
    xattrs: usize,
    root: u64,
}

/// One inode: what the tree needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub nid: u64,
    /// `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// The device number (`u` of a device inode).
    pub rdev: u32,
    layout: u16,
    /// The start of its data blocks (`u`).
    start_block: u32,
    /// Where its xattr section starts, and its length.
    xattrs_at: usize,
    xattrs_len: usize,
    /// Where its inline (tail) data starts.
    inline_at: usize,
}

fn le16(b: &[u8], at: usize) -> anyhow::Result<u16> {
    let s = b.get(at..at + 2).context("out of bounds")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], at: usize) -> anyhow::Result<u32> {
    let s = b.get(at..at + 4).context("out of bounds")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], at: usize) -> anyhow::Result<u64> {
    let s = b.get(at..at + 8).context("out of bounds")?;
    Ok(u64::from_le_bytes(s.try_into()?))
}

impl<'a> Image<'a> {
    /// Reads the superblock of an image.
    pub fn open(bytes: &'a [u8]) -> anyhow::Result<Image<'a>> {
        let sb = bytes.get(SUPERBLOCK..SUPERBLOCK + 128).context("too small for an EROFS superblock")?;
        ensure!(le32(sb, 0)? == MAGIC, "not an EROFS image (no superblock magic at byte 1024)");
        let blkszbits = sb[12];
        ensure!((9..=16).contains(&blkszbits), "block size 2^{blkszbits} is not one EROFS uses");
        let incompat = le32(sb, 80)?;
        // What composefs never writes: compression, devices, fragments, 48-bit blocks, metabox.
        ensure!(incompat & !0x4 == 0, "unsupported EROFS features (feature_incompat {incompat:#x})");
        let block = 1usize << blkszbits;
        let meta = le32(sb, 40)? as usize * block;
        let xattrs = le32(sb, 44)? as usize * block;
        ensure!(meta < bytes.len() && xattrs <= bytes.len(), "metadata outside the image");
        Ok(Image { bytes, block, meta, xattrs, root: le16(sb, 14)? as u64 })
    }

    /// The root directory's inode number.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Inode `nid`.
    pub fn inode(&self, nid: u64) -> anyhow::Result<Inode> {
        self.parse_inode(nid).with_context(|| format!("inode {nid} is malformed"))
    }

    fn parse_inode(&self, nid: u64) -> anyhow::Result<Inode> {
        let at = usize::try_from(nid).ok().and_then(|n| n.checked_mul(SLOT)).and_then(|o| o.checked_add(self.meta));
        let at = at.filter(|a| *a < self.bytes.len()).context("outside the image")?;
        let b = self.bytes;
        let format = le16(b, at)?;
        let extended = format & 1 == 1;
        let layout = format & 0x0e;
        let xattr_icount = le16(b, at + 2)? as usize;
        let mode = le16(b, at + 4)? as u32;
        let (size, u, uid, gid, header) = if extended {
            (le64(b, at + 8)?, le32(b, at + 16)?, le32(b, at + 24)?, le32(b, at + 28)?, 64)
        } else {
            (le32(b, at + 8)? as u64, le32(b, at + 16)?, le16(b, at + 24)? as u32, le16(b, at + 26)? as u32, 32)
        };
        ensure!(matches!(layout, FLAT_PLAIN | FLAT_INLINE | CHUNK_BASED), "data layout {layout} is not supported");
        let xattrs_len = if xattr_icount == 0 { 0 } else { (xattr_icount - 1) * 4 + 12 };
        let xattrs_at = at + header;
        ensure!(xattrs_at + xattrs_len <= b.len(), "its xattrs run past the image");
        Ok(Inode {
            nid,
            mode,
            uid,
            gid,
            size,
            rdev: u,
            layout,
            start_block: u,
            xattrs_at,
            xattrs_len,
            inline_at: xattrs_at + xattrs_len,
        })
    }

    /// The bytes an inode holds in the image: its blocks, then its inline tail
    /// (a directory's entries, a symlink's target, a small file's content).
    /// Nothing for a file whose content is an object (chunk-based).
    pub fn data(&self, inode: &Inode) -> anyhow::Result<Vec<u8>> {
        let size = usize::try_from(inode.size).context("too large")?;
        if inode.layout == CHUNK_BASED || size == 0 {
            return Ok(Vec::new());
        }
        ensure!(size <= self.bytes.len(), "inode {}: size {size} is larger than the image", inode.nid);
        let (in_blocks, tail) = match inode.layout {
            FLAT_INLINE => (size - size % self.block, size % self.block),
            _ => (size, 0),
        };
        let mut out = Vec::with_capacity(size);
        if in_blocks > 0 {
            let start = inode.start_block as usize * self.block;
            let blocks = self.bytes.get(start..start + in_blocks);
            out.extend_from_slice(
                blocks.with_context(|| format!("inode {}: its blocks run past the image", inode.nid))?,
            );
        }
        if tail > 0 {
            let inline = self.bytes.get(inode.inline_at..inode.inline_at + tail);
            out.extend_from_slice(inline.with_context(|| format!("inode {}: its inline data runs past", inode.nid))?);
        }
        Ok(out)
    }

    /// A directory's entries but `.` and `..`: (name, inode number), in the
    /// image's order (sorted by name, as EROFS requires for lookups).
    pub fn entries(&self, dir: &Inode) -> anyhow::Result<Vec<(Vec<u8>, u64)>> {
        ensure!(dir.mode & S_IFMT == S_IFDIR, "inode {} is not a directory", dir.nid);
        let data = self.data(dir)?;
        let mut out = Vec::new();
        for chunk in data.chunks(self.block) {
            dirents(chunk, &mut out).with_context(|| format!("directory inode {} is malformed", dir.nid))?;
        }
        Ok(out)
    }

    /// An inode's extended attributes, full names (with the prefix), as stored:
    /// composefs's own `trusted.overlay.*` included.
    pub fn xattrs(&self, inode: &Inode) -> anyhow::Result<Vec<Xattr>> {
        if inode.xattrs_len == 0 {
            return Ok(Vec::new());
        }
        let section = &self.bytes[inode.xattrs_at..inode.xattrs_at + inode.xattrs_len];
        let shared = *section.get(4).context("a short xattr header")? as usize;
        let mut out = Vec::new();
        for i in 0..shared {
            let id = le32(section, 12 + i * 4)? as usize;
            let at = self.xattrs.checked_add(id * 4).context("shared xattr out of bounds")?;
            out.push(xattr(self.bytes, at).map(|(x, _)| x).context("a shared xattr is malformed")?);
        }
        let mut at = 12 + shared * 4;
        while at < section.len() {
            let (x, next) =
                xattr(section, at).with_context(|| format!("an xattr of inode {} is malformed", inode.nid))?;
            out.push(x);
            at = next;
        }
        Ok(out)
    }
}

/// The entries of one directory block (or inline tail): 12-byte headers, then
/// the names; the first header's name offset says how many headers there are.
fn dirents(block: &[u8], out: &mut Vec<(Vec<u8>, u64)>) -> anyhow::Result<()> {
    let first = le16(block, 8)? as usize;
    ensure!(first >= 12 && first % 12 == 0 && first <= block.len(), "bad first name offset {first}");
    let n = first / 12;
    for i in 0..n {
        let nid = le64(block, i * 12)?;
        let start = le16(block, i * 12 + 8)? as usize;
        let end = if i + 1 < n { le16(block, (i + 1) * 12 + 8)? as usize } else { block.len() };
        let raw = block.get(start..end).context("a name out of bounds")?;
        // The last name is padded with NULs to the block's end.
        let name = if i + 1 == n { &raw[..raw.iter().position(|&c| c == 0).unwrap_or(raw.len())] } else { raw };
        if name != b"." && name != b".." {
            out.push((name.to_vec(), nid));
        }
    }
    Ok(())
}

/// An extended attribute: its full name and its value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// One xattr entry at `at`: (name, value), and where the next one starts.
fn xattr(b: &[u8], at: usize) -> anyhow::Result<(Xattr, usize)> {
    let name_len = *b.get(at).context("out of bounds")? as usize;
    let index = *b.get(at + 1).context("out of bounds")? as usize;
    let value_len = le16(b, at + 2)? as usize;
    let prefix = PREFIXES.get(index).with_context(|| format!("unknown xattr name prefix {index}"))?;
    let suffix = b.get(at + 4..at + 4 + name_len).context("name out of bounds")?;
    let value = b.get(at + 4 + name_len..at + 4 + name_len + value_len).context("value out of bounds")?;
    let name = [*prefix, suffix].concat();
    let next = (at + 4 + name_len + value_len).div_ceil(4) * 4;
    Ok(((name, value.to_vec()), next))
}

/// An OS file's xattrs, as the image carries them for overlayfs: composefs's
/// own `trusted.overlay.*` (the redirect, the metacopy digest) taken out, and
/// the escaped `trusted.overlay.overlay.X` given back its name.
pub fn file_xattrs(raw: &[Xattr]) -> Vec<Xattr> {
    let mut out: Vec<Xattr> = raw
        .iter()
        .filter_map(|(name, value)| match name.strip_prefix(b"trusted.overlay.") {
            Some(rest) => {
                rest.strip_prefix(b"overlay.").map(|r| ([&b"trusted.overlay."[..], r].concat(), value.clone()))
            }
            None => Some((name.clone(), value.clone())),
        })
        .collect();
    out.sort();
    out
}

/// Where the content of an external file is: its `trusted.overlay.redirect`
/// (`/XX/REST`, relative to the repository's `objects/`), and its fs-verity
/// digest (`trusted.overlay.metacopy`'s, after the 4-byte header; empty when
/// the image does not require one).
pub fn external(raw: &[Xattr]) -> Option<(String, Vec<u8>)> {
    let redirect = raw.iter().find(|(n, _)| n == b"trusted.overlay.redirect")?;
    let path = String::from_utf8(redirect.1.clone()).ok()?;
    let digest =
        raw.iter().find(|(n, _)| n == b"trusted.overlay.metacopy").map(|(_, v)| v.get(4..).unwrap_or(&[]).to_vec());
    Some((path, digest.unwrap_or_default()))
}

/// Whether an inode's content is an object of the repository (no data in the image).
pub fn is_external(inode: &Inode) -> bool {
    inode.layout == CHUNK_BASED
}

/// Fails unless `mode` is a type an OS tree holds (a regular file, a
/// directory, a symlink): a device, FIFO or socket in an image is named.
pub fn check_type(inode: &Inode, path: &str) -> anyhow::Result<()> {
    match inode.mode & S_IFMT {
        S_IFREG | S_IFDIR | S_IFLNK => Ok(()),
        t => bail!("{path}: a file of type {t:o}, which livefs does not apply (devices, FIFOs and sockets)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_blocks_and_xattr_entries() {
        // Two headers (".", "a") then the names, NUL padding after the last.
        let mut block = Vec::new();
        for (nid, off) in [(36u64, 24u16), (42, 25)] {
            block.extend_from_slice(&nid.to_le_bytes());
            block.extend_from_slice(&off.to_le_bytes());
            block.extend_from_slice(&[2, 0]);
        }
        block.extend_from_slice(b".a\0\0\0");
        let mut out = Vec::new();
        dirents(&block, &mut out).unwrap();
        assert_eq!(out, [(b"a".to_vec(), 42)]);
        assert!(dirents(&[0; 12], &mut out).is_err(), "a zero name offset");
        // security.selinux = "x", then the next entry 4-byte aligned.
        let mut x = vec![7, 6, 1, 0];
        x.extend_from_slice(b"selinuxx");
        x.extend_from_slice(&[0, 0, 0, 0]);
        let ((name, value), next) = xattr(&x, 0).unwrap();
        assert_eq!((name.as_slice(), value.as_slice(), next), (&b"security.selinux"[..], &b"x"[..], 12));
        assert!(xattr(&[1, 9, 0, 0, b'a'], 0).is_err(), "an unknown prefix");
        let raw = vec![
            (b"trusted.overlay.redirect".to_vec(), b"/ab/cdef".to_vec()),
            (b"trusted.overlay.metacopy".to_vec(), vec![0, 36, 0, 2, 0xaa, 0xbb]),
            (b"trusted.overlay.overlay.opaque".to_vec(), b"y".to_vec()),
            (b"user.a".to_vec(), b"1".to_vec()),
        ];
        assert_eq!(
            file_xattrs(&raw),
            [(b"trusted.overlay.opaque".to_vec(), b"y".to_vec()), (b"user.a".to_vec(), b"1".to_vec())]
        );
        assert_eq!(external(&raw), Some(("/ab/cdef".to_string(), vec![0xaa, 0xbb])));
    }

    #[test]
    fn a_malformed_image_is_refused_by_name() {
        assert!(Image::open(&[0; 100]).unwrap_err().to_string().contains("too small"));
        let mut b = vec![0u8; 4096];
        assert!(Image::open(&b).unwrap_err().to_string().contains("no superblock magic"));
        b[1024..1028].copy_from_slice(&MAGIC.to_le_bytes());
        b[1024 + 12] = 12;
        let img = Image::open(&b).unwrap();
        assert!(img.inode(1_000_000).is_err());
    }
}
