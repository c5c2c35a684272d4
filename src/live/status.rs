//! `livefs status`: the booted, pending and live commits, the state of `/usr`,
//! and what a live apply of the pending deployment would deliver and cost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::host::booted::BootRecord;
use crate::host::overlay::{self, LayerUsage, UsrState};
use crate::host::sysroot::System;
use crate::host::{Host, Paths};
use crate::live::changes;
use crate::live::session::{reconcile, rpm_ostree_live};
use crate::live::state::{self, LiveState};
use crate::live::strategy::Strategy;
use crate::live::way_back::{Confirm, LastRollback};
use crate::repo::{Checksum, Repo};
use crate::systemd::activation::{self, Activation, Progress};
use crate::systemd::needs_restart::{Processes, Restarts};

/// A commit as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitInfo {
    pub checksum: Checksum,
    pub version: Option<String>,
    pub subject: String,
    /// `OS CHECKSUM.SERIAL`, when a deployment holds the commit.
    pub deployment: Option<String>,
    /// Why the commit could not be read (missing, corrupt), or that it is
    /// partial: its objects may be missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn commit_info(repo: Result<&Repo, &str>, checksum: Checksum, system: &System) -> CommitInfo {
    let commit = repo.map_err(str::to_string).and_then(|r| r.read_commit(checksum).map_err(|e| format!("{e:#}")));
    let deployment = [Some(&system.booted), system.pending.as_ref()]
        .into_iter()
        .flatten()
        .chain(system.deployments.iter())
        .find(|d| d.checksum == checksum)
        .map(|d| format!("{} {}", d.osname, d.id()));
    let partial = repo.is_ok_and(|r| r.is_partial(checksum));
    let problem = match &commit {
        Err(e) => Some(format!("cannot read the commit: {e}")),
        Ok(_) if partial => {
            Some("the commit is partial (an interrupted pull): some of its objects may be missing".into())
        }
        Ok(_) => None,
    };
    let commit = commit.ok();
    CommitInfo {
        checksum,
        version: commit.as_ref().and_then(|c| c.version().map(str::to_string)),
        subject: commit.map(|c| c.subject).unwrap_or_default(),
        deployment,
        problem,
    }
}

/// Counts of paths in `/usr` that differ between two commits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

/// What `livefs status` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub booted: CommitInfo,
    pub pending: Option<CommitInfo>,
    pub live: Option<CommitInfo>,
    pub in_progress: Option<(CommitInfo, CommitInfo)>,
    pub state: LiveState,
    pub usr: UsrState,
    /// Booted → live (or → the interrupted target), in `/usr`.
    pub changes: Option<ChangeCounts>,
    /// The layer `/usr` shows over the booted deployment, and its size.
    pub layer: Option<LayerUsage>,
    /// Units and processes that still run what was replaced since boot.
    pub restarts: Restarts,
    /// What `/run/ostree-booted` says of this boot (composefs, read-only sysroot, …).
    pub boot: BootRecord,
    /// rpm-ostree's apply-live state, when it has live-applied to this boot
    /// (livefs then refuses to change /usr).
    pub rpm_ostree_live: Option<String>,
    /// The deployment the next boot starts when it is another stateroot's:
    /// another OS install, never applied live here.
    pub next_boot_elsewhere: Option<CommitInfo>,
    /// What a live apply of the pending deployment would deliver (with nothing
    /// pending and another stateroot next: a reboot, and why).
    pub strategy: Option<Strategy>,
    /// The last activation of this boot (`--restart`, `livefs restart`), as far
    /// as it went: the result of one whose terminal went away.
    pub activation: Option<LastActivation>,
    /// The last automatic run of this boot (`livefs auto`, livefs-auto.service).
    pub auto: Option<crate::live::auto::AutoRun>,
    /// The deployment loaded at `/run/nextroot` (`ostree admin
    /// prepare-soft-reboot`): the next `systemctl reboot` is a soft reboot into it.
    pub soft_reboot_into: Option<CommitInfo>,
    /// The way back of the last apply (`livefs rollback`), and the
    /// confirmation it awaits (`apply --confirm-within`).
    #[serde(default)]
    pub way_back: Option<WayBackInfo>,
    /// The last rollback of this boot: when, from which commit, why.
    #[serde(default)]
    pub last_rollback: Option<LastRollback>,
    /// What could not be read, by item (`state`, `changes`, `layer`, `strategy`,
    /// `restarts`, `repository`): everything else is shown.
    #[serde(default)]
    pub unreadable: BTreeMap<String, String>,
    /// What went wrong without stopping the command (a corrupt record, …).
    pub warnings: Vec<String>,
}

