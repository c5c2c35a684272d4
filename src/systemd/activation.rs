//! Finishing a transition the way a boot would (`apply --restart`, `livefs
//! restart`), after NixOS's switch-to-configuration: stop active units whose unit
//! file went away, reload or restart active units that run an old definition or
//! old code, start units the update newly wants for an active target.
//!
//! Units opt out with the keys NixOS uses, read from their unit file and drop-ins
//! (systemd ignores `X-` keys): `X-RestartIfChanged=false` leaves a unit alone,
//! `X-ReloadIfChanged=true` reloads it instead. `RefuseManualStop=yes` and
//! `RefuseManualStart=yes` are honoured. Never touched: PID 1 (a changed manager
//! needs `systemctl daemon-reexec` or a reboot, which the strategy says), the
//! system message bus, the unit livefs itself runs in, mounts and swaps; and
//! processes outside system services (sessions' scopes, users' managers) are
//! listed, not killed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::host::rundir::RunDir;
use crate::systemd::left_alone;
use crate::systemd::needs_restart::{self, Restarts, UNIT_DIRS};

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
                "X-RestartIfChanged" => restart = boolean(v).unwrap_or(restart),
                "X-ReloadIfChanged" => reload = boolean(v).unwrap_or(reload),
                _ => {}
            }
        }
    }
    (restart, reload)
}

/// A systemd boolean.
fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

const PROPERTIES: [&str; 8] = [
    "Id",
    "LoadState",
    "ActiveState",
    "RefuseManualStop",
    "RefuseManualStart",
    "FragmentPath",
    "DropInPaths",
    "NeedDaemonReload",
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
    /// Processes outside system services (and PID 1): listed, never acted on.
    pub left: Vec<Left>,
    /// What systemd says of every unit above (a unit it does not know is absent).
    pub units: BTreeMap<String, UnitFacts>,
    /// The unit livefs itself runs in.
    pub own: Option<String>,
    /// The units never restarted, stopped or reloaded on their own ([`left_alone`]).
    pub left_alone: Vec<left_alone::Entry>,
}

