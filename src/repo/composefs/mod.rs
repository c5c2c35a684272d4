//! A composefs repository, as bootc's native backend keeps one in
//! `/sysroot/composefs`: `meta.json`, `objects/XX/REST` (file contents and the
//! EROFS images, plain files), `images/HEX` (→ its object) and
//! `images/refs/NAME`. An image is one version of the OS: livefs reads it as it
//! reads an OSTree commit, through the same objects — commits, dirtrees,
//! dirmetas and file objects — made from the image ([`erofs`]) when it is first
//! asked for, so that the diff, the plan, the `/etc` merge and the strategy
//! work on either backend unchanged. The image's name (its fs-verity digest,
//! SHA-512 by default) names its commit (devices, FIFOs and sockets, which
//! OSTree has no objects for, are left out outside `/usr`: livefs never
//! applies them; one in `/usr` is refused); the objects made from it are named by
//! the SHA-256 of what they hold (a file object: its metadata and its
//! content's object, or its inline bytes), so equal subtrees of two images have
//! equal names and the diff skips them.

pub mod erofs;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use sha2::{Digest, Sha256};

use super::objects::{self, Commit, DirMeta, DirTree, FileKind, FileMeta};
use super::Checksum;

/// Where a file object's content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// In the image (a small file).
    Inline(Vec<u8>),
    /// The repository's object `objects/XX/REST` (relative path).
    Object(String),
    /// A symlink: no content.
    None,
}

/// An object made from an image.
#[derive(Debug, Clone)]
enum Made {
    /// Boxed: one per image, and the largest by far.
    Commit(Box<Commit>),
    DirTree(DirTree),
    DirMeta(DirMeta),
    File(FileMeta, Source),
}

/// A hasher for names that are digests already (uniformly distributed): their
/// first eight bytes are the hash.
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(b);
    }
}

/// The objects made from one image, by name.
type Objects = HashMap<Checksum, Made, std::hash::BuildHasherDefault<DigestHasher>>;

/// An open composefs repository.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    dir: OwnedFd,
    /// The digest algorithm of its objects and images (`fsverity-sha512-12`).
    pub algorithm: String,
    /// The objects made from each image read so far (an object two images
    /// share is in both maps, the same).
    made: std::sync::RwLock<Vec<std::sync::Arc<Objects>>>,
}

/// Whether `path` holds a composefs repository (its `meta.json`).
pub fn is_store(path: &Path) -> bool {
    path.join("meta.json").is_file() && !path.join("config").exists()
}

impl Store {
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let dir = crate::dirfd::open_dir_path(path)?;
        let meta = crate::dirfd::read(dir.as_fd(), "meta.json")
            .with_context(|| format!("{} is not a composefs repository: it has no meta.json", path.display()))?;
        let meta: serde_json::Value =
            serde_json::from_slice(&meta).with_context(|| format!("{}/meta.json is not JSON", path.display()))?;
        let version = meta["version"].as_u64().unwrap_or(0);
        ensure!(version == 1, "{}/meta.json: repository version {version}, livefs reads version 1", path.display());
        let algorithm = meta["algorithm"].as_str().unwrap_or("fsverity-sha512-12").to_string();
        ensure!(
            algorithm.starts_with("fsverity-sha512-") || algorithm.starts_with("fsverity-sha256-"),
            "{}/meta.json: unknown algorithm {algorithm}",
            path.display()
        );
        Ok(Store { path: path.to_path_buf(), dir, algorithm, made: Default::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the images the repository holds.
    pub fn images(&self) -> anyhow::Result<Vec<Checksum>> {
        let dir = self.path.join("images");
        let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            if let Some(c) = e.file_name().to_str().and_then(|n| n.parse::<Checksum>().ok()) {
                out.push(c);
            }
        }
        out.sort();
        Ok(out)
    }

    /// An image by full name, ref (`images/refs/NAME`; `refs/NAME` as cfsctl
    /// also spells it), or unique prefix of its name — a ref first, as ostree
    /// resolves a ref before a partial checksum.
    pub fn resolve(&self, rev: &str) -> anyhow::Result<Checksum> {
        if let Ok(c) = rev.parse::<Checksum>() {
            return Ok(c);
        }
        let name = rev.strip_prefix("refs/").unwrap_or(rev);
        let valid = name.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !valid {
            return Err(super::RepoError::InvalidRef(rev.to_string()).into());
        }
        let link = self.path.join("images/refs").join(name);
        if let Ok(target) = std::fs::read_link(&link) {
            let image = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
            return image.parse().with_context(|| format!("ref {} names no image", link.display()));
        }
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if hex(rev) {
            let found: Vec<Checksum> = self.images()?.into_iter().filter(|c| c.to_hex().starts_with(rev)).collect();
            match found.len() {
                0 => {}
                1 => return Ok(found[0]),
                n => return Err(super::RepoError::AmbiguousRev(rev.to_string(), n).into()),
            }
        }
        Err(super::RepoError::RefNotFound(rev.to_string()).into())
    }

    /// The bytes of image `id`.
    fn image_bytes(&self, id: Checksum) -> anyhow::Result<Vec<u8>> {
        let rel = format!("images/{id}");
        match crate::dirfd::read_following(self.dir.as_fd(), &rel) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(super::RepoError::MissingObject(super::ObjectName { checksum: id, ext: "image" }, false).into())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read image {id}")),
        }
    }

