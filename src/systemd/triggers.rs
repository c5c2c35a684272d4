//! Triggers: what must run after files changed, as data — one table of (path
//! pattern → action). Adding a trigger is adding a line to [`TABLE`].
//!
//! Actions run in a fixed order (users before the directories they own, the
//! loader cache, then systemd), each at most once, with `--root` when ROOT is not
//! `/`. A failed action is reported with its output and remembered in
//! `ROOT/run/livefs/triggers-pending.json`, so the next `livefs apply` retries it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::host::layout;
use crate::host::rundir::RunDir;

/// Something to run after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `systemd-sysusers`: create the users and groups new packages declare.
    Sysusers,
    /// `systemd-tmpfiles --create --prefix=/var --prefix=/run`: their state directories.
    Tmpfiles,
    /// `ldconfig`: the shared library cache.
    Ldconfig,
    /// `systemctl daemon-reload`, when systemd runs the system.
    DaemonReload,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Sysusers => "systemd-sysusers",
            Action::Tmpfiles => "systemd-tmpfiles",
            Action::Ldconfig => "ldconfig",
            Action::DaemonReload => "systemctl daemon-reload",
        })
    }
}

/// Changed paths (absolute, as on the running system) → actions. `*` matches
/// within one path component, `**` across components.
pub const TABLE: &[(&str, Action)] = &[
    ("/usr/lib/sysusers.d/**", Action::Sysusers),
    ("/etc/sysusers.d/**", Action::Sysusers),
    ("/usr/lib/tmpfiles.d/**", Action::Tmpfiles),
    ("/etc/tmpfiles.d/**", Action::Tmpfiles),
    ("/usr/lib*/**.so*", Action::Ldconfig),
    ("/etc/ld.so.conf.d/**", Action::Ldconfig),
    ("/usr/lib/systemd/system/**", Action::DaemonReload),
    ("/usr/lib/systemd/user/**", Action::DaemonReload),
    ("/etc/systemd/**", Action::DaemonReload),
];

/// Whether `path` matches the glob `pattern` (`*`: any run of non-`/` bytes,
/// `**`: any run of bytes).
pub fn glob(pattern: &str, path: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| m(rest, &s[i..])),
            [b'*', rest @ ..] => (0..=s.len()).take_while(|&i| i == 0 || s[i - 1] != b'/').any(|i| m(rest, &s[i..])),
            [c, rest @ ..] => s.first() == Some(c) && m(rest, &s[1..]),
        }
    }
    m(pattern.as_bytes(), path.as_bytes())
}

/// The actions the changed `paths` call for, in running order.
pub fn actions_for<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::new();
    for p in paths {
        for (pattern, action) in TABLE {
            if !out.contains(action) && glob(pattern, p) {
                out.push(*action);
            }
        }
    }
    out.sort();
    out
}

/// How one action went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub action: Action,
    /// The command line, or why it was not run.
    pub command: String,
    pub ok: bool,
    /// Not run: not applicable here (e.g. daemon-reload when systemd does not run ROOT).
    pub skipped: bool,
    pub output: String,
    /// Failed for the last allowed time: not retried any more.
    #[serde(default)]
    pub gave_up: bool,
}

/// The record of pending actions in `ROOT/run/livefs`.
const PENDING: &str = "triggers-pending.json";

/// How many times a failing action is tried before livefs gives up on it.
pub const MAX_ATTEMPTS: u32 = 3;

/// Pending actions and how many times each failed so far.
fn load_pending(run: &RunDir) -> anyhow::Result<BTreeMap<Action, u32>> {
    run.read_record(PENDING)
}

fn save_pending(run: &RunDir, pending: &BTreeMap<Action, u32>) -> anyhow::Result<()> {
    if pending.is_empty() {
        return run.remove(PENDING);
    }
    run.write_record(PENDING, pending)
}

/// Actions that must still run: recorded before an apply's state says *Live*
/// (so a kill during the triggers loses none), and those that failed before.
pub fn pending(run: &RunDir) -> anyhow::Result<Vec<Action>> {
    Ok(load_pending(run)?.into_keys().collect())
}

/// Records `actions` as pending until [`run`] has run them.
pub fn record_pending(run: &RunDir, actions: &[Action]) -> anyhow::Result<()> {
    let mut pending = load_pending(run)?;
    let before = pending.len();
    for a in actions {
        pending.entry(*a).or_insert(0);
    }
    if pending.len() == before {
        return Ok(());
    }
    save_pending(run, &pending)
}

