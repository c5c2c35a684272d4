//! The merge: each path the update changes in `usr/etc`, decided against the
//! live `/etc` ([`decide`], pure), journaled, then changed.

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::Context;

use super::journal::{Journal, Journals};
use super::{split, EtcAction, EtcPath, EtcReport, Step};
use crate::dirfd::Entry;
use crate::host::rundir::RunDir;
use crate::repo::{Checksum, Repo};
use crate::tree::checkout::{self, XattrCheck};
use crate::tree::diff::{Diff, NodeKind, TreeRoot};

/// The tree of `/etc`'s defaults in a commit (`usr/etc`, or `etc` in a
/// composefs image; `None` if the commit has none).
fn usr_etc(repo: &Repo, commit: Checksum) -> anyhow::Result<Option<TreeRoot>> {
    let c = repo.read_commit(commit).with_context(|| format!("cannot read commit {commit}"))?;
    let (parent, name) = repo.etc_defaults().rsplit_once('/').unwrap_or(("", "etc"));
    let parent = TreeRoot::of_subpath(repo, &c, parent)?;
    let t = repo.read_dirtree(parent.tree)?;
    Ok(t.find_dir(name).map(|d| TreeRoot { tree: d.tree, meta: d.meta }))
}

/// What the live `/etc` holds where the update changes a path.
#[derive(Debug, Clone, Copy)]
enum Found {
    /// A directory above the path is not one any more (the admin's symlink or
    /// file): that subtree is theirs.
    ParentReplaced,
    /// Whether its parent directory exists, and whether what is there (or its
    /// absence) is as the target has it, as the source had it.
    Here { parent: bool, as_target: bool, as_source: bool },
}

/// What the merge does with a path the update takes from `from` to `to` (absent:
/// `None`), given what the live `/etc` holds there; and whether what lies below
/// it is left alone with it. The rules are this module's doc.
fn decide(from: Option<&NodeKind>, to: Option<&NodeKind>, found: Found) -> (EtcAction, bool) {
    let Found::Here { parent, as_target, as_source } = found else { return (EtcAction::Kept, true) };
    let is_dir = |n: Option<&NodeKind>| matches!(n, Some(NodeKind::Dir { .. }));
    let is_file = |n: Option<&NodeKind>| matches!(n, Some(NodeKind::File(_)));
    // A directory's own metadata change: its children are judged one by one.
    let meta_only = is_dir(from) && is_dir(to);
    let type_change = (is_file(from) && is_dir(to)) || (is_dir(from) && is_file(to));
    let action = if as_target {
        EtcAction::AlreadyDone
    } else if as_source {
        match (from, to) {
            (None, _) => EtcAction::Added,
            (_, None) => EtcAction::Removed,
            _ => EtcAction::Updated,
        }
    } else if !parent && from.is_none() {
        // The parent directory was removed locally: the admin does not want it.
        EtcAction::Kept
    } else if type_change {
        EtcAction::Conflict
    } else {
        EtcAction::Kept
    };
    (action, matches!(action, EtcAction::Kept | EtcAction::Conflict) && !meta_only)
}

