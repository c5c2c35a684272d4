//! Committing a prepared transition: the steps of `state.rs`'s design list, in
//! order, each its own function. Until *Applying* is recorded nothing the state
//! depends on has changed; from then on every step is idempotent, so a rerun
//! (or a reset) finishes what a kill interrupted.

use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::Context;

use super::{Outcome, Prepared, Transition, UsrChange};
use crate::etc::EtcAction;
use crate::host::overlay;
use crate::live::changes::LD_SO_CACHE;
use crate::live::decide::EtcMode;
use crate::live::effects;
use crate::live::session::Session;
use crate::live::state::LiveState;
use crate::live::way_back::{self, WayBack};
use crate::systemd::needs_restart::{self, Processes};
use crate::systemd::triggers::{self, Action, Triggers};
use crate::tree::layer::LayerStats;
use crate::tree::plan::Plan;

/// Commits `p`: changes the running system, and says what it did.
pub fn commit(s: &mut Session, p: Prepared) -> anyhow::Result<Outcome> {
    let Prepared { t, plan, usr, changed, triggers: mut to_run, added, removed, mut outcome } = p;
    reserve_records(s, t.etc)?;
    let built = build(s, &t, &usr)?;
    record_applying(s, &t)?;
    switch_usr(s, &plan, usr, built, &mut outcome)?;
    follow_etc(s, &t, &mut outcome)?;
    let since_boot = record_effects(s, &t, &plan, &changed, &mut to_run, (&added, &removed), &outcome)?;
    finish(s, &t, &plan, &to_run, &since_boot, &mut outcome)?;
    Ok(outcome)
}

/// Room for the records in `/run`, before anything changes: an apply needs it
/// (refused on a full `/run`), the way back uses what there is.
fn reserve_records(s: &Session, etc: EtcMode) -> anyhow::Result<()> {
    match etc {
        EtcMode::Merge => s.host.run.reserve(),
        EtcMode::Restore | EtcMode::Undo => {
            let _ = s.host.run.reserve();
            crate::host::rundir::allow_way_back_reserve();
            Ok(())
        }
    }
}

/// What `/usr` switches to, made ready before anything is recorded.
enum Built {
    Nothing,
    /// A new layer, and what it holds.
    Layer(PathBuf, LayerStats),
    /// The target image's `/usr`, mounted and not attached anywhere.
    Image(std::os::fd::OwnedFd),
}

/// Builds the layer off to the side (or mounts the target image, detached),
/// before anything is recorded: a build that fails (no space, a missing
/// object, an image the kernel refuses) leaves the state as it was, and at most
/// a directory no mount uses, which the next run removes.
fn build(s: &Session, t: &Transition, usr: &UsrChange) -> anyhow::Result<Built> {
    match usr {
        UsrChange::Layer { plan, site, kept: None, .. } => {
            let target = crate::live::changes::usr_root(&s.repo, t.to)?;
            let (path, fd) = site.new_layer(&t.to.to_hex())?;
            let stats = crate::tree::layer::build(&s.repo, site.objects(), target, plan, fd.as_fd())?;
            Ok(Built::Layer(path, stats))
        }
        UsrChange::Image { image, .. } => {
            let store = s.repo.store().context("an image switch without a composefs repository")?;
            Ok(Built::Image(crate::host::image::mount_usr(store, *image, s.host.system.boot.verity)?))
        }
        _ => Ok(Built::Nothing),
    }
}

/// Records *Applying* (a rollback: *RollingBack*), pinned under ostree's
/// sysroot lock once the target is known to be complete: from here on a resume
/// and a reset have what they need. A new apply records its way back first (in
/// place of the last apply's); a reset makes the way back moot.
fn record_applying(s: &mut Session, t: &Transition) -> anyhow::Result<()> {
    let _sysroot = s.host.system.lock()?;
    s.repo.read_commit(t.to).with_context(|| format!("cannot read commit {}", t.to))?;
    let resumed = matches!(s.state, LiveState::Applying { from, to } | LiveState::RollingBack { from, to }
        if (from, to) == (t.from, t.to));
    match t.etc {
        EtcMode::Merge if t.from != t.to && !resumed => {
            let layer = match &s.host.usr {
                overlay::UsrState::Livefs { layer } => Some(layer.clone()),
                _ => None,
            };
            let way_back = WayBack {
                from: t.from,
                to: t.to,
                layer,
                at: crate::clock::now(),
                restart: t.options.restart,
                units: Vec::new(),
                confirm: None,
            };
            let last = s.way_back.replace(way_back.clone());
            crate::live::confirm::disarm(&s.host.paths.root, last.as_ref());
            way_back::begin(&s.host.run, &way_back)?;
        }
        EtcMode::Restore => {
            crate::live::confirm::disarm(&s.host.paths.root, s.way_back.take().as_ref());
            way_back::forget(&s.host.run)?;
        }
        _ => {}
    }
    // A reset from the booted state with no /etc journal has nothing to undo: it
    // writes nothing it does not have to (a full /run does not stop it).
    let nothing_to_undo = t.from == t.to && s.state == LiveState::Booted && !crate::etc::has_journal(&s.host.run)?;
    match t.etc {
        EtcMode::Undo => s.save(LiveState::RollingBack { from: t.from, to: t.to })?,
        _ if nothing_to_undo => {}
        _ => s.save(LiveState::Applying { from: t.from, to: t.to })?,
    }
    Ok(())
}

