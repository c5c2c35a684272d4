//! `/etc`: carrying an update's configuration changes into the live `/etc`
//! without touching what the administrator changed, and undoing them exactly.
//!
//! The baseline is the source commit's `usr/etc` (what `/etc` was merged from):
//! a path is *locally changed* when the live `/etc` differs from it there. For
//! every path the update changes (source `usr/etc` → target `usr/etc`):
//! - unchanged locally → the update's addition, change or removal is applied, with
//!   the same per-file atomicity as `/usr`;
//! - already as the target has it → nothing to do (a resumed apply);
//! - changed locally → left alone and reported as *kept*;
//! - changed locally and turned into another type by the update → reported as a
//!   *conflict*, never forced.
//!
//! Every change is journaled first: the previous entry is copied (or its absence,
//! or a directory's metadata, recorded) under `ROOT/run/livefs/etc-journal/`, so
//! `livefs reset` puts `/etc` back exactly as it was before the first apply.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use serde::{Deserialize, Serialize};

use crate::checkout::{self, Entry, XattrCheck};
use crate::diff::{Diff, NodeKind, TreeRoot};
use crate::repo::{Checksum, Repo};

/// What happened to one path of the update under `/etc`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EtcPath {
    pub path: String,
    pub action: EtcAction,
    /// Why the path could not be changed ([`EtcAction::Failed`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EtcAction {
    Added,
    Updated,
    Removed,
    /// Already as the target has it (an earlier, interrupted run did it).
    AlreadyDone,
    /// Changed locally: left alone.
    Kept,
    /// Changed locally and changed in type by the update: left alone.
    Conflict,
    /// Could not be changed (an immutable file, a full disk…): left as it was,
    /// the rest of `/etc` goes on.
    Failed,
}

/// The `/etc` part of an apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EtcReport {
    pub paths: Vec<EtcPath>,
}

impl EtcReport {
    pub fn with(&self, action: EtcAction) -> impl Iterator<Item = &str> {
        self.paths.iter().filter(move |p| p.action == action).map(|p| p.path.as_str())
    }
}

/// The tree of `usr/etc` in a commit (an empty tree if the commit has none).
fn usr_etc(repo: &Repo, commit: Checksum) -> anyhow::Result<Option<TreeRoot>> {
    let c = repo.read_commit(commit).with_context(|| format!("cannot read commit {commit}"))?;
    let usr = TreeRoot::of_subpath(repo, &c, "/usr")?;
    let t = repo.read_dirtree(usr.tree)?;
    Ok(t.find_dir("etc").map(|d| TreeRoot { tree: d.tree, meta: d.meta }))
}

/// The parent directory and name of an `/etc` path; `/etc` itself (`/`) is `.`
/// in itself, so its own metadata changes like any directory's.
fn split(path: &str) -> (&str, &str) {
    match checkout::split_path(path) {
        (dir, "") => (dir, "."),
        parts => parts,
    }
}

/// One decision about one path, before anything is written.
struct Step {
    path: String,
    action: EtcAction,
    from: Option<NodeKind>,
    to: Option<NodeKind>,
}

