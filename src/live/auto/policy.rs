//! The admin's policy for automatic runs, in `ROOT/etc/livefs/auto.conf` and
//! `ROOT/etc/livefs/auto.conf.d/*.conf` (in name order, systemd style: a later
//! assignment wins):
//!
//! ```ini
//! [Auto]
//! # The most an update may need to be taken live: live, soft-reboot or reboot.
//! # One that needs more is left for the next reboot (default: live).
//! MaxStrategy=live
//! # Take updates that change or remove existing files of /usr (default: no).
//! AllowReplacement=no
//! # Restart what the update changed, as a boot would, but for the left-alone
//! # list of /etc/livefs/restart.conf (default: yes).
//! Restart=yes
//! # Check the update's health afterwards: the units it acted on, greenboot's
//! # checks (default: yes).
//! Check=yes
//! # Roll an update that fails its checks back at once (default: yes).
//! Rollback=yes
//! # How long the units must stay up, in seconds (default: 10).
//! Settle=10
//! ```
//!
//! A value that does not parse gives its key the default (the safest choice for
//! each), with a warning naming the file and line; an unknown key is ignored,
//! and said.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::conf::{self, Assignment};
use crate::live::decide::Limits;
use crate::live::strategy::Tier;

/// The configuration file, and its drop-in directory, beneath ROOT.
pub const CONF: &str = "etc/livefs/auto.conf";
pub const CONF_D: &str = "etc/livefs/auto.conf.d";

/// What an automatic run may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The most disruptive strategy taken live.
    pub max_strategy: Tier,
    pub allow_replacement: bool,
    /// Restart, reload, stop and start units afterwards, as `--restart` does.
    pub restart: bool,
    /// Check the update's health afterwards (as `apply` does without `--no-check`).
    #[serde(default = "yes")]
    pub check: bool,
    /// Roll an update that fails its checks back (as `apply` does without `--no-rollback`).
    #[serde(default = "yes")]
    pub rollback: bool,
    /// The settle window of the checks, in seconds.
    #[serde(default = "settle")]
    pub settle: u64,
}

fn yes() -> bool {
    true
}

fn settle() -> u64 {
    crate::health::SETTLE.as_secs()
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            max_strategy: Tier::Live,
            allow_replacement: false,
            restart: true,
            check: true,
            rollback: true,
            settle: settle(),
        }
    }
}

impl Policy {
    pub fn limits(&self) -> Limits {
        Limits { allow_replacement: self.allow_replacement, max_strategy: self.max_strategy }
    }

    /// The health checks this policy asks of an automatic apply.
    pub fn checks(&self) -> crate::health::Request {
        crate::health::Request {
            enabled: self.check,
            rollback: self.rollback,
            settle: std::time::Duration::from_secs(self.settle),
            ..crate::health::Request::default()
        }
    }
}

/// Seconds, as `10` or `10s`.
fn seconds(v: &str) -> Option<u64> {
    v.trim().strip_suffix('s').unwrap_or(v.trim()).parse().ok()
}

fn tier(v: &str) -> Option<Tier> {
    [Tier::Live, Tier::SoftReboot, Tier::Reboot].into_iter().find(|t| t.as_str() == v)
}

