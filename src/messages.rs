//! Warnings: what went wrong without stopping a command (a corrupt record that
//! only refines a report, a ref that cannot be updated on a read-only sysroot,
//! housekeeping after a transition). Engines note them here; the command's
//! outcome carries them, so `--json` readers see them too, and whatever an
//! error path leaves is printed by the CLI.

use std::sync::Mutex;

static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Notes a warning (one line, without the `livefs: warning:` prefix), once:
/// the same file may be read by two steps of one command.
pub fn warn(message: impl Into<String>) {
    let message = message.into();
    let mut warnings = WARNINGS.lock().unwrap_or_else(|e| e.into_inner());
    if !warnings.contains(&message) {
        warnings.push(message);
    }
}

/// The warnings noted so far, oldest first; forgets them.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *WARNINGS.lock().unwrap_or_else(|e| e.into_inner()))
}
