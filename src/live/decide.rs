//! What each command does in each live state: one pure function of the facts,
//! [`decide`], with a test of every cell. The I/O that gathers the facts is in
//! `session.rs`; what a step does is in `transition/`.
//!
//! | state found      | `apply`                                  | `reset`                                    | `rollback` | `restart` |
//! |------------------|------------------------------------------|--------------------------------------------|------------|-----------|
//! | Booted           | booted → target                          | booted → booted (undoes `/etc` if journaled) | nothing to roll back | activate |
//! | Live{c}, UsrLost{c} | c → target                            | c → booted                                 | c → where the apply of c started (its way back), else nothing | activate  |
//! | Applying{a→b}    | resumes a → b (with `--target`: only b)  | b → booted; over a write-through unlock, finishes a → b first | b → a (the way back of that apply) | refused |
//! | Applying{a→booted} (a reset) | refused: finish it with `reset` | booted → booted                     | refused: finish it with `reset` | refused |
//! | RollingBack{c→b} | finishes c → b (with `--target`: only b) | b → booted; over a write-through unlock, finishes c → b first | finishes c → b | refused |
//!
//! The target of an `apply` is `--target`, else the pending deployment; with
//! neither there is nothing to do (exit status 0). The way back of an apply
//! (`live::way_back`) is kept until the next apply or reset: a rollback undoes
//! the last apply, once.

use crate::live::state::LiveState;
use crate::live::strategy::{Strategy, Tier};
use crate::repo::Checksum;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `livefs apply [--target C]` (the revision already resolved).
    Apply { target: Option<Checksum> },
    /// `livefs reset [--dry-run]`.
    Reset { dry_run: bool },
    /// `livefs restart`.
    Restart,
    /// `livefs rollback [--dry-run]`.
    Rollback { dry_run: bool },
}

impl Command {
    /// Whether a state record that does not parse lets the command go on, as
    /// from an interrupted apply: a reset needs only the booted deployment and
    /// the `/etc` journal (it goes back from "anything applied").
    pub fn survives_corrupt_state(self) -> bool {
        matches!(self, Command::Reset { .. })
    }
}

/// The facts a decision is made from.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The state, checked against the mounts (`reconcile`).
    pub state: LiveState,
    pub booted: Checksum,
    /// The pending deployment's commit, or why it cannot be told.
    pub pending: Result<Option<Checksum>, String>,
    /// `/usr` is an ostree transient unlock, changed file by file: an
    /// interrupted apply left a mix to finish first.
    pub write_through: bool,
    /// The way back of the last apply: (where it started, what it applied).
    pub way_back: Option<(Checksum, Checksum)>,
}

/// How `/etc` follows `/usr` in a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcMode {
    /// Carry the update's changes, keeping local ones (apply).
    Merge,
    /// Put back what the journal recorded (reset).
    Restore,
    /// Put back what the last apply changed, and only that (rollback).
    Undo,
}

/// The step a command takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Take `/usr` from `from` to `to` and `/etc` along (`etc`). `finish_first`:
    /// an interrupted transition to complete before (over a write-through
    /// unlock, where `/usr` may show a mix). `resumed`: the step is (or
    /// completes) an interrupted one.
    Transition { from: Checksum, to: Checksum, etc: EtcMode, finish_first: Option<Box<Finish>>, resumed: bool },
    /// Act on units as a boot would (`livefs restart`).
    Activate,
}

/// An interrupted transition to finish first: `/usr` from `from` to `to`, `/etc` as `etc` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    pub from: Checksum,
    pub to: Checksum,
    pub etc: EtcMode,
}

