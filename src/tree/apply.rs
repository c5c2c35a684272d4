//! Executing a checked plan on a live tree, so that a running program never sees
//! a half-written file and an interrupted run can always be finished by a rerun.
//!
//! - Files and symlinks are written under a temporary name in their destination
//!   directory, complete with content, owner, mode, xattrs and mtime, their content
//!   checked against the object checksum, then renamed over the old entry.
//! - A change between a file and a directory builds the new entry under a temporary
//!   name and swaps it in with `renameat2(RENAME_EXCHANGE)`.
//! - A directory is removed by renaming it to a temporary name first, so the path
//!   disappears at once and a half-removed tree is never visible under its name.
//! - Temporary names are deterministic ([`checkout::tmp_name`]); leftovers of a
//!   dead run are removed before anything else, and the preflight classifies each
//!   operation as to do or already done, so every step is idempotent.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{bail, Context};
use rustix::fs::AtFlags;
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::dirfd::Entry;
use crate::fault;
use crate::repo::{Checksum, Repo};
use crate::tree::checkout;
use crate::tree::diff::{EntryType, NodeKind};
use crate::tree::plan::{Op, OpKind, Plan, Status};

/// One path in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathEntry {
    pub path: String,
    pub r#type: EntryType,
}

/// Counts of what an apply did, by kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub added_files: usize,
    pub added_dirs: usize,
    pub replaced_files: usize,
    pub replaced_dirs: usize,
    pub removed_files: usize,
    pub removed_dirs: usize,
}

/// What an apply did (or, for a dry run, would do): every path by kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApplyReport {
    pub added: Vec<PathEntry>,
    pub replaced: Vec<PathEntry>,
    pub removed: Vec<PathEntry>,
    pub counts: Counts,
    /// Operations an earlier, interrupted run had already done.
    pub already_done: usize,
    pub bytes_written: u64,
    /// Mutating syscalls made on the tree.
    pub mutations: u64,
}

impl ApplyReport {
    /// Lists every operation of the plan by kind.
    pub fn of_plan(repo: &Repo, plan: &Plan, status: &[Status]) -> anyhow::Result<ApplyReport> {
        let mut r = ApplyReport::default();
        for (op, st) in plan.ops.iter().zip(status) {
            if *st == Status::Done {
                r.already_done += 1;
            }
            let t = op.entry_type(repo)?;
            let dir = t == EntryType::Directory;
            let e = PathEntry { path: op.path.clone(), r#type: t };
            match op.kind {
                OpKind::MakeDir | OpKind::AddFile => {
                    *(if dir { &mut r.counts.added_dirs } else { &mut r.counts.added_files }) += 1;
                    r.added.push(e);
                }
                OpKind::ReplaceFile | OpKind::ReplaceType | OpKind::SetDirMeta => {
                    *(if dir { &mut r.counts.replaced_dirs } else { &mut r.counts.replaced_files }) += 1;
                    r.replaced.push(e);
                }
                OpKind::Remove => {
                    *(if dir { &mut r.counts.removed_dirs } else { &mut r.counts.removed_files }) += 1;
                    r.removed.push(e);
                }
            }
        }
        Ok(r)
    }
}

/// Progress of long applies: a counter the workers bump, reported at most
/// every 1% (see [`crate::messages::progress`]).
struct Progress {
    done: std::sync::atomic::AtomicUsize,
    total: usize,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress { done: Default::default(), total }
    }

    fn tick(&self) {
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if self.total >= 1000 && (n % (self.total / 100).max(1) == 0 || n == self.total) {
            crate::messages::progress(crate::messages::Progress::Operations { done: n, total: self.total });
        }
    }
}

/// Opens each operation's parent directory, reusing the last one: operations on
/// the same directory are adjacent, and holding one fd per directory could exhaust
/// the fd limit on a large update.
struct Parents<'a> {
    root: BorrowedFd<'a>,
    last: Option<(String, OwnedFd)>,
}

