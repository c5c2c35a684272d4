//! The plan: the typed list of operations that turns a tree holding commit A's
//! content into one holding commit B's, and the preflight that checks it against
//! the live tree before anything is touched.
//!
//! Operations run in phases that never leave a path dangling: new directories
//! (parents first), new and changed files and symlinks, type changes between a
//! file and a directory, directory metadata changes, and removals last. Each
//! operation's state on disk is classified by the preflight as *to do* (the path
//! is as A has it), *done* (as B has it: a rerun after an interruption skips it) or
//! *drifted* (neither: refused unless forced).

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::dirfd::Entry;
use crate::repo::Repo;
use crate::tree::checkout::{self, XattrCheck};
use crate::tree::diff::{footprint, Diff, EntryType, Footprint, NodeKind, BLOCK};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Create a directory that A lacks.
    MakeDir,
    /// Create a file or symlink that A lacks.
    AddFile,
    /// Replace a file or symlink by another (content, metadata, or file↔symlink).
    ReplaceFile,
    /// Replace a file by a directory tree, or a directory tree by a file.
    ReplaceType,
    /// Change a directory's owner, mode or xattrs.
    SetDirMeta,
    /// Remove a file, symlink or directory tree.
    Remove,
}

impl OpKind {
    /// The execution phase; operations run phase by phase.
    pub fn phase(self) -> u8 {
        match self {
            OpKind::MakeDir => 0,
            OpKind::AddFile | OpKind::ReplaceFile => 1,
            OpKind::ReplaceType => 2,
            OpKind::SetDirMeta => 3,
            OpKind::Remove => 4,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            OpKind::MakeDir => "mkdir",
            OpKind::AddFile => "add",
            OpKind::ReplaceFile => "replace",
            OpKind::ReplaceType => "retype",
            OpKind::SetDirMeta => "chmeta",
            OpKind::Remove => "remove",
        }
    }
}

/// One operation on one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    /// Path relative to the tree's root, starting with `/` (`/` is the root itself).
    pub path: String,
    /// What A has at the path (`None` for an addition).
    pub from: Option<NodeKind>,
    /// What B has at the path (`None` for a removal).
    pub to: Option<NodeKind>,
    /// What the operation writes: content bytes, bytes of space (content rounded
    /// up to blocks, plus a block per new entry) and new entries (inodes).
    pub footprint: Footprint,
}

impl Op {
    /// The parent directory (relative, no leading `/`) and the final name.
    pub fn split(&self) -> (&str, &str) {
        crate::dirfd::split_path(&self.path)
    }

    /// The type of the entry after the operation (or before, for a removal).
    pub fn entry_type(&self, repo: &Repo) -> anyhow::Result<EntryType> {
        let node = self.to.or(self.from).context("operation without a node")?;
        Ok(match node {
            NodeKind::Dir { .. } => EntryType::Directory,
            NodeKind::File(c) => {
                if repo.read_file_meta(c)?.is_symlink() {
                    EntryType::Symlink
                } else {
                    EntryType::File
                }
            }
        })
    }
}

/// The operations of an update, in execution order, and what they will write.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// The sum of the operations' footprints.
    pub total: Footprint,
}

impl Plan {
    /// Builds the plan from a diff. Every dirtree a plan writes from is read (and
    /// so validated) here, before anything is touched.
    pub fn new(repo: &Repo, diff: &Diff) -> anyhow::Result<Plan> {
        let mut plan = Plan::default();
        if let Some((from, to)) = diff.root_meta {
            let node = |r: crate::tree::diff::TreeRoot| NodeKind::Dir { tree: r.tree, meta: r.meta };
            plan.push_op(OpKind::SetDirMeta, "/", Some(node(from)), Some(node(to)));
        }
        for m in &diff.modified {
            let kind = match (m.from, m.to) {
                (NodeKind::File(_), NodeKind::File(_)) => OpKind::ReplaceFile,
                (NodeKind::Dir { .. }, NodeKind::Dir { .. }) => OpKind::SetDirMeta,
                _ => OpKind::ReplaceType,
            };
            plan.push_op(kind, &m.path, Some(m.from), Some(m.to));
        }
        for n in &diff.added {
            let kind = match n.kind {
                NodeKind::Dir { .. } => OpKind::MakeDir,
                NodeKind::File(_) => OpKind::AddFile,
            };
            plan.push_op(kind, &n.path, None, Some(n.kind));
        }
        for n in diff.removed.iter().rev() {
            plan.push_op(OpKind::Remove, &n.path, Some(n.kind), None);
        }
        // Stable: keeps diff order (parents before children) within a phase.
        plan.ops.sort_by_key(|op| op.kind.phase());
        for op in &mut plan.ops {
            op.footprint = match (op.kind, op.to) {
                (OpKind::AddFile | OpKind::ReplaceFile | OpKind::ReplaceType, Some(to)) => {
                    footprint(repo, &to, &op.path)?
                }
                (OpKind::MakeDir, _) => Footprint { bytes: 0, space: BLOCK, entries: 1 },
                _ => Footprint::default(),
            };
            plan.total += op.footprint;
        }
        Ok(plan)
    }

