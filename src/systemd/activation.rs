//! Finishing a transition the way a boot would (`apply --restart`, `livefs
//! restart`), after NixOS's switch-to-configuration: stop active units whose unit
//! file went away, reload or restart active units that run an old definition or
//! old code, start units the update newly wants for an active target.
//!
//! Units opt out with the keys NixOS uses, read from their unit file and drop-ins
//! (systemd ignores `X-` keys): `X-RestartIfChanged=false` leaves a unit alone,
//! `X-ReloadIfChanged=true` reloads it instead. `RefuseManualStop=yes` and
//! `RefuseManualStart=yes` are honoured. A socket-activated service is stopped,
//! not restarted: its socket keeps listening (connections queue, none is
//! refused) and starts the new code on the next connection; a changed socket is
//! restarted, its service stopped first. Never touched: the units the
//! [`restart_policy`] leaves alone (the message bus, sshd, …), the unit livefs
//! itself runs in, mounts and swaps; PID 1 only re-executed when the admin asks
//! (`--daemon-reexec`, `DaemonReexec=yes`); units of users' managers only
//! restarted with `--user-units`; processes outside system services (sessions'
//! scopes) are listed, not killed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::host::rundir::RunDir;
use crate::systemd::needs_restart::{self, Restarts, UNIT_DIRS};
use crate::systemd::restart_policy::{self, Policy};

/// What the admin asked of an activation beyond the policy's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// Re-execute PID 1 when it runs replaced files (`systemctl daemon-reexec`).
    pub daemon_reexec: bool,
    /// Restart the changed units of logged-in users' managers too.
    pub user_units: bool,
}

/// What transitions since boot did to the unit files (absolute paths as on the
/// running system): `--restart` starts what became wanted and stops what went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnitEvents {
    /// Added `…/TARGET.wants/UNIT` (or `.requires/`) links.
    pub wanted: BTreeSet<String>,
    /// Removed unit files.
    pub removed: BTreeSet<String>,
    /// Units livefs failed to restart, reload or start: started by the next
    /// `livefs restart` once they are fixed.
    pub failed: BTreeSet<String>,
}

/// The record of unit events in `ROOT/run/livefs`.
const EVENTS: &str = "unit-events.json";

/// The unit events of this boot.
pub fn load_events(run: &RunDir) -> anyhow::Result<UnitEvents> {
    run.read_record(EVENTS)
}

pub fn save_events(run: &RunDir, events: &UnitEvents) -> anyhow::Result<()> {
    run.write_record(EVENTS, events)
}

/// What is done to a unit, in this order: stops, reloads, restarts, starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    Stop,
    Reload,
    Restart,
    Start,
}

impl Verb {
    /// The systemctl verb.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Stop => "stop",
            Verb::Reload => "reload",
            Verb::Restart => "restart",
            Verb::Start => "start",
        }
    }
}

/// One action on one unit, and (once run) how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitAction {
    pub unit: String,
    /// The user whose manager runs it; none for the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub verb: Verb,
    /// Why: its unit files changed, a process uses replaced files, newly wanted…
    pub reasons: Vec<String>,
    /// `None` until run (and in a dry run).
    pub result: Option<ActionResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResult {
    pub ok: bool,
    /// When it failed: what systemctl said, then `systemctl status` of the unit.
    pub status: String,
}

/// A unit that needs a restart and is left alone, with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub reason: String,
}

/// A process that uses replaced files outside any system service: listed, never
/// killed (a login session, a user's manager and their units, PID 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Left {
    /// Its system unit (a scope, `user@UID.service`), or `-`.
    pub unit: String,
    pub pid: u32,
    pub command: String,
    pub files: Vec<String>,
}

/// The activation of a transition: what is (or, in a dry run, would be) done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Activation {
    pub dry_run: bool,
    /// `systemctl daemon-reload` first: systemd has not loaded the changed files.
    pub daemon_reload: bool,
    /// `systemctl daemon-reexec` first (it reloads too): PID 1 runs replaced
    /// files and the admin asked for it.
    #[serde(default)]
    pub daemon_reexec: bool,
    pub actions: Vec<UnitAction>,
    pub skipped: Vec<Skipped>,
    pub left: Vec<Left>,
}

impl Activation {
    /// The actions that failed.
    pub fn failed(&self) -> impl Iterator<Item = &UnitAction> {
        self.actions.iter().filter(|a| a.result.as_ref().is_some_and(|r| !r.ok))
    }
}

/// Some unit actions failed; the transition itself stands (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{} unit action(s) failed: {}", .0.len(), .0.join(", "))]
pub struct Failed(pub Vec<String>);

/// Why `--restart` cannot act on ROOT.
#[derive(Debug, thiserror::Error)]
#[error("cannot restart units: systemd does not run {0} (--restart acts on the running system at /)")]
pub struct NoSystemd(pub String);

/// Checks, before anything changes, that units can be acted on at `root`.
pub fn check(root: &Path) -> Result<(), NoSystemd> {
    if crate::systemd::needs_restart::systemd_runs(root) {
        Ok(())
    } else {
        Err(NoSystemd(root.display().to_string()))
    }
}

