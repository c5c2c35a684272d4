//! Every change livefs makes to the running system, and every refusal and
//! failure of a command that would have, as one structured journal entry
//! ([`crate::journal`]): a fixed `MESSAGE_ID` per event, so that `journalctl
//! MESSAGE_ID=…` lists a host's history, a readable `MESSAGE`, and `LIVEFS_*`
//! fields. Dry runs and runs that change nothing log nothing. Built here from
//! what the engines return; the man pages and README list [`EVENTS`] and [`FIELDS`].

use crate::cli::render::{short, Verb};
use crate::cli::Kind;
use crate::live::auto::{AutoRun, Ending, Report};
use crate::live::confirm::Confirmed;
use crate::live::rollback::RolledBack;
use crate::live::transition::Outcome;
use crate::live::{Applied, RestartOutcome};
use crate::repo::Checksum;
use crate::systemd::activation::Activation;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Applied,
    Reset,
    Restarted,
    Refused,
    Failed,
    RolledBack,
    Confirmed,
}

/// Every event: its name (`LIVEFS_EVENT`), `MESSAGE_ID`, syslog priority and meaning.
#[rustfmt::skip]
pub const EVENTS: &[(Event, &str, &str, u8, &str)] = &[
    (Event::Applied, "applied", "9156c2b8b135400a9b1a466e48a2a1ca", 5, "a commit went live (livefs apply, or an automatic run)"),
    (Event::Reset, "reset", "ba755d6699b54cde9504a15f88b91478", 5, "/usr and /etc went back to the booted commit (livefs reset)"),
    (Event::Restarted, "restarted", "53d547bb95c145eda0d982de82b9ca2b", 5, "units were stopped, reloaded, restarted or started (livefs restart)"),
    (Event::Refused, "refused", "867364c173e340168e00d2cfb4dd065c", 4, "an update was not applied: the policy or the host refused it, nothing changed (an automatic run leaves it for the reboot)"),
    (Event::Failed, "failed", "3a824cbeca264f3fad5748b668262573", 3, "a command failed; the system is as the transition guarantees (apply or reset finishes it)"),
    (Event::RolledBack, "rolled_back", "9d32385a68d040ea8f3cfcbcb494ecd9", 3, "a live update was undone: it failed its health checks, was not confirmed in time, or livefs rollback was run; /usr, /etc and the units went back to the commit before it"),
    (Event::Confirmed, "confirmed", "00ec22ace55040e1b9ee88dba5e2d56a", 5, "an update applied with --confirm-within was confirmed (livefs confirm): it stays"),
];

/// The `LIVEFS_*` fields, and what they hold (a field may repeat: one per value).
#[rustfmt::skip]
pub const FIELDS: &[(&str, &str)] = &[
    ("LIVEFS_EVENT", "applied, reset, restarted, refused, failed, rolled_back or confirmed"),
    ("LIVEFS_COMMAND", "apply, reset, restart, rollback, confirm or auto (an automatic run)"),
    ("LIVEFS_FROM", "the commit /usr showed before (for rolled_back: before the update undone, and again after)"),
    ("LIVEFS_TO", "the commit /usr shows after (for refused: the one not applied; for rolled_back: the update undone)"),
    ("LIVEFS_ADDED, LIVEFS_REPLACED, LIVEFS_REMOVED", "paths of /usr added, replaced, removed"),
    ("LIVEFS_ETC_CHANGED, LIVEFS_ETC_KEPT", "paths of /etc changed, and kept as the admin changed them"),
    ("LIVEFS_STRATEGY", "what the update needs to take effect whole: live, soft-reboot or reboot"),
    ("LIVEFS_REBOOT_FOR", "what only a (soft) reboot delivers, one field per reason"),
    ("LIVEFS_UNIT", "a unit stopped, reloaded, restarted or started, one field per unit"),
    ("LIVEFS_UNIT_FAILED", "a unit whose action failed (for rolled_back: a unit that failed its check), one field per unit"),
    ("LIVEFS_KIND", "refused and failed: the error's kind, as in --json errors (refused_replacement, busy, ...)"),
    ("LIVEFS_FAILED_CHECK", "rolled_back: a failed check or unit and why, one field per failure"),
    ("LIVEFS_ROLLBACK_CAUSE", "rolled_back: failed_checks, unconfirmed or by_hand"),
    ("LIVEFS_ROLLBACK_SECONDS", "rolled_back: how long the way back took"),
];

impl Event {
    fn row(self) -> &'static (Event, &'static str, &'static str, u8, &'static str) {
        EVENTS.iter().find(|e| e.0 == self).expect("every event is in EVENTS")
    }

    pub fn name(self) -> &'static str {
        self.row().1
    }

    pub fn message_id(self) -> &'static str {
        self.row().2
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub event: Event,
    pub message: String,
    /// `LIVEFS_*` fields, in order.
    pub fields: Vec<(&'static str, String)>,
}

