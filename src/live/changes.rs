//! What an update changes in the running system, computed once and used by
//! `status`, `--dry-run` and `apply` alike: the `/usr` plan (the running
//! kernel's modules kept out), what it replaces (what `--allow-replacement`
//! allows), the paths it changes (what triggers and restarts look at), and the
//! space a layer of it takes.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use anyhow::Context;

use crate::etc::{EtcAction, EtcReport};
use crate::host::sysroot::System;
use crate::live::strategy::Strategy;
use crate::repo::{Checksum, Repo};
use crate::tree::diff::{Diff, Footprint, TreeRoot, BLOCK};
use crate::tree::plan::{OpKind, Plan};

/// The `/usr` tree of a commit.
pub fn usr_root(repo: &Repo, commit: Checksum) -> anyhow::Result<TreeRoot> {
    let c = repo.read_commit(commit).with_context(|| format!("cannot read commit {commit}"))?;
    TreeRoot::of_subpath(repo, &c, "/usr").with_context(|| format!("in commit {commit}"))
}

/// The `/usr` diffs of one command, by (from, to): the booted commit → the
/// target is diffed once for the plan, the strategy and the layer alike.
#[derive(Default)]
pub struct Diffs(RefCell<Vec<(CommitPair, Rc<Diff>)>>);

/// (from, to).
type CommitPair = (Checksum, Checksum);

impl Diffs {
    /// `from` → `to` in `/usr`.
    pub fn usr(&self, repo: &Repo, from: Checksum, to: Checksum) -> anyhow::Result<Rc<Diff>> {
        if let Some((_, d)) = self.0.borrow().iter().find(|(k, _)| *k == (from, to)) {
            return Ok(d.clone());
        }
        repo.read_ahead(&[from, to]);
        let d = Rc::new(Diff::trees(repo, usr_root(repo, from)?, usr_root(repo, to)?)?);
        self.0.borrow_mut().push(((from, to), d.clone()));
        Ok(d)
    }
}

/// The running kernel's release, whose `usr/lib/modules/RELEASE` is never removed.
pub fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// `from` → `to` in `/usr`: what running programs see change.
pub struct UsrPlan {
    pub plan: Plan,
    /// Paths the update would change that livefs keeps (the running kernel's
    /// modules), as `/usr` paths.
    pub kept: Vec<String>,
}

/// Plans `from` → `to` in `/usr`, keeping the running kernel's modules out.
pub fn plan_usr(repo: &Repo, diffs: &Diffs, from: Checksum, to: Checksum) -> anyhow::Result<UsrPlan> {
    let diff = diffs.usr(repo, from, to)?;
    let mut plan = Plan::new(repo, &diff)?;
    let kept = keep_running_modules(&mut plan, &kernel_release());
    Ok(UsrPlan { plan, kept })
}

/// Takes out of `plan` what would change or remove the modules of the running
/// kernel `release` (additions stay); returns those paths.
fn keep_running_modules(plan: &mut Plan, release: &str) -> Vec<String> {
    let modules = format!("/lib/modules/{release}");
    let mut kept = Vec::new();
    plan.ops.retain(|op| {
        let under = op.path == modules || op.path.starts_with(&format!("{modules}/"));
        let keep = under && !matches!(op.kind, OpKind::MakeDir | OpKind::AddFile);
        if keep {
            kept.push(format!("/usr{}", op.path));
        }
        !keep
    });
    plan.total = plan.ops.iter().fold(Footprint::default(), |mut t, op| {
        t += op.footprint;
        t
    });
    kept
}

/// The paths of `/usr` that changes are limited to without --allow-replacement:
/// additions anywhere, and anything under `usr/etc` (the defaults `/etc` is
/// merged from, which no running program reads).
fn is_usr_etc(path: &str) -> bool {
    path == "/etc" || path.starts_with("/etc/")
}

/// The existing `/usr` paths a plan changes or removes (a file, a symlink, a
/// directory's metadata or type), outside `/usr/etc`: exactly what
/// `--allow-replacement` allows, and without it refuses. One answer for
/// `status`, `apply --dry-run`, the refusal and `apply`.
pub fn replacements(plan: &Plan) -> Vec<String> {
    plan.ops
        .iter()
        .filter(|op| !matches!(op.kind, OpKind::MakeDir | OpKind::AddFile) && !is_usr_etc(&op.path))
        .map(|op| format!("/usr{}", op.path))
        .collect()
}

/// The files of `/usr` this plan replaces or removes, absolute: what running
/// processes may still hold.
pub fn replaced_by(plan: &Plan) -> HashSet<String> {
    plan.ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::ReplaceFile | OpKind::ReplaceType | OpKind::Remove))
        .map(|op| format!("/usr{}", op.path))
        .collect()
}

