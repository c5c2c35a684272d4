//! Rendering what the engines return: one function per output type, writing
//! into any `impl Write`, so that every text output is tested from a JSON
//! fixture (deserialize, render, compare) without running anything. Grouped
//! by what they show: [`status`], transitions ([`transition`]), what followed
//! an apply ([`health`]).

mod health;
mod status;
mod transition;

use std::io::{self, Write};

use crate::live::status::CommitInfo;
use crate::quote;
use crate::repo::Checksum;
use crate::tree::apply::TreeOutcome;
use crate::tree::diff::human_bytes;
use crate::tree::plan::PlannedOp;

pub use health::{applied, confirmed, rolled_back};
pub use status::{auto_run, status};
pub use transition::{outcome, restart};

/// Any output as pretty JSON, one document.
pub fn json(out: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Progress, as a person on stderr sees it; a long apply's counter only on a
/// terminal (`terminal`), overwriting itself.
pub fn progress(out: &mut impl Write, p: crate::messages::Progress, terminal: bool) -> io::Result<()> {
    use crate::messages::Progress;
    match p {
        Progress::WaitingForLock { seconds } => {
            writeln!(out, "livefs: waiting up to {seconds} s for another livefs to finish")
        }
        Progress::WaitingForSysrootLock => {
            writeln!(out, "livefs: waiting for the sysroot lock (another ostree process holds it)")
        }
        Progress::Operations { done, total } if terminal => {
            write!(out, "\rlivefs: {done}/{total} operations ({}%)", done * 100 / total.max(1))?;
            if done == total {
                writeln!(out)?;
            }
            Ok(())
        }
        Progress::Operations { .. } => Ok(()),
    }
}

/// Warnings, one line each (text mode writes them to stderr).
pub fn warnings(out: &mut impl Write, warnings: &[String]) -> io::Result<()> {
    warnings.iter().try_for_each(|w| writeln!(out, "livefs: warning: {w}"))
}

/// A commit as text shows it: its first 12 hex digits.
pub fn short(c: &Checksum) -> String {
    c.to_hex()[..12].to_string()
}

pub(super) fn commit(c: &CommitInfo) -> String {
    let version = c.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default();
    let subject = if c.subject.is_empty() { String::new() } else { format!(" \"{}\"", c.subject) };
    // An image's deployment is named by the image (bootc's composefs backend): shown short.
    let full = c.checksum.to_hex();
    let deployment = c
        .deployment
        .as_deref()
        .map(|d| match d.strip_suffix(full.as_str()) {
            Some(os) => format!(" ({os}{})", short(&c.checksum)),
            None => format!(" ({d})"),
        })
        .unwrap_or_default();
    let problem = c.problem.as_deref().map(|p| format!(" [{p}]")).unwrap_or_default();
    format!("{}{version}{subject}{deployment}{problem}", short(&c.checksum))
}

/// Which command an outcome answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Apply,
    Reset,
    Rollback,
}

/// A dry run's plan, one operation per line.
pub(super) fn plan(out: &mut impl Write, ops: &[PlannedOp]) -> io::Result<()> {
    for op in ops {
        let note = match op.status.as_str() {
            "done" => "  (already done)",
            "drifted" => "  (drifted)",
            _ => "",
        };
        writeln!(out, "{:<8} {}{note}", op.op, quote::path(&op.path))?;
    }
    Ok(())
}

/// `livefs apply` with nothing pending.
pub fn nothing_to_do(out: &mut impl Write, reason: &str) -> io::Result<()> {
    writeln!(out, "Nothing to do: {reason}")
}

/// A unit of the system's manager, or of a user's.
pub(super) fn of_user(unit: &str, user: Option<&str>) -> String {
    match user {
        Some(u) => format!("{unit} of user {u}"),
        None => unit.to_string(),
    }
}

/// ` in UNIT` for a process's unit, nothing when it is in none (`-`).
pub(super) fn in_unit(unit: &str) -> String {
    if unit == "-" {
        String::new()
    } else {
        format!(" in {unit}")
    }
}

