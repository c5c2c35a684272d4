//! Health checks after a live apply, and their verdict: whether the update is
//! kept, kept with warnings, or rolled back.
//!
//! What is checked, in order: the units the apply acted on, watched through a
//! settle window ([`units`]); then greenboot's required checks and the
//! `--check` commands (each must exit 0), then greenboot's wanted checks (a
//! failure is a warning) ([`scripts`]). Afterwards greenboot's `green.d` runs
//! (kept) or `red.d` (rolled back). What the verdict does is one pure
//! function, [`decide`], table-tested.

pub mod scripts;
pub mod units;

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use scripts::{Ran, Runnable, Set};
use units::{UnitCheck, Watched};

/// What the admin asked of the checks.
#[derive(Debug, Clone)]
pub struct Request {
    /// Run them at all (`--no-check`, `Check=no`: not).
    pub enabled: bool,
    /// Roll back when a required check fails (`--no-rollback`, `Rollback=no`: keep).
    pub rollback: bool,
    /// How long the units must stay up (`--settle`, `Settle=`).
    pub settle: Duration,
    /// More required checks (`--check CMD`).
    pub commands: Vec<String>,
    /// The longest any one check may run.
    pub timeout: Duration,
}

/// The settle window and check timeout when none is given.
pub const SETTLE: Duration = Duration::from_secs(10);
pub const TIMEOUT: Duration = Duration::from_secs(120);

impl Default for Request {
    fn default() -> Request {
        Request { enabled: true, rollback: true, settle: SETTLE, commands: Vec::new(), timeout: TIMEOUT }
    }
}

/// What the checks found (a dry run: what would be checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub dry_run: bool,
    /// The settle window the units were watched through, in seconds.
    pub settle_seconds: u64,
    pub units: Vec<UnitCheck>,
    /// greenboot's required checks and the `--check` commands.
    pub required: Vec<Ran>,
    /// greenboot's wanted checks.
    pub wanted: Vec<Ran>,
    pub verdict: Verdict,
    /// greenboot's `green.d` (kept) or `red.d` (rolled back) scripts, as run.
    pub scripts: Vec<Ran>,
    /// How long the checks took, in seconds.
    pub seconds: f64,
}

impl Health {
    /// What failed, one line each: `UNIT: why`, `CHECK: exit status N`.
    pub fn failures(&self) -> Vec<String> {
        let units = self
            .units
            .iter()
            .filter(|u| u.ok == Some(false))
            .map(|u| format!("{}: {}", u.unit, u.reason.as_deref().unwrap_or("failed")));
        let checks = self.required.iter().filter(|r| r.ok == Some(false)).map(|r| format!("{}: {}", r.name, how(r)));
        units.chain(checks).collect()
    }

    /// The wanted checks that failed, one line each.
    pub fn warnings(&self) -> Vec<String> {
        self.wanted.iter().filter(|r| r.ok == Some(false)).map(|r| format!("{}: {}", r.name, how(r))).collect()
    }
}

/// How a check that ran failed.
pub fn how(r: &Ran) -> String {
    match (r.timed_out, r.exit_status) {
        (true, _) => "timed out".to_string(),
        (false, Some(n)) => format!("exit status {n}"),
        (false, None) => r.output.lines().next().unwrap_or("killed").to_string(),
    }
}

/// The checks' verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything passed.
    Healthy,
    /// Only wanted checks failed.
    Degraded,
    /// A unit or a required check failed.
    Failed,
    /// A dry run: nothing was checked.
    NotRun,
}

/// What the verdict does to the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    /// Kept; the failed wanted checks are warnings.
    KeepWithWarnings,
    /// Put back as it was before the apply.
    RollBack,
    /// Kept although unhealthy (`--no-rollback`): reported as an error.
    KeepUnhealthy,
}

/// The verdict of units and checks.
pub fn verdict(units: &[UnitCheck], required: &[Ran], wanted: &[Ran]) -> Verdict {
    let failed = |ok: Option<bool>| ok == Some(false);
    if units.iter().any(|u| failed(u.ok)) || required.iter().any(|r| failed(r.ok)) {
        Verdict::Failed
    } else if wanted.iter().any(|r| failed(r.ok)) {
        Verdict::Degraded
    } else if units.iter().any(|u| u.ok.is_none()) || required.iter().chain(wanted).any(|r| r.ok.is_none()) {
        Verdict::NotRun
    } else {
        Verdict::Healthy
    }
}

