//! `livefs auto`: the pending deployment taken live unattended, as far as the
//! admin's [`policy`] allows — run by `livefs-auto.service` whenever ostree,
//! rpm-ostree or bootc deploys. An update that needs more than the policy
//! allows is left for the next reboot, and the reboot sentinel says why; every
//! run is recorded (`ROOT/run/livefs/auto.json`, shown by `livefs status`).
//!
//! The decisions are pure: the policy's limits are the ones `apply` checks
//! (`decide::within_limits`: what the update needs, then what it replaces),
//! read by [`ending`] (what the apply's result means for the run: applied, left
//! for the reboot, refused, …), and [`repeats`] (the same deployment under the same
//! policy is not decided twice in a boot: an admin's `livefs reset` is not
//! undone behind their back, a refusal is not logged every hour).

pub mod policy;

use serde::{Deserialize, Serialize};

use crate::host::reboot_required::{self, Left};
use crate::host::Paths;
use crate::live::decide::{self, Command, Refusal};
use crate::live::session::Session;
use crate::live::state::LiveState;
use crate::live::transition::{Options, Outcome};
use crate::live::verify::{After, Checks};
use crate::live::Applied;
use crate::repo::Checksum;
pub use policy::Policy;

/// The record of the last automatic run, beneath `/run/livefs`.
const RECORD: &str = "auto.json";

/// How an automatic run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The pending deployment went live.
    Applied,
    /// Nothing pending, or it is live already.
    NothingToDo,
    /// It needs more than `MaxStrategy=`: left for the next reboot.
    LeftForReboot,
    /// The policy forbids what it does (`AllowReplacement=no`): left for the
    /// next reboot, and the run fails, for an admin to look at.
    Refused,
    /// An error; the system is as the transition guarantees.
    Failed,
    /// Applied, then failed its health checks, and rolled back: left for the
    /// next reboot (and greenboot there), and the run fails.
    RolledBack,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Applied => "applied",
            Ending::NothingToDo => "nothing to do",
            Ending::LeftForReboot => "left for the reboot",
            Ending::Refused => "refused",
            Ending::Failed => "failed",
            Ending::RolledBack => "rolled back",
        }
    }

    /// Whether the run failed (its unit then fails too).
    pub fn failed(self) -> bool {
        matches!(self, Ending::Refused | Ending::Failed | Ending::RolledBack)
    }
}

/// One automatic run: the record `livefs status` shows, and `livefs auto --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoRun {
    /// When it ran: UTC, RFC 3339.
    pub at: String,
    pub ending: Ending,
    /// The pending deployment's commit it acted on.
    pub target: Option<Checksum>,
    /// What `/usr` showed before (the live or booted commit).
    pub from: Option<Checksum>,
    pub policy: Policy,
    /// Why it ended so: the refusal or the error.
    pub reason: Option<String>,
    /// The error's kind (as in `--json` errors), for refused and failed runs.
    pub kind: Option<String>,
    /// What the next reboot delivers that this run did not take live.
    pub left_for_reboot: Vec<String>,
    /// The units it stopped, reloaded, restarted or started.
    pub units: Vec<String>,
    /// This run found the same deployment under the same policy as the last
    /// one, and did nothing: what is shown is the last run's.
    #[serde(default)]
    pub repeated: bool,
}

/// What a refusal of the apply means for the run.
fn ending_of_refusal(r: &Refusal) -> Ending {
    match r {
        Refusal::NoPending => Ending::NothingToDo,
        Refusal::Strategy { .. } | Refusal::Selinux(_) => Ending::LeftForReboot,
        Refusal::Replacement(_) => Ending::Refused,
        _ => Ending::Failed,
    }
}