/// Every path the transition changes, absolute: `/usr` operations and `/etc`
/// changes (what triggers and unit restarts look at).
pub fn changed_paths(plan: &Plan, etc: &EtcReport) -> Vec<String> {
    plan.ops
        .iter()
        .map(|op| format!("/usr{}", op.path))
        .chain(
            etc.paths
                .iter()
                .filter(|p| matches!(p.action, EtcAction::Added | EtcAction::Updated | EtcAction::Removed))
                .map(|p| format!("/etc{}", p.path)),
        )
        .collect()
}

/// The loader cache in `/etc`, as the `/etc` merge and a reset name it.
pub const LD_SO_CACHE: &str = "/ld.so.cache";

/// Whether the `/etc` merge puts the update's own loader cache in place — the
/// one its compose built for its `/usr` (the admin's was the booted default):
/// then `ldconfig` has nothing left to do, as after a reboot into it.
pub fn brings_loader_cache(etc: &EtcReport) -> bool {
    etc.paths.iter().any(|p| {
        p.path == LD_SO_CACHE && matches!(p.action, EtcAction::Added | EtcAction::Updated | EtcAction::AlreadyDone)
    })
}

/// The paths a transition adds and removes (absolute, `/usr` and `/etc`): where
/// units become wanted or go away.
pub fn added_and_removed(plan: &Plan, etc: &EtcReport) -> (Vec<String>, Vec<String>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for op in &plan.ops {
        match op.kind {
            OpKind::MakeDir | OpKind::AddFile => added.push(format!("/usr{}", op.path)),
            OpKind::Remove => removed.push(format!("/usr{}", op.path)),
            _ => {}
        }
    }
    added.extend(etc.with(EtcAction::Added).map(|p| format!("/etc{p}")));
    removed.extend(etc.with(EtcAction::Removed).map(|p| format!("/etc{p}")));
    (added, removed)
}

/// Whether the tree `root` has an entry (file or directory) at `rel`.
pub fn has_path(repo: &Repo, root: TreeRoot, rel: &str) -> anyhow::Result<bool> {
    let mut node = root;
    let mut parts = rel.split('/').filter(|c| !c.is_empty()).peekable();
    while let Some(name) = parts.next() {
        let t = repo.read_dirtree(node.tree)?;
        match t.find_dir(name) {
            Some(d) => node = TreeRoot { tree: d.tree, meta: d.meta },
            None => return Ok(parts.peek().is_none() && t.find_file(name).is_some()),
        }
    }
    Ok(true)
}

/// The space and inodes a layer needs: an entry per operation (a directory, a
/// whiteout; a file too unless its files are `links` to the repository's
/// objects, which take no inode and no space), one per parent directory the
/// layer makes for them, and the layers' own directories and refs. Copies take
/// their content's space too.
pub fn layer_footprint(plan: &Plan, links: bool) -> Footprint {
    let mut dirs = HashSet::new();
    for op in &plan.ops {
        let mut p = op.path.as_str();
        while let Some(i) = p.rfind('/').filter(|&i| i > 0) {
            p = &p[..i];
            if !dirs.insert(p) {
                break;
            }
        }
    }
    // The layer, its livefs/ and backing/ directories, two refs.
    let entries = (plan.ops.len() + dirs.len()) as u64 + 5;
    let mut f = Footprint { bytes: 0, space: entries * BLOCK, entries };
    if !links {
        f += plan.total;
    }
    f
}

/// What a live apply of `to` delivers on `system`, compared with what runs
/// (the booted kernel, arguments and manner of boot); `daemon_reexec`: a
/// changed manager is re-executed live.
pub fn strategy_of(
    repo: &Repo,
    diffs: &Diffs,
    system: &System,
    to: Checksum,
    daemon_reexec: bool,
) -> anyhow::Result<Strategy> {
    let diff = diffs.usr(repo, system.booted.checksum, to)?;
    let target_kargs = system.deployments.iter().find(|d| d.checksum == to).and_then(|d| d.kargs.as_deref());
    let target_soft_reboot_target = has_path(repo, usr_root(repo, to)?, SOFT_REBOOT_TARGET)?;
    Ok(crate::live::strategy::of(&crate::live::strategy::Facts {
        diff: &diff,
        release: &kernel_release(),
        booted_kargs: system.booted.kargs.as_deref(),
        target_kargs,
        composefs: system.boot.composefs,
        target_soft_reboot_target,
        daemon_reexec,
        labels: (labelled(repo, system.booted.checksum)?, labelled(repo, to)?),
        whole_images: repo.store().is_some(),
    }))
}

