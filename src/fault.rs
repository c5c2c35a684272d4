//! Counting mutations of the target tree, and (test builds only) dying after one.
//!
//! Every syscall that changes the tree being updated calls [`mutation`]. With the
//! `fault-injection` cargo feature, `LIVEFS_FAULT_AFTER=N` makes the process kill
//! itself with SIGKILL right after the Nth one: the test suite uses it to prove that
//! rerunning an interrupted apply always finishes it. Release builds ignore the
//! variable entirely.

use std::sync::atomic::{AtomicU64, Ordering};

static MUTATIONS: AtomicU64 = AtomicU64::new(0);

/// Records one mutation of the target tree.
pub fn mutation() {
    let n = MUTATIONS.fetch_add(1, Ordering::Relaxed) + 1;
    #[cfg(feature = "fault-injection")]
    if Some(n) == limit() {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = n;
}

/// How many mutations this process has made.
pub fn count() -> u64 {
    MUTATIONS.load(Ordering::Relaxed)
}

#[cfg(feature = "fault-injection")]
fn limit() -> Option<u64> {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| std::env::var("LIVEFS_FAULT_AFTER").ok().and_then(|v| v.parse().ok()))
}

/// A named point in a command (test builds only): `LIVEFS_STOP_AT=NAME` makes
/// the process stop itself there (SIGSTOP) until the test sends SIGCONT, so a
/// test can hold one livefs mid-step while another runs.
pub fn stop_point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("LIVEFS_STOP_AT").is_ok_and(|v| v == name) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}
