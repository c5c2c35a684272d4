//! What followed an apply: its health checks, the rollback they led to (and
//! `livefs rollback`'s own report), the confirmation it awaits (and `livefs
//! confirm`'s report).

use std::io::{self, Write};

use super::{short, Verb};
use crate::health::scripts::Ran;
use crate::health::{Health, Verdict};
use crate::live::confirm::Confirmed;
use crate::live::rollback::RolledBack;
use crate::live::way_back::Confirm;
use crate::live::Applied;

/// `livefs apply`: the transition, then its checks and what they led to.
pub fn applied(out: &mut impl Write, a: &Applied) -> io::Result<()> {
    super::outcome(out, &a.outcome, Verb::Apply)?;
    if let Some(h) = &a.after.health {
        health(out, h)?;
    }
    if let Some(back) = &a.after.rolled_back {
        writeln!(out, "Rolling back: the update {}", back.reason)?;
        rolled_back(out, back)?;
    }
    if let Some(c) = &a.after.confirm {
        confirm(out, c)?;
    }
    Ok(())
}

/// The checks of an apply, one line each, and their verdict.
fn health(out: &mut impl Write, h: &Health) -> io::Result<()> {
    if h.dry_run {
        writeln!(out, "Would check, after the apply:")?;
    }
    for u in &h.units {
        match (u.ok, &u.reason) {
            (None, _) => writeln!(out, "  unit {} ({}): up through {} s", u.unit, u.because, h.settle_seconds)?,
            (Some(true), _) => writeln!(out, "Check unit {} ({}): ok, {}", u.unit, u.because, u.state)?,
            (Some(false), why) => {
                writeln!(out, "Check unit {} ({}): FAILED: {}", u.unit, u.because, why.as_deref().unwrap_or(&u.state))?
            }
        }
    }
    for r in &h.required {
        ran(out, r, "required")?;
    }
    for r in &h.wanted {
        ran(out, r, "wanted")?;
    }
    for r in &h.scripts {
        ran(out, r, "then")?;
    }
    let failed = h.failures();
    match h.verdict {
        Verdict::NotRun => Ok(()),
        Verdict::Healthy => writeln!(out, "Health:      healthy ({:.1} s of checks)", h.seconds),
        Verdict::Degraded => {
            writeln!(out, "Health:      healthy but for wanted checks (warnings): {}", h.warnings().join("; "))
        }
        Verdict::Failed => writeln!(out, "Health:      FAILED: {}", failed.join("; ")),
    }
}

/// One check or script: how it went, and what a failed one printed last.
fn ran(out: &mut impl Write, r: &Ran, what: &str) -> io::Result<()> {
    let name = crate::quote::path(&r.name);
    match r.ok {
        None => writeln!(out, "  {what} check {name}"),
        Some(true) => writeln!(out, "Check {what} {name}: ok ({:.1} s)", r.seconds),
        Some(false) => {
            writeln!(out, "Check {what} {name}: FAILED, {} ({:.1} s)", crate::health::how(r), r.seconds)?;
            r.output.lines().try_for_each(|l| writeln!(out, "    {l}"))
        }
    }
}

/// A rollback: the way back's transition, and how long it took.
pub fn rolled_back(out: &mut impl Write, r: &RolledBack) -> io::Result<()> {
    super::outcome(out, &r.outcome, Verb::Rollback)?;
    let o = &r.outcome;
    if o.dry_run {
        return Ok(());
    }
    writeln!(out, "Rolled back: {} -> {} in {:.2} s ({})", short(&o.from), short(&o.to), r.seconds, r.reason)
}

/// The confirmation an apply awaits.
fn confirm(out: &mut impl Write, c: &Confirm) -> io::Result<()> {
    writeln!(
        out,
        "Confirm:     by {} (within {} s): run `livefs confirm`, else {} rolls the update back",
        c.deadline, c.seconds, c.timer
    )
}

/// `livefs confirm`.
pub fn confirmed(out: &mut impl Write, c: &Confirmed) -> io::Result<()> {
    match (&c.commit, &c.deadline) {
        (Some(commit), Some(deadline)) => writeln!(
            out,
            "Confirmed: {} stays live (confirmed before {deadline}; its rollback timer is stopped)",
            short(commit)
        ),
        _ => writeln!(out, "Nothing awaits a confirmation."),
    }
}