/// Plans the `/etc` merge of `source` → `target` against the live `ROOT/etc`.
/// Reads only.
fn plan(repo: &Repo, source: Checksum, target: Checksum, etc: BorrowedFd<'_>) -> anyhow::Result<Vec<Step>> {
    let (Some(a), Some(b)) = (usr_etc(repo, source)?, usr_etc(repo, target)?) else {
        return Ok(Vec::new());
    };
    let diff = Diff::trees(repo, a, b)?;
    let mut steps = Vec::new();
    // Paths under a kept or conflicting directory are left alone with it.
    let mut skipped: Vec<String> = Vec::new();
    let under_skipped = |skipped: &[String], p: &str| {
        skipped.iter().any(|s| p.starts_with(s.as_str()) && p[s.len()..].starts_with('/'))
    };
    let dir_node = |r: TreeRoot| NodeKind::Dir { tree: r.tree, meta: r.meta };
    let entries = diff
        .root_meta
        .map(|(from, to)| ("/".to_string(), Some(dir_node(from)), Some(dir_node(to))))
        .into_iter()
        .chain(diff.modified.iter().map(|m| (m.path.clone(), Some(m.from), Some(m.to))))
        .chain(diff.removed.iter().map(|n| (n.path.clone(), Some(n.kind), None)))
        .chain(diff.added.iter().map(|n| (n.path.clone(), None, Some(n.kind))));
    for (path, from, to) in entries {
        if under_skipped(&skipped, &path) {
            continue;
        }
        let (dir, name) = split(&path);
        let parent = match checkout::open_dir(etc, dir) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::NOENT) => None,
            // The admin replaced a directory above by a symlink or a file: that
            // subtree is theirs; the rest of the update goes on.
            Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
                skipped.push(path.clone());
                steps.push(Step { path, action: EtcAction::Kept, from, to });
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open /etc/{dir}")),
        };
        let meta_only = matches!((from, to), (Some(NodeKind::Dir { .. }), Some(NodeKind::Dir { .. })));
        let is = |node: &Option<NodeKind>| -> anyhow::Result<bool> {
            match (node, &parent) {
                (None, None) => Ok(true),
                (None, Some(fd)) => Ok(checkout::probe(fd.as_fd(), name)?.0 == Entry::Absent),
                (Some(_), None) => Ok(false),
                (Some(NodeKind::Dir { meta, .. }), Some(fd)) if meta_only => {
                    // A directory's own metadata change: compare the metadata only.
                    // (A directory the update turns into a file, or a file into a
                    // directory, is compared whole: its content may be the admin's.)
                    Ok(match checkout::open_dir(fd.as_fd(), name) {
                        Ok(d) => checkout::dir_meta_matches(d.as_fd(), &repo.read_dirmeta(*meta)?, XattrCheck::Ignore)?,
                        Err(_) => false,
                    })
                }
                (Some(NodeKind::Dir { meta, .. }), Some(fd)) if from.is_none() => {
                    // An added directory that exists: its contents are merged entry by entry.
                    Ok(match checkout::open_dir(fd.as_fd(), name) {
                        Ok(d) => checkout::dir_meta_matches(d.as_fd(), &repo.read_dirmeta(*meta)?, XattrCheck::Ignore)?,
                        Err(_) => false,
                    })
                }
                (Some(n), Some(fd)) => checkout::matches(repo, fd.as_fd(), name, n, XattrCheck::Ignore),
            }
        };
        let type_change = matches!((from, to), (Some(NodeKind::File(_)), Some(NodeKind::Dir { .. })))
            || matches!((from, to), (Some(NodeKind::Dir { .. }), Some(NodeKind::File(_))));
        let action = if is(&to)? {
            EtcAction::AlreadyDone
        } else if is(&from)? {
            match (from, to) {
                (None, _) => EtcAction::Added,
                (_, None) => EtcAction::Removed,
                _ => EtcAction::Updated,
            }
        } else if parent.is_none() && from.is_none() {
            // The parent directory was removed locally: the admin does not want it.
            EtcAction::Kept
        } else if type_change {
            EtcAction::Conflict
        } else {
            EtcAction::Kept
        };
        // A kept or conflicting entry keeps its subtree, except a directory whose
        // own metadata the admin changed: its children are judged one by one.
        if matches!(action, EtcAction::Kept | EtcAction::Conflict) && !meta_only {
            skipped.push(path.clone());
        }
        steps.push(Step { path, action, from, to });
    }
    Ok(steps)
}