/// The unit and target of a wants link `…/TARGET.wants/UNIT` (or `.requires/`)
/// in a unit directory.
fn wanted_link(path: &str) -> Option<(String, String)> {
    for dir in UNIT_DIRS {
        let Some(rest) = path.strip_prefix(dir) else { continue };
        let (dep_dir, unit) = rest.split_once('/')?;
        let target = dep_dir.strip_suffix(".wants").or_else(|| dep_dir.strip_suffix(".requires"))?;
        if !unit.contains('/') && unit.contains('.') && target.contains('.') {
            return Some((target.to_string(), unit.to_string()));
        }
    }
    None
}

/// The unit a unit file is (`/usr/lib/systemd/system/foo.service` → `foo.service`),
/// not a drop-in or a link in a `.wants/` directory.
fn unit_file(path: &str) -> Option<&str> {
    UNIT_DIRS.iter().find_map(|dir| path.strip_prefix(dir)).filter(|u| !u.contains('/'))
}

/// Sorts paths `changed` by a transition (absolute, as on the running system)
/// into `events`: added wants links and removed unit files.
pub fn record(events: &mut UnitEvents, added: &[String], removed: &[String]) {
    for p in added {
        if wanted_link(p).is_some() {
            events.removed.remove(p);
            events.wanted.insert(p.clone());
        } else if unit_file(p).is_some() {
            events.removed.remove(p);
        }
    }
    for p in removed {
        if unit_file(p).is_some() {
            events.removed.insert(p.clone());
        }
        events.wanted.remove(p);
    }
}

/// Whether `path` (absolute, under ROOT) names something, without following it.
fn exists(root: &Path, path: &str) -> bool {
    std::fs::symlink_metadata(root.join(path.trim_start_matches('/'))).is_ok()
}

/// Whether a unit's files say it must not be restarted by a change
/// (`X-RestartIfChanged=false`), or reloaded instead (`X-ReloadIfChanged=true`):
/// the last setting in the unit file, then its drop-ins, wins.
fn opt_outs(props: &BTreeMap<String, String>) -> (bool, bool) {
    let mut files: Vec<&str> = props.get("FragmentPath").map(String::as_str).into_iter().collect();
    files.extend(props.get("DropInPaths").map(|d| d.split_whitespace().collect::<Vec<_>>()).unwrap_or_default());
    let (mut restart, mut reload) = (true, false);
    for f in files.into_iter().filter(|f| f.starts_with('/')) {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k.trim() {
                "X-RestartIfChanged" => restart = crate::conf::boolean(v).unwrap_or(restart),
                "X-ReloadIfChanged" => reload = crate::conf::boolean(v).unwrap_or(reload),
                _ => {}
            }
        }
    }
    (restart, reload)
}

const PROPERTIES: [&str; 11] = [
    "Id",
    "LoadState",
    "ActiveState",
    "RefuseManualStop",
    "RefuseManualStart",
    "FragmentPath",
    "DropInPaths",
    "NeedDaemonReload",
    "TriggeredBy",
    "Triggers",
    "Accept",
];

/// What systemd (and the unit's files) say of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFacts {
    pub active: bool,
    pub masked: bool,
    pub refuse_manual_stop: bool,
    pub refuse_manual_start: bool,
    pub need_daemon_reload: bool,
    /// `X-RestartIfChanged=false`: never restarted by a change.
    pub no_restart: bool,
    /// `X-ReloadIfChanged=true`: reloaded instead of restarted.
    pub reload: bool,
    /// The units that start it (its sockets, timers, paths).
    pub triggered_by: Vec<String>,
    /// The units it starts (a socket's services).
    pub triggers: Vec<String>,
    /// A socket that spawns one service instance per connection (`Accept=yes`).
    pub accept: bool,
}

impl UnitFacts {
    fn of(props: &BTreeMap<String, String>) -> UnitFacts {
        let get = |key: &str| props.get(key).map(String::as_str).unwrap_or("");
        let (restart_ok, reload) = opt_outs(props);
        UnitFacts {
            active: matches!(get("ActiveState"), "active" | "reloading" | "activating"),
            masked: get("LoadState") == "masked",
            refuse_manual_stop: get("RefuseManualStop") == "yes",
            refuse_manual_start: get("RefuseManualStart") == "yes",
            need_daemon_reload: get("NeedDaemonReload") == "yes",
            no_restart: !restart_ok,
            reload,
            triggered_by: get("TriggeredBy").split_whitespace().map(str::to_string).collect(),
            triggers: get("Triggers").split_whitespace().map(str::to_string).collect(),
            accept: get("Accept") == "yes",
        }
    }
}