impl<'a> Parents<'a> {
    fn get(&mut self, dir: &str) -> anyhow::Result<BorrowedFd<'_>> {
        if self.last.as_ref().map(|(p, _)| p.as_str()) != Some(dir) {
            let fd = crate::dirfd::open_dir(self.root, dir).with_context(|| format!("cannot open directory /{dir}"))?;
            self.last = Some((dir.to_string(), fd));
        }
        match &self.last {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => bail!("no directory open"),
        }
    }
}

/// What `livefs apply-tree` did (or, in a dry run, would do) to a directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeOutcome {
    pub from: Checksum,
    pub to: Checksum,
    pub subpath: String,
    pub target: String,
    pub dry_run: bool,
    #[serde(flatten)]
    pub report: ApplyReport,
    pub bytes_to_write: u64,
    pub elapsed_ms: f64,
    /// A dry run's plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<crate::tree::plan::PlannedOp>,
}

/// Turns `target`, which holds `subpath` of commit `from`, into `to`'s, in
/// place (see this module's doc); `force` overwrites paths that drifted.
pub fn update_dir(
    repo: &Repo,
    (from, to): (Checksum, Checksum),
    subpath: &str,
    target: &std::path::Path,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<TreeOutcome> {
    use crate::tree::diff::{Diff, TreeRoot};
    let started = std::time::Instant::now();
    let root_of = |c: Checksum| -> anyhow::Result<TreeRoot> {
        let commit = repo.read_commit(c).with_context(|| format!("cannot read commit {c}"))?;
        TreeRoot::of_subpath(repo, &commit, subpath).with_context(|| format!("in commit {c}"))
    };
    repo.read_ahead(&[from, to]);
    let diff = Diff::trees(repo, root_of(from)?, root_of(to)?)?;
    let plan = Plan::new(repo, &diff)?;
    let target_name = target.display().to_string();
    let root = crate::dirfd::open_dir_path(target)?;
    let status = crate::tree::plan::preflight(repo, &plan, root.as_fd(), &target_name, force)?;
    let report = if dry_run {
        ApplyReport::of_plan(repo, &plan, &status)?
    } else {
        execute(repo, &plan, &status, root.as_fd())?
    };
    Ok(TreeOutcome {
        from,
        to,
        subpath: subpath.to_string(),
        target: target_name,
        dry_run,
        report,
        bytes_to_write: plan.total.bytes,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        plan: if dry_run { plan.listing(&status) } else { Vec::new() },
    })
}

/// Runs the operations whose status is not [`Status::Done`] (drifted ones only
/// reach here when the preflight was forced), phase by phase. On an error, the
/// temporary entries written so far are removed; what was renamed into place stays,
/// and a rerun finishes the job.
pub fn execute(repo: &Repo, plan: &Plan, status: &[Status], root: BorrowedFd<'_>) -> anyhow::Result<ApplyReport> {
    let result = execute_phases(repo, plan, status, root);
    if result.is_err() {
        let cleaned = remove_leftovers(plan, &mut Parents { root, last: None });
        if cleaned.is_ok() {
            let _ = rustix::fs::unlinkat(root, checkout::IN_PROGRESS, AtFlags::empty());
        }
    }
    result
}

/// Marks the tree as being written, durably, before any temporary entry exists.
/// A marker found at the start means a run died: only then are the directories
/// scanned for its leftovers (scanning every directory costs more than the
/// update on a small change).
fn begin(plan: &Plan, root: BorrowedFd<'_>, parents: &mut Parents<'_>) -> anyhow::Result<()> {
    if crate::dirfd::probe(root, checkout::IN_PROGRESS)?.0 != Entry::Absent {
        remove_leftovers(plan, parents)?;
    }
    let marker = rustix::fs::openat(
        root,
        checkout::IN_PROGRESS,
        rustix::fs::OFlags::WRONLY
            | rustix::fs::OFlags::CREATE
            | rustix::fs::OFlags::CLOEXEC
            | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .context("cannot mark the tree as being updated")?;
    fault::mutation();
    rustix::fs::fsync(&marker)?;
    rustix::fs::fsync(root)?;
    Ok(())
}

fn execute_phases(repo: &Repo, plan: &Plan, status: &[Status], root: BorrowedFd<'_>) -> anyhow::Result<ApplyReport> {
    let mut report = ApplyReport::of_plan(repo, plan, status)?;
    let mut parents = Parents { root, last: None };
    if status.iter().all(|s| *s == Status::Done) {
        // A run that died after its last operation left only its mark.
        if crate::dirfd::probe(root, checkout::IN_PROGRESS)?.0 != Entry::Absent {
            remove_leftovers(plan, &mut parents)?;
            rustix::fs::unlinkat(root, checkout::IN_PROGRESS, AtFlags::empty())
                .context("cannot clear the in-progress mark")?;
            fault::mutation();
        }
        report.mutations = fault::count();
        return Ok(report);
    }
    begin(plan, root, &mut parents)?;
    let todo: Vec<&Op> = plan.ops.iter().zip(status).filter(|(_, st)| **st != Status::Done).map(|(op, _)| op).collect();
    let of = |kinds: &[OpKind]| -> Vec<&Op> { todo.iter().copied().filter(|o| kinds.contains(&o.kind)).collect() };
    let mut phases = Phases { repo, root, parents, progress: Progress::new(todo.len()) };
    phases.make_dirs(&of(&[OpKind::MakeDir]))?;
    report.bytes_written += phases.files(&of(&[OpKind::AddFile, OpKind::ReplaceFile]))?;
    report.bytes_written += phases.retype(&of(&[OpKind::ReplaceType]))?;
    phases.dir_meta(&of(&[OpKind::SetDirMeta]))?;
    phases.remove(&of(&[OpKind::Remove]))?;
    sync(root)?;
    rustix::fs::unlinkat(root, checkout::IN_PROGRESS, AtFlags::empty()).context("cannot clear the in-progress mark")?;
    fault::mutation();
    report.mutations = fault::count();
    Ok(report)
}

/// The phases of an execution, in order; each returns the bytes it wrote.
struct Phases<'a> {
    repo: &'a Repo,
    root: BorrowedFd<'a>,
    parents: Parents<'a>,
    progress: Progress,
}

impl Phases<'_> {
    fn make_dirs(&mut self, ops: &[&Op]) -> anyhow::Result<()> {
        for op in ops {
            let (dir, name) = op.split();
            let Some(NodeKind::Dir { meta, .. }) = op.to else { bail!("mkdir without a directory") };
            let parent = self.parents.get(dir)?;
            if !matches!(crate::dirfd::probe(parent, name)?.0, Entry::Absent | Entry::Dir) {
                crate::dirfd::remove(parent, name)?;
            }
            checkout::make_dir(self.repo, parent, name, meta)
                .with_context(|| format!("cannot create {}", crate::quote::path(&op.path)))?;
            self.progress.tick();
        }
        Ok(())
    }

    /// Files: stage every new version under its temporary name (spread over the
    /// cores: staging is independent per file), make them durable with one
    /// syncfs, then rename each into place.
    fn files(&mut self, files: &[&Op]) -> anyhow::Result<u64> {
        let (repo, root, progress) = (self.repo, self.root, &self.progress);
        let written = crate::parallel::map_chunks(files, |chunk| {
            let mut parents = Parents { root, last: None };
            chunk
                .iter()
                .map(|op| {
                    let (dir, name) = op.split();
                    let Some(NodeKind::File(c)) = op.to else { bail!("file operation without a file") };
                    let n = checkout::write_file(repo, parents.get(dir)?, &checkout::tmp_name(name), c)
                        .with_context(|| format!("cannot write {}", crate::quote::path(&op.path)))?;
                    progress.tick();
                    Ok(n)
                })
                .collect()
        })?;
        sync(root)?;
        for op in files {
            let (dir, name) = op.split();
            crate::dirfd::swap_into(self.parents.get(dir)?, &checkout::tmp_name(name), name)
                .with_context(|| format!("cannot replace {}", crate::quote::path(&op.path)))?;
        }
        Ok(written.iter().sum())
    }

    /// A file that becomes a directory or the reverse: built whole under a
    /// temporary name, synced, exchanged.
    fn retype(&mut self, ops: &[&Op]) -> anyhow::Result<u64> {
        let mut bytes = 0;
        for op in ops {
            let (dir, name) = op.split();
            let parent = self.parents.get(dir)?;
            let tmp = checkout::tmp_name(name);
            bytes += match op.to {
                Some(NodeKind::File(c)) => checkout::write_file(self.repo, parent, &tmp, c)?,
                Some(NodeKind::Dir { tree, meta }) => {
                    let fd = checkout::make_dir(self.repo, parent, &tmp, meta)?;
                    checkout::populate(self.repo, fd.as_fd(), tree)
                        .with_context(|| format!("cannot write {}", crate::quote::path(&op.path)))?
                }
                None => bail!("type change without a target"),
            };
            sync(self.root)?;
            crate::dirfd::swap_into(parent, &tmp, name)
                .with_context(|| format!("cannot replace {}", crate::quote::path(&op.path)))?;
            self.progress.tick();
        }
        Ok(bytes)
    }

    fn dir_meta(&mut self, ops: &[&Op]) -> anyhow::Result<()> {
        for op in ops {
            let (dir, name) = op.split();
            let (Some(NodeKind::Dir { meta: from, .. }), Some(NodeKind::Dir { meta: to, .. })) = (op.from, op.to)
            else {
                bail!("metadata change without directories");
            };
            let parent = self.parents.get(dir)?;
            let fd = crate::dirfd::open_dir(parent, if name.is_empty() { "." } else { name })
                .with_context(|| format!("{} is not a directory", crate::quote::path(&op.path)))?;
            let (from, to) = (self.repo.read_dirmeta(from)?, self.repo.read_dirmeta(to)?);
            checkout::change_dir_meta(fd.as_fd(), &from, &to)
                .with_context(|| format!("cannot change {}", crate::quote::path(&op.path)))?;
            self.progress.tick();
        }
        Ok(())
    }

    fn remove(&mut self, ops: &[&Op]) -> anyhow::Result<()> {
        for op in ops {
            let (dir, name) = op.split();
            let parent = self.parents.get(dir)?;
            let what = || format!("cannot remove {}", crate::quote::path(&op.path));
            match crate::dirfd::probe(parent, name)?.0 {
                Entry::Absent => {}
                Entry::Dir => {
                    // Out of sight first, then emptied: the path never shows a half-removed tree.
                    let tmp = checkout::tmp_name(name);
                    rustix::fs::renameat(parent, name, parent, &tmp).with_context(what)?;
                    fault::mutation();
                    crate::dirfd::remove(parent, &tmp).with_context(what)?;
                }
                _ => {
                    rustix::fs::unlinkat(parent, name, AtFlags::empty()).with_context(what)?;
                    fault::mutation();
                }
            }
            self.progress.tick();
        }
        Ok(())
    }
}

fn sync(root: BorrowedFd<'_>) -> anyhow::Result<()> {
    rustix::fs::syncfs(root).context("cannot sync the target filesystem")
}

/// Removes temporary entries an interrupted run left in the directories this plan
/// touches.
fn remove_leftovers(plan: &Plan, parents: &mut Parents<'_>) -> anyhow::Result<()> {
    let mut dirs: Vec<&str> = plan.ops.iter().map(|op| op.split().0).collect();
    dirs.sort_unstable();
    dirs.dedup();
    for dir in dirs {
        let fd = match crate::dirfd::open_dir(parents.root, dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open directory /{dir}")),
        };
        for name in crate::dirfd::list(fd.as_fd())? {
            if name.starts_with(checkout::TMP_PREFIX) && name != checkout::IN_PROGRESS {
                crate::dirfd::remove(fd.as_fd(), &name)
                    .with_context(|| format!("cannot remove leftover /{dir}/{name}"))?;
            }
        }
    }
    Ok(())
}
