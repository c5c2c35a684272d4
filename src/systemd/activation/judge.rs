//! The activation the facts call for (pure): what is stopped, reloaded,
//! restarted and started, and what is left alone, and why.

use std::collections::BTreeSet;

use super::facts::{Facts, UnitFacts};
use super::{Activation, Skipped, UnitAction, Verb};
use crate::systemd::restart_policy;

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
    let undone = judge.undo(&mut verdicts);
    verdicts.extend(undone);
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

    /// Going back from an update: what it did to units, done the other way —
    /// restarted (or reloaded) again so that they run the previous build,
    /// stopped if it started them, started again if it stopped them (a
    /// socket-activated service is left to its socket). A unit another verdict
    /// acts on already gets the reason added; a unit's failed state is cleared
    /// before it is acted on (see `execute`). A service systemd started again
    /// after `/usr` was switched back (its `Restart=` after the new build
    /// failed) runs the previous build already: restarting it again would
    /// only take it down once more.
    fn undo(&self, verdicts: &mut [Verdict]) -> Vec<Verdict> {
        let mut out = Vec::new();
        for (name, did) in &self.f.undo.units {
            let since_switch = |t: u64| self.f.undo.switched_at.is_some_and(|at| t > at);
            if *did == Verb::Restart && self.unit(name).running_since.is_some_and(since_switch) {
                let judged = verdicts.iter().any(|v| match v {
                    Ok(a) => a.unit == *name && a.user.is_none(),
                    Err(s) => s.unit == *name && s.user.is_none(),
                });
                if !judged {
                    out.push(
                        self.skip(name, "systemd started it again after the switch back: it runs the previous build"),
                    );
                }
                continue;
            }
            let (verb, why) = match did {
                Verb::Restart => (Verb::Restart, "the update rolled back restarted it: back to the previous build"),
                Verb::Reload => (Verb::Reload, "the update rolled back reloaded it: reloaded again"),
                Verb::Start => (Verb::Stop, "the update rolled back started it"),
                Verb::Stop => (Verb::Start, "the update rolled back stopped it"),
            };
            let facts = self.unit(name);
            let by_socket = facts.triggered_by.iter().any(|t| t.ends_with(".socket") && self.unit(t).active);
            if (verb == Verb::Start && (by_socket || facts.active)) || (verb == Verb::Reload && !facts.active) {
                continue;
            }
            let existing = verdicts.iter_mut().find_map(|v| match v {
                Ok(a) if a.unit == *name && a.user.is_none() => Some(Some(a)),
                Err(s) if s.unit == *name && s.user.is_none() => Some(None),
                _ => None,
            });
            match existing {
                Some(Some(action)) => action.reasons.push(why.to_string()),
                Some(None) => {}
                None => out.push(self.act(name, verb, vec![why.to_string()])),
            }
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::activation::{Request, Undo};
    use std::collections::BTreeMap;

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

    /// Going back: what the rolled-back update did to each unit, done the
    /// other way, once per unit, within the same rules.
    #[test]
    fn the_way_back_undoes_what_the_update_did_to_units() {
        let active = UnitFacts { active: true, ..UnitFacts::default() };
        let failed = UnitFacts::default();
        let units = BTreeMap::from([
            ("web.service".to_string(), failed.clone()),
            ("app.service".to_string(), active.clone()),
            ("cfg.service".to_string(), active.clone()),
            ("new.service".to_string(), active.clone()),
            ("gone.service".to_string(), failed.clone()),
            ("sock.service".to_string(), UnitFacts { triggered_by: vec!["sock.socket".into()], ..failed.clone() }),
            ("sock.socket".to_string(), active.clone()),
            ("ssh.service".to_string(), active.clone()),
            // Started by systemd (its Restart=) before and after /usr was switched back at 1000.
            ("old.service".to_string(), UnitFacts { running_since: Some(999), ..active.clone() }),
            ("back.service".to_string(), UnitFacts { running_since: Some(1001), ..active.clone() }),
            ("both.service".to_string(), UnitFacts { running_since: Some(1001), ..active.clone() }),
            ("rel.service".to_string(), UnitFacts { running_since: Some(1001), ..active.clone() }),
        ]);
        let units_done = BTreeMap::from([
            // The failing new build of web.service: restarted on the previous one.
            ("web.service".to_string(), Verb::Restart),
            ("app.service".to_string(), Verb::Restart),
            ("cfg.service".to_string(), Verb::Reload),
            ("new.service".to_string(), Verb::Start),
            ("gone.service".to_string(), Verb::Stop),
            ("sock.service".to_string(), Verb::Stop),
            ("ssh.service".to_string(), Verb::Restart),
            ("old.service".to_string(), Verb::Restart),
            // Runs the previous build already: not taken down again.
            ("back.service".to_string(), Verb::Restart),
            ("both.service".to_string(), Verb::Restart),
            ("rel.service".to_string(), Verb::Reload),
        ]);
        // app.service also runs replaced files: one action, both reasons; so
        // does both.service, whose unit changed since it started.
        let restart = BTreeMap::from([
            ("app.service".to_string(), vec!["its unit files changed".to_string()]),
            ("both.service".to_string(), vec!["its unit files changed".to_string()]),
        ]);
        let undo = Undo { units: units_done, switched_at: Some(1000) };
        let facts = Facts { units, undo, restart, ..Facts::default() };
        let a = decide(facts.clone());
        let actions: Vec<(Verb, &str)> = a.actions.iter().map(|x| (x.verb, x.unit.as_str())).collect();
        assert_eq!(
            actions,
            [
                (Verb::Stop, "new.service"),
                (Verb::Reload, "cfg.service"),
                (Verb::Reload, "rel.service"),
                (Verb::Restart, "app.service"),
                (Verb::Restart, "both.service"),
                (Verb::Restart, "old.service"),
                (Verb::Restart, "web.service"),
                (Verb::Start, "gone.service"),
            ]
        );
        let app = a.actions.iter().find(|x| x.unit == "app.service").unwrap();
        assert_eq!(app.reasons.len(), 2, "{:?}", app.reasons);
        let back = a.skipped.iter().find(|s| s.unit == "back.service").unwrap();
        assert_eq!(back.reason, "systemd started it again after the switch back: it runs the previous build");
        // Not switched back (a dry run): what runs is judged as the update left it.
        let mut dry = facts;
        dry.undo.switched_at = None;
        assert!(decide(dry).actions.iter().any(|x| x.unit == "back.service" && x.verb == Verb::Restart));
        // The left-alone list holds on the way back too.
        assert!(a.skipped.iter().any(|s| s.unit == "ssh.service"), "{:?}", a.skipped);
    }
}
