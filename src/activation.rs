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

use serde::Serialize;

use crate::restart::Restarts;
use crate::state::UnitEvents;

/// What is done to a unit, in this order: stops, reloads, restarts, starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct UnitAction {
    pub unit: String,
    pub verb: Verb,
    /// Why: its unit files changed, a process uses replaced files, newly wanted…
    pub reasons: Vec<String>,
    /// `None` until run (and in a dry run).
    pub result: Option<ActionResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    pub ok: bool,
    /// When it failed: what systemctl said, then `systemctl status` of the unit.
    pub status: String,
}

/// A unit that needs a restart and is left alone, with why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub unit: String,
    pub reason: String,
}

/// A process that uses replaced files outside any system service: listed, never
/// killed (a login session, a user's manager and their units, PID 1).
#[derive(Debug, Clone, Serialize)]
pub struct Left {
    /// Its system unit (a scope, `user@UID.service`), or `-`.
    pub unit: String,
    pub pid: u32,
    pub command: String,
    pub files: Vec<String>,
}

/// The activation of a transition: what is (or, in a dry run, would be) done.
#[derive(Debug, Clone, Default, Serialize)]
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
    if crate::restart::systemd_runs(root) {
        Ok(())
    } else {
        Err(NoSystemd(root.display().to_string()))
    }
}

