//! A transition brings `/usr` from one commit to another and `/etc` along. It
//! is a read-only [`prepare`] (all a dry run does, before rendering what it
//! found) and a [`commit`] made of the steps in `state.rs`'s design list:
//! reserve room for the records, build the layer, record *Applying*, switch
//! `/usr`, follow with `/etc`, record the effects, finish.
//!
//! `/usr` changes in one of three ways (`UsrChange`). Normally a layer booted →
//! target is built off to the side and `/usr` switched to it in one mount
//! operation (or, for the booted commit, livefs's overlay detached), so `/usr`
//! is always exactly one of the two trees. On bootc's native composefs backend
//! the target image itself is mounted and `/usr` switched to its `/usr`. Over an ostree transient unlock,
//! whose upper holds the admin's own changes, the difference is written through
//! it file by file.

mod commit;
mod prepare;

use serde::{Deserialize, Serialize};

use crate::etc::EtcReport;
use crate::host::overlay::LayerSite;
use crate::host::submounts::Submounts;
use crate::live::decide::EtcMode;
use crate::live::session::Session;
use crate::live::state::LiveState;
use crate::live::strategy::{Strategy, Tier};
use crate::repo::Checksum;
use crate::systemd::activation::{Activation, UnitEvents};
use crate::systemd::needs_restart::Restarts;
use crate::systemd::triggers::{Run, Triggers};
use crate::tree::apply::ApplyReport;
use crate::tree::layer::LayerStats;
use crate::tree::plan::{Plan, PlannedOp, Status};

pub use commit::commit;
pub use prepare::prepare;

/// How a transition runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Check and report; change nothing.
    pub dry_run: bool,
    /// Skip every trigger (sysusers, tmpfiles, ldconfig, daemon-reload).
    pub no_triggers: bool,
    /// Afterwards, restart, reload, stop and start units as a boot would.
    pub restart: bool,
    /// What `restart` may do beyond the policy's defaults.
    pub activation: crate::systemd::activation::Request,
    /// How long to wait for another livefs to finish.
    pub lock_wait: std::time::Duration,
    /// What needs a restart after the activation is left to the caller, who
    /// looks once its health checks are over (`verify`): a failed restart is
    /// rolled back without that look first, which would make it moot.
    pub restarts_later: bool,
}

/// One transition: `/usr` from `from` to `to`, `/etc` following as `etc` says.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub from: Checksum,
    pub to: Checksum,
    pub etc: EtcMode,
    /// Allow changing and removing existing paths, not only adding.
    pub allow_replacement: bool,
    /// The most disruptive strategy accepted (apply's `--max-strategy`).
    pub max_strategy: Tier,
    pub options: Options,
}

/// What an apply or reset did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub from: Checksum,
    pub to: Checksum,
    pub dry_run: bool,
    /// The state afterwards.
    pub state: LiveState,
    /// Whether an interrupted apply was resumed first.
    pub resumed: bool,
    #[serde(flatten)]
    pub report: ApplyReport,
    /// What the `/usr` layer holds: files linked to repository objects, bytes
    /// written (absent when `/usr` did not switch to a new layer).
    pub layer: Option<LayerStats>,
    /// Paths the update would change that livefs keeps (the running kernel's modules).
    pub kept: Vec<String>,
    /// What happened in `/etc`.
    pub etc: EtcReport,
    /// `/etc` paths put back by a reset.
    pub etc_restored: Vec<String>,
    /// `/etc` is a transient overlay on this host (`etc.transient`): what livefs
    /// changed there lasts until reboot only.
    pub etc_transient: bool,
    /// Triggers run (or, in a dry run, that would run).
    pub triggers: Vec<Run>,
    /// What needs a restart now.
    pub restarts: Restarts,
    /// Whether the running system changed (`false`: a dry run, or nothing to do).
    pub changed: bool,
    /// Whether the update goes live whole, or what needs a reboot.
    pub strategy: Strategy,
    /// With `--restart`: what was (in a dry run: would be) stopped, reloaded,
    /// restarted and started; `restarts` then says what is left.
    pub restart: Option<Activation>,
    /// A dry run's plan: one operation per `/usr` path, and whether it is still to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedOp>,
    /// What went wrong without stopping the command (housekeeping after the
    /// transition, a ref that cannot be pinned, a corrupt record): reported,
    /// never the exit status.
    pub warnings: Vec<String>,
}

/// How `/usr` goes from one tree to the next.
enum UsrChange {
    /// Build a layer booted → target and switch `/usr` to it, carrying the
    /// mounts below `/usr` across; or, going back, switch to the layer `kept`
    /// for the way back, built already.
    Layer { plan: Plan, site: LayerSite, carried: Submounts, kept: Option<std::path::PathBuf> },
    /// Mount the target composefs image's `/usr` and switch `/usr` to it
    /// (bootc's native backend: nothing to build), carrying the mounts below
    /// `/usr` across.
    Image { image: Checksum, carried: Submounts },
    /// Back to the booted `/usr`: detach livefs's overlay, carrying the mounts
    /// below `/usr` across.
    Detach { carried: Submounts },
    /// `/usr` shows the target already.
    Keep,
    /// Write the difference through an ostree transient unlock.
    WriteThrough { status: Vec<Status> },
}

/// A transition checked and ready to commit: everything decided, nothing changed.
pub struct Prepared {
    t: Transition,
    /// The `/usr` plan from what `/usr` shows now, under the replacement policy.
    plan: Plan,
    usr: UsrChange,
    /// Every path the transition changes, absolute.
    changed: Vec<String>,
    /// The triggers those changes call for.
    triggers: Triggers,
    /// Paths added and removed, absolute (units newly wanted or gone).
    added: Vec<String>,
    removed: Vec<String>,
    /// What the outcome says before anything runs (a dry run's whole answer).
    outcome: Outcome,
}

impl Prepared {
    /// What a dry run reports: the plan, what would run and what would need a
    /// restart, changing nothing.
    pub fn dry_run(mut self, s: &Session) -> anyhow::Result<Outcome> {
        let root = &s.host.paths.root;
        let pending = crate::live::changes::replaced_by(&self.plan);
        let o = &mut self.outcome;
        o.restarts =
            crate::live::effects::would_restart(root, &s.processes, Some(&s.host.run), &pending, &self.changed)?;
        if self.t.options.restart {
            let mut new_events = UnitEvents::default();
            crate::systemd::activation::record(&mut new_events, &self.added, &self.removed);
            // Nothing was switched back: every unit is judged as it runs now.
            let units = if self.t.etc == EtcMode::Undo { s.undo_units() } else { Default::default() };
            let undo = crate::systemd::activation::Undo { units, switched_at: None };
            o.restart = Some(crate::live::effects::activate_undoing(
                root,
                &s.host.run,
                &o.restarts,
                &new_events,
                self.t.options.activation,
                &undo,
                true,
            )?);
        }
        o.triggers = self.triggers.iter().map(|(action, configs)| Run::dry_run(action, configs)).collect();
        Ok(self.outcome)
    }
}

/// Runs a transition: prepared, then committed (or, in a dry run, reported).
pub fn run(s: &mut Session, t: Transition) -> anyhow::Result<Outcome> {
    let prepared = prepare(s, t)?;
    if t.options.dry_run {
        return prepared.dry_run(s);
    }
    commit(s, prepared)
}