/// Why a command does not run (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a refusal: nothing to do (`"changed": false`).
    #[error("nothing to apply: no pending deployment of the booted stateroot (deploy an update first, e.g. `rpm-ostree upgrade`, `bootc upgrade` or `ostree admin deploy`, or pass --target)")]
    NoPending,
    /// An error, not a policy: the deployments could not be read.
    #[error("cannot tell the pending deployment: {0}")]
    PendingUnknown(String),
    #[error(
        "an interrupted apply to {to} must be finished first: run `livefs apply` (it resumes it), or `livefs reset`"
    )]
    InterruptedOther { to: Checksum },
    #[error("a transition was interrupted: finish it (`livefs apply` or `livefs reset`) before restarting units")]
    InterruptedRestart,
    #[error("an interrupted reset must be finished first: run `livefs reset`")]
    InterruptedReset,
    #[error(
        "an interrupted rollback to {to} must be finished first: run `livefs rollback` (or `livefs apply`), or `livefs reset`"
    )]
    InterruptedRollback { to: Checksum },
    /// Not a refusal: nothing to do (`"changed": false`).
    #[error("nothing to roll back: no apply of this boot is left to undo (a rollback undoes the last apply, once; `livefs reset` goes back to the booted commit)")]
    NoRollback,
    /// An error, not a policy: a dry run cannot finish the interrupted apply.
    #[error("an apply was interrupted over an ostree transient unlock (/usr may show a mix): run the command without --dry-run to finish it first")]
    InterruptedDryRun,
    #[error(
        "rpm-ostree has live-applied to this boot ({0}); two live-appliers on one /usr corrupt each other's view: \
         run `rpm-ostree apply-live --reset` or reboot before using livefs"
    )]
    RpmOstreeLive(String),
    #[error("the update changes or removes {} existing path(s) in /usr (rerun with --allow-replacement to allow it): {}", .0.len(), list20(.0))]
    Replacement(Vec<String>),
    #[error("the update cannot be applied live on this SELinux host: {} (a reboot into it delivers it)", .0.join("; "))]
    Selinux(Vec<String>),
    #[error("the update needs a {} ({}), more than --max-strategy {} accepts", .needs.as_str(), .reasons.join("; "), .max.as_str())]
    Strategy { needs: Tier, max: Tier, reasons: Vec<String> },
}

/// What the caller accepts of an update: replacements, and how disruptive it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Changing and removing existing paths of `/usr`, not only adding.
    pub allow_replacement: bool,
    /// The most disruptive strategy accepted (`--max-strategy`, `MaxStrategy=`).
    pub max_strategy: Tier,
}

/// Whether an update of `strategy`, replacing the paths `replaces`, is within
/// `limits`. What it needs comes first: an update no live apply may take (on
/// an SELinux host), or one that cannot go live whole within the limit, is
/// refused for that, whatever it replaces.
pub fn within_limits(strategy: &Strategy, replaces: Vec<String>, limits: Limits) -> Result<(), Refusal> {
    if !strategy.never_live.is_empty() {
        return Err(Refusal::Selinux(strategy.never_live.clone()));
    }
    if strategy.needs > limits.max_strategy {
        return Err(Refusal::Strategy {
            needs: strategy.needs,
            max: limits.max_strategy,
            reasons: strategy.beyond_live(),
        });
    }
    if !limits.allow_replacement && !replaces.is_empty() {
        return Err(Refusal::Replacement(replaces));
    }
    Ok(())
}

/// The first 20 of `paths` (quoted for text), and how many more.
pub fn list20(paths: &[String]) -> String {
    let shown = crate::quote::join(paths.iter().take(20).map(String::as_str), ", ");
    match paths.len().saturating_sub(20) {
        0 => shown,
        more => format!("{shown}, and {more} more"),
    }
}

/// The step `command` takes from the situation `f`, or why it does not run.
pub fn decide(command: Command, f: &Facts) -> Result<Step, Refusal> {
    match command {
        Command::Apply { target } => apply(target, f),
        Command::Reset { dry_run } => reset(dry_run, f),
        Command::Rollback { dry_run } => rollback(dry_run, f),
        Command::Restart => match f.state {
            LiveState::Applying { .. } | LiveState::RollingBack { .. } => Err(Refusal::InterruptedRestart),
            _ => Ok(Step::Activate),
        },
    }
}