/// The way back of the last apply, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WayBackInfo {
    /// What `livefs rollback` goes back to.
    pub to: CommitInfo,
    /// The commit the apply brought.
    pub applied: Checksum,
    /// When the apply started.
    pub since: String,
    /// The layer kept for it (none: the booted `/usr`).
    pub layer: Option<String>,
    /// The confirmation awaited, if any.
    pub confirm: Option<Confirm>,
}

/// Where the last activation got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationState {
    /// Its livefs still runs it.
    Running,
    Finished,
    /// Its livefs died before all actions ran: `livefs restart` finishes it.
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastActivation {
    pub state: ActivationState,
    /// The livefs process that ran it.
    pub pid: u32,
    pub activation: Activation,
}

/// The last activation from its progress record; `alive`: whether a process
/// still runs.
fn last_activation(progress: Option<Progress>, alive: impl Fn(u32) -> bool) -> Option<LastActivation> {
    let p = progress?;
    let state = match (p.finished, alive(p.pid)) {
        (true, _) => ActivationState::Finished,
        (false, true) => ActivationState::Running,
        (false, false) => ActivationState::Interrupted,
    };
    Some(LastActivation { state, pid: p.pid, activation: p.activation })
}

/// Whether process `pid` runs livefs (a recycled PID runs something else).
fn livefs_runs(pid: u32) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    exe.is_ok_and(|e| e.file_name().is_some_and(|n| n.to_string_lossy().starts_with("livefs")))
}

/// `livefs status`: everything it can read; what it cannot is named per item
/// (`unreadable`), so that a damaged repository or record hides nothing else.
pub fn status(paths: &Paths) -> anyhow::Result<Status> {
    let host = Host::read_only(paths)?;
    let system = &host.system;
    let mut unreadable = BTreeMap::new();
    let mut item = |name: &str, e: anyhow::Error| {
        unreadable.insert(name.to_string(), format!("{e:#}"));
    };
    let repo = system.repo().map_err(|e| format!("{e:#}"));
    if let Err(e) = &repo {
        item("repository", anyhow::anyhow!("{e}"));
    }
    let booted = system.booted.checksum;
    let state = match state::load(&host.run, &system.booted.id()) {
        Ok(st) => reconcile(st, &host.usr),
        Err(e) => {
            item("state", e);
            LiveState::Booted
        }
    };
    if let LiveState::UsrLost { .. } = state {
        forget_lost_unlock(paths)?;
    }
    let info = |c| commit_info(repo.as_ref().map_err(String::as_str), c, system);
    let (live, in_progress, compare_to) = match state {
        LiveState::Booted | LiveState::UsrLost { .. } => (None, None, None),
        LiveState::Live { commit } => (Some(info(commit)), None, Some(commit)),
        LiveState::Applying { from, to } | LiveState::RollingBack { from, to } => {
            (None, Some((info(from), info(to))), Some(to))
        }
    };
    let diffs = changes::Diffs::default();
    let processes = Processes::default();
    let changes = match (compare_to, &repo) {
        (Some(c), Ok(repo)) => diffs
            .usr(repo, booted, c)
            .map(|d| ChangeCounts { added: d.added.len(), changed: d.modified.len(), removed: d.removed.len() })
            .map_err(|e| item("changes", e))
            .ok(),
        _ => None,
    };
    let layer = live_layer(&host).map_err(|e| item("layer", e)).ok().flatten();
    let strategy = match &repo {
        Ok(repo) => {
            pending_strategy(&host, repo, &diffs, &processes, state).map_err(|e| item("strategy", e)).ok().flatten()
        }
        Err(_) => None,
    };
    let restarts = crate::live::effects::restarts_now(&paths.root, &processes, &host.run)
        .map_err(|e| item("restarts", e))
        .unwrap_or_default();
    let way_back = crate::live::way_back::load(&host.run)?.map(|w| WayBackInfo {
        to: info(w.from),
        applied: w.to,
        since: w.at,
        layer: w.layer,
        confirm: w.confirm,
    });
    Ok(Status {
        soft_reboot_into: system.next_root.as_ref().map(|d| info(d.checksum)),
        activation: last_activation(activation::load_progress(&host.run)?, livefs_runs),
        auto: crate::live::auto::last(&host.run)?,
        strategy,
        restarts,
        rpm_ostree_live: repo.as_ref().ok().and_then(|r| rpm_ostree_live(&host, r)),
        boot: system.boot.clone(),
        booted: info(booted),
        pending: system.pending.as_ref().map(|p| info(p.checksum)),
        next_boot_elsewhere: system.next_boot_elsewhere.as_ref().map(|d| info(d.checksum)),
        live,
        in_progress,
        state,
        usr: host.usr.clone(),
        changes,
        layer,
        way_back,
        last_rollback: crate::live::way_back::last_rollback(&host.run)?,
        unreadable,
        warnings: crate::messages::take(),
    })
}