/// `livefs apply-tree`.
pub fn apply_tree(out: &mut impl Write, o: &TreeOutcome) -> io::Result<()> {
    if o.dry_run {
        plan(out, &o.plan)?;
        return writeln!(
            out,
            "{} operations, {} to write (dry run: nothing changed)",
            o.plan.len(),
            human_bytes(o.bytes_to_write)
        );
    }
    let c = &o.report.counts;
    let resumed = match o.report.already_done {
        0 => String::new(),
        n => format!(" ({n} operations were already done by an interrupted run)"),
    };
    writeln!(
        out,
        "{}: {} added ({} directories), {} replaced, {} removed; {} written in {:.0} ms{resumed}",
        o.target,
        c.added_files + c.added_dirs,
        c.added_dirs,
        c.replaced_files + c.replaced_dirs,
        c.removed_files + c.removed_dirs,
        human_bytes(o.report.bytes_written),
        o.elapsed_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::auto::AutoRun;
    use crate::live::status::Status;
    use crate::live::transition::Outcome;
    use crate::live::RestartOutcome;

    /// Waits are always said; a long apply's counter only on a terminal, on
    /// one line that ends when the count does.
    #[test]
    fn progress_on_stderr() {
        use crate::messages::Progress;
        let shown = |events: &[Progress], terminal: bool| {
            let mut out = Vec::new();
            events.iter().for_each(|p| progress(&mut out, *p, terminal).unwrap());
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            shown(&[Progress::WaitingForLock { seconds: 60 }], false),
            "livefs: waiting up to 60 s for another livefs to finish\n"
        );
        assert!(shown(&[Progress::WaitingForSysrootLock], false).contains("another ostree process holds it"));
        let ops = [Progress::Operations { done: 500, total: 1000 }, Progress::Operations { done: 1000, total: 1000 }];
        assert_eq!(shown(&ops, false), "");
        assert_eq!(shown(&ops, true), "\rlivefs: 500/1000 operations (50%)\rlivefs: 1000/1000 operations (100%)\n");
    }

    /// A fixture: the JSON a command printed, and the text it renders to.
    struct Fixture {
        name: &'static str,
        json: &'static str,
        text: &'static str,
        render: fn(&mut Vec<u8>, &str) -> io::Result<()>,
    }

    macro_rules! fixture {
        ($name:literal, $render:expr) => {
            Fixture {
                name: $name,
                json: include_str!(concat!("../fixtures/", $name, ".json")),
                text: include_str!(concat!("../fixtures/", $name, ".txt")),
                render: $render,
            }
        };
    }

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).expect("a fixture that deserializes")
    }

    /// Every fixture renders to its text. `LIVEFS_BLESS=1 cargo test --lib`
    /// rewrites the texts from what the renderers print now (review the diff).
    #[test]
    fn fixtures_render_to_their_text() {
        let fixtures = [
            fixture!("status-booted", |out, j| status(out, &parse(j))),
            fixture!("status-live", |out, j| status(out, &parse(j))),
            fixture!("apply-dry", |out, j| outcome(out, &parse(j), Verb::Apply)),
            fixture!("apply", |out, j| outcome(out, &parse(j), Verb::Apply)),
            fixture!("reset-dry", |out, j| outcome(out, &parse(j), Verb::Reset)),
            fixture!("reset", |out, j| outcome(out, &parse(j), Verb::Reset)),
            fixture!("restart", |out, j| restart(out, &parse(j))),
            fixture!("auto-left", |out, j| auto_run(out, &parse(j), "Automatic run:")),
            fixture!("auto-refused", |out, j| auto_run(out, &parse(j), "Automatic run:")),
            fixture!("applied-rolled-back", |out, j| applied(out, &parse(j))),
            fixture!("applied-dry", |out, j| applied(out, &parse(j))),
            fixture!("rollback", |out, j| rolled_back(out, &parse(j))),
            fixture!("status-way-back", |out, j| status(out, &parse(j))),
            fixture!("status-damaged", |out, j| status(out, &parse(j))),
            fixture!("status-composefs", |out, j| status(out, &parse(j))),
        ];
        let bless = std::env::var_os("LIVEFS_BLESS").is_some();
        let mut wrong = Vec::new();
        for f in &fixtures {
            let mut out = Vec::new();
            (f.render)(&mut out, f.json).unwrap();
            let text = String::from_utf8(out).unwrap();
            if bless {
                let path = format!("{}/src/cli/fixtures/{}.txt", env!("CARGO_MANIFEST_DIR"), f.name);
                std::fs::write(path, &text).unwrap();
            } else if text != f.text {
                wrong.push(format!("{}:\n--- want\n{}--- got\n{text}", f.name, f.text));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// The JSON of every fixture is what the engines serialize: nothing lost or
    /// added in a round trip.
    #[test]
    fn fixtures_round_trip() {
        fn same<T: serde::Serialize + serde::de::DeserializeOwned>(json: &str) {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let back = serde_json::to_value(parse::<T>(json)).unwrap();
            assert_eq!(back, value);
        }
        same::<Status>(include_str!("../fixtures/status-booted.json"));
        same::<Status>(include_str!("../fixtures/status-live.json"));
        same::<Outcome>(include_str!("../fixtures/apply-dry.json"));
        same::<Outcome>(include_str!("../fixtures/apply.json"));
        same::<Outcome>(include_str!("../fixtures/reset.json"));
        same::<RestartOutcome>(include_str!("../fixtures/restart.json"));
        same::<AutoRun>(include_str!("../fixtures/auto-left.json"));
        same::<AutoRun>(include_str!("../fixtures/auto-refused.json"));
        same::<crate::live::Applied>(include_str!("../fixtures/applied-rolled-back.json"));
        same::<crate::live::Applied>(include_str!("../fixtures/applied-dry.json"));
        same::<crate::live::rollback::RolledBack>(include_str!("../fixtures/rollback.json"));
        same::<Status>(include_str!("../fixtures/status-way-back.json"));
        same::<Status>(include_str!("../fixtures/status-damaged.json"));
        same::<Status>(include_str!("../fixtures/status-composefs.json"));
    }
}