/// Plans the `/etc` merge of `source` → `target` against the live `ROOT/etc`.
/// Reads only.
fn steps(repo: &Repo, source: Checksum, target: Checksum, etc: BorrowedFd<'_>) -> anyhow::Result<Vec<Step>> {
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
        let parent = match crate::dirfd::open_dir(etc, dir) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::NOENT) => None,
            // The admin replaced a directory above by a symlink or a file: that
            // subtree is theirs; the rest of the update goes on.
            Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
                let (action, _) = decide(from.as_ref(), to.as_ref(), Found::ParentReplaced);
                skipped.push(path.clone());
                steps.push(Step { path, action, from, to });
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open /etc/{dir}")),
        };
        let meta_only = matches!((from, to), (Some(NodeKind::Dir { .. }), Some(NodeKind::Dir { .. })));
        let is = |node: &Option<NodeKind>| -> anyhow::Result<bool> {
            match (node, &parent) {
                (None, None) => Ok(true),
                (None, Some(fd)) => Ok(crate::dirfd::probe(fd.as_fd(), name)?.0 == Entry::Absent),
                (Some(_), None) => Ok(false),
                (Some(NodeKind::Dir { meta, .. }), Some(fd)) if meta_only => {
                    // A directory's own metadata change: compare the metadata only.
                    // (A directory the update turns into a file, or a file into a
                    // directory, is compared whole: its content may be the admin's.)
                    Ok(match crate::dirfd::open_dir(fd.as_fd(), name) {
                        Ok(d) => checkout::dir_meta_matches(d.as_fd(), &repo.read_dirmeta(*meta)?, XattrCheck::Ignore)?,
                        Err(_) => false,
                    })
                }
                (Some(NodeKind::Dir { meta, .. }), Some(fd)) if from.is_none() => {
                    // An added directory that exists: its contents are merged entry by entry.
                    Ok(match crate::dirfd::open_dir(fd.as_fd(), name) {
                        Ok(d) => checkout::dir_meta_matches(d.as_fd(), &repo.read_dirmeta(*meta)?, XattrCheck::Ignore)?,
                        Err(_) => false,
                    })
                }
                (Some(n), Some(fd)) => checkout::matches(repo, fd.as_fd(), name, n, XattrCheck::Ignore),
            }
        };
        let found = Found::Here { parent: parent.is_some(), as_target: is(&to)?, as_source: is(&from)? };
        let (action, keeps_subtree) = decide(from.as_ref(), to.as_ref(), found);
        if keeps_subtree {
            skipped.push(path.clone());
        }
        steps.push(Step { path, action, from, to });
    }
    Ok(steps)
}

/// Merges the `/etc` changes of `source` → `target` into `ROOT/etc`, journaling
/// every change first. With `dry_run`, only decides.
pub fn merge(
    repo: &Repo,
    source: Checksum,
    target: Checksum,
    run: &RunDir,
    etc: BorrowedFd<'_>,
    dry_run: bool,
) -> anyhow::Result<EtcReport> {
    let steps = steps(repo, source, target, etc)?;
    let mut report = EtcReport {
        paths: steps.iter().map(|s| EtcPath { path: s.path.clone(), action: s.action, error: None }).collect(),
    };
    if dry_run {
        // A journal livefs cannot read would stop the real merge after /usr
        // changed: refuse now, while nothing has.
        for name in [super::journal::BOOT, super::journal::UNDO] {
            if let Some(journal) = Journal::open(run, name, false)? {
                journal.load()?;
            }
        }
        return Ok(report);
    }
    let mut journals = Journals::open(run)?;
    // A path that fails is contained: reported, left as it was, and what lies
    // under it is left alone with it; every other path goes on.
    let mut failed: Vec<String> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if step.action == EtcAction::AlreadyDone {
            // What a killed run may have left beside it.
            remove_leftover(etc, &step.path)?;
        }
        if !matches!(step.action, EtcAction::Added | EtcAction::Updated | EtcAction::Removed) {
            continue;
        }
        if failed.iter().any(|f| step.path.starts_with(f.as_str()) && step.path[f.len()..].starts_with('/')) {
            report.paths[i].action = EtcAction::Failed;
            report.paths[i].error = Some("its parent could not be changed".into());
            continue;
        }
        if let Err(e) = merge_step(repo, &mut journals, etc, step) {
            report.paths[i].action = EtcAction::Failed;
            report.paths[i].error = Some(format!("{e:#}"));
            failed.push(step.path.clone());
        }
    }
    Ok(report)
}

/// Removes the temporary entry a killed run left for `path`, if any.
fn remove_leftover(etc: BorrowedFd<'_>, path: &str) -> anyhow::Result<()> {
    let (dir, name) = split(path);
    match crate::dirfd::open_dir(etc, dir) {
        Ok(parent) => crate::dirfd::remove(parent.as_fd(), &checkout::tmp_name(name)),
        Err(_) => Ok(()),
    }
}

/// Journals one path (the first time livefs touches it: in this boot, and in
/// this apply), then changes it.
fn merge_step(repo: &Repo, journals: &mut Journals, etc: BorrowedFd<'_>, step: &Step) -> anyhow::Result<()> {
    let (dir, name) = split(&step.path);
    let parent = crate::dirfd::open_dir(etc, dir).with_context(|| format!("cannot open /etc/{dir}"))?;
    journals.capture(parent.as_fd(), name, step)?;
    apply_step(repo, parent.as_fd(), name, step)
        .with_context(|| format!("cannot update {}", crate::quote::path(&format!("/etc{}", step.path))))
}

