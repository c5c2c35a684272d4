//! What an activation is decided from: what systemd says of the units involved
//! and what their unit files say (the opt-out keys), gathered at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{unit_file, wanted_link, Input, Left, Request, Undo};
use crate::systemd::needs_restart::{self, UNIT_DIRS};
use crate::systemd::restart_policy::{self, Policy};

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

const PROPERTIES: [&str; 12] = [
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
    "ExecMainStartTimestampMonotonic",
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
    /// While it runs (active): when its main process started (CLOCK_MONOTONIC
    /// µs), which says which `/usr` it runs.
    pub running_since: Option<u64>,
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
            running_since: match get("ActiveState") {
                "active" => get("ExecMainStartTimestampMonotonic").parse().ok().filter(|&t| t > 0),
                _ => None,
            },
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
    /// Going back: what the update being rolled back did to units, each to be
    /// done the other way (see `judge::undo`).
    pub undo: Undo,
}

/// Gathers the facts about the input's restarts (the report of what runs old
/// code), unit events (units wanted or removed since boot) and units to undo:
/// which paths still exist under ROOT, and what systemd says of every unit
/// involved (asked at once).
pub(super) fn gather(root: &Path, input: &Input) -> Facts {
    let Input { restarts, events, new_events, request, undo } = *input;
    let mut f = Facts {
        failed: events.failed.clone(),
        user_units: restarts.user_units.clone(),
        request,
        undo: undo.clone(),
        ..Facts::default()
    };
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
    let units: BTreeSet<String> = f
        .restart
        .keys()
        .chain(f.wanted.keys())
        .chain(&f.removed)
        .chain(targets)
        .chain(&f.failed)
        .chain(f.undo.units.keys())
        .cloned()
        .collect();
    let units: Vec<String> = units.into_iter().collect();
    let shown = needs_restart::show(&units, &PROPERTIES);
    f.units = units.into_iter().zip(shown.iter().map(UnitFacts::of)).collect();
    // The sockets of the services to restart (or to start again), and the services of the sockets.
    let related: BTreeSet<String> = f
        .restart
        .keys()
        .chain(f.undo.units.keys())
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

#[cfg(test)]
mod tests {
    use super::*;

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
