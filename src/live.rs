//! The running system: `livefs status`, `apply` and `reset` — the engines (the
//! `/usr` layer, `/etc` merge, triggers) driven by the deployments and the live
//! state.
//!
//! An apply diffs `/usr` of the source (the live commit, else the booted one)
//! against the target (the pending deployment, or `--target`; an interrupted
//! apply's recorded target), applies the replacement policy, checks space and
//! the `/etc` merge, and only then records *Applying*, switches `/usr`, merges
//! `/etc` and records *Live*. The transitions, their failure edges and why every
//! state has a way out are in `state.rs`'s design notes; [`Live::transition`]
//! is the one place that performs them.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::apply::{self, Report};
use crate::diff::{Diff, TreeRoot};
use crate::etc::EtcAction;
use crate::overlay::{self, UsrState};
use crate::plan::{self, OpKind, Plan};
use crate::repo::{Checksum, Repo};
use crate::state::{self, LiveState, StateDir};
use crate::submounts::Submounts;
use crate::sysroot::System;
use crate::triggers::Action;

/// Where the running system is.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The running system's root, normally `/`.
    pub root: PathBuf,
    /// The physical root, normally `ROOT/sysroot`.
    pub sysroot: PathBuf,
}

/// A commit as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CommitInfo {
    pub checksum: Checksum,
    pub version: Option<String>,
    pub subject: String,
    /// `OS CHECKSUM.SERIAL`, when a deployment holds the commit.
    pub deployment: Option<String>,
}

fn commit_info(repo: &Repo, checksum: Checksum, system: &System) -> CommitInfo {
    let commit = repo.read_commit(checksum).ok();
    let deployment = [Some(&system.booted), system.pending.as_ref()]
        .into_iter()
        .flatten()
        .chain(system.deployments.iter())
        .find(|d| d.checksum == checksum)
        .map(|d| format!("{} {}", d.osname, d.id()));
    CommitInfo {
        checksum,
        version: commit.as_ref().and_then(|c| c.version().map(str::to_string)),
        subject: commit.map(|c| c.subject).unwrap_or_default(),
        deployment,
    }
}

/// Counts of paths in `/usr` that differ between two commits.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeCounts {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

/// The recorded state checked against what is mounted on `/usr`: a *Live*
/// state needs an overlay (livefs's own, or the ostree transient unlock it
/// wrote through); with none, its `/usr` is gone — `/run` survives a soft
/// reboot, an overlay need not — and it reads as *UsrLost*.
pub fn reconcile(recorded: LiveState, usr: &UsrState) -> LiveState {
    match (recorded, usr) {
        (LiveState::Live { commit }, UsrState::Locked) => LiveState::UsrLost { commit },
        (state, _) => state,
    }
}

/// What `livefs status` reports.
#[derive(Debug, Clone, Serialize)]
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
    pub layer: Option<overlay::LayerUsage>,
    /// Units and processes that still run what was replaced since boot.
    pub restarts: crate::restart::Restarts,
    /// What `/run/ostree-booted` says of this boot (composefs, read-only sysroot, …).
    pub boot: crate::sysroot::booted::BootRecord,
    /// rpm-ostree's apply-live state, when it has live-applied to this boot
    /// (livefs then refuses to change /usr).
    pub rpm_ostree_live: Option<String>,
    /// What a live apply of the pending deployment would deliver.
    pub strategy: Option<crate::strategy::Strategy>,
    /// The deployment loaded at `/run/nextroot` (`ostree admin
    /// prepare-soft-reboot`): the next `systemctl reboot` is a soft reboot into it.
    pub soft_reboot_into: Option<CommitInfo>,
}

pub fn status(paths: &Paths) -> anyhow::Result<Status> {
    let system = System::load(&paths.root, &paths.sysroot)?;
    let repo = system.repo()?;
    let states = StateDir::new(&paths.root);
    let usr = UsrState::detect(&paths.root, &system.booted.path)?;
    let state = reconcile(states.load(&system.booted.id())?, &usr);
    if let LiveState::UsrLost { .. } = state {
        // Only under the lock: an apply may be about to mount and flag /usr.
        if let Ok(_lock) = states.lock() {
            overlay::forget_unlock(&paths.root, &system.booted)?;
        }
    }
    let booted = system.booted.checksum;
    let (live, in_progress, compare_to) = match state {
        LiveState::Booted | LiveState::UsrLost { .. } => (None, None, None),
        LiveState::Live { commit } => (Some(commit_info(&repo, commit, &system)), None, Some(commit)),
        LiveState::Applying { from, to } => {
            (None, Some((commit_info(&repo, from, &system), commit_info(&repo, to, &system))), Some(to))
        }
    };
    let changes = match compare_to {
        Some(c) => {
            let d = usr_diff(&repo, booted, c)?;
            Some(ChangeCounts { added: d.added.len(), changed: d.modified.len(), removed: d.removed.len() })
        }
        None => None,
    };
    let layer = match &usr {
        UsrState::Livefs { layer } => {
            Some(overlay::layer_usage(&overlay::layers_dir(&system.sysroot, &system.booted).join(layer))?)
        }
        _ => None,
    };
    let restarts =
        crate::restart::report(&paths.root, &states.replaced()?, &Default::default(), &states.unit_changes()?);
    let strategy = match &system.pending {
        Some(p) => {
            let mut s = strategy_of(&repo, &system, p.checksum)?;
            // What it would replace and restart, from what /usr holds now: the
            // plan an apply would check.
            let (plan, _) = plan_usr(&repo, state.current(booted).unwrap_or(booted), p.checksum)?;
            add_costs(&mut s, &paths.root, &plan, &changed_paths(&plan, &crate::etc::EtcReport::default()))?;
            Some(s)
        }
        None => None,
    };
    Ok(Status {
        soft_reboot_into: system.next_root.as_ref().map(|d| commit_info(&repo, d.checksum, &system)),
        strategy,
        restarts,
        rpm_ostree_live: rpm_ostree_live(&system, &repo),
        boot: system.boot.clone(),
        booted: commit_info(&repo, booted, &system),
        pending: system.pending.as_ref().map(|p| commit_info(&repo, p.checksum, &system)),
        live,
        in_progress,
        state,
        usr,
        changes,
        layer,
    })
}

