//! Typed views of OSTree objects: commit, dirtree, dirmeta and file headers.
//!
//! Each `parse` validates the whole object once (framing, checksum sizes, names,
//! sort order), so accessors afterwards cannot fail. Names in a tree are checked the
//! way OSTree checks them: valid UTF-8, not empty, not `.` or `..`, no `/` (NUL is
//! impossible in a GVariant string) — a hostile name is refused here, before any
//! consumer sees it.

use std::ops::Range;

use super::checksum::Checksum;
use crate::gvariant::{self as gv, Error as GvError, VarArray, U32, U64, VAR1, VAR8};

/// Why an object's bytes are not a valid object of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Gvariant(#[from] GvError),
    #[error("checksum field is {0} bytes, expected 32")]
    BadChecksumLength(usize),
    #[error("invalid file name {0:?}")]
    BadName(String),
    #[error("entries are not sorted by name at {0:?}")]
    Unsorted(String),
    #[error("{0}")]
    Invalid(&'static str),
}

type Result<T> = std::result::Result<T, ObjectError>;

pub use crate::xattrs::Xattrs;

fn checksum(b: &[u8]) -> Result<Checksum> {
    Checksum::from_bytes(b).ok_or(ObjectError::BadChecksumLength(b.len()))
}

/// Checks an entry name from a dirtree the way OSTree does, plus UTF-8 (OSTree
/// refuses to commit non-UTF-8 names).
pub fn validate_name(name: &[u8]) -> Result<&str> {
    let s = std::str::from_utf8(name).map_err(|_| ObjectError::BadName(String::from_utf8_lossy(name).into_owned()))?;
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(ObjectError::BadName(s.to_string()));
    }
    Ok(s)
}

fn owned_xattrs(data: &[u8]) -> Result<Xattrs> {
    Ok(gv::xattrs(data)?.into_iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect())
}

/// A commit object `(a{sv}aya(say)sstayay)`.
#[derive(Debug, Clone)]
pub struct Commit {
    /// Parent commit, if any.
    pub parent: Option<Checksum>,
    pub subject: String,
    pub body: String,
    /// Seconds since the epoch (stored big-endian).
    pub timestamp: u64,
    /// The root directory's dirtree object.
    pub root_tree: Checksum,
    /// The root directory's dirmeta object.
    pub root_meta: Checksum,
    /// String-valued metadata entries (e.g. `version`), in stored order.
    pub metadata: Vec<(String, MetaValue)>,
}

/// A commit metadata value: strings are decoded; other types are kept by type name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum MetaValue {
    String(String),
    Other { r#type: String },
}

impl Commit {
    pub fn parse(data: &[u8]) -> Result<Commit> {
        let [meta, parent, related, subject, body, ts, root_tree, root_meta] =
            gv::structure(data, [VAR8, VAR1, VAR1, VAR1, VAR1, U64, VAR1, VAR1])?;
        let parent = match parent.len() {
            0 => None,
            _ => Some(checksum(parent)?),
        };
        // Related objects are not used, but must be well-formed.
        for el in VarArray::new(related, 1)?.iter() {
            gv::structure(el?, [VAR1, VAR1])?;
        }
        let text = |b: &[u8]| -> Result<String> { Ok(String::from_utf8_lossy(gv::string(b)?).into_owned()) };
        let mut metadata = Vec::new();
        for el in VarArray::new(meta, 8)?.iter() {
            let [key, value] = gv::structure(el?, [VAR1, VAR8])?;
            let (value, ty) = gv::variant(value)?;
            let value = if ty == b"s" {
                MetaValue::String(text(value)?)
            } else {
                MetaValue::Other { r#type: String::from_utf8_lossy(ty).into_owned() }
            };
            metadata.push((text(key)?, value));
        }
        Ok(Commit {
            parent,
            subject: text(subject)?,
            body: text(body)?,
            timestamp: gv::u64_be(ts)?,
            root_tree: checksum(root_tree)?,
            root_meta: checksum(root_meta)?,
            metadata,
        })
    }

    /// A string metadata value such as `version`.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find_map(|(k, v)| match v {
            MetaValue::String(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// The `version` metadata, as rpm-ostree and bootc set it.
    pub fn version(&self) -> Option<&str> {
        self.meta_str("version")
    }
}

/// A file entry of a dirtree: its name and content object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEntry<'a> {
    pub name: &'a str,
    pub checksum: Checksum,
}

/// A subdirectory entry of a dirtree: its name, contents and metadata objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    pub name: &'a str,
    pub tree: Checksum,
    pub meta: Checksum,
}