/// Everything an activation is decided from, gathered by `gather`.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Units newly wanted, with the targets that want them.
    pub wanted: BTreeMap<String, Vec<String>>,
    /// Units whose unit file went away from every unit directory.
    pub removed: BTreeSet<String>,
    /// Units that run an old definition or old code, with why.
    pub restart: BTreeMap<String, Vec<String>>,
    /// Units livefs failed to restart, reload or start before.
    pub failed: BTreeSet<String>,
    /// Processes outside system services: listed, never acted on.
    pub left: Vec<Left>,
    /// The replaced files PID 1 runs or maps (a changed manager).
    pub manager: Vec<String>,
    /// Active units of users' managers whose unit files changed, by user.
    pub user_units: BTreeMap<String, Vec<String>>,
    /// What systemd says of every unit above (a unit it does not know is absent).
    pub units: BTreeMap<String, UnitFacts>,
    /// The unit livefs itself runs in.
    pub own: Option<String>,
    /// The admin's policy (the units left alone; re-executing PID 1).
    pub policy: Policy,
    pub request: Request,
}

/// Gathers the facts about `restarts` (the report of what runs old code) and
/// `events` (units wanted or removed since boot; `new_events` are this
/// transition's, not on disk yet in a dry run): which paths still exist under
/// ROOT, and what systemd says of every unit involved (asked at once).
fn gather(root: &Path, restarts: &Restarts, events: &UnitEvents, new_events: &UnitEvents, request: Request) -> Facts {
    let mut f =
        Facts { failed: events.failed.clone(), user_units: restarts.user_units.clone(), request, ..Facts::default() };
    for p in events.wanted.iter().filter(|p| exists(root, p)).chain(&new_events.wanted) {
        if let Some((target, unit)) = wanted_link(p) {
            f.wanted.entry(unit).or_default().push(target);
        }
    }
    for p in events.removed.iter().filter(|p| !exists(root, p)).chain(&new_events.removed) {
        let Some(unit) = unit_file(p) else { continue };
        let elsewhere = UNIT_DIRS.iter().any(|d| {
            let other = format!("{d}{unit}");
            other != *p && !new_events.removed.contains(&other) && exists(root, &other)
        });
        if !elsewhere {
            f.removed.insert(unit.to_string());
        }
    }
    for u in &restarts.units {
        f.restart.entry(u.clone()).or_default().push("its unit files changed".into());
    }
    for (unit, procs) in &restarts.processes {
        let outside = unit == "-" || unit.ends_with(".scope") || unit.starts_with("user@");
        for p in procs {
            if p.pid == 1 {
                f.manager.extend(p.files.iter().cloned());
            } else if outside {
                let p = p.clone();
                f.left.push(Left { unit: unit.clone(), pid: p.pid, command: p.command, files: p.files });
            } else {
                let why = format!("{} (pid {}) uses replaced {}", p.command, p.pid, p.files.join(", "));
                f.restart.entry(unit.clone()).or_default().push(why);
            }
        }
    }
    let targets: BTreeSet<&String> = f.wanted.values().flatten().collect();
    let units: BTreeSet<String> =
        f.restart.keys().chain(f.wanted.keys()).chain(&f.removed).chain(targets).chain(&f.failed).cloned().collect();
    let units: Vec<String> = units.into_iter().collect();
    let shown = needs_restart::show(&units, &PROPERTIES);
    f.units = units.into_iter().zip(shown.iter().map(UnitFacts::of)).collect();
    // The sockets of the services to restart, and the services of the sockets.
    let related: BTreeSet<String> = f
        .restart
        .keys()
        .filter_map(|u| f.units.get(u))
        .flat_map(|u| u.triggered_by.iter().chain(&u.triggers))
        .filter(|u| !f.units.contains_key(*u))
        .cloned()
        .collect();
    let related: Vec<String> = related.into_iter().collect();
    let shown = needs_restart::show(&related, &PROPERTIES);
    f.units.extend(related.into_iter().zip(shown.iter().map(UnitFacts::of)));
    f.own = needs_restart::unit_of(std::process::id());
    f.policy = restart_policy::load(root);
    f
}

/// What to do about `restarts` and the unit events (see `gather`).
pub fn schedule(
    root: &Path,
    restarts: &Restarts,
    events: &UnitEvents,
    new_events: &UnitEvents,
    request: Request,
) -> Activation {
    decide(gather(root, restarts, events, new_events, request))
}

