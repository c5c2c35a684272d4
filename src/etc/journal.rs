//! The `/etc` journals in `ROOT/run/livefs/`: how each path was before livefs
//! first changed it in this boot (`etc-journal/`), so that `livefs reset` puts
//! `/etc` back exactly, even after an interrupted apply; and how each path was
//! before the last apply changed it (`etc-undo/`), so that `livefs rollback`
//! undoes that apply, and only it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{bail, Context};
use rustix::fs::{AtFlags, Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::{split, EtcAction, EtcPath, Step};
use crate::dirfd::Entry;
use crate::host::rundir::RunDir;
use crate::tree::checkout;
use crate::tree::diff::NodeKind;

/// Journals `path` under `/etc` as it is now, unless it is journaled already
/// (in the boot's journal, and in the last apply's when it has one): for files
/// a trigger rewrites (`ld.so.cache`), so a reset and a rollback put them back too.
pub fn journal_path(run: &RunDir, etc: BorrowedFd<'_>, path: &str) -> anyhow::Result<()> {
    let (dir, name) = split(path);
    let parent = crate::dirfd::open_dir(etc, dir).with_context(|| format!("cannot open /etc/{dir}"))?;
    let step = Step { path: path.to_string(), action: EtcAction::Updated, from: None, to: None };
    let mut journals = Journals::open(run)?;
    journals.capture(parent.as_fd(), name, &step)
}

/// The journals an apply writes before it changes a path: the boot's, and the
/// apply's own (its way back) when it keeps one.
pub(crate) struct Journals {
    boot: (Journal, Vec<JournalEntry>),
    undo: Option<(Journal, Vec<JournalEntry>)>,
}

impl Journals {
    /// The boot's journal (created), and the last apply's if it exists.
    pub(crate) fn open(run: &RunDir) -> anyhow::Result<Journals> {
        let boot = Journal::open(run, BOOT, true)?.expect("created");
        let index = boot.load()?;
        let undo = match Journal::open(run, UNDO, false)? {
            Some(j) => {
                let index = j.load()?;
                Some((j, index))
            }
            None => None,
        };
        Ok(Journals { boot: (boot, index), undo })
    }

    /// Records `name` (in `parent`) as it is, before `step` changes it, in each
    /// journal that has no record of it yet. The apply's own journal marks the
    /// paths the boot's journal did not have before: undoing the apply takes
    /// them out of the boot's journal too.
    pub(crate) fn capture(&mut self, parent: BorrowedFd<'_>, name: &str, step: &Step) -> anyhow::Result<()> {
        let first_change = !self.boot.1.iter().any(|e| e.path == step.path);
        if let Some((journal, index)) = &mut self.undo {
            capture_once(journal, index, parent, name, step, first_change)?;
        }
        let (journal, index) = &mut self.boot;
        capture_once(journal, index, parent, name, step, false)
    }
}

/// Journals `name` before `step` changes it, unless `index` has it already; a
/// directory of which only the metadata was journaled, and that now goes (or
/// changes type), is journaled whole (see `merge_step`).
fn capture_once(
    journal: &Journal,
    index: &mut Vec<JournalEntry>,
    parent: BorrowedFd<'_>,
    name: &str,
    step: &Step,
    first_change: bool,
) -> anyhow::Result<()> {
    let meta_only = matches!((step.from, step.to), (Some(NodeKind::Dir { .. }), Some(NodeKind::Dir { .. })));
    match index.iter().position(|e| e.path == step.path) {
        None => {
            let original = journal.capture(parent, name, step, next_slot(index))?;
            index.push(JournalEntry { path: step.path.clone(), original, first_change });
            journal.save(index)
        }
        // Only a directory's metadata was journaled, and now it goes (or changes
        // type): putting it back needs its content too. The copy taken now gets
        // the journaled metadata, and moves to the end of the index so it is put
        // back before the entries under it are.
        Some(i) if !meta_only && matches!(index[i].original, Original::DirMeta { .. }) => {
            let whole = Step { path: step.path.clone(), action: step.action, from: None, to: None };
            let original = journal.capture(parent, name, &whole, next_slot(index))?;
            if let (Original::Copy { slot }, Original::DirMeta { .. }) = (&original, &index[i].original) {
                let fd = crate::dirfd::open_dir(journal.fd.as_fd(), slot)?;
                set_original_meta(fd.as_fd(), &index[i].original)?;
            }
            let old = index.remove(i);
            index.push(JournalEntry { path: step.path.clone(), original, first_change: old.first_change });
            journal.save(index)
        }
        Some(_) => Ok(()),
    }
}

/// How a journaled path was before livefs first changed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(crate) enum Original {
    /// It did not exist.
    Absent,
    /// A copy of the whole entry is kept in the journal as `slot`.
    Copy { slot: String },
    /// A directory whose own metadata changed: owner, mode, xattrs (hex).
    DirMeta { uid: u32, gid: u32, mode: u32, xattrs: Vec<(String, String)> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JournalEntry {
    pub path: String,
    pub original: Original,
    /// In the last apply's journal: that apply was livefs's first change of the
    /// path in this boot (the boot's journal had none before it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_change: bool,
}

/// An `/etc` journal in `ROOT/run/livefs/`: `index.json` (written atomically
/// after the copy it names exists) and the copied entries.
pub(crate) struct Journal {
    dir: PathBuf,
    pub fd: OwnedFd,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// The journals' directories in `ROOT/run/livefs`: the boot's (what a reset
/// puts back) and the last apply's (what a rollback puts back).
pub(crate) const BOOT: &str = "etc-journal";
pub(crate) const UNDO: &str = "etc-undo";

/// Whether `ROOT/run/livefs` holds an `/etc` journal: something a reset has to
/// put back.
pub fn has_journal(run: &RunDir) -> anyhow::Result<bool> {
    Ok(Journal::open(run, BOOT, false)?.is_some())
}

/// Starts the journal of an apply that keeps a way back (an empty one, in
/// place of the previous apply's, which is forgotten).
pub fn begin_undo(run: &RunDir) -> anyhow::Result<()> {
    run.remove(UNDO)?;
    Journal::open(run, UNDO, true)?;
    Ok(())
}

/// Forgets the last apply's journal (a reset: there is no apply left to undo).
pub fn forget_undo(run: &RunDir) -> anyhow::Result<()> {
    run.remove(UNDO)
}

/// The paths the last apply's journal would put back.
pub fn undo_paths(run: &RunDir) -> anyhow::Result<Vec<String>> {
    let Some(journal) = Journal::open(run, UNDO, false)? else { return Ok(Vec::new()) };
    Ok(journal.load()?.into_iter().rev().map(|e| e.path).collect())
}

impl Journal {
    /// Opens (and with `create`, creates) the journal `name` beneath ROOT
    /// without following symlinks; `None` when there is none.
    pub(crate) fn open(run: &RunDir, name: &str, create: bool) -> anyhow::Result<Option<Journal>> {
        let dir = run.path().join(name);
        Ok(run.subdir(name, create)?.map(|fd| Journal { dir, fd }))
    }

    pub(crate) fn load(&self) -> anyhow::Result<Vec<JournalEntry>> {
        let Some(bytes) = crate::dirfd::read_optional(self.fd.as_fd(), "index.json")
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

    pub(crate) fn save(&self, index: &[JournalEntry]) -> anyhow::Result<()> {
        crate::dirfd::write_atomic(self.fd.as_fd(), "index.json", &serde_json::to_vec_pretty(index)?)
            .context("cannot write the /etc journal")
    }

    /// Records how `name` is now, before `step` changes it.
    pub(crate) fn capture(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        step: &Step,
        n: usize,
    ) -> anyhow::Result<Original> {
        let (entry, st) = crate::dirfd::probe(parent, name)?;
        if entry == Entry::Absent {
            return Ok(Original::Absent);
        }
        if let (Some(NodeKind::Dir { .. }), Some(NodeKind::Dir { .. }), Some(st)) = (step.from, step.to, st) {
            let fd = crate::dirfd::open_dir(parent, name)?;
            let xattrs = crate::xattrs::of_fd(fd.as_fd())?.into_iter().map(|(k, v)| (hex(&k), hex(&v))).collect();
            return Ok(Original::DirMeta { uid: st.st_uid, gid: st.st_gid, mode: st.st_mode, xattrs });
        }
        let slot = format!("{n}");
        crate::dirfd::remove(self.fd.as_fd(), &slot)?;
        copy_entry(parent, name, self.fd.as_fd(), &slot)?;
        rustix::fs::syncfs(&self.fd)?;
        Ok(Original::Copy { slot })
    }
}

/// Copies an entry (recursively), preserving type, content, owner, mode, xattrs
/// and mtime, never following symlinks.
fn copy_entry(from_dir: BorrowedFd<'_>, name: &str, to_dir: BorrowedFd<'_>, to_name: &str) -> anyhow::Result<()> {
    let (entry, st) = crate::dirfd::probe(from_dir, name)?;
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
            let src = crate::dirfd::open_dir(from_dir, name)?;
            let dst = crate::dirfd::open_dir(to_dir, to_name)?;
            for child in crate::dirfd::list(src.as_fd())? {
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
/// then forgets the journal (but for what failed, kept for the next try), and
/// the last apply's journal with it: after a reset there is no apply to undo.
pub fn restore(run: &RunDir, etc: BorrowedFd<'_>) -> anyhow::Result<Restored> {
    let Some(journal) = Journal::open(run, BOOT, false)? else {
        forget_undo(run)?;
        return Ok(Restored::default());
    };
    let index = journal.load()?;
    let (out, keep) = put_back(&journal, etc, &index);
    forget_undo(run)?;
    keep_only(run, journal, BOOT, &keep)?;
    Ok(out)
}

/// Leaves in journal `name` only the entries `keep` (what could not be put
/// back, for the next try); none: the journal goes.
fn keep_only(run: &RunDir, journal: Journal, name: &str, keep: &[JournalEntry]) -> anyhow::Result<()> {
    if keep.is_empty() {
        drop(journal);
        run.remove(name)
    } else {
        journal.save(keep)
    }
}

/// Undoes the last apply in `/etc`: every path its journal holds is put back as
/// it was before that apply; those it was the first to change leave the boot's
/// journal too (a reset has nothing more to put back there). Then the apply's
/// journal is forgotten (but for what failed, kept for the next try). A kill at
/// any point is finished by running it again: the journal goes last.
pub fn undo(run: &RunDir, etc: BorrowedFd<'_>) -> anyhow::Result<Restored> {
    let Some(journal) = Journal::open(run, UNDO, false)? else { return Ok(Restored::default()) };
    let index = journal.load()?;
    let (out, keep) = put_back(&journal, etc, &index);
    let restored: Vec<&str> = index
        .iter()
        .filter(|e| e.first_change && !keep.iter().any(|k| k.path == e.path))
        .map(|e| e.path.as_str())
        .collect();
    if let Some(boot) = Journal::open(run, BOOT, false)? {
        let mut boot_index = boot.load()?;
        let before = boot_index.len();
        boot_index.retain(|e| !restored.contains(&e.path.as_str()));
        if boot_index.len() != before {
            boot.save(&boot_index)?;
        }
    }
    keep_only(run, journal, UNDO, &keep)?;
    Ok(out)
}

/// Puts back every entry of `index`, deepest (journaled last) first; returns
/// what was restored and the entries that failed, in journal order.
fn put_back(journal: &Journal, etc: BorrowedFd<'_>, index: &[JournalEntry]) -> (Restored, Vec<JournalEntry>) {
    let mut out = Restored::default();
    let mut keep = Vec::new();
    for e in index.iter().rev() {
        match restore_entry(journal, etc, e) {
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
    keep.reverse();
    (out, keep)
}

/// A journal slot name no entry uses.
pub(crate) fn next_slot(index: &[JournalEntry]) -> usize {
    let used = index.iter().filter_map(|e| match &e.original {
        Original::Copy { slot } => slot.parse::<usize>().ok(),
        _ => None,
    });
    used.max().map_or(0, |m| m + 1).max(index.len())
}

/// Sets a directory's owner, mode and xattrs to a journaled [`Original::DirMeta`].
pub(crate) fn set_original_meta(fd: BorrowedFd<'_>, original: &Original) -> anyhow::Result<()> {
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
    let parent = match crate::dirfd::open_dir(etc, d) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot open /etc/{d}")),
    };
    let parent = parent.as_fd();
    match &e.original {
        Original::Absent => crate::dirfd::remove(parent, name)?,
        Original::Copy { slot } => {
            let tmp = checkout::tmp_name(name);
            crate::dirfd::remove(parent, &tmp)?;
            copy_entry(journal.fd.as_fd(), slot, parent, &tmp)?;
            crate::dirfd::swap_into(parent, &tmp, name)
                .with_context(|| format!("cannot put back {}", crate::quote::path(&format!("/etc{}", e.path))))?;
        }
        Original::DirMeta { .. } => {
            if let Ok(fd) = crate::dirfd::open_dir(parent, name) {
                set_original_meta(fd.as_fd(), &e.original)?;
            }
        }
    }
    Ok(())
}
