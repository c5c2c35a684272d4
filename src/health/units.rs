//! The units an apply acted on, watched through a settle window: each must be
//! running when it ends, and must not have failed, been restarted by systemd,
//! or fallen into an auto-restart loop meanwhile (a server that dies 3 s after
//! its start is caught). [`judge`] is the pure rule; [`watch`] polls systemd.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::systemd::activation::{Activation, Verb};

/// What systemd says of a watched unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    pub active_state: String,
    pub sub_state: String,
    /// `Result=` (success, exit-code, signal, …).
    pub result: String,
    /// `Type=` of a service (oneshot ones end when done).
    pub kind: String,
    /// `NRestarts=`: how often systemd restarted it (services only).
    pub restarts: Option<u64>,
}

impl Props {
    const NAMES: [&'static str; 5] = ["ActiveState", "SubState", "Result", "Type", "NRestarts"];

    fn of(map: &BTreeMap<String, String>) -> Props {
        let get = |k: &str| map.get(k).cloned().unwrap_or_default();
        Props {
            active_state: get("ActiveState"),
            sub_state: get("SubState"),
            result: get("Result"),
            kind: get("Type"),
            restarts: map.get("NRestarts").and_then(|v| v.parse().ok()),
        }
    }
}

/// How a watched unit looks at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Healthy,
    /// Starting or reloading: judged again, and failed if the window ends so.
    Waiting,
    Failed(String),
}

/// The rule: `now` against the `baseline` of systemd's restarts when the
/// window opened; `at_end`: the window is over (waiting is no longer allowed).
pub fn judge(now: &Props, baseline: Option<u64>, at_end: bool) -> Seen {
    let state = format!("{} ({})", now.active_state, now.sub_state);
    if now.active_state == "failed" {
        return Seen::Failed(format!("failed (Result={})", now.result));
    }
    if now.sub_state == "auto-restart" {
        return Seen::Failed(format!("exited and is being restarted by systemd: {state}, Result={}", now.result));
    }
    if let (Some(n), Some(base)) = (now.restarts, baseline) {
        if n > base {
            return Seen::Failed(format!("systemd restarted it {} time(s) during the settle window", n - base));
        }
    }
    match now.active_state.as_str() {
        "active" => Seen::Healthy,
        "inactive" if now.kind == "oneshot" && now.result == "success" => Seen::Healthy,
        "activating" | "reloading" if !at_end => Seen::Waiting,
        "activating" | "reloading" => Seen::Failed(format!("still {state} when the settle window ended")),
        "" => Seen::Failed("unknown to systemd".into()),
        _ => Seen::Failed(format!("not running: {state}, Result={}", now.result)),
    }
}

/// One unit's health, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitCheck {
    pub unit: String,
    /// Why it is watched (what the apply did to it).
    pub because: String,
    /// `None` in a dry run.
    pub ok: Option<bool>,
    /// Its state as last seen (`active (running)`).
    pub state: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A unit to watch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub unit: String,
    pub because: String,
    /// The apply's own action on it failed: unhealthy whatever systemd says now.
    pub action_failed: Option<String>,
}

/// The units an activation acted on that must run afterwards: those it
/// started, restarted or reloaded, and the sockets (`socket_of`) of the
/// services it stopped and left to them. Units of users' managers are not
/// watched (their restarts are reported per user).
pub fn to_watch(a: &Activation, socket_of: impl Fn(&str) -> Vec<String>) -> Vec<Watched> {
    let mut out: Vec<Watched> = Vec::new();
    for act in a.actions.iter().filter(|x| x.user.is_none()) {
        let failed = act.result.as_ref().filter(|r| !r.ok).map(|r| r.status.lines().next().unwrap_or("").to_string());
        let targets = match act.verb {
            Verb::Start | Verb::Restart | Verb::Reload => vec![(act.unit.clone(), format!("{}ed", act.verb.as_str()))],
            Verb::Stop => socket_of(&act.unit)
                .into_iter()
                .map(|s| (s, format!("the socket of {}, stopped for it to start the new build", act.unit)))
                .collect(),
        };
        for (unit, because) in targets {
            if !out.iter().any(|w| w.unit == unit) {
                let action_failed = failed.clone().map(|f| format!("systemctl {} failed: {f}", act.verb.as_str()));
                out.push(Watched { unit, because, action_failed });
            }
        }
    }
    out
}