/// The activation the facts call for, as a boot would do it: stop active units
/// whose unit file went away, reload or restart active units that run old code
/// (unless they opt out; a socket-activated service is stopped and left to its
/// socket), start again what livefs failed to start before, start units newly
/// wanted by an active target; each only if `refusal` allows. PID 1 is
/// re-executed, and users' units restarted, only when asked.
pub fn decide(mut f: Facts) -> Activation {
    // A unit whose file went away is stopped, not restarted.
    let removed: Vec<String> =
        f.removed.iter().filter(|u| f.units.get(*u).is_some_and(|u| u.active)).cloned().collect();
    for name in &removed {
        f.restart.remove(name);
    }
    let judge = Judge { f: &f, none: UnitFacts::default() };
    let mut verdicts: Vec<Verdict> =
        removed.iter().map(|name| judge.act(name, Verb::Stop, vec!["its unit file was removed".into()])).collect();
    verdicts.extend(judge.changed());
    verdicts.extend(judge.to_start());
    verdicts.extend(judge.user_units());
    let reexec = !f.manager.is_empty() && (f.request.daemon_reexec || f.policy.daemon_reexec);
    if !f.manager.is_empty() && !reexec {
        let why = format!(
            "the systemd manager (PID 1) runs replaced {}: re-executed with --daemon-reexec or DaemonReexec=yes \
             in /{}, else at the next (soft) reboot",
            f.manager.join(", "),
            restart_policy::CONF
        );
        verdicts.push(judge.skip("init.scope", &why));
    }
    let mut out = Activation {
        daemon_reload: !reexec && f.units.values().any(|u| u.need_daemon_reload),
        daemon_reexec: reexec,
        left: std::mem::take(&mut f.left),
        ..Activation::default()
    };
    for v in verdicts {
        match v {
            Ok(action) => out.actions.push(action),
            Err(skipped) => out.skipped.push(skipped),
        }
    }
    out.actions.sort_by(|a, b| (a.verb, &a.user, &a.unit).cmp(&(b.verb, &b.user, &b.unit)));
    out
}

/// What is done to one unit, or why it is left alone.
type Verdict = Result<UnitAction, Skipped>;

/// The verdicts of [`decide`], one kind of unit at a time, from its facts.
struct Judge<'a> {
    f: &'a Facts,
    /// What a unit systemd does not know is taken to be: inactive, nothing special.
    none: UnitFacts,
}

impl Judge<'_> {
    fn unit(&self, name: &str) -> &UnitFacts {
        self.f.units.get(name).unwrap_or(&self.none)
    }

    fn skip(&self, name: &str, reason: &str) -> Verdict {
        Err(Skipped { unit: name.to_string(), user: None, reason: reason.to_string() })
    }

    /// `verb` on a system unit, unless the unit is one to leave alone.
    fn act(&self, name: &str, verb: Verb, reasons: Vec<String>) -> Verdict {
        match refusal(name, self.unit(name), self.f.own.as_deref(), &self.f.policy.left_alone, verb) {
            Some(reason) => Err(Skipped { unit: name.to_string(), user: None, reason }),
            None => Ok(UnitAction { unit: name.to_string(), user: None, verb, reasons, result: None }),
        }
    }

    /// `verb` on a changed unit, which may opt out (`X-RestartIfChanged=false`).
    fn act_on_changed(&self, name: &str, verb: Verb, reasons: Vec<String>) -> Verdict {
        match self.act(name, verb, reasons) {
            Ok(_) if self.unit(name).no_restart => self.skip(name, "X-RestartIfChanged=false"),
            verdict => verdict,
        }
    }

    /// Restarted or reloaded as it is.
    fn renew(&self, name: &str, reasons: Vec<String>) -> Verdict {
        let verb = if self.unit(name).reload { Verb::Reload } else { Verb::Restart };
        self.act_on_changed(name, verb, reasons)
    }

    /// Active units that run an old definition or old code. Sockets first: a
    /// restarted one needs its service down first (systemd refuses to start a
    /// socket whose service runs), and the services of restarted sockets stop.
    fn changed(&self) -> Vec<Verdict> {
        let changed = self.f.restart.iter().filter(|(u, _)| self.unit(u).active);
        let (sockets, services): (Vec<_>, Vec<_>) = changed.partition(|(u, _)| u.ends_with(".socket"));
        let mut verdicts = Vec::new();
        let mut restarted_sockets = BTreeSet::new();
        for (name, reasons) in sockets {
            let verdict = self.renew(name, reasons.clone());
            if matches!(&verdict, Ok(a) if a.verb == Verb::Restart) {
                restarted_sockets.insert(name.clone());
            }
            verdicts.push(verdict);
        }
        let mut stopped_for_socket = BTreeSet::new();
        for (name, reasons) in services {
            let (verdict, stopped) = self.changed_service(name, reasons, &restarted_sockets);
            verdicts.push(verdict);
            if stopped {
                stopped_for_socket.insert(name.clone());
            }
        }
        for socket in &restarted_sockets {
            let services = self.unit(socket).triggers.iter();
            for service in services.filter(|t| self.unit(t).active && !self.f.restart.contains_key(*t)) {
                if stopped_for_socket.insert(service.clone()) {
                    let why = format!("its socket {socket} is restarted, and starts it on the next connection");
                    verdicts.push(self.act(service, Verb::Stop, vec![why]));
                }
            }
        }
        verdicts
    }

    /// A changed service: renewed, or, when a listening socket starts it,
    /// stopped and left to the socket (`true`), or left to end with its one
    /// connection (`Accept=yes`).
    fn changed_service(&self, name: &str, reasons: &[String], restarted: &BTreeSet<String>) -> (Verdict, bool) {
        let facts = self.unit(name);
        let sockets: Vec<&String> =
            facts.triggered_by.iter().filter(|t| t.ends_with(".socket") && self.unit(t).active).collect();
        if facts.reload || sockets.is_empty() {
            return (self.renew(name, reasons.to_vec()), false);
        }
        if let Some(socket) = sockets.iter().find(|s| self.unit(s).accept) {
            let why =
                format!("one connection of {socket} (Accept=yes): it ends with it; new connections run the new code");
            return (self.skip(name, &why), false);
        }
        let list = sockets.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        let how = if sockets.iter().any(|s| restarted.contains(*s)) {
            format!("socket-activated: {list} restarted, starts the new code on the next connection")
        } else {
            format!("socket-activated: {list} keeps listening and starts the new code on the next connection")
        };
        let reasons = reasons.iter().cloned().chain([how]).collect();
        (self.act_on_changed(name, Verb::Stop, reasons), true)
    }

    /// What livefs failed to (re)start before, now fixed, and units newly
    /// wanted by an active target: started, as a boot would start them.
    fn to_start(&self) -> Vec<Verdict> {
        let f = self.f;
        let mut verdicts = Vec::new();
        for name in &f.failed {
            if !self.unit(name).active && !f.removed.contains(name) && !f.wanted.contains_key(name) {
                verdicts.push(self.act(name, Verb::Start, vec!["livefs failed to restart it before".into()]));
            }
        }
        for (name, targets) in &f.wanted {
            let wanting: Vec<&String> = targets.iter().filter(|t| self.unit(t).active).collect();
            if wanting.is_empty() || self.unit(name).active || f.removed.contains(name) {
                continue;
            }
            verdicts.push(match self.unit(name).masked {
                true => self.skip(name, "masked"),
                false => self.act(name, Verb::Start, wanting.iter().map(|t| format!("newly wanted by {t}")).collect()),
            });
        }
        verdicts
    }

    /// Users' units whose files changed: restarted only with `--user-units`.
    fn user_units(&self) -> Vec<Verdict> {
        let f = self.f;
        let mut verdicts = Vec::new();
        for (user, units) in &f.user_units {
            for name in units {
                let verdict = match refusal(name, &self.none, None, &f.policy.left_alone, Verb::Restart) {
                    Some(reason) => Err(reason),
                    None if !f.request.user_units => {
                        Err(format!("a unit of {user}'s manager: restarted with --user-units"))
                    }
                    None => Ok(UnitAction {
                        unit: name.clone(),
                        user: Some(user.clone()),
                        verb: Verb::Restart,
                        reasons: vec!["its unit files changed".to_string()],
                        result: None,
                    }),
                };
                verdicts.push(verdict.map_err(|reason| Skipped {
                    unit: name.clone(),
                    user: Some(user.clone()),
                    reason,
                }));
            }
        }
        verdicts
    }
}