/// How the run ended, from the apply's result (and whether its checks rolled it back).
pub fn ending(result: &anyhow::Result<Outcome>, rolled_back: bool) -> Ending {
    match result {
        Ok(_) if rolled_back => Ending::RolledBack,
        // What a dry run would do: nothing when the target is live already.
        Ok(o) if o.dry_run && o.state == (LiveState::Live { commit: o.to }) => Ending::NothingToDo,
        Ok(o) if o.dry_run => Ending::Applied,
        Ok(o) if o.restart.as_ref().is_some_and(|a| a.failed().next().is_some()) => Ending::Failed,
        Ok(o) if o.changed => Ending::Applied,
        Ok(_) => Ending::NothingToDo,
        Err(e) => crate::live::refusal(e).map_or(Ending::Failed, ending_of_refusal),
    }
}

/// Whether the last run decided `pending` under `policy` already, this boot:
/// then this run repeats that decision and does nothing. A failure is tried again.
pub fn repeats(last: Option<&AutoRun>, pending: Option<Checksum>, policy: &Policy) -> bool {
    let Some(last) = last else { return false };
    pending.is_some()
        && last.target == pending
        && last.policy == *policy
        && matches!(last.ending, Ending::Applied | Ending::LeftForReboot | Ending::Refused | Ending::RolledBack)
}

/// What `livefs auto` did: the run, and the apply's outcome (with its checks) or error.
pub struct Report {
    pub run: AutoRun,
    pub apply: Option<Applied>,
    pub error: Option<anyhow::Error>,
}

/// `livefs auto`: takes the pending deployment live as `ROOT/etc/livefs/auto.conf`
/// allows, under livefs's lock; records the run and brings the reboot sentinel
/// in line (not in a dry run). `kind` names an error's kind (the CLI's).
pub fn run(
    paths: &Paths,
    dry_run: bool,
    lock_wait: std::time::Duration,
    kind: &dyn Fn(&anyhow::Error) -> &'static str,
) -> anyhow::Result<Report> {
    let policy = policy::load(&paths.root);
    let mut s = Session::open(paths, Command::Apply { target: None }, lock_wait)?;
    let pending = s.facts().pending.ok().flatten();
    let last: Option<AutoRun> = s.host.run.read_record(RECORD)?;
    if let Some(last) = last.filter(|l| repeats(Some(l), pending, &policy)) {
        return Ok(Report { run: AutoRun { repeated: true, ..last }, apply: None, error: None });
    }
    let from = s.state.current(s.booted());
    let options = Options { dry_run, restart: policy.restart, lock_wait, ..Options::default() };
    let later = Options { restarts_later: true, ..options };
    let mut result = super::run_step(&mut s, Command::Apply { target: None }, policy.limits(), later);
    let checks = Checks { health: policy.checks(), confirm_within: None };
    let after = match &mut result {
        Ok(o) => super::verify::after_apply(&mut s, o, &checks, options, "auto")?,
        Err(_) => After::default(),
    };
    let mut run = AutoRun {
        at: crate::clock::now(),
        ending: ending(&result, after.rolled_back.is_some()),
        target: pending,
        from,
        policy,
        reason: None,
        kind: None,
        left_for_reboot: Vec::new(),
        units: Vec::new(),
        repeated: false,
    };
    let (apply, error) = match result {
        Ok(outcome) => (Some(Applied { outcome, after }), None),
        Err(e) => (None, Some(e)),
    };
    describe(&mut run, apply.as_ref(), error.as_ref(), kind);
    if !dry_run {
        s.host.run.write_record(RECORD, &run)?;
        sentinel(&s, &run)?;
    }
    Ok(Report { run, apply, error })
}

