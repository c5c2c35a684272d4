//! The admin's restart policy: the units a live update never restarts (nor
//! stops or reloads) on its own, as needrestart keeps such a list — restarting
//! them ends sessions, cuts the network or the log, or takes the system down;
//! each is reported with its reason instead — and whether a changed systemd
//! manager is re-executed (`systemctl daemon-reexec`, as NixOS does).
//!
//! The built-in policy is changed by `ROOT/etc/livefs/restart.conf` and
//! `ROOT/etc/livefs/restart.conf.d/*.conf` (in name order), systemd style:
//!
//! ```ini
//! [Restart]
//! # Add units (globs): never restarted automatically.
//! LeaveAlone=postgresql.service my-agent@*.service
//! # An empty assignment empties the list so far (the built-in one included).
//! LeaveAlone=
//! # Re-execute PID 1 when the update changed it (default: no; reported instead).
//! DaemonReexec=yes
//! ```

use std::path::Path;

/// A unit pattern left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// A unit name, `*` matching any run of characters.
    pub pattern: String,
    pub reason: String,
}

/// The built-in list: (pattern, reason).
const DEFAULTS: &[(&str, &str)] = &[
    ("dbus.service", "the system message bus: restarting it disconnects every client (reboot instead)"),
    ("dbus-broker.service", "the system message bus: restarting it disconnects every client (reboot instead)"),
    ("systemd-logind.service", "the login manager: restarting it can end sessions"),
    ("systemd-journald.service", "the journal: restarting it loses the log streams of running services"),
    ("getty@*.service", "a login terminal: restarting it ends its session"),
    ("serial-getty@*.service", "a login terminal: restarting it ends its session"),
    ("user@*.service", "a user's manager: restarting it ends the user's session"),
    ("display-manager.service", "the display manager: restarting it ends graphical sessions"),
    ("gdm.service", "the display manager: restarting it ends graphical sessions"),
    ("sddm.service", "the display manager: restarting it ends graphical sessions"),
    ("lightdm.service", "the display manager: restarting it ends graphical sessions"),
    ("NetworkManager.service", "the network: restarting it can cut remote sessions"),
    ("wpa_supplicant.service", "the network: restarting it can cut remote sessions"),
    ("ssh.service", "sshd: restarting it can cut the session that runs the update"),
    ("sshd.service", "sshd: restarting it can cut the session that runs the update"),
];

/// The configuration file, and its drop-in directory, beneath ROOT.
pub const CONF: &str = "etc/livefs/restart.conf";
pub const CONF_D: &str = "etc/livefs/restart.conf.d";

/// The built-in list.
pub fn defaults() -> Vec<Entry> {
    DEFAULTS.iter().map(|(p, r)| Entry { pattern: p.to_string(), reason: r.to_string() }).collect()
}

/// The policy: the units left alone, and whether PID 1 is re-executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub left_alone: Vec<Entry>,
    pub daemon_reexec: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { left_alone: defaults(), daemon_reexec: false }
    }
}

/// Applies the `[Restart]` assignments of the configuration files, in order, to `policy`.
pub fn apply(policy: &mut Policy, assignments: &[crate::conf::Assignment]) {
    for a in assignments {
        match a.key.as_str() {
            "LeaveAlone" if a.value.is_empty() => policy.left_alone.clear(),
            "LeaveAlone" => policy.left_alone.extend(
                a.value
                    .split_whitespace()
                    .map(|p| Entry { pattern: p.to_string(), reason: format!("listed in {}", a.file) }),
            ),
            "DaemonReexec" => match crate::conf::boolean(&a.value) {
                Some(b) => policy.daemon_reexec = b,
                None => crate::messages::warn(format!(
                    "{}: DaemonReexec={} is not a boolean; ignored",
                    a.at(),
                    crate::quote::excerpt(&a.value)
                )),
            },
            _ => {}
        }
    }
}

