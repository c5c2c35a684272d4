//! The live state of a running system, kept in `ROOT/run/livefs/` so that a
//! reboot (which throws the overlay away) also forgets it.
//!
//! ```text
//!            apply B                 done
//!   Booted ───────────▶ Applying{A→B} ──────▶ Live{B}
//!     ▲  ▲                  │  ▲                 │
//!     │  │ reset done       │  │ apply again     │ apply C: Applying{B→C}
//!     │  └──────────────────┘  └─ (interrupted:  │ reset:   Applying{B→booted}
//!     │                           resumed)       │ rollback (or failed checks
//!     │                                          │ after apply C, from Live{C}):
//!     │                                          │ RollingBack{C→B} ──▶ Live{B}
//!     └──────────────── reset done ◀─────────────┘
//! ```
//!
//! *Booted*: `/usr` holds the booted commit. *Applying{from, to}*: an apply is in
//! progress — found at start, it was interrupted. *RollingBack{from, to}*: the
//! way back of the last apply (from its commit `from` to what `/usr` showed before
//! it, `to`) is in progress — found at start, it was interrupted. *Live{commit}*: `/usr` holds
//! `commit` — checked against what is mounted on `/usr` whenever it is read:
//! `/run` survives a soft reboot, the overlay may not, and a *Live* state whose
//! overlay is gone reads as *UsrLost{commit}* (see `session::reconcile`). The
//! state file also names the booted deployment, so a state written for another
//! boot is recognised as stale (and means *Booted*).
//!
//! # Design: every state has a way out
//!
//! What a transition does, in order, and where it can fail or be killed (each
//! step a function of `transition/`, named here in brackets):
//!
//! 1. Checks (plan, policy, space, the `/etc` dry run): read only (`prepare`).
//!    A failure leaves the state as it was.
//! 2. Room for the records is reserved in `/run` (`reserve_records`), and the
//!    layer is built off to the side (`build_layer`): a failure leaves the state
//!    as it was, and at most an unused directory that the next run removes.
//! 3. An apply records its way back first (`way_back.rs`: where `/usr` was, the
//!    layer that showed it, kept; its `/etc` journal, empty), in place of the last
//!    apply's. Then *Applying{from, to}* (a rollback: *RollingBack*) is written,
//!    and the refs `livefs/live` (= from) and `livefs/inprogress` (= to) pin both
//!    commits, so `ostree prune` or an undeploy cannot take the objects a resume
//!    or a reset needs (`record_applying`).
//! 4. `/usr` switches in one mount operation (see `host/overlay.rs`): before it
//!    `/usr` shows `from`, after it `to`, never a mix (`switch_usr`).
//! 5. `/etc` is merged path by path, each change journaled first (in the boot's
//!    `etc-journal/` and the apply's own `etc-undo/`); a path that cannot be
//!    changed is reported and left as it was (contained, never aborting the
//!    rest); a rollback puts `etc-undo/` back instead, then forgets it (`follow_etc`).
//! 6. Pending triggers, replaced files and changed units are recorded (`record_effects`).
//! 7. *Live{to}* (or *Booted*) is written (a rollback's way back is forgotten:
//!    taken once); the triggers run (a failed one stays pending, tried at most 3
//!    times); stale refs and layers are removed, but the way back's (`finish`).
//!
//! Ways out, from each state found at start:
//! - *Booted*, *Live*: any apply or reset.
//! - *Applying{from, to}*: `livefs apply` (without `--target`) resumes `to`, even
//!   if the pending deployment was undeployed since (its objects are pinned);
//!   rebuilding the layer and re-merging `/etc` are idempotent (journaled paths
//!   are not journaled twice; paths already as the target has them are skipped).
//!   `livefs reset` needs neither `to` nor the merge to succeed: it detaches the
//!   overlay (only the booted deployment is needed) and restores `/etc` from the
//!   journal alone; a path it cannot put back stays in the journal for the next
//!   reset, and the state still becomes *Booted*. Only over an ostree transient
//!   unlock (written file by file) does a reset finish the interrupted apply
//!   first.
//! - *RollingBack{from, to}*: `livefs rollback`, and `livefs apply` (without
//!   `--target`, or with `to`), finish it: switching `/usr` to the kept layer (or
//!   the booted `/usr`) and putting `etc-undo/` back are idempotent, and the
//!   journal goes last. `livefs reset` goes back to booted from it as from an
//!   interrupted apply.
//! - A state file that does not parse makes `apply` refuse and say so; `reset`
//!   goes back from it as from an interrupted apply. One of another boot is
//!   ignored.
//!
//! Every record is written atomically (see `host::rundir`) and counts as a crash
//! point for the fault-injection sweeps. Which step each state × command takes
//! is decided in `live::decide`.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::host::rundir::RunDir;
use crate::repo::{Checksum, Repo};

