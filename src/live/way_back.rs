//! The way back of the last apply, kept in `ROOT/run/livefs/way-back.json` from
//! the moment the apply starts changing the system until the next apply or
//! reset: where `/usr` was before it (the booted commit, or the previous live
//! commit and the layer that showed it, which stays on disk so that going back
//! is one mount operation), what its activation did to units (undone on the
//! way back), and whether a confirmation is awaited (`apply --confirm-within`).
//! `/etc`'s part is the apply's own journal (`etc::undo`). A rollback takes the
//! way back once; the record of the last rollback (`rollback.json`) is what
//! `livefs status` shows.

use serde::{Deserialize, Serialize};

use crate::host::rundir::RunDir;
use crate::repo::Checksum;
use crate::systemd::activation::Verb;

/// The record of the way back.
const RECORD: &str = "way-back.json";
/// The record of the last rollback of this boot.
const LAST_ROLLBACK: &str = "rollback.json";

/// How to undo the last apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WayBack {
    /// What `/usr` showed before the apply: where the way back goes.
    pub from: Checksum,
    /// What the apply brought.
    pub to: Checksum,
    /// The layer that showed `from` (none: the booted `/usr`), kept for the way back.
    pub layer: Option<String>,
    /// When the apply started (RFC 3339).
    pub at: String,
    /// The apply restarted units (`--restart`): the way back restarts them again.
    #[serde(default)]
    pub restart: bool,
    /// What the apply's activation did to units: undone on the way back.
    #[serde(default)]
    pub units: Vec<UnitDone>,
    /// The apply waits for `livefs confirm` (`--confirm-within`).
    #[serde(default)]
    pub confirm: Option<Confirm>,
}

/// One action of the apply's activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitDone {
    pub unit: String,
    pub verb: Verb,
}

/// A confirmation awaited: the apply is rolled back unless `livefs confirm`
/// runs before the deadline, when systemd's timer starts the rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    /// Ties the timer to this apply (`rollback --if-unconfirmed ID`).
    pub id: String,
    /// The deadline (RFC 3339) and the window asked for.
    pub deadline: String,
    pub seconds: u64,
    /// The transient timer that rolls back (`livefs-confirm.timer`).
    pub timer: String,
}

/// Why a rollback was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The apply's health checks failed.
    FailedChecks,
    /// `livefs rollback`, by hand.
    ByHand,
    /// No `livefs confirm` within the window of `--confirm-within`.
    Unconfirmed,
}

/// The last rollback of this boot: what `livefs status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRollback {
    /// When it finished (RFC 3339).
    pub at: String,
    /// The commit rolled back, and the one `/usr` went back to.
    pub from: Checksum,
    pub to: Checksum,
    pub cause: Cause,
    /// Why, in words: the failed checks, or who asked.
    pub reason: String,
    /// The command that rolled back (`apply`, `auto`, `rollback`).
    pub command: String,
    /// How long the way back took, in seconds.
    pub seconds: f64,
}

/// The way back of the last apply, if one is kept.
pub fn load(run: &RunDir) -> anyhow::Result<Option<WayBack>> {
    run.read_record(RECORD)
}

/// Records the way back of an apply that starts now, in place of the last
/// apply's: its `/etc` journal starts empty, and a confirmation the last apply
/// awaited is moot (its timer is the caller's to stop).
pub fn begin(run: &RunDir, way_back: &WayBack) -> anyhow::Result<()> {
    crate::etc::begin_undo(run)?;
    run.write_record(RECORD, way_back)
}

/// Updates the record (the apply's units, an awaited confirmation).
pub fn save(run: &RunDir, way_back: &WayBack) -> anyhow::Result<()> {
    run.write_record(RECORD, way_back)
}

/// Forgets the way back (taken, or moot after a reset), with its `/etc` journal.
pub fn forget(run: &RunDir) -> anyhow::Result<()> {
    run.remove(RECORD)?;
    crate::etc::forget_undo(run)
}

/// The last rollback of this boot, if any.
pub fn last_rollback(run: &RunDir) -> anyhow::Result<Option<LastRollback>> {
    run.read_record(LAST_ROLLBACK)
}

pub fn record_rollback(run: &RunDir, last: &LastRollback) -> anyhow::Result<()> {
    run.write_record(LAST_ROLLBACK, last)
}