/// What `apply` and `reset` were asked to do.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The commit to apply; default: the pending deployment's.
    pub target: Option<String>,
    /// Allow changing and removing existing paths, not only adding.
    pub allow_replacement: bool,
    pub dry_run: bool,
    /// Skip every trigger (sysusers, tmpfiles, ldconfig, daemon-reload).
    pub no_triggers: bool,
    /// Afterwards, restart, reload, stop and start units as a boot would.
    pub restart: bool,
}

/// How a transition runs (the parts of a [`Request`] that are not its target).
#[derive(Debug, Clone, Copy, Default)]
struct Mode {
    allow_replacement: bool,
    dry_run: bool,
    no_triggers: bool,
    restart: bool,
}

/// The loader cache, under `/etc`, that the ldconfig trigger rewrites.
const LD_SO_CACHE: &str = "/ld.so.cache";

/// How `/etc` follows `/usr` in a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EtcMode {
    /// Carry the update's changes, keeping local ones (apply).
    Merge,
    /// Put back what the journal recorded (reset).
    Restore,
}

/// What an apply or reset did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub from: Checksum,
    pub to: Checksum,
    pub dry_run: bool,
    /// The state afterwards.
    pub state: LiveState,
    /// Whether an interrupted apply was resumed first.
    pub resumed: bool,
    #[serde(flatten)]
    pub report: Report,
    /// What the `/usr` layer holds: files linked to repository objects, bytes
    /// written (absent when `/usr` did not switch to a new layer).
    pub layer: Option<crate::layer::LayerStats>,
    /// Paths the update would change that livefs keeps (the running kernel's modules).
    pub kept: Vec<String>,
    /// What happened in `/etc`.
    pub etc: crate::etc::EtcReport,
    /// `/etc` paths put back by a reset.
    pub etc_restored: Vec<String>,
    /// `/etc` is a transient overlay on this host (`etc.transient`): what livefs
    /// changed there lasts until reboot only.
    pub etc_transient: bool,
    /// Triggers run (or, in a dry run, that would run).
    pub triggers: Vec<crate::triggers::Run>,
    /// What needs a restart now.
    pub restarts: crate::restart::Restarts,
    /// Whether the running system changed (`false`: a dry run, or nothing to do).
    pub changed: bool,
    /// Whether the update goes live whole, or what needs a reboot.
    pub strategy: crate::strategy::Strategy,
    /// With `--restart`: what was (in a dry run: would be) stopped, reloaded,
    /// restarted and started; `restarts` then says what is left.
    pub restart: Option<crate::activation::Activation>,
    /// The plan, one operation per line (dry runs).
    #[serde(skip)]
    pub plan_text: String,
    /// What went wrong after the transition was done (housekeeping): reported,
    /// never the exit status.
    pub warnings: Vec<String>,
}

/// The paths of `/usr` that changes are limited to without --allow-replacement:
/// additions anywhere, and anything under `usr/etc` (the defaults `/etc` is
/// merged from, which no running program reads).
fn is_usr_etc(path: &str) -> bool {
    path == "/etc" || path.starts_with("/etc/")
}

/// Why livefs refused an apply before touching anything (exit status 3).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not a refusal: nothing to do (exit status 0, `"changed": false`).
    #[error("nothing to apply: no pending deployment (deploy an update first, e.g. `rpm-ostree upgrade`, `bootc upgrade` or `ostree admin deploy`, or pass --target)")]
    NoPending,
    #[error(
        "an interrupted apply to {to} must be finished first: run `livefs apply` (it resumes it), or `livefs reset`"
    )]
    InterruptedOther { to: Checksum },
    #[error("a transition was interrupted: finish it (`livefs apply` or `livefs reset`) before restarting units")]
    InterruptedRestart,
    #[error(
        "rpm-ostree has live-applied to this boot ({0}); two live-appliers on one /usr corrupt each other's view: \
         run `rpm-ostree apply-live --reset` or reboot before using livefs"
    )]
    RpmOstreeLive(String),
    #[error("an interrupted reset must be finished first: run `livefs reset`")]
    InterruptedReset,
    #[error("the update changes or removes {} existing path(s) in /usr (rerun with --allow-replacement to allow it): {}", .0.len(), list20(.0))]
    Replacement(Vec<String>),
}

