//! The `livefs` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::diff::Diff;
use crate::repo::Repo;

/// The running system's repository.
const DEFAULT_REPO: &str = "/sysroot/ostree/repo";

/// Apply an OSTree update to a running system, without a reboot.
#[derive(Debug, Parser)]
#[command(name = "livefs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what changed between two commits, in `ostree diff`'s format.
    ///
    /// Unlike `ostree diff`, a change of the root directory's own metadata is
    /// reported, as `M    /`.
    Diff {
        /// The OSTree repository.
        #[arg(long, default_value = DEFAULT_REPO)]
        repo: PathBuf,
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
}

/// Runs the command line; errors become one line on stderr and exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livefs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Diff {
            repo,
            json,
            stat,
            from,
            to,
        } => cmd_diff(&repo, json, stat, &from, &to),
    }
}

fn open_rev(repo: &Repo, rev: &str) -> anyhow::Result<crate::repo::Checksum> {
    let c = repo.resolve_rev(rev)?;
    if repo.is_partial(c) {
        eprintln!(
            "livefs: warning: commit {c} ('{rev}') is partial: some of its objects may be missing"
        );
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

fn cmd_diff(
    repo: &std::path::Path,
    json: bool,
    stat: bool,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    let repo = Repo::open(repo)?;
    let a = open_rev(&repo, from)?;
    let b = open_rev(&repo, to)?;
    let diff = Diff::commits(&repo, a, b)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json || stat {
        let report = diff.report(&repo)?;
        if json {
            let doc = DiffJson {
                from: a,
                to: b,
                report,
            };
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
