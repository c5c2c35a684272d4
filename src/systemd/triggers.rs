//! Triggers: what must run after files changed, as data — one table of (path
//! pattern → action). Adding a trigger is adding a line to [`TABLE`].
//!
//! Actions run in a fixed order (users before the directories they own, the
//! loader cache, then systemd), each at most once, with `--root` when ROOT is not
//! `/`. `systemd-sysusers` and `systemd-tmpfiles` are given the names of the
//! configuration files that changed, as a package's scriptlets do
//! (`%tmpfiles_create httpd.conf`): they look each name up in their directories
//! in their own order, so `/etc` still overrides `/usr/lib`, and the rest of the
//! system's configuration is not walked again. A failed action is reported with
//! its output and remembered in `ROOT/run/livefs/triggers-pending.json`, so the
//! next `livefs apply` retries it.

use std::collections::{BTreeMap, BTreeSet};
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

impl Action {
    /// The `*.d` directory of the configuration files the action can be limited
    /// to, by file name.
    fn config_dir(self) -> Option<&'static str> {
        match self {
            Action::Sysusers => Some("sysusers.d"),
            Action::Tmpfiles => Some("tmpfiles.d"),
            Action::Ldconfig | Action::DaemonReload => None,
        }
    }
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
/// within one path component, `**` across components. systemd reads only
/// `*.conf` directly in a `*.d` directory.
pub const TABLE: &[(&str, Action)] = &[
    ("/usr/lib/sysusers.d/*.conf", Action::Sysusers),
    ("/etc/sysusers.d/*.conf", Action::Sysusers),
    ("/usr/lib/tmpfiles.d/*.conf", Action::Tmpfiles),
    ("/etc/tmpfiles.d/*.conf", Action::Tmpfiles),
    ("/usr/lib*/**.so*", Action::Ldconfig),
    ("/etc/ld.so.conf.d/**", Action::Ldconfig),
    ("/usr/lib/systemd/system/**", Action::DaemonReload),
    ("/usr/lib/systemd/user/**", Action::DaemonReload),
    ("/etc/systemd/**", Action::DaemonReload),
];

/// Where systemd looks a configuration file name up, highest priority first
/// (relative to ROOT, before the action's `*.d`).
const CONFIG_SEARCH: &[&str] = &["etc", "run", "usr/local/lib", "usr/lib"];

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

/// Which configuration files an action reads: `None` all of them (its plain
/// command), else these file names.
pub type Configs = Option<BTreeSet<String>>;

/// The actions to run, in running order, each with the configuration files it
/// is limited to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triggers(BTreeMap<Action, Configs>);

impl Triggers {
    /// What the changed `paths` call for.
    pub fn for_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Triggers {
        let mut out = Triggers::default();
        for p in paths {
            for &(pattern, action) in TABLE {
                if glob(pattern, p) {
                    let configs = action.config_dir().map(|_| BTreeSet::from([file_name(p).to_string()]));
                    out.add(action, configs);
                }
            }
        }
        out
    }

    /// Adds `action` for `configs`.
    pub fn add(&mut self, action: Action, configs: Configs) {
        match self.0.get_mut(&action) {
            Some(have) => merge(have, configs),
            None => {
                self.0.insert(action, configs);
            }
        }
    }

    pub fn contains(&self, action: Action) -> bool {
        self.0.contains_key(&action)
    }