impl Entry {
    fn new(event: Event, command: &str, message: String) -> Entry {
        Entry { event, message, fields: vec![("LIVEFS_COMMAND", command.to_string())] }
    }

    fn add(&mut self, name: &'static str, value: impl ToString) {
        self.fields.push((name, value.to_string()));
    }

    /// Every field sent, the journal's own first.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let row = self.event.row();
        let mut out = vec![
            ("MESSAGE_ID", row.2.to_string()),
            ("PRIORITY", row.3.to_string()),
            ("SYSLOG_IDENTIFIER", "livefs".to_string()),
            ("MESSAGE", self.message.clone()),
            ("LIVEFS_EVENT", row.1.to_string()),
        ];
        out.extend(self.fields.iter().cloned());
        out
    }
}

/// The units an activation acted on, and those whose action failed.
fn units(entry: &mut Entry, a: Option<&Activation>) -> (Vec<String>, Vec<String>) {
    let done: Vec<String> =
        a.iter().flat_map(|a| &a.actions).filter(|x| x.result.is_some()).map(|x| x.unit.clone()).collect();
    let failed: Vec<String> = a.iter().flat_map(|a| a.failed()).map(|x| x.unit.clone()).collect();
    done.iter().for_each(|u| entry.add("LIVEFS_UNIT", u));
    failed.iter().for_each(|u| entry.add("LIVEFS_UNIT_FAILED", u));
    (done, failed)
}

/// An apply or reset that changed the system (`command`: how it was run).
pub fn transition(o: &Outcome, verb: Verb, command: &str) -> Option<Entry> {
    if o.dry_run || !o.changed {
        return None;
    }
    let c = &o.report.counts;
    let (added, replaced, removed) =
        (c.added_files + c.added_dirs, c.replaced_files + c.replaced_dirs, c.removed_files + c.removed_dirs);
    let (event, what) = match verb {
        Verb::Apply => (Event::Applied, "Applied"),
        Verb::Reset => (Event::Reset, "Reset"),
        Verb::Rollback => (Event::RolledBack, "Rolled back"),
    };
    let summary = format!(
        "{what} {} -> {}: {added} added, {replaced} replaced, {removed} removed in /usr",
        short(&o.from),
        short(&o.to)
    );
    let mut e = Entry::new(event, command, summary);
    e.add("LIVEFS_FROM", o.from.to_hex());
    e.add("LIVEFS_TO", o.to.to_hex());
    e.add("LIVEFS_ADDED", added);
    e.add("LIVEFS_REPLACED", replaced);
    e.add("LIVEFS_REMOVED", removed);
    let etc = &o.etc;
    use crate::etc::EtcAction::*;
    let etc_changed = [Added, Updated, Removed].iter().map(|a| etc.with(*a).count()).sum::<usize>();
    e.add("LIVEFS_ETC_CHANGED", etc_changed + o.etc_restored.len());
    e.add("LIVEFS_ETC_KEPT", etc.with(Kept).count() + etc.with(Conflict).count());
    if verb == Verb::Apply {
        e.add("LIVEFS_STRATEGY", o.strategy.needs.as_str());
        o.strategy.beyond_live().iter().for_each(|r| e.add("LIVEFS_REBOOT_FOR", r));
    }
    let (done, failed) = units(&mut e, o.restart.as_ref());
    if !done.is_empty() {
        e.message += &format!("; units acted on: {}", done.join(" "));
    }
    if !failed.is_empty() {
        e.event = Event::Failed;
        e.message += &format!("; failed: {}", failed.join(" "));
        e.add("LIVEFS_KIND", Kind::UnitFailed.as_str());
    }
    Some(e)
}

/// An apply (`command`: how it was run): `applied` when it changed the
/// system; `rolled_back` instead when its checks (or a missing deadline) undid
/// it: the fields of `applied` (the update undone), what failed, and the way back.
pub fn applied(a: &Applied, command: &str) -> Vec<Entry> {
    let Some(back) = &a.after.rolled_back else {
        return transition(&a.outcome, Verb::Apply, command).into_iter().collect();
    };
    let Some(mut e) = transition(&a.outcome, Verb::Apply, command) else { return Vec::new() };
    // The unit that failed is the rollback's reason, not a failure of the command.
    e.fields.retain(|(k, _)| *k != "LIVEFS_KIND");
    let back_units = back.outcome.restart.iter().flat_map(|x| &x.actions).filter(|x| x.result.is_some());
    for unit in back_units.map(|x| x.unit.as_str()).chain(back.failed_units.iter().map(String::as_str)) {
        let name = if back.failed_units.iter().any(|u| u == unit) { "LIVEFS_UNIT_FAILED" } else { "LIVEFS_UNIT" };
        if !e.fields.iter().any(|(k, v)| *k == name && v == unit) {
            e.add(name, unit);
        }
    }
    vec![rollback_fields(e, back, (&a.outcome.to, &a.outcome.from))]
}