fn list20(paths: &[String]) -> String {
    let shown: Vec<&str> = paths.iter().take(20).map(|p| p.as_str()).collect();
    match paths.len().saturating_sub(20) {
        0 => shown.join(", "),
        more => format!("{}, and {more} more", shown.join(", ")),
    }
}

fn usr_diff(repo: &Repo, from: Checksum, to: Checksum) -> anyhow::Result<Diff> {
    Diff::trees(repo, usr_root(repo, from)?, usr_root(repo, to)?)
}

/// The running kernel's release, whose `usr/lib/modules/RELEASE` is never removed.
fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// A system prepared for a transition: loaded, locked, its state known.
struct Live {
    paths: Paths,
    system: System,
    repo: Repo,
    states: StateDir,
    state: LiveState,
    _lock: state::Lock,
}

impl Live {
    /// Loads the system and its state under the lock. `for_reset`: a state file
    /// that does not parse does not stop a reset, which needs only the booted
    /// deployment and the `/etc` journal (it goes back from "anything applied").
    fn open(paths: &Paths, for_reset: bool) -> anyhow::Result<Live> {
        let states = StateDir::new(&paths.root);
        let system = System::load(&paths.root, &paths.sysroot)?;
        let lock = states.lock()?;
        let repo = system.repo()?;
        if let Some(what) = rpm_ostree_live(&system, &repo) {
            return Err(PolicyError::RpmOstreeLive(what).into());
        }
        let booted = system.booted.checksum;
        let state = match states.load(&system.booted.id()) {
            Err(e) if for_reset => {
                eprintln!("livefs: warning: {e:#}; resetting from it");
                LiveState::Applying { from: booted, to: booted }
            }
            r => r?,
        };
        let state = reconcile(state, &UsrState::detect(&paths.root, &system.booted.path)?);
        if let LiveState::UsrLost { .. } = state {
            overlay::forget_unlock(&paths.root, &system.booted)?;
        }
        Ok(Live { paths: paths.clone(), system, repo, states, state, _lock: lock })
    }

    fn booted(&self) -> Checksum {
        self.system.booted.checksum
    }

    /// What a live apply of `to` delivers, compared with what runs (the booted
    /// kernel and arguments).
    fn strategy(&self, to: Checksum) -> anyhow::Result<crate::strategy::Strategy> {
        strategy_of(&self.repo, &self.system, to)
    }

    /// Removes what earlier boots and earlier switches left: stale refs and
    /// layers no mount uses.
    fn clean_stale(&self) -> anyhow::Result<()> {
        if self.state == LiveState::Booted {
            pin(&self.repo, LiveState::Booted);
        }
        let layers = self.states.layers()?;
        let devices = crate::restart::devices_in_use();
        let held = |name: &str| layers.get(name).is_some_and(|dev| devices.contains(dev));
        overlay::remove_stale_layers(&self.system.sysroot, &self.system.deployments, held)
    }

    fn save(&mut self, state: LiveState) -> anyhow::Result<()> {
        self.states.save(&self.system.booted.id(), state)?;
        pin(&self.repo, state);
        self.state = state;
        Ok(())
    }

    /// The mounts below `/usr`, cloned to be carried into `to`'s tree; refused
    /// (before anything changes) when `to` has no entry of the kind to mount on.
    fn carried_to(&self, to: Checksum) -> anyhow::Result<Submounts> {
        let carried = Submounts::collect(&self.paths.root.join("usr"))?;
        let usr = usr_root(&self.repo, to)?;
        for rel in carried.paths() {
            if !has_path(&self.repo, usr, rel)? {
                return Err(crate::submounts::Uncarriable {
                    path: format!("/usr/{rel}"),
                    why: format!("{} has no /usr/{rel}", &to.to_hex()[..12]),
                }
                .into());
            }
        }
        Ok(carried)
    }

    /// Plans `from` → `to` in `/usr`, applying the policy.
    fn plan(&self, from: Checksum, to: Checksum, allow_replacement: bool) -> anyhow::Result<(Plan, Vec<String>)> {
        let (plan, kept) = plan_usr(&self.repo, from, to)?;
        if !allow_replacement {
            let offenders = replacements(&plan);
            if !offenders.is_empty() {
                return Err(PolicyError::Replacement(offenders).into());
            }
        }
        Ok((plan, kept))
    }