/// Switches `/usr`: to the layer built, back to the booted tree, or file by
/// file through an ostree transient unlock.
fn switch_usr(s: &mut Session, plan: &Plan, usr: UsrChange, built: Built, outcome: &mut Outcome) -> anyhow::Result<()> {
    crate::fault::stop_point("switch");
    match usr {
        UsrChange::WriteThrough { status } => {
            if !plan.ops.is_empty() {
                let view = overlay::writable_view(&s.host.paths.root)?;
                outcome.report = crate::tree::apply::execute(&s.repo, plan, &status, view.as_fd())?;
            }
        }
        UsrChange::Keep => {}
        UsrChange::Image { image, mut carried } => {
            let Built::Image(mnt) = built else { anyhow::bail!("the image was not mounted") };
            s.host.usr = crate::host::image::switch(&s.host, mnt, image, &mut carried)?;
        }
        UsrChange::Detach { mut carried } => s.host.usr = overlay::detach(&s.host, &mut carried)?,
        UsrChange::Layer { mut carried, kept, .. } => {
            // The way back's layer, kept: no new layer, nothing written.
            let (path, stats) = match (kept, built) {
                (Some(path), _) => (path, None),
                (None, Built::Layer(path, stats)) => (path, Some(stats)),
                (None, _) => anyhow::bail!("the layer was not built"),
            };
            s.host.usr = overlay::switch(&s.host, &path, &mut carried)?;
            let dev = rustix::fs::stat(s.host.paths.root.join("usr"))?.st_dev;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            effects::record_layer(&s.host.run, &name, dev)?;
            if let Some(stats) = stats {
                outcome.report.bytes_written = stats.bytes_written;
                outcome.layer = Some(stats);
            }
        }
    }
    Ok(())
}

/// `/etc` follows: the update's changes merged (apply), or the journal put back (reset).
fn follow_etc(s: &Session, t: &Transition, outcome: &mut Outcome) -> anyhow::Result<()> {
    let etc = s.host.etc()?;
    match t.etc {
        EtcMode::Merge => outcome.etc = crate::etc::merge(&s.repo, t.from, t.to, &s.host.run, etc, false)?,
        EtcMode::Restore | EtcMode::Undo => {
            let r = match t.etc {
                EtcMode::Undo => crate::etc::undo(&s.host.run, etc)?,
                _ => crate::etc::restore(&s.host.run, etc)?,
            };
            outcome.etc_restored = r.paths;
            outcome.etc.paths = r.failed;
        }
    }
    Ok(())
}

/// Records the triggers to run and what processes and units may still hold,
/// before the state says the transition is done: a kill from here on loses
/// neither. Returns this boot's records of replaced files and changed units.
fn record_effects(
    s: &Session,
    t: &Transition,
    plan: &Plan,
    changed: &[String],
    to_run: &mut Triggers,
    (added, removed): (&[String], &[String]),
    outcome: &Outcome,
) -> anyhow::Result<SinceBoot> {
    let run = &s.host.run;
    for (action, configs) in triggers::pending(run)?.iter() {
        to_run.add(action, configs.clone());
    }
    match t.etc {
        // ldconfig rewrites /etc/ld.so.cache: journaled first, so a reset puts it back.
        EtcMode::Merge if to_run.contains(Action::Ldconfig) && !t.options.no_triggers => {
            crate::etc::journal_path(run, s.host.etc()?, LD_SO_CACHE)?
        }
        // The cache restored with /etc is the one of the /usr gone back to: nothing to rebuild.
        EtcMode::Restore | EtcMode::Undo if outcome.etc_restored.iter().any(|p| p == LD_SO_CACHE) => {
            to_run.remove(Action::Ldconfig)
        }
        _ => {}
    }
    if !t.options.no_triggers {
        triggers::record_pending(run, to_run)?;
    }
    let replaced = effects::record_replaced(run, plan)?;
    let units = effects::record_unit_changes(run, changed)?;
    effects::record_unit_events(run, added, removed)?;
    Ok(SinceBoot { replaced, units })
}

