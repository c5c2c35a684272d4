//! What the transitions of this boot left behind, kept in `ROOT/run/livefs`:
//! files replaced (processes may still hold them), unit files changed (units
//! started before run the old definition), the layers `/usr` was switched to;
//! and what needs a restart because of them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::host::rundir::RunDir;
use crate::live::changes::{replaced_by, replacements};
use crate::live::strategy::Strategy;
use crate::systemd::activation::{self, Activation, UnitEvents};
use crate::systemd::needs_restart::{self, Processes, Restarts};
use crate::tree::plan::Plan;

const REPLACED: &str = "replaced.json";
const UNITS: &str = "units.json";
const LAYERS: &str = "layers.json";

/// Files replaced or removed in `/usr` since boot (processes may hold them).
pub fn replaced(run: &RunDir) -> anyhow::Result<HashSet<String>> {
    run.read_record(REPLACED)
}

/// Unit files changed since boot, with when they changed (systemd's monotonic
/// clock, in µs): a unit started before that runs the old definition.
pub fn unit_changes(run: &RunDir) -> anyhow::Result<BTreeMap<String, u64>> {
    run.read_record(UNITS)
}

/// The layers `/usr` was switched to in this boot, with the device of their
/// overlay: a layer switched away from is kept while a process still holds a
/// directory of that overlay.
pub fn layers(run: &RunDir) -> anyhow::Result<BTreeMap<String, u64>> {
    run.read_record(LAYERS)
}

pub fn record_layer(run: &RunDir, name: &str, dev: u64) -> anyhow::Result<()> {
    let mut layers = layers(run)?;
    layers.insert(name.to_string(), dev);
    run.write_record(LAYERS, &layers)
}

/// Adds the files this plan replaces or removes to those replaced since boot.
pub fn record_replaced(run: &RunDir, plan: &Plan) -> anyhow::Result<HashSet<String>> {
    let mut set = replaced(run)?;
    let before = set.len();
    set.extend(replaced_by(plan));
    // Written only when it grows: a transition with nothing to record writes nothing.
    if set.len() != before {
        run.write_record(REPLACED, &set)?;
    }
    Ok(set)
}

/// Adds the unit files among `changed` to those changed since boot, stamped now.
pub fn record_unit_changes(run: &RunDir, changed: &[String]) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut units = unit_changes(run)?;
    let changed_units = needs_restart::changed_units(changed.iter().map(String::as_str));
    if !changed_units.is_empty() {
        let now = needs_restart::now_monotonic_usec();
        for u in changed_units {
            units.insert(u, now);
        }
        run.write_record(UNITS, &units)?;
    }
    Ok(units)
}

/// Adds the wants links added and the unit files removed to this boot's unit events.
pub fn record_unit_events(run: &RunDir, added: &[String], removed: &[String]) -> anyhow::Result<()> {
    let mut events = activation::load_events(run)?;
    let before = events.clone();
    activation::record(&mut events, added, removed);
    if events != before {
        activation::save_events(run, &events)?;
    }
    Ok(())
}

/// What needs a restart now, from this boot's records.
pub fn restarts_now(root: &Path, processes: &Processes, run: &RunDir) -> anyhow::Result<Restarts> {
    Ok(needs_restart::report(root, processes, &replaced(run)?, &Default::default(), &unit_changes(run)?))
}

/// What would need a restart once paths `changed` (absolute) are, `pending`
/// among them replaced or removed: because of that change alone, or (with
/// `since_boot`) together with what earlier transitions of this boot left.
pub fn would_restart(
    root: &Path,
    processes: &Processes,
    since_boot: Option<&RunDir>,
    pending: &HashSet<String>,
    changed: &[String],
) -> anyhow::Result<Restarts> {
    let (mut units, replaced) = match since_boot {
        Some(run) => (unit_changes(run)?, replaced(run)?),
        None => Default::default(),
    };
    let now = needs_restart::now_monotonic_usec();
    units.extend(needs_restart::changed_units(changed.iter().map(String::as_str)).into_iter().map(|u| (u, now)));
    Ok(needs_restart::report(root, processes, &replaced, pending, &units))
}

