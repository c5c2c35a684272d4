//! The command line's definition: one argument struct per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::host::{layout, Paths};

/// Apply an OSTree update to a running system, without a reboot.
#[derive(Debug, Parser)]
#[command(name = "livefs", version, about)]
pub struct Cli {
    /// The running system's root: deployments, /usr, /etc, /var and /run are found under it.
    #[arg(long, global = true, default_value = "/", value_hint = clap::ValueHint::DirPath)]
    pub root: PathBuf,
    /// The physical root holding ostree/ and boot/ [default: ROOT/sysroot].
    #[arg(long, global = true, value_hint = clap::ValueHint::DirPath)]
    pub sysroot: Option<PathBuf>,
    /// How long to wait for another livefs on this system to finish before
    /// failing as busy (exit status 4).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub lock_timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command asked for JSON output.
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Diff(a) => a.json,
            Command::ApplyTree(a) => a.json,
            Command::Status(a) => a.json,
            Command::Apply(a) => a.change.json,
            Command::Reset(a) => a.change.json,
            Command::Restart(a) => a.json,
            Command::Auto(a) => a.json,
            Command::Rollback(a) => a.change.json,
            Command::Confirm(a) => a.json,
        }
    }

    /// The name of the command when it changes the running system (and so
    /// needs root; a dry run still takes the lock).
    pub fn changes_system(&self) -> Option<&'static str> {
        match &self.command {
            Command::Apply(_) => Some("apply"),
            Command::Reset(_) => Some("reset"),
            Command::Restart(_) => Some("restart"),
            Command::Auto(_) => Some("auto"),
            Command::Rollback(_) => Some("rollback"),
            Command::Confirm(_) => Some("confirm"),
            Command::Status(_) | Command::Diff(_) | Command::ApplyTree(_) => None,
        }
    }

    pub fn paths(&self) -> Paths {
        let sysroot = self.sysroot.clone().unwrap_or_else(|| self.root.join(layout::SYSROOT));
        Paths { root: self.root.clone(), sysroot }
    }

    pub fn lock_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lock_timeout)
    }

    /// `--repo`, else the system's repository `SYSROOT/ostree/repo`.
    pub fn repo(&self, repo: &Option<PathBuf>) -> PathBuf {
        repo.clone().unwrap_or_else(|| self.paths().sysroot.join(layout::REPO))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what changed between two commits, in `ostree diff`'s format.
    ///
    /// Unlike `ostree diff`, a change of the root directory's own metadata is
    /// reported, as `M    /`.
    Diff(DiffArgs),
    /// Turn a directory holding one commit's content into the next commit's, in place.
    ///
    /// Only the difference is written; each file is replaced atomically; an
    /// interrupted run is finished by running the same command again.
    ApplyTree(ApplyTreeArgs),
    /// Show the booted, pending and live commits and the state of /usr.
    Status(StatusArgs),
    /// Apply the pending deployment (or --target) to the running /usr, now.
    ///
    /// By default only additions are applied; changing or removing existing
    /// files needs --allow-replacement. The changes live in a transient overlay
    /// that the next reboot discards. An interrupted apply is resumed by running
    /// it again.
    ///
    /// Then its health is checked: the units it started, restarted or reloaded
    /// must stay active through a settle window (--settle), greenboot's checks
    /// (the executables of /etc/greenboot/check/required.d and wanted.d, and of
    /// /usr/lib/greenboot/check/..., /etc winning by name) and the --check
    /// commands must pass. When a required one fails, the update is rolled back
    /// at once (exit status 5): /usr switched back in one mount operation, its
    /// /etc changes undone, the units it acted on acted on again, greenboot's
    /// red.d run. A failed wanted check is a warning; green.d runs when the
    /// update is kept. With --confirm-within, it is also rolled back unless
    /// `livefs confirm` runs in time (a systemd timer keeps the deadline).
    Apply(ApplyArgs),
    /// Bring the running /usr and /etc back to the booted commit's content.
    Reset(ResetArgs),
    /// Undo the last apply: back to the commit /usr showed before it.
    ///
    /// That is the previous live commit when the apply went from one live update
    /// to the next, else the booted commit (where `livefs reset` always goes).
    /// /usr switches back in one mount operation (to the previous layer, kept
    /// for it), the apply's /etc changes are undone and only them (the admin's
    /// edits made before it stay), and with --restart the units it acted on are
    /// acted on again the other way. A rollback undoes the last apply once; an
    /// interrupted one is finished by the next apply, rollback or reset.
    Rollback(RollbackArgs),
    /// Keep the update an `apply --confirm-within` applied: stops its rollback timer.
    ///
    /// Run it (as root, from any session: a new SSH connection proves the host is
    /// still reachable) before the deadline. Exit status 5 when the update was
    /// rolled back already, for want of the confirmation.
    Confirm(ConfirmArgs),
    /// Restart what earlier applies left running old code, start what they newly enabled.
    ///
    /// As a boot would, after NixOS's switch-to-configuration: `daemon-reload` if
    /// systemd has not loaded the changed unit files, then stop active units whose
    /// unit file was removed, reload units marked X-ReloadIfChanged=true, restart
    /// active units whose unit files or drop-ins changed since they started or
    /// whose processes use replaced or removed files, start units newly wanted by
    /// an active target. A socket-activated service is stopped instead: its
    /// socket keeps listening (no connection refused) and starts the new code on
    /// the next connection; a changed socket is restarted, its service stopped
    /// first. Units marked X-RestartIfChanged=false or RefuseManualStop=yes,
    /// livefs's own unit and the units of the left-alone list (the message bus,
    /// logind, journald, gettys, user managers, display managers, the network
    /// managers, sshd; extended or replaced in /etc/livefs/restart.conf and
    /// restart.conf.d/*.conf with LeaveAlone=) are left alone and reported with
    /// why. A changed systemd manager is re-executed only with --daemon-reexec
    /// (or DaemonReexec=yes there); users' changed units are reported per user
    /// and restarted only with --user-units; processes outside system services
    /// (sessions) are listed, never killed. A hangup (the SSH session gone) does
    /// not stop it; `livefs status` shows how the last activation went. A failed
    /// action is reported with the unit's status and exit status 1.
    Restart(RestartArgs),
    /// Take the pending deployment live unattended, as far as the admin's policy allows.
    ///
    /// What livefs-auto.service runs when ostree, rpm-ostree or bootc deploys
    /// (livefs-auto.path), and hourly (livefs-auto.timer). The policy is
    /// /etc/livefs/auto.conf and auto.conf.d/*.conf, section [Auto]:
    /// MaxStrategy=live|soft-reboot|reboot (default live: an update that needs a
    /// soft reboot or a reboot is left for the next reboot), AllowReplacement=
    /// (default no: an update that changes or removes existing files of /usr is
    /// refused, and the run fails), Restart= (default yes: restart what the
    /// update changed, as `apply --restart` does, but for the left-alone list of
    /// restart.conf). An update left for the reboot is named in
    /// /run/reboot-required. The same deployment under the same policy is
    /// decided once a boot: a `livefs reset` is not undone by the next run.
    /// Every run is recorded (`livefs status` shows the last one) and every
    /// change, refusal and failure is logged to the journal. Exit status: 0 when
    /// applied, left for the reboot or nothing to do; that of the error otherwise.
    Auto(AutoArgs),
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The OSTree repository [default: SYSROOT/ostree/repo].
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    pub repo: Option<PathBuf>,
    /// Machine-readable output: every path with its type, counts, bytes to write.
    #[arg(long, conflicts_with = "stat")]
    pub json: bool,
    /// A one-line summary.
    #[arg(long)]
    pub stat: bool,
    /// The old revision: checksum, unique prefix, ref, or REV^ for a parent.
    pub from: String,
    /// The new revision.
    pub to: String,
}