    /// Brings the system from `from` to `to`: `/usr` (check, record *Applying*,
    /// switch), then `/etc`, then records the end state; then runs the triggers
    /// and reports what needs a restart.
    ///
    /// `/usr` changes in one of two ways. Normally ([`UsrStrategy::Layer`]) a layer
    /// booted → `to` is built off to the side and `/usr` switched to it in one
    /// mount operation (or, for `to` = booted, livefs's overlay detached), so `/usr`
    /// is always exactly one of the two trees. Over an ostree transient unlock,
    /// whose upper holds the admin's own changes, the difference is written
    /// through it file by file ([`UsrStrategy::WriteThrough`]).
    fn transition(&mut self, from: Checksum, to: Checksum, etc_mode: EtcMode, mode: Mode) -> anyhow::Result<Outcome> {
        let Mode { allow_replacement, dry_run, no_triggers, restart } = mode;
        // What running programs see change, under the replacement policy.
        let (plan, kept) = self.plan(from, to, allow_replacement)?;
        let root = self.paths.root.clone();
        if restart {
            crate::activation::check(&root)?;
        }
        let usr = UsrState::detect(&root, &self.system.booted.path)?;
        overlay::check_usable(&usr)?;
        let booted = self.booted();
        // Checks run before anything changes: a refusal changes nothing.
        let strategy = match usr {
            UsrState::OstreeTransient { .. } => {
                let usr_fd = crate::checkout::open_dir_path(&root.join("usr"))?;
                let status = plan::preflight_at(&self.repo, &plan, usr_fd.as_fd(), usr_fd.as_fd(), "/usr", false)?;
                UsrStrategy::WriteThrough { status }
            }
            _ if to == booted => UsrStrategy::Detach { carried: self.carried_to(to)? },
            // Already showing the target (an apply run again): nothing to switch.
            UsrState::Livefs { .. } if from == to && self.state == (LiveState::Live { commit: to }) => {
                UsrStrategy::Keep
            }
            _ => {
                // The layer always goes booted → target; from the booted commit
                // that is the plan checked above (the policy only refuses, it
                // never filters).
                let layer_plan = if from == booted { plan.clone() } else { self.plan(booted, to, true)?.0 };
                let site = overlay::LayerSite::open(&self.system.sysroot, &self.system.booted, &self.repo)?;
                let footprint = layer_footprint(&layer_plan, site.links());
                plan::check_footprint(footprint, site.filesystem(), &self.system.sysroot.display().to_string())?;
                UsrStrategy::Layer { plan: layer_plan, site, carried: self.carried_to(to)? }
            }
        };
        let etc_dry = match etc_mode {
            EtcMode::Merge => crate::etc::merge(&self.repo, from, to, &root, true)?,
            EtcMode::Restore => crate::etc::EtcReport::default(),
        };
        let todo = vec![plan::Status::Todo; plan.ops.len()];
        let status = match &strategy {
            UsrStrategy::WriteThrough { status } => status,
            _ => &todo,
        };
        let report = Report::of_plan(&self.repo, &plan, status)?;
        let mut outcome = Outcome {
            from,
            to,
            dry_run,
            state: self.state,
            resumed: false,
            report,
            layer: None,
            kept,
            plan_text: plan.describe(status),
            warnings: Vec::new(),
            etc: etc_dry,
            etc_restored: Vec::new(),
            etc_transient: self.system.boot.transient_etc.is_some(),
            triggers: Vec::new(),
            restarts: Default::default(),
            changed: false,
            restart: None,
            strategy: match etc_mode {
                EtcMode::Merge => self.strategy(to)?,
                EtcMode::Restore => crate::strategy::Strategy { live: true, ..Default::default() },
            },
        };
        let changed = changed_paths(&plan, &outcome.etc);
        let mut actions = crate::triggers::actions_for(changed.iter().map(String::as_str));
        let (added, removed) = added_and_removed(&plan, &outcome.etc);
        let mut new_events = crate::state::UnitEvents::default();
        crate::activation::record(&mut new_events, &added, &removed);
        let pending = replaced_by(&plan);
        if etc_mode == EtcMode::Merge {
            add_costs(&mut outcome.strategy, &root, &plan, &changed)?;
        }
        if dry_run {
            outcome.restarts = would_restart(&root, Some(&self.states), &pending, &changed)?;
            if restart {
                outcome.restart = Some(activate(&root, &self.states, &outcome.restarts, &new_events, true)?);
            }
            outcome.triggers = actions
                .iter()
                .map(|&action| crate::triggers::Run {
                    action,
                    command: String::new(),
                    ok: true,
                    skipped: true,
                    output: "dry run".into(),
                    gave_up: false,
                })
                .collect();
            return Ok(outcome);
        }
        // Room for the records in /run, before anything changes: an apply needs it
        // (refused on a full /run), the way back uses what there is.
        match etc_mode {
            EtcMode::Merge => self.states.reserve()?,
            EtcMode::Restore => {
                let _ = self.states.reserve();
                crate::state::allow_way_back_reserve();
            }
        }
        // The layer is built off to the side before anything is recorded: a build
        // that fails (no space, a missing object) leaves the state as it was, and
        // a directory no mount uses, which the next run removes.
        let built = match &strategy {
            UsrStrategy::Layer { plan: layer_plan, site, .. } => {
                let target = usr_root(&self.repo, to)?;
                let (path, fd) = site.new_layer(&to.to_hex())?;
                let stats = crate::layer::build(&self.repo, site.objects(), target, layer_plan, fd.as_fd())?;
                Some((path, stats))
            }
            _ => None,
        };
        {
            // Pinned under ostree's sysroot lock, once the target is known to be
            // complete: from here on a resume and a reset have what they need.
            let _sysroot = self.system.lock()?;
            self.repo.read_commit(to).with_context(|| format!("cannot read commit {to}"))?;
            // A reset from the booted state with no /etc journal has nothing to
            // undo: it writes nothing it does not have to (a full /run does not
            // stop it).
            let nothing_to_undo = from == to && self.state == LiveState::Booted && !crate::etc::has_journal(&root)?;
            if !nothing_to_undo {
                self.save(LiveState::Applying { from, to })?;
            }
        }
        match strategy {
            UsrStrategy::WriteThrough { status } => {
                if !plan.ops.is_empty() {
                    let view = overlay::writable_view(&root)?;
                    outcome.report = apply::execute(&self.repo, &plan, &status, view.as_fd())?;
                }
            }
            UsrStrategy::Keep => {}
            UsrStrategy::Detach { mut carried } => overlay::detach(&root, &self.system.booted, &mut carried)?,
            UsrStrategy::Layer { mut carried, .. } => {
                let (path, stats) = built.expect("built above");
                let lower = self.system.booted.path.join("usr");
                overlay::switch(&root, &lower, &path, &self.system.booted, &mut carried)?;
                let dev = rustix::fs::stat(root.join("usr"))?.st_dev;
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.states.save_layer(&name, dev)?;
                outcome.report.bytes_written = stats.bytes_written;
                outcome.layer = Some(stats);
            }
        }
        match etc_mode {
            EtcMode::Merge => outcome.etc = crate::etc::merge(&self.repo, from, to, &root, false)?,
            EtcMode::Restore => {
                let r = crate::etc::restore(&root)?;
                outcome.etc_restored = r.paths;
                outcome.etc.paths = r.failed;
            }
        }
        // The triggers and what processes may hold are recorded before the state
        // says the transition is done: a kill from here on loses neither.
        for a in crate::triggers::pending(&root)? {
            if !actions.contains(&a) {
                actions.push(a);
            }
        }
        actions.sort();
        match etc_mode {
            // ldconfig rewrites /etc/ld.so.cache: journaled first, so a reset puts it back.
            EtcMode::Merge if actions.contains(&Action::Ldconfig) && !no_triggers => {
                crate::etc::journal_path(&root, LD_SO_CACHE)?
            }
            // The cache restored with /etc is the booted /usr's: nothing to rebuild.
            EtcMode::Restore if outcome.etc_restored.iter().any(|p| p == LD_SO_CACHE) => {
                actions.retain(|a| *a != Action::Ldconfig)
            }
            _ => {}
        }
        if !no_triggers {
            crate::triggers::record_pending(&root, &actions)?;
        }
        let replaced = record_replaced(&self.states, &plan)?;
        let units = record_unit_changes(&self.states, &changed)?;
        let mut events = self.states.unit_events()?;
        let before = events.clone();
        crate::activation::record(&mut events, &added, &removed);
        if events != before {
            self.states.save_unit_events(&events)?;
        }
        let done = LiveState::reached(to, booted);
        if done != self.state {
            self.save(done)?;
        }
        outcome.state = done;
        if !no_triggers {
            outcome.triggers = crate::triggers::run(&root, &actions)?;
        }
        // What this switch (or an earlier boot) left is stale now. The transition
        // is done: a failure here is a warning, and the next run tries again.
        if let Err(e) = self.clean_stale() {
            outcome.warnings.push(format!("cannot remove what earlier transitions left: {e:#}"));
        }
        outcome.report.mutations = crate::fault::count();
        outcome.changed = !plan.ops.is_empty()
            || outcome.layer.is_some()
            || !outcome.etc_restored.is_empty()
            || outcome
                .etc
                .paths
                .iter()
                .any(|p| matches!(p.action, EtcAction::Added | EtcAction::Updated | EtcAction::Removed))
            || outcome.triggers.iter().any(|t| !t.skipped);
        let report = || crate::restart::report(&root, &replaced, &Default::default(), &units);
        outcome.restarts = report();
        if restart {
            outcome.restart = Some(activate(&root, &self.states, &outcome.restarts, &Default::default(), false)?);
            outcome.restarts = report();
        }
        Ok(outcome)
    }
}

