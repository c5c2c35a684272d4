//! Taking the way back of the last apply (see `way_back`): `/usr` switched
//! back in one mount operation (to the kept layer of the previous live commit,
//! or to the booted `/usr`), `/etc` undone from the apply's own journal,
//! daemon-reload, the units the apply acted on acted on again the other way —
//! by `livefs rollback`, by an apply whose health checks failed, or by the
//! timer of an apply nobody confirmed. A kill half-way leaves *RollingBack*,
//! which the next `apply`, `rollback` or `reset` finishes.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::live::decide::{Command, Limits};
use crate::live::session::Session;
use crate::live::strategy::Tier;
use crate::live::transition::{Options, Outcome};
use crate::live::way_back::{self, Cause, LastRollback};

/// A rollback taken: why, how long the way back took, and what it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolledBack {
    pub cause: Cause,
    /// Why, in words.
    pub reason: String,
    /// What failed, one line each (failed checks).
    pub failed: Vec<String>,
    /// The units whose checks failed.
    pub failed_units: Vec<String>,
    /// How long the way back took, in seconds (from the decision to roll back
    /// to the last unit action).
    pub seconds: f64,
    /// The transition back, as `livefs apply` reports one.
    pub outcome: Box<Outcome>,
}

/// Rolls back the last apply on the system `s` (locked), restarting units as
/// `options` says, for `reason` (what failed, and which units); records the
/// rollback (not in a dry run) for `livefs status`.
pub fn run(
    s: &mut Session,
    options: Options,
    cause: Cause,
    reason: String,
    (failed, failed_units): (Vec<String>, Vec<String>),
    command: &str,
) -> anyhow::Result<RolledBack> {
    let start = Instant::now();
    // The way back looks at what needs a restart itself.
    let options = Options { restarts_later: false, ..options };
    let limits = Limits { allow_replacement: true, max_strategy: Tier::Reboot };
    let outcome = super::run_step(s, Command::Rollback { dry_run: options.dry_run }, limits, options)?;
    let seconds = start.elapsed().as_secs_f64();
    if !options.dry_run {
        let last = LastRollback {
            at: crate::clock::now(),
            from: outcome.from,
            to: outcome.to,
            cause,
            reason: reason.clone(),
            command: command.to_string(),
            seconds,
        };
        if let Err(e) = way_back::record_rollback(&s.host.run, &last) {
            crate::messages::warn(format!("cannot record the rollback: {e:#}"));
        }
    }
    Ok(RolledBack { cause, reason, failed, failed_units, seconds, outcome: Box::new(outcome) })
}