#[derive(Debug, Args)]
pub struct ApplyTreeArgs {
    /// The OSTree repository [default: SYSROOT/ostree/repo].
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    pub repo: Option<PathBuf>,
    /// The commit the directory holds now.
    #[arg(long)]
    pub from: String,
    /// The commit the directory must hold afterwards.
    #[arg(long)]
    pub to: String,
    /// The directory of the commits that TARGET_DIR holds, e.g. /usr.
    #[arg(long, default_value = "/")]
    pub subpath: String,
    /// Check and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable report: every path by kind, counts, bytes, time.
    #[arg(long)]
    pub json: bool,
    /// Overwrite paths that differ from what the source commit has.
    #[arg(long)]
    pub force: bool,
    /// The directory to update.
    #[arg(value_hint = clap::ValueHint::DirPath)]
    pub target: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The commit to apply [default: the pending deployment's].
    #[arg(long)]
    pub target: Option<String>,
    /// Allow changing and removing existing files and directories in /usr.
    #[arg(long)]
    pub allow_replacement: bool,
    /// The most disruptive strategy accepted: an update that needs more (a soft
    /// reboot, a reboot) is refused before anything changes (exit status 3).
    #[arg(long, value_enum, default_value = "reboot")]
    pub max_strategy: MaxStrategy,
    #[command(flatten)]
    pub change: ChangeArgs,
    #[command(flatten)]
    pub checks: CheckArgs,
}

/// The health checks after an apply, and what a failure does.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// How long the units the apply started, restarted or reloaded must stay
    /// active (a unit that dies within it fails the checks).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::health::SETTLE.as_secs())]
    pub settle: u64,
    /// Another required check: a shell command that must exit 0 (repeatable),
    /// run after greenboot's required checks.
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,
    /// The longest any one check may run before it is killed and counts as failed.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::health::TIMEOUT.as_secs())]
    pub check_timeout: u64,
    /// Check nothing afterwards (and so never roll back for it).
    #[arg(long, conflicts_with_all = ["checks", "no_rollback"])]
    pub no_check: bool,
    /// Keep an update that fails its checks, and report it (exit status 1).
    #[arg(long)]
    pub no_rollback: bool,
    /// Roll the update back unless `livefs confirm` runs within SECONDS (a
    /// systemd timer keeps the deadline, whatever happens to this session).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub confirm_within: Option<u64>,
}

