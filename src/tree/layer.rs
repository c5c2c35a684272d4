//! The `/usr` layer: a directory, built off to the side, that makes the booted
//! deployment's `usr` look like a target commit's when an overlay stacks it on
//! top (`lowerdir=LAYER:DEPLOYMENT/usr`).
//!
//! - New and changed files and symlinks are **hardlinks of the repository's
//!   objects** (bare mode: the object already has the file's owner, mode, xattrs
//!   and mtime 0, exactly what the deployment checkout itself shares); a copy is
//!   made only where a link is impossible (other repository modes, another
//!   filesystem).
//! - Removals are overlay whiteouts (character devices 0:0); a directory that
//!   replaces a file, or a file that replaces a directory, hides what is below by
//!   itself (overlayfs merges only directory over directory).
//! - Every directory in the layer carries the target's metadata for its path: a
//!   merged directory takes its attributes (and SELinux label) from the topmost
//!   layer that has it, the layer's root included.
//!
//! The layer is written completely before anything mounts it: nothing is ever
//! written into a layer in use. An interrupted build is just an unused directory,
//! removed later. It is not synced: the overlay lives only until the next boot,
//! which throws the layer away, and until then the page cache is coherent.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::Context;
use rustix::fs::{FileType, Mode};
use serde::{Deserialize, Serialize};

use crate::fault;
use crate::repo::{Checksum, Repo};
use crate::tree::checkout;
use crate::tree::diff::{NodeKind, TreeRoot};
use crate::tree::plan::{OpKind, Plan};

/// What building a layer wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Files and symlinks that are hardlinks of repository objects.
    pub files_linked: u64,
    /// Their content bytes: shared with the repository, not written.
    pub bytes_linked: u64,
    /// Files and symlinks written as copies (no link was possible).
    pub files_copied: u64,
    /// Content bytes actually written.
    pub bytes_written: u64,
    pub directories: u64,
    pub whiteouts: u64,
}

/// Builds into the empty directory `layer` what turns `usr` of the commit whose
/// `/usr` is `base` into `usr` of `target`: `plan` is that difference (with any
/// operation livefs keeps out already removed). Files are linked from `objects`,
/// the repository's objects seen through the mount `layer` is on (`None`: the
/// repository's own; see [`Repo::link_file`]).
pub fn build(
    repo: &Repo,
    objects: Option<BorrowedFd<'_>>,
    target: TreeRoot,
    plan: &Plan,
    layer: BorrowedFd<'_>,
) -> anyhow::Result<LayerStats> {
    let mut b = Builder {
        repo,
        objects,
        layer,
        target,
        dirs: HashSet::new(),
        nodes: HashMap::new(),
        last: None,
        stats: LayerStats::default(),
    };
    // The merged root takes the layer root's attributes: the target's /usr's.
    let root_meta = repo.read_dirmeta(target.meta)?;
    checkout::set_dir_meta(layer, &root_meta, &[]).context("cannot set the layer's root metadata")?;
    for op in &plan.ops {
        b.op(op.kind, &op.path, op.to, op.footprint.bytes).with_context(|| {
            format!("cannot build {} in the layer", crate::quote::path(&format!("/usr{}", op.path)))
        })?;
    }
    Ok(b.stats)
}

struct Builder<'a> {
    repo: &'a Repo,
    objects: Option<BorrowedFd<'a>>,
    layer: BorrowedFd<'a>,
    target: TreeRoot,
    /// Directories of the layer made so far, by path relative to its root (paths,
    /// not fds: a large update must not hold one fd per directory).
    dirs: HashSet<String>,
    /// The target's directories looked up so far, by path: each dirtree on the
    /// way to a new directory is read once, not once per directory below it.
    nodes: HashMap<String, TreeRoot>,
    /// The directory of the previous operation.
    last: Option<(String, OwnedFd)>,
    stats: LayerStats,
}