    /// Points `images/refs/NAME` at image `target` (`None`: removes it), as
    /// cfsctl links a ref: relative, to `images/HEX`. The refs are the roots
    /// `cfsctl gc` (and bootc's garbage collection) keep: what livefs shows
    /// live stays in the repository while it does.
    pub fn set_ref(&self, name: &str, target: Option<Checksum>) -> anyhow::Result<()> {
        let (parent, leaf) = crate::dirfd::split_path(name);
        let valid = name.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        ensure!(valid && !leaf.is_empty(), "{name} is not a valid ref name");
        let rel = if parent.is_empty() { "images/refs".to_string() } else { format!("images/refs/{parent}") };
        let what = || format!("cannot update ref {}/images/refs/{name}", self.path.display());
        let Some(target) = target else {
            let dir = match crate::dirfd::open_dir(self.dir.as_fd(), &rel) {
                Ok(d) => d,
                Err(rustix::io::Errno::NOENT) => return Ok(()),
                Err(e) => return Err(e).with_context(what),
            };
            return match rustix::fs::unlinkat(&dir, leaf, rustix::fs::AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(e) => Err(e).with_context(what),
            };
        };
        let dir = crate::dirfd::make_dirs(self.dir.as_fd(), &rel, 0o755).with_context(what)?;
        let up = "../".repeat(rel.matches('/').count());
        let tmp = format!(".{leaf}.tmp");
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        rustix::fs::symlinkat(format!("{up}{target}").as_str(), &dir, tmp.as_str()).with_context(what)?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, leaf).with_context(what)?;
        crate::fault::mutation();
        Ok(())
    }

    /// Image `id`'s file, opened read-only beneath the repository (its
    /// `images/` link followed, never out of it): what a mount of it reads.
    pub fn open_image(&self, id: Checksum) -> anyhow::Result<OwnedFd> {
        let rel = format!("images/{id}");
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
        let resolve = rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_MAGICLINKS;
        match crate::dirfd::openat2(self.dir.as_fd(), &rel, flags, resolve) {
            Ok(fd) => Ok(fd),
            Err(rustix::io::Errno::NOENT) => {
                Err(super::RepoError::MissingObject(super::ObjectName { checksum: id, ext: "image" }, false).into())
            }
            Err(e) => Err(e).with_context(|| format!("cannot open {}/{rel}", self.path.display())),
        }
    }

    /// The repository's `objects/`: the data-only lower of an image's mount.
    pub fn objects_dir(&self) -> anyhow::Result<OwnedFd> {
        crate::dirfd::open_dir(self.dir.as_fd(), "objects")
            .with_context(|| format!("cannot open {}/objects", self.path.display()))
    }

    /// Makes the objects of image `id` (once), and returns its commit.
    pub fn commit(&self, id: Checksum) -> anyhow::Result<Commit> {
        if let Ok(Made::Commit(c)) = self.get(id, "image") {
            return Ok(*c);
        }
        let bytes = self.image_bytes(id)?;
        let image = erofs::Image::open(&bytes).with_context(|| format!("image {id} is malformed"))?;
        // About one object per 256 bytes of image (inodes, dirents, names, xattrs).
        let mut made = Objects::with_capacity_and_hasher(bytes.len() / 256, Default::default());
        let (root_tree, root_meta) =
            make_dir(&image, image.root(), &mut String::new(), &mut made).with_context(|| format!("in image {id}"))?;
        let version = os_version(self, &made, root_tree);
        let commit = Commit {
            parent: None,
            subject: String::new(),
            body: String::new(),
            timestamp: 0,
            root_tree,
            root_meta,
            metadata: version.map(|v| ("version".to_string(), objects::MetaValue::String(v))).into_iter().collect(),
        };
        made.insert(id, Made::Commit(Box::new(commit.clone())));
        self.made.write().unwrap_or_else(|e| e.into_inner()).push(std::sync::Arc::new(made));
        Ok(commit)
    }

    /// Makes the objects of the images `ids` that are not made yet, each on
    /// a thread of its own (a diff reads two whole images).
    pub fn make(&self, ids: &[Checksum]) -> anyhow::Result<()> {
        crate::parallel::map_chunks_min(ids, 2, |chunk| chunk.iter().map(|&id| self.commit(id).map(drop)).collect())
            .map(drop)
    }

    fn get(&self, c: Checksum, what: &'static str) -> anyhow::Result<Made> {
        let maps = self.made.read().unwrap_or_else(|e| e.into_inner());
        maps.iter()
            .find_map(|m| m.get(&c).cloned())
            .ok_or_else(|| super::RepoError::MissingObject(super::ObjectName { checksum: c, ext: what }, false).into())
    }

    pub fn dirtree(&self, c: Checksum) -> anyhow::Result<DirTree> {
        match self.get(c, "dirtree")? {
            Made::DirTree(t) => Ok(t),
            _ => bail!("object {c} is not a dirtree"),
        }
    }

    pub fn dirmeta(&self, c: Checksum) -> anyhow::Result<DirMeta> {
        match self.get(c, "dirmeta")? {
            Made::DirMeta(m) => Ok(m),
            _ => bail!("object {c} is not a dirmeta"),
        }
    }

    pub fn file(&self, c: Checksum) -> anyhow::Result<(FileMeta, Source)> {
        match self.get(c, "file")? {
            Made::File(m, s) => Ok((m, s)),
            _ => bail!("object {c} is not a file"),
        }
    }

    /// Opens the object `rel` (`XX/REST`) of `objects/`.
    pub fn open_object(&self, rel: &str) -> anyhow::Result<std::fs::File> {
        let path = format!("objects/{rel}");
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW;
        let fd = crate::dirfd::openat2(self.dir.as_fd(), &path, flags, rustix::fs::ResolveFlags::BENEATH);
        Ok(std::fs::File::from(fd.with_context(|| format!("cannot open {}/{path}", self.path.display()))?))
    }
}