/// Asks systemd for properties of units: one map per unit, in order.
pub type Show<'a> = &'a dyn Fn(&[String], &[&str]) -> Vec<BTreeMap<String, String>>;

/// Polls the watched units every `poll` until `settle` is over, or until one
/// fails (the verdict does not wait for the rest of the window). `show` asks
/// systemd for the properties of the units, in order. A unit whose action
/// failed is failed already: one look at the others, for the report, and the
/// way back starts.
pub fn watch(units: &[Watched], settle: Duration, poll: Duration, show: Show) -> Vec<UnitCheck> {
    let names: Vec<String> = units.iter().map(|w| w.unit.clone()).collect();
    let start = Instant::now();
    let read = || show(&names, &Props::NAMES).iter().map(Props::of).collect::<Vec<_>>();
    let baseline: Vec<Option<u64>> = match units.iter().any(|w| w.action_failed.is_some()) {
        true => vec![None; units.len()],
        false => read().iter().map(|p| p.restarts).collect(),
    };
    loop {
        let at_end = start.elapsed() >= settle;
        let now = read();
        let seen: Vec<Seen> = units
            .iter()
            .zip(&now)
            .zip(&baseline)
            .map(|((w, p), base)| match &w.action_failed {
                Some(why) => Seen::Failed(why.clone()),
                None => judge(p, *base, at_end),
            })
            .collect();
        let failed = seen.iter().any(|s| matches!(s, Seen::Failed(_)));
        if failed || at_end || units.is_empty() {
            return units.iter().zip(now).zip(seen).map(|((w, p), s)| report(w, &p, s)).collect();
        }
        std::thread::sleep(poll.min(settle.saturating_sub(start.elapsed())).max(Duration::from_millis(10)));
    }
}

fn report(w: &Watched, p: &Props, seen: Seen) -> UnitCheck {
    let state =
        if p.active_state.is_empty() { "unknown".into() } else { format!("{} ({})", p.active_state, p.sub_state) };
    let (ok, reason) = match seen {
        Seen::Healthy => (true, None),
        // The window ended early, for another unit's failure: not judged.
        Seen::Waiting => (true, None),
        Seen::Failed(why) => (false, Some(why)),
    };
    UnitCheck { unit: w.unit.clone(), because: w.because.clone(), ok: Some(ok), state, reason }
}

