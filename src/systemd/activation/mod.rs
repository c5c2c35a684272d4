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
//!
//! The facts are gathered in [`facts`] (I/O: systemd, the unit files), the
//! activation decided from them in [`judge`] (pure, table-tested), and run here.

mod facts;
mod judge;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::host::rundir::RunDir;
use crate::systemd::needs_restart::{self, Restarts, UNIT_DIRS};

pub use facts::{Facts, UnitFacts};
pub use judge::decide;

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
    /// This activation followed by `next`, as one.
    pub fn then(&self, next: &Activation) -> Activation {
        let mut all = self.clone();
        all.daemon_reload |= next.daemon_reload;
        all.daemon_reexec |= next.daemon_reexec;
        all.actions.extend(next.actions.iter().cloned());
        all.skipped.extend(next.skipped.iter().cloned());
        all.left.extend(next.left.iter().cloned());
        all
    }

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

/// What an activation acts on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// What runs old code (the report of `needs_restart`).
    pub restarts: &'a Restarts,
    /// The unit events of this boot, and this transition's (not on disk yet in a dry run).
    pub events: &'a UnitEvents,
    pub new_events: &'a UnitEvents,
    pub request: Request,
    pub undo: &'a Undo,
}

/// Going back: what the update being rolled back did to units, and when `/usr`
/// was switched back (CLOCK_MONOTONIC µs; none in a dry run).
#[derive(Debug, Clone, Default)]
pub struct Undo {
    pub units: BTreeMap<String, Verb>,
    pub switched_at: Option<u64>,
}

/// What to do about `input` (see `facts::gather`, `judge::decide`).
pub fn schedule(root: &Path, input: &Input) -> Activation {
    decide(facts::gather(root, input))
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
/// in order (a unit's failed state cleared first); a failed one is recorded
/// with the unit's status and the others go on. `progress` sees the activation after each step (to keep it on disk).
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
        if action.verb != Verb::Reload {
            // A unit in the failed state (a build that did not start, a start
            // limit hit) is acted on afresh, as after a boot.
            let _ = systemctl().args(["reset-failed", "--"]).arg(&action.unit).output();
        }
        let out = systemctl().arg(action.verb.as_str()).arg("--").arg(&action.unit).output();
        // A stop is done when nothing of the unit runs: one whose file went away
        // with the update undone ("not loaded") has nothing left to stop.
        let stopped = || {
            let state = systemctl().args(["show", "-P", "ActiveState", "--"]).arg(&action.unit).output();
            state.is_ok_and(|s| matches!(String::from_utf8_lossy(&s.stdout).trim(), "inactive" | "failed"))
        };
        let result = match out {
            Ok(o) if o.status.success() => ActionResult { ok: true, status: String::new() },
            Ok(_) if action.verb == Verb::Stop && stopped() => ActionResult { ok: true, status: String::new() },
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
}
