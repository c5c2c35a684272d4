//! The `livefs` command line: arguments ([`args`]), rendering ([`render`]),
//! and the one place errors become exit statuses ([`exit_status`]).

pub mod args;
pub mod events;
pub mod render;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::live::decide::Refusal;
use crate::repo::{Checksum, Repo};
use crate::tree::diff::Diff;
use args::{ApplyTreeArgs, AutoArgs, Cli, Command, DiffArgs};
use render::Verb;

/// Exit statuses, as the man pages and README document them.
pub mod exit {
    /// Done (including nothing to do).
    pub const OK: u8 = 0;
    /// An error: bad input, a missing object, a failed system call, a failed unit action.
    pub const ERROR: u8 = 1;
    /// The command line is wrong (clap's own status).
    pub const USAGE: u8 = 2;
    /// Refused, nothing changed: by policy (replacement not allowed, an update
    /// that needs more than `--max-strategy`, an interrupted transition) or
    /// because livefs cannot or must not act on this host.
    pub const POLICY: u8 = 3;
    /// Another livefs held the lock for longer than `--lock-timeout`: nothing
    /// changed, try again.
    pub const BUSY: u8 = 4;
    /// The update failed its health checks (or was not confirmed in time) and
    /// was rolled back: the system is as it was before it.
    pub const ROLLED_BACK: u8 = 5;
}

/// What kind of failure (or non-event) a command met: the `kind` of its JSON
/// document, few enough for automation to branch on, each with one exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NoPending,
    NoRollback,
    Busy,
    Interrupted,
    RefusedReplacement,
    RefusedStrategy,
    RefusedSelinux,
    UnsupportedHost,
    BadRevision,
    BadRepository,
    UnitFailed,
    RolledBack,
    CheckFailed,
    NotRoot,
    Error,
}

/// A command that changes the running system, run by another user than root:
/// refused before anything is opened.
#[derive(Debug, thiserror::Error)]
#[error("livefs {0} needs root: it changes the running system (`livefs status` works for any user)")]
pub struct NotRoot(pub &'static str);

/// A failure whose report is printed already (an automatic run's): only the
/// exit status of its kind is left to give.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String, pub Kind);

/// Every kind: its JSON name, exit status and meaning (the man pages' table,
/// and the schema's enum, which a test checks against this).
#[rustfmt::skip]
pub const KINDS: &[(Kind, &str, u8, &str)] = &[
    (Kind::NoPending, "no_pending", exit::OK, "apply: no deployment is pending, nothing to do (the document says \"changed\": false)"),
    (Kind::NoRollback, "no_rollback", exit::OK, "rollback: no apply of this boot is left to undo, nothing to do (the document says \"changed\": false)"),
    (Kind::Busy, "busy", exit::BUSY, "another livefs held the lock for longer than --lock-timeout; nothing changed, try again"),
    (Kind::Interrupted, "interrupted", exit::POLICY, "an interrupted transition must be finished first (apply resumes it, reset finishes it)"),
    (Kind::RefusedReplacement, "refused_replacement", exit::POLICY, "the update changes or removes existing files and --allow-replacement was not given"),
    (Kind::RefusedStrategy, "refused_strategy", exit::POLICY, "the update needs a soft reboot or a reboot, more than --max-strategy accepts"),
    (Kind::RefusedSelinux, "refused_selinux", exit::POLICY, "on an SELinux host, an update no live apply may take: its commit carries no labels, or it changes the SELinux policy (a reboot delivers it)"),
    (Kind::UnsupportedHost, "unsupported_host", exit::POLICY, "livefs cannot or must not act here: not OSTree-booted, /usr is someone else's (an ostree hotfix, rpm-ostree's live state, a foreign overlay), a mount below /usr cannot be carried, or --restart where systemd does not run"),
    (Kind::BadRevision, "bad_revision", exit::ERROR, "a revision names no commit (unknown, ambiguous, invalid, or no parent)"),
    (Kind::BadRepository, "bad_repository", exit::ERROR, "an object is missing, corrupt or malformed"),
    (Kind::UnitFailed, "unit_failed", exit::ERROR, "a unit failed to stop, reload, restart or start; the transition itself stands"),
    (Kind::RolledBack, "rolled_back", exit::ROLLED_BACK, "the update failed its health checks (or was not confirmed in time) and was rolled back: /usr, /etc and the units are as before it; the document says what failed and what was undone"),
    (Kind::CheckFailed, "check_failed", exit::ERROR, "the update failed its health checks and was kept (--no-rollback, Rollback=no): the document says what failed"),
    (Kind::NotRoot, "not_root", exit::POLICY, "apply, reset, restart and auto (dry runs too) need root; nothing was opened for writing"),
    (Kind::Error, "error", exit::ERROR, "any other error: bad input, a failed system call"),
];

impl Kind {
    pub fn as_str(self) -> &'static str {
        KINDS.iter().find(|k| k.0 == self).map_or("error", |k| k.1)
    }

    pub fn exit_status(self) -> u8 {
        KINDS.iter().find(|k| k.0 == self).map_or(exit::ERROR, |k| k.2)
    }

    /// The kind of a JSON name (`error` for an unknown one).
    pub fn named(name: &str) -> Kind {
        KINDS.iter().find(|k| k.1 == name).map_or(Kind::Error, |k| k.0)
    }
}