/// Why `verb` must not be done to `unit`, if so (`own`: the unit livefs runs
/// in; `never`: the units left alone but to be started).
fn refusal(
    unit: &str,
    facts: &UnitFacts,
    own: Option<&str>,
    never: &[restart_policy::Entry],
    verb: Verb,
) -> Option<String> {
    if let Some(why) = restart_policy::reason(never, unit).filter(|_| verb != Verb::Start) {
        return Some(why.to_string());
    }
    if own == Some(unit) {
        return Some("livefs runs in it".into());
    }
    match unit.rsplit_once('.').map(|(_, t)| t) {
        Some("service" | "socket" | "timer" | "path") => {}
        Some("target") if verb != Verb::Start => return Some("a target: nothing runs in it to restart".into()),
        Some("target") => {}
        Some("mount" | "swap" | "automount") => {
            return Some("a mount: remount it by hand, or reboot".into());
        }
        _ => return Some("not a unit livefs acts on".into()),
    }
    if matches!(verb, Verb::Stop | Verb::Restart) && facts.refuse_manual_stop {
        return Some("RefuseManualStop=yes".into());
    }
    if matches!(verb, Verb::Start | Verb::Restart) && facts.refuse_manual_start {
        return Some("RefuseManualStart=yes".into());
    }
    None
}

/// Records in `events` which units' actions failed (the next `livefs restart`
/// starts them) and forgets those that went through or run again.
pub fn remember(events: &mut UnitEvents, a: &Activation) {
    for action in a.actions.iter().filter(|a| a.user.is_none()) {
        match &action.result {
            Some(r) if !r.ok && action.verb != Verb::Stop => events.failed.insert(action.unit.clone()),
            Some(_) => events.failed.remove(&action.unit),
            None => false,
        };
    }
}