fn apply(target: Option<Checksum>, f: &Facts) -> Result<Step, Refusal> {
    // An interrupted rollback is finished first, whatever is pending: it is
    // what the last apply, judged unhealthy or unconfirmed, left half-undone.
    if let LiveState::RollingBack { from, to } = f.state {
        return match target {
            Some(t) if t != to => Err(Refusal::InterruptedRollback { to }),
            _ => Ok(undo(from, to, None, true)),
        };
    }
    let target = match (target, f.state) {
        (Some(t), _) => t,
        // An interrupted apply resumes its recorded (pinned) target, even if the
        // pending deployment changed or was undeployed since. An interrupted
        // reset is finished by `livefs reset`.
        (None, LiveState::Applying { to, .. }) if to != f.booted => to,
        (None, LiveState::Applying { .. }) => return Err(Refusal::InterruptedReset),
        (None, _) => match &f.pending {
            Err(e) => return Err(Refusal::PendingUnknown(e.clone())),
            Ok(Some(p)) => *p,
            Ok(None) => return Err(Refusal::NoPending),
        },
    };
    let (from, resumed) = match f.state {
        LiveState::Applying { to, .. } if to == f.booted => return Err(Refusal::InterruptedReset),
        LiveState::Applying { from, to } if to == target => (from, true),
        LiveState::Applying { to, .. } => return Err(Refusal::InterruptedOther { to }),
        // /etc carries the lost commit's changes: the plan starts from it.
        LiveState::Live { commit } | LiveState::UsrLost { commit } => (commit, false),
        LiveState::Booted => (f.booted, false),
        LiveState::RollingBack { .. } => unreachable!("finished above"),
    };
    Ok(Step::Transition { from, to: target, etc: EtcMode::Merge, finish_first: None, resumed })
}

/// `/usr` from `from` back to `to`, `/etc` undone from the last apply's journal.
fn undo(from: Checksum, to: Checksum, finish_first: Option<Box<Finish>>, resumed: bool) -> Step {
    Step::Transition { from, to, etc: EtcMode::Undo, finish_first, resumed }
}

fn rollback(dry_run: bool, f: &Facts) -> Result<Step, Refusal> {
    let way_back = f.way_back;
    match f.state {
        LiveState::RollingBack { from, to } => Ok(undo(from, to, None, true)),
        LiveState::Live { commit } | LiveState::UsrLost { commit } => match way_back {
            Some((start, applied)) if applied == commit => Ok(undo(commit, start, None, false)),
            _ => Err(Refusal::NoRollback),
        },
        // An interrupted apply is undone: /usr shows one whole tree (either);
        // over a write-through unlock it may be a mix: the apply is finished first.
        LiveState::Applying { from, to } if way_back == Some((from, to)) => match (f.write_through, dry_run) {
            (false, _) => Ok(undo(to, from, None, true)),
            (true, false) => Ok(undo(to, from, Some(Box::new(Finish { from, to, etc: EtcMode::Merge })), true)),
            (true, true) => Err(Refusal::InterruptedDryRun),
        },
        LiveState::Applying { to, .. } if to == f.booted => Err(Refusal::InterruptedReset),
        LiveState::Applying { to, .. } => Err(Refusal::InterruptedOther { to }),
        LiveState::Booted => Err(Refusal::NoRollback),
    }
}