/// How `/usr` goes from one tree to the next (see [`Live::transition`]).
enum UsrStrategy {
    /// Build a layer booted → target and switch `/usr` to it, carrying the
    /// mounts below `/usr` across.
    Layer { plan: Plan, site: overlay::LayerSite, carried: Submounts },
    /// Back to the booted `/usr`: detach livefs's overlay, carrying the mounts
    /// below `/usr` across.
    Detach { carried: Submounts },
    /// `/usr` shows the target already.
    Keep,
    /// Write the difference through an ostree transient unlock.
    WriteThrough { status: Vec<plan::Status> },
}

/// The space and inodes a layer needs: an entry per operation (a directory, a
/// whiteout; a file too unless its files are `links` to the repository's
/// objects, which take no inode and no space), one per parent directory the
/// layer makes for them, and the layers' own directories and refs. Copies take
/// their content's space too.
fn layer_footprint(plan: &Plan, links: bool) -> crate::diff::Footprint {
    let mut dirs = std::collections::HashSet::new();
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
    let mut f = crate::diff::Footprint { bytes: 0, space: entries * crate::diff::BLOCK, entries };
    if !links {
        f += plan.total;
    }
    f
}

/// What a live apply of `to` delivers on `system`.
fn strategy_of(repo: &Repo, system: &System, to: Checksum) -> anyhow::Result<crate::strategy::Strategy> {
    let diff = usr_diff(repo, system.booted.checksum, to)?;
    let target_kargs = system.deployments.iter().find(|d| d.checksum == to).and_then(|d| d.kargs.as_deref());
    Ok(crate::strategy::of(&diff, &kernel_release(), system.booted.kargs.as_deref(), target_kargs))
}