/// `livefs rollback` (by hand, or the timer of an unconfirmed apply): the way
/// back's transition; `LIVEFS_FROM`/`LIVEFS_TO` are the update undone's, as
/// for a rolled-back apply.
pub fn rolled_back(r: &RolledBack, command: &str) -> Option<Entry> {
    let o = &r.outcome;
    let mut e = transition(o, Verb::Rollback, command)?;
    for (k, v) in e.fields.iter_mut() {
        match *k {
            "LIVEFS_FROM" => *v = o.to.to_hex(),
            "LIVEFS_TO" => *v = o.from.to_hex(),
            _ => {}
        }
    }
    Some(rollback_fields(e, r, (&o.from, &o.to)))
}

/// A `rolled_back` entry from `e`: why, what failed, how long the way back
/// from `undone` to `back` took.
fn rollback_fields(mut e: Entry, r: &RolledBack, (undone, back): (&Checksum, &Checksum)) -> Entry {
    e.event = Event::RolledBack;
    e.message = format!("Rolled back {} -> {} in {:.2} s: {}", short(undone), short(back), r.seconds, r.reason);
    let cause = serde_json::to_value(r.cause).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    e.add("LIVEFS_ROLLBACK_CAUSE", cause);
    e.add("LIVEFS_ROLLBACK_SECONDS", format!("{:.3}", r.seconds));
    r.failed.iter().for_each(|f| e.add("LIVEFS_FAILED_CHECK", f));
    e
}

/// `livefs confirm` that kept an update.
pub fn confirmed(c: &Confirmed) -> Option<Entry> {
    let commit = c.commit.as_ref().filter(|_| c.changed)?;
    let mut e = Entry::new(Event::Confirmed, "confirm", format!("Confirmed {}: it stays live", short(commit)));
    e.add("LIVEFS_TO", commit.to_hex());
    Some(e)
}

/// A `livefs restart` that acted on units.
pub fn restart(o: &RestartOutcome) -> Option<Entry> {
    if o.restart.dry_run || o.restart.actions.iter().all(|a| a.result.is_none()) {
        return None;
    }
    let mut e = Entry::new(Event::Restarted, "restart", String::new());
    let (done, failed) = units(&mut e, Some(&o.restart));
    e.message = format!("Acted on {} unit(s): {}", done.len(), done.join(" "));
    if !failed.is_empty() {
        e.event = Event::Failed;
        e.message += &format!("; failed: {}", failed.join(" "));
        e.add("LIVEFS_KIND", Kind::UnitFailed.as_str());
    }
    Some(e)
}

/// A command that changes the system, refused or failed. Nothing for a dry
/// run, for nothing to do, or for another user than root (who may change nothing).
pub fn error(command: &str, dry_run: bool, e: &anyhow::Error, kind: Kind) -> Option<Entry> {
    if dry_run || matches!(kind, Kind::NoPending | Kind::NotRoot) {
        return None;
    }
    let event = if kind.exit_status() == crate::cli::exit::POLICY { Event::Refused } else { Event::Failed };
    let mut entry = Entry::new(event, command, format!("{command}: {e:#}"));
    entry.add("LIVEFS_KIND", kind.as_str());
    Some(entry)
}

/// An automatic run: its ending (nothing for nothing to do, nor for a run
/// that repeats the last one's decision).
pub fn auto(r: &Report) -> Vec<Entry> {
    let run = &r.run;
    if run.repeated {
        return Vec::new();
    }
    match (run.ending, &r.apply) {
        (Ending::Applied | Ending::Failed | Ending::RolledBack, Some(a)) if a.outcome.changed => applied(a, "auto"),
        (Ending::NothingToDo, _) => Vec::new(),
        (Ending::LeftForReboot | Ending::Refused | Ending::Failed | Ending::RolledBack, _) => vec![not_applied(run)],
        (Ending::Applied, _) => Vec::new(),
    }
}

