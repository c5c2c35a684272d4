//! The `livefs` command line: arguments ([`args`]), rendering ([`render`]),
//! and the one place errors become exit statuses ([`exit_status`]).

pub mod args;
pub mod render;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::live::decide::Refusal;
use crate::repo::{Checksum, Repo};
use crate::tree::diff::Diff;
use args::{ApplyTreeArgs, Cli, Command, DiffArgs};
use render::Verb;

/// Exit statuses, as the man pages and README document them.
pub mod exit {
    /// Done (including nothing to do).
    pub const OK: u8 = 0;
    /// An error: bad input, a missing object, a failed system call, a failed unit action.
    pub const ERROR: u8 = 1;
    /// The command line is wrong (clap's own status).
    pub const USAGE: u8 = 2;
    /// Refused by policy (replacement not allowed, an interrupted transition, a
    /// foreign overlay or live state): nothing changed.
    pub const POLICY: u8 = 3;
}

/// The kind of a failure, as `--json` names it (`"kind"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Error,
    Policy,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Error => "error",
            Kind::Policy => "policy",
        }
    }
}

/// The one place errors map to exit statuses: a refusal by policy — livefs's
/// own ([`Refusal::is_policy`]), a `/usr` it must not change, a mount below
/// `/usr` it cannot carry — is [`exit::POLICY`] (nothing changed); anything else,
/// a failed unit action included, is [`exit::ERROR`].
pub fn exit_status(e: &anyhow::Error) -> (Kind, u8) {
    let policy = e.chain().any(|c| {
        c.downcast_ref::<Refusal>().is_some_and(Refusal::is_policy)
            || c.downcast_ref::<crate::host::overlay::UsrRefusal>().is_some()
            || c.downcast_ref::<crate::host::submounts::Uncarriable>().is_some()
    });
    if policy {
        (Kind::Policy, exit::POLICY)
    } else {
        (Kind::Error, exit::ERROR)
    }
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
    let json = cli.json();
    let result = run(&cli);
    // What no output carried (an error path, diff and apply-tree).
    let _ = render::warnings(&mut std::io::stderr(), &crate::messages::take());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // The report (with every action's result) is printed already.
        Err(e) if e.downcast_ref::<crate::systemd::activation::Failed>().is_some() => {
            if !json {
                eprintln!("livefs: error: {e:#}");
            }
            ExitCode::from(exit::ERROR)
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
                options: a.change.options(),
            };
            match crate::live::apply(&cli.paths(), &req) {
                Ok(o) => transition_output(a.change.json, &o, Verb::Apply),
                // Nothing pending: a no-op, so that automation can run apply blindly.
                Err(e) if matches!(crate::live::refusal(&e), Some(Refusal::NoPending)) => {
                    let doc = serde_json::json!({ "changed": false, "reason": e.to_string() });
                    output(a.change.json, &doc, &[], |out, _| render::nothing_to_do(&mut { out }, &e.to_string()))
                }
                Err(e) => Err(e),
            }
        }
        Command::Reset(a) => {
            let o = crate::live::reset(&cli.paths(), a.change.options())?;
            transition_output(a.change.json, &o, Verb::Reset)
        }
        Command::Restart(a) => {
            let o = crate::live::restart(&cli.paths(), a.dry_run)?;
            output(a.json, &o, &o.warnings, |out, o| render::restart(&mut { out }, o))?;
            activation_result(Some(&o.restart))
        }
    }
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
    if a.json {
        let doc = DiffJson { from, to, report: diff.report(&repo)? };
        return to_stdout(|out| render::json(&mut { out }, &doc));
    }
    if a.stat {
        let line = diff.report(&repo)?.stat_line();
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
    fn errors_map_to_exit_statuses() {
        let c = Checksum([0xc0; 32]);
        let io = || anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES));
        let uncarriable = || Uncarriable { path: "/usr/local".into(), why: "no /usr/local".into() };
        let cases: Vec<(anyhow::Error, (Kind, u8))> = vec![
            (Refusal::Replacement(vec!["/usr/bin/a".into()]).into(), (Kind::Policy, exit::POLICY)),
            (Refusal::InterruptedOther { to: c }.into(), (Kind::Policy, exit::POLICY)),
            (Refusal::RpmOstreeLive("stamp".into()).into(), (Kind::Policy, exit::POLICY)),
            // Wrapped in context, a refusal is still one.
            (anyhow::Error::from(Refusal::InterruptedReset).context("in /"), (Kind::Policy, exit::POLICY)),
            (UsrRefusal::Hotfix.into(), (Kind::Policy, exit::POLICY)),
            (uncarriable().into(), (Kind::Policy, exit::POLICY)),
            (Refusal::PendingUnknown("bad origin".into()).into(), (Kind::Error, exit::ERROR)),
            (Refusal::InterruptedDryRun.into(), (Kind::Error, exit::ERROR)),
            (io().context("cannot open /sysroot"), (Kind::Error, exit::ERROR)),
            (crate::systemd::activation::Failed(vec!["restart web.service".into()]).into(), (Kind::Error, exit::ERROR)),
        ];
        for (e, want) in cases {
            assert_eq!(exit_status(&e), want, "{e:#}");
        }
    }
}
