//! The `livefs` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::diff::Diff;
use crate::repo::Repo;

/// Apply an OSTree update to a running system, without a reboot.
#[derive(Debug, Parser)]
#[command(name = "livefs", version, about)]
struct Cli {
    /// The running system's root: deployments, /usr, /etc, /var and /run are found under it.
    #[arg(long, global = true, default_value = "/", value_hint = clap::ValueHint::DirPath)]
    root: PathBuf,
    /// The physical root holding ostree/ and boot/ [default: ROOT/sysroot].
    #[arg(long, global = true, value_hint = clap::ValueHint::DirPath)]
    sysroot: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Whether the command asked for JSON output.
    fn json(&self) -> bool {
        match &self.command {
            Command::Diff { json, .. } | Command::ApplyTree { json, .. } | Command::Status { json } => *json,
            Command::Apply { change, .. } | Command::Reset { change } => change.json,
            Command::Restart { json, .. } => *json,
        }
    }

    fn paths(&self) -> crate::live::Paths {
        let sysroot = self.sysroot.clone().unwrap_or_else(|| self.root.join("sysroot"));
        crate::live::Paths { root: self.root.clone(), sysroot }
    }

    /// `--repo`, else the system's repository `SYSROOT/ostree/repo`.
    fn repo(&self, repo: &Option<PathBuf>) -> PathBuf {
        repo.clone().unwrap_or_else(|| self.paths().sysroot.join("ostree/repo"))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what changed between two commits, in `ostree diff`'s format.
    ///
    /// Unlike `ostree diff`, a change of the root directory's own metadata is
    /// reported, as `M    /`.
    Diff {
        /// The OSTree repository [default: SYSROOT/ostree/repo].
        #[arg(long, value_hint = clap::ValueHint::DirPath)]
        repo: Option<PathBuf>,
        /// Machine-readable output: every path with its type, counts, bytes to write.
        #[arg(long, conflicts_with = "stat")]
        json: bool,
        /// A one-line summary.
        #[arg(long)]
        stat: bool,
        /// The old revision: checksum, unique prefix, ref, or REV^ for a parent.
        from: String,
        /// The new revision.
        to: String,
    },
    /// Turn a directory holding one commit's content into the next commit's, in place.
    ///
    /// Only the difference is written; each file is replaced atomically; an
    /// interrupted run is finished by running the same command again.
    ApplyTree {
        /// The OSTree repository [default: SYSROOT/ostree/repo].
        #[arg(long, value_hint = clap::ValueHint::DirPath)]
        repo: Option<PathBuf>,
        /// The commit the directory holds now.
        #[arg(long)]
        from: String,
        /// The commit the directory must hold afterwards.
        #[arg(long)]
        to: String,
        /// The directory of the commits that TARGET_DIR holds, e.g. /usr.
        #[arg(long, default_value = "/")]
        subpath: String,
        /// Check and print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable report: every path by kind, counts, bytes, time.
        #[arg(long)]
        json: bool,
        /// Overwrite paths that differ from what the source commit has.
        #[arg(long)]
        force: bool,
        /// The directory to update.
        #[arg(value_hint = clap::ValueHint::DirPath)]
        target: PathBuf,
    },
    /// Show the booted, pending and live commits and the state of /usr.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Apply the pending deployment (or --target) to the running /usr, now.
    ///
    /// By default only additions are applied; changing or removing existing
    /// files needs --allow-replacement. The changes live in a transient overlay
    /// that the next reboot discards. An interrupted apply is resumed by running
    /// it again.
    Apply {
        /// The commit to apply [default: the pending deployment's].
        #[arg(long)]
        target: Option<String>,
        /// Allow changing and removing existing files and directories in /usr.
        #[arg(long)]
        allow_replacement: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Bring the running /usr and /etc back to the booted commit's content.
    Reset {
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Restart what earlier applies left running old code, start what they newly enabled.
    ///
    /// As a boot would, after NixOS's switch-to-configuration: `daemon-reload` if
    /// systemd has not loaded the changed unit files, then stop active units whose
    /// unit file was removed, reload units marked X-ReloadIfChanged=true, restart
    /// active units whose unit files or drop-ins changed since they started or
    /// whose processes use replaced or removed files, start units newly wanted by
    /// an active target. Units marked X-RestartIfChanged=false or
    /// RefuseManualStop=yes, the message bus, PID 1 and livefs's own unit are
    /// left alone; processes outside system services (sessions, user managers)
    /// are listed, never killed. A failed action is reported with the unit's
    /// status and exit status 1.
    Restart {
        /// List what would be stopped, reloaded, restarted and started; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable report: every action and its result.
        #[arg(long)]
        json: bool,
    },
}

/// Options of the commands that change the running system.
#[derive(Debug, clap::Args)]
struct ChangeArgs {
    /// Check and print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Machine-readable report.
    #[arg(long)]
    json: bool,
    /// Run no trigger (systemd-sysusers, systemd-tmpfiles, ldconfig, daemon-reload).
    #[arg(long)]
    no_triggers: bool,
    /// Then finish as a boot would: restart (or reload) active units that run an
    /// old definition or old code, stop units whose unit file went away, start
    /// units newly wanted by an active target (see livefs-restart(8)).
    #[arg(long)]
    restart: bool,
}

/// Exit statuses, as the man pages and README document them.
pub mod exit {
    /// Done (including nothing to do).
    pub const OK: u8 = 0;
    /// An error: bad input, a missing object, a failed system call.
    pub const ERROR: u8 = 1;
    /// The command line is wrong (clap's own status).
    pub const USAGE: u8 = 2;
    /// Refused by policy (replacement not allowed, an interrupted transition, a
    /// foreign overlay or live state): nothing changed.
    pub const POLICY: u8 = 3;
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // The report (with every action's result) is printed already.
        Err(e) if e.downcast_ref::<crate::activation::Failed>().is_some() => {
            if !json {
                eprintln!("livefs: error: {e:#}");
            }
            ExitCode::from(exit::ERROR)
        }
        Err(e) => {
            let (kind, status) = if is_policy(&e) { ("policy", exit::POLICY) } else { ("error", exit::ERROR) };
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}"), "kind": kind }));
            } else {
                eprintln!("livefs: error: {e:#}");
            }
            ExitCode::from(status)
        }
    }
}