/// Lookups in a [`DirTree`] by ascending names, each resuming where the last one
/// stopped ([`DirTree::seek`]). A name smaller than the one before is not found.
pub struct Seek<'a> {
    tree: &'a DirTree,
    file: usize,
    dir: usize,
}

impl<'a> Seek<'a> {
    pub fn file(&mut self, name: &str) -> Option<FileEntry<'a>> {
        let t = self.tree;
        let found = advance(&t.files, &mut self.file, name.as_bytes(), |(r, _)| t.name_bytes(r))?;
        Some(FileEntry { name: t.name(&found.0), checksum: found.1 })
    }

    pub fn dir(&mut self, name: &str) -> Option<DirEntry<'a>> {
        let t = self.tree;
        let found = advance(&t.dirs, &mut self.dir, name.as_bytes(), |(r, _, _)| t.name_bytes(r))?;
        Some(DirEntry { name: t.name(&found.0), tree: found.1, meta: found.2 })
    }
}

/// Moves `at` past the entries of `sorted` smaller than `name`; the entry named
/// `name`, if it is there.
fn advance<'a, 'k, T>(sorted: &'a [T], at: &mut usize, name: &[u8], key: impl Fn(&T) -> &'k [u8]) -> Option<&'a T> {
    while *at < sorted.len() && key(&sorted[*at]) < name {
        *at += 1;
    }
    sorted.get(*at).filter(|e| key(e) == name)
}

/// A dirtree object `(a(say)a(sayay))`: the sorted files and subdirectories of one
/// directory. Names are validated and borrowed from the owned bytes.
#[derive(Debug, Clone)]
pub struct DirTree {
    bytes: Vec<u8>,
    files: Vec<(Range<u32>, Checksum)>,
    dirs: Vec<(Range<u32>, Checksum, Checksum)>,
}

fn sub_range(outer: &[u8], inner: &[u8]) -> Range<u32> {
    // `inner` is a sub-slice of `outer`; objects are far below 4 GiB (checked in parse).
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start as u32..(start + inner.len()) as u32
}

impl DirTree {
    pub fn parse(bytes: Vec<u8>) -> Result<DirTree> {
        if u32::try_from(bytes.len()).is_err() {
            return Err(ObjectError::Invalid("dirtree larger than 4 GiB"));
        }
        let [files_data, dirs_data] = gv::structure(&bytes, [VAR1, VAR1])?;
        let files_arr = VarArray::new(files_data, 1)?;
        let dirs_arr = VarArray::new(dirs_data, 1)?;
        let mut files = Vec::with_capacity(files_arr.len());
        let mut prev: Option<&str> = None;
        for el in files_arr.iter() {
            let [name, csum] = gv::structure(el?, [VAR1, VAR1])?;
            let name = gv::string(name)?;
            let s = validate_name(name)?;
            if prev.is_some_and(|p| p >= s) {
                return Err(ObjectError::Unsorted(s.to_string()));
            }
            prev = Some(s);
            files.push((sub_range(&bytes, name), checksum(csum)?));
        }
        let mut dirs = Vec::with_capacity(dirs_arr.len());
        let mut prev: Option<&str> = None;
        for el in dirs_arr.iter() {
            let [name, tree, meta] = gv::structure(el?, [VAR1, VAR1, VAR1])?;
            let name = gv::string(name)?;
            let s = validate_name(name)?;
            if prev.is_some_and(|p| p >= s) {
                return Err(ObjectError::Unsorted(s.to_string()));
            }
            prev = Some(s);
            dirs.push((sub_range(&bytes, name), checksum(tree)?, checksum(meta)?));
        }
        let tree = DirTree { bytes, files, dirs };
        let mut seek = tree.seek();
        if let Some(dup) = tree.files().find(|f| seek.dir(f.name).is_some()) {
            return Err(ObjectError::BadName(format!("{} (both a file and a directory)", dup.name)));
        }
        Ok(tree)
    }