/// Fills in why the run ended so, what it left, and the units it acted on.
fn describe(
    run: &mut AutoRun,
    apply: Option<&Applied>,
    error: Option<&anyhow::Error>,
    kind: &dyn Fn(&anyhow::Error) -> &'static str,
) {
    if let Some(Applied { outcome: o, after }) = apply {
        run.left_for_reboot = o.strategy.beyond_live();
        let actions = o.restart.iter().flat_map(|a| &a.actions);
        run.units = actions.filter(|a| a.result.is_some()).map(|a| a.unit.clone()).collect();
        if run.ending == Ending::Failed {
            let failed: Vec<String> = o.restart.iter().flat_map(|a| a.failed()).map(|a| a.unit.clone()).collect();
            run.reason = Some(format!("units failed: {}", failed.join(" ")));
            run.kind = Some("unit_failed".to_string());
        }
        if let Some(back) = &after.rolled_back {
            run.left_for_reboot = vec![format!("it {}, and was rolled back live", back.reason)];
            run.reason = Some(back.reason.clone());
            run.kind = Some("rolled_back".to_string());
        }
    }
    let Some(e) = error else { return };
    let refusal = crate::live::refusal(e);
    if matches!(refusal, Some(Refusal::NoPending)) {
        return;
    }
    run.kind = Some(kind(e).to_string());
    run.reason = Some(match refusal {
        Some(Refusal::Strategy { needs, max, reasons }) => {
            run.left_for_reboot = reasons.clone();
            let (needs, max, why) = (needs.as_str(), max.as_str(), reasons.join("; "));
            format!("the update needs a {needs} ({why}), more than MaxStrategy={max} allows")
        }
        Some(Refusal::Selinux(reasons)) => {
            run.left_for_reboot = reasons.clone();
            e.to_string()
        }
        Some(Refusal::Replacement(paths)) => {
            let n = paths.len();
            run.left_for_reboot =
                vec![format!("it changes or removes {n} existing path(s) in /usr, and AllowReplacement=no")];
            format!("the update changes or removes existing paths in /usr: {}", decide::list20(paths))
        }
        _ => format!("{e:#}"),
    });
}

/// The sentinel says what this run left for the reboot; with nothing pending,
/// nothing is left. (An apply brings it in line itself.)
fn sentinel(s: &Session, run: &AutoRun) -> anyhow::Result<()> {
    match (run.ending, run.target) {
        (Ending::LeftForReboot | Ending::Refused | Ending::RolledBack, Some(commit)) => {
            let left = Left { commit, reasons: run.left_for_reboot.clone() };
            reboot_required::set_pending(&s.host, Some(left))
        }
        (Ending::NothingToDo, None) => reboot_required::set_pending(&s.host, None),
        _ => Ok(()),
    }
}