/// A refusal that changed nothing, by policy.
fn is_policy(e: &anyhow::Error) -> bool {
    use crate::live::PolicyError;
    e.chain().any(|c| {
        matches!(c.downcast_ref::<PolicyError>(), Some(p) if !matches!(p, PolicyError::NoPending))
            || c.downcast_ref::<crate::overlay::UsrRefusal>().is_some()
            || c.downcast_ref::<crate::submounts::Uncarriable>().is_some()
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Diff { repo, json, stat, from, to } => cmd_diff(&cli.repo(repo), *json, *stat, from, to),
        Command::ApplyTree { repo, from, to, subpath, dry_run, json, force, target } => {
            cmd_apply_tree(&ApplyTreeArgs {
                repo: cli.repo(repo),
                from: from.clone(),
                to: to.clone(),
                subpath: subpath.clone(),
                dry_run: *dry_run,
                json: *json,
                force: *force,
                target: target.clone(),
            })
        }
        Command::Status { json } => cmd_status(&cli.paths(), *json),
        Command::Apply { target, allow_replacement, change } => {
            let req = crate::live::Request {
                target: target.clone(),
                allow_replacement: *allow_replacement,
                dry_run: change.dry_run,
                no_triggers: change.no_triggers,
                restart: change.restart,
            };
            match crate::live::apply(&cli.paths(), &req) {
                Ok(outcome) => {
                    print_outcome(&outcome, change.json, "apply")?;
                    activation_result(outcome.restart.as_ref())
                }
                // Nothing pending: a no-op, so that automation can run apply blindly.
                Err(e) if matches!(e.downcast_ref(), Some(crate::live::PolicyError::NoPending)) => {
                    if change.json {
                        println!("{}", serde_json::json!({ "changed": false, "reason": e.to_string() }));
                    } else {
                        println!("Nothing to do: {e}");
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Command::Reset { change } => {
            let req = crate::live::Request {
                dry_run: change.dry_run,
                no_triggers: change.no_triggers,
                restart: change.restart,
                ..Default::default()
            };
            let outcome = crate::live::reset(&cli.paths(), &req)?;
            print_outcome(&outcome, change.json, "reset")?;
            activation_result(outcome.restart.as_ref())
        }
        Command::Restart { dry_run, json } => {
            let outcome = crate::live::restart(&cli.paths(), *dry_run)?;
            print_restart(&outcome, *json)?;
            activation_result(Some(&outcome.restart))
        }
    }
}

fn open_rev(repo: &Repo, rev: &str) -> anyhow::Result<crate::repo::Checksum> {
    let c = repo.resolve_rev(rev)?;
    if repo.is_partial(c) {
        eprintln!("livefs: warning: commit {c} ('{rev}') is partial: some of its objects may be missing");
    }
    Ok(c)
}

/// `livefs diff --json`: the two commits, then the report's fields.
#[derive(serde::Serialize)]
struct DiffJson {
    from: crate::repo::Checksum,
    to: crate::repo::Checksum,
    #[serde(flatten)]
    report: crate::diff::Report,
}

fn cmd_diff(repo: &std::path::Path, json: bool, stat: bool, from: &str, to: &str) -> anyhow::Result<()> {
    let repo = Repo::open(repo)?;
    let a = open_rev(&repo, from)?;
    let b = open_rev(&repo, to)?;
    let diff = Diff::commits(&repo, a, b)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json || stat {
        let report = diff.report(&repo)?;
        if json {
            let doc = DiffJson { from: a, to: b, report };
            serde_json::to_writer_pretty(&mut out, &doc).context("cannot write output")?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", report.stat_line())?;
        }
    } else {
        diff.write_ostree_format(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

struct ApplyTreeArgs {
    repo: PathBuf,
    from: String,
    to: String,
    subpath: String,
    dry_run: bool,
    json: bool,
    force: bool,
    target: PathBuf,
}

/// `livefs apply-tree --json`.
#[derive(serde::Serialize)]
struct ApplyJson<'a> {
    from: crate::repo::Checksum,
    to: crate::repo::Checksum,
    subpath: &'a str,
    target: String,
    dry_run: bool,
    #[serde(flatten)]
    report: crate::apply::Report,
    bytes_to_write: u64,
    elapsed_ms: f64,
}

fn cmd_apply_tree(args: &ApplyTreeArgs) -> anyhow::Result<()> {
    use crate::diff::TreeRoot;
    let started = std::time::Instant::now();
    let repo = Repo::open(&args.repo)?;
    let a = open_rev(&repo, &args.from)?;
    let b = open_rev(&repo, &args.to)?;
    let ca = repo.read_commit(a).with_context(|| format!("cannot read commit {a}"))?;
    let cb = repo.read_commit(b).with_context(|| format!("cannot read commit {b}"))?;
    let ra = TreeRoot::of_subpath(&repo, &ca, &args.subpath).with_context(|| format!("in commit {a}"))?;
    let rb = TreeRoot::of_subpath(&repo, &cb, &args.subpath).with_context(|| format!("in commit {b}"))?;
    let diff = Diff::trees(&repo, ra, rb)?;
    let plan = crate::plan::Plan::new(&repo, &diff)?;
    let target_name = args.target.display().to_string();
    let root = crate::checkout::open_dir_path(&args.target)?;
    let status = crate::plan::preflight(&repo, &plan, std::os::fd::AsFd::as_fd(&root), &target_name, args.force)?;
    let report = if args.dry_run {
        crate::apply::Report::of_plan(&repo, &plan, &status)?
    } else {
        crate::apply::execute(&repo, &plan, &status, std::os::fd::AsFd::as_fd(&root))?
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        let doc = ApplyJson {
            from: a,
            to: b,
            subpath: &args.subpath,
            target: target_name,
            dry_run: args.dry_run,
            report,
            bytes_to_write: plan.total.bytes,
            elapsed_ms,
        };
        serde_json::to_writer_pretty(&mut out, &doc).context("cannot write output")?;
        writeln!(out)?;
    } else if args.dry_run {
        write!(out, "{}", plan.describe(&status))?;
        writeln!(
            out,
            "{} operations, {} to write (dry run: nothing changed)",
            plan.ops.len(),
            crate::diff::human_bytes(plan.total.bytes)
        )?;
    } else {
        let c = &report.counts;
        let resumed = match report.already_done {
            0 => String::new(),
            n => format!(" ({n} operations were already done by an interrupted run)"),
        };
        writeln!(
            out,
            "{target_name}: {} added ({} directories), {} replaced, {} removed; {} written in {:.0} ms{resumed}",
            c.added_files + c.added_dirs,
            c.added_dirs,
            c.replaced_files + c.replaced_dirs,
            c.removed_files + c.removed_dirs,
            crate::diff::human_bytes(report.bytes_written),
            elapsed_ms
        )?;
    }
    out.flush()?;
    Ok(())
}

fn short(c: &crate::repo::Checksum) -> String {
    c.to_hex()[..12].to_string()
}

fn describe_commit(c: &crate::live::CommitInfo) -> String {
    let version = c.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default();
    let subject = if c.subject.is_empty() { String::new() } else { format!(" \"{}\"", c.subject) };
    let deployment = c.deployment.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
    format!("{}{version}{subject}{deployment}", short(&c.checksum))
}

fn cmd_status(paths: &crate::live::Paths, json: bool) -> anyhow::Result<()> {
    use crate::overlay::UsrState;
    use crate::state::LiveState;
    let st = crate::live::status(paths)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &st).context("cannot write output")?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    writeln!(out, "Booted:      {}", describe_commit(&st.booted))?;
    let pending = st.pending.as_ref().map(describe_commit).unwrap_or_else(|| "none".into());
    writeln!(out, "Pending:     {pending}")?;
    let live = match (&st.live, &st.state) {
        (Some(l), _) => describe_commit(l),
        (None, LiveState::Booted) => "none (/usr holds the booted commit)".into(),
        (None, LiveState::UsrLost { commit }) => format!(
            "none: the overlay of {} on /usr is gone (a soft reboot or an unmount), /usr holds the booted commit; \
             /etc still carries its changes: `livefs apply` brings it back, `livefs reset` restores /etc",
            short(commit)
        ),
        (None, _) => "none".into(),
    };
    writeln!(out, "Live:        {live}")?;
    if let Some((from, to)) = &st.in_progress {
        // Only commands that work: an interrupted reset is finished by a reset.
        let advice = if to.checksum == st.booted.checksum {
            "an interrupted reset: run `livefs reset` to finish it"
        } else {
            "interrupted: run `livefs apply` to finish it, or `livefs reset`"
        };
        writeln!(out, "In progress: {} -> {} ({advice})", short(&from.checksum), short(&to.checksum))?;
    }
    let usr = match &st.usr {
        UsrState::Locked => "read-only, not unlocked".to_string(),
        UsrState::Livefs { .. } => "transient overlay (livefs), read-only".to_string(),
        UsrState::OstreeTransient { read_only, .. } => {
            format!("ostree transient unlock, {}", if *read_only { "read-only" } else { "writable" })
        }
        UsrState::Hotfix => "ostree hotfix unlock (persistent)".to_string(),
        UsrState::Other { description } => description.clone(),
    };
    writeln!(out, "/usr:        {usr}")?;
    let b = &st.boot;
    let boot: Vec<&str> = [
        (b.composefs, "composefs"),
        (b.sysroot_ro, "read-only /sysroot"),
        (b.transient_etc.is_some(), "transient /etc (changes last until reboot)"),
        (b.root_transient, "transient /"),
    ]
    .into_iter()
    .filter_map(|(on, what)| on.then_some(what))
    .collect();
    if !boot.is_empty() {
        writeln!(out, "Boot:        {}", boot.join(", "))?;
    }
    if let Some(next) = &st.soft_reboot_into {
        writeln!(
            out,
            "Next root:   {} loaded at /run/nextroot: the next `systemctl reboot` is a soft reboot into it",
            describe_commit(next)
        )?;
    }
    if let Some(what) = &st.rpm_ostree_live {
        writeln!(out, "rpm-ostree:  live-applied to this boot ({what}); livefs leaves /usr to it")?;
    }
    if let Some(l) = &st.layer {
        writeln!(
            out,
            "Layer:       {} ({} written, {} linked to the repository), {} free",
            l.layer.display(),
            crate::diff::human_bytes(l.bytes_written),
            crate::diff::human_bytes(l.bytes_linked),
            crate::diff::human_bytes(l.free)
        )?;
    }
    print_restarts(&mut out, &st.restarts, "Needs restart")?;
    if let Some(s) = &st.strategy {
        print_strategy(&mut out, s, "the pending deployment")?;
    }
    if let Some(c) = &st.changes {
        writeln!(
            out,
            "Changes:     {} added, {} changed, {} removed (booted -> live, in /usr)",
            c.added, c.changed, c.removed
        )?;
    }
    out.flush()?;
    Ok(())
}

fn print_outcome(o: &crate::live::Outcome, json: bool, verb: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        serde_json::to_writer_pretty(&mut out, o).context("cannot write output")?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    if o.resumed {
        writeln!(out, "Resumed an interrupted apply.")?;
    }
    if o.dry_run {
        write!(out, "{}", o.plan_text)?;
    }
    let c = &o.report.counts;
    let what = format!(
        "{} added ({} directories), {} replaced, {} removed",
        c.added_files + c.added_dirs,
        c.added_dirs,
        c.replaced_files + c.replaced_dirs,
        c.removed_files + c.removed_dirs
    );
    if o.dry_run {
        writeln!(
            out,
            "Would {verb} {} -> {} in /usr: {what} (dry run: nothing changed)",
            short(&o.from),
            short(&o.to)
        )?;
    } else {
        let done = if verb == "reset" { "Reset /usr" } else { "Applied" };
        let to = if verb == "reset" { format!("{} (booted)", short(&o.to)) } else { short(&o.to) };
        writeln!(
            out,
            "{done} {} -> {to}: {what}; {} written.",
            short(&o.from),
            crate::diff::human_bytes(o.report.bytes_written)
        )?;
    }
    if let Some(l) = &o.layer {
        writeln!(
            out,
            "/usr switched to a new layer: {} file(s) linked to the repository ({}), {} copied ({}).",
            l.files_linked,
            crate::diff::human_bytes(l.bytes_linked),
            l.files_copied,
            crate::diff::human_bytes(l.bytes_written)
        )?;
    }
    if verb == "apply" {
        print_strategy(&mut out, &o.strategy, "this update")?;
    }
    for k in &o.kept {
        writeln!(out, "Kept {k} (modules of the running kernel)")?;
    }
    print_etc(&mut out, o)?;
    if o.etc_transient && !(o.etc.paths.is_empty() && o.etc_restored.is_empty()) {
        writeln!(out, "/etc is transient on this host (etc.transient): these changes last until reboot only")?;
    }
    for t in &o.triggers {
        let how = if t.skipped {
            "skipped"
        } else if t.ok {
            "ok"
        } else if t.gave_up {
            "FAILED (for the last time: not retried; run it by hand)"
        } else {
            "FAILED (will be retried by the next apply)"
        };
        writeln!(out, "Trigger {}: {how}", t.action)?;
        if !t.ok {
            for line in t.output.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    if let Some(a) = &o.restart {
        print_activation(&mut out, a)?;
    }
    match &o.restart {
        Some(a) if a.dry_run => {}
        _ if o.dry_run => print_restarts(&mut out, &o.restarts, "Would need restart")?,
        _ => print_restarts(&mut out, &o.restarts, "Needs restart")?,
    }
    out.flush()?;
    for w in &o.warnings {
        eprintln!("livefs: warning: {w}");
    }
    Ok(())
}

fn print_etc(out: &mut impl Write, o: &crate::live::Outcome) -> std::io::Result<()> {
    use crate::etc::EtcAction;
    let list = |a: EtcAction| o.etc.with(a).map(|p| format!("/etc{p}")).collect::<Vec<_>>();
    let (added, updated, removed) = (list(EtcAction::Added), list(EtcAction::Updated), list(EtcAction::Removed));
    if !(added.is_empty() && updated.is_empty() && removed.is_empty()) {
        writeln!(out, "/etc: {} added, {} updated, {} removed", added.len(), updated.len(), removed.len())?;
    }
    for p in list(EtcAction::Kept) {
        writeln!(out, "/etc: kept {p} (changed locally; the update's version is not applied)")?;
    }
    for p in list(EtcAction::Conflict) {
        writeln!(out, "/etc: conflict at {p} (changed locally, and the update changes its type): left alone")?;
    }
    for p in o.etc.paths.iter().filter(|p| p.action == EtcAction::Failed) {
        let why = p.error.as_deref().unwrap_or("unknown error");
        writeln!(out, "/etc: FAILED at /etc{}: {why} (left as it was)", p.path)?;
    }
    if !o.etc_restored.is_empty() {
        writeln!(out, "/etc: {} path(s) restored as they were before the first apply", o.etc_restored.len())?;
    }
    Ok(())
}

/// An error when a unit action failed: the transition stands, the exit status is 1.
fn activation_result(a: Option<&crate::activation::Activation>) -> anyhow::Result<()> {
    let failed: Vec<String> =
        a.into_iter().flat_map(|a| a.failed()).map(|f| format!("{} {}", f.verb.as_str(), f.unit)).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::activation::Failed(failed).into())
    }
}

fn print_activation(out: &mut impl Write, a: &crate::activation::Activation) -> std::io::Result<()> {
    let would = if a.dry_run { "Would " } else { "" };
    if a.daemon_reload {
        writeln!(out, "{would}systemctl daemon-reload")?;
    }
    if a.actions.is_empty() && a.skipped.is_empty() && a.left.is_empty() {
        return writeln!(out, "Restart: nothing to restart, stop or start");
    }
    for act in &a.actions {
        let verb = act.verb.as_str();
        let verb = if a.dry_run { verb.to_string() } else { format!("{}{}", &verb[..1].to_uppercase(), &verb[1..]) };
        let result = match &act.result {
            None => String::new(),
            Some(r) if r.ok => ": ok".to_string(),
            Some(_) => ": FAILED".to_string(),
        };
        writeln!(out, "{would}{verb} {} ({}){result}", act.unit, act.reasons.join("; "))?;
        if let Some(r) = act.result.as_ref().filter(|r| !r.ok) {
            for line in r.status.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    for s in &a.skipped {
        writeln!(out, "Left alone: {} ({})", s.unit, s.reason)?;
    }
    for l in &a.left {
        let (command, pid, files) = (&l.command, l.pid, l.files.join(", "));
        writeln!(
            out,
            "Not restarted: {command} (pid {pid}){} uses replaced {files}: restart it yourself",
            in_unit(&l.unit)
        )?;
    }
    Ok(())
}

fn print_restart(o: &crate::live::RestartOutcome, json: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        serde_json::to_writer_pretty(&mut out, o).context("cannot write output")?;
        writeln!(out)?;
    } else {
        print_activation(&mut out, &o.restart)?;
        if !o.restart.dry_run {
            print_restarts(&mut out, &o.restarts, "Needs restart")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn print_strategy(out: &mut impl Write, s: &crate::strategy::Strategy, what: &str) -> std::io::Result<()> {
    if s.live {
        writeln!(out, "Strategy:    {what} can go live as it is")?;
    } else {
        writeln!(out, "Strategy:    {what} can go live except for what needs a reboot:")?;
        for r in &s.reboot_for {
            writeln!(out, "  reboot for {r}")?;
        }
    }
    if !s.replaces.is_empty() {
        writeln!(out, "  it replaces or removes {} existing path(s) in /usr", s.replaces.len())?;
    }
    let r = &s.restarts;
    let mut restarts: Vec<String> = r.units.clone();
    for (unit, procs) in &r.processes {
        restarts.extend(procs.iter().map(|p| format!("{} (pid {}){}", p.command, p.pid, in_unit(unit))));
    }
    if !restarts.is_empty() {
        writeln!(out, "  then needs a restart: {}", restarts.join(", "))?;
    }
    Ok(())
}

/// ` in UNIT` for a process's unit, nothing when it is in none (`-`).
fn in_unit(unit: &str) -> String {
    if unit == "-" {
        String::new()
    } else {
        format!(" in {unit}")
    }
}

fn print_restarts(out: &mut impl Write, r: &crate::restart::Restarts, what: &str) -> std::io::Result<()> {
    for u in &r.units {
        writeln!(out, "{what}: {u} (its unit files changed)")?;
    }
    for (unit, procs) in &r.processes {
        for p in procs {
            let files = p.files.join(", ");
            writeln!(out, "{what}: {} (pid {}){} uses replaced {files}", p.command, p.pid, in_unit(unit))?;
        }
    }
    Ok(())
}
