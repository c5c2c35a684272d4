//! Differences between two OSTree trees, computed on checksums alone.
//!
//! The walk follows `ostree diff` exactly (same entries, same order) so that its
//! output can replace it: children of the old tree in dirtree order (files, then
//! directories), recursing into directories present in both; then the new tree's
//! children that the old one lacks, added directories listed recursively. A
//! subtree whose dirtree checksum is equal on both sides is skipped without being
//! read, so the cost grows with the changed directories, not with the tree.
//!
//! Unlike `ostree diff`, a change of the root directory's own metadata is reported
//! (as [`Diff::root_meta`]).

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::repo::{Checksum, DirTree, FileKind, Repo};

/// What a path is on one side of a diff, by the checksums that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file or symlink: its content object.
    File(Checksum),
    /// A directory: its dirtree (contents) and dirmeta (owner, mode, xattrs).
    Dir { tree: Checksum, meta: Checksum },
}

/// A path present on only one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Absolute path inside the tree, e.g. `/usr/bin/foo`.
    pub path: String,
    pub kind: NodeKind,
}

/// A path present on both sides with different content, metadata or type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modified {
    pub path: String,
    pub from: NodeKind,
    pub to: NodeKind,
}

/// The difference between two trees, in `ostree diff` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// The two roots, when the root directory's own metadata changed.
    pub root_meta: Option<(TreeRoot, TreeRoot)>,
    pub modified: Vec<Modified>,
    /// Removed paths; a removed directory is one entry (its contents are implied).
    pub removed: Vec<Node>,
    /// Added paths; an added directory is followed by all of its contents.
    pub added: Vec<Node>,
}

/// A tree root: its dirtree and dirmeta checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRoot {
    pub tree: Checksum,
    pub meta: Checksum,
}

impl TreeRoot {
    /// The root of a commit's tree.
    pub fn of_commit(commit: &crate::repo::Commit) -> TreeRoot {
        TreeRoot { tree: commit.root_tree, meta: commit.root_meta }
    }

    /// The directory at `subpath` (e.g. `/usr`) inside a commit's tree.
    pub fn of_subpath(repo: &Repo, commit: &crate::repo::Commit, subpath: &str) -> anyhow::Result<TreeRoot> {
        let mut root = TreeRoot::of_commit(commit);
        for component in subpath.split('/').filter(|c| !c.is_empty()) {
            let t = repo.read_dirtree(root.tree)?;
            let d = t.find_dir(component).with_context(|| format!("{subpath} is not a directory in the commit"))?;
            root = TreeRoot { tree: d.tree, meta: d.meta };
        }
        Ok(root)
    }
}

/// Trees deeper than this are refused: PATH_MAX allows no more, and a hostile
/// repository must not be able to exhaust the stack.
const MAX_DEPTH: usize = 2048;

impl Diff {
    /// Diffs two tree roots (a commit's root, or any subdirectory of one).
    pub fn trees(repo: &Repo, from: TreeRoot, to: TreeRoot) -> anyhow::Result<Diff> {
        let mut d = Diff::default();
        if from.meta != to.meta {
            d.root_meta = Some((from, to));
        }
        let mut path = String::from("/");
        d.walk(repo, from.tree, to.tree, &mut path, 0, true)?;
        Ok(d)
    }

    /// Diffs the root trees of two commits.
    pub fn commits(repo: &Repo, from: Checksum, to: Checksum) -> anyhow::Result<Diff> {
        repo.read_ahead(&[from, to]);
        let a = repo.read_commit(from).with_context(|| format!("cannot read commit {from}"))?;
        let b = repo.read_commit(to).with_context(|| format!("cannot read commit {to}"))?;
        Diff::trees(
            repo,
            TreeRoot { tree: a.root_tree, meta: a.root_meta },
            TreeRoot { tree: b.root_tree, meta: b.root_meta },
        )
    }

    pub fn is_empty(&self) -> bool {
        self.root_meta.is_none() && self.modified.is_empty() && self.removed.is_empty() && self.added.is_empty()
    }