/// The one place errors are classified, and so mapped to exit statuses: by the
/// first typed error in the chain.
pub fn kind_of(e: &anyhow::Error) -> Kind {
    use crate::repo::RepoError;
    for c in e.chain() {
        if let Some(r) = c.downcast_ref::<Refusal>() {
            return match r {
                Refusal::NoPending => Kind::NoPending,
                Refusal::NoRollback => Kind::NoRollback,
                Refusal::PendingUnknown(_) => Kind::Error,
                Refusal::InterruptedOther { .. }
                | Refusal::InterruptedRestart
                | Refusal::InterruptedReset
                | Refusal::InterruptedRollback { .. }
                | Refusal::InterruptedDryRun => Kind::Interrupted,
                Refusal::RpmOstreeLive(_) => Kind::UnsupportedHost,
                Refusal::Replacement(_) => Kind::RefusedReplacement,
                Refusal::Strategy { .. } => Kind::RefusedStrategy,
                Refusal::Selinux(_) => Kind::RefusedSelinux,
            };
        }
        if c.is::<crate::host::rundir::Busy>() {
            return Kind::Busy;
        }
        if c.is::<crate::host::overlay::UsrRefusal>()
            || c.is::<crate::host::submounts::Uncarriable>()
            || c.is::<crate::host::booted::BootError>()
            || c.is::<crate::systemd::activation::NoSystemd>()
        {
            return Kind::UnsupportedHost;
        }
        if c.is::<crate::systemd::activation::Failed>() {
            return Kind::UnitFailed;
        }
        if c.is::<NotRoot>() {
            return Kind::NotRoot;
        }
        if c.is::<crate::live::confirm::TooLate>() {
            return Kind::RolledBack;
        }
        if let Some(r) = c.downcast_ref::<Reported>() {
            return r.1;
        }
        if let Some(r) = c.downcast_ref::<RepoError>() {
            return match r {
                RepoError::RefNotFound(_)
                | RepoError::AmbiguousRev(..)
                | RepoError::InvalidRef(_)
                | RepoError::NoParent(..) => Kind::BadRevision,
                RepoError::MissingObject(..) | RepoError::Corrupt(..) | RepoError::Malformed(..) => Kind::BadRepository,
            };
        }
        if c.is::<crate::repo::ObjectError>() {
            return Kind::BadRepository;
        }
    }
    Kind::Error
}

/// An error's kind and exit status.
pub fn exit_status(e: &anyhow::Error) -> (Kind, u8) {
    let kind = kind_of(e);
    (kind, kind.exit_status())
}

