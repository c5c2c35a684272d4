//! `livefs status`, and the automatic run it shows.

use std::io::{self, Write};

use super::transition::{restarts, strategy};
use super::{commit, of_user, short};
use crate::host::booted::Backend;
use crate::host::overlay::UsrState;
use crate::live::auto::AutoRun;
use crate::live::state::LiveState;
use crate::live::status::{ActivationState, LastActivation, Status};
use crate::quote;
use crate::tree::diff::human_bytes;

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
        let advice = if let LiveState::RollingBack { .. } = st.state {
            "an interrupted rollback: run `livefs rollback` (or `livefs apply`) to finish it, or `livefs reset`"
        } else if to.checksum == st.booted.checksum {
            "an interrupted reset: run `livefs reset` to finish it"
        } else {
            "interrupted: run `livefs apply` to finish it, or `livefs reset`"
        };
        writeln!(out, "In progress: {} -> {} ({advice})", short(&from.checksum), short(&to.checksum))?;
    }
    way_back(out, st)?;
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
        (None, Some(_)) if st.unreadable.contains_key("strategy") => {
            writeln!(out, "Strategy:    cannot judge the pending deployment: {}", st.unreadable["strategy"])?
        }
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
    for (item, why) in st.unreadable.iter().filter(|(item, _)| item.as_str() != "strategy") {
        writeln!(out, "Unreadable:  {item}: {why}")?;
    }
    Ok(())
}

/// The way back of the last apply, the confirmation it awaits, the last rollback.
fn way_back(out: &mut impl Write, st: &Status) -> io::Result<()> {
    if let Some(w) = &st.way_back {
        let kept = if w.layer.is_some() { " (its layer is kept: one mount operation)" } else { "" };
        writeln!(out, "Way back:    `livefs rollback` returns {} -> {}{kept}", short(&w.applied), commit(&w.to))?;
        if let Some(c) = &w.confirm {
            writeln!(
                out,
                "Confirm:     by {} (`livefs confirm`), else {} rolls {} back",
                c.deadline,
                c.timer,
                short(&w.applied)
            )?;
        }
    }
    if let Some(r) = &st.last_rollback {
        writeln!(
            out,
            "Rolled back: {} -> {} at {} by {} in {:.2} s: {}",
            short(&r.from),
            short(&r.to),
            r.at,
            r.command,
            r.seconds,
            r.reason
        )?;
    }
    Ok(())
}

fn usr(u: &UsrState) -> String {
    match u {
        UsrState::Locked => "read-only, not unlocked".to_string(),
        UsrState::Livefs { .. } => "transient overlay (livefs), read-only".to_string(),
        UsrState::LivefsImage { image } => {
            format!("composefs image {} mounted by livefs, read-only", &image.to_hex()[..12])
        }
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
    let native = b.backend == Backend::Composefs;
    let boot: Vec<&str> = [
        (native && b.verity, "bootc's native composefs backend (fs-verity enforced)"),
        (native && !b.verity, "bootc's native composefs backend (fs-verity not enforced)"),
        (b.composefs && !native, "composefs"),
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