    /// Appends another diff's entries (of a later subtree, in walk order).
    fn append(&mut self, other: Diff) {
        self.modified.extend(other.modified);
        self.removed.extend(other.removed);
        self.added.extend(other.added);
    }

    /// Walks two directories. With `fan_out`, the first directory with several
    /// changed subdirectories walks them on all cores (each into its own diff,
    /// appended in order, so the output is the same as a sequential walk).
    fn walk(
        &mut self,
        repo: &Repo,
        a: Checksum,
        b: Checksum,
        path: &mut String,
        depth: usize,
        fan_out: bool,
    ) -> anyhow::Result<()> {
        if a == b {
            return Ok(());
        }
        if depth > MAX_DEPTH {
            bail!("tree is deeper than {MAX_DEPTH} levels at {path}");
        }
        let ta = repo.read_dirtree(a).with_context(|| format!("cannot read directory {path}"))?;
        let tb = repo.read_dirtree(b).with_context(|| format!("cannot read directory {path}"))?;
        let base = path.len();
        // Each pass looks names up in ascending order: one merge per pass.
        let mut other = tb.seek();
        for f in ta.files() {
            push(path, base, f.name);
            let from = NodeKind::File(f.checksum);
            if let Some(g) = other.file(f.name) {
                if g.checksum != f.checksum {
                    self.modified.push(Modified { path: path.clone(), from, to: NodeKind::File(g.checksum) });
                }
            } else if let Some(e) = other.dir(f.name) {
                let to = NodeKind::Dir { tree: e.tree, meta: e.meta };
                self.modified.push(Modified { path: path.clone(), from, to });
            } else {
                self.removed.push(Node { path: path.clone(), kind: from });
            }
        }
        let mut subdiffs = match fan_out {
            true => Self::fan_out(repo, &ta, &tb, path, base, depth)?,
            false => None,
        };
        let mut other = tb.seek();
        for d in ta.dirs() {
            push(path, base, d.name);
            let from = NodeKind::Dir { tree: d.tree, meta: d.meta };
            if let Some(e) = other.dir(d.name) {
                if e.meta != d.meta {
                    let to = NodeKind::Dir { tree: e.tree, meta: e.meta };
                    self.modified.push(Modified { path: path.clone(), from, to });
                }
                if let (true, Some(subs)) = (e.tree != d.tree, subdiffs.as_mut()) {
                    self.append(subs.next().context("a subtree diff is missing")?);
                } else {
                    self.walk(repo, d.tree, e.tree, path, depth + 1, fan_out)?;
                }
            } else if let Some(g) = other.file(d.name) {
                self.modified.push(Modified { path: path.clone(), from, to: NodeKind::File(g.checksum) });
            } else {
                self.removed.push(Node { path: path.clone(), kind: from });
            }
        }
        let mut before = ta.seek();
        for f in tb.files() {
            if before.file(f.name).is_none() && before.dir(f.name).is_none() {
                push(path, base, f.name);
                self.added.push(Node { path: path.clone(), kind: NodeKind::File(f.checksum) });
            }
        }
        let mut before = ta.seek();
        for d in tb.dirs() {
            if before.file(d.name).is_none() && before.dir(d.name).is_none() {
                push(path, base, d.name);
                self.added.push(Node { path: path.clone(), kind: NodeKind::Dir { tree: d.tree, meta: d.meta } });
                self.add_all(repo, d.tree, path, depth + 1)?;
            }
        }
        path.truncate(base);
        Ok(())
    }