/// Whether the tree `root` has an entry (file or directory) at `rel`.
fn has_path(repo: &Repo, root: TreeRoot, rel: &str) -> anyhow::Result<bool> {
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

/// Plans `from` → `to` in `/usr`: what running programs see change. The
/// running kernel's modules are kept out (returned, as `/usr` paths).
fn plan_usr(repo: &Repo, from: Checksum, to: Checksum) -> anyhow::Result<(Plan, Vec<String>)> {
    let diff = usr_diff(repo, from, to)?;
    let mut plan = Plan::new(repo, &diff)?;
    let modules = format!("/lib/modules/{}", kernel_release());
    let mut kept = Vec::new();
    plan.ops.retain(|op| {
        let under = op.path == modules || op.path.starts_with(&format!("{modules}/"));
        let keep = under && !matches!(op.kind, OpKind::MakeDir | OpKind::AddFile);
        if keep {
            kept.push(format!("/usr{}", op.path));
        }
        !keep
    });
    plan.total = plan.ops.iter().fold(crate::diff::Footprint::default(), |mut t, op| {
        t += op.footprint;
        t
    });
    Ok((plan, kept))
}

/// The existing `/usr` paths a plan changes or removes (a file, a symlink, a
/// directory's metadata or type), outside `/usr/etc` (the defaults `/etc` is
/// merged from): exactly what `--allow-replacement` allows, and without it
/// refuses. One answer for `status`, `apply --dry-run`, the refusal and `apply`.
fn replacements(plan: &Plan) -> Vec<String> {
    plan.ops
        .iter()
        .filter(|op| !matches!(op.kind, OpKind::MakeDir | OpKind::AddFile) && !is_usr_etc(&op.path))
        .map(|op| format!("/usr{}", op.path))
        .collect()
}

/// The `/usr` tree of a commit.
fn usr_root(repo: &Repo, commit: Checksum) -> anyhow::Result<TreeRoot> {
    let c = repo.read_commit(commit).with_context(|| format!("cannot read commit {commit}"))?;
    TreeRoot::of_subpath(repo, &c, "/usr").with_context(|| format!("in commit {commit}"))
}

/// Every path the transition changes, absolute: `/usr` operations and `/etc`
/// changes (what triggers and unit restarts look at).
fn changed_paths(plan: &Plan, etc: &crate::etc::EtcReport) -> Vec<String> {
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

/// Acts on units as a boot would (see `activation`) for `restarts` and the unit
/// events of this boot (plus `new_events`, this transition's in a dry run);
/// remembers what failed for the next `livefs restart`.
fn activate(
    root: &std::path::Path,
    states: &StateDir,
    restarts: &crate::restart::Restarts,
    new_events: &crate::state::UnitEvents,
    dry_run: bool,
) -> anyhow::Result<crate::activation::Activation> {
    let mut events = states.unit_events()?;
    let mut a = crate::activation::plan(root, restarts, &events, new_events);
    a.dry_run = dry_run;
    if !dry_run {
        crate::activation::execute(&mut a);
        crate::activation::remember(&mut events, &a);
        states.save_unit_events(&events)?;
    }
    Ok(a)
}

/// Adds to a strategy what the update costs the running system: the `/usr`
/// paths it replaces or removes ([`replacements`] of its plan) and what it
/// alone would need restarted once all of `changed` (absolute) are.
fn add_costs(
    s: &mut crate::strategy::Strategy,
    root: &std::path::Path,
    plan: &Plan,
    changed: &[String],
) -> anyhow::Result<()> {
    s.replaces = replacements(plan);
    s.replaces.sort();
    s.restarts = would_restart(root, None, &replaced_by(plan), changed)?;
    Ok(())
}

/// What would need a restart once paths `changed` (absolute) are, `pending`
/// among them replaced or removed: because of that change alone, or (with
/// `since_boot`) together with what earlier transitions of this boot left.
fn would_restart(
    root: &std::path::Path,
    since_boot: Option<&StateDir>,
    pending: &std::collections::HashSet<String>,
    changed: &[String],
) -> anyhow::Result<crate::restart::Restarts> {
    let (mut units, replaced) = match since_boot {
        Some(states) => (states.unit_changes()?, states.replaced()?),
        None => Default::default(),
    };
    let now = crate::restart::now_monotonic_usec();
    units.extend(crate::restart::changed_units(changed.iter().map(String::as_str)).into_iter().map(|u| (u, now)));
    Ok(crate::restart::report(root, &replaced, pending, &units))
}

/// The files of `/usr` this plan replaces or removes, absolute.
fn replaced_by(plan: &Plan) -> std::collections::HashSet<String> {
    plan.ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::ReplaceFile | OpKind::ReplaceType | OpKind::Remove))
        .map(|op| format!("/usr{}", op.path))
        .collect()
}