    pub fn remove(&mut self, action: Action) {
        self.0.remove(&action);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The actions in running order, with their configuration files.
    pub fn iter(&self) -> impl Iterator<Item = (Action, &Configs)> {
        self.0.iter().map(|(a, c)| (*a, c))
    }
}

/// `more` added to `have`: all of them (`None`) covers any list.
fn merge(have: &mut Configs, more: Configs) {
    match (have.as_mut(), more) {
        (Some(h), Some(m)) => h.extend(m),
        (Some(_), None) => *have = None,
        (None, _) => {}
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// How one action went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub action: Action,
    /// The configuration files it was limited to; `None`: all.
    pub configs: Option<Vec<String>>,
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

impl Run {
    /// What a dry run says of `action`: it would run.
    pub fn dry_run(action: Action, configs: &Configs) -> Run {
        Run {
            action,
            configs: configs.as_ref().map(|c| c.iter().cloned().collect()),
            command: String::new(),
            ok: true,
            skipped: true,
            output: "dry run".into(),
            gave_up: false,
        }
    }
}

/// The record of pending actions in `ROOT/run/livefs`.
const PENDING: &str = "triggers-pending.json";

/// How many times a failing action is tried before livefs gives up on it.
pub const MAX_ATTEMPTS: u32 = 3;

/// A pending action: how many times it failed so far, and for which files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored")]
struct Pending {
    attempts: u32,
    configs: Configs,
}

/// A pending action as recorded, also by an earlier livefs that counted
/// attempts only (its record in /run outlives an upgrade of livefs).
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Attempts(u32),
    Pending { attempts: u32, configs: Configs },
}

impl From<Stored> for Pending {
    fn from(s: Stored) -> Pending {
        match s {
            Stored::Attempts(attempts) => Pending { attempts, configs: None },
            Stored::Pending { attempts, configs } => Pending { attempts, configs },
        }
    }
}

fn load_pending(run: &RunDir) -> anyhow::Result<BTreeMap<Action, Pending>> {
    run.read_record(PENDING)
}

fn save_pending(run: &RunDir, pending: &BTreeMap<Action, Pending>) -> anyhow::Result<()> {
    if pending.is_empty() {
        return run.remove(PENDING);
    }
    run.write_record(PENDING, pending)
}

/// Actions that must still run: recorded before an apply's state says *Live*
/// (so a kill during the triggers loses none), and those that failed before.
pub fn pending(run: &RunDir) -> anyhow::Result<Triggers> {
    Ok(Triggers(load_pending(run)?.into_iter().map(|(a, p)| (a, p.configs)).collect()))
}

/// Records `triggers` as pending until [`run`] has run them.
pub fn record_pending(run: &RunDir, triggers: &Triggers) -> anyhow::Result<()> {
    let mut pending = load_pending(run)?;
    let before = pending.clone();
    for (action, configs) in triggers.iter() {
        match pending.get_mut(&action) {
            Some(p) => merge(&mut p.configs, configs.clone()),
            None => {
                pending.insert(action, Pending { attempts: 0, configs: configs.clone() });
            }
        }
    }
    if pending == before {
        return Ok(());
    }
    save_pending(run, &pending)
}

/// The command that runs `action` for the system at `root` on `configs`; `None`
/// when it cannot run there (daemon-reload where systemd does not run that root).
fn command(action: Action, configs: &[String], root: &Path) -> Option<Command> {
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
    c.args(configs);
    Some(c)
}

/// The names in `configs` that some directory of `action` under `root` still
/// has (a name gone from all of them is nothing to act on, and an error to the tool).
fn present(root: &Path, action: Action, configs: &BTreeSet<String>) -> Vec<String> {
    let Some(dir) = action.config_dir() else { return Vec::new() };
    configs
        .iter()
        .filter(|name| CONFIG_SEARCH.iter().any(|d| root.join(d).join(dir).join(name).symlink_metadata().is_ok()))
        .cloned()
        .collect()
}

/// Done (or skipped) actions leave the pending list; a failed one stays for the next apply,
/// up to [`MAX_ATTEMPTS`] tries, then is given up on (and said so).
fn settle(pending: &mut BTreeMap<Action, Pending>, runs: &mut [Run]) {
    for r in runs.iter_mut() {
        if r.ok {
            pending.remove(&r.action);
            continue;
        }
        let configs = r.configs.as_ref().map(|c| c.iter().cloned().collect());
        let p = pending.entry(r.action).or_insert_with(|| Pending { attempts: 0, configs });
        p.attempts += 1;
        if p.attempts >= MAX_ATTEMPTS {
            pending.remove(&r.action);
            r.gave_up = true;
        }
    }
}

/// Runs `triggers` for the system at `root`; remembers the failed ones in `run_dir`.
pub fn run(root: &Path, run_dir: &RunDir, triggers: &Triggers) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (action, configs) in triggers.iter() {
        let names = configs.as_ref().map(|c| present(root, action, c));
        let skip = |why: &str| Run {
            action,
            configs: names.clone(),
            command: format!("{action} (skipped: {why})"),
            ok: true,
            skipped: true,
            output: why.to_string(),
            gave_up: false,
        };
        if names.as_ref().is_some_and(Vec::is_empty) {
            runs.push(skip("its configuration files are gone"));
            continue;
        }
        let Some(mut cmd) = command(action, names.as_deref().unwrap_or_default(), root) else {
            runs.push(skip("systemd does not run this root"));
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
        runs.push(Run { action, configs: names, command, ok, skipped: false, output, gave_up: false });
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
        assert!(glob("/usr/lib/sysusers.d/*.conf", "/usr/lib/sysusers.d/httpd.conf"));
        assert!(!glob("/usr/lib/sysusers.d/*.conf", "/usr/lib/sysusers.d/sub/httpd.conf"));
        assert!(glob("/usr/lib*/**.so*", "/usr/lib/x86_64-linux-gnu/libfoo.so.1"));
        assert!(glob("/usr/lib*/**.so*", "/usr/lib64/libfoo.so"));
        assert!(!glob("/usr/lib*/**.so*", "/usr/libexec/foo"));
        assert!(!glob("/usr/lib/systemd/system/**", "/usr/lib/systemd/systemd"));
        assert!(glob("/etc/systemd/**", "/etc/systemd/system/x.service"));
    }

    #[test]
    fn triggers_are_ordered_unique_and_name_their_files() {
        let t = Triggers::for_paths([
            "/usr/lib/systemd/system/httpd.service",
            "/usr/lib/tmpfiles.d/httpd.conf",
            "/usr/lib/sysusers.d/httpd.conf",
            "/etc/sysusers.d/other.conf",
            // Not read by systemd-sysusers: no trigger.
            "/usr/lib/sysusers.d/README",
            "/usr/lib/sysusers.d/sub/x.conf",
        ]);
        let names = |n: &[&str]| Some(n.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
        let got: Vec<(Action, Configs)> = t.iter().map(|(a, c)| (a, c.clone())).collect();
        assert_eq!(
            got,
            vec![
                (Action::Sysusers, names(&["httpd.conf", "other.conf"])),
                (Action::Tmpfiles, names(&["httpd.conf"])),
                (Action::DaemonReload, None),
            ]
        );
        assert!(Triggers::for_paths(["/usr/bin/true", "/usr/lib/tmpfiles.d/x.txt"]).is_empty());
    }

    #[test]
    fn all_files_cover_a_list() {
        let mut t = Triggers::for_paths(["/usr/lib/tmpfiles.d/a.conf"]);
        t.add(Action::Tmpfiles, None);
        t.add(Action::Tmpfiles, Some(BTreeSet::from(["b.conf".to_string()])));
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![(Action::Tmpfiles, &None)]);
    }

    #[test]
    fn a_record_of_attempts_only_still_reads() {
        let old: BTreeMap<Action, Pending> = serde_json::from_str(r#"{"sysusers":1}"#).unwrap();
        assert_eq!(old[&Action::Sysusers], Pending { attempts: 1, configs: None });
        let new: BTreeMap<Action, Pending> =
            serde_json::from_str(r#"{"tmpfiles":{"attempts":2,"configs":["a.conf"]}}"#).unwrap();
        assert_eq!(new[&Action::Tmpfiles].configs, Some(BTreeSet::from(["a.conf".to_string()])));
    }

    #[test]
    fn a_failed_action_is_retried_then_given_up() {
        let run = |action, ok, skipped| Run {
            action,
            configs: None,
            command: String::new(),
            ok,
            skipped,
            output: String::new(),
            gave_up: false,
        };
        let attempts = |n| Pending { attempts: n, configs: None };
        let mut pending = BTreeMap::from([
            (Action::Sysusers, attempts(0)),
            (Action::Tmpfiles, attempts(2)),
            (Action::DaemonReload, attempts(0)),
        ]);
        let mut runs = vec![
            run(Action::Sysusers, true, false),
            run(Action::Tmpfiles, false, false),
            run(Action::Ldconfig, false, false),
            // Skipped (systemd does not run this root): nothing left to do.
            run(Action::DaemonReload, true, true),
        ];
        settle(&mut pending, &mut runs);
        assert_eq!(pending, BTreeMap::from([(Action::Ldconfig, attempts(1))]));
        let gave_up: Vec<bool> = runs.iter().map(|r| r.gave_up).collect();
        assert_eq!(gave_up, [false, true, false, false], "the third failure is the last");
    }
}
