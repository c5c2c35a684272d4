//! Preparing a transition: every check and decision, reading only. A refusal
//! here changes nothing.

use std::os::fd::AsFd;

use super::{Outcome, Prepared, Transition, UsrChange};
use crate::host::overlay::{self, LayerSite, UsrState};
use crate::host::submounts::{Submounts, Uncarriable};
use crate::live::changes::{self, UsrPlan};
use crate::live::decide::{self, EtcMode, Limits};
use crate::live::session::Session;
use crate::live::state::LiveState;
use crate::live::strategy::Strategy;
use crate::repo::Checksum;
use crate::systemd::triggers::{Action, Triggers};
use crate::tree::apply::ApplyReport;
use crate::tree::plan::{self, Status};

/// Checks and plans `t` on the system `s`: the `/usr` plan under the
/// replacement policy, how `/usr` changes (and, for a layer, its space), the
/// `/etc` merge (a dry run of it), the triggers, and what the update costs.
pub fn prepare(s: &Session, t: Transition) -> anyhow::Result<Prepared> {
    let UsrPlan { plan, kept } = changes::plan_usr(&s.repo, &s.diffs, t.from, t.to)?;
    let root = &s.host.paths.root;
    let reexec = t.options.restart
        && (t.options.activation.daemon_reexec || crate::systemd::restart_policy::load(root).daemon_reexec);
    let mut strategy = match t.etc {
        EtcMode::Merge => changes::strategy_of(&s.repo, &s.diffs, &s.host.system, t.to, reexec)?,
        EtcMode::Restore | EtcMode::Undo => Strategy::back(),
    };
    // The way back (a reset, a rollback, or an apply finishing one) is never refused by policy.
    if t.etc == EtcMode::Merge {
        let limits = Limits { allow_replacement: t.allow_replacement, max_strategy: t.max_strategy };
        decide::within_limits(&strategy, changes::replacements(&plan), limits)?;
    }
    if t.options.restart {
        crate::systemd::activation::check(root)?;
    }
    overlay::check_usable(&s.host.usr)?;
    let usr = usr_change(s, &t, &plan)?;
    let etc = match t.etc {
        EtcMode::Merge => crate::etc::merge(&s.repo, t.from, t.to, &s.host.run, s.host.etc()?, true)?,
        EtcMode::Restore | EtcMode::Undo => crate::etc::EtcReport::default(),
    };
    let status = match &usr {
        UsrChange::WriteThrough { status } => status.clone(),
        _ => vec![Status::Todo; plan.ops.len()],
    };
    let changed = changes::changed_paths(&plan, &etc);
    if t.etc == EtcMode::Merge {
        crate::live::effects::add_costs(&mut strategy, root, &s.processes, &plan, &changed)?;
    }
    let (added, removed) = changes::added_and_removed(&plan, &etc);
    let outcome = Outcome {
        from: t.from,
        to: t.to,
        dry_run: t.options.dry_run,
        state: s.state,
        resumed: false,
        report: ApplyReport::of_plan(&s.repo, &plan, &status)?,
        layer: None,
        kept,
        etc,
        // What a rollback would put back (a dry run's answer; the real one says what it did).
        etc_restored: match t.etc {
            EtcMode::Undo if t.options.dry_run => crate::etc::undo_paths(&s.host.run)?,
            _ => Vec::new(),
        },
        etc_transient: s.host.system.boot.transient_etc.is_some(),
        triggers: Vec::new(),
        restarts: Default::default(),
        changed: false,
        strategy,
        restart: None,
        plan: if t.options.dry_run { plan.listing(&status) } else { Vec::new() },
        warnings: Vec::new(),
    };
    let mut triggers = Triggers::for_paths(changed.iter().map(String::as_str));
    if changes::brings_loader_cache(&outcome.etc) {
        triggers.remove(Action::Ldconfig);
    }
    Ok(Prepared { t, plan, usr, changed, triggers, added, removed, outcome })
}

/// How `/usr` goes to `t.to`, checked: over an ostree transient unlock the
/// plan's preflight against the live tree; for a new layer, the space it needs;
/// and the mounts below `/usr` that must be carried across.
fn usr_change(s: &Session, t: &Transition, plan: &plan::Plan) -> anyhow::Result<UsrChange> {
    let booted = s.booted();
    Ok(match s.host.usr {
        UsrState::OstreeTransient { .. } => {
            let usr_fd = crate::dirfd::open_dir_path(&s.host.paths.root.join("usr"))?;
            let status = plan::preflight_at(&s.repo, plan, usr_fd.as_fd(), usr_fd.as_fd(), "/usr", false)?;
            UsrChange::WriteThrough { status }
        }
        _ if t.to == booted => UsrChange::Detach { carried: carried_to(s, t.to)? },
        // Already showing the target (an apply run again): nothing to switch.
        ref usr if usr.is_livefs() && t.from == t.to && s.state == (LiveState::Live { commit: t.to }) => {
            UsrChange::Keep
        }
        _ if s.repo.store().is_some() => UsrChange::Image { image: t.to, carried: carried_to(s, t.to)? },
        _ => {
            // The layer always goes booted → target; from the booted commit that
            // is the plan checked above (the policy only refuses, never filters).
            let layer_plan =
                if t.from == booted { plan.clone() } else { changes::plan_usr(&s.repo, &s.diffs, booted, t.to)?.plan };
            let system = &s.host.system;
            let site = LayerSite::open(&system.sysroot, &system.booted, &s.repo)?;
            let kept = kept_layer(s, t, &site);
            if kept.is_none() {
                let footprint = changes::layer_footprint(&layer_plan, site.links());
                plan::check_footprint(footprint, site.filesystem(), &system.sysroot.display().to_string())?;
            }
            UsrChange::Layer { plan: layer_plan, site, carried: carried_to(s, t.to)?, kept }
        }
    })
}

/// The way back's layer, when `t` takes it and it is still on disk: going back
/// is then one mount operation, nothing built.
fn kept_layer(s: &Session, t: &Transition, site: &LayerSite) -> Option<std::path::PathBuf> {
    let way_back = s.way_back.as_ref().filter(|w| t.etc == EtcMode::Undo && w.from == t.to)?;
    let path = site.layer_path(way_back.layer.as_deref()?)?;
    std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()).then_some(path)
}

/// The mounts below `/usr`, cloned to be carried into `to`'s tree; refused
/// (before anything changes) when `to` has no entry of the kind to mount on.
fn carried_to(s: &Session, to: Checksum) -> anyhow::Result<Submounts> {
    let carried = Submounts::collect(&s.host.paths.root.join("usr"))?;
    let usr = changes::usr_root(&s.repo, to)?;
    for rel in carried.paths() {
        if !changes::has_path(&s.repo, usr, rel)? {
            let why = format!("{} has no /usr/{rel}", &to.to_hex()[..12]);
            return Err(Uncarriable { path: format!("/usr/{rel}"), why }.into());
        }
    }
    Ok(carried)
}