    /// The diffs of the subdirectories that changed on both sides, walked on all
    /// cores, in order; `None` when there are too few of them to share out.
    fn fan_out(
        repo: &Repo,
        ta: &DirTree,
        tb: &DirTree,
        path: &mut String,
        base: usize,
        depth: usize,
    ) -> anyhow::Result<Option<std::vec::IntoIter<Diff>>> {
        let mut other = tb.seek();
        let changed: Vec<(String, Checksum, Checksum)> = ta
            .dirs()
            .filter_map(|d| other.dir(d.name).filter(|e| e.tree != d.tree).map(|e| (d.name, d.tree, e.tree)))
            .map(|(name, x, y)| {
                push(path, base, name);
                (path.clone(), x, y)
            })
            .collect();
        if crate::parallel::threads_for(changed.len(), 2) <= 1 {
            return Ok(None);
        }
        let subdiffs = crate::parallel::map_chunks_min(&changed, 2, |chunk| {
            chunk
                .iter()
                .map(|(p, x, y)| {
                    let mut sub = Diff::default();
                    sub.walk(repo, *x, *y, &mut p.clone(), depth + 1, false)?;
                    Ok(sub)
                })
                .collect()
        })?;
        Ok(Some(subdiffs.into_iter()))
    }

    /// Lists a whole added subtree, in `ostree diff` order.
    fn add_all(&mut self, repo: &Repo, tree: Checksum, path: &mut String, depth: usize) -> anyhow::Result<()> {
        if depth > MAX_DEPTH {
            bail!("tree is deeper than {MAX_DEPTH} levels at {path}");
        }
        let t = repo.read_dirtree(tree).with_context(|| format!("cannot read directory {path}"))?;
        let base = path.len();
        for f in t.files() {
            push(path, base, f.name);
            self.added.push(Node { path: path.clone(), kind: NodeKind::File(f.checksum) });
        }
        for d in t.dirs() {
            push(path, base, d.name);
            self.added.push(Node { path: path.clone(), kind: NodeKind::Dir { tree: d.tree, meta: d.meta } });
            self.add_all(repo, d.tree, path, depth + 1)?;
        }
        path.truncate(base);
        Ok(())
    }

    /// Writes the diff in `ostree diff`'s format (`M    /path` …), with the root's
    /// metadata change first as `M    /`.
    pub fn write_ostree_format(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        if self.root_meta.is_some() {
            writeln!(out, "M    /")?;
        }
        for m in &self.modified {
            writeln!(out, "M    {}", crate::quote::path(&m.path))?;
        }
        for n in &self.removed {
            writeln!(out, "D    {}", crate::quote::path(&n.path))?;
        }
        for n in &self.added {
            writeln!(out, "A    {}", crate::quote::path(&n.path))?;
        }
        Ok(())
    }