/// The command line's definition, for the man pages and shell completions that
/// `scripts/package` generates from it (`examples/package-assets.rs`).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Runs the command line. An error is one line on stderr — or, with `--json`, a
/// JSON object `{"error", "kind"}` on stdout — and the exit status of its kind.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    crate::messages::set_progress_sink(move |p| {
        let _ = render::progress(&mut std::io::stderr(), p, terminal);
    });
    let json = cli.json();
    let result = run(&cli);
    // What no output carried (an error path, diff and apply-tree).
    let _ = render::warnings(&mut std::io::stderr(), &crate::messages::take());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // The report (with every action's result) is printed already.
        Err(e) if e.is::<crate::systemd::activation::Failed>() || e.is::<Reported>() => {
            if !json {
                eprintln!("livefs: error: {e:#}");
            }
            ExitCode::from(exit_status(&e).1)
        }
        Err(e) => {
            let (kind, status) = exit_status(&e);
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}"), "kind": kind.as_str() }));
            } else {
                eprintln!("livefs: error: {e:#}");
            }
            ExitCode::from(status)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Runs `write` on a buffered stdout, then flushes it.
fn to_stdout(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write(&mut out).context("cannot write output")?;
    out.flush().context("cannot write output")
}

/// Renders `value` as JSON or, with `text`, as text; warnings go to stderr in text mode.
fn output<T: serde::Serialize>(
    json: bool,
    value: &T,
    warnings: &[String],
    text: impl FnOnce(&mut dyn Write, &T) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    if json {
        return to_stdout(|out| render::json(&mut { out }, value));
    }
    to_stdout(|out| text(out, value))?;
    render::warnings(&mut std::io::stderr(), warnings).context("cannot write warnings")
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if let Some(command) = cli.changes_system() {
        if !rustix::process::geteuid().is_root() {
            return Err(NotRoot(command).into());
        }
    }
    match &cli.command {
        Command::Diff(a) => diff(&cli.repo(&a.repo), a),
        Command::ApplyTree(a) => apply_tree(&cli.repo(&a.repo), a),
        Command::Status(a) => {
            let st = crate::live::status(&cli.paths())?;
            output(a.json, &st, &st.warnings, |out, st| render::status(&mut { out }, st))
        }
        Command::Apply(a) => {
            let req = crate::live::ApplyRequest {
                target: a.target.clone(),
                allow_replacement: a.allow_replacement,
                max_strategy: a.max_strategy.tier(),
                options: a.change.options(cli),
                checks: a.checks.checks(),
            };
            let result = crate::live::apply(&cli.paths(), &req);
            let result = logged(cli, result, "apply", a.change.dry_run, |o| events::applied(o, "apply"));
            match result {
                Ok(applied) => applied_output(a.change.json, &applied),
                // Nothing pending: a no-op, so that automation can run apply blindly.
                Err(e) if matches!(crate::live::refusal(&e), Some(Refusal::NoPending)) => {
                    nothing_to_do(a.change.json, &e, Kind::NoPending)
                }
                Err(e) => Err(e),
            }
        }
        Command::Reset(a) => {
            let result = crate::live::reset(&cli.paths(), a.change.options(cli));
            let o = logged(cli, result, "reset", a.change.dry_run, |o| {
                events::transition(o, Verb::Reset, "reset").into_iter().collect()
            })?;
            transition_output(a.change.json, &o, Verb::Reset)
        }
        Command::Rollback(a) => {
            let req = crate::live::RollbackRequest {
                options: a.change.options(cli),
                if_unconfirmed: a.if_unconfirmed.clone(),
            };
            let result = crate::live::rollback(&cli.paths(), &req);
            let result = logged(cli, result, "rollback", a.change.dry_run, |r| {
                events::rolled_back(r, "rollback").into_iter().collect()
            });
            match result {
                Ok(back) => {
                    output(a.change.json, &back, &back.outcome.warnings, |out, b| {
                        render::rolled_back(&mut { out }, b)
                    })?;
                    activation_result(back.outcome.restart.as_ref())
                }
                Err(e) if matches!(crate::live::refusal(&e), Some(Refusal::NoRollback)) => {
                    nothing_to_do(a.change.json, &e, Kind::NoRollback)
                }
                Err(e) => Err(e),
            }
        }
        Command::Confirm(a) => {
            let result = crate::live::confirm::confirm(&cli.paths(), cli.lock_wait());
            let c = logged(cli, result, "confirm", false, |c| events::confirmed(c).into_iter().collect())?;
            output(a.json, &c, &[], |out, c| render::confirmed(&mut { out }, c))
        }
        Command::Restart(a) => {
            let result = crate::live::restart(&cli.paths(), a.activation.request(), a.dry_run, cli.lock_wait());
            let o = logged(cli, result, "restart", a.dry_run, |o| events::restart(o).into_iter().collect())?;
            output(a.json, &o, &o.warnings, |out, o| render::restart(&mut { out }, o))?;
            activation_result(Some(&o.restart))
        }
        Command::Auto(a) => auto(cli, a),
    }
}