/// The `VERSION_ID` (or `VERSION`) of the image's `usr/lib/os-release`: what
/// `status` shows as its version.
fn os_version(store: &Store, made: &Objects, root: Checksum) -> Option<String> {
    let mut tree = root;
    for part in ["usr", "lib"] {
        let Made::DirTree(t) = made.get(&tree)? else { return None };
        tree = t.find_dir(part)?.tree;
    }
    let Made::DirTree(t) = made.get(&tree)? else { return None };
    let Made::File(_, source) = made.get(&t.find_file("os-release")?.checksum)? else { return None };
    let text = match source {
        Source::Inline(b) => String::from_utf8_lossy(b).into_owned(),
        Source::Object(rel) => std::io::read_to_string(store.open_object(rel).ok()?).ok()?,
        Source::None => return None,
    };
    let value = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim_matches('"').to_string())
    };
    value("VERSION_ID").or_else(|| value("VERSION"))
}

/// The name of an object made from `bytes`, of kind `tag`.
fn name_of(tag: &str, bytes: &[u8]) -> Checksum {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update([0]);
    h.update(bytes);
    Checksum::sha256(h.finalize().into())
}

/// Makes the dirtree and dirmeta of directory `nid` (at `path`) and of all it
/// holds; returns their names.
fn make_dir(
    image: &erofs::Image,
    nid: u64,
    path: &mut String,
    made: &mut Objects,
) -> anyhow::Result<(Checksum, Checksum)> {
    let inode = image.inode(nid)?;
    let meta = DirMeta {
        uid: inode.uid,
        gid: inode.gid,
        mode: inode.mode,
        xattrs: erofs::file_xattrs(&image.xattrs(&inode)?),
    };
    let meta_name = name_of("dirmeta", &[&objects::serialize_xattrs(&meta.xattrs)[..], &meta_key(&meta)].concat());
    made.insert(meta_name, Made::DirMeta(meta));
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut entries = image.entries(&inode)?;
    // OSTree's order: bytewise by name.
    entries.sort();
    // One buffer for every path below (only errors name a path).
    let len = path.len();
    for (name, child) in entries {
        let name = objects::validate_name(&name).map_err(|e| anyhow::anyhow!("{path}/: {e}"))?.to_string();
        path.truncate(len);
        path.push('/');
        path.push_str(&name);
        let node = image.inode(child)?;
        if let Err(e) = erofs::check_type(&node, path) {
            // A device, FIFO or socket: OSTree has no object for one. Outside
            // /usr (a root file system's /dev) it is left out, as livefs never
            // applies it; in /usr it is refused.
            if path == "/usr" || path.starts_with("/usr/") {
                return Err(e);
            }
            continue;
        }
        if node.mode & erofs::S_IFMT == erofs::S_IFDIR {
            let (tree, meta) = make_dir(image, child, path, made)?;
            dirs.push((name, tree, meta));
        } else {
            files.push((name, make_file(image, &node, path, made)?));
        }
    }
    path.truncate(len);
    let mut key = Vec::new();
    for (name, c) in &files {
        key.extend_from_slice(name.as_bytes());
        key.push(0);
        key.extend_from_slice(c.as_bytes());
    }
    key.push(b'/');
    for (name, t, m) in &dirs {
        key.extend_from_slice(name.as_bytes());
        key.push(0);
        key.extend_from_slice(t.as_bytes());
        key.extend_from_slice(m.as_bytes());
    }
    let tree = DirTree::from_sorted(files, dirs).map_err(|e| anyhow::anyhow!("{path}/: {e}"))?;
    let tree_name = name_of("dirtree", &key);
    made.insert(tree_name, Made::DirTree(tree));
    Ok((tree_name, meta_name))
}