/// The paths a transition adds and removes (absolute, `/usr` and `/etc`): where
/// units become wanted or go away.
fn added_and_removed(plan: &Plan, etc: &crate::etc::EtcReport) -> (Vec<String>, Vec<String>) {
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

/// Adds the files this plan replaces or removes to those replaced since boot
/// (`ROOT/run/livefs/replaced.json`), which processes may still hold.
fn record_replaced(states: &StateDir, plan: &Plan) -> anyhow::Result<std::collections::HashSet<String>> {
    let mut set = states.replaced()?;
    let before = set.len();
    set.extend(replaced_by(plan));
    // Written only when it grows: a transition with nothing to record writes nothing.
    if set.len() != before {
        states.save_replaced(&set)?;
    }
    Ok(set)
}

/// Adds the unit files among `changed` to those changed since boot
/// (`ROOT/run/livefs/units.json`), stamped now: a unit started before runs the old
/// definition.
fn record_unit_changes(states: &StateDir, changed: &[String]) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut units = states.unit_changes()?;
    let changed_units = crate::restart::changed_units(changed.iter().map(String::as_str));
    if !changed_units.is_empty() {
        let now = crate::restart::now_monotonic_usec();
        for u in changed_units {
            units.insert(u, now);
        }
        states.save_unit_changes(&units)?;
    }
    Ok(units)
}

/// rpm-ostree's apply-live state for this boot, if any: its stamp in
/// `/run/ostree/deployment-state/CSUM.SERIAL/`, or its refs in the repository
/// while `/usr` is an ostree transient unlock (the overlay rpm-ostree writes to;
/// after a reboot its refs are stale and ignored).
fn rpm_ostree_live(system: &System, repo: &Repo) -> Option<String> {
    let stamp =
        system.root.join("run/ostree/deployment-state").join(system.booted.id()).join("rpmostree-is-live.stamp");
    if stamp.exists() {
        return Some(stamp.display().to_string());
    }
    let usr = UsrState::detect(&system.root, &system.booted.path).ok()?;
    if !matches!(usr, UsrState::OstreeTransient { .. }) {
        return None;
    }
    ["rpmostree/live-apply", "rpmostree/live-apply-inprogress"]
        .into_iter()
        .find(|r| repo.resolve_rev(r).is_ok())
        .map(|r| format!("ref {r} in {}", repo.path().display()))
}

/// Pins what `state` uses against pruning. A read-only repository (a sysroot
/// mounted read-only) only loses the pin, which is reported.
fn pin(repo: &Repo, state: LiveState) {
    if let Err(e) = state::sync_refs(repo, state) {
        eprintln!("livefs: warning: cannot update the livefs/* refs in {}: {e:#}", repo.path().display());
    }
}

/// `livefs apply`: the pending deployment (or `--target`) into the running `/usr`.
pub fn apply(paths: &Paths, req: &Request) -> anyhow::Result<Outcome> {
    let mut live = Live::open(paths, false)?;
    let target = match (&req.target, live.state) {
        (Some(rev), _) => live.repo.resolve_rev(rev)?,
        // An interrupted apply resumes its recorded (pinned) target, even if the
        // pending deployment changed or was undeployed since. An interrupted reset
        // is finished by `livefs reset`.
        (None, LiveState::Applying { to, .. }) if to != live.booted() => to,
        (None, LiveState::Applying { .. }) => return Err(PolicyError::InterruptedReset.into()),
        (None, _) => match (&live.system.pending, &live.system.pending_error) {
            (_, Some(e)) => bail!("cannot tell the pending deployment: {e}"),
            (Some(p), None) => p.checksum,
            (None, None) => return Err(PolicyError::NoPending.into()),
        },
    };
    let (from, resumed) = match live.state {
        LiveState::Applying { to, .. } if to == live.booted() => return Err(PolicyError::InterruptedReset.into()),
        LiveState::Applying { from, to } if to == target => (from, true),
        LiveState::Applying { to, .. } => return Err(PolicyError::InterruptedOther { to }.into()),
        // /etc carries the lost commit's changes: the plan starts from it.
        LiveState::Live { commit } | LiveState::UsrLost { commit } => (commit, false),
        LiveState::Booted => (live.booted(), false),
    };
    let mode = Mode {
        allow_replacement: req.allow_replacement,
        dry_run: req.dry_run,
        no_triggers: req.no_triggers,
        restart: req.restart,
    };
    let mut outcome = live.transition(from, target, EtcMode::Merge, mode)?;
    outcome.resumed = resumed;
    Ok(outcome)
}