/// The unit and target of a wants link `…/TARGET.wants/UNIT` (or `.requires/`)
/// in a unit directory.
fn wanted_link(path: &str) -> Option<(String, String)> {
    for dir in crate::restart::UNIT_DIRS {
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
    crate::restart::UNIT_DIRS.iter().find_map(|dir| path.strip_prefix(dir)).filter(|u| !u.contains('/'))
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

/// Units whose restart would take the running system down with it.
const NEVER_RESTARTED: [(&str, &str); 2] = [
    ("dbus.service", "the system message bus: restarting it disconnects every client (reboot instead)"),
    ("dbus-broker.service", "the system message bus: restarting it disconnects every client (reboot instead)"),
];

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

/// What to do about `restarts` (the report of what runs old code) and `events`
/// (units wanted or removed since boot; `new_events` are this transition's, not
/// on disk yet in a dry run). Asks systemd about every unit involved.
pub fn plan(root: &Path, restarts: &Restarts, events: &UnitEvents, new_events: &UnitEvents) -> Activation {
    let mut out = Activation::default();
    let mut wanted = BTreeMap::<String, Vec<String>>::new();
    for p in events.wanted.iter().filter(|p| exists(root, p)).chain(&new_events.wanted) {
        if let Some((target, unit)) = wanted_link(p) {
            wanted.entry(unit).or_default().push(target);
        }
    }
    let mut removed = BTreeSet::new();
    for p in events.removed.iter().filter(|p| !exists(root, p)).chain(&new_events.removed) {
        let Some(unit) = unit_file(p) else { continue };
        let elsewhere = crate::restart::UNIT_DIRS.iter().any(|d| {
            let other = format!("{d}{unit}");
            other != *p && !new_events.removed.contains(&other) && exists(root, &other)
        });
        if !elsewhere {
            removed.insert(unit.to_string());
        }
    }
    let mut restart = BTreeMap::<String, Vec<String>>::new();
    for u in &restarts.units {
        restart.entry(u.clone()).or_default().push("its unit files changed".into());
    }
    for (unit, procs) in &restarts.processes {
        let outside = unit == "-" || unit.ends_with(".scope") || unit.starts_with("user@");
        for p in procs {
            if outside || p.pid == 1 {
                let p = p.clone();
                out.left.push(Left { unit: unit.clone(), pid: p.pid, command: p.command, files: p.files });
            } else {
                let why = format!("{} (pid {}) uses replaced {}", p.command, p.pid, p.files.join(", "));
                restart.entry(unit.clone()).or_default().push(why);
            }
        }
    }
    // Everything systemd is asked about at once: the units, and the targets that want.
    let targets: BTreeSet<String> = wanted.values().flatten().cloned().collect();
    let units: Vec<String> = restart
        .keys()
        .chain(wanted.keys())
        .chain(&removed)
        .chain(&targets)
        .chain(&events.failed)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let shown = crate::restart::show(&units, &PROPERTIES);
    let props: BTreeMap<&str, &BTreeMap<String, String>> = units.iter().map(String::as_str).zip(&shown).collect();
    let get =
        |unit: &str, key: &str| -> String { props.get(unit).and_then(|p| p.get(key)).cloned().unwrap_or_default() };
    let active = |unit: &str| matches!(get(unit, "ActiveState").as_str(), "active" | "reloading" | "activating");
    out.daemon_reload = units.iter().any(|u| get(u, "NeedDaemonReload") == "yes");
    let own = crate::restart::unit_of(std::process::id());
    let mut actions = Vec::new();
    let mut skip = |unit: &str, reason: String| out.skipped.push(Skipped { unit: unit.to_string(), reason });
    for unit in &removed {
        if active(unit) {
            restart.remove(unit);
            let why = vec!["its unit file was removed".to_string()];
            match refusal(unit, &props, own.as_deref(), Verb::Stop) {
                Some(reason) => skip(unit, reason),
                None => actions.push(UnitAction { unit: unit.clone(), verb: Verb::Stop, reasons: why, result: None }),
            }
        }
    }
    for (unit, reasons) in restart {
        if !active(&unit) {
            continue;
        }
        let (restart_ok, reload) = props.get(unit.as_str()).map(|p| opt_outs(p)).unwrap_or((true, false));
        let verb = if reload { Verb::Reload } else { Verb::Restart };
        match refusal(&unit, &props, own.as_deref(), verb) {
            Some(reason) => skip(&unit, reason),
            None if !restart_ok => skip(&unit, "X-RestartIfChanged=false".into()),
            None => actions.push(UnitAction { unit, verb, reasons, result: None }),
        }
    }
    // What livefs failed to (re)start before, now fixed: started, as it was meant to run.
    for unit in &events.failed {
        if !active(unit) && !removed.contains(unit) && !wanted.contains_key(unit) {
            match refusal(unit, &props, own.as_deref(), Verb::Start) {
                Some(reason) => skip(unit, reason),
                None => {
                    let reasons = vec!["livefs failed to restart it before".to_string()];
                    actions.push(UnitAction { unit: unit.clone(), verb: Verb::Start, reasons, result: None });
                }
            }
        }
    }
    for (unit, targets) in wanted {
        let wanting: Vec<String> = targets.into_iter().filter(|t| active(t)).collect();
        if wanting.is_empty() || active(&unit) || removed.contains(&unit) {
            continue;
        }
        if get(&unit, "LoadState") == "masked" {
            skip(&unit, "masked".into());
            continue;
        }
        match refusal(&unit, &props, own.as_deref(), Verb::Start) {
            Some(reason) => skip(&unit, reason),
            None => {
                let reasons = wanting.iter().map(|t| format!("newly wanted by {t}")).collect();
                actions.push(UnitAction { unit, verb: Verb::Start, reasons, result: None });
            }
        }
    }
    actions.sort_by(|a, b| (a.verb, &a.unit).cmp(&(b.verb, &b.unit)));
    out.actions = actions;
    out
}

/// Why `verb` must not be done to `unit`, if so.
fn refusal(
    unit: &str,
    props: &BTreeMap<&str, &BTreeMap<String, String>>,
    own: Option<&str>,
    verb: Verb,
) -> Option<String> {
    let get = |key: &str| props.get(unit).and_then(|p| p.get(key)).map(String::as_str).unwrap_or("");
    if own == Some(unit) {
        return Some("livefs runs in it".into());
    }
    if let Some((_, why)) = NEVER_RESTARTED.iter().find(|(u, _)| *u == unit) {
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
    if matches!(verb, Verb::Stop | Verb::Restart) && get("RefuseManualStop") == "yes" {
        return Some("RefuseManualStop=yes".into());
    }
    if matches!(verb, Verb::Start | Verb::Restart) && get("RefuseManualStart") == "yes" {
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
        let props = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let (refuse_stop, refuse_start, none) =
            (props("RefuseManualStop", "yes"), props("RefuseManualStart", "yes"), BTreeMap::new());
        let shown = BTreeMap::from([
            ("a.service", &refuse_stop),
            ("b.service", &refuse_start),
            ("c.socket", &none),
            ("d.target", &none),
            ("e.mount", &none),
            ("dbus.service", &none),
            ("agent.service", &none),
        ]);
        let r = |unit, verb| refusal(unit, &shown, Some("agent.service"), verb);
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