/// What `verdict` does, with `rollback` allowed or not.
pub fn decide(verdict: Verdict, rollback: bool) -> Decision {
    match (verdict, rollback) {
        (Verdict::Healthy | Verdict::NotRun, _) => Decision::Keep,
        (Verdict::Degraded, _) => Decision::KeepWithWarnings,
        (Verdict::Failed, true) => Decision::RollBack,
        (Verdict::Failed, false) => Decision::KeepUnhealthy,
    }
}

/// What the checks are told of the update (environment variables).
pub struct Context<'a> {
    pub root: &'a Path,
    pub from: String,
    pub to: String,
}

impl Context<'_> {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LIVEFS_ROOT", self.root.display().to_string()),
            ("LIVEFS_FROM", self.from.clone()),
            ("LIVEFS_TO", self.to.clone()),
        ]
    }
}

/// The required checks: greenboot's, then the command line's.
fn required(root: &Path, req: &Request) -> Vec<Runnable> {
    let mut out = scripts::greenboot(root, Set::Required);
    out.extend(req.commands.iter().map(|c| scripts::command(c)));
    out
}

/// What a dry run reports: the units that would be watched, the checks that would run.
pub fn plan(root: &Path, req: &Request, watched: &[Watched]) -> Health {
    Health {
        dry_run: true,
        settle_seconds: req.settle.as_secs(),
        units: units::would_watch(watched),
        required: required(root, req).iter().map(Ran::would).collect(),
        wanted: scripts::greenboot(root, Set::Wanted).iter().map(Ran::would).collect(),
        verdict: Verdict::NotRun,
        scripts: Vec::new(),
        seconds: 0.0,
    }
}