/// Whether `commit`'s `/usr` carries an SELinux label, as `ostree commit
/// --selinux-policy` writes them (ostree stores xattr names NUL-terminated).
pub fn labelled(repo: &Repo, commit: Checksum) -> anyhow::Result<bool> {
    let meta = repo.read_dirmeta(usr_root(repo, commit)?.meta)?;
    Ok(meta.xattrs.iter().any(|(name, _)| name.strip_suffix(b"\0").unwrap_or(name) == b"security.selinux"))
}

/// What systemd soft-reboots into, in `/usr` (systemd ≥ 254).
const SOFT_REBOOT_TARGET: &str = "lib/systemd/system/soft-reboot.target";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::plan::Op;

    fn plan(ops: &[(OpKind, &str)]) -> Plan {
        let mut p = Plan::default();
        for (kind, path) in ops {
            p.ops.push(Op {
                kind: *kind,
                path: path.to_string(),
                from: None,
                to: None,
                footprint: Footprint::default(),
            });
        }
        p
    }

    #[test]
    fn the_updates_loader_cache_spares_ldconfig() {
        use crate::etc::EtcPath;
        let report = |path: &str, action| EtcReport { paths: vec![EtcPath { path: path.into(), action, error: None }] };
        for (path, action, brings) in [
            ("/ld.so.cache", EtcAction::Updated, true),
            ("/ld.so.cache", EtcAction::Added, true),
            ("/ld.so.cache", EtcAction::AlreadyDone, true),
            // The admin's own cache (local ld.so.conf.d entries) stays: rebuilt.
            ("/ld.so.cache", EtcAction::Kept, false),
            ("/ld.so.cache", EtcAction::Conflict, false),
            ("/ld.so.cache", EtcAction::Failed, false),
            ("/ld.so.cache", EtcAction::Removed, false),
            ("/ld.so.conf", EtcAction::Updated, false),
        ] {
            assert_eq!(brings_loader_cache(&report(path, action)), brings, "{path} {action:?}");
        }
        assert!(!brings_loader_cache(&EtcReport::default()));
    }

    #[test]
    fn what_a_plan_replaces_adds_and_removes() {
        let p = plan(&[
            (OpKind::MakeDir, "/share/new"),
            (OpKind::AddFile, "/share/new/f"),
            (OpKind::ReplaceFile, "/bin/hello"),
            (OpKind::ReplaceType, "/lib/x"),
            (OpKind::SetDirMeta, "/lib"),
            (OpKind::Remove, "/bin/old"),
            (OpKind::ReplaceFile, "/etc/motd"),
            (OpKind::Remove, "/etcetera"),
        ]);
        assert_eq!(replacements(&p), ["/usr/bin/hello", "/usr/lib/x", "/usr/lib", "/usr/bin/old", "/usr/etcetera"]);
        let mut replaced: Vec<String> = replaced_by(&p).into_iter().collect();
        replaced.sort();
        assert_eq!(replaced, ["/usr/bin/hello", "/usr/bin/old", "/usr/etc/motd", "/usr/etcetera", "/usr/lib/x"]);
        let (added, removed) = added_and_removed(&p, &EtcReport::default());
        assert_eq!(added, ["/usr/share/new", "/usr/share/new/f"]);
        assert_eq!(removed, ["/usr/bin/old", "/usr/etcetera"]);
        assert_eq!(changed_paths(&p, &EtcReport::default()).len(), 8);
    }

    #[test]
    fn the_running_kernels_modules_are_kept() {
        let mut p = plan(&[
            (OpKind::Remove, "/lib/modules/6.1.0-13-amd64"),
            (OpKind::ReplaceFile, "/lib/modules/6.1.0-13-amd64/modules.dep"),
            (OpKind::AddFile, "/lib/modules/6.1.0-13-amd64/extra.ko"),
            (OpKind::Remove, "/lib/modules/6.1.0-13-amd64x"),
            (OpKind::MakeDir, "/lib/modules/6.1.0-15-amd64"),
        ]);
        let kept = keep_running_modules(&mut p, "6.1.0-13-amd64");
        assert_eq!(kept, ["/usr/lib/modules/6.1.0-13-amd64", "/usr/lib/modules/6.1.0-13-amd64/modules.dep"]);
        let left: Vec<&str> = p.ops.iter().map(|op| op.path.as_str()).collect();
        assert_eq!(
            left,
            ["/lib/modules/6.1.0-13-amd64/extra.ko", "/lib/modules/6.1.0-13-amd64x", "/lib/modules/6.1.0-15-amd64"]
        );
    }

    #[test]
    fn a_layer_counts_its_parents_once() {
        let p = plan(&[(OpKind::AddFile, "/a/b/c"), (OpKind::AddFile, "/a/b/d"), (OpKind::Remove, "/a/e")]);
        // 3 operations, parents /a/b and /a, and 5 of the layers' own.
        let f = layer_footprint(&p, true);
        assert_eq!((f.entries, f.space, f.bytes), (10, 10 * BLOCK, 0));
    }
}
