//! The OSTree repository format: reading a repository on disk in pure Rust.
//!
//! Supports the `bare`, `bare-user`, `bare-user-only` and `archive`(-z2) modes.
//! Every metadata object (commit, dirtree, dirmeta) read is checked against its
//! name (its sha256) before it is decoded: a corrupt repository is an error naming
//! the object, never wrong output.

pub mod checksum;
pub mod composefs;
pub mod objects;
mod refs;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};

pub use checksum::Checksum;
pub use objects::{Commit, DirEntry, DirMeta, DirTree, FileEntry, FileKind, FileMeta, ObjectError, Xattrs};

/// How a repository stores its file objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoMode {
    /// Files are real files with their real owner, mode and xattrs.
    Bare,
    /// Files are owned by the repo owner; real metadata in `user.ostreemeta`.
    BareUser,
    /// Like bare-user without the metadata xattr: uid/gid 0, no xattrs.
    BareUserOnly,
    /// Files are `.filez`: a metadata header then a raw deflate stream.
    Archive,
    /// A composefs repository (bootc's native backend): images, whose objects
    /// livefs makes as it reads them (see [`composefs`]).
    Composefs,
}

impl RepoMode {
    fn parse(s: &str) -> Option<RepoMode> {
        Some(match s {
            "bare" => RepoMode::Bare,
            "bare-user" => RepoMode::BareUser,
            "bare-user-only" => RepoMode::BareUserOnly,
            "archive" | "archive-z2" => RepoMode::Archive,
            _ => return None,
        })
    }
}

/// The kinds of object livefs reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Commit,
    DirTree,
    DirMeta,
    File,
}

/// Typed repository errors, for callers that branch on them.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("object {0} is missing{hint}", hint = if *.1 { " (its commit is partial: state/*.commitpartial)" } else { "" })]
    MissingObject(ObjectName, bool),
    #[error("object {0} is corrupt: its content has sha256 {1}")]
    Corrupt(ObjectName, Checksum),
    #[error("object {0} is malformed: {1}")]
    Malformed(ObjectName, ObjectError),
    #[error("refspec '{0}' not found")]
    RefNotFound(String),
    #[error("refspec '{0}' is ambiguous: it is a prefix of {1} commits")]
    AmbiguousRev(String, usize),
    #[error("invalid refspec '{0}'")]
    InvalidRef(String),
    #[error("commit {0} has no parent (in '{1}')")]
    NoParent(Checksum, String),
}

/// An object's checksum and its file name extension, as OSTree names it on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectName {
    pub checksum: Checksum,
    pub ext: &'static str,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.checksum, self.ext)
    }
}

/// An open OSTree repository.
#[derive(Debug)]
pub struct Repo {
    path: PathBuf,
    dir: OwnedFd,
    objects: OwnedFd,
    mode: RepoMode,
    /// File metadata already read: planning, checking and writing a file all need
    /// it, and reading it costs several syscalls.
    file_meta_cache: std::sync::Mutex<std::collections::HashMap<Checksum, FileMeta>>,
    /// A composefs repository's images and the objects made from them.
    store: Option<composefs::Store>,
}

