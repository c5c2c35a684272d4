//! `livefs apply`, `reset` and `rollback` transitions, and `livefs restart`:
//! what changed in `/usr` and `/etc`, the triggers, the units acted on, what
//! still needs a restart, and the strategy.

use std::io::{self, Write};

use super::{in_unit, of_user, plan, short, Verb};
use crate::etc::EtcAction;
use crate::live::strategy::{Strategy, Tier};
use crate::live::transition::Outcome;
use crate::live::RestartOutcome;
use crate::quote;
use crate::systemd::activation::Activation;
use crate::systemd::needs_restart::Restarts;
use crate::tree::diff::human_bytes;

/// `livefs apply` and `livefs reset`.
pub fn outcome(out: &mut impl Write, o: &Outcome, verb: Verb) -> io::Result<()> {
    if o.resumed {
        writeln!(out, "Resumed an interrupted apply.")?;
    }
    if o.dry_run {
        plan(out, &o.plan)?;
    }
    summary(out, o, verb)?;
    if verb == Verb::Apply {
        strategy(out, &o.strategy, "this update")?;
    }
    for k in &o.kept {
        writeln!(out, "Kept {} (modules of the running kernel)", quote::path(k))?;
    }
    etc(out, o, verb)?;
    if o.etc_transient && !(o.etc.paths.is_empty() && o.etc_restored.is_empty()) {
        writeln!(out, "/etc is transient on this host (etc.transient): these changes last until reboot only")?;
    }
    for t in &o.triggers {
        let how = if o.dry_run {
            "would run".to_string()
        } else if t.skipped {
            format!("skipped ({})", t.output.trim())
        } else if t.ok {
            "ok".to_string()
        } else if t.gave_up {
            "FAILED (for the last time: not retried; run it by hand)".to_string()
        } else {
            "FAILED (will be retried by the next apply)".to_string()
        };
        match &t.configs {
            Some(c) if !c.is_empty() => {
                writeln!(out, "Trigger {} ({}): {how}", t.action, quote::join(c.iter().map(String::as_str), " "))?
            }
            _ => writeln!(out, "Trigger {}: {how}", t.action)?,
        }
        if !t.ok {
            for line in t.output.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    if let Some(a) = &o.restart {
        activation(out, a)?;
    }
    match &o.restart {
        Some(a) if a.dry_run => Ok(()),
        _ if o.dry_run => restarts(out, &o.restarts, "Would need restart"),
        _ => restarts(out, &o.restarts, "Needs restart"),
    }
}

/// What changed in `/usr`, and the layer it went to.
fn summary(out: &mut impl Write, o: &Outcome, verb: Verb) -> io::Result<()> {
    let c = &o.report.counts;
    let what = format!(
        "{} added ({} directories), {} replaced, {} removed",
        c.added_files + c.added_dirs,
        c.added_dirs,
        c.replaced_files + c.replaced_dirs,
        c.removed_files + c.removed_dirs
    );
    let (from, to) = (short(&o.from), short(&o.to));
    match verb {
        _ if o.dry_run => {
            let v = match verb {
                Verb::Apply => "apply",
                Verb::Reset => "reset",
                Verb::Rollback => "roll back",
            };
            writeln!(out, "Would {v} {from} -> {to} in /usr: {what} (dry run: nothing changed)")?
        }
        Verb::Apply => {
            writeln!(out, "Applied {from} -> {to}: {what}; {} written.", human_bytes(o.report.bytes_written))?
        }
        Verb::Reset => writeln!(
            out,
            "Reset /usr {from} -> {to} (booted): {what}; {} written.",
            human_bytes(o.report.bytes_written)
        )?,
        Verb::Rollback => {
            writeln!(out, "Rolled back /usr {from} -> {to}: {what}; {} written.", human_bytes(o.report.bytes_written))?
        }
    }
    if let Some(l) = &o.layer {
        writeln!(
            out,
            "/usr switched to a new layer: {} file(s) linked to the repository ({}), {} copied ({}).",
            l.files_linked,
            human_bytes(l.bytes_linked),
            l.files_copied,
            human_bytes(l.bytes_written)
        )?;
    }
    Ok(())
}

fn etc(out: &mut impl Write, o: &Outcome, verb: Verb) -> io::Result<()> {
    let list = |a: EtcAction| o.etc.with(a).map(|p| quote::path(&format!("/etc{p}")).into_owned()).collect::<Vec<_>>();
    let (added, updated, removed) = (list(EtcAction::Added), list(EtcAction::Updated), list(EtcAction::Removed));
    if !(added.is_empty() && updated.is_empty() && removed.is_empty()) {
        writeln!(out, "/etc: {} added, {} updated, {} removed", added.len(), updated.len(), removed.len())?;
    }
    for p in list(EtcAction::Kept) {
        writeln!(out, "/etc: kept {p} (changed locally; the update's version is not applied)")?;
    }
    for p in list(EtcAction::Conflict) {
        writeln!(out, "/etc: conflict at {p} (changed locally, and the update changes its type): left alone")?;
    }
    for p in o.etc.paths.iter().filter(|p| p.action == EtcAction::Failed) {
        let why = p.error.as_deref().unwrap_or("unknown error");
        writeln!(out, "/etc: FAILED at {}: {why} (left as it was)", quote::path(&format!("/etc{}", p.path)))?;
    }
    let before = if verb == Verb::Rollback { "the update rolled back" } else { "the first apply" };
    match o.etc_restored.len() {
        0 => {}
        n if o.dry_run => writeln!(out, "/etc: {n} path(s) would be restored as they were before {before}")?,
        n => writeln!(out, "/etc: {n} path(s) restored as they were before {before}")?,
    }
    Ok(())
}

/// `livefs restart`.
pub fn restart(out: &mut impl Write, o: &RestartOutcome) -> io::Result<()> {
    activation(out, &o.restart)?;
    if !o.restart.dry_run {
        restarts(out, &o.restarts, "Needs restart")?;
    }
    Ok(())
}

pub(super) fn activation(out: &mut impl Write, a: &Activation) -> io::Result<()> {
    let would = if a.dry_run { "Would " } else { "" };
    if a.daemon_reexec {
        writeln!(out, "{would}systemctl daemon-reexec (the systemd manager changed)")?;
    } else if a.daemon_reload {
        writeln!(out, "{would}systemctl daemon-reload")?;
    }
    if a.actions.is_empty() && a.skipped.is_empty() && a.left.is_empty() {
        return writeln!(out, "Restart: nothing to restart, stop or start");
    }
    for act in &a.actions {
        let verb = act.verb.as_str();
        let verb = if a.dry_run { verb.to_string() } else { format!("{}{}", &verb[..1].to_uppercase(), &verb[1..]) };
        let result = match &act.result {
            None => String::new(),
            Some(r) if r.ok => ": ok".to_string(),
            Some(_) => ": FAILED".to_string(),
        };
        let unit = of_user(&act.unit, act.user.as_deref());
        writeln!(out, "{would}{verb} {unit} ({}){result}", act.reasons.join("; "))?;
        if let Some(r) = act.result.as_ref().filter(|r| !r.ok) {
            for line in r.status.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    for s in &a.skipped {
        writeln!(out, "Left alone: {} ({})", of_user(&s.unit, s.user.as_deref()), s.reason)?;
    }
    for l in &a.left {
        let (command, pid, files) = (&l.command, l.pid, quote::join(l.files.iter().map(String::as_str), ", "));
        writeln!(
            out,
            "Not restarted: {command} (pid {pid}){} uses replaced {files}: restart it yourself",
            in_unit(&l.unit)
        )?;
    }
    Ok(())
}

pub(super) fn strategy(out: &mut impl Write, s: &Strategy, what: &str) -> io::Result<()> {
    if !s.never_live.is_empty() {
        writeln!(out, "Strategy:    {what} cannot go live on this SELinux host, only a reboot delivers it:")?;
        s.never_live.iter().try_for_each(|r| writeln!(out, "  never live: {r}"))?;
        return Ok(());
    }
    match s.needs {
        Tier::Live => writeln!(out, "Strategy:    {what} can go live as it is")?,
        Tier::SoftReboot => writeln!(out, "Strategy:    {what} can go live except for what needs a soft reboot:")?,
        Tier::Reboot => writeln!(out, "Strategy:    {what} can go live except for what needs a reboot:")?,
    }
    for r in &s.reboot_for {
        writeln!(out, "  reboot for {r}")?;
    }
    for r in &s.soft_reboot_for {
        writeln!(out, "  soft reboot for {r}")?;
    }
    if !s.soft_reboot_for.is_empty() && !s.soft_reboot_capable {
        writeln!(out, "  no soft reboot on this host: {}", s.soft_reboot_blockers.join("; "))?;
    }
    if !s.replaces.is_empty() {
        writeln!(out, "  it replaces or removes {} existing path(s) in /usr", s.replaces.len())?;
    }
    let r = &s.restarts;
    let mut restarts: Vec<String> = r.units.clone();
    for (unit, procs) in &r.processes {
        restarts.extend(procs.iter().map(|p| format!("{} (pid {}){}", p.command, p.pid, in_unit(unit))));
    }
    if !restarts.is_empty() {
        writeln!(out, "  then needs a restart: {}", restarts.join(", "))?;
    }
    Ok(())
}

pub(super) fn restarts(out: &mut impl Write, r: &Restarts, what: &str) -> io::Result<()> {
    for u in &r.units {
        writeln!(out, "{what}: {u} (its unit files changed)")?;
    }
    for (user, units) in &r.user_units {
        for u in units {
            writeln!(out, "{what}: {u} of user {user} (its unit files changed; --user-units restarts it)")?;
        }
    }
    for (unit, procs) in &r.processes {
        for p in procs {
            let files = quote::join(p.files.iter().map(String::as_str), ", ");
            writeln!(out, "{what}: {} (pid {}){} uses replaced {files}", p.command, p.pid, in_unit(unit))?;
        }
    }
    Ok(())
}