fn meta_key(m: &DirMeta) -> Vec<u8> {
    [m.uid.to_be_bytes(), m.gid.to_be_bytes(), m.mode.to_be_bytes()].concat()
}

/// Makes the file object of `node` (at `path`): its metadata, and where its
/// content is; returns its name.
fn make_file(image: &erofs::Image, node: &erofs::Inode, path: &str, made: &mut Objects) -> anyhow::Result<Checksum> {
    let raw = image.xattrs(node)?;
    let xattrs = erofs::file_xattrs(&raw);
    let (kind, source) = if node.mode & erofs::S_IFMT == erofs::S_IFLNK {
        let target = objects::utf8_target(&image.data(node)?).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        (FileKind::Symlink { target }, Source::None)
    } else if erofs::is_external(node) {
        let (redirect, _) = erofs::external(&raw).with_context(|| format!("{path}: external, but no redirect"))?;
        let rel = redirect.trim_start_matches('/').to_string();
        ensure!(valid_object_path(&rel), "{path}: its redirect {redirect:?} names no object");
        (FileKind::Regular { size: node.size }, Source::Object(rel))
    } else {
        (FileKind::Regular { size: node.size }, Source::Inline(image.data(node)?))
    };
    let meta = FileMeta { kind, uid: node.uid, gid: node.gid, mode: node.mode, xattrs };
    let mut key = objects::content_checksum_header(&meta);
    match &source {
        Source::Inline(b) => key.extend_from_slice(b),
        Source::Object(rel) => {
            key.extend_from_slice(b"object:");
            key.extend_from_slice(rel.as_bytes());
        }
        Source::None => {}
    }
    let name = name_of("file", &key);
    made.insert(name, Made::File(meta, source));
    Ok(name)
}

/// `XX/REST`, hex only: an object's path can never leave `objects/`.
fn valid_object_path(rel: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit());
    matches!(rel.split_once('/'), Some((a, b)) if a.len() == 2 && hex(a) && hex(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_stay_in_objects() {
        assert!(valid_object_path("ab/cdef0123"));
        for bad in ["../etc/shadow", "ab/../../x", "abc/def", "ab/", "/ab/cd", "ab/cd/ef"] {
            assert!(!valid_object_path(bad), "{bad}");
        }
    }
}