/// The units a dry run's activation would have watched.
pub fn would_watch(units: &[Watched]) -> Vec<UnitCheck> {
    units
        .iter()
        .map(|w| UnitCheck {
            unit: w.unit.clone(),
            because: w.because.clone(),
            ok: None,
            state: String::new(),
            reason: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::activation::{ActionResult, UnitAction};

    fn props(active: &str, sub: &str, result: &str, kind: &str, restarts: Option<u64>) -> Props {
        Props { active_state: active.into(), sub_state: sub.into(), result: result.into(), kind: kind.into(), restarts }
    }

    /// What systemd says × the baseline × the window's end → the unit's health.
    #[test]
    fn a_unit_is_healthy_waiting_or_failed() {
        let failed = |s: &str| Seen::Failed(s.to_string());
        #[rustfmt::skip]
        let cases = [
            (props("active", "running", "success", "simple", Some(0)), Some(0), false, Seen::Healthy),
            (props("active", "running", "success", "simple", Some(0)), Some(0), true, Seen::Healthy),
            (props("reloading", "reload", "success", "notify", Some(0)), Some(0), false, Seen::Waiting),
            (props("activating", "start", "success", "notify", Some(0)), Some(0), false, Seen::Waiting),
            (props("activating", "start", "success", "notify", Some(0)), Some(0), true,
             failed("still activating (start) when the settle window ended")),
            // Died and restarted by systemd (Restart=on-failure): caught in its pause, or by the count.
            (props("activating", "auto-restart", "exit-code", "simple", Some(1)), Some(0), false,
             failed("exited and is being restarted by systemd: activating (auto-restart), Result=exit-code")),
            (props("active", "running", "success", "simple", Some(2)), Some(0), false,
             failed("systemd restarted it 2 time(s) during the settle window")),
            (props("failed", "failed", "exit-code", "simple", Some(0)), Some(0), false, failed("failed (Result=exit-code)")),
            (props("inactive", "dead", "success", "simple", None), None, false,
             failed("not running: inactive (dead), Result=success")),
            // A oneshot that finished is done, not dead.
            (props("inactive", "dead", "success", "oneshot", Some(0)), Some(0), true, Seen::Healthy),
            (props("", "", "", "", None), None, true, failed("unknown to systemd")),
            // Restarts counted from the window's start only.
            (props("active", "running", "success", "simple", Some(5)), Some(5), true, Seen::Healthy),
        ];
        for (p, base, at_end, want) in cases {
            assert_eq!(judge(&p, base, at_end), want, "{p:?} baseline {base:?} at_end {at_end}");
        }
    }

    #[test]
    fn what_an_activation_leaves_to_watch() {
        let act = |unit: &str, verb, ok: Option<bool>| UnitAction {
            unit: unit.into(),
            user: None,
            verb,
            reasons: vec![],
            result: ok
                .map(|ok| ActionResult { ok, status: if ok { String::new() } else { "Job failed.\nmore".into() } }),
        };
        let a = Activation {
            actions: vec![
                act("web.service", Verb::Stop, Some(true)),
                act("gone.service", Verb::Stop, Some(true)),
                act("app.service", Verb::Restart, Some(false)),
                act("cfg.service", Verb::Reload, Some(true)),
                act("new.service", Verb::Start, Some(true)),
                UnitAction { user: Some("alice".into()), ..act("u.service", Verb::Restart, Some(true)) },
            ],
            ..Activation::default()
        };
        let socket_of = |u: &str| if u == "web.service" { vec!["web.socket".to_string()] } else { vec![] };
        let got: Vec<(String, Option<String>)> =
            to_watch(&a, socket_of).into_iter().map(|w| (w.unit, w.action_failed)).collect();
        assert_eq!(
            got,
            [
                ("web.socket".to_string(), None),
                ("app.service".to_string(), Some("systemctl restart failed: Job failed.".to_string())),
                ("cfg.service".to_string(), None),
                ("new.service".to_string(), None),
            ]
        );
    }

    /// The window: a unit that dies after a while is caught, and the watch ends
    /// as soon as it is; a healthy one is watched to the end.
    #[test]
    fn the_watch_ends_at_the_first_failure_or_the_window() {
        use std::cell::Cell;
        let w = |unit: &str| Watched { unit: unit.into(), because: "restarted".into(), action_failed: None };
        let calls = Cell::new(0);
        let show = |units: &[String], _: &[&str]| {
            calls.set(calls.get() + 1);
            let state = if calls.get() >= 4 { "failed" } else { "active" };
            units
                .iter()
                .map(|_| {
                    [("ActiveState", state), ("SubState", "x"), ("Result", "exit-code"), ("NRestarts", "0")]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect()
        };
        let start = Instant::now();
        let got = watch(&[w("a.service")], Duration::from_secs(30), Duration::from_millis(10), &show);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(got[0].ok, Some(false), "{got:?}");
        assert_eq!(got[0].reason.as_deref(), Some("failed (Result=exit-code)"));
        calls.set(-1000);
        let start = Instant::now();
        let got = watch(&[w("a.service")], Duration::from_millis(200), Duration::from_millis(20), &show);
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(got[0].ok, Some(true), "{got:?}");
        assert_eq!(got[0].state, "active (x)");
    }

    /// A unit whose restart failed is not waited for: systemd is asked once
    /// (the state of each unit, for the report), and the verdict is in.
    #[test]
    fn a_failed_action_is_judged_at_one_look() {
        use std::cell::Cell;
        let calls = Cell::new(0);
        let show = |units: &[String], _: &[&str]| {
            calls.set(calls.get() + 1);
            let props = [("ActiveState", "activating"), ("SubState", "auto-restart"), ("NRestarts", "1")];
            units.iter().map(|_| props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect()
        };
        let failed = Watched {
            unit: "web.service".into(),
            because: "restarted".into(),
            action_failed: Some("systemctl restart failed: Job failed".into()),
        };
        let other = Watched { unit: "db.service".into(), because: "restarted".into(), action_failed: None };
        let got = watch(&[failed, other], Duration::from_secs(30), Duration::from_millis(10), &show);
        assert_eq!(calls.get(), 1);
        let seen: Vec<_> = got.iter().map(|c| (c.unit.as_str(), c.ok, c.reason.as_deref())).collect();
        assert_eq!(
            seen,
            [
                ("web.service", Some(false), Some("systemctl restart failed: Job failed")),
                (
                    "db.service",
                    Some(false),
                    Some("exited and is being restarted by systemd: activating (auto-restart), Result=")
                ),
            ]
        );
    }
}