    /// Resolves every entry's type and size: what `--json` and `--stat` show.
    pub fn report(&self, repo: &Repo) -> anyhow::Result<DiffReport> {
        let mut r = DiffReport { root_metadata_changed: self.root_meta.is_some(), ..Default::default() };
        if self.root_meta.is_some() {
            r.summary.modified_dirs += 1;
        }
        for m in &self.modified {
            let from = entry_type(repo, &m.from, &m.path)?;
            let to = entry_type(repo, &m.to, &m.path)?;
            r.bytes_to_write += footprint(repo, &m.to, &m.path)?.bytes;
            match to {
                EntryType::Directory => r.summary.modified_dirs += 1,
                _ => r.summary.modified_files += 1,
            }
            r.modified.push(ModifiedEntry { path: m.path.clone(), from, to });
        }
        for n in &self.removed {
            let t = entry_type(repo, &n.kind, &n.path)?;
            match t {
                EntryType::Directory => r.summary.removed_dirs += 1,
                _ => r.summary.removed_files += 1,
            }
            r.removed.push(Entry { path: n.path.clone(), r#type: t });
        }
        for n in &self.added {
            let t = entry_type(repo, &n.kind, &n.path)?;
            match (&n.kind, t) {
                (_, EntryType::Directory) => r.summary.added_dirs += 1,
                (NodeKind::File(c), _) => {
                    r.summary.added_files += 1;
                    r.bytes_to_write += file_size(repo, *c, &n.path)?;
                }
                _ => {}
            }
            r.added.push(Entry { path: n.path.clone(), r#type: t });
        }
        Ok(r)
    }
}

fn push(path: &mut String, base: usize, name: &str) {
    path.truncate(base);
    if !path.ends_with('/') {
        path.push('/');
    }
    path.push_str(name);
}

fn file_size(repo: &Repo, c: Checksum, path: &str) -> anyhow::Result<u64> {
    Ok(repo.read_file_meta(c).with_context(|| format!("cannot read file {path}"))?.size())
}

fn entry_type(repo: &Repo, kind: &NodeKind, path: &str) -> anyhow::Result<EntryType> {
    Ok(match kind {
        NodeKind::Dir { .. } => EntryType::Directory,
        NodeKind::File(c) => match repo.read_file_meta(*c).with_context(|| format!("cannot read file {path}"))?.kind {
            FileKind::Regular { .. } => EntryType::File,
            FileKind::Symlink { .. } => EntryType::Symlink,
        },
    })
}

/// What writing a node costs: content bytes, bytes of space (content rounded up
/// to blocks, plus a block per entry) and entries (inodes). A directory counts
/// with its whole subtree (a file replaced by a directory writes all of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub bytes: u64,
    pub space: u64,
    pub entries: u64,
}

impl std::ops::AddAssign for Footprint {
    fn add_assign(&mut self, o: Footprint) {
        self.bytes += o.bytes;
        self.space += o.space;
        self.entries += o.entries;
    }
}

/// Filesystem block size assumed when estimating space.
pub const BLOCK: u64 = 4096;

/// The [`Footprint`] of writing `node` (at `path`, for error messages).
pub fn footprint(repo: &Repo, node: &NodeKind, path: &str) -> anyhow::Result<Footprint> {
    let file = |c: Checksum| -> anyhow::Result<Footprint> {
        let bytes = file_size(repo, c, path)?;
        Ok(Footprint { bytes, space: (bytes.div_ceil(BLOCK) * BLOCK).max(BLOCK), entries: 1 })
    };
    match node {
        NodeKind::File(c) => file(*c),
        NodeKind::Dir { tree, .. } => {
            let mut total = Footprint { bytes: 0, space: BLOCK, entries: 1 };
            let mut stack = vec![*tree];
            while let Some(t) = stack.pop() {
                let t = repo.read_dirtree(t).with_context(|| format!("cannot read directory {path}"))?;
                for f in t.files() {
                    total += file(f.checksum)?;
                }
                for d in t.dirs() {
                    total += Footprint { bytes: 0, space: BLOCK, entries: 1 };
                    stack.push(d.tree);
                }
            }
            Ok(total)
        }
    }
}

/// The type of a path, as the JSON report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Symlink,
    Directory,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub path: String,
    pub r#type: EntryType,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModifiedEntry {
    pub path: String,
    pub from: EntryType,
    pub to: EntryType,
}

/// Counts of listed entries by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub modified_files: usize,
    pub modified_dirs: usize,
    pub removed_files: usize,
    pub removed_dirs: usize,
    pub added_files: usize,
    pub added_dirs: usize,
}

/// A diff with every entry's type and the bytes an update would write.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiffReport {
    pub root_metadata_changed: bool,
    pub modified: Vec<ModifiedEntry>,
    pub removed: Vec<Entry>,
    pub added: Vec<Entry>,
    pub summary: Summary,
    /// Content bytes of added and changed files (directories replacing files
    /// count with their contents).
    pub bytes_to_write: u64,
}

impl DiffReport {
    /// The one-line summary of `livefs diff --stat`.
    pub fn stat_line(&self) -> String {
        let s = &self.summary;
        format!(
            "{} modified, {} removed, {} added ({} files, {} directories); {} to write",
            s.modified_files + s.modified_dirs,
            s.removed_files + s.removed_dirs,
            s.added_files + s.added_dirs,
            s.modified_files + s.removed_files + s.added_files,
            s.modified_dirs + s.removed_dirs + s.added_dirs,
            human_bytes(self.bytes_to_write)
        )
    }
}

/// `1536` → `1.5 KiB`: sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