/// Gathers the facts about `restarts` (the report of what runs old code) and
/// `events` (units wanted or removed since boot; `new_events` are this
/// transition's, not on disk yet in a dry run): which paths still exist under
/// ROOT, and what systemd says of every unit involved (asked at once).
fn gather(root: &Path, restarts: &Restarts, events: &UnitEvents, new_events: &UnitEvents) -> Facts {
    let mut f = Facts { failed: events.failed.clone(), ..Facts::default() };
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
            if outside || p.pid == 1 {
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
    f.own = needs_restart::unit_of(std::process::id());
    f.left_alone = left_alone::load(root);
    f
}

/// What to do about `restarts` and the unit events (see `gather`).
pub fn schedule(root: &Path, restarts: &Restarts, events: &UnitEvents, new_events: &UnitEvents) -> Activation {
    decide(gather(root, restarts, events, new_events))
}

/// The activation the facts call for, as a boot would do it: stop active units
/// whose unit file went away, reload or restart active units that run old code
/// (unless they opt out), start again what livefs failed to start before, start
/// units newly wanted by an active target; each only if `refusal` allows.
pub fn decide(mut f: Facts) -> Activation {
    let none = UnitFacts::default();
    let unit = |u: &str| f.units.get(u).unwrap_or(&none);
    let own = f.own.as_deref();
    let skip = |name: &str, reason: &str| Err(Skipped { unit: name.to_string(), reason: reason.to_string() });
    let never = &f.left_alone;
    let act = |name: &str, verb: Verb, reasons: Vec<String>| match refusal(name, unit(name), own, never, verb) {
        Some(reason) => Err(Skipped { unit: name.to_string(), reason }),
        None => Ok(UnitAction { unit: name.to_string(), verb, reasons, result: None }),
    };
    let mut verdicts = Vec::new();
    for name in f.removed.iter().filter(|u| unit(u).active) {
        f.restart.remove(name);
        verdicts.push(act(name, Verb::Stop, vec!["its unit file was removed".into()]));
    }
    for (name, reasons) in f.restart.iter().filter(|(u, _)| unit(u).active) {
        let verb = if unit(name).reload { Verb::Reload } else { Verb::Restart };
        verdicts.push(match act(name, verb, reasons.clone()) {
            Ok(_) if unit(name).no_restart => skip(name, "X-RestartIfChanged=false"),
            verdict => verdict,
        });
    }
    // What livefs failed to (re)start before, now fixed: started, as it was meant to run.
    for name in &f.failed {
        if !unit(name).active && !f.removed.contains(name) && !f.wanted.contains_key(name) {
            verdicts.push(act(name, Verb::Start, vec!["livefs failed to restart it before".into()]));
        }
    }
    for (name, targets) in &f.wanted {
        let wanting: Vec<&String> = targets.iter().filter(|t| unit(t).active).collect();
        if wanting.is_empty() || unit(name).active || f.removed.contains(name) {
            continue;
        }
        verdicts.push(match unit(name).masked {
            true => skip(name, "masked"),
            false => act(name, Verb::Start, wanting.iter().map(|t| format!("newly wanted by {t}")).collect()),
        });
    }
    let mut out = Activation {
        daemon_reload: f.units.values().any(|u| u.need_daemon_reload),
        left: std::mem::take(&mut f.left),
        ..Activation::default()
    };
    for v in verdicts {
        match v {
            Ok(action) => out.actions.push(action),
            Err(skipped) => out.skipped.push(skipped),
        }
    }
    out.actions.sort_by(|a, b| (a.verb, &a.unit).cmp(&(b.verb, &b.unit)));
    out
}

/// Why `verb` must not be done to `unit`, if so (`own`: the unit livefs runs
/// in; `never`: the units left alone but to be started).
fn refusal(
    unit: &str,
    facts: &UnitFacts,
    own: Option<&str>,
    never: &[left_alone::Entry],
    verb: Verb,
) -> Option<String> {
    if own == Some(unit) {
        return Some("livefs runs in it".into());
    }
    if let Some(why) = left_alone::reason(never, unit).filter(|_| verb != Verb::Start) {
        return Some(why.to_string());
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
    for action in &a.actions {
        match &action.result {
            Some(r) if !r.ok && action.verb != Verb::Stop => events.failed.insert(action.unit.clone()),
            Some(_) => events.failed.remove(&action.unit),
            None => false,
        };
    }
}

/// Runs the plan: `daemon-reload` if needed, then each action in order; a failed
/// one is recorded with the unit's status and the others go on.
pub fn execute(a: &mut Activation) {
    if a.daemon_reload {
        // A failure shows in the actions that follow.
        let _ = Command::new("systemctl").arg("daemon-reload").output();
    }
    for action in &mut a.actions {
        let out = Command::new("systemctl").arg(action.verb.as_str()).arg("--").arg(&action.unit).output();
        let result = match out {
            Ok(o) if o.status.success() => ActionResult { ok: true, status: String::new() },
            Ok(o) => {
                let status = Command::new("systemctl")
                    .args(["status", "--no-pager", "--full", "--lines=10", "--"])
                    .arg(&action.unit)
                    .output()
                    .map(|s| String::from_utf8_lossy(&s.stdout).into_owned())
                    .unwrap_or_default();
                ActionResult { ok: false, status: format!("{}{status}", String::from_utf8_lossy(&o.stderr)) }
            }
            Err(e) => ActionResult { ok: false, status: format!("cannot run systemctl: {e}") },
        };
        action.result = Some(result);
    }
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
        let never = left_alone::defaults();
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
            left: vec![],
            units,
            own: Some("agent.service".into()),
            left_alone: left_alone::defaults(),
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