/// Adds to a strategy what the update costs the running system: the `/usr`
/// paths it replaces or removes ([`replacements`] of its plan) and what it
/// alone would need restarted once all of `changed` (absolute) are.
pub fn add_costs(
    s: &mut Strategy,
    root: &Path,
    processes: &Processes,
    plan: &Plan,
    changed: &[String],
) -> anyhow::Result<()> {
    s.replaces = replacements(plan);
    s.replaces.sort();
    s.restarts = would_restart(root, processes, None, &replaced_by(plan), changed)?;
    Ok(())
}

/// Acts on units as a boot would (see `activation`) for `restarts` and the unit
/// events of this boot (plus `new_events`, this transition's in a dry run);
/// keeps its progress for `livefs status` and remembers what failed for the
/// next `livefs restart`.
pub fn activate(
    root: &Path,
    run: &RunDir,
    restarts: &Restarts,
    new_events: &UnitEvents,
    request: activation::Request,
    dry_run: bool,
) -> anyhow::Result<Activation> {
    activate_undoing(root, run, restarts, new_events, request, &Default::default(), dry_run)
}

/// [`activate`], going back from an update that did `undo` to units (see
/// `activation::judge`).
pub fn activate_undoing(
    root: &Path,
    run: &RunDir,
    restarts: &Restarts,
    new_events: &UnitEvents,
    request: activation::Request,
    undo: &activation::Undo,
    dry_run: bool,
) -> anyhow::Result<Activation> {
    let events = activation::load_events(run)?;
    let input = activation::Input { restarts, events: &events, new_events, request, undo };
    let mut a = activation::schedule(root, &input);
    a.dry_run = dry_run;
    if dry_run {
        return Ok(a);
    }
    run_recorded(run, events, &Activation::default(), a)
}

/// The way back's activation (not a dry run): the units the update acted on
/// are undone first, judged on their own facts alone (one look at them), so
/// that what the update took down runs the previous build again as soon as
/// `/usr` is back; only then is what else needs acting on looked for
/// (`restarts`) and acted on, but for the units done already. Returns the
/// activation and what needed a restart before its second part.
pub fn activate_going_back(
    root: &Path,
    run: &RunDir,
    request: activation::Request,
    undo: &activation::Undo,
    restarts: impl FnOnce() -> Restarts,
) -> anyhow::Result<(Activation, Restarts)> {
    let none = UnitEvents::default();
    let input = activation::Input { restarts: &Restarts::default(), events: &none, new_events: &none, request, undo };
    let first = activation::schedule(root, &input);
    let first = run_recorded(run, activation::load_events(run)?, &Activation::default(), first)?;
    let restarts = restarts();
    let events = activation::load_events(run)?;
    let no_undo = activation::Undo::default();
    let input = activation::Input { restarts: &restarts, events: &events, new_events: &none, request, undo: &no_undo };
    let mut rest = activation::schedule(root, &input);
    let done = |unit: &str, user: &Option<String>| {
        first.actions.iter().any(|a| a.unit == unit && a.user == *user)
            || first.skipped.iter().any(|s| s.unit == unit && s.user == *user)
    };
    rest.actions.retain(|a| !done(&a.unit, &a.user));
    rest.skipped.retain(|s| !done(&s.unit, &s.user));
    Ok((run_recorded(run, events, &first, rest)?, restarts))
}

/// Runs activation `a` after what `before` did (both kept as one in the
/// progress record, for `livefs status`), and remembers in `events` what failed
/// for the next `livefs restart`. Returns both as one.
fn run_recorded(
    run: &RunDir,
    mut events: UnitEvents,
    before: &Activation,
    mut a: Activation,
) -> anyhow::Result<Activation> {
    let pid = std::process::id();
    let mut unsaved = None;
    activation::execute(&mut a, &mut |a| {
        let progress = activation::Progress { pid, finished: false, activation: before.then(a) };
        if let Err(e) = activation::save_progress(run, &progress) {
            unsaved.get_or_insert(e);
        }
    });
    let all = before.then(&a);
    let done = activation::Progress { pid, finished: true, activation: all.clone() };
    let saved = match unsaved {
        Some(e) => Err(e),
        None => activation::save_progress(run, &done),
    };
    if let Err(e) = saved {
        crate::messages::warn(format!("cannot keep the activation's progress: {e:#}"));
    }
    activation::remember(&mut events, &a);
    activation::save_events(run, &events)?;
    Ok(all)
}
