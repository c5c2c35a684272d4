//! The running system: `livefs status`, `apply`, `reset` and `restart` — the
//! engines (the `/usr` layer, the `/etc` merge, triggers, activation) driven by
//! the deployments and the live state.
//!
//! Each command opens the system once ([`session::Session`]), asks
//! [`decide::decide`] (pure) what the state found lets it do, and runs that
//! step: a [`transition`] (prepared read-only, then committed step by step, see
//! `state.rs`'s design notes) or an activation. Engines return data; the CLI
//! renders it.

pub mod auto;
mod changes;
pub mod confirm;
pub mod decide;
mod effects;
pub mod rollback;
pub mod session;
pub mod state;
pub mod status;
pub mod strategy;
pub mod transition;
pub mod verify;
pub mod way_back;

use serde::{Deserialize, Serialize};

use crate::host::Paths;
use crate::systemd::activation::Activation;
use crate::systemd::needs_restart::{Processes, Restarts};
use decide::{Command, Limits, Refusal, Step};
use rollback::RolledBack;
use session::Session;
use strategy::Tier;
use transition::{Options, Outcome, Transition};
use verify::{After, Checks};
use way_back::Cause;

pub use status::status;

/// `livefs apply`'s request.
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    /// The commit to apply (a revision); default: the pending deployment's.
    pub target: Option<String>,
    /// Allow changing and removing existing paths, not only adding.
    pub allow_replacement: bool,
    /// The most disruptive strategy accepted: an update that needs more is refused.
    pub max_strategy: Tier,
    pub options: Options,
    /// The health checks afterwards, and the confirmation awaited.
    pub checks: Checks,
}

/// What `livefs apply` did: the transition, then its checks and what they led to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(flatten)]
    pub after: After,
}

/// `livefs apply`: the pending deployment (or `--target`) into the running
/// `/usr`, then checked (and rolled back if unhealthy, see `verify`).
pub fn apply(paths: &Paths, req: &ApplyRequest) -> anyhow::Result<Applied> {
    let mut s = Session::open(paths, Command::Apply { target: None }, req.options.lock_wait)?;
    let target = req.target.as_deref().map(|rev| s.repo.resolve_rev(rev)).transpose()?;
    let limits = Limits { allow_replacement: req.allow_replacement, max_strategy: req.max_strategy };
    if req.checks.confirm_within.is_some() {
        confirm::check(&paths.root)?;
    }
    // An interrupted rollback is finished first (see `decide`): that is the
    // way back, not an update to check.
    let finishing_rollback = matches!(s.state, state::LiveState::RollingBack { .. });
    let options = Options { restarts_later: !finishing_rollback, ..req.options };
    let mut outcome = run_step(&mut s, Command::Apply { target }, limits, options)?;
    let after = match finishing_rollback {
        true => After::default(),
        false => verify::after_apply(&mut s, &mut outcome, &req.checks, req.options, "apply")?,
    };
    Ok(Applied { outcome, after })
}

/// `livefs rollback`'s request.
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    pub options: Options,
    /// Only if the apply with this confirmation ID still awaits it (what the
    /// timer of `apply --confirm-within` runs).
    pub if_unconfirmed: Option<String>,
}

/// `livefs rollback`: undoes the last apply (see `rollback`).
pub fn rollback(paths: &Paths, req: &RollbackRequest) -> anyhow::Result<RolledBack> {
    let command = Command::Rollback { dry_run: req.options.dry_run };
    let mut s = Session::open(paths, command, req.options.lock_wait)?;
    let (cause, reason) = match &req.if_unconfirmed {
        Some(id) if !confirm::awaits(s.way_back.as_ref(), id) => return Err(Refusal::NoRollback.into()),
        Some(_) => {
            let seconds = s.way_back.as_ref().and_then(|w| w.confirm.as_ref()).map_or(0, |c| c.seconds);
            (Cause::Unconfirmed, format!("not confirmed within {seconds} s (`livefs confirm`)"))
        }
        None => (Cause::ByHand, "livefs rollback".to_string()),
    };
    rollback::run(&mut s, req.options, cause, reason, Default::default(), "rollback")
}

/// `livefs reset`: `/usr` back to the booted commit (finishing an interrupted
/// apply first where `/usr` may show a mix), state back to *Booted*.
pub fn reset(paths: &Paths, options: Options) -> anyhow::Result<Outcome> {
    let command = Command::Reset { dry_run: options.dry_run };
    let mut s = Session::open(paths, command, options.lock_wait)?;
    run_step(&mut s, command, Limits { allow_replacement: true, max_strategy: Tier::Reboot }, options)
}

/// Runs what `command` decides, within `limits`.
fn run_step(s: &mut Session, command: Command, limits: Limits, options: Options) -> anyhow::Result<Outcome> {
    let Limits { allow_replacement, max_strategy } = limits;
    let Step::Transition { from, to, etc, finish_first, resumed } = decide::decide(command, &s.facts())? else {
        anyhow::bail!("{command:?} decided no transition");
    };
    if let Some(decide::Finish { from, to, etc }) = finish_first.map(|f| *f) {
        let finish = Options { no_triggers: true, ..Options::default() };
        let t = Transition { from, to, etc, allow_replacement: true, max_strategy: Tier::Reboot, options: finish };
        transition::run(s, t).map_err(|e| e.context("cannot finish the interrupted transition first"))?;
    }
    let mut outcome = transition::run(s, Transition { from, to, etc, allow_replacement, max_strategy, options })?;
    outcome.resumed = resumed;
    outcome.warnings.extend(crate::messages::take());
    Ok(outcome)
}

/// What `livefs restart` did (or, in a dry run, would do), and what is left
/// needing a restart afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartOutcome {
    pub restart: Activation,
    pub restarts: Restarts,
    /// What went wrong without stopping the command (a corrupt record, …).
    pub warnings: Vec<String>,
}

/// `livefs restart`: finishes what earlier transitions of this boot left to a
/// restart — units running an old definition or old code, units newly wanted or
/// removed — as `apply --restart` does right after a transition.
pub fn restart(
    paths: &Paths,
    request: crate::systemd::activation::Request,
    dry_run: bool,
    lock_wait: std::time::Duration,
) -> anyhow::Result<RestartOutcome> {
    let s = Session::open(paths, Command::Restart, lock_wait)?;
    decide::decide(Command::Restart, &s.facts())?;
    let root = &paths.root;
    crate::systemd::activation::check(root)?;
    let (replaced, units) = (effects::replaced(&s.host.run)?, effects::unit_changes(&s.host.run)?);
    let report = |processes: &Processes| {
        crate::systemd::needs_restart::report(root, processes, &replaced, &Default::default(), &units)
    };
    let restart = effects::activate(root, &s.host.run, &report(&s.processes), &Default::default(), request, dry_run)?;
    // A dry run changed nothing; an activation is looked at anew.
    let restarts = if dry_run { report(&s.processes) } else { report(&Processes::default()) };
    Ok(RestartOutcome { restart, restarts, warnings: crate::messages::take() })
}

/// Whether an error is a refusal that changed nothing, and of which kind.
pub fn refusal(e: &anyhow::Error) -> Option<&Refusal> {
    e.chain().find_map(|c| c.downcast_ref::<Refusal>())
}