    /// A dirtree of entries already known (a composefs image's directory): the
    /// names checked as [`DirTree::parse`] checks them, sorted, and unique
    /// across files and directories.
    pub fn from_sorted(files: Vec<(String, Checksum)>, dirs: Vec<(String, Checksum, Checksum)>) -> Result<DirTree> {
        let mut bytes = Vec::new();
        let mut range = |name: &str| -> Result<Range<u32>> {
            validate_name(name.as_bytes())?;
            let start = bytes.len();
            bytes.extend_from_slice(name.as_bytes());
            let end = u32::try_from(bytes.len()).map_err(|_| ObjectError::Invalid("dirtree larger than 4 GiB"))?;
            Ok(start as u32..end)
        };
        let mut f = Vec::with_capacity(files.len());
        for (name, c) in &files {
            f.push((range(name)?, *c));
        }
        let mut d = Vec::with_capacity(dirs.len());
        for (name, t, m) in &dirs {
            d.push((range(name)?, *t, *m));
        }
        let tree = DirTree { bytes, files: f, dirs: d };
        for pair in tree.files().collect::<Vec<_>>().windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(ObjectError::Unsorted(pair[1].name.to_string()));
            }
        }
        for pair in tree.dirs().collect::<Vec<_>>().windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(ObjectError::Unsorted(pair[1].name.to_string()));
            }
        }
        let mut seek = tree.seek();
        if let Some(dup) = tree.files().find(|f| seek.dir(f.name).is_some()) {
            return Err(ObjectError::BadName(format!("{} (both a file and a directory)", dup.name)));
        }
        Ok(tree)
    }

    /// A name's bytes: binary searches compare these (UTF-8 byte order is `str`
    /// order) without re-validating UTF-8 at every step.
    fn name_bytes(&self, r: &Range<u32>) -> &[u8] {
        &self.bytes[r.start as usize..r.end as usize]
    }

    fn name(&self, r: &Range<u32>) -> &str {
        let bytes = &self.bytes[r.start as usize..r.end as usize];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: `parse` made every range from a `&str` of these bytes
        // (`validate_name`), and the bytes never change after. (Validating again
        // at every access cost a diff 5% of its time.)
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// A cursor for lookups in ascending name order (a walk over another
    /// sorted directory): one pass instead of a binary search per name.
    pub fn seek(&self) -> Seek<'_> {
        Seek { tree: self, file: 0, dir: 0 }
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    pub fn dir_count(&self) -> usize {
        self.dirs.len()
    }

    /// Files (regular files and symlinks), sorted by name.
    pub fn files(&self) -> impl ExactSizeIterator<Item = FileEntry<'_>> + '_ {
        self.files.iter().map(|(r, c)| FileEntry { name: self.name(r), checksum: *c })
    }

    /// Subdirectories, sorted by name.
    pub fn dirs(&self) -> impl ExactSizeIterator<Item = DirEntry<'_>> + '_ {
        self.dirs.iter().map(|(r, t, m)| DirEntry { name: self.name(r), tree: *t, meta: *m })
    }

    /// Looks up a file by name (binary search: entries are sorted).
    pub fn find_file(&self, name: &str) -> Option<FileEntry<'_>> {
        let i = self.files.binary_search_by(|(r, _)| self.name_bytes(r).cmp(name.as_bytes())).ok()?;
        let (r, c) = &self.files[i];
        Some(FileEntry { name: self.name(r), checksum: *c })
    }

    /// Looks up a subdirectory by name (binary search: entries are sorted).
    pub fn find_dir(&self, name: &str) -> Option<DirEntry<'_>> {
        let i = self.dirs.binary_search_by(|(r, _, _)| self.name_bytes(r).cmp(name.as_bytes())).ok()?;
        let (r, t, m) = &self.dirs[i];
        Some(DirEntry { name: self.name(r), tree: *t, meta: *m })
    }
}