/// The command that runs `action` for the system at `root`; `None` when it
/// cannot run there (daemon-reload where systemd does not run that root).
fn command(action: Action, root: &Path) -> Option<Command> {
    let alt_root = root != Path::new("/");
    let root_arg = format!("--root={}", root.display());
    let mut c;
    match action {
        Action::Sysusers => {
            c = Command::new("systemd-sysusers");
            if alt_root {
                c.arg(&root_arg);
            }
        }
        Action::Tmpfiles => {
            c = Command::new("systemd-tmpfiles");
            c.args(["--create", "--prefix=/var", "--prefix=/run"]);
            if alt_root {
                c.arg(&root_arg);
            }
        }
        Action::Ldconfig => {
            c = Command::new("ldconfig");
            if alt_root {
                c.arg("-r").arg(root);
            }
        }
        Action::DaemonReload => {
            if alt_root || !Path::new(layout::SYSTEMD_RUNNING).exists() {
                return None;
            }
            c = Command::new("systemctl");
            c.arg("daemon-reload");
        }
    }
    Some(c)
}

/// Done (or skipped) actions leave the pending list; a failed one stays for the next apply,
/// up to [`MAX_ATTEMPTS`] tries, then is given up on (and said so).
fn settle(pending: &mut BTreeMap<Action, u32>, runs: &mut [Run]) {
    for r in runs.iter_mut() {
        if r.ok {
            pending.remove(&r.action);
            continue;
        }
        let attempts = pending.entry(r.action).or_insert(0);
        *attempts += 1;
        if *attempts >= MAX_ATTEMPTS {
            pending.remove(&r.action);
            r.gave_up = true;
        }
    }
}

/// Runs `actions` for the system at `root`; remembers the failed ones in `run_dir`.
pub fn run(root: &Path, run_dir: &RunDir, actions: &[Action]) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &action in actions {
        let Some(mut cmd) = command(action, root) else {
            runs.push(Run {
                action,
                command: "systemctl daemon-reload (skipped: systemd does not run this root)".into(),
                ok: true,
                skipped: true,
                output: String::new(),
                gave_up: false,
            });
            continue;
        };
        let command = format!("{cmd:?}").replace('"', "");
        let (ok, output) = match cmd.output() {
            Ok(o) => (
                o.status.success(),
                format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            ),
            Err(e) => (false, format!("cannot run: {e}")),
        };
        runs.push(Run { action, command, ok, skipped: false, output, gave_up: false });
    }
    let mut pending = load_pending(run_dir)?;
    settle(&mut pending, &mut runs);
    save_pending(run_dir, &pending)?;
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("/usr/lib/sysusers.d/**", "/usr/lib/sysusers.d/httpd.conf"));
        assert!(glob("/usr/lib*/**.so*", "/usr/lib/x86_64-linux-gnu/libfoo.so.1"));
        assert!(glob("/usr/lib*/**.so*", "/usr/lib64/libfoo.so"));
        assert!(!glob("/usr/lib*/**.so*", "/usr/libexec/foo"));
        assert!(!glob("/usr/lib/systemd/system/**", "/usr/lib/systemd/systemd"));
        assert!(glob("/etc/systemd/**", "/etc/systemd/system/x.service"));
    }

    #[test]
    fn actions_are_ordered_and_unique() {
        let a = actions_for([
            "/usr/lib/systemd/system/httpd.service",
            "/usr/lib/tmpfiles.d/httpd.conf",
            "/usr/lib/sysusers.d/httpd.conf",
            "/usr/lib/sysusers.d/other.conf",
        ]);
        assert_eq!(a, vec![Action::Sysusers, Action::Tmpfiles, Action::DaemonReload]);
        assert!(actions_for(["/usr/bin/true"]).is_empty());
    }

    #[test]
    fn a_failed_action_is_retried_then_given_up() {
        let run = |action, ok, skipped| Run {
            action,
            command: String::new(),
            ok,
            skipped,
            output: String::new(),
            gave_up: false,
        };
        let mut pending = BTreeMap::from([(Action::Sysusers, 0), (Action::Tmpfiles, 2), (Action::DaemonReload, 0)]);
        let mut runs = vec![
            run(Action::Sysusers, true, false),
            run(Action::Tmpfiles, false, false),
            run(Action::Ldconfig, false, false),
            // Skipped (systemd does not run this root): nothing left to do.
            run(Action::DaemonReload, true, true),
        ];
        settle(&mut pending, &mut runs);
        assert_eq!(pending, BTreeMap::from([(Action::Ldconfig, 1)]));
        let gave_up: Vec<bool> = runs.iter().map(|r| r.gave_up).collect();
        assert_eq!(gave_up, [false, true, false, false], "the third failure is the last");
    }
}
