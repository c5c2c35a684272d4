//! Warnings and progress. Warnings: what went wrong without stopping a command (a corrupt record that
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

/// What a command is waiting for or how far it got, for a person watching:
/// engines report it here, and the CLI's sink ([`set_progress_sink`]) shows it
/// (on a terminal, on stderr); without a sink it goes nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Another livefs holds the lock; this one waits up to `seconds`.
    WaitingForLock { seconds: u64 },
    /// An ostree process holds the sysroot lock.
    WaitingForSysrootLock,
    /// Operations of a long apply done so far.
    Operations { done: usize, total: usize },
}

type Sink = Box<dyn Fn(Progress) + Send + Sync>;

static SINK: std::sync::OnceLock<Sink> = std::sync::OnceLock::new();

/// Where progress goes, for the whole process (set once, by the CLI).
pub fn set_progress_sink(sink: impl Fn(Progress) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Reports progress to the sink, if there is one.
pub fn progress(p: Progress) {
    if let Some(sink) = SINK.get() {
        sink(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Engines' progress reaches the sink the CLI sets, as it was reported.
    #[test]
    fn progress_goes_to_the_sink() {
        static SEEN: Mutex<Vec<Progress>> = Mutex::new(Vec::new());
        set_progress_sink(|p| SEEN.lock().unwrap().push(p));
        progress(Progress::Operations { done: 7, total: 9 });
        assert!(SEEN.lock().unwrap().contains(&Progress::Operations { done: 7, total: 9 }));
    }

    #[test]
    fn a_warning_is_noted_once() {
        warn("twice");
        warn("twice");
        let noted = take();
        assert_eq!(noted.iter().filter(|w| *w == "twice").count(), 1, "{noted:?}");
    }
}