/// Merges the `/etc` changes of `source` → `target` into `ROOT/etc`, journaling
/// every change first. With `dry_run`, only decides.
pub fn merge(repo: &Repo, source: Checksum, target: Checksum, root: &Path, dry_run: bool) -> anyhow::Result<EtcReport> {
    let etc_path = root.join("etc");
    let etc = checkout::open_dir_path(&etc_path)?;
    let steps = plan(repo, source, target, etc.as_fd())?;
    let mut report = EtcReport {
        paths: steps.iter().map(|s| EtcPath { path: s.path.clone(), action: s.action, error: None }).collect(),
    };
    if dry_run {
        // A journal livefs cannot read would stop the real merge after /usr
        // changed: refuse now, while nothing has.
        if let Some(journal) = Journal::open(root, false)? {
            journal.load()?;
        }
        return Ok(report);
    }
    let journal = Journal::open(root, true)?.expect("created");
    let mut index = journal.load()?;
    // A path that fails is contained: reported, left as it was, and what lies
    // under it is left alone with it; every other path goes on.
    let mut failed: Vec<String> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if step.action == EtcAction::AlreadyDone {
            // What a killed run may have left beside it.
            remove_leftover(etc.as_fd(), &step.path)?;
        }
        if !matches!(step.action, EtcAction::Added | EtcAction::Updated | EtcAction::Removed) {
            continue;
        }
        if failed.iter().any(|f| step.path.starts_with(f.as_str()) && step.path[f.len()..].starts_with('/')) {
            report.paths[i].action = EtcAction::Failed;
            report.paths[i].error = Some("its parent could not be changed".into());
            continue;
        }
        if let Err(e) = merge_step(repo, &journal, &mut index, etc.as_fd(), step) {
            report.paths[i].action = EtcAction::Failed;
            report.paths[i].error = Some(format!("{e:#}"));
            failed.push(step.path.clone());
        }
    }
    Ok(report)
}

/// Journals `path` under `/etc` as it is now, unless it is journaled already:
/// for files a trigger rewrites (`ld.so.cache`), so a reset puts them back too.
pub fn journal_path(root: &Path, path: &str) -> anyhow::Result<()> {
    let journal = Journal::open(root, true)?.expect("created");
    let mut index = journal.load()?;
    if index.iter().any(|e| e.path == path) {
        return Ok(());
    }
    let etc = checkout::open_dir_path(&root.join("etc"))?;
    let (dir, name) = split(path);
    let parent = checkout::open_dir(etc.as_fd(), dir).with_context(|| format!("cannot open /etc/{dir}"))?;
    let step = Step { path: path.to_string(), action: EtcAction::Updated, from: None, to: None };
    let original = journal.capture(parent.as_fd(), name, &step, index.len())?;
    index.push(JournalEntry { path: path.to_string(), original });
    journal.save(&index)
}

/// Removes the temporary entry a killed run left for `path`, if any.
fn remove_leftover(etc: BorrowedFd<'_>, path: &str) -> anyhow::Result<()> {
    let (dir, name) = split(path);
    match checkout::open_dir(etc, dir) {
        Ok(parent) => checkout::remove(parent.as_fd(), &checkout::tmp_name(name)),
        Err(_) => Ok(()),
    }
}

/// Journals one path (the first time livefs touches it), then changes it.
fn merge_step(
    repo: &Repo,
    journal: &Journal,
    index: &mut Vec<JournalEntry>,
    etc: BorrowedFd<'_>,
    step: &Step,
) -> anyhow::Result<()> {
    let (dir, name) = split(&step.path);
    let parent = checkout::open_dir(etc, dir).with_context(|| format!("cannot open /etc/{dir}"))?;
    let meta_only = matches!((step.from, step.to), (Some(NodeKind::Dir { .. }), Some(NodeKind::Dir { .. })));
    match index.iter().position(|e| e.path == step.path) {
        None => {
            let original = journal.capture(parent.as_fd(), name, step, next_slot(index))?;
            index.push(JournalEntry { path: step.path.clone(), original });
            journal.save(index)?;
        }
        // Only a directory's metadata was journaled, and now it goes (or changes
        // type): a reset needs its content too. The copy taken now gets the
        // journaled metadata, and moves to the end of the index so it is put back
        // before the entries under it are.
        Some(i) if !meta_only && matches!(index[i].original, Original::DirMeta { .. }) => {
            let whole = Step { path: step.path.clone(), action: step.action, from: None, to: None };
            let original = journal.capture(parent.as_fd(), name, &whole, next_slot(index))?;
            if let (Original::Copy { slot }, Original::DirMeta { .. }) = (&original, &index[i].original) {
                let fd = checkout::open_dir(journal.fd.as_fd(), slot)?;
                set_original_meta(fd.as_fd(), &index[i].original)?;
            }
            index.remove(i);
            index.push(JournalEntry { path: step.path.clone(), original });
            journal.save(index)?;
        }
        Some(_) => {}
    }
    apply_step(repo, parent.as_fd(), name, step).with_context(|| format!("cannot update /etc{}", step.path))
}