/// A dirmeta object `(uuua(ayay))`: a directory's owner, mode and xattrs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub uid: u32,
    pub gid: u32,
    /// Full mode, including `S_IFDIR`.
    pub mode: u32,
    pub xattrs: Xattrs,
}

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

impl DirMeta {
    pub fn parse(data: &[u8]) -> Result<DirMeta> {
        let [uid, gid, mode, xattrs] = gv::structure(data, [U32, U32, U32, VAR1])?;
        let mode = gv::u32_be(mode)?;
        if mode & S_IFMT != S_IFDIR {
            return Err(ObjectError::Invalid("dirmeta mode is not a directory"));
        }
        Ok(DirMeta { uid: gv::u32_be(uid)?, gid: gv::u32_be(gid)?, mode, xattrs: owned_xattrs(xattrs)? })
    }
}

/// What a file object is: a regular file of some size, or a symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Regular { size: u64 },
    Symlink { target: String },
}

/// The metadata of a file (content) object, whatever the repository mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub kind: FileKind,
    pub uid: u32,
    pub gid: u32,
    /// Full mode, including the file type bits.
    pub mode: u32,
    pub xattrs: Xattrs,
}

impl FileMeta {
    /// Bytes of content a checkout writes for this file (0 for a symlink).
    pub fn size(&self) -> u64 {
        match self.kind {
            FileKind::Regular { size } => size,
            FileKind::Symlink { .. } => 0,
        }
    }

    pub fn is_symlink(&self) -> bool {
        matches!(self.kind, FileKind::Symlink { .. })
    }

    /// Validates the mode against the kind: only regular files and symlinks exist
    /// in OSTree content objects.
    pub(crate) fn check_mode(&self) -> Result<()> {
        let want = match self.kind {
            FileKind::Regular { .. } => S_IFREG,
            FileKind::Symlink { .. } => S_IFLNK,
        };
        if self.mode & S_IFMT != want {
            return Err(ObjectError::Invalid("file mode does not match its type"));
        }
        Ok(())
    }
}

/// The `(uuua(ayay))` stored in `user.ostreemeta` by bare-user repositories.
pub fn parse_ostreemeta(data: &[u8]) -> Result<(u32, u32, u32, Xattrs)> {
    let [uid, gid, mode, xattrs] = gv::structure(data, [U32, U32, U32, VAR1])?;
    Ok((gv::u32_be(uid)?, gv::u32_be(gid)?, gv::u32_be(mode)?, owned_xattrs(xattrs)?))
}

/// Header of an archive-mode `.filez` object: u32 BE length, 4 zero bytes, then
/// `(tuuuusa(ayay))`. Returns the metadata and the offset of the deflate stream.
pub fn parse_archive_header(data: &[u8]) -> Result<(FileMeta, usize)> {
    let (header, end) = split_sized_header(data)?;
    let [size, uid, gid, mode, _rdev, target, xattrs] = gv::structure(header, [U64, U32, U32, U32, U32, VAR1, VAR1])?;
    let mode = gv::u32_be(mode)?;
    let target = gv::string(target)?;
    let kind = if mode & S_IFMT == S_IFLNK {
        FileKind::Symlink { target: utf8_target(target)? }
    } else {
        FileKind::Regular { size: gv::u64_be(size)? }
    };
    let meta = FileMeta { kind, uid: gv::u32_be(uid)?, gid: gv::u32_be(gid)?, mode, xattrs: owned_xattrs(xattrs)? };
    meta.check_mode()?;
    Ok((meta, end))
}