/// An automatic run that left the pending deployment alone.
fn not_applied(run: &AutoRun) -> Entry {
    let event = if run.ending == Ending::Failed { Event::Failed } else { Event::Refused };
    let target =
        run.target.as_ref().map_or("the pending deployment".to_string(), |t| format!("deployment {}", short(t)));
    let why = run.reason.as_deref().unwrap_or("");
    let message = match run.ending {
        Ending::LeftForReboot => format!("{target} left for the reboot: {}", run.left_for_reboot.join("; ")),
        Ending::Refused => format!("{target} not applied live (policy): {why}"),
        _ => format!("automatic run failed for {target}: {why}"),
    };
    let mut e = Entry::new(event, "auto", message);
    if let Some(f) = run.from {
        e.add("LIVEFS_FROM", f.to_hex());
    }
    if let Some(t) = run.target {
        e.add("LIVEFS_TO", t.to_hex());
    }
    run.left_for_reboot.iter().for_each(|r| e.add("LIVEFS_REBOOT_FOR", r));
    if let Some(k) = &run.kind {
        e.add("LIVEFS_KIND", k);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    /// The fields of an entry, `NAME=value` each, in order.
    fn lines(e: &Entry) -> Vec<String> {
        e.fields().iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn every_event_has_its_own_message_id() {
        let mut ids: Vec<&str> = EVENTS.iter().map(|e| e.2).collect();
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), EVENTS.len());
        for (name, _) in FIELDS {
            assert!(name.split(", ").all(crate::journal::valid_name), "{name}");
        }
    }

    #[test]
    fn an_apply_is_one_entry_with_its_commits_counts_and_units() {
        let o: Outcome = fixture(include_str!("fixtures/apply.json"));
        let e = transition(&o, Verb::Apply, "apply").expect("an apply that changed the system is logged");
        let got = lines(&e);
        let want_first = [
            "MESSAGE_ID=9156c2b8b135400a9b1a466e48a2a1ca".to_string(),
            "PRIORITY=5".to_string(),
            "SYSLOG_IDENTIFIER=livefs".to_string(),
        ];
        assert_eq!(got[..3], want_first);
        for want in [
            format!("LIVEFS_FROM={}", o.from.to_hex()),
            format!("LIVEFS_TO={}", o.to.to_hex()),
            "LIVEFS_EVENT=applied".to_string(),
            "LIVEFS_COMMAND=apply".to_string(),
            format!("LIVEFS_STRATEGY={}", o.strategy.needs.as_str()),
        ] {
            assert!(got.contains(&want), "no {want} in {got:#?}");
        }
        assert!(e.message.starts_with(&format!("Applied {} -> {}: ", short(&o.from), short(&o.to))), "{}", e.message);
        // A dry run, and a run that changed nothing, are not logged.
        let dry: Outcome = fixture(include_str!("fixtures/apply-dry.json"));
        assert_eq!(transition(&dry, Verb::Apply, "apply"), None);
        let reset: Outcome = fixture(include_str!("fixtures/reset.json"));
        let e = transition(&reset, Verb::Reset, "reset").unwrap();
        assert!(lines(&e).contains(&"MESSAGE_ID=ba755d6699b54cde9504a15f88b91478".to_string()));
    }

    #[test]
    fn refusals_and_failures_carry_their_kind() {
        let refusal = anyhow::Error::from(crate::live::decide::Refusal::Replacement(vec!["/usr/bin/a".into()]));
        let e = error("apply", false, &refusal, Kind::RefusedReplacement).unwrap();
        assert_eq!(e.event, Event::Refused);
        assert!(lines(&e).contains(&"LIVEFS_KIND=refused_replacement".to_string()));
        assert!(lines(&e).contains(&"PRIORITY=4".to_string()));
        let busy = anyhow::anyhow!("another livefs holds the lock");
        assert_eq!(error("reset", false, &busy, Kind::Busy).unwrap().event, Event::Failed);
        // Not logged: dry runs, nothing to do, another user than root.
        assert_eq!(error("apply", true, &busy, Kind::Busy), None);
        assert_eq!(error("apply", false, &busy, Kind::NoPending), None);
        assert_eq!(error("apply", false, &busy, Kind::NotRoot), None);
    }

    #[test]
    fn an_automatic_run_left_for_the_reboot_says_why() {
        let run: AutoRun = fixture(include_str!("fixtures/auto-left.json"));
        let e = auto(&Report { run: run.clone(), apply: None, error: None }).pop().unwrap();
        assert_eq!(e.event, Event::Refused);
        let got = lines(&e);
        for want in [
            "LIVEFS_COMMAND=auto".to_string(),
            format!("LIVEFS_TO={}", run.target.unwrap().to_hex()),
            "LIVEFS_REBOOT_FOR=a changed kernel (6.1.0-28-amd64, running)".to_string(),
            "LIVEFS_KIND=refused_strategy".to_string(),
        ] {
            assert!(got.contains(&want), "no {want} in {got:#?}");
        }
        assert!(e.message.contains("left for the reboot: a changed kernel"), "{}", e.message);
        // The same decision repeated is not logged again.
        let repeated: AutoRun = fixture(include_str!("fixtures/auto-refused.json"));
        assert!(repeated.repeated);
        assert_eq!(auto(&Report { run: repeated, apply: None, error: None }), vec![]);
    }
}