fn apply_step(repo: &Repo, parent: BorrowedFd<'_>, name: &str, step: &Step) -> anyhow::Result<()> {
    match (step.from, step.to) {
        (Some(NodeKind::Dir { meta: from, .. }), Some(NodeKind::Dir { meta: to, .. })) => {
            let fd = checkout::open_dir(parent, name)?;
            checkout::change_dir_meta(fd.as_fd(), &repo.read_dirmeta(from)?, &repo.read_dirmeta(to)?)
        }
        (_, Some(NodeKind::Dir { meta, .. })) if step.from.is_none() => {
            // Made complete (owner, mode, xattrs) under a temporary name, then
            // renamed in: a killed run never leaves a half-made directory that
            // would look like the admin's own.
            let tmp = checkout::tmp_name(name);
            checkout::remove(parent, &tmp)?;
            checkout::make_dir(repo, parent, &tmp, meta)?;
            rustix::fs::renameat(parent, tmp.as_str(), parent, name)?;
            crate::fault::mutation();
            Ok(())
        }
        (_, Some(to)) => replace_with(repo, parent, name, &to),
        (_, None) => {
            // Renamed away first: the path disappears at once, and a killed
            // removal leaves only a temporary name, which the next run removes.
            let tmp = checkout::tmp_name(name);
            checkout::remove(parent, &tmp)?;
            rustix::fs::renameat(parent, name, parent, tmp.as_str())?;
            crate::fault::mutation();
            checkout::remove(parent, &tmp)
        }
    }
}

/// Writes `to` under a temporary name and moves it over `name` atomically.
fn replace_with(repo: &Repo, parent: BorrowedFd<'_>, name: &str, to: &NodeKind) -> anyhow::Result<()> {
    let tmp = checkout::tmp_name(name);
    checkout::remove(parent, &tmp)?;
    match to {
        NodeKind::File(c) => {
            checkout::write_file(repo, parent, &tmp, *c)?;
        }
        NodeKind::Dir { tree, meta } => {
            let fd = checkout::make_dir(repo, parent, &tmp, *meta)?;
            checkout::populate(repo, fd.as_fd(), *tree)?;
        }
    }
    swap_in(parent, &tmp, name)
}

/// Moves `tmp` to `name`: a rename for files, an exchange (then removal of the
/// old entry) when a directory is involved.
fn swap_in(parent: BorrowedFd<'_>, tmp: &str, name: &str) -> anyhow::Result<()> {
    match rustix::fs::renameat(parent, tmp, parent, name) {
        Ok(()) => Ok(()),
        Err(
            rustix::io::Errno::ISDIR
            | rustix::io::Errno::NOTDIR
            | rustix::io::Errno::NOTEMPTY
            | rustix::io::Errno::EXIST,
        ) => {
            rustix::fs::renameat_with(parent, tmp, parent, name, RenameFlags::EXCHANGE)?;
            checkout::remove(parent, tmp)
        }
        Err(e) => Err(e.into()),
    }
}

/// How a journaled path was before livefs first changed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Original {
    /// It did not exist.
    Absent,
    /// A copy of the whole entry is kept in the journal as `slot`.
    Copy { slot: String },
    /// A directory whose own metadata changed: owner, mode, xattrs (hex).
    DirMeta { uid: u32, gid: u32, mode: u32, xattrs: Vec<(String, String)> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    path: String,
    original: Original,
}

/// The `/etc` journal in `ROOT/run/livefs/etc-journal/`: `index.json` (written
/// atomically after the copy it names exists) and the copied entries.
struct Journal {
    dir: PathBuf,
    fd: OwnedFd,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// The journal's directory in `ROOT/run/livefs`.
const JOURNAL: &str = "etc-journal";

/// Whether `ROOT/run/livefs` holds an `/etc` journal: something a reset has to
/// put back.
pub fn has_journal(root: &Path) -> anyhow::Result<bool> {
    Ok(Journal::open(root, false)?.is_some())
}

impl Journal {
    /// Opens (and with `create`, creates) the journal beneath ROOT without
    /// following symlinks; `None` when there is none.
    fn open(root: &Path, create: bool) -> anyhow::Result<Option<Journal>> {
        let states = crate::state::StateDir::new(root);
        let dir = root.join("run/livefs").join(JOURNAL);
        Ok(states.subdir(JOURNAL, create)?.map(|fd| Journal { dir, fd }))
    }