/// Splits "u32 BE length ‖ 4 zero bytes ‖ header" and returns the header and the
/// offset just past it.
fn split_sized_header(data: &[u8]) -> Result<(&[u8], usize)> {
    let len = data.get(..4).ok_or(ObjectError::Invalid("truncated file header"))?;
    let len = gv::u32_be(len)? as usize;
    let end = 8usize.checked_add(len).filter(|&e| e <= data.len());
    let end = end.ok_or(ObjectError::Invalid("truncated file header"))?;
    if data[4..8] != [0, 0, 0, 0] {
        return Err(ObjectError::Invalid("file header padding is not zero"));
    }
    Ok((&data[8..end], end))
}

/// Symlink targets are strings in OSTree; refuse non-UTF-8 like OSTree does.
pub fn utf8_target(b: &[u8]) -> Result<String> {
    let s = std::str::from_utf8(b).map_err(|_| ObjectError::Invalid("symlink target is not UTF-8"))?;
    if s.is_empty() {
        return Err(ObjectError::Invalid("empty symlink target"));
    }
    Ok(s.to_string())
}

/// Builds the header that a file's content checksum covers: u32 BE length, 4 zero
/// bytes, `(uuuusa(ayay))` (uid, gid, mode, rdev 0, symlink target, xattrs).
pub fn content_checksum_header(meta: &FileMeta) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&meta.uid.to_be_bytes());
    v.extend_from_slice(&meta.gid.to_be_bytes());
    v.extend_from_slice(&meta.mode.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    let target = match &meta.kind {
        FileKind::Symlink { target } => target.as_bytes(),
        FileKind::Regular { .. } => b"",
    };
    v.extend_from_slice(target);
    v.push(0);
    let target_end = v.len();
    v.extend_from_slice(&serialize_xattrs(&meta.xattrs));
    // One framing offset (end of the string); its width depends on the total size.
    let body = v.len();
    let mut width = 1;
    while offset_width_for(body + width) != width {
        width *= 2;
    }
    v.extend_from_slice(&(target_end as u64).to_le_bytes()[..width]);
    let mut out = Vec::with_capacity(8 + v.len());
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&v);
    out
}

fn offset_width_for(size: usize) -> usize {
    match size {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

/// Serialises `a(ayay)` (names gain their trailing NUL, as OSTree stores them).
pub fn serialize_xattrs(xattrs: &Xattrs) -> Vec<u8> {
    if xattrs.is_empty() {
        return Vec::new();
    }
    let mut body = Vec::new();
    let mut ends = Vec::with_capacity(xattrs.len());
    for (name, value) in xattrs {
        let mut el = Vec::with_capacity(name.len() + value.len() + 3);
        el.extend_from_slice(name);
        el.push(0);
        let name_end = el.len();
        el.extend_from_slice(value);
        let content = el.len();
        let mut width = 1;
        while offset_width_for(content + width) != width {
            width *= 2;
        }
        el.extend_from_slice(&(name_end as u64).to_le_bytes()[..width]);
        body.extend_from_slice(&el);
        ends.push(body.len());
    }
    let mut width = 1;
    while offset_width_for(body.len() + width * ends.len()) != width {
        width *= 2;
    }
    for e in ends {
        body.extend_from_slice(&(e as u64).to_le_bytes()[..width]);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name(b"ok name").is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"\xff"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xattrs_roundtrip() {
        let x: Xattrs = vec![(b"user.a".to_vec(), b"1".to_vec()), (b"user.b".to_vec(), vec![0; 300])];
        let ser = serialize_xattrs(&x);
        assert_eq!(owned_xattrs(&ser).unwrap(), x);
    }
}