    fn push_op(&mut self, kind: OpKind, path: &str, from: Option<NodeKind>, to: Option<NodeKind>) {
        self.ops.push(Op { kind, path: path.to_string(), from, to, footprint: Footprint::default() });
    }

    /// The operations and their status, as a dry run reports them.
    pub fn listing(&self, status: &[Status]) -> Vec<PlannedOp> {
        self.ops
            .iter()
            .zip(status)
            .map(|(op, st)| PlannedOp {
                op: op.kind.verb().to_string(),
                path: op.path.clone(),
                status: match st {
                    Status::Todo => "todo",
                    Status::Done => "done",
                    Status::Drifted(_) => "drifted",
                }
                .to_string(),
            })
            .collect()
    }
}

/// One operation of a plan, as a dry run reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedOp {
    /// `mkdir`, `add`, `replace`, `retype`, `chmeta` or `remove`.
    pub op: String,
    /// The path, relative to the tree's root (`/usr` for apply and reset).
    pub path: String,
    /// `todo`, `done` (an interrupted run did it) or `drifted` (someone else changed it).
    pub status: String,
}

/// An operation's state in the live tree, as found by the preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The path is as A has it (or absent, for an addition): the operation runs.
    Todo,
    /// The path is already as B has it: an earlier, interrupted run did it.
    Done,
    /// Neither: someone else changed it. The reason says how.
    Drifted(String),
}

/// Why an apply was refused before anything was written.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{} path(s) differ from what the source commit has (use --force to overwrite): {}", .0.len(), summarize(.0))]
    Drifted(Vec<(String, String)>),
    #[error("{} path(s) cannot be updated safely: {}", .0.len(), summarize(.0))]
    Unsafe(Vec<(String, String)>),
    #[error("not enough space on {target}: the update needs {needed} bytes, only {available} bytes are available")]
    NoSpace { target: String, needed: u64, available: u64 },
    #[error("not enough inodes on {target}: the update creates {needed} entries, only {available} are available")]
    NoInodes { target: String, needed: u64, available: u64 },
}

fn summarize(list: &[(String, String)]) -> String {
    let shown: Vec<String> =
        list.iter().take(20).map(|(p, why)| format!("{} ({why})", crate::quote::path(p))).collect();
    let more = list.len().saturating_sub(20);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Checks every operation against the live tree `root`, and the free space.
/// Touches nothing. With `force`, drifted paths are accepted (and overwritten);
/// unsafe ones (a symlink where a directory is expected) never are.
pub fn preflight(
    repo: &Repo,
    plan: &Plan,
    root: BorrowedFd<'_>,
    target_name: &str,
    force: bool,
) -> anyhow::Result<Vec<Status>> {
    preflight_at(repo, plan, root, root, target_name, force)
}

/// [`preflight`], with the free space measured on the filesystem of `space_at`
/// (where the writes will land, e.g. an overlay's future upper directory).
pub fn preflight_at(
    repo: &Repo,
    plan: &Plan,
    root: BorrowedFd<'_>,
    space_at: BorrowedFd<'_>,
    target_name: &str,
    force: bool,
) -> anyhow::Result<Vec<Status>> {
    let made: std::collections::HashSet<&str> =
        plan.ops.iter().filter(|o| o.kind == OpKind::MakeDir).map(|o| o.path.trim_start_matches('/')).collect();
    // Each check only reads: chunks of operations are checked on all cores.
    let findings = crate::parallel::map_chunks(&plan.ops, |ops| check_ops(repo, ops, root, &made, target_name))?;
    let mut status = Vec::with_capacity(plan.ops.len());
    let mut drifted = Vec::new();
    let mut unsafe_paths = Vec::new();
    for (op, finding) in plan.ops.iter().zip(findings) {
        match finding {
            Finding::Unsafe(why) => {
                unsafe_paths.push((op.path.clone(), why));
                status.push(Status::Drifted("unsafe".into()));
            }
            Finding::Status(st) => {
                if let Status::Drifted(why) = &st {
                    drifted.push((op.path.clone(), why.clone()));
                }
                status.push(st);
            }
        }
    }
    if !unsafe_paths.is_empty() {
        return Err(Refusal::Unsafe(unsafe_paths).into());
    }
    if !drifted.is_empty() && !force {
        return Err(Refusal::Drifted(drifted).into());
    }
    check_space(plan, &status, space_at, target_name)?;
    Ok(status)
}

/// What the preflight found for one operation.
enum Finding {
    Status(Status),
    /// The path cannot be reached without following a symlink: never forced.
    Unsafe(String),
}

/// Checks consecutive operations, reusing the parent directory fd while it stays
/// the same.
fn check_ops(
    repo: &Repo,
    ops: &[Op],
    root: BorrowedFd<'_>,
    made: &std::collections::HashSet<&str>,
    target_name: &str,
) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::with_capacity(ops.len());
    let mut parent: Option<(&str, Option<std::os::fd::OwnedFd>)> = None;
    for op in ops {
        let (dir, name) = op.split();
        if parent.as_ref().map(|(p, _)| *p) != Some(dir) {
            let fd = match crate::dirfd::open_dir(root, dir) {
                Ok(fd) => Some(fd),
                Err(rustix::io::Errno::NOENT) if made.contains(dir) => None,
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::XDEV) => {
                    out.push(Finding::Unsafe("a symlink or non-directory where a directory is expected".into()));
                    parent = None;
                    continue;
                }
                Err(rustix::io::Errno::NOENT) => {
                    out.push(Finding::Status(Status::Drifted("its parent directory is missing".into())));
                    parent = None;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("cannot open {target_name}/{dir}")),
            };
            parent = Some((dir, fd));
        }
        let st = match parent.as_ref().and_then(|(_, fd)| fd.as_ref()) {
            // The parent is created by the plan: the path is necessarily absent.
            None => Status::Todo,
            Some(fd) => op_status(repo, fd.as_fd(), name, op).with_context(|| {
                format!("cannot check {}", crate::quote::path(&format!("{target_name}{}", op.path)))
            })?,
        };
        out.push(Finding::Status(st));
    }
    Ok(out)
}