/// What `/usr` holds, as far as livefs is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LiveState {
    /// Nothing applied: `/usr` holds the booted commit.
    Booted,
    /// An apply from `from` to `to` started and has not finished.
    Applying { from: Checksum, to: Checksum },
    /// `/usr` holds `commit`.
    Live { commit: Checksum },
    /// A rollback from `from` back to `to` (what `/usr` showed before the last
    /// apply) started and has not finished: the next `apply`, `rollback` or
    /// `reset` finishes it.
    RollingBack { from: Checksum, to: Checksum },
    /// Recorded as *Live{commit}*, but `/usr` shows no overlay any more: a soft
    /// reboot (which keeps `/run`) or an unmount took it away. `/usr` holds the
    /// booted commit again while `/etc` still carries `commit`'s changes: `apply`
    /// brings `/usr` back (or goes on to another target), `reset` restores `/etc`.
    /// Never written: what `Live` reads as when the mounts disagree.
    UsrLost { commit: Checksum },
}

impl LiveState {
    /// The commit `/usr` holds when no apply is in progress.
    pub fn current(&self, booted: Checksum) -> Option<Checksum> {
        match *self {
            LiveState::Booted | LiveState::UsrLost { .. } => Some(booted),
            LiveState::Live { commit } => Some(commit),
            LiveState::Applying { .. } | LiveState::RollingBack { .. } => None,
        }
    }

    /// The state after `/usr` reached `commit`: live at it, or booted again.
    pub fn reached(commit: Checksum, booted: Checksum) -> LiveState {
        if commit == booted {
            LiveState::Booted
        } else {
            LiveState::Live { commit }
        }
    }
}

/// The persisted record: the state and the deployment it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    deployment: String,
    #[serde(flatten)]
    state: LiveState,
}

/// Refs that pin the commits livefs uses against pruning.
pub const REF_LIVE: &str = "livefs/live";
pub const REF_INPROGRESS: &str = "livefs/inprogress";

/// The record of the live state.
const STATE_FILE: &str = "state.json";

/// The state for the booted deployment `deployment` (`CHECKSUM.SERIAL`); a
/// missing file, or one written for another deployment, means *Booted*.
pub fn load(run: &RunDir, deployment: &str) -> anyhow::Result<LiveState> {
    let Some(bytes) = run.read(STATE_FILE)? else { return Ok(LiveState::Booted) };
    let r: Record = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}/{STATE_FILE} is corrupt (`livefs reset` still works)", run.path().display()))?;
    Ok(if r.deployment == deployment { r.state } else { LiveState::Booted })
}

/// Persists `state` atomically.
pub fn save(run: &RunDir, deployment: &str, state: LiveState) -> anyhow::Result<()> {
    let record = Record { deployment: deployment.to_string(), state };
    let mut bytes = serde_json::to_vec_pretty(&record)?;
    bytes.push(b'\n');
    run.write(STATE_FILE, &bytes)
}

/// Points the refs `livefs/live` and `livefs/inprogress` at what `state` uses,
/// removing those it does not use.
pub fn sync_refs(repo: &Repo, state: LiveState) -> anyhow::Result<()> {
    let (live, inprogress) = match state {
        LiveState::Booted => (None, None),
        LiveState::Applying { from, to } | LiveState::RollingBack { from, to } => (Some(from), Some(to)),
        // The lost commit stays pinned: `/etc` carries it until an apply or reset.
        LiveState::Live { commit } | LiveState::UsrLost { commit } => (Some(commit), None),
    };
    let set = |repo: &Repo| -> anyhow::Result<()> {
        repo.set_ref(REF_LIVE, live)?;
        repo.set_ref(REF_INPROGRESS, inprogress)
    };
    match set(repo) {
        // A sysroot mounted read-only (Fedora CoreOS): write through a private
        // writable clone of its mount; everyone else still sees it read-only.
        Err(e) if is_read_only(&e) => {
            let view = crate::host::mounts::writable_clone(repo.path())?;
            let path = Path::new("/proc/self/fd").join(std::os::fd::AsRawFd::as_raw_fd(&view).to_string());
            set(&Repo::open(&path)?).with_context(|| format!("in {}", repo.path().display()))
        }
        r => r,
    }
}

fn is_read_only(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.raw_os_error() == Some(libc::EROFS))
            || c.downcast_ref::<rustix::io::Errno>() == Some(&rustix::io::Errno::ROFS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn state_roundtrip_and_staleness() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let s = RunDir::new(crate::dirfd::open_dir_path(dir.path()).unwrap().as_fd(), dir.path()).unwrap();
        assert_eq!(load(&s, "a.0").unwrap(), LiveState::Booted);
        let (a, b) = (Checksum::sha256([1; 32]), Checksum::sha256([2; 32]));
        save(&s, "a.0", LiveState::Applying { from: a, to: b }).unwrap();
        assert_eq!(load(&s, "a.0").unwrap(), LiveState::Applying { from: a, to: b });
        assert_eq!(load(&s, "b.0").unwrap(), LiveState::Booted, "a state of another boot is stale");
        save(&s, "a.0", LiveState::reached(b, a)).unwrap();
        assert_eq!(load(&s, "a.0").unwrap(), LiveState::Live { commit: b });
        assert_eq!(LiveState::reached(a, a), LiveState::Booted);
    }
}