/// The policy the `[Auto]` assignments make, in order, from the defaults.
pub fn of(assignments: &[Assignment]) -> Policy {
    let defaults = Policy::default();
    let mut p = defaults;
    for a in assignments {
        let bad = |what: &str, default: &str| {
            crate::messages::warn(format!(
                "{}: {}={} is not {what}; {} is {default} (the default)",
                a.at(),
                a.key,
                crate::quote::excerpt(&a.value),
                a.key
            ))
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        // A boolean key: its value, or (said) its default.
        let flag = |default: bool| {
            conf::boolean(&a.value).unwrap_or_else(|| {
                bad("a boolean", yes_no(default));
                default
            })
        };
        match a.key.as_str() {
            "MaxStrategy" => {
                p.max_strategy = tier(&a.value).unwrap_or_else(|| {
                    bad("live, soft-reboot or reboot", defaults.max_strategy.as_str());
                    defaults.max_strategy
                })
            }
            "AllowReplacement" => p.allow_replacement = flag(defaults.allow_replacement),
            "Restart" => p.restart = flag(defaults.restart),
            "Check" => p.check = flag(defaults.check),
            "Rollback" => p.rollback = flag(defaults.rollback),
            "Settle" => {
                p.settle = seconds(&a.value).unwrap_or_else(|| {
                    bad("a number of seconds", &defaults.settle.to_string());
                    defaults.settle
                })
            }
            other => {
                crate::messages::warn(format!("{}: unknown key {}; ignored", a.at(), crate::quote::excerpt(other)))
            }
        }
    }
    p
}

/// The policy of the system at `root`.
pub fn load(root: &Path) -> Policy {
    of(&conf::read(root, CONF, CONF_D, "Auto"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(max_strategy: Tier, allow_replacement: bool, restart: bool) -> Policy {
        Policy { max_strategy, allow_replacement, restart, ..Policy::default() }
    }

    /// Each case: the files (main, then drop-ins in order), the policy, and the
    /// warnings it must say.
    #[test]
    fn the_policy_from_defaults_drop_ins_and_bad_lines() {
        let main = "/etc/livefs/auto.conf";
        let dropin = "/etc/livefs/auto.conf.d/50-fleet.conf";
        type Files<'a> = &'a [(&'a str, &'a str)];
        #[rustfmt::skip]
        let cases: &[(Files, Policy, &[&str])] = &[
            // No file: the defaults.
            (&[], p(Tier::Live, false, true), &[]),
            (&[(main, "[Auto]\nMaxStrategy=soft-reboot\nAllowReplacement=yes\nRestart=no\n")], p(Tier::SoftReboot, true, false), &[]),
            // Another section's keys are not ours.
            (&[(main, "[Restart]\nAllowReplacement=yes\n")], p(Tier::Live, false, true), &[]),
            // A drop-in overrides the main file; the last assignment wins.
            (&[(main, "[Auto]\nMaxStrategy=reboot\nAllowReplacement=yes\n"), (dropin, "[Auto]\nMaxStrategy=live\nMaxStrategy=soft-reboot\n")], p(Tier::SoftReboot, true, true), &[]),
            // A bad value: the default for that key, said with the file and line.
            (&[(main, "[Auto]\nMaxStrategy=reboot\n"), (dropin, "[Auto]\n\nMaxStrategy=fast\n")], p(Tier::Live, false, true),
             &["/etc/livefs/auto.conf.d/50-fleet.conf:3: MaxStrategy=fast is not live, soft-reboot or reboot; MaxStrategy is live (the default)"]),
            (&[(main, "[Auto]\nAllowReplacement=yes\nAllowReplacement=sometimes\nRestart=maybe\n")], p(Tier::Live, false, true),
             &["/etc/livefs/auto.conf:3: AllowReplacement=sometimes is not a boolean; AllowReplacement is no (the default)",
               "/etc/livefs/auto.conf:4: Restart=maybe is not a boolean; Restart is yes (the default)"]),
            (&[(main, "[Auto]\nCheck=no\nRollback=false\nSettle=3s\n")], Policy { check: false, rollback: false, settle: 3, ..Policy::default() }, &[]),
            (&[(main, "[Auto]\nSettle=soon\nCheck=perhaps\n")], Policy::default(),
             &["/etc/livefs/auto.conf:2: Settle=soon is not a number of seconds; Settle is 10 (the default)",
               "/etc/livefs/auto.conf:3: Check=perhaps is not a boolean; Check is yes (the default)"]),
            (&[(main, "[Auto]\nMaxStratgy=reboot\nnot a line\nAllowReplacement=true\n")], p(Tier::Live, true, true),
             &["/etc/livefs/auto.conf:2: unknown key MaxStratgy; ignored",
               "/etc/livefs/auto.conf:3: not a line is not a Key=value assignment; ignored"]),
        ];
        for (files, want, warnings) in cases {
            let assignments: Vec<Assignment> =
                files.iter().flat_map(|(file, text)| conf::parse(text, file, "Auto")).collect();
            assert_eq!(of(&assignments), *want, "{files:?}");
            let said = crate::messages::take();
            for w in *warnings {
                assert!(said.iter().any(|s| s == w), "{files:?}: no warning {w:?} in {said:?}");
            }
        }
    }

    /// The file the packages ship is all comments: the defaults, said.
    #[test]
    fn the_shipped_file_is_the_defaults() {
        let text = include_str!("../../../packaging/systemd/auto.conf");
        assert_eq!(of(&conf::parse(text, "/etc/livefs/auto.conf", "Auto")), Policy::default());
        let uncommented: String = text.lines().map(|l| l.trim_start_matches('#')).collect::<Vec<_>>().join("\n");
        assert_eq!(of(&conf::parse(&uncommented, "/etc/livefs/auto.conf", "Auto")), Policy::default());
    }

    #[test]
    fn the_files_are_read_beneath_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(CONF_D)).unwrap();
        std::fs::write(root.path().join(CONF), "[Auto]\nAllowReplacement=yes\n").unwrap();
        std::fs::write(root.path().join(CONF_D).join("10-reboot.conf"), "[Auto]\nMaxStrategy=reboot\n").unwrap();
        assert_eq!(load(root.path()), p(Tier::Reboot, true, true));
        assert_eq!(load(&root.path().join("none")), Policy::default());
    }
}