/// The layer `/usr` shows, measured.
fn live_layer(host: &Host) -> anyhow::Result<Option<LayerUsage>> {
    let UsrState::Livefs { layer } = &host.usr else { return Ok(None) };
    let path = overlay::layers_dir(&host.system.sysroot, &host.system.booted).join(layer);
    overlay::layer_usage(&path).map(Some)
}

/// Removes ostree's unlock flag of a `/usr` whose overlay is gone, when no
/// other livefs runs (an apply may be about to mount and flag `/usr`): decided
/// again from what is read under the lock.
fn forget_lost_unlock(paths: &Paths) -> anyhow::Result<()> {
    let Ok(host) = Host::lock(paths, std::time::Duration::ZERO) else { return Ok(()) };
    let state = reconcile(state::load(&host.run, &host.system.booted.id())?, &host.usr);
    if let LiveState::UsrLost { .. } = state {
        overlay::forget_unlock(&host)?;
    }
    Ok(())
}

/// What a live apply of the pending deployment would deliver, and what it would
/// replace and restart, from what `/usr` holds now: the plan an apply would check.
fn pending_strategy(
    host: &Host,
    repo: &Repo,
    diffs: &changes::Diffs,
    processes: &Processes,
    state: LiveState,
) -> anyhow::Result<Option<Strategy>> {
    let Some(p) = &host.system.pending else {
        return Ok(host.system.next_boot_elsewhere.as_ref().map(|d| Strategy::elsewhere(&d.osname)));
    };
    let mut s = changes::strategy_of(repo, diffs, &host.system, p.checksum, false)?;
    let booted = host.system.booted.checksum;
    let plan = changes::plan_usr(repo, diffs, state.current(booted).unwrap_or(booted), p.checksum)?.plan;
    let changed = changes::changed_paths(&plan, &Default::default());
    crate::live::effects::add_costs(&mut s, &host.paths.root, processes, &plan, &changed)?;
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_activation_is_running_finished_or_interrupted() {
        let progress = |finished| Some(Progress { pid: 7, finished, activation: Activation::default() });
        let state = |p, alive: bool| last_activation(p, |_| alive).map(|l| l.state);
        assert_eq!(state(None, true), None);
        assert_eq!(state(progress(true), true), Some(ActivationState::Finished));
        assert_eq!(state(progress(true), false), Some(ActivationState::Finished));
        assert_eq!(state(progress(false), true), Some(ActivationState::Running));
        assert_eq!(state(progress(false), false), Some(ActivationState::Interrupted));
        assert!(!livefs_runs(u32::MAX), "no such process");
    }
}