/// A command with nothing to do: a no-op document (`"changed": false`), exit status 0.
fn nothing_to_do(json: bool, e: &anyhow::Error, kind: Kind) -> anyhow::Result<()> {
    let doc = serde_json::json!({ "changed": false, "reason": e.to_string(), "kind": kind.as_str() });
    output(json, &doc, &[], |out, _| render::nothing_to_do(&mut { out }, &e.to_string()))
}

/// `livefs apply`'s report, and its exit status: a rollback is exit status 5
/// (its JSON document then says `"error"` and `"kind": "rolled_back"`), an
/// unhealthy update kept is 1 (`check_failed`), a failed unit action 1.
fn applied_output(json: bool, a: &crate::live::Applied) -> anyhow::Result<()> {
    let failure = health_failure(a);
    let mut warnings = a.outcome.warnings.clone();
    warnings.extend(crate::messages::take());
    if json {
        let mut doc = serde_json::to_value(a).context("cannot write output")?;
        if let (Some((message, kind)), Some(map)) = (&failure, doc.as_object_mut()) {
            map.insert("error".into(), message.clone().into());
            map.insert("kind".into(), kind.as_str().into());
        }
        to_stdout(|out| render::json(&mut { out }, &doc))?;
        render::warnings(&mut std::io::stderr(), &warnings).context("cannot write warnings")?;
    } else {
        output(false, a, &warnings, |out, a| render::applied(&mut { out }, a))?;
    }
    match failure {
        Some((message, kind)) => Err(Reported(message, kind).into()),
        None => activation_result(a.outcome.restart.as_ref()),
    }
}

/// Why an apply's checks failed it, and the kind: rolled back, or kept (`--no-rollback`).
fn health_failure(a: &crate::live::Applied) -> Option<(String, Kind)> {
    if let Some(back) = &a.after.rolled_back {
        return Some((format!("the update was rolled back: it {}", back.reason), Kind::RolledBack));
    }
    let h = a.after.health.as_ref().filter(|h| h.verdict == crate::health::Verdict::Failed)?;
    Some((
        format!("the update failed its health checks (kept: --no-rollback): {}", h.failures().join("; ")),
        Kind::CheckFailed,
    ))
}

/// Logs what a command that changes the system did, or why it did not (see
/// [`events`]), and passes its result on.
fn logged<T>(
    cli: &Cli,
    result: anyhow::Result<T>,
    command: &str,
    dry_run: bool,
    entries: impl FnOnce(&T) -> Vec<events::Entry>,
) -> anyhow::Result<T> {
    let e = match &result {
        Ok(t) => entries(t),
        Err(e) => events::error(command, dry_run, e, kind_of(e)).into_iter().collect(),
    };
    e.iter().for_each(|entry| journal(cli, entry));
    result
}