    fn load(&self) -> anyhow::Result<Vec<JournalEntry>> {
        let Some(bytes) = crate::state::read_at(self.fd.as_fd(), "index.json")
            .with_context(|| format!("cannot read {}/index.json", self.dir.display()))?
        else {
            return Ok(Vec::new());
        };
        let index: Vec<JournalEntry> =
            serde_json::from_slice(&bytes).with_context(|| format!("{}/index.json is corrupt", self.dir.display()))?;
        // Only what livefs itself writes: paths under /etc without `.`/`..`,
        // numbered slots. Anything else is refused, never followed.
        for e in &index {
            let path_ok = e.path == "/"
                || (e.path.starts_with('/') && e.path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
            let slot_ok = match &e.original {
                Original::Copy { slot } => !slot.is_empty() && slot.bytes().all(|b| b.is_ascii_digit()),
                _ => true,
            };
            if !path_ok || !slot_ok {
                bail!(
                    "{}/index.json names {:?}, which livefs never journals (check /etc, then remove {})",
                    self.dir.display(),
                    e.path,
                    self.dir.display()
                );
            }
        }
        Ok(index)
    }

    fn save(&self, index: &[JournalEntry]) -> anyhow::Result<()> {
        crate::state::write_atomic_at(self.fd.as_fd(), "index.json", &serde_json::to_vec_pretty(index)?)
            .context("cannot write the /etc journal")
    }

    /// Records how `name` is now, before `step` changes it.
    fn capture(&self, parent: BorrowedFd<'_>, name: &str, step: &Step, n: usize) -> anyhow::Result<Original> {
        let (entry, st) = checkout::probe(parent, name)?;
        if entry == Entry::Absent {
            return Ok(Original::Absent);
        }
        if let (Some(NodeKind::Dir { .. }), Some(NodeKind::Dir { .. }), Some(st)) = (step.from, step.to, st) {
            let fd = checkout::open_dir(parent, name)?;
            let xattrs = crate::xattrs::of_fd(fd.as_fd())?.into_iter().map(|(k, v)| (hex(&k), hex(&v))).collect();
            return Ok(Original::DirMeta { uid: st.st_uid, gid: st.st_gid, mode: st.st_mode, xattrs });
        }
        let slot = format!("{n}");
        checkout::remove(self.fd.as_fd(), &slot)?;
        copy_entry(parent, name, self.fd.as_fd(), &slot)?;
        rustix::fs::syncfs(&self.fd)?;
        Ok(Original::Copy { slot })
    }
}

/// Copies an entry (recursively), preserving type, content, owner, mode, xattrs
/// and mtime, never following symlinks.
fn copy_entry(from_dir: BorrowedFd<'_>, name: &str, to_dir: BorrowedFd<'_>, to_name: &str) -> anyhow::Result<()> {
    let (entry, st) = checkout::probe(from_dir, name)?;
    let st = st.context("nothing to copy")?;
    let owner = (Some(rustix::fs::Uid::from_raw(st.st_uid)), Some(rustix::fs::Gid::from_raw(st.st_gid)));
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: st.st_atime, tv_nsec: st.st_atime_nsec as _ },
        last_modification: rustix::fs::Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ },
    };
    match entry {
        Entry::File => {
            let src =
                rustix::fs::openat(from_dir, name, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())?;
            let dst = rustix::fs::openat(
                to_dir,
                to_name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o600),
            )?;
            std::io::copy(&mut std::fs::File::from(src.try_clone()?), &mut std::fs::File::from(dst.try_clone()?))?;
            rustix::fs::fchown(&dst, owner.0, owner.1)?;
            rustix::fs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
            checkout::set_xattrs_fd(dst.as_fd(), &crate::xattrs::of_fd(src.as_fd())?)?;
            rustix::fs::futimens(&dst, &times)?;
        }
        Entry::Symlink => {
            let target = rustix::fs::readlinkat(from_dir, name, Vec::new())?;
            rustix::fs::symlinkat(target.as_c_str(), to_dir, to_name)?;
            rustix::fs::chownat(to_dir, to_name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::utimensat(to_dir, to_name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Entry::Dir => {
            rustix::fs::mkdirat(to_dir, to_name, Mode::from_raw_mode(0o700))?;
            let src = checkout::open_dir(from_dir, name)?;
            let dst = checkout::open_dir(to_dir, to_name)?;
            for child in checkout::list(src.as_fd())? {
                copy_entry(src.as_fd(), &child, dst.as_fd(), &child)?;
            }
            rustix::fs::fchown(&dst, owner.0, owner.1)?;
            rustix::fs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
            checkout::set_xattrs_fd(dst.as_fd(), &crate::xattrs::of_fd(src.as_fd())?)?;
        }
        _ => bail!("cannot journal {name}: not a file, symlink or directory"),
    }
    Ok(())
}

/// What a restore of `/etc` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Restored {
    pub paths: Vec<String>,
    /// Paths that could not be put back, with why: they stay in the journal, and
    /// the next `livefs reset` tries again.
    pub failed: Vec<EtcPath>,
}

