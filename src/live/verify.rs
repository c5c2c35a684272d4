//! After a live apply changed the system, before it is called done: the health
//! checks (see `health`), and what their verdict does — the update kept (then
//! greenboot's `green.d`), kept with warnings, or rolled back at once (then
//! `red.d`); with `--confirm-within`, the deadline handed to systemd.

use serde::{Deserialize, Serialize};

use crate::health::{self, units::Watched, Decision};
use crate::live::rollback::{self, RolledBack};
use crate::live::session::Session;
use crate::live::transition::{Options, Outcome};
use crate::live::way_back::{Cause, Confirm};

/// What an apply checks afterwards.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub health: health::Request,
    /// Roll back unless `livefs confirm` runs within this many seconds.
    pub confirm_within: Option<u64>,
}

/// What happened after the apply: its health, the rollback it led to, the
/// confirmation it awaits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct After {
    pub health: Option<health::Health>,
    pub rolled_back: Option<RolledBack>,
    pub confirm: Option<Confirm>,
}

/// The units the apply's activation acted on that must run now.
fn watched(o: &Outcome) -> Vec<Watched> {
    let Some(a) = &o.restart else { return Vec::new() };
    let socket_of = |unit: &str| -> Vec<String> {
        let shown = crate::systemd::needs_restart::show(&[unit.to_string()], &["TriggeredBy"]);
        let by = shown.first().and_then(|p| p.get("TriggeredBy")).cloned().unwrap_or_default();
        by.split_whitespace().filter(|u| u.ends_with(".socket")).map(str::to_string).collect()
    };
    health::units::to_watch(a, socket_of)
}

/// Checks the system `s` after the apply that gave `o` (run by `command`:
/// `apply`, `auto`; its transition ran with `Options::restarts_later`), and
/// keeps, warns or rolls back as the verdict and `checks` say; then says in `o`
/// what needs a restart now — nothing after a rollback, whose own outcome
/// says. Nothing is checked when the apply changed nothing; a dry run says
/// what would be checked.
pub fn after_apply(
    s: &mut Session,
    o: &mut Outcome,
    checks: &Checks,
    options: Options,
    command: &str,
) -> anyhow::Result<After> {
    let after = check(s, o, checks, options, command)?;
    if o.restart.is_some() && !o.dry_run {
        o.restarts = match after.rolled_back {
            Some(_) => Default::default(),
            None => crate::live::effects::restarts_now(&s.host.paths.root, &Default::default(), &s.host.run)?,
        };
    }
    Ok(after)
}

fn check(s: &mut Session, o: &Outcome, checks: &Checks, options: Options, command: &str) -> anyhow::Result<After> {
    let mut after = After::default();
    let req = &checks.health;
    let root = s.host.paths.root.clone();
    if options.dry_run {
        after.health = req.enabled.then(|| health::plan(&root, req, &watched(o)));
        return Ok(after);
    }
    if !o.changed {
        return Ok(after);
    }
    let ctx = health::Context { root: &root, from: o.from.to_hex(), to: o.to.to_hex() };
    if req.enabled {
        let mut h = health::check(&ctx, req, &watched(o));
        match health::decide(h.verdict, req.rollback) {
            Decision::RollBack => {
                let failed = h.failures();
                let units = h.units.iter().filter(|u| u.ok == Some(false)).map(|u| u.unit.clone()).collect();
                let reason = format!("failed its health checks: {}", failed.join("; "));
                let back = rollback::run(s, options, Cause::FailedChecks, reason, (failed, units), command)?;
                h.scripts = health::after(&ctx, req, false);
                after.health = Some(h);
                after.rolled_back = Some(back);
                return Ok(after);
            }
            Decision::KeepWithWarnings => {
                h.warnings().iter().for_each(|w| crate::messages::warn(format!("a wanted health check failed: {w}")));
                h.scripts = health::after(&ctx, req, true);
            }
            Decision::Keep => h.scripts = health::after(&ctx, req, true),
            Decision::KeepUnhealthy => {}
        }
        after.health = Some(h);
    }
    if let Some(seconds) = checks.confirm_within {
        match crate::live::confirm::arm(s, seconds) {
            Ok(c) => after.confirm = Some(c),
            // No deadline, no safety net: the update does not stay unguarded.
            Err(e) => {
                let reason = format!("cannot arm the confirmation deadline: {e:#}");
                let failed = (vec![reason.clone()], Vec::new());
                let back = rollback::run(s, options, Cause::Unconfirmed, reason, failed, command)?;
                after.rolled_back = Some(back);
            }
        }
    }
    Ok(after)
}