/// Sends a journal entry (nothing where no journal listens); a failure to is a warning.
fn journal(cli: &Cli, entry: &events::Entry) {
    if let Err(e) = crate::journal::send(&cli.root, &entry.fields()) {
        crate::messages::warn(format!("cannot log to the journal: {e:#}"));
    }
}

/// `livefs auto`: the run's report (the apply's outcome, then the run), its
/// journal entry, and its exit status.
fn auto(cli: &Cli, a: &AutoArgs) -> anyhow::Result<()> {
    let kind = |e: &anyhow::Error| kind_of(e).as_str();
    let result = crate::live::auto::run(&cli.paths(), a.dry_run, cli.lock_wait(), &kind);
    let report = logged(cli, result, "auto", a.dry_run, |r| if a.dry_run { Vec::new() } else { events::auto(r) })?;
    let run = &report.run;
    let mut warnings = report.apply.as_ref().map(|o| o.outcome.warnings.clone()).unwrap_or_default();
    warnings.extend(crate::messages::take());
    output(a.json, run, &warnings, |out, run| {
        if let Some(o) = &report.apply {
            render::applied(&mut { &mut *out }, o)?;
        }
        let label = if a.dry_run { "Automatic run (dry run, nothing recorded):" } else { "Automatic run:" };
        render::auto_run(&mut { out }, run, label)
    })?;
    // The run's document has no warnings of its own (the record is no place
    // for them): they go to stderr in JSON mode too.
    if a.json {
        render::warnings(&mut std::io::stderr(), &warnings).context("cannot write warnings")?;
    }
    if !run.ending.failed() {
        return Ok(());
    }
    let why = run.reason.clone().unwrap_or_else(|| run.ending.as_str().to_string());
    Err(Reported(
        format!("automatic run {}: {why}", run.ending.as_str()),
        Kind::named(run.kind.as_deref().unwrap_or("error")),
    )
    .into())
}

fn transition_output(json: bool, o: &crate::live::transition::Outcome, verb: Verb) -> anyhow::Result<()> {
    output(json, o, &o.warnings, |out, o| render::outcome(&mut { out }, o, verb))?;
    activation_result(o.restart.as_ref())
}

/// An error when a unit action failed: the transition stands, the exit status is 1.
fn activation_result(a: Option<&crate::systemd::activation::Activation>) -> anyhow::Result<()> {
    let failed: Vec<String> =
        a.into_iter().flat_map(|a| a.failed()).map(|f| format!("{} {}", f.verb.as_str(), f.unit)).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::systemd::activation::Failed(failed).into())
    }
}

fn open_rev(repo: &Repo, rev: &str) -> anyhow::Result<Checksum> {
    let c = repo.resolve_rev(rev)?;
    if repo.is_partial(c) {
        crate::messages::warn(format!("commit {c} ('{rev}') is partial: some of its objects may be missing"));
    }
    Ok(c)
}

/// `livefs diff --json`: the two commits, then the report's fields.
#[derive(serde::Serialize)]
struct DiffJson {
    from: Checksum,
    to: Checksum,
    #[serde(flatten)]
    report: crate::tree::diff::DiffReport,
}

fn diff(repo: &std::path::Path, a: &DiffArgs) -> anyhow::Result<()> {
    let repo = Repo::open(repo)?;
    let (from, to) = (open_rev(&repo, &a.from)?, open_rev(&repo, &a.to)?);
    let diff = Diff::commits(&repo, from, to)?;
    // What it read (two whole composefs images' objects) is freed by the exit,
    // not object by object.
    let repo = &*Box::leak(Box::new(repo));
    if a.json {
        let doc = DiffJson { from, to, report: diff.report(repo)? };
        return to_stdout(|out| render::json(&mut { out }, &doc));
    }
    if a.stat {
        let line = diff.report(repo)?.stat_line();
        return to_stdout(|out| writeln!(out, "{line}"));
    }
    to_stdout(|out| diff.write_ostree_format(&mut { out }))
}