/// Runs the plan: `daemon-reexec` or `daemon-reload` if needed, then each action
/// in order; a failed one is recorded with the unit's status and the others go
/// on. `progress` sees the activation after each step (to keep it on disk).
///
/// A hangup does not stop it: restarting the network or sshd can end the SSH
/// session that runs livefs, and an activation left half-way leaves services
/// down. (Output to a closed terminal fails with EPIPE/EIO, and is not needed:
/// the result is kept.)
pub fn execute(a: &mut Activation, progress: &mut dyn FnMut(&Activation)) {
    ignore_hangups();
    let manager = if a.daemon_reexec { Some("daemon-reexec") } else { a.daemon_reload.then_some("daemon-reload") };
    if let Some(verb) = manager {
        // A failure shows in the actions that follow.
        let _ = Command::new("systemctl").arg(verb).output();
    }
    progress(a);
    for i in 0..a.actions.len() {
        let action = &a.actions[i];
        let systemctl = || needs_restart::systemctl_command(action.user.as_deref());
        let out = systemctl().arg(action.verb.as_str()).arg("--").arg(&action.unit).output();
        let result = match out {
            Ok(o) if o.status.success() => ActionResult { ok: true, status: String::new() },
            Ok(o) => {
                let status = systemctl()
                    .args(["status", "--no-pager", "--full", "--lines=10", "--"])
                    .arg(&action.unit)
                    .output()
                    .map(|s| String::from_utf8_lossy(&s.stdout).into_owned())
                    .unwrap_or_default();
                ActionResult { ok: false, status: format!("{}{status}", String::from_utf8_lossy(&o.stderr)) }
            }
            Err(e) => ActionResult { ok: false, status: format!("cannot run systemctl: {e}") },
        };
        a.actions[i].result = Some(result);
        progress(a);
    }
}

/// SIGHUP ignored from here on, for this process and the systemctl it runs.
fn ignore_hangups() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler and
    // touches no memory; livefs installs no handler of its own for SIGHUP.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// The activation of the last transition or `livefs restart` of this boot, as
/// far as it went: `livefs status` shows it, so that the result of one whose
/// terminal went away is known.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// The livefs process running it.
    pub pid: u32,
    /// All its actions ran.
    pub finished: bool,
    pub activation: Activation,
}

const PROGRESS: &str = "activation.json";

/// The last activation's progress, if one ran in this boot.
pub fn load_progress(run: &RunDir) -> anyhow::Result<Option<Progress>> {
    run.read_record(PROGRESS)
}