/// Whether `/usr` is changed file by file (an ostree transient unlock), so that
/// an interrupted apply left a mix to finish first.
fn write_through(live: &Live) -> anyhow::Result<bool> {
    Ok(matches!(UsrState::detect(&live.paths.root, &live.system.booted.path)?, UsrState::OstreeTransient { .. }))
}

/// `livefs reset`: `/usr` back to the booted commit (finishing an interrupted
/// apply first), state back to *Booted*.
pub fn reset(paths: &Paths, req: &Request) -> anyhow::Result<Outcome> {
    let Request { dry_run, no_triggers, restart, .. } = *req;
    let mut live = Live::open(paths, true)?;
    let booted = live.booted();
    let mut resumed = false;
    let from = match live.state {
        LiveState::Booted => booted,
        LiveState::Live { commit } | LiveState::UsrLost { commit } => commit,
        // /usr shows one whole tree: going back needs no forward step, and /etc
        // comes back from its journal.
        LiveState::Applying { to, .. } if !write_through(&live)? => to,
        LiveState::Applying { from, to } if !dry_run => {
            let finish = Mode { allow_replacement: true, no_triggers: true, ..Mode::default() };
            live.transition(from, to, EtcMode::Merge, finish)
                .context("cannot finish the interrupted apply before the reset")?;
            resumed = true;
            to
        }
        LiveState::Applying { .. } => {
            bail!("an apply was interrupted: run `livefs reset` without --dry-run to finish it and reset")
        }
    };
    let mode = Mode { allow_replacement: true, dry_run, no_triggers, restart };
    let mut outcome = live.transition(from, booted, EtcMode::Restore, mode)?;
    outcome.resumed = resumed;
    Ok(outcome)
}

/// What `livefs restart` did (or, in a dry run, would do), and what is left
/// needing a restart afterwards.
#[derive(Debug, Clone, Serialize)]
pub struct RestartOutcome {
    pub restart: crate::activation::Activation,
    pub restarts: crate::restart::Restarts,
}

/// `livefs restart`: finishes what earlier transitions of this boot left to a
/// restart — units running an old definition or old code, units newly wanted or
/// removed — as `apply --restart` does right after a transition.
pub fn restart(paths: &Paths, dry_run: bool) -> anyhow::Result<RestartOutcome> {
    let live = Live::open(paths, false)?;
    if matches!(live.state, LiveState::Applying { .. }) {
        return Err(PolicyError::InterruptedRestart.into());
    }
    crate::activation::check(&paths.root)?;
    let (replaced, units) = (live.states.replaced()?, live.states.unit_changes()?);
    let report = || crate::restart::report(&paths.root, &replaced, &Default::default(), &units);
    let restart = activate(&paths.root, &live.states, &report(), &Default::default(), dry_run)?;
    Ok(RestartOutcome { restart, restarts: report() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_state_is_checked_against_the_mounts() {
        let (a, b) = (Checksum::from_bytes(&[0xaa; 32]).unwrap(), Checksum::from_bytes(&[0xbb; 32]).unwrap());
        let ours = UsrState::Livefs { layer: format!("usr.{}.1", &b.to_hex()[..12]) };
        let unlock = UsrState::OstreeTransient { upper: None, read_only: true };
        let live = LiveState::Live { commit: b };
        let applying = LiveState::Applying { from: a, to: b };
        let cases = [
            (LiveState::Booted, UsrState::Locked, LiveState::Booted),
            (LiveState::Booted, ours.clone(), LiveState::Booted),
            (live, ours.clone(), live),
            // Written through an ostree transient unlock: the unlock's overlay holds it.
            (live, unlock.clone(), live),
            // The overlay is gone (a soft reboot, an unmount): never live.
            (live, UsrState::Locked, LiveState::UsrLost { commit: b }),
            // An interrupted transition stays interrupted: apply resumes it, reset finishes it.
            (applying, UsrState::Locked, applying),
            (applying, ours, applying),
            (applying, unlock, applying),
        ];
        for (recorded, usr, want) in cases {
            assert_eq!(reconcile(recorded, &usr), want, "{recorded:?} with /usr {usr:?}");
        }
    }
}