impl Repo {
    /// Opens the repository at `path`, reading its `config` (an OSTree
    /// repository) or its `meta.json` (a composefs one).
    pub fn open(path: &Path) -> anyhow::Result<Repo> {
        let dir = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("cannot open repository {}", path.display()))?;
        if composefs::is_store(path) {
            let store = composefs::Store::open(path)?;
            let objects = crate::dirfd::open_dir(dir.as_fd(), "objects")
                .with_context(|| format!("cannot open {}/objects", path.display()))?;
            let mode = RepoMode::Composefs;
            return Ok(Repo {
                path: path.to_path_buf(),
                dir,
                objects,
                mode,
                file_meta_cache: Default::default(),
                store: Some(store),
            });
        }
        let config = match crate::dirfd::read(dir.as_fd(), "config") {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{} is not an OSTree repository: it has no config file", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}/config", path.display())),
        };
        let config = String::from_utf8_lossy(&config);
        let core = ini_section(&config, "core");
        if let Some(parent) = core.iter().find(|(k, _)| *k == "parent").map(|(_, v)| *v) {
            bail!(
                "repository {} has a parent repository (parent={parent}), which livefs does not support",
                path.display()
            );
        }
        let mode = match core.iter().find(|(k, _)| *k == "mode").map(|(_, v)| *v) {
            // OSTree's default when no mode is written is bare.
            None => RepoMode::Bare,
            Some(m) => RepoMode::parse(m).with_context(|| {
                format!("repository {} has unknown mode '{m}' (in {}/config)", path.display(), path.display())
            })?,
        };
        let objects = crate::dirfd::open_dir(dir.as_fd(), "objects")
            .with_context(|| format!("cannot open {}/objects", path.display()))?;
        Ok(Repo { path: path.to_path_buf(), dir, objects, mode, file_meta_cache: Default::default(), store: None })
    }

    /// Whether file objects are named by the SHA-256 of their content (OSTree):
    /// then a checkout checks what it writes against the name. A composefs
    /// image's content is its repository's objects, which overlayfs checks
    /// against their fs-verity digest where the repository enforces it.
    pub fn names_content(&self) -> bool {
        self.store.is_none()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a version keeps the defaults `/etc` is merged from: OSTree moves
    /// them to `/usr/etc` at commit time; a composefs image (bootc's native
    /// backend, made from a container image) has them in `/etc`.
    pub fn etc_defaults(&self) -> &'static str {
        match self.store {
            Some(_) => "/etc",
            None => "/usr/etc",
        }
    }

    /// Reads the commits `ids` ahead, together where that helps: a composefs
    /// repository makes each image's objects on a thread of its own. Errors are
    /// left to the reads that follow, which name them.
    pub fn read_ahead(&self, ids: &[Checksum]) {
        if let Some(store) = &self.store {
            let _ = store.make(ids);
        }
    }

    /// The composefs repository, when this is one.
    pub fn store(&self) -> Option<&composefs::Store> {
        self.store.as_ref()
    }

    pub fn mode(&self) -> RepoMode {
        self.mode
    }

    fn name(&self, checksum: Checksum, ty: ObjectType) -> ObjectName {
        let ext = match ty {
            ObjectType::Commit => "commit",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::File if self.mode == RepoMode::Archive => "filez",
            ObjectType::File => "file",
        };
        ObjectName { checksum, ext }
    }

    fn rel_path(name: &ObjectName) -> String {
        let hex = name.checksum.to_hex();
        format!("{}/{}.{}", &hex[..2], &hex[2..], name.ext)
    }

    /// Whether `state/CHECKSUM.commitpartial` marks this commit as incomplete.
    pub fn is_partial(&self, commit: Checksum) -> bool {
        self.store.is_none()
            && rustix::fs::accessat(
                &self.dir,
                format!("state/{commit}.commitpartial"),
                rustix::fs::Access::EXISTS,
                rustix::fs::AtFlags::empty(),
            )
            .is_ok()
    }

    fn missing(&self, name: ObjectName) -> anyhow::Error {
        RepoError::MissingObject(name, self.any_partial()).into()
    }

    /// Whether any commit is partial: a missing object is then expected, and said so.
    fn any_partial(&self) -> bool {
        std::fs::read_dir(self.path.join("state"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".commitpartial")))
            .unwrap_or(false)
    }

    /// Reads a metadata object's bytes and checks them against the object's name.
    fn read_verified(&self, checksum: Checksum, ty: ObjectType) -> anyhow::Result<Vec<u8>> {
        let name = self.name(checksum, ty);
        let data = match crate::dirfd::read(self.objects.as_fd(), &Self::rel_path(&name)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.missing(name)),
            Err(e) => return Err(e).with_context(|| format!("cannot read object {name}")),
        };
        let actual = Checksum::sha256(Sha256::digest(&data).into());
        if actual != checksum {
            return Err(RepoError::Corrupt(name, actual).into());
        }
        Ok(data)
    }

    pub fn read_commit(&self, checksum: Checksum) -> anyhow::Result<Commit> {
        if let Some(store) = &self.store {
            return store.commit(checksum);
        }
        let data = self.read_verified(checksum, ObjectType::Commit)?;
        Commit::parse(&data).map_err(|e| RepoError::Malformed(self.name(checksum, ObjectType::Commit), e).into())
    }

    pub fn read_dirtree(&self, checksum: Checksum) -> anyhow::Result<DirTree> {
        if let Some(store) = &self.store {
            return store.dirtree(checksum);
        }
        let data = self.read_verified(checksum, ObjectType::DirTree)?;
        DirTree::parse(data).map_err(|e| RepoError::Malformed(self.name(checksum, ObjectType::DirTree), e).into())
    }

    pub fn read_dirmeta(&self, checksum: Checksum) -> anyhow::Result<DirMeta> {
        if let Some(store) = &self.store {
            return store.dirmeta(checksum);
        }
        let data = self.read_verified(checksum, ObjectType::DirMeta)?;
        DirMeta::parse(&data).map_err(|e| RepoError::Malformed(self.name(checksum, ObjectType::DirMeta), e).into())
    }

    /// Reads a file object's metadata (type, size, owner, mode, xattrs, symlink
    /// target) without reading its content.
    pub fn read_file_meta(&self, checksum: Checksum) -> anyhow::Result<FileMeta> {
        let cache = || self.file_meta_cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(m) = cache().get(&checksum) {
            return Ok(m.clone());
        }
        let meta = self.load_file_meta(checksum)?;
        cache().insert(checksum, meta.clone());
        Ok(meta)
    }

    fn load_file_meta(&self, checksum: Checksum) -> anyhow::Result<FileMeta> {
        if let Some(store) = &self.store {
            return Ok(store.file(checksum)?.0);
        }
        let name = self.name(checksum, ObjectType::File);
        let rel = Self::rel_path(&name);
        let malformed = |e: ObjectError| -> anyhow::Error { RepoError::Malformed(name, e).into() };
        let not_found = |e: rustix::io::Errno| -> anyhow::Error {
            if e == rustix::io::Errno::NOENT {
                self.missing(name)
            } else {
                anyhow::Error::new(e).context(format!("cannot read object {name}"))
            }
        };
        let meta = match self.mode {
            RepoMode::Bare | RepoMode::BareUserOnly => {
                let st = rustix::fs::statat(&self.objects, &rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(not_found)?;
                let kind = match st.st_mode & objects::S_IFMT {
                    objects::S_IFLNK => {
                        let t = rustix::fs::readlinkat(&self.objects, &rel, Vec::new()).map_err(not_found)?;
                        FileKind::Symlink { target: objects::utf8_target(t.as_bytes()).map_err(malformed)? }
                    }
                    objects::S_IFREG => FileKind::Regular { size: st.st_size as u64 },
                    _ => return Err(malformed(ObjectError::Invalid("not a regular file or symlink"))),
                };
                if self.mode == RepoMode::Bare {
                    let xattrs = crate::xattrs::of_path(&self.path.join("objects").join(&rel))
                        .with_context(|| format!("cannot read xattrs of object {name}"))?;
                    FileMeta { kind, uid: st.st_uid, gid: st.st_gid, mode: st.st_mode, xattrs }
                } else {
                    FileMeta { kind, uid: 0, gid: 0, mode: st.st_mode, xattrs: Vec::new() }
                }
            }
            RepoMode::BareUser => {
                let fd = rustix::fs::openat(
                    &self.objects,
                    &rel,
                    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(not_found)?;
                let raw = crate::xattrs::get_fd(fd.as_fd(), "user.ostreemeta")
                    .with_context(|| format!("object {name} has no user.ostreemeta xattr"))?;
                let (uid, gid, mode, xattrs) = objects::parse_ostreemeta(&raw).map_err(malformed)?;
                let kind = if mode & objects::S_IFMT == objects::S_IFLNK {
                    let mut content = Vec::new();
                    File::from(fd).read_to_end(&mut content).with_context(|| format!("cannot read object {name}"))?;
                    let target = content.strip_suffix(&[0]).unwrap_or(&content);
                    FileKind::Symlink { target: objects::utf8_target(target).map_err(malformed)? }
                } else {
                    FileKind::Regular { size: rustix::fs::fstat(&fd).map_err(not_found)?.st_size as u64 }
                };
                FileMeta { kind, uid, gid, mode, xattrs }
            }
            RepoMode::Archive => {
                let fd = rustix::fs::openat(&self.objects, &rel, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(not_found)?;
                let header =
                    read_archive_header(&mut File::from(fd)).with_context(|| format!("cannot read object {name}"))?;
                objects::parse_archive_header(&header).map_err(malformed)?.0
            }
            RepoMode::Composefs => unreachable!("read from the store above"),
        };
        meta.check_mode().map_err(malformed)?;
        Ok(meta)
    }

    /// Opens a file object for checkout: its metadata and a stream of its content.
    pub fn open_file(&self, checksum: Checksum) -> anyhow::Result<(FileMeta, Content)> {
        if let Some(store) = &self.store {
            let (meta, source) = store.file(checksum)?;
            let content = match source {
                composefs::Source::Inline(b) => Content::Inline(std::io::Cursor::new(b)),
                composefs::Source::Object(rel) => Content::Raw(store.open_object(&rel)?),
                composefs::Source::None => Content::Symlink,
            };
            return Ok((meta, content));
        }
        let meta = self.read_file_meta(checksum)?;
        if meta.is_symlink() {
            return Ok((meta, Content::Symlink));
        }
        let name = self.name(checksum, ObjectType::File);
        let fd = rustix::fs::openat(
            &self.objects,
            Self::rel_path(&name),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => self.missing(name),
            e => anyhow::Error::new(e).context(format!("cannot open object {name}")),
        })?;
        let mut file = File::from(fd);
        if self.mode != RepoMode::Archive {
            return Ok((meta, Content::Raw(file)));
        }
        // Skip the header (already decoded) to reach the raw deflate stream.
        read_archive_header(&mut file).with_context(|| format!("cannot read object {name}"))?;
        let stream = flate2::read::DeflateDecoder::new(std::io::BufReader::with_capacity(128 << 10, file));
        Ok((meta, Content::Deflate(Box::new(stream))))
    }

    /// The repository's `objects` directory.
    pub fn objects(&self) -> BorrowedFd<'_> {
        self.objects.as_fd()
    }

    /// Hardlinks the file object `checksum` as `name` in `dir`, as a deployment
    /// checkout shares it, from `objects` (this repository's objects directory,
    /// through the mount `dir` is on; `None`: the
    /// one the repository was opened with), when the repository's objects are the
    /// files themselves with their real owner, mode and xattrs (`bare` mode). Returns `false` when a link is not possible here (the caller then
    /// copies). Metadata objects are checked on read; file content is trusted as
    /// the deployment itself trusts it (`ostree fsck` verifies it).
    pub fn link_file(
        &self,
        objects: Option<BorrowedFd<'_>>,
        checksum: Checksum,
        dir: BorrowedFd<'_>,
        name: &str,
    ) -> anyhow::Result<bool> {
        if self.mode != RepoMode::Bare {
            return Ok(false);
        }
        let object = self.name(checksum, ObjectType::File);
        let objects = objects.unwrap_or(self.objects.as_fd());
        match rustix::fs::linkat(objects, Self::rel_path(&object), dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::XDEV | rustix::io::Errno::MLINK | rustix::io::Errno::PERM) => Ok(false),
            Err(rustix::io::Errno::NOENT) => Err(self.missing(object)),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot link object {object} as {name}"))),
        }
    }

    /// Full checksums of the commit objects whose hex name starts with `prefix`
    /// (a composefs repository's: of its images).
    pub fn commits_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<Checksum>> {
        if let Some(store) = &self.store {
            return Ok(store.images()?.into_iter().filter(|c| c.to_hex().starts_with(prefix)).collect());
        }
        let mut out = Vec::new();
        let dirs: Vec<String> = if prefix.len() >= 2 {
            vec![prefix[..2].to_string()]
        } else {
            (0..=255u8).map(|b| format!("{b:02x}")).filter(|d| d.starts_with(prefix)).collect()
        };
        for d in dirs {
            let rest = prefix.get(2..).unwrap_or("");
            let entries = match std::fs::read_dir(self.path.join("objects").join(&d)) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot list objects/{d}")),
            };
            for e in entries {
                let e = e.with_context(|| format!("cannot list objects/{d}"))?;
                let fname = e.file_name();
                let Some(stem) = fname.to_str().and_then(|f| f.strip_suffix(".commit")) else {
                    continue;
                };
                if stem.starts_with(rest) {
                    if let Ok(c) = format!("{d}{stem}").parse() {
                        out.push(c);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Resolves a revision: a full checksum, a unique prefix of a commit checksum,
    /// a ref (`NAME`, `REMOTE:NAME`, or a path under `refs/remotes` or `refs/mirrors`),
    /// any of those followed by `^` (the parent; repeatable).
    pub fn resolve_rev(&self, rev: &str) -> anyhow::Result<Checksum> {
        match &self.store {
            Some(store) => store.resolve(rev),
            None => refs::resolve(self, rev),
        }
    }

    /// Points the local ref `name` at `target` (`None` deletes it): in a
    /// composefs repository, `images/refs/NAME` (a garbage collection root).
    pub fn set_ref(&self, name: &str, target: Option<Checksum>) -> anyhow::Result<()> {
        match &self.store {
            Some(store) => store.set_ref(name, target),
            None => refs::set(self, name, target),
        }
    }

    /// All refs, as (name, checksum): local refs by name, remote ones as `REMOTE:NAME`.
    pub fn list_refs(&self) -> anyhow::Result<Vec<(String, Checksum)>> {
        match self.store {
            Some(_) => Ok(Vec::new()),
            None => refs::list(self),
        }
    }
}

/// A file object's content, ready to stream into a checkout.
pub enum Content {
    /// Bare modes: the object file itself (its content is the file's content), so
    /// it can be copied with `copy_file_range` (a reflink where the filesystem can).
    Raw(File),
    /// Archive mode: the inflated stream.
    Deflate(Box<flate2::read::DeflateDecoder<std::io::BufReader<File>>>),
    /// A composefs image's small file: its bytes, from the image.
    Inline(std::io::Cursor<Vec<u8>>),
    /// Symlinks have no content; the target is in the metadata.
    Symlink,
}

/// Reads an archive `.filez` header: the u32 length, the padding and the header.
fn read_archive_header(f: &mut File) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 8];
    f.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    // A header holds a symlink target and xattrs: far below this bound in practice.
    if len > 16 << 20 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "file header length is implausible"));
    }
    let mut out = head.to_vec();
    out.resize(8 + len, 0);
    f.read_exact(&mut out[8..])?;
    Ok(out)
}

/// The `key=value` pairs of one `[section]` of an ini file such as a repo `config`.
pub fn ini_section<'a>(text: &'a str, section: &str) -> Vec<(&'a str, &'a str)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim(), v.trim()));
            }
        }
    }
    out
}