pub fn save_progress(run: &RunDir, progress: &Progress) -> anyhow::Result<()> {
    run.write_record(PROGRESS, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_links_and_unit_files() {
        assert_eq!(
            wanted_link("/etc/systemd/system/multi-user.target.wants/lighttpd.service"),
            Some(("multi-user.target".into(), "lighttpd.service".into()))
        );
        assert_eq!(
            wanted_link("/usr/lib/systemd/system/sockets.target.requires/foo@1.socket"),
            Some(("sockets.target".into(), "foo@1.socket".into()))
        );
        assert_eq!(wanted_link("/usr/lib/systemd/system/foo.service.d/x.conf"), None);
        assert_eq!(wanted_link("/usr/lib/systemd/system/multi-user.target.wants"), None);
        assert_eq!(unit_file("/usr/lib/systemd/system/foo.service"), Some("foo.service"));
        assert_eq!(unit_file("/etc/systemd/system/multi-user.target.wants/foo.service"), None);
        let mut e = UnitEvents::default();
        let added = ["/etc/systemd/system/multi-user.target.wants/a.service".to_string()];
        let removed =
            ["/usr/lib/systemd/system/b.service".to_string(), "/usr/lib/systemd/system/b.service.d/x.conf".into()];
        record(&mut e, &added, &removed);
        assert_eq!(e.wanted.iter().collect::<Vec<_>>(), [&added[0]]);
        assert_eq!(e.removed.iter().collect::<Vec<_>>(), [&removed[0]]);
        // A reset removing the link and adding the unit back undoes both.
        record(&mut e, &removed[..1], &added);
        assert_eq!(e, UnitEvents::default());
    }

    #[test]
    fn refusals() {
        let refuse_stop = UnitFacts { refuse_manual_stop: true, ..UnitFacts::default() };
        let refuse_start = UnitFacts { refuse_manual_start: true, ..UnitFacts::default() };
        let facts = |unit: &str| match unit {
            "a.service" => refuse_stop.clone(),
            "b.service" => refuse_start.clone(),
            _ => UnitFacts::default(),
        };
        let never = restart_policy::defaults();
        let r = |unit, verb| refusal(unit, &facts(unit), Some("agent.service"), &never, verb);
        assert_eq!(r("a.service", Verb::Restart).as_deref(), Some("RefuseManualStop=yes"));
        assert_eq!(r("a.service", Verb::Start), None);
        assert_eq!(r("a.service", Verb::Reload), None);
        assert_eq!(r("b.service", Verb::Start).as_deref(), Some("RefuseManualStart=yes"));
        assert_eq!(r("b.service", Verb::Stop), None);
        assert_eq!(r("c.socket", Verb::Restart), None);
        assert_eq!(r("d.target", Verb::Start), None);
        assert!(r("d.target", Verb::Restart).is_some());
        assert!(r("e.mount", Verb::Restart).is_some());
        assert!(r("dbus.service", Verb::Restart).unwrap().contains("message bus"));
        assert_eq!(r("agent.service", Verb::Restart).as_deref(), Some("livefs runs in it"));
        assert!(r("init.scope", Verb::Restart).is_some());
        assert!(r("ssh.service", Verb::Restart).unwrap().starts_with("sshd"));
        assert!(r("getty@tty1.service", Verb::Stop).unwrap().contains("login terminal"));
        // Left alone means not restarted, stopped or reloaded on its own; starting is fine.
        assert_eq!(r("ssh.service", Verb::Start), None);
    }

    #[test]
    fn what_an_activation_stops_reloads_restarts_and_starts() {
        let active = UnitFacts { active: true, ..UnitFacts::default() };
        let inactive = UnitFacts::default();
        let units = BTreeMap::from([
            ("gone.service".to_string(), active.clone()),
            ("gone-idle.service".to_string(), inactive.clone()),
            ("web.service".to_string(), active.clone()),
            ("reloads.service".to_string(), UnitFacts { reload: true, ..active.clone() }),
            ("pinned.service".to_string(), UnitFacts { no_restart: true, ..active.clone() }),
            ("idle.service".to_string(), inactive.clone()),
            ("agent.service".to_string(), active.clone()),
            ("broke.service".to_string(), inactive.clone()),
            ("new.service".to_string(), inactive.clone()),
            ("hidden.service".to_string(), UnitFacts { masked: true, ..inactive.clone() }),
            ("later.service".to_string(), inactive.clone()),
            ("multi-user.target".to_string(), active.clone()),
            ("rescue.target".to_string(), inactive.clone()),
            ("dbus.service".to_string(), active.clone()),
            ("ssh.service".to_string(), active.clone()),
        ]);
        let why = |w: &str| vec![w.to_string()];
        let facts = Facts {
            wanted: BTreeMap::from([
                ("new.service".to_string(), vec!["multi-user.target".to_string(), "rescue.target".into()]),
                ("hidden.service".to_string(), vec!["multi-user.target".to_string()]),
                ("later.service".to_string(), vec!["rescue.target".to_string()]),
            ]),
            removed: BTreeSet::from(["gone.service".to_string(), "gone-idle.service".into()]),
            restart: BTreeMap::from([
                ("gone.service".to_string(), why("its unit files changed")),
                ("web.service".to_string(), why("nginx (pid 7) uses replaced /usr/lib/libssl.so.3")),
                ("reloads.service".to_string(), why("its unit files changed")),
                ("pinned.service".to_string(), why("its unit files changed")),
                ("idle.service".to_string(), why("its unit files changed")),
                ("agent.service".to_string(), why("its unit files changed")),
                ("dbus.service".to_string(), why("its unit files changed")),
                (
                    "ssh.service".to_string(),
                    why("sshd (pid 300) uses replaced /usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
                ),
            ]),
            failed: BTreeSet::from(["broke.service".to_string(), "new.service".into()]),
            units,
            own: Some("agent.service".into()),
            ..Facts::default()
        };
        let a = decide(facts);
        let actions: Vec<(Verb, &str)> = a.actions.iter().map(|x| (x.verb, x.unit.as_str())).collect();
        assert_eq!(
            actions,
            [
                (Verb::Stop, "gone.service"),
                (Verb::Reload, "reloads.service"),
                (Verb::Restart, "web.service"),
                (Verb::Start, "broke.service"),
                (Verb::Start, "new.service"),
            ]
        );
        let new = a.actions.iter().find(|x| x.unit == "new.service").unwrap();
        assert_eq!(new.reasons, ["newly wanted by multi-user.target"], "only active targets want");
        let mut skipped: Vec<(&str, &str)> = a.skipped.iter().map(|s| (s.unit.as_str(), s.reason.as_str())).collect();
        skipped.sort();
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert_eq!(skipped[0], ("agent.service", "livefs runs in it"));
        assert!(skipped[1].0 == "dbus.service" && skipped[1].1.contains("message bus"));
        assert_eq!(skipped[2], ("hidden.service", "masked"));
        assert_eq!(skipped[3], ("pinned.service", "X-RestartIfChanged=false"));
        assert!(skipped[4].0 == "ssh.service" && skipped[4].1.starts_with("sshd"), "{skipped:?}");
        assert!(!a.daemon_reload);
    }

    /// Socket activation, users' managers and PID 1: a table of facts and the
    /// actions (and skips) they call for.
    #[test]
    fn sockets_users_and_the_manager() {
        let active = UnitFacts { active: true, ..UnitFacts::default() };
        let by = |s: &[&str]| UnitFacts { triggered_by: s.iter().map(|x| x.to_string()).collect(), ..active.clone() };
        let socket = |t: &[&str], accept: bool| UnitFacts {
            triggers: t.iter().map(|x| x.to_string()).collect(),
            accept,
            ..active.clone()
        };
        let units = BTreeMap::from([
            // web.service changed, web.socket did not: only the service is stopped.
            ("web.service".to_string(), by(&["web.socket"])),
            ("web.socket".to_string(), socket(&["web.service"], false)),
            // api.socket changed: restarted, its running service (unchanged) stopped first.
            ("api.service".to_string(), by(&["api.socket"])),
            ("api.socket".to_string(), socket(&["api.service"], false)),
            // Both changed: the service stopped once, the socket restarted.
            ("both.service".to_string(), by(&["both.socket"])),
            ("both.socket".to_string(), socket(&["both.service"], false)),
            // An instance of an Accept=yes socket: one connection, left to end.
            ("echo@1-x.service".to_string(), by(&["echo.socket"])),
            ("echo.socket".to_string(), socket(&[], true)),
            // A socket that is not listening: a plain restart.
            ("idle-socket.service".to_string(), by(&["idle.socket"])),
            ("idle.socket".to_string(), UnitFacts::default()),
            // Reloaded instead: the socket does not matter.
            ("reloads.service".to_string(), UnitFacts { reload: true, ..by(&["web.socket"]) }),
            ("ssh.service".to_string(), by(&["ssh.socket"])),
            ("ssh.socket".to_string(), socket(&["ssh.service"], false)),
        ]);
        let changed = |u: &str| (u.to_string(), vec!["its unit files changed".to_string()]);
        let restart = BTreeMap::from(
            [
                "web.service",
                "api.socket",
                "both.service",
                "both.socket",
                "echo@1-x.service",
                "idle-socket.service",
                "reloads.service",
                "ssh.service",
            ]
            .map(changed),
        );
        let user_units = BTreeMap::from([("alice".to_string(), vec!["pipewire.service".to_string()])]);
        let manager = vec!["/usr/lib/systemd/systemd".to_string()];
        let facts = |request: Request| Facts {
            restart: restart.clone(),
            units: units.clone(),
            user_units: user_units.clone(),
            manager: manager.clone(),
            request,
            ..Facts::default()
        };
        let summary = |a: &Activation| -> (Vec<String>, Vec<String>) {
            let who = |unit: &str, user: &Option<String>| match user {
                Some(u) => format!("{unit}~{u}"),
                None => unit.to_string(),
            };
            let actions = a.actions.iter().map(|x| format!("{} {}", x.verb.as_str(), who(&x.unit, &x.user))).collect();
            let skipped = a.skipped.iter().map(|x| who(&x.unit, &x.user)).collect();
            (actions, skipped)
        };
        let a = decide(facts(Request::default()));
        let (actions, skipped) = summary(&a);
        assert_eq!(
            actions,
            [
                "stop api.service",
                "stop both.service",
                "stop web.service",
                "reload reloads.service",
                "restart api.socket",
                "restart both.socket",
                "restart idle-socket.service"
            ]
        );
        assert_eq!(skipped, ["echo@1-x.service", "ssh.service", "pipewire.service~alice", "init.scope"]);
        let reason = |unit: &str| a.actions.iter().find(|x| x.unit == unit).unwrap().reasons.join("; ");
        assert!(reason("web.service")
            .ends_with("web.socket keeps listening and starts the new code on the next connection"));
        assert!(reason("both.service").contains("both.socket restarted"));
        assert_eq!(reason("api.service"), "its socket api.socket is restarted, and starts it on the next connection");
        let skip = |unit: &str| a.skipped.iter().find(|x| x.unit == unit).unwrap().reason.clone();
        assert!(skip("echo@1-x.service").contains("Accept=yes"));
        assert_eq!(skip("pipewire.service"), "a unit of alice's manager: restarted with --user-units");
        assert!(skip("init.scope").contains("runs replaced /usr/lib/systemd/systemd: re-executed with --daemon-reexec"));
        assert!(!a.daemon_reexec);

        // Asked for: PID 1 re-executed (instead of a reload), the user's unit restarted.
        let a = decide(facts(Request { daemon_reexec: true, user_units: true }));
        let (actions, skipped) = summary(&a);
        assert!(actions.contains(&"restart pipewire.service~alice".to_string()), "{actions:?}");
        assert_eq!(skipped, ["echo@1-x.service", "ssh.service"]);
        assert!(a.daemon_reexec && !a.daemon_reload);
        // …or opted into by the policy.
        let mut by_policy = facts(Request::default());
        by_policy.policy.daemon_reexec = true;
        assert!(decide(by_policy).daemon_reexec);
        // Nothing changed in PID 1: no re-execution, whatever was asked.
        let unchanged = Facts { manager: vec![], ..facts(Request { daemon_reexec: true, user_units: false }) };
        assert!(!decide(unchanged).daemon_reexec);
    }

    #[test]
    fn opt_out_keys() {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("u.service");
        let dropin = dir.path().join("x.conf");
        std::fs::write(&unit, "[Unit]\nX-RestartIfChanged=false\n[Service]\nExecStart=/bin/true\n").unwrap();
        std::fs::write(&dropin, "[Unit]\nX-ReloadIfChanged=yes\n").unwrap();
        let props = BTreeMap::from([
            ("FragmentPath".to_string(), unit.display().to_string()),
            ("DropInPaths".to_string(), dropin.display().to_string()),
        ]);
        assert_eq!(opt_outs(&props), (false, true));
        std::fs::write(&dropin, "[Unit]\nX-RestartIfChanged=on\n").unwrap();
        assert_eq!(opt_outs(&props), (true, false));
        assert_eq!(opt_outs(&BTreeMap::new()), (true, false));
    }
}