fn reset(dry_run: bool, f: &Facts) -> Result<Step, Refusal> {
    let back = |from, finish_first, resumed| Step::Transition {
        from,
        to: f.booted,
        etc: EtcMode::Restore,
        finish_first,
        resumed,
    };
    Ok(match f.state {
        LiveState::Booted => back(f.booted, None, false),
        LiveState::Live { commit } | LiveState::UsrLost { commit } => back(commit, None, false),
        // /usr shows one whole tree: going back needs no forward step, and /etc
        // comes back from its journal.
        LiveState::Applying { to, .. } | LiveState::RollingBack { to, .. } if !f.write_through => back(to, None, false),
        LiveState::Applying { from, to } if !dry_run => {
            back(to, Some(Box::new(Finish { from, to, etc: EtcMode::Merge })), true)
        }
        LiveState::RollingBack { from, to } if !dry_run => {
            back(to, Some(Box::new(Finish { from, to, etc: EtcMode::Undo })), true)
        }
        LiveState::Applying { .. } | LiveState::RollingBack { .. } => return Err(Refusal::InterruptedDryRun),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_command() {
        let c = |b| Checksum::sha256([b; 32]);
        let (booted, b, t, p) = (c(0xa0), c(0xb0), c(0xc0), c(0xd0));
        let (booted_st, live, lost) =
            (LiveState::Booted, LiveState::Live { commit: b }, LiveState::UsrLost { commit: b });
        let live_t = LiveState::Live { commit: t };
        let applying = LiveState::Applying { from: b, to: t };
        let resetting = LiveState::Applying { from: b, to: booted };
        let rolling = LiveState::RollingBack { from: t, to: b };
        let facts = |state, pending: Result<Option<Checksum>, String>, write_through| Facts {
            state,
            booted,
            pending,
            write_through,
            way_back: None,
        };
        // The last apply went b -> t: its way back.
        let with_way_back =
            |state, write_through| Facts { way_back: Some((b, t)), ..facts(state, Ok(None), write_through) };
        let go =
            |from, to, resumed| Ok(Step::Transition { from, to, etc: EtcMode::Merge, finish_first: None, resumed });
        let back = |from, finish_first, resumed| {
            Ok(Step::Transition { from, to: booted, etc: EtcMode::Restore, finish_first, resumed })
        };
        let undo = |from, to, finish_first, resumed| {
            Ok(Step::Transition { from, to, etc: EtcMode::Undo, finish_first, resumed })
        };
        let finish = |from, to, etc| Some(Box::new(Finish { from, to, etc }));
        let apply = |target| Command::Apply { target };
        let reset = Command::Reset { dry_run: false };
        let reset_dry = Command::Reset { dry_run: true };
        let rollback = Command::Rollback { dry_run: false };
        let rollback_dry = Command::Rollback { dry_run: true };
        let (pending, none, unknown) = (Ok(Some(p)), Ok(None), Err("bad origin".to_string()));
        #[rustfmt::skip]
        let cases: Vec<(Command, Facts, Result<Step, Refusal>)> = vec![
            // apply, no --target: the pending deployment.
            (apply(None), facts(booted_st, pending.clone(), false), go(booted, p, false)),
            (apply(None), facts(live, pending.clone(), false), go(b, p, false)),
            (apply(None), facts(lost, pending.clone(), false), go(b, p, false)),
            (apply(None), facts(booted_st, none.clone(), false), Err(Refusal::NoPending)),
            (apply(None), facts(live, none.clone(), false), Err(Refusal::NoPending)),
            (apply(None), facts(booted_st, unknown.clone(), false), Err(Refusal::PendingUnknown("bad origin".into()))),
            // An interrupted apply resumes its own target, whatever is pending now.
            (apply(None), facts(applying, pending.clone(), false), go(b, t, true)),
            (apply(None), facts(applying, none.clone(), true), go(b, t, true)),
            (apply(None), facts(resetting, pending.clone(), false), Err(Refusal::InterruptedReset)),
            // An interrupted rollback is finished, whatever is pending.
            (apply(None), facts(rolling, pending.clone(), false), undo(t, b, None, true)),
            (apply(Some(b)), facts(rolling, none.clone(), true), undo(t, b, None, true)),
            (apply(Some(p)), facts(rolling, none.clone(), false), Err(Refusal::InterruptedRollback { to: b })),
            // apply --target.
            (apply(Some(t)), facts(booted_st, none.clone(), false), go(booted, t, false)),
            (apply(Some(t)), facts(live, pending.clone(), false), go(b, t, false)),
            (apply(Some(t)), facts(lost, none.clone(), false), go(b, t, false)),
            (apply(Some(t)), facts(applying, none.clone(), false), go(b, t, true)),
            (apply(Some(p)), facts(applying, none.clone(), false), Err(Refusal::InterruptedOther { to: t })),
            (apply(Some(t)), facts(resetting, none.clone(), false), Err(Refusal::InterruptedReset)),
            // reset.
            (reset, facts(booted_st, pending.clone(), false), back(booted, None, false)),
            (reset, facts(live, none.clone(), false), back(b, None, false)),
            (reset, facts(lost, none.clone(), false), back(b, None, false)),
            (reset, facts(applying, none.clone(), false), back(t, None, false)),
            (reset, facts(resetting, none.clone(), false), back(booted, None, false)),
            (reset, facts(rolling, none.clone(), false), back(b, None, false)),
            // Over a write-through unlock, /usr may be a mix: the transition is finished first.
            (reset, facts(applying, none.clone(), true), back(t, finish(b, t, EtcMode::Merge), true)),
            (reset, facts(rolling, none.clone(), true), back(b, finish(t, b, EtcMode::Undo), true)),
            (reset_dry, facts(applying, none.clone(), true), Err(Refusal::InterruptedDryRun)),
            (reset_dry, facts(rolling, none.clone(), true), Err(Refusal::InterruptedDryRun)),
            (reset_dry, facts(applying, none.clone(), false), back(t, None, false)),
            (reset_dry, facts(live, none.clone(), true), back(b, None, false)),
            // rollback: the last apply's way back, once.
            (rollback, with_way_back(live_t, false), undo(t, b, None, false)),
            (rollback_dry, with_way_back(live_t, true), undo(t, b, None, false)),
            (rollback, with_way_back(LiveState::UsrLost { commit: t }, false), undo(t, b, None, false)),
            // A way back of another apply (stale), or none: nothing to roll back.
            (rollback, with_way_back(live, false), Err(Refusal::NoRollback)),
            (rollback, facts(live_t, none.clone(), false), Err(Refusal::NoRollback)),
            (rollback, with_way_back(booted_st, false), Err(Refusal::NoRollback)),
            // An interrupted apply is undone; over a write-through unlock, finished first.
            (rollback, with_way_back(applying, false), undo(t, b, None, true)),
            (rollback, with_way_back(applying, true), undo(t, b, finish(b, t, EtcMode::Merge), true)),
            (rollback_dry, with_way_back(applying, true), Err(Refusal::InterruptedDryRun)),
            (rollback, facts(applying, none.clone(), false), Err(Refusal::InterruptedOther { to: t })),
            (rollback, facts(resetting, none.clone(), false), Err(Refusal::InterruptedReset)),
            // An interrupted rollback is finished.
            (rollback, facts(rolling, none.clone(), false), undo(t, b, None, true)),
            (rollback_dry, facts(rolling, none.clone(), true), undo(t, b, None, true)),
            // restart.
            (Command::Restart, facts(booted_st, none.clone(), false), Ok(Step::Activate)),
            (Command::Restart, facts(live, none.clone(), false), Ok(Step::Activate)),
            (Command::Restart, facts(lost, none.clone(), false), Ok(Step::Activate)),
            (Command::Restart, facts(applying, none.clone(), false), Err(Refusal::InterruptedRestart)),
            (Command::Restart, facts(resetting, none.clone(), false), Err(Refusal::InterruptedRestart)),
            (Command::Restart, facts(rolling, none.clone(), false), Err(Refusal::InterruptedRestart)),
        ];
        for (command, f, want) in cases {
            assert_eq!(
                decide(command, &f),
                want,
                "{command:?} in {:?} (pending {:?}, way back {:?})",
                f.state,
                f.pending,
                f.way_back
            );
        }
    }

    #[test]
    fn refusals_name_what_they_refuse() {
        let many: Vec<String> = (0..25).map(|i| format!("/usr/f{i}")).collect();
        let text = Refusal::Replacement(many).to_string();
        assert!(text.contains("25 existing path(s)") && text.ends_with("/usr/f19, and 5 more"), "{text}");
        assert!(Command::Reset { dry_run: true }.survives_corrupt_state());
        assert!(!Command::Apply { target: None }.survives_corrupt_state());
    }
}
