//! Rendering what the engines return: one function per output type, writing
//! into any `impl Write`, so that every text output is tested from a JSON
//! fixture (deserialize, render, compare) without running anything.

use std::io::{self, Write};

use crate::etc::EtcAction;
use crate::host::overlay::UsrState;
use crate::live::auto::AutoRun;
use crate::live::state::LiveState;
use crate::live::status::{ActivationState, CommitInfo, LastActivation, Status};
use crate::live::strategy::{Strategy, Tier};
use crate::live::transition::Outcome;
use crate::live::RestartOutcome;
use crate::quote;
use crate::repo::Checksum;
use crate::systemd::activation::Activation;
use crate::systemd::needs_restart::Restarts;
use crate::tree::apply::TreeOutcome;
use crate::tree::diff::human_bytes;
use crate::tree::plan::PlannedOp;

/// Any output as pretty JSON, one document.
pub fn json(out: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Progress, as a person on stderr sees it; a long apply's counter only on a
/// terminal (`terminal`), overwriting itself.
pub fn progress(out: &mut impl Write, p: crate::messages::Progress, terminal: bool) -> io::Result<()> {
    use crate::messages::Progress;
    match p {
        Progress::WaitingForLock { seconds } => {
            writeln!(out, "livefs: waiting up to {seconds} s for another livefs to finish")
        }
        Progress::WaitingForSysrootLock => {
            writeln!(out, "livefs: waiting for the sysroot lock (another ostree process holds it)")
        }
        Progress::Operations { done, total } if terminal => {
            write!(out, "\rlivefs: {done}/{total} operations ({}%)", done * 100 / total.max(1))?;
            if done == total {
                writeln!(out)?;
            }
            Ok(())
        }
        Progress::Operations { .. } => Ok(()),
    }
}

/// Warnings, one line each (text mode writes them to stderr).
pub fn warnings(out: &mut impl Write, warnings: &[String]) -> io::Result<()> {
    warnings.iter().try_for_each(|w| writeln!(out, "livefs: warning: {w}"))
}

/// A commit as text shows it: its first 12 hex digits.
pub fn short(c: &Checksum) -> String {
    c.to_hex()[..12].to_string()
}

fn commit(c: &CommitInfo) -> String {
    let version = c.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default();
    let subject = if c.subject.is_empty() { String::new() } else { format!(" \"{}\"", c.subject) };
    let deployment = c.deployment.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
    format!("{}{version}{subject}{deployment}", short(&c.checksum))
}

/// `livefs status`.
pub fn status(out: &mut impl Write, st: &Status) -> io::Result<()> {
    writeln!(out, "Booted:      {}", commit(&st.booted))?;
    writeln!(out, "Pending:     {}", st.pending.as_ref().map(commit).unwrap_or_else(|| "none".into()))?;
    if let Some(next) = &st.next_boot_elsewhere {
        writeln!(out, "Next boot:   {} (another stateroot: not applied live)", commit(next))?;
    }
    let live = match (&st.live, &st.state) {
        (Some(l), _) => commit(l),
        (None, LiveState::Booted) => "none (/usr holds the booted commit)".into(),
        (None, LiveState::UsrLost { commit }) => format!(
            "none: the overlay of {} on /usr is gone (a soft reboot or an unmount), /usr holds the booted commit; \
             /etc still carries its changes: `livefs apply` brings it back, `livefs reset` restores /etc",
            short(commit)
        ),
        (None, _) => "none".into(),
    };
    writeln!(out, "Live:        {live}")?;
    if let Some((from, to)) = &st.in_progress {
        // Only commands that work: an interrupted reset is finished by a reset.
        let advice = if to.checksum == st.booted.checksum {
            "an interrupted reset: run `livefs reset` to finish it"
        } else {
            "interrupted: run `livefs apply` to finish it, or `livefs reset`"
        };
        writeln!(out, "In progress: {} -> {} ({advice})", short(&from.checksum), short(&to.checksum))?;
    }
    writeln!(out, "/usr:        {}", usr(&st.usr))?;
    host_facts(out, st)?;
    if let Some(l) = &st.layer {
        writeln!(
            out,
            "Layer:       {} ({} written, {} linked to the repository), {} free",
            quote::path(&l.layer.to_string_lossy()),
            human_bytes(l.bytes_written),
            human_bytes(l.bytes_linked),
            human_bytes(l.free)
        )?;
    }
    restarts(out, &st.restarts, "Needs restart")?;
    if let Some(l) = &st.activation {
        last_activation(out, l)?;
    }
    if let Some(run) = &st.auto {
        auto_run(out, run, "Last auto:  ")?;
    }
    match (&st.strategy, &st.pending) {
        (Some(s), Some(_)) => strategy(out, s, "the pending deployment")?,
        (Some(s), None) => {
            writeln!(out, "Strategy:    the next boot needs a reboot:")?;
            s.reboot_for.iter().try_for_each(|r| writeln!(out, "  reboot for {r}"))?;
        }
        (None, _) => {}
    }
    if let Some(c) = &st.changes {
        writeln!(
            out,
            "Changes:     {} added, {} changed, {} removed (booted -> live, in /usr)",
            c.added, c.changed, c.removed
        )?;
    }
    Ok(())
}

fn usr(u: &UsrState) -> String {
    match u {
        UsrState::Locked => "read-only, not unlocked".to_string(),
        UsrState::Livefs { .. } => "transient overlay (livefs), read-only".to_string(),
        UsrState::OstreeTransient { read_only, .. } => {
            format!("ostree transient unlock, {}", if *read_only { "read-only" } else { "writable" })
        }
        UsrState::Hotfix => "ostree hotfix unlock (persistent)".to_string(),
        UsrState::Other { description } => description.clone(),
    }
}

/// How the host booted, what it will soft-reboot into, rpm-ostree's live state.
fn host_facts(out: &mut impl Write, st: &Status) -> io::Result<()> {
    let b = &st.boot;
    let boot: Vec<&str> = [
        (b.composefs, "composefs"),
        (b.sysroot_ro, "read-only /sysroot"),
        (b.transient_etc.is_some(), "transient /etc (changes last until reboot)"),
        (b.root_transient, "transient /"),
    ]
    .into_iter()
    .filter_map(|(on, what)| on.then_some(what))
    .collect();
    if !boot.is_empty() {
        writeln!(out, "Boot:        {}", boot.join(", "))?;
    }
    if let Some(next) = &st.soft_reboot_into {
        writeln!(
            out,
            "Next root:   {} loaded at /run/nextroot: the next `systemctl reboot` is a soft reboot into it",
            commit(next)
        )?;
    }
    if let Some(what) = &st.rpm_ostree_live {
        writeln!(out, "rpm-ostree:  live-applied to this boot ({what}); livefs leaves /usr to it")?;
    }
    Ok(())
}

/// Which command an outcome answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Apply,
    Reset,
}

