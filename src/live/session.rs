//! A command's hold on the running system: the host opened once, the
//! repository, the lock, and the live state checked against the mounts.

use crate::host::overlay::{self, UsrState};
use crate::host::{Host, Paths};
use crate::live::decide::{Command, Facts, Refusal};
use crate::live::state::{self, LiveState};
use crate::messages::warn;
use crate::repo::{Checksum, Repo};

/// The recorded state checked against what is mounted on `/usr`: a *Live*
/// state needs an overlay (livefs's own, or the ostree transient unlock it
/// wrote through); with none, its `/usr` is gone — `/run` survives a soft
/// reboot, an overlay need not — and it reads as *UsrLost*.
pub fn reconcile(recorded: LiveState, usr: &UsrState) -> LiveState {
    match (recorded, usr) {
        (LiveState::Live { commit }, UsrState::Locked) => LiveState::UsrLost { commit },
        (state, _) => state,
    }
}

/// A system opened for a command that may change it: loaded, locked, its
/// state known.
pub struct Session {
    pub host: Host,
    pub repo: Repo,
    pub state: LiveState,
    /// The `/usr` diffs this command computed.
    pub diffs: crate::live::changes::Diffs,
    /// What processes run and map, read once.
    pub processes: crate::systemd::needs_restart::Processes,
    /// The way back of the last apply, if one is kept.
    pub way_back: Option<crate::live::way_back::WayBack>,
}

impl Session {
    /// Opens the system for `command` under the lock (everything decided from
    /// is read while it is held); refuses while rpm-ostree has live-applied to
    /// this boot. A state record that does not parse stops every command but
    /// those that survive it ([`Command::survives_corrupt_state`]).
    pub fn open(paths: &Paths, command: Command, lock_wait: std::time::Duration) -> anyhow::Result<Session> {
        let host = Host::lock(paths, lock_wait)?;
        let repo = host.system.repo()?;
        if let Some(what) = rpm_ostree_live(&host, &repo) {
            return Err(Refusal::RpmOstreeLive(what).into());
        }
        let booted = host.system.booted.checksum;
        let state = match state::load(&host.run, &host.system.booted.id()) {
            Err(e) if command.survives_corrupt_state() => {
                warn(format!("{e:#}; resetting from it"));
                LiveState::Applying { from: booted, to: booted }
            }
            r => r?,
        };
        let state = reconcile(state, &host.usr);
        if let LiveState::UsrLost { .. } = state {
            overlay::forget_unlock(&host)?;
        }
        let way_back = crate::live::way_back::load(&host.run)?;
        Ok(Session { host, repo, state, diffs: Default::default(), processes: Default::default(), way_back })
    }

    pub fn booted(&self) -> Checksum {
        self.host.system.booted.checksum
    }

    /// The facts [`crate::live::decide::decide`] decides from.
    pub fn facts(&self) -> Facts {
        let system = &self.host.system;
        Facts {
            state: self.state,
            booted: self.booted(),
            pending: match (&system.pending, &system.pending_error) {
                (_, Some(e)) => Err(e.clone()),
                (p, None) => Ok(p.as_ref().map(|p| p.checksum)),
            },
            write_through: matches!(self.host.usr, UsrState::OstreeTransient { .. }),
            way_back: self.way_back.as_ref().map(|w| (w.from, w.to)),
        }
    }

    /// What the last apply did to units, to undo on its way back.
    pub fn undo_units(&self) -> std::collections::BTreeMap<String, crate::systemd::activation::Verb> {
        self.way_back.iter().flat_map(|w| &w.units).map(|u| (u.unit.clone(), u.verb)).collect()
    }

    /// Records `state` and pins what it uses.
    pub fn save(&mut self, state: LiveState) -> anyhow::Result<()> {
        state::save(&self.host.run, &self.host.system.booted.id(), state)?;
        pin(&self.repo, state);
        self.state = state;
        Ok(())
    }

    /// Removes what earlier boots and earlier switches left: stale refs and
    /// layers no mount uses (but the way back's).
    pub fn clean_stale(&self) -> anyhow::Result<()> {
        if self.state == LiveState::Booted {
            pin(&self.repo, LiveState::Booted);
        }
        let layers = crate::live::effects::layers(&self.host.run)?;
        // The way back's layer is kept: going back is one mount operation.
        let way_back = self.way_back.as_ref().and_then(|w| w.layer.clone());
        // Every process's open files are looked at only when a layer is stale.
        let devices = std::cell::OnceCell::new();
        let held = |name: &str| {
            way_back.as_deref() == Some(name)
                || layers
                    .get(name)
                    .is_some_and(|dev| devices.get_or_init(crate::systemd::needs_restart::devices_in_use).contains(dev))
        };
        let system = &self.host.system;
        overlay::remove_stale_layers(&system.sysroot, &system.deployments, held)
    }
}

/// rpm-ostree's apply-live state for this boot, if any: its stamp in
/// `/run/ostree/deployment-state/CSUM.SERIAL/`, or its refs in the repository
/// while `/usr` is an ostree transient unlock (the overlay rpm-ostree writes to;
/// after a reboot its refs are stale and ignored).
pub fn rpm_ostree_live(host: &Host, repo: &Repo) -> Option<String> {
    let dir = host.system.booted.state_dir();
    let stamp = host.paths.root.join(dir).join("rpmostree-is-live.stamp");
    if stamp.exists() {
        return Some(stamp.display().to_string());
    }
    if !matches!(host.usr, UsrState::OstreeTransient { .. }) {
        return None;
    }
    ["rpmostree/live-apply", "rpmostree/live-apply-inprogress"]
        .into_iter()
        .find(|r| repo.resolve_rev(r).is_ok())
        .map(|r| format!("ref {r} in {}", repo.path().display()))
}

/// Pins what `state` uses against pruning. A read-only repository (a sysroot
/// mounted read-only) only loses the pin, which is reported.
pub fn pin(repo: &Repo, state: LiveState) {
    if let Err(e) = state::sync_refs(repo, state) {
        warn(format!("cannot update the livefs/* refs in {}: {e:#}", repo.path().display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_state_is_checked_against_the_mounts() {
        let (a, b) = (Checksum::from_bytes(&[0xaa; 32]).unwrap(), Checksum::from_bytes(&[0xbb; 32]).unwrap());
        let ours = UsrState::Livefs { layer: format!("usr.{}.1", &b.to_hex()[..12]) };
        let unlock = UsrState::OstreeTransient { upper: None, read_only: true };
        let live = LiveState::Live { commit: b };
        let applying = LiveState::Applying { from: a, to: b };
        let cases = [
            (LiveState::Booted, UsrState::Locked, LiveState::Booted),
            (LiveState::Booted, ours.clone(), LiveState::Booted),
            (live, ours.clone(), live),
            // Written through an ostree transient unlock: the unlock's overlay holds it.
            (live, unlock.clone(), live),
            // The overlay is gone (a soft reboot, an unmount): never live.
            (live, UsrState::Locked, LiveState::UsrLost { commit: b }),
            // An interrupted transition stays interrupted: apply resumes it, reset finishes it.
            (applying, UsrState::Locked, applying),
            (applying, ours, applying),
            (applying, unlock, applying),
        ];
        for (recorded, usr, want) in cases {
            assert_eq!(reconcile(recorded, &usr), want, "{recorded:?} with /usr {usr:?}");
        }
    }
}