fn apply_step(repo: &Repo, parent: BorrowedFd<'_>, name: &str, step: &Step) -> anyhow::Result<()> {
    match (step.from, step.to) {
        (Some(NodeKind::Dir { meta: from, .. }), Some(NodeKind::Dir { meta: to, .. })) => {
            let fd = crate::dirfd::open_dir(parent, name)?;
            checkout::change_dir_meta(fd.as_fd(), &repo.read_dirmeta(from)?, &repo.read_dirmeta(to)?)
        }
        (_, Some(NodeKind::Dir { meta, .. })) if step.from.is_none() => {
            // Made complete (owner, mode, xattrs) under a temporary name, then
            // renamed in: a killed run never leaves a half-made directory that
            // would look like the admin's own.
            let tmp = checkout::tmp_name(name);
            crate::dirfd::remove(parent, &tmp)?;
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
            crate::dirfd::remove(parent, &tmp)?;
            rustix::fs::renameat(parent, name, parent, tmp.as_str())?;
            crate::fault::mutation();
            crate::dirfd::remove(parent, &tmp)
        }
    }
}

/// Writes `to` under a temporary name and moves it over `name` atomically.
fn replace_with(repo: &Repo, parent: BorrowedFd<'_>, name: &str, to: &NodeKind) -> anyhow::Result<()> {
    let tmp = checkout::tmp_name(name);
    crate::dirfd::remove(parent, &tmp)?;
    match to {
        NodeKind::File(c) => {
            checkout::write_file(repo, parent, &tmp, *c)?;
        }
        NodeKind::Dir { tree, meta } => {
            let fd = checkout::make_dir(repo, parent, &tmp, *meta)?;
            checkout::populate(repo, fd.as_fd(), *tree)?;
        }
    }
    crate::dirfd::swap_into(parent, &tmp, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_decided_from_what_etc_holds() {
        let c = |b| Checksum::sha256([b; 32]);
        let (f1, f2) = (NodeKind::File(c(1)), NodeKind::File(c(2)));
        let (d1, d2) = (NodeKind::Dir { tree: c(3), meta: c(4) }, NodeKind::Dir { tree: c(3), meta: c(5) });
        let here = |parent, as_target, as_source| Found::Here { parent, as_target, as_source };
        use EtcAction::*;
        type Case<'a> = (Option<&'a NodeKind>, Option<&'a NodeKind>, Found, EtcAction, bool);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // Untouched locally: the update's change is applied.
            (None,      Some(&f2), here(true, false, true),   Added,       false),
            (Some(&f1), Some(&f2), here(true, false, true),   Updated,     false),
            (Some(&f1), None,      here(true, false, true),   Removed,     false),
            (Some(&d1), Some(&d2), here(true, false, true),   Updated,     false),
            (Some(&f1), Some(&d2), here(true, false, true),   Updated,     false),
            // Already as the target has it (a resumed apply): nothing to do.
            (Some(&f1), Some(&f2), here(true, true, false),   AlreadyDone, false),
            (None,      Some(&d2), here(true, true, false),   AlreadyDone, false),
            // Changed locally: left alone, with what lies below.
            (Some(&f1), Some(&f2), here(true, false, false),  Kept,        true),
            (Some(&f1), None,      here(true, false, false),  Kept,        true),
            // A directory whose metadata the admin changed: its children are judged one by one.
            (Some(&d1), Some(&d2), here(true, false, false),  Kept,        false),
            // Changed locally and changed in type by the update: never forced.
            (Some(&f1), Some(&d2), here(true, false, false),  Conflict,    true),
            (Some(&d1), Some(&f2), here(true, false, false),  Conflict,    true),
            // The parent was removed locally: an addition there is not wanted.
            (None,      Some(&f2), here(false, false, false), Kept,        true),
            // A directory above is the admin's symlink or file.
            (Some(&f1), Some(&f2), Found::ParentReplaced,     Kept,        true),
            (None,      Some(&d2), Found::ParentReplaced,     Kept,        true),
        ];
        for (from, to, found, action, keeps) in cases {
            assert_eq!(decide(*from, *to, *found), (*action, *keeps), "{from:?} -> {to:?} finding {found:?}");
        }
    }
}