/// The policy of the system at `root`: the built-in one, then the configuration
/// files. A file that cannot be read is skipped (and said, as a warning).
pub fn load(root: &Path) -> Policy {
    let mut policy = Policy::default();
    apply(&mut policy, &crate::conf::read(root, CONF, CONF_D, "Restart"));
    policy
}

/// Why `unit` is left alone, if it is (the last matching entry's reason).
pub fn reason<'a>(list: &'a [Entry], unit: &str) -> Option<&'a str> {
    list.iter().rev().find(|e| crate::systemd::triggers::glob(&e.pattern, unit)).map(|e| e.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_extended_and_replaced_systemd_style() {
        let mut policy = Policy::default();
        assert!(!policy.daemon_reexec);
        let why = |p: &Policy, unit: &str| reason(&p.left_alone, unit).map(str::to_string);
        assert!(why(&policy, "ssh.service").unwrap().starts_with("sshd"));
        assert!(why(&policy, "getty@tty1.service").unwrap().contains("login terminal"));
        assert_eq!(why(&policy, "lighttpd.service"), None);
        let conf = "# comment\n[Restart]\nLeaveAlone=postgresql.service  agent@*.service\nDaemonReexec=yes\n\
                    [Other]\nLeaveAlone=nope.service\nDaemonReexec=no\n";
        apply(&mut policy, &crate::conf::parse(conf, "/etc/livefs/restart.conf", "Restart"));
        let listed = Some("listed in /etc/livefs/restart.conf".to_string());
        assert_eq!(why(&policy, "postgresql.service"), listed);
        assert_eq!(why(&policy, "agent@3.service"), listed);
        assert_eq!(why(&policy, "nope.service"), None, "only the [Restart] section counts");
        assert!(policy.daemon_reexec);
        // An empty assignment empties the list, the built-in one included; the last boolean wins.
        let dropin = "[Restart]\nLeaveAlone=\nLeaveAlone=ssh.service\nDaemonReexec=off\nDaemonReexec=maybe\n";
        apply(&mut policy, &crate::conf::parse(dropin, "/etc/livefs/restart.conf.d/10-x.conf", "Restart"));
        assert_eq!(why(&policy, "ssh.service").as_deref(), Some("listed in /etc/livefs/restart.conf.d/10-x.conf"));
        assert_eq!(why(&policy, "dbus.service"), None);
        assert_eq!(why(&policy, "postgresql.service"), None);
        assert!(!policy.daemon_reexec, "an invalid boolean is ignored, the one before it stands");
        let warnings = crate::messages::take();
        assert!(
            warnings
                .iter()
                .any(|w| w == "/etc/livefs/restart.conf.d/10-x.conf:5: DaemonReexec=maybe is not a boolean; ignored"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_files_are_read_beneath_root_in_name_order() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(CONF_D)).unwrap();
        std::fs::write(root.path().join(CONF), "[Restart]\nLeaveAlone=a.service\nDaemonReexec=yes\n").unwrap();
        std::fs::write(root.path().join(CONF_D).join("20-b.conf"), "[Restart]\nLeaveAlone=b.service\n").unwrap();
        std::fs::write(root.path().join(CONF_D).join("10-reset.conf"), "[Restart]\nLeaveAlone=\n").unwrap();
        std::fs::write(root.path().join(CONF_D).join("30-ignored.txt"), "[Restart]\nLeaveAlone=c.service\n").unwrap();
        let policy = load(root.path());
        let patterns: Vec<&str> = policy.left_alone.iter().map(|e| e.pattern.as_str()).collect();
        // restart.conf, then 10-reset.conf empties everything, then 20-b.conf.
        assert_eq!(patterns, ["b.service"]);
        assert_eq!(reason(&policy.left_alone, "b.service"), Some("listed in /etc/livefs/restart.conf.d/20-b.conf"));
        assert!(policy.daemon_reexec);
        assert_eq!(load(&root.path().join("nonexistent")), Policy::default());
    }
}
