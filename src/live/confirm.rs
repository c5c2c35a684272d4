//! `apply --confirm-within SECONDS` and `livefs confirm`: an update that stays
//! only when someone confirms it in time, after deploy-rs's "magic rollback".
//! The deadline is systemd's, not a process of the session that applied: a
//! transient timer (`livefs-confirm-ID.timer`) runs `livefs rollback
//! --if-unconfirmed ID` when it expires, so that the SSH connection the update
//! broke, or a killed terminal, cannot keep it. `livefs confirm` (root, from
//! any session) stops the timer and keeps the update. The ID ties the timer to
//! one apply: a timer left from an earlier one never rolls back a later one.

use std::path::Path;
use std::process::Command;

use crate::host::{Host, Paths};
use crate::live::session::Session;
use crate::live::way_back::{self, Cause, Confirm, WayBack};
use crate::repo::Checksum;

/// The transient units' names: `livefs-confirm-ID.timer` and `.service`.
const UNIT_PREFIX: &str = "livefs-confirm-";

/// `--confirm-within` needs systemd's timers: refused before anything changes where it does not run.
pub fn check(root: &Path) -> anyhow::Result<()> {
    crate::systemd::activation::check(root)?;
    Ok(())
}

/// Hands the deadline of the apply whose way back `s` holds to systemd: the
/// confirmation awaited is recorded first (so that the timer finds it), then
/// the transient timer started. `restart`: the rollback restarts units, as the
/// apply did.
pub fn arm(s: &mut Session, seconds: u64) -> anyhow::Result<Confirm> {
    let mut wb = s.way_back.clone().ok_or_else(|| anyhow::anyhow!("no way back is kept for this apply"))?;
    let now = crate::clock::now_secs();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let id = format!("{}-{now:x}{nonce:x}", &wb.to.to_hex()[..12]);
    let confirm = Confirm {
        deadline: crate::clock::rfc3339(now + seconds),
        seconds,
        timer: format!("{UNIT_PREFIX}{id}.timer"),
        id: id.clone(),
    };
    wb.confirm = Some(confirm.clone());
    way_back::save(&s.host.run, &wb)?;
    s.way_back = Some(wb.clone());
    let started = start_timer(&s.host.paths, &id, seconds, &wb);
    if let Err(e) = started {
        wb.confirm = None;
        way_back::save(&s.host.run, &wb)?;
        s.way_back = Some(wb);
        return Err(e);
    }
    Ok(confirm)
}

/// `systemd-run` of the timer that rolls back unless confirmed.
fn start_timer(paths: &Paths, id: &str, seconds: u64, wb: &WayBack) -> anyhow::Result<()> {
    // This very program, as the kernel knows it: an update may replace /usr/bin/livefs.
    let exe = std::env::current_exe().unwrap_or_else(|_| "livefs".into());
    let mut cmd = Command::new("systemd-run");
    cmd.args(["--quiet", &format!("--unit={UNIT_PREFIX}{id}"), &format!("--on-active={seconds}s")])
        .arg("--timer-property=AccuracySec=100ms")
        .arg(format!("--description=livefs: roll back {} unless confirmed (livefs confirm)", &wb.to.to_hex()[..12]))
        .arg("--")
        .arg(exe)
        .arg("--root")
        .arg(&paths.root)
        .arg("--sysroot")
        .arg(&paths.sysroot)
        .args(["--lock-timeout", "600", "rollback", "--if-unconfirmed", id]);
    if wb.restart {
        cmd.arg("--restart");
    }
    let out = cmd.output().map_err(|e| anyhow::anyhow!("cannot run systemd-run: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "cannot start the confirmation timer: systemd-run: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Stops the timer of a confirmation that is moot (confirmed, rolled back, or
/// superseded by another apply or a reset).
pub fn disarm(root: &Path, way_back: Option<&WayBack>) {
    let Some(c) = way_back.and_then(|w| w.confirm.as_ref()) else { return };
    if crate::systemd::needs_restart::systemd_runs(root) {
        let _ = Command::new("systemctl").args(["stop", "--"]).arg(&c.timer).output();
    }
}

/// Whether the way back `wb` still awaits the confirmation `id` (what the
/// timer's rollback checks under the lock).
pub fn awaits(wb: Option<&WayBack>, id: &str) -> bool {
    wb.and_then(|w| w.confirm.as_ref()).is_some_and(|c| c.id == id)
}

/// What `livefs confirm` found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Confirmed {
    /// The commit kept, when a confirmation was awaited.
    pub commit: Option<Checksum>,
    /// The deadline it was confirmed before.
    pub deadline: Option<String>,
    /// Whether anything changed (`false`: nothing awaited a confirmation).
    pub changed: bool,
}

/// The confirmation came too late: the update was rolled back already.
#[derive(Debug, thiserror::Error)]
#[error("too late: {commit} was rolled back at {at}: {reason}")]
pub struct TooLate {
    pub commit: String,
    pub at: String,
    pub reason: String,
}

/// `livefs confirm`: keeps the update that awaits a confirmation.
pub fn confirm(paths: &Paths, lock_wait: std::time::Duration) -> anyhow::Result<Confirmed> {
    let host = Host::lock(paths, lock_wait)?;
    // No way back at all: a rollback took it (maybe for want of this confirmation).
    let Some(mut wb) = way_back::load(&host.run)? else { return nothing(&host) };
    let Some(c) = wb.confirm.take() else { return Ok(Confirmed { commit: None, deadline: None, changed: false }) };
    way_back::save(&host.run, &wb)?;
    disarm(&paths.root, Some(&WayBack { confirm: Some(c.clone()), ..wb.clone() }));
    Ok(Confirmed { commit: Some(wb.to), deadline: Some(c.deadline), changed: true })
}

/// Nothing awaits a confirmation: an error when the last rollback of this boot
/// was for want of one (the confirmation came too late).
fn nothing(host: &Host) -> anyhow::Result<Confirmed> {
    match way_back::last_rollback(&host.run)? {
        Some(last) if last.cause == Cause::Unconfirmed => {
            Err(TooLate { commit: last.from.to_hex()[..12].to_string(), at: last.at, reason: last.reason }.into())
        }
        _ => Ok(Confirmed { commit: None, deadline: None, changed: false }),
    }
}
