//! systemd on the running system: what needs a restart after a transition
//! ([`needs_restart`], detection only), acting on units as a boot would
//! ([`activation`], what `livefs restart` and `--restart` run; [`left_alone`]:
//! the units it never restarts on its own), and the triggers
//! that must run after files changed ([`triggers`]: sysusers, tmpfiles,
//! ldconfig, daemon-reload).

pub mod activation;
pub mod left_alone;
pub mod needs_restart;
pub mod triggers;
