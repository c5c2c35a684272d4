//! systemd on the running system: what needs a restart after a transition
//! ([`needs_restart`], detection only), acting on units as a boot would
//! ([`activation`], what `livefs restart` and `--restart` run, within the
//! admin's [`restart_policy`]), and the triggers
//! that must run after files changed ([`triggers`]: sysusers, tmpfiles,
//! ldconfig, daemon-reload).

pub mod activation;
pub mod needs_restart;
pub mod restart_policy;
pub mod triggers;