fn apply_tree(repo: &std::path::Path, a: &ApplyTreeArgs) -> anyhow::Result<()> {
    let repo = Repo::open(repo)?;
    let revs = (open_rev(&repo, &a.from)?, open_rev(&repo, &a.to)?);
    let o = crate::tree::apply::update_dir(&repo, revs, &a.subpath, &a.target, a.dry_run, a.force)?;
    output(a.json, &o, &[], |out, o| render::apply_tree(&mut { out }, o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::overlay::UsrRefusal;
    use crate::host::submounts::Uncarriable;

    #[test]
    fn errors_map_to_kinds_and_exit_statuses() {
        let c = Checksum::sha256([0xc0; 32]);
        let io = || anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES));
        let uncarriable = || Uncarriable { path: "/usr/local".into(), why: "no /usr/local".into() };
        let busy = || crate::host::rundir::Busy { lock: "/run/livefs/lock".into(), waited: 60 };
        let object = crate::repo::ObjectName { checksum: c, ext: "commit" };
        let strategy = Refusal::Strategy {
            needs: crate::live::strategy::Tier::Reboot,
            max: crate::live::strategy::Tier::Live,
            reasons: vec!["a new kernel (6.1.0-15-amd64)".into()],
        };
        let cases: Vec<(anyhow::Error, Kind, u8)> = vec![
            (Refusal::Replacement(vec!["/usr/bin/a".into()]).into(), Kind::RefusedReplacement, exit::POLICY),
            (strategy.into(), Kind::RefusedStrategy, exit::POLICY),
            (Refusal::Selinux(vec!["a changed SELinux policy".into()]).into(), Kind::RefusedSelinux, exit::POLICY),
            (Refusal::InterruptedOther { to: c }.into(), Kind::Interrupted, exit::POLICY),
            (Refusal::InterruptedDryRun.into(), Kind::Interrupted, exit::POLICY),
            // Wrapped in context, a refusal is still one.
            (anyhow::Error::from(Refusal::InterruptedReset).context("in /"), Kind::Interrupted, exit::POLICY),
            (Refusal::RpmOstreeLive("stamp".into()).into(), Kind::UnsupportedHost, exit::POLICY),
            (UsrRefusal::Hotfix.into(), Kind::UnsupportedHost, exit::POLICY),
            (uncarriable().into(), Kind::UnsupportedHost, exit::POLICY),
            (
                crate::host::booted::BootError::NotBooted { root: "/".into(), record: "/run/ostree-booted".into() }
                    .into(),
                Kind::UnsupportedHost,
                exit::POLICY,
            ),
            (anyhow::Error::from(busy()).context("cannot lock"), Kind::Busy, exit::BUSY),
            (crate::repo::RepoError::RefNotFound("x".into()).into(), Kind::BadRevision, exit::ERROR),
            (crate::repo::RepoError::MissingObject(object, false).into(), Kind::BadRepository, exit::ERROR),
            (Refusal::PendingUnknown("bad origin".into()).into(), Kind::Error, exit::ERROR),
            (io().context("cannot open /sysroot"), Kind::Error, exit::ERROR),
            (
                crate::systemd::activation::Failed(vec!["restart web.service".into()]).into(),
                Kind::UnitFailed,
                exit::ERROR,
            ),
            (Refusal::NoPending.into(), Kind::NoPending, exit::OK),
            (NotRoot("reset").into(), Kind::NotRoot, exit::POLICY),
        ];
        for (e, kind, status) in cases {
            assert_eq!(exit_status(&e), (kind, status), "{e:#}");
        }
    }

    /// The schema's error kinds are exactly [`KINDS`] (but `no_pending`, which is
    /// the no-op document's).
    #[test]
    fn the_schema_names_every_kind() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema/defs.schema.json");
        let defs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let schema: Vec<&str> = defs["$defs"]["error"]["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let ours: Vec<&str> =
            KINDS.iter().map(|k| k.1).filter(|k| !matches!(*k, "no_pending" | "no_rollback")).collect();
        assert_eq!(schema, ours);
    }
}