impl Builder<'_> {
    /// One operation of the plan; `bytes` is the content it brings.
    fn op(&mut self, kind: OpKind, path: &str, to: Option<NodeKind>, bytes: u64) -> anyhow::Result<()> {
        let (dir, name) = crate::dirfd::split_path(path);
        if name.is_empty() {
            return Ok(()); // the root: its metadata is set already
        }
        // Operations on one directory are adjacent: reuse its fd.
        let parent = match self.last.take() {
            Some((d, fd)) if d == dir => fd,
            _ => self.dir(dir)?,
        };
        self.op_in(kind, path, parent.as_fd(), name, to, bytes)?;
        self.last = Some((dir.to_string(), parent));
        Ok(())
    }

    fn op_in(
        &mut self,
        kind: OpKind,
        path: &str,
        parent: BorrowedFd<'_>,
        name: &str,
        to: Option<NodeKind>,
        bytes: u64,
    ) -> anyhow::Result<()> {
        match (kind, to) {
            (OpKind::Remove, _) => {
                rustix::fs::mknodat(parent, name, FileType::CharacterDevice, Mode::empty(), 0)
                    .with_context(|| format!("cannot create a whiteout for {name}"))?;
                fault::mutation();
                self.stats.whiteouts += 1;
            }
            (_, Some(NodeKind::File(c))) => self.file(parent, name, c, bytes)?,
            (OpKind::MakeDir | OpKind::SetDirMeta, Some(NodeKind::Dir { .. })) => {
                // Made with the target's metadata, by path (contents come as their own operations).
                self.dir(path.trim_start_matches('/'))?;
            }
            (_, Some(NodeKind::Dir { tree, meta })) => {
                // A directory where the booted commit has a file: complete in the layer.
                let fd = checkout::make_dir(self.repo, parent, name, meta)?;
                self.stats.directories += 1;
                self.populate(fd.as_fd(), tree)?;
            }
            (_, None) => anyhow::bail!("an operation without a target"),
        }
        Ok(())
    }

    /// A hardlink of the object (of `size` content bytes), else a copy.
    fn file(&mut self, dir: BorrowedFd<'_>, name: &str, c: Checksum, size: u64) -> anyhow::Result<()> {
        if self.repo.link_file(self.objects, c, dir, name)? {
            fault::mutation();
            self.stats.files_linked += 1;
            self.stats.bytes_linked += size;
        } else {
            self.stats.bytes_written += checkout::write_file(self.repo, dir, name, c)?;
            self.stats.files_copied += 1;
        }
        Ok(())
    }

    fn populate(&mut self, dir: BorrowedFd<'_>, tree: Checksum) -> anyhow::Result<()> {
        let t = self.repo.read_dirtree(tree)?;
        for f in t.files() {
            let size = self.repo.read_file_meta(f.checksum)?.size();
            self.file(dir, f.name, f.checksum, size)?;
        }
        for d in t.dirs() {
            let fd = checkout::make_dir(self.repo, dir, d.name, d.meta)?;
            self.stats.directories += 1;
            self.populate(fd.as_fd(), d.tree).with_context(|| format!("in {}", d.name))?;
        }
        Ok(())
    }

    /// The layer's directory at `rel` (no leading `/`; `""` is the root), made
    /// with its ancestors as needed, each with the target's metadata for it.
    fn dir(&mut self, rel: &str) -> anyhow::Result<OwnedFd> {
        if rel.is_empty() {
            return Ok(rustix::io::dup(self.layer)?);
        }
        if self.dirs.contains(rel) {
            return crate::dirfd::open_dir(self.layer, rel).with_context(|| format!("cannot open {rel} in the layer"));
        }
        let (parent, name) = crate::dirfd::split_path(rel);
        let parent_fd = self.dir(parent)?;
        let meta = self.target_meta(rel)?;
        let fd = checkout::make_dir(self.repo, parent_fd.as_fd(), name, meta)?;
        self.stats.directories += 1;
        self.dirs.insert(rel.to_string());
        Ok(fd)
    }

    /// The target's dirmeta for the directory at `rel` under `/usr`.
    fn target_meta(&mut self, rel: &str) -> anyhow::Result<Checksum> {
        Ok(self.target_node(rel)?.meta)
    }

    /// The target's directory at `rel` (no leading `/`; `""` is `/usr`).
    fn target_node(&mut self, rel: &str) -> anyhow::Result<TreeRoot> {
        if rel.is_empty() {
            return Ok(self.target);
        }
        if let Some(node) = self.nodes.get(rel) {
            return Ok(*node);
        }
        let (parent, name) = crate::dirfd::split_path(rel);
        let t = self.repo.read_dirtree(self.target_node(parent)?.tree)?;
        let d = t.find_dir(name).with_context(|| format!("the target has no directory /usr/{rel}"))?;
        let node = TreeRoot { tree: d.tree, meta: d.meta };
        self.nodes.insert(rel.to_string(), node);
        Ok(node)
    }
}