/// Runs the checks: the units through the settle window (none to watch: no
/// wait), then the required checks (the first failure ends them, as in
/// greenboot), then the wanted ones.
pub fn check(ctx: &Context, req: &Request, watched: &[Watched]) -> Health {
    let start = Instant::now();
    let show = |units: &[String], props: &[&str]| crate::systemd::needs_restart::show(units, props);
    let units = if watched.is_empty() { Vec::new() } else { units::watch(watched, req.settle, POLL, &show) };
    let unit_failed = units.iter().any(|u| u.ok == Some(false));
    let env = ctx.env();
    let mut required_ran = Vec::new();
    let mut wanted_ran = Vec::new();
    if !unit_failed {
        for r in required(ctx.root, req) {
            let ran = scripts::run(&r, &env, req.timeout);
            let failed = ran.ok == Some(false);
            required_ran.push(ran);
            if failed {
                break;
            }
        }
    }
    if !unit_failed && required_ran.iter().all(|r| r.ok == Some(true)) {
        wanted_ran =
            scripts::greenboot(ctx.root, Set::Wanted).iter().map(|r| scripts::run(r, &env, req.timeout)).collect();
    }
    Health {
        dry_run: false,
        settle_seconds: req.settle.as_secs(),
        verdict: verdict(&units, &required_ran, &wanted_ran),
        units,
        required: required_ran,
        wanted: wanted_ran,
        scripts: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// How often the units are looked at during the settle window.
const POLL: Duration = Duration::from_millis(200);

/// Runs greenboot's `green.d` (`healthy`) or `red.d` scripts; a failure is only reported.
pub fn after(ctx: &Context, req: &Request, healthy: bool) -> Vec<Ran> {
    let set = if healthy { Set::Green } else { Set::Red };
    let env = ctx.env();
    scripts::greenboot(ctx.root, set).iter().map(|r| scripts::run(r, &env, req.timeout)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(ok: Option<bool>) -> Ran {
        Ran {
            name: "c".into(),
            ok,
            exit_status: ok.map(|o| if o { 0 } else { 1 }),
            timed_out: false,
            output: String::new(),
            seconds: 0.0,
        }
    }

    fn unit(ok: Option<bool>) -> UnitCheck {
        UnitCheck { unit: "u.service".into(), because: "restarted".into(), ok, state: String::new(), reason: None }
    }

    /// Units × required × wanted checks × --no-rollback → keep, warn or roll back.
    #[test]
    fn check_results_decide_keep_warn_or_roll_back() {
        use Decision::*;
        let (ok, bad) = (Some(true), Some(false));
        #[rustfmt::skip]
        type Results<'a> = &'a [Option<bool>];
        let cases: &[(Results, Results, Results, bool, Verdict, Decision)] = &[
            // (units, required, wanted, rollback allowed) -> verdict, decision
            (&[], &[], &[], true, Verdict::Healthy, Keep),
            (&[ok], &[ok], &[ok], true, Verdict::Healthy, Keep),
            (&[ok], &[ok], &[bad], true, Verdict::Degraded, KeepWithWarnings),
            (&[ok], &[ok], &[bad], false, Verdict::Degraded, KeepWithWarnings),
            (&[bad], &[], &[], true, Verdict::Failed, RollBack),
            (&[ok], &[bad], &[], true, Verdict::Failed, RollBack),
            (&[ok], &[ok, bad], &[ok], true, Verdict::Failed, RollBack),
            (&[bad], &[], &[], false, Verdict::Failed, KeepUnhealthy),
            (&[ok], &[bad], &[bad], false, Verdict::Failed, KeepUnhealthy),
            // A dry run checks nothing and decides nothing.
            (&[None], &[None], &[None], true, Verdict::NotRun, Keep),
        ];
        for (u, r, w, rollback, want_verdict, want) in cases {
            let units: Vec<UnitCheck> = u.iter().map(|o| unit(*o)).collect();
            let req: Vec<Ran> = r.iter().map(|o| ran(*o)).collect();
            let wanted: Vec<Ran> = w.iter().map(|o| ran(*o)).collect();
            let v = verdict(&units, &req, &wanted);
            assert_eq!(
                (v, decide(v, *rollback)),
                (*want_verdict, *want),
                "units {u:?} required {r:?} wanted {w:?} rollback {rollback}"
            );
        }
    }

    /// greenboot's sets beneath ROOT, run in order; the first required failure
    /// ends the required checks; the wanted ones run only when those passed.
    #[test]
    fn greenboot_checks_run_as_greenboot_runs_them() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let put = |rel: &str, text: &str, mode: u32| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let marker = root.path().join("ran");
        let log = |name: &str, rc: i32| format!("echo {name} >> {}\nexit {rc}\n", marker.display());
        put("usr/lib/greenboot/check/required.d/10-ok.sh", &log("10-ok", 0), 0o644);
        put("usr/lib/greenboot/check/required.d/20-fails", &format!("#!/bin/sh\n{}", log("20-fails", 1)), 0o755);
        put("etc/greenboot/check/required.d/20-fails", &format!("#!/bin/sh\n{}", log("20-etc", 0)), 0o755);
        put("etc/greenboot/check/required.d/30-disabled.sh", &log("30-disabled", 1), 0o644);
        put("etc/greenboot/greenboot.conf", "DISABLED_HEALTHCHECKS=(\"30-disabled.sh\")\n", 0o644);
        put("etc/greenboot/check/wanted.d/50-warn.sh", &log("50-warn", 2), 0o644);
        let ctx = Context { root: root.path(), from: "a".into(), to: "b".into() };
        let req = Request { commands: vec!["exit 0".into()], ..Request::default() };
        let h = check(&ctx, &req, &[]);
        let names: Vec<&str> = h.required.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["/usr/lib/greenboot/check/required.d/10-ok.sh", "/etc/greenboot/check/required.d/20-fails", "exit 0"]
        );
        assert_eq!(h.verdict, Verdict::Degraded, "{h:?}");
        assert_eq!(h.warnings(), ["/etc/greenboot/check/wanted.d/50-warn.sh: exit status 2"]);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "10-ok\n20-etc\n50-warn\n");
        // A failing required check ends the checks: no wanted one runs.
        std::fs::remove_file(&marker).unwrap();
        let req = Request { commands: vec!["echo probe failed; exit 7".into(), "exit 0".into()], ..Request::default() };
        let h = check(&ctx, &req, &[]);
        assert_eq!(h.verdict, Verdict::Failed);
        assert_eq!(h.failures(), ["echo probe failed; exit 7: exit status 7"]);
        assert_eq!(h.required.last().unwrap().output, "probe failed\n");
        assert!(h.wanted.is_empty());
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "10-ok\n20-etc\n");
        let dry = plan(root.path(), &req, &[]);
        assert_eq!((dry.verdict, dry.required.len(), dry.wanted.len()), (Verdict::NotRun, 4, 1));
    }
}