impl CheckArgs {
    pub fn checks(&self) -> crate::live::verify::Checks {
        crate::live::verify::Checks {
            health: crate::health::Request {
                enabled: !self.no_check,
                rollback: !self.no_rollback,
                settle: std::time::Duration::from_secs(self.settle),
                commands: self.checks.clone(),
                timeout: std::time::Duration::from_secs(self.check_timeout),
            },
            confirm_within: self.confirm_within,
        }
    }
}

/// The strategies `--max-strategy` names, least disruptive first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaxStrategy {
    /// Only updates that go live whole.
    Live,
    /// Also updates that need a soft reboot (the manager, the bus, the C library).
    SoftReboot,
    /// Any update.
    Reboot,
}

impl MaxStrategy {
    pub fn tier(self) -> crate::live::strategy::Tier {
        use crate::live::strategy::Tier;
        match self {
            MaxStrategy::Live => Tier::Live,
            MaxStrategy::SoftReboot => Tier::SoftReboot,
            MaxStrategy::Reboot => Tier::Reboot,
        }
    }
}

#[derive(Debug, Args)]
pub struct AutoArgs {
    /// Say what the policy decides now and what applying would do; change and record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable report of the run (docs/schema/auto.schema.json).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Roll back only if the apply with this confirmation ID still awaits its
    /// confirmation: what the timer of `apply --confirm-within` runs.
    #[arg(long, value_name = "ID")]
    pub if_unconfirmed: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// Machine-readable report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// List what would be stopped, reloaded, restarted and started; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable report: every action and its result.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub activation: ActivationArgs,
}

/// Options of the commands that change the running system.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Check and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable report.
    #[arg(long)]
    pub json: bool,
    /// Run no trigger (systemd-sysusers, systemd-tmpfiles, ldconfig, daemon-reload).
    #[arg(long)]
    pub no_triggers: bool,
    /// Then finish as a boot would: restart (or reload) active units that run an
    /// old definition or old code, stop units whose unit file went away, start
    /// units newly wanted by an active target (see livefs-restart(8)).
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub activation: ActivationArgs,
}

impl ChangeArgs {
    /// The options; a usage error (exit status 2) for activation flags without `--restart`.
    pub fn options(&self, cli: &Cli) -> crate::live::transition::Options {
        if !self.restart && (self.activation.daemon_reexec || self.activation.user_units) {
            use clap::CommandFactory;
            let kind = clap::error::ErrorKind::MissingRequiredArgument;
            Cli::command().error(kind, "--daemon-reexec and --user-units need --restart").exit();
        }
        crate::live::transition::Options {
            dry_run: self.dry_run,
            no_triggers: self.no_triggers,
            restart: self.restart,
            activation: self.activation.request(),
            lock_wait: cli.lock_wait(),
            ..Default::default()
        }
    }
}

/// What an activation may do beyond the restart policy's defaults.
#[derive(Debug, Args)]
pub struct ActivationArgs {
    /// Re-execute the systemd manager (systemctl daemon-reexec) when the update
    /// changed it (as DaemonReexec=yes in /etc/livefs/restart.conf does).
    #[arg(long)]
    pub daemon_reexec: bool,
    /// Restart the changed units of logged-in users' managers too (they are
    /// reported per user otherwise).
    #[arg(long)]
    pub user_units: bool,
}

impl ActivationArgs {
    pub fn request(&self) -> crate::systemd::activation::Request {
        crate::systemd::activation::Request { daemon_reexec: self.daemon_reexec, user_units: self.user_units }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Which commands change the system (and so need root): dry runs too, as
    /// they take the lock; never status, diff or apply-tree.
    #[test]
    fn what_needs_root() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["status"], None),
            (&["status", "--json"], None),
            (&["diff", "a", "b"], None),
            (&["apply"], Some("apply")),
            (&["apply", "--dry-run"], Some("apply")),
            (&["reset", "--dry-run"], Some("reset")),
            (&["restart", "--dry-run"], Some("restart")),
            (&["auto", "--dry-run"], Some("auto")),
            (&["rollback", "--dry-run"], Some("rollback")),
            (&["confirm"], Some("confirm")),
        ];
        for (args, want) in cases {
            let cli = Cli::try_parse_from(std::iter::once("livefs").chain(args.iter().copied())).unwrap();
            assert_eq!(cli.changes_system(), *want, "{args:?}");
        }
    }
}