/// What the transitions of this boot replaced, and the unit files they changed.
struct SinceBoot {
    replaced: std::collections::HashSet<String>,
    units: std::collections::BTreeMap<String, u64>,
}

/// Records the end state, runs the triggers, removes what is stale now, and
/// says what needs a restart (acting on it with `--restart`).
fn finish(
    s: &mut Session,
    t: &Transition,
    plan: &Plan,
    to_run: &Triggers,
    since_boot: &SinceBoot,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    // `/usr` and `/etc` are what this transition made them: what starts from
    // now on runs them.
    let switched_at = needs_restart::now_monotonic_usec();
    let done = LiveState::reached(t.to, s.booted());
    if done != s.state {
        s.save(done)?;
    }
    outcome.state = done;
    // The way back is taken: once. What the update did to units is undone below.
    let units = if t.etc == EtcMode::Undo { s.undo_units() } else { Default::default() };
    let undo = crate::systemd::activation::Undo { units, switched_at: Some(switched_at) };
    if t.etc == EtcMode::Undo {
        crate::live::confirm::disarm(&s.host.paths.root, s.way_back.take().as_ref());
        way_back::forget(&s.host.run)?;
    }
    let root = s.host.paths.root.clone();
    if !t.options.no_triggers {
        outcome.triggers = triggers::run(&root, &s.host.run, to_run)?;
    }
    // The transition is done: a failure from here on is a warning, and the
    // next run tries again. The sentinel says what only a reboot delivers now;
    // what this switch (or an earlier boot) left is stale.
    let beyond_live = if done == LiveState::Booted { Vec::new() } else { outcome.strategy.beyond_live() };
    if let Err(e) = crate::host::reboot_required::set_live(&s.host, t.to, &beyond_live) {
        crate::messages::warn(format!("cannot update /run/reboot-required: {e:#}"));
    }
    if let Err(e) = s.clean_stale() {
        crate::messages::warn(format!("cannot remove what earlier transitions left: {e:#}"));
    }
    outcome.report.mutations = crate::fault::count();
    outcome.changed = !plan.ops.is_empty()
        || outcome.layer.is_some()
        || !outcome.etc_restored.is_empty()
        || outcome
            .etc
            .paths
            .iter()
            .any(|p| matches!(p.action, EtcAction::Added | EtcAction::Updated | EtcAction::Removed))
        || outcome.triggers.iter().any(|t| !t.skipped);
    restart_units(s, t, since_boot, &undo, outcome)
}

/// What needs a restart now; with `--restart`, acted on as a boot would (going
/// back: what the update did to units undone too). An apply's way back
/// remembers what its activation did.
fn restart_units(
    s: &mut Session,
    t: &Transition,
    since_boot: &SinceBoot,
    undo: &crate::systemd::activation::Undo,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let root = s.host.paths.root.clone();
    let report = |processes: &Processes| {
        needs_restart::report(&root, processes, &since_boot.replaced, &Default::default(), &since_boot.units)
    };
    if !t.options.restart {
        outcome.restarts = report(&s.processes);
        return Ok(());
    }
    let request = t.options.activation;
    let a = if undo.units.is_empty() {
        outcome.restarts = report(&s.processes);
        effects::activate(&root, &s.host.run, &outcome.restarts, &Default::default(), request, false)?
    } else {
        let (a, restarts) = effects::activate_going_back(&root, &s.host.run, request, undo, || report(&s.processes))?;
        outcome.restarts = restarts;
        a
    };
    if let Some(wb) = s.way_back.as_mut().filter(|w| t.etc == EtcMode::Merge && w.to == t.to) {
        wb.units = a
            .actions
            .iter()
            .filter(|x| x.result.is_some() && x.user.is_none())
            .map(|x| way_back::UnitDone { unit: x.unit.clone(), verb: x.verb })
            .collect();
        way_back::save(&s.host.run, wb)?;
    }
    outcome.restart = Some(a);
    // What the activation restarted runs anew: looked at again (or by the
    // caller, after its checks).
    if !t.options.restarts_later {
        outcome.restarts = report(&Processes::default());
    }
    Ok(())
}