/// The last automatic run of this boot, if any.
pub fn last(run: &crate::host::rundir::RunDir) -> anyhow::Result<Option<AutoRun>> {
    run.read_record(RECORD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::strategy::{Strategy, Tier};

    fn strategy(needs: Tier) -> Strategy {
        let reboot_for = if needs == Tier::Reboot { vec!["a new kernel (9.9)".to_string()] } else { vec![] };
        let soft_reboot_for = if needs == Tier::SoftReboot { vec!["the C library".to_string()] } else { vec![] };
        Strategy { needs, live: needs == Tier::Live, reboot_for, soft_reboot_for, ..Strategy::default() }
    }

    /// What an automatic run decides of an update, before anything changes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Verdict {
        Apply,
        LeaveForReboot,
        Refuse,
    }

    /// The policy's limits, as `prepare` checks them, read as the run reads
    /// the refusal.
    fn verdict(policy: &Policy, strategy: &Strategy, replaces: Vec<String>) -> Verdict {
        match decide::within_limits(strategy, replaces, policy.limits()) {
            Ok(()) => Verdict::Apply,
            Err(r) => match ending_of_refusal(&r) {
                Ending::LeftForReboot => Verdict::LeaveForReboot,
                _ => Verdict::Refuse,
            },
        }
    }

    /// Policy × what the update needs × whether it replaces → the verdict.
    #[test]
    fn the_policy_decides_apply_leave_or_refuse() {
        use Tier::*;
        use Verdict::*;
        let policy = |max_strategy, allow_replacement| Policy { max_strategy, allow_replacement, ..Policy::default() };
        #[rustfmt::skip]
        let cases = [
            // (MaxStrategy, AllowReplacement, update needs, replaces) -> verdict
            ((Live, false), Live, false, Apply),
            ((Live, false), Live, true, Refuse),
            ((Live, true), Live, true, Apply),
            // What it needs comes first: a kernel update is left for the reboot, replacements or not.
            ((Live, false), Reboot, true, LeaveForReboot),
            ((Live, true), Reboot, false, LeaveForReboot),
            ((Live, true), SoftReboot, false, LeaveForReboot),
            ((SoftReboot, false), SoftReboot, false, Apply),
            ((SoftReboot, false), SoftReboot, true, Refuse),
            ((SoftReboot, true), Reboot, true, LeaveForReboot),
            ((Reboot, false), Reboot, false, Apply),
            ((Reboot, false), Reboot, true, Refuse),
            ((Reboot, true), Reboot, true, Apply),
        ];
        for ((max, allow), needs, replaces, want) in cases {
            let replaced = if replaces { vec!["/usr/bin/a".to_string()] } else { vec![] };
            let got = verdict(&policy(max, allow), &strategy(needs), replaced);
            assert_eq!(got, want, "MaxStrategy={max:?} AllowReplacement={allow} needs {needs:?} replaces {replaces}");
        }
    }

    #[test]
    fn what_the_apply_result_means_for_the_run() {
        let refused = |r: Refusal| -> anyhow::Result<Outcome> { Err(anyhow::Error::from(r).context("in /")) };
        let strategy = Refusal::Strategy { needs: Tier::Reboot, max: Tier::Live, reasons: vec!["a new kernel".into()] };
        let cases = [
            (refused(Refusal::NoPending), Ending::NothingToDo),
            (refused(strategy), Ending::LeftForReboot),
            (refused(Refusal::Replacement(vec!["/usr/bin/a".into()])), Ending::Refused),
            (refused(Refusal::InterruptedReset), Ending::Failed),
            (Err(anyhow::anyhow!("No space left on device")), Ending::Failed),
        ];
        for (result, want) in cases {
            assert_eq!(ending(&result, false), want, "{:?}", result.err());
        }
    }

    #[test]
    fn a_decision_is_not_taken_twice_for_the_same_deployment_and_policy() {
        let (c, d) = (Checksum::sha256([0xcc; 32]), Checksum::sha256([0xdd; 32]));
        let run = |ending, target| AutoRun {
            at: crate::clock::rfc3339(0),
            ending,
            target,
            from: None,
            policy: Policy::default(),
            reason: None,
            kind: None,
            left_for_reboot: vec![],
            units: vec![],
            repeated: false,
        };
        let other_policy = Policy { allow_replacement: true, ..Policy::default() };
        let cases = [
            (None, Some(c), Policy::default(), false),
            (Some(run(Ending::Applied, Some(c))), Some(c), Policy::default(), true),
            (Some(run(Ending::LeftForReboot, Some(c))), Some(c), Policy::default(), true),
            (Some(run(Ending::Refused, Some(c))), Some(c), Policy::default(), true),
            // A deployment that failed its checks live is not applied again.
            (Some(run(Ending::RolledBack, Some(c))), Some(c), Policy::default(), true),
            // The admin changed the policy: decided again.
            (Some(run(Ending::Refused, Some(c))), Some(c), other_policy, false),
            // Another deployment, or none.
            (Some(run(Ending::Applied, Some(c))), Some(d), Policy::default(), false),
            (Some(run(Ending::NothingToDo, None)), None, Policy::default(), false),
            // A failure is tried again.
            (Some(run(Ending::Failed, Some(c))), Some(c), Policy::default(), false),
        ];
        for (last, pending, policy, want) in cases {
            assert_eq!(repeats(last.as_ref(), pending, &policy), want, "{last:?} {pending:?} {policy:?}");
        }
    }
}
