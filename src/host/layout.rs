//! Where things are on an OSTree (or bootc composefs) host: every location livefs reads or writes,
//! spelled once. Paths are relative to ROOT (the running system's root) or to
//! the sysroot (the physical root, `ROOT/sysroot` normally).

/// The runtime tmpfs (`ROOT/…`).
pub const RUN: &str = "run";
/// The reboot sentinel in it, and the list of what asks for the reboot.
pub const REBOOT_REQUIRED: &str = "reboot-required";
pub const REBOOT_REQUIRED_PKGS: &str = "reboot-required.pkgs";
/// livefs's records (`ROOT/…`): on the `/run` tmpfs, forgotten at reboot.
pub const RUN_DIR: &str = "run/livefs";
/// What ostree-prepare-root recorded of this boot (`ROOT/…`).
pub const OSTREE_BOOTED: &str = "run/ostree-booted";
/// The staged deployment rpm-ostree and bootc leave (`ROOT/…`).
pub const STAGED_DEPLOYMENT: &str = "run/ostree/staged-deployment";
/// The root `ostree admin prepare-soft-reboot` loaded (`ROOT/…`), and its boot record.
pub const NEXT_ROOT: &str = "run/nextroot";
pub const NEXT_ROOT_BOOTED: &str = "run/ostree/nextroot-booted";
/// Where systemd says it runs as PID 1 (absolute: the host's own).
pub const SYSTEMD_RUNNING: &str = "/run/systemd/system";
/// The default physical root (`ROOT/…`).
pub const SYSROOT: &str = "sysroot";
/// The system repository (`SYSROOT/…`).
pub const REPO: &str = "ostree/repo";
/// ostree's sysroot lock (`SYSROOT/…`).
pub const SYSROOT_LOCK: &str = "ostree/lock";
/// The deployments of every OS (`SYSROOT/…`).
pub const DEPLOY: &str = "ostree/deploy";
/// bootc's native composefs backend: its repository and the deployments'
/// state directories (`SYSROOT/…`), the staged deployment's record (`ROOT/…`).
pub const COMPOSEFS_REPO: &str = "composefs";
pub const COMPOSEFS_STATE: &str = "state/deploy";
pub const COMPOSEFS_STAGED: &str = "run/composefs/staged-deployment";

/// ostree's run-time state of the deployment `id` (`CHECKSUM.SERIAL`, `ROOT/…`):
/// its unlock flag, rpm-ostree's live stamp.
pub fn deployment_state(id: &str) -> String {
    format!("run/ostree/deployment-state/{id}")
}

/// livefs's layers of a deployment (`SYSROOT/…`), beside ostree's own unlock
/// state in the deployment's backing directory.
pub fn layers(osname: &str, id: &str) -> String {
    format!("{DEPLOY}/{osname}/backing/{id}/livefs")
}