/// Puts every journaled path of `/etc` back as it was before the first apply,
/// then forgets the journal (but for what failed, kept for the next try).
pub fn restore(root: &Path) -> anyhow::Result<Restored> {
    let Some(journal) = Journal::open(root, false)? else {
        return Ok(Restored::default());
    };
    let index = journal.load()?;
    let etc = checkout::open_dir_path(&root.join("etc"))?;
    let mut out = Restored::default();
    let mut keep = Vec::new();
    // Deepest changes were journaled last: undo in reverse.
    for e in index.iter().rev() {
        match restore_entry(&journal, etc.as_fd(), e) {
            Ok(()) => out.paths.push(e.path.clone()),
            Err(err) => {
                out.failed.push(EtcPath {
                    path: e.path.clone(),
                    action: EtcAction::Failed,
                    error: Some(format!("{err:#}")),
                });
                keep.push(e.clone());
            }
        }
    }
    if keep.is_empty() {
        drop(journal);
        crate::state::StateDir::new(root).remove(JOURNAL)?;
    } else {
        keep.reverse();
        journal.save(&keep)?;
    }
    Ok(out)
}

/// A journal slot name no entry uses.
fn next_slot(index: &[JournalEntry]) -> usize {
    let used = index.iter().filter_map(|e| match &e.original {
        Original::Copy { slot } => slot.parse::<usize>().ok(),
        _ => None,
    });
    used.max().map_or(0, |m| m + 1).max(index.len())
}

/// Sets a directory's owner, mode and xattrs to a journaled [`Original::DirMeta`].
fn set_original_meta(fd: BorrowedFd<'_>, original: &Original) -> anyhow::Result<()> {
    let Original::DirMeta { uid, gid, mode, xattrs } = original else { return Ok(()) };
    let meta = crate::repo::DirMeta {
        uid: *uid,
        gid: *gid,
        mode: *mode,
        xattrs: xattrs.iter().map(|(k, v)| (unhex(k), unhex(v))).collect(),
    };
    let current: Vec<Vec<u8>> = crate::xattrs::of_fd(fd)?.into_iter().map(|(k, _)| k).collect();
    checkout::set_dir_meta(fd, &meta, &current)
}

fn restore_entry(journal: &Journal, etc: BorrowedFd<'_>, e: &JournalEntry) -> anyhow::Result<()> {
    let (d, name) = split(&e.path);
    let parent = match checkout::open_dir(etc, d) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot open /etc/{d}")),
    };
    let parent = parent.as_fd();
    match &e.original {
        Original::Absent => checkout::remove(parent, name)?,
        Original::Copy { slot } => {
            let tmp = checkout::tmp_name(name);
            checkout::remove(parent, &tmp)?;
            copy_entry(journal.fd.as_fd(), slot, parent, &tmp)?;
            swap_in(parent, &tmp, name).with_context(|| format!("cannot put back /etc{}", e.path))?;
        }
        Original::DirMeta { .. } => {
            if let Ok(fd) = checkout::open_dir(parent, name) {
                set_original_meta(fd.as_fd(), &e.original)?;
            }
        }
    }
    Ok(())
}
