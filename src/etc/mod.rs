//! `/etc`: carrying an update's configuration changes into the live `/etc`
//! without touching what the administrator changed, and undoing them exactly.
//!
//! The baseline is the source commit's `usr/etc` (what `/etc` was merged from):
//! a path is *locally changed* when the live `/etc` differs from it there. For
//! every path the update changes (source `usr/etc` → target `usr/etc`):
//! - unchanged locally → the update's addition, change or removal is applied, with
//!   the same per-file atomicity as `/usr`;
//! - already as the target has it → nothing to do (a resumed apply);
//! - changed locally → left alone and reported as *kept*;
//! - changed locally and turned into another type by the update → reported as a
//!   *conflict*, never forced.
//!
//! Every change is journaled first: the previous entry is copied (or its absence,
//! or a directory's metadata, recorded) under `ROOT/run/livefs/etc-journal/`, so
//! `livefs reset` puts `/etc` back exactly as it was before the first apply; and
//! under `ROOT/run/livefs/etc-undo/` as it was before the last apply, so
//! `livefs rollback` undoes that apply's changes and only them.

mod journal;
mod merge;

pub use journal::{begin_undo, forget_undo, has_journal, journal_path, restore, undo, undo_paths, Restored};
pub use merge::merge;

use serde::{Deserialize, Serialize};

use crate::tree::diff::NodeKind;

/// One decision of the merge about one path, before anything is written (and
/// what the journal captures before it is).
pub(crate) struct Step {
    pub path: String,
    pub action: EtcAction,
    pub from: Option<NodeKind>,
    pub to: Option<NodeKind>,
}

/// What happened to one path of the update under `/etc`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EtcPath {
    pub path: String,
    pub action: EtcAction,
    /// Why the path could not be changed ([`EtcAction::Failed`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EtcAction {
    Added,
    Updated,
    Removed,
    /// Already as the target has it (an earlier, interrupted run did it).
    AlreadyDone,
    /// Changed locally: left alone.
    Kept,
    /// Changed locally and changed in type by the update: left alone.
    Conflict,
    /// Could not be changed (an immutable file, a full disk…): left as it was,
    /// the rest of `/etc` goes on.
    Failed,
}

/// The `/etc` part of an apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EtcReport {
    pub paths: Vec<EtcPath>,
}

impl EtcReport {
    pub fn with(&self, action: EtcAction) -> impl Iterator<Item = &str> {
        self.paths.iter().filter(move |p| p.action == action).map(|p| p.path.as_str())
    }
}

/// The parent directory and name of an `/etc` path; `/etc` itself (`/`) is `.`
/// in itself, so its own metadata changes like any directory's.
pub(crate) fn split(path: &str) -> (&str, &str) {
    match crate::dirfd::split_path(path) {
        (dir, "") => (dir, "."),
        parts => parts,
    }
}