fn op_status(repo: &Repo, dir: BorrowedFd<'_>, name: &str, op: &Op) -> anyhow::Result<Status> {
    let name = if name.is_empty() { "." } else { name };
    let (entry, _) = crate::dirfd::probe(dir, name)?;
    let is = |node: &Option<NodeKind>| -> anyhow::Result<bool> {
        match node {
            Some(n) => checkout::matches(repo, dir, name, n, XattrCheck::Compare),
            None => Ok(entry == Entry::Absent),
        }
    };
    Ok(match op.kind {
        OpKind::SetDirMeta | OpKind::MakeDir if entry == Entry::Dir => {
            let fd = crate::dirfd::open_dir(dir, name)?;
            let (Some(NodeKind::Dir { meta: to, .. }), from) = (op.to, op.from) else {
                bail!("directory operation without a directory");
            };
            if checkout::dir_meta_matches(fd.as_fd(), &repo.read_dirmeta(to)?, XattrCheck::Compare)? {
                Status::Done
            } else if let Some(NodeKind::Dir { meta: from, .. }) = from {
                if checkout::dir_meta_matches(fd.as_fd(), &repo.read_dirmeta(from)?, XattrCheck::Compare)? {
                    Status::Todo
                } else {
                    Status::Drifted("directory metadata differs".into())
                }
            } else {
                // A directory B adds exists (made by an interrupted run, or by someone
                // else): its metadata is set, its contents are left alone.
                Status::Todo
            }
        }
        OpKind::MakeDir if entry == Entry::Absent => Status::Todo,
        OpKind::SetDirMeta | OpKind::MakeDir => Status::Drifted(format!("expected a directory, found {entry:?}")),
        OpKind::AddFile | OpKind::ReplaceFile | OpKind::ReplaceType | OpKind::Remove => {
            if is(&op.from)? {
                Status::Todo
            } else if is(&op.to)? {
                Status::Done
            } else if entry == Entry::Absent {
                Status::Drifted("missing".into())
            } else {
                Status::Drifted("content or metadata differs".into())
            }
        }
    })
}

/// Refuses when the target filesystem lacks the space or inodes the plan needs.
fn check_space(plan: &Plan, status: &[Status], root: BorrowedFd<'_>, target_name: &str) -> anyhow::Result<()> {
    let mut todo = Footprint::default();
    for (op, st) in plan.ops.iter().zip(status) {
        if *st != Status::Done {
            todo += op.footprint;
        }
    }
    check_footprint(todo, root, target_name)
}

/// Refuses, before anything is written, a footprint that the filesystem of
/// `root` cannot hold (space, with a margin, and inodes).
pub fn check_footprint(todo: Footprint, root: BorrowedFd<'_>, target_name: &str) -> anyhow::Result<()> {
    if todo == Footprint::default() {
        return Ok(());
    }
    let vfs = rustix::fs::fstatvfs(root).with_context(|| format!("cannot stat filesystem of {target_name}"))?;
    let available = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    // A margin for directory growth and metadata: 1 MiB plus 1%.
    let needed = todo.space + (1 << 20) + todo.space / 100;
    if needed > available {
        return Err(Refusal::NoSpace { target: target_name.to_string(), needed, available }.into());
    }
    if vfs.f_files > 0 && todo.entries > vfs.f_favail {
        return Err(Refusal::NoInodes {
            target: target_name.to_string(),
            needed: todo.entries,
            available: vfs.f_favail,
        }
        .into());
    }
    Ok(())
}
