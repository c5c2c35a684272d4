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
use rustix::fs::{AtFlags, RenameFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::checkout::{self, Entry};
use crate::diff::{EntryType, NodeKind};
use crate::fault;
use crate::plan::{Op, OpKind, Plan, Status};
use crate::repo::Repo;

/// One path in the report.
#[derive(Debug, Clone, Serialize)]
pub struct PathEntry {
    pub path: String,
    pub r#type: EntryType,
}

/// Counts of what an apply did, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub added_files: usize,
    pub added_dirs: usize,
    pub replaced_files: usize,
    pub replaced_dirs: usize,
    pub removed_files: usize,
    pub removed_dirs: usize,
}

/// What an apply did (or, for a dry run, would do): every path by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
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

impl Report {
    /// Lists every operation of the plan by kind.
    pub fn of_plan(repo: &Repo, plan: &Plan, status: &[Status]) -> anyhow::Result<Report> {
        let mut r = Report::default();
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

/// Progress on a terminal for long applies: a counter the workers bump, printed
/// on stderr at most every 1%.
struct Progress {
    done: std::sync::atomic::AtomicUsize,
    total: usize,
    shown: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        Progress { done: Default::default(), total, shown: total >= 1000 && std::io::stderr().is_terminal() }
    }

    fn tick(&self) {
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if self.shown && (n % (self.total / 100).max(1) == 0 || n == self.total) {
            eprint!("\rlivefs: {n}/{} operations ({}%)", self.total, n * 100 / self.total);
            if n == self.total {
                eprintln!();
            }
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
            let fd = checkout::open_dir(self.root, dir).with_context(|| format!("cannot open directory /{dir}"))?;
            self.last = Some((dir.to_string(), fd));
        }
        match &self.last {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => bail!("no directory open"),
        }
    }
}

/// Runs the operations whose status is not [`Status::Done`] (drifted ones only
/// reach here when the preflight was forced), phase by phase. On an error, the
/// temporary entries written so far are removed; what was renamed into place stays,
/// and a rerun finishes the job.
pub fn execute(repo: &Repo, plan: &Plan, status: &[Status], root: BorrowedFd<'_>) -> anyhow::Result<Report> {
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
    if checkout::probe(root, checkout::IN_PROGRESS)?.0 != Entry::Absent {
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

fn execute_phases(repo: &Repo, plan: &Plan, status: &[Status], root: BorrowedFd<'_>) -> anyhow::Result<Report> {
    let mut report = Report::of_plan(repo, plan, status)?;
    let mut parents = Parents { root, last: None };
    if status.iter().all(|s| *s == Status::Done) {
        // A run that died after its last operation left only its mark.
        if checkout::probe(root, checkout::IN_PROGRESS)?.0 != Entry::Absent {
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
    let progress = Progress::new(todo.len());

    for op in todo.iter().filter(|o| o.kind == OpKind::MakeDir) {
        let (dir, name) = op.split();
        let Some(NodeKind::Dir { meta, .. }) = op.to else { bail!("mkdir without a directory") };
        let parent = parents.get(dir)?;
        if !matches!(checkout::probe(parent, name)?.0, Entry::Absent | Entry::Dir) {
            checkout::remove(parent, name)?;
        }
        checkout::make_dir(repo, parent, name, meta).with_context(|| format!("cannot create {}", op.path))?;
        progress.tick();
    }

    // Files: stage every new version under its temporary name, make them durable
    // with one syncfs, then rename each into place.
    let files: Vec<&Op> =
        todo.iter().copied().filter(|o| matches!(o.kind, OpKind::AddFile | OpKind::ReplaceFile)).collect();
    // Staging is independent per file: spread it over the cores.
    let written = crate::parallel::map_chunks(&files, |chunk| {
        let mut parents = Parents { root, last: None };
        chunk
            .iter()
            .map(|op| {
                let (dir, name) = op.split();
                let Some(NodeKind::File(c)) = op.to else { bail!("file operation without a file") };
                let n = checkout::write_file(repo, parents.get(dir)?, &checkout::tmp_name(name), c)
                    .with_context(|| format!("cannot write {}", op.path))?;
                progress.tick();
                Ok(n)
            })
            .collect()
    })?;
    report.bytes_written += written.iter().sum::<u64>();
    sync(root)?;
    for op in &files {
        let (dir, name) = op.split();
        commit_entry(parents.get(dir)?, &checkout::tmp_name(name), name)
            .with_context(|| format!("cannot replace {}", op.path))?;
    }

    for op in todo.iter().filter(|o| o.kind == OpKind::ReplaceType) {
        let (dir, name) = op.split();
        let parent = parents.get(dir)?;
        let tmp = checkout::tmp_name(name);
        report.bytes_written += match op.to {
            Some(NodeKind::File(c)) => checkout::write_file(repo, parent, &tmp, c)?,
            Some(NodeKind::Dir { tree, meta }) => {
                let fd = checkout::make_dir(repo, parent, &tmp, meta)?;
                checkout::populate(repo, fd.as_fd(), tree).with_context(|| format!("cannot write {}", op.path))?
            }
            None => bail!("type change without a target"),
        };
        sync(root)?;
        commit_entry(parent, &tmp, name).with_context(|| format!("cannot replace {}", op.path))?;
        progress.tick();
    }

    for op in todo.iter().filter(|o| o.kind == OpKind::SetDirMeta) {
        let (dir, name) = op.split();
        let (Some(NodeKind::Dir { meta: from, .. }), Some(NodeKind::Dir { meta: to, .. })) = (op.from, op.to) else {
            bail!("metadata change without directories");
        };
        let parent = parents.get(dir)?;
        let fd = checkout::open_dir(parent, if name.is_empty() { "." } else { name })
            .with_context(|| format!("{} is not a directory", op.path))?;
        let (from, to) = (repo.read_dirmeta(from)?, repo.read_dirmeta(to)?);
        checkout::change_dir_meta(fd.as_fd(), &from, &to).with_context(|| format!("cannot change {}", op.path))?;
        progress.tick();
    }

    for op in todo.iter().filter(|o| o.kind == OpKind::Remove) {
        let (dir, name) = op.split();
        let parent = parents.get(dir)?;
        match checkout::probe(parent, name)?.0 {
            Entry::Absent => {}
            Entry::Dir => {
                // Out of sight first, then emptied: the path never shows a half-removed tree.
                let tmp = checkout::tmp_name(name);
                rustix::fs::renameat(parent, name, parent, &tmp)
                    .with_context(|| format!("cannot remove {}", op.path))?;
                fault::mutation();
                checkout::remove(parent, &tmp).with_context(|| format!("cannot remove {}", op.path))?;
            }
            _ => {
                rustix::fs::unlinkat(parent, name, AtFlags::empty())
                    .with_context(|| format!("cannot remove {}", op.path))?;
                fault::mutation();
            }
        }
        progress.tick();
    }
    sync(root)?;
    rustix::fs::unlinkat(root, checkout::IN_PROGRESS, AtFlags::empty()).context("cannot clear the in-progress mark")?;
    fault::mutation();
    report.mutations = fault::count();
    Ok(report)
}

fn sync(root: BorrowedFd<'_>) -> anyhow::Result<()> {
    rustix::fs::syncfs(root).context("cannot sync the target filesystem")
}

/// Moves the finished entry `tmp` to `name`: a plain rename replaces a file or
/// symlink atomically; a file and a directory are swapped with `RENAME_EXCHANGE`
/// and the old one, now under the temporary name, is removed.
fn commit_entry(dir: BorrowedFd<'_>, tmp: &str, name: &str) -> anyhow::Result<()> {
    match rustix::fs::renameat(dir, tmp, dir, name) {
        Ok(()) => {
            fault::mutation();
            Ok(())
        }
        Err(Errno::ISDIR | Errno::NOTDIR | Errno::NOTEMPTY | Errno::EXIST) => {
            rustix::fs::renameat_with(dir, tmp, dir, name, RenameFlags::EXCHANGE).context("cannot swap entries")?;
            fault::mutation();
            checkout::remove(dir, tmp)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes temporary entries an interrupted run left in the directories this plan
/// touches.
fn remove_leftovers(plan: &Plan, parents: &mut Parents<'_>) -> anyhow::Result<()> {
    let mut dirs: Vec<&str> = plan.ops.iter().map(|op| op.split().0).collect();
    dirs.sort_unstable();
    dirs.dedup();
    for dir in dirs {
        let fd = match checkout::open_dir(parents.root, dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open directory /{dir}")),
        };
        for name in checkout::list(fd.as_fd())? {
            if name.starts_with(checkout::TMP_PREFIX) && name != checkout::IN_PROGRESS {
                checkout::remove(fd.as_fd(), &name).with_context(|| format!("cannot remove leftover /{dir}/{name}"))?;
            }
        }
    }
    Ok(())
}