/// A dry run's plan, one operation per line.
fn plan(out: &mut impl Write, ops: &[PlannedOp]) -> io::Result<()> {
    for op in ops {
        let note = match op.status.as_str() {
            "done" => "  (already done)",
            "drifted" => "  (drifted)",
            _ => "",
        };
        writeln!(out, "{:<8} {}{note}", op.op, quote::path(&op.path))?;
    }
    Ok(())
}

/// `livefs apply` and `livefs reset`.
pub fn outcome(out: &mut impl Write, o: &Outcome, verb: Verb) -> io::Result<()> {
    if o.resumed {
        writeln!(out, "Resumed an interrupted apply.")?;
    }
    if o.dry_run {
        plan(out, &o.plan)?;
    }
    summary(out, o, verb)?;
    if verb == Verb::Apply {
        strategy(out, &o.strategy, "this update")?;
    }
    for k in &o.kept {
        writeln!(out, "Kept {} (modules of the running kernel)", quote::path(k))?;
    }
    etc(out, o)?;
    if o.etc_transient && !(o.etc.paths.is_empty() && o.etc_restored.is_empty()) {
        writeln!(out, "/etc is transient on this host (etc.transient): these changes last until reboot only")?;
    }
    for t in &o.triggers {
        let how = if o.dry_run {
            "would run".to_string()
        } else if t.skipped {
            format!("skipped ({})", t.output.trim())
        } else if t.ok {
            "ok".to_string()
        } else if t.gave_up {
            "FAILED (for the last time: not retried; run it by hand)".to_string()
        } else {
            "FAILED (will be retried by the next apply)".to_string()
        };
        match &t.configs {
            Some(c) if !c.is_empty() => {
                writeln!(out, "Trigger {} ({}): {how}", t.action, quote::join(c.iter().map(String::as_str), " "))?
            }
            _ => writeln!(out, "Trigger {}: {how}", t.action)?,
        }
        if !t.ok {
            for line in t.output.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    if let Some(a) = &o.restart {
        activation(out, a)?;
    }
    match &o.restart {
        Some(a) if a.dry_run => Ok(()),
        _ if o.dry_run => restarts(out, &o.restarts, "Would need restart"),
        _ => restarts(out, &o.restarts, "Needs restart"),
    }
}

/// What changed in `/usr`, and the layer it went to.
fn summary(out: &mut impl Write, o: &Outcome, verb: Verb) -> io::Result<()> {
    let c = &o.report.counts;
    let what = format!(
        "{} added ({} directories), {} replaced, {} removed",
        c.added_files + c.added_dirs,
        c.added_dirs,
        c.replaced_files + c.replaced_dirs,
        c.removed_files + c.removed_dirs
    );
    let (from, to) = (short(&o.from), short(&o.to));
    match verb {
        _ if o.dry_run => {
            let v = if verb == Verb::Reset { "reset" } else { "apply" };
            writeln!(out, "Would {v} {from} -> {to} in /usr: {what} (dry run: nothing changed)")?
        }
        Verb::Apply => {
            writeln!(out, "Applied {from} -> {to}: {what}; {} written.", human_bytes(o.report.bytes_written))?
        }
        Verb::Reset => writeln!(
            out,
            "Reset /usr {from} -> {to} (booted): {what}; {} written.",
            human_bytes(o.report.bytes_written)
        )?,
    }
    if let Some(l) = &o.layer {
        writeln!(
            out,
            "/usr switched to a new layer: {} file(s) linked to the repository ({}), {} copied ({}).",
            l.files_linked,
            human_bytes(l.bytes_linked),
            l.files_copied,
            human_bytes(l.bytes_written)
        )?;
    }
    Ok(())
}

fn etc(out: &mut impl Write, o: &Outcome) -> io::Result<()> {
    let list = |a: EtcAction| o.etc.with(a).map(|p| quote::path(&format!("/etc{p}")).into_owned()).collect::<Vec<_>>();
    let (added, updated, removed) = (list(EtcAction::Added), list(EtcAction::Updated), list(EtcAction::Removed));
    if !(added.is_empty() && updated.is_empty() && removed.is_empty()) {
        writeln!(out, "/etc: {} added, {} updated, {} removed", added.len(), updated.len(), removed.len())?;
    }
    for p in list(EtcAction::Kept) {
        writeln!(out, "/etc: kept {p} (changed locally; the update's version is not applied)")?;
    }
    for p in list(EtcAction::Conflict) {
        writeln!(out, "/etc: conflict at {p} (changed locally, and the update changes its type): left alone")?;
    }
    for p in o.etc.paths.iter().filter(|p| p.action == EtcAction::Failed) {
        let why = p.error.as_deref().unwrap_or("unknown error");
        writeln!(out, "/etc: FAILED at {}: {why} (left as it was)", quote::path(&format!("/etc{}", p.path)))?;
    }
    if !o.etc_restored.is_empty() {
        writeln!(out, "/etc: {} path(s) restored as they were before the first apply", o.etc_restored.len())?;
    }
    Ok(())
}

/// `livefs apply` with nothing pending.
pub fn nothing_to_do(out: &mut impl Write, reason: &str) -> io::Result<()> {
    writeln!(out, "Nothing to do: {reason}")
}

/// `livefs restart`.
pub fn restart(out: &mut impl Write, o: &RestartOutcome) -> io::Result<()> {
    activation(out, &o.restart)?;
    if !o.restart.dry_run {
        restarts(out, &o.restarts, "Needs restart")?;
    }
    Ok(())
}

fn activation(out: &mut impl Write, a: &Activation) -> io::Result<()> {
    let would = if a.dry_run { "Would " } else { "" };
    if a.daemon_reexec {
        writeln!(out, "{would}systemctl daemon-reexec (the systemd manager changed)")?;
    } else if a.daemon_reload {
        writeln!(out, "{would}systemctl daemon-reload")?;
    }
    if a.actions.is_empty() && a.skipped.is_empty() && a.left.is_empty() {
        return writeln!(out, "Restart: nothing to restart, stop or start");
    }
    for act in &a.actions {
        let verb = act.verb.as_str();
        let verb = if a.dry_run { verb.to_string() } else { format!("{}{}", &verb[..1].to_uppercase(), &verb[1..]) };
        let result = match &act.result {
            None => String::new(),
            Some(r) if r.ok => ": ok".to_string(),
            Some(_) => ": FAILED".to_string(),
        };
        let unit = of_user(&act.unit, act.user.as_deref());
        writeln!(out, "{would}{verb} {unit} ({}){result}", act.reasons.join("; "))?;
        if let Some(r) = act.result.as_ref().filter(|r| !r.ok) {
            for line in r.status.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    for s in &a.skipped {
        writeln!(out, "Left alone: {} ({})", of_user(&s.unit, s.user.as_deref()), s.reason)?;
    }
    for l in &a.left {
        let (command, pid, files) = (&l.command, l.pid, quote::join(l.files.iter().map(String::as_str), ", "));
        writeln!(
            out,
            "Not restarted: {command} (pid {pid}){} uses replaced {files}: restart it yourself",
            in_unit(&l.unit)
        )?;
    }
    Ok(())
}

fn strategy(out: &mut impl Write, s: &Strategy, what: &str) -> io::Result<()> {
    if !s.never_live.is_empty() {
        writeln!(out, "Strategy:    {what} cannot go live on this SELinux host, only a reboot delivers it:")?;
        s.never_live.iter().try_for_each(|r| writeln!(out, "  never live: {r}"))?;
        return Ok(());
    }
    match s.needs {
        Tier::Live => writeln!(out, "Strategy:    {what} can go live as it is")?,
        Tier::SoftReboot => writeln!(out, "Strategy:    {what} can go live except for what needs a soft reboot:")?,
        Tier::Reboot => writeln!(out, "Strategy:    {what} can go live except for what needs a reboot:")?,
    }
    for r in &s.reboot_for {
        writeln!(out, "  reboot for {r}")?;
    }
    for r in &s.soft_reboot_for {
        writeln!(out, "  soft reboot for {r}")?;
    }
    if !s.soft_reboot_for.is_empty() && !s.soft_reboot_capable {
        writeln!(out, "  no soft reboot on this host: {}", s.soft_reboot_blockers.join("; "))?;
    }
    if !s.replaces.is_empty() {
        writeln!(out, "  it replaces or removes {} existing path(s) in /usr", s.replaces.len())?;
    }
    let r = &s.restarts;
    let mut restarts: Vec<String> = r.units.clone();
    for (unit, procs) in &r.processes {
        restarts.extend(procs.iter().map(|p| format!("{} (pid {}){}", p.command, p.pid, in_unit(unit))));
    }
    if !restarts.is_empty() {
        writeln!(out, "  then needs a restart: {}", restarts.join(", "))?;
    }
    Ok(())
}

/// The last activation of this boot, in one line, and its failed actions.
fn last_activation(out: &mut impl Write, l: &LastActivation) -> io::Result<()> {
    let a = &l.activation;
    let (ran, total) = (a.actions.iter().filter(|x| x.result.is_some()).count(), a.actions.len());
    let failed: Vec<String> =
        a.failed().map(|f| format!("{} {}", f.verb.as_str(), of_user(&f.unit, f.user.as_deref()))).collect();
    let pid = l.pid;
    match l.state {
        ActivationState::Finished if failed.is_empty() => writeln!(out, "Activation:  finished, {ran} action(s) done")?,
        ActivationState::Finished => writeln!(
            out,
            "Activation:  finished, {ran} action(s) done, {} failed: {} (`livefs restart` retries)",
            failed.len(),
            failed.join(", ")
        )?,
        ActivationState::Running => {
            writeln!(out, "Activation:  running (livefs pid {pid}), {ran} of {total} action(s) done")?
        }
        ActivationState::Interrupted => writeln!(
            out,
            "Activation:  interrupted after {ran} of {total} action(s) (livefs pid {pid} is gone): \
             `livefs restart` finishes it"
        )?,
    }
    Ok(())
}

/// An automatic run: when, what it did with which deployment, under which
/// policy; then what it restarted, left for the reboot, and why. `label`
/// starts the first line.
pub fn auto_run(out: &mut impl Write, run: &AutoRun, label: &str) -> io::Result<()> {
    let target = run.target.as_ref().map_or("no pending deployment".to_string(), short);
    let p = &run.policy;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    writeln!(
        out,
        "{label} {} {target} at {} (MaxStrategy={}, AllowReplacement={}, Restart={}){}",
        run.ending.as_str(),
        run.at,
        p.max_strategy.as_str(),
        yes_no(p.allow_replacement),
        yes_no(p.restart),
        if run.repeated { "; decided already, nothing done now" } else { "" }
    )?;
    if !run.units.is_empty() {
        writeln!(out, "  units acted on: {}", run.units.join(" "))?;
    }
    for r in &run.left_for_reboot {
        writeln!(out, "  left for the reboot: {r}")?;
    }
    if let Some(why) = &run.reason {
        let kind = run.kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default();
        writeln!(out, "  why{kind}: {why}")?;
    }
    Ok(())
}

/// A unit of the system's manager, or of a user's.
fn of_user(unit: &str, user: Option<&str>) -> String {
    match user {
        Some(u) => format!("{unit} of user {u}"),
        None => unit.to_string(),
    }
}

/// ` in UNIT` for a process's unit, nothing when it is in none (`-`).
fn in_unit(unit: &str) -> String {
    if unit == "-" {
        String::new()
    } else {
        format!(" in {unit}")
    }
}

fn restarts(out: &mut impl Write, r: &Restarts, what: &str) -> io::Result<()> {
    for u in &r.units {
        writeln!(out, "{what}: {u} (its unit files changed)")?;
    }
    for (user, units) in &r.user_units {
        for u in units {
            writeln!(out, "{what}: {u} of user {user} (its unit files changed; --user-units restarts it)")?;
        }
    }
    for (unit, procs) in &r.processes {
        for p in procs {
            let files = quote::join(p.files.iter().map(String::as_str), ", ");
            writeln!(out, "{what}: {} (pid {}){} uses replaced {files}", p.command, p.pid, in_unit(unit))?;
        }
    }
    Ok(())
}

/// `livefs apply-tree`.
pub fn apply_tree(out: &mut impl Write, o: &TreeOutcome) -> io::Result<()> {
    if o.dry_run {
        plan(out, &o.plan)?;
        return writeln!(
            out,
            "{} operations, {} to write (dry run: nothing changed)",
            o.plan.len(),
            human_bytes(o.bytes_to_write)
        );
    }
    let c = &o.report.counts;
    let resumed = match o.report.already_done {
        0 => String::new(),
        n => format!(" ({n} operations were already done by an interrupted run)"),
    };
    writeln!(
        out,
        "{}: {} added ({} directories), {} replaced, {} removed; {} written in {:.0} ms{resumed}",
        o.target,
        c.added_files + c.added_dirs,
        c.added_dirs,
        c.replaced_files + c.replaced_dirs,
        c.removed_files + c.removed_dirs,
        human_bytes(o.report.bytes_written),
        o.elapsed_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits are always said; a long apply's counter only on a terminal, on
    /// one line that ends when the count does.
    #[test]
    fn progress_on_stderr() {
        use crate::messages::Progress;
        let shown = |events: &[Progress], terminal: bool| {
            let mut out = Vec::new();
            events.iter().for_each(|p| progress(&mut out, *p, terminal).unwrap());
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            shown(&[Progress::WaitingForLock { seconds: 60 }], false),
            "livefs: waiting up to 60 s for another livefs to finish\n"
        );
        assert!(shown(&[Progress::WaitingForSysrootLock], false).contains("another ostree process holds it"));
        let ops = [Progress::Operations { done: 500, total: 1000 }, Progress::Operations { done: 1000, total: 1000 }];
        assert_eq!(shown(&ops, false), "");
        assert_eq!(shown(&ops, true), "\rlivefs: 500/1000 operations (50%)\rlivefs: 1000/1000 operations (100%)\n");
    }

    /// A fixture: the JSON a command printed, and the text it renders to.
    struct Fixture {
        name: &'static str,
        json: &'static str,
        text: &'static str,
        render: fn(&mut Vec<u8>, &str) -> io::Result<()>,
    }

    macro_rules! fixture {
        ($name:literal, $render:expr) => {
            Fixture {
                name: $name,
                json: include_str!(concat!("fixtures/", $name, ".json")),
                text: include_str!(concat!("fixtures/", $name, ".txt")),
                render: $render,
            }
        };
    }

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).expect("a fixture that deserializes")
    }

    /// Every fixture renders to its text. `LIVEFS_BLESS=1 cargo test --lib`
    /// rewrites the texts from what the renderers print now (review the diff).
    #[test]
    fn fixtures_render_to_their_text() {
        let fixtures = [
            fixture!("status-booted", |out, j| status(out, &parse(j))),
            fixture!("status-live", |out, j| status(out, &parse(j))),
            fixture!("apply-dry", |out, j| outcome(out, &parse(j), Verb::Apply)),
            fixture!("apply", |out, j| outcome(out, &parse(j), Verb::Apply)),
            fixture!("reset-dry", |out, j| outcome(out, &parse(j), Verb::Reset)),
            fixture!("reset", |out, j| outcome(out, &parse(j), Verb::Reset)),
            fixture!("restart", |out, j| restart(out, &parse(j))),
            fixture!("auto-left", |out, j| auto_run(out, &parse(j), "Automatic run:")),
            fixture!("auto-refused", |out, j| auto_run(out, &parse(j), "Automatic run:")),
        ];
        let bless = std::env::var_os("LIVEFS_BLESS").is_some();
        let mut wrong = Vec::new();
        for f in &fixtures {
            let mut out = Vec::new();
            (f.render)(&mut out, f.json).unwrap();
            let text = String::from_utf8(out).unwrap();
            if bless {
                let path = format!("{}/src/cli/fixtures/{}.txt", env!("CARGO_MANIFEST_DIR"), f.name);
                std::fs::write(path, &text).unwrap();
            } else if text != f.text {
                wrong.push(format!("{}:\n--- want\n{}--- got\n{text}", f.name, f.text));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// The JSON of every fixture is what the engines serialize: nothing lost or
    /// added in a round trip.
    #[test]
    fn fixtures_round_trip() {
        fn same<T: serde::Serialize + serde::de::DeserializeOwned>(json: &str) {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let back = serde_json::to_value(parse::<T>(json)).unwrap();
            assert_eq!(back, value);
        }
        same::<Status>(include_str!("fixtures/status-booted.json"));
        same::<Status>(include_str!("fixtures/status-live.json"));
        same::<Outcome>(include_str!("fixtures/apply-dry.json"));
        same::<Outcome>(include_str!("fixtures/apply.json"));
        same::<Outcome>(include_str!("fixtures/reset.json"));
        same::<RestartOutcome>(include_str!("fixtures/restart.json"));
        same::<AutoRun>(include_str!("fixtures/auto-left.json"));
        same::<AutoRun>(include_str!("fixtures/auto-refused.json"));
    }
}
