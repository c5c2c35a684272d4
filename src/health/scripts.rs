//! greenboot's checks and scripts, found and run as greenboot runs them at boot,
//! so that the checks admins already wrote serve a live update too: the files
//! of `check/required.d/` (each must exit 0), `check/wanted.d/` (a failure is a
//! warning), `green.d/` (after a healthy update) and `red.d/` (after a
//! rollback), of `/usr/lib/greenboot/` and `/etc/greenboot/` — one set by file
//! name, `/etc` winning, in name order. A file ending in `.sh` runs with bash
//! (as greenboot runs it), another only when executable. `DISABLED_HEALTHCHECKS`
//! of `/etc/greenboot/greenboot.conf` skips checks by name, as greenboot does.
//! Every command runs with a timeout, in a process group of its own (killed
//! whole when it runs over), and what it printed last is kept.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// greenboot's directories, beneath ROOT, lowest precedence first.
pub const DIRS: [&str; 2] = ["usr/lib/greenboot", "etc/greenboot"];
/// greenboot's configuration (`DISABLED_HEALTHCHECKS=(…)`), beneath ROOT.
pub const CONF: &str = "etc/greenboot/greenboot.conf";

/// Which of greenboot's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Required,
    Wanted,
    Green,
    Red,
}

impl Set {
    pub fn dir(self) -> &'static str {
        match self {
            Set::Required => "check/required.d",
            Set::Wanted => "check/wanted.d",
            Set::Green => "green.d",
            Set::Red => "red.d",
        }
    }
}

/// A command to run: a greenboot file, or a `--check` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runnable {
    /// How reports name it: the file's absolute path (as on the running
    /// system), or the command line.
    pub name: String,
    pub argv: Vec<String>,
}

/// The files of one set: (name, directory it is taken from, whether it may run).
/// Pure: one entry per name, the later directory winning, in name order.
pub fn merge(listings: &[(&str, Vec<(String, bool)>)]) -> Vec<(String, String)> {
    let mut by_name: std::collections::BTreeMap<String, (String, bool)> = Default::default();
    for (dir, files) in listings {
        for (name, runnable) in files {
            by_name.insert(name.clone(), (dir.to_string(), *runnable));
        }
    }
    by_name.into_iter().filter(|(_, (_, ok))| *ok).map(|(name, (dir, _))| (name, dir)).collect()
}

/// The names `DISABLED_HEALTHCHECKS=( "a.sh" "b.sh" )` lists in greenboot.conf
/// (a bash array, on one line or several).
pub fn disabled(conf: &str) -> Vec<String> {
    let Some(start) = conf.lines().position(|l| l.trim_start().starts_with("DISABLED_HEALTHCHECKS=(")) else {
        return Vec::new();
    };
    let mut text = String::new();
    for line in conf.lines().skip(start) {
        let line = line.split('#').next().unwrap_or("");
        text.push_str(line);
        text.push(' ');
        if line.contains(')') {
            break;
        }
    }
    let inner = text.split_once('(').map(|(_, r)| r).unwrap_or("");
    let inner = inner.split(')').next().unwrap_or("");
    inner
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The files of `set` on the system at `root`, ready to run.
pub fn greenboot(root: &Path, set: Set) -> Vec<Runnable> {
    let listings: Vec<(&str, Vec<(String, bool)>)> =
        DIRS.iter().map(|d| (*d, list(&root.join(d).join(set.dir())))).collect();
    let skip = if matches!(set, Set::Required | Set::Wanted) {
        disabled(&std::fs::read_to_string(root.join(CONF)).unwrap_or_default())
    } else {
        Vec::new()
    };
    merge(&listings)
        .into_iter()
        .filter(|(name, _)| !skip.contains(name))
        .map(|(name, dir)| {
            let path = root.join(&dir).join(set.dir()).join(&name);
            let shown = format!("/{dir}/{}/{name}", set.dir());
            let argv = if name.ends_with(".sh") {
                vec!["bash".to_string(), path.display().to_string()]
            } else {
                vec![path.display().to_string()]
            };
            Runnable { name: shown, argv }
        })
        .collect()
}

/// The entries of a directory: name, and whether it is a file greenboot runs.
fn list(dir: &Path) -> Vec<(String, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // Followed, as greenboot follows them: a check may be a link to a script.
            let m = std::fs::metadata(e.path()).ok();
            let runnable =
                m.is_some_and(|m| m.is_file() && (name.ends_with(".sh") || m.permissions().mode() & 0o111 != 0));
            Some((name, runnable))
        })
        .collect()
}

/// A `--check` command line, run by `sh -c`.
pub fn command(cmd: &str) -> Runnable {
    Runnable { name: cmd.to_string(), argv: vec!["sh".into(), "-c".into(), cmd.into()] }
}

/// How a command went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ran {
    pub name: String,
    /// `None` in a dry run (not run).
    pub ok: Option<bool>,
    /// Its exit status (none: killed, or not run).
    pub exit_status: Option<i32>,
    pub timed_out: bool,
    /// The last lines it printed (stdout and stderr, in order).
    pub output: String,
    pub seconds: f64,
}

impl Ran {
    /// A command a dry run would run.
    pub fn would(r: &Runnable) -> Ran {
        Ran { name: r.name.clone(), ok: None, exit_status: None, timed_out: false, output: String::new(), seconds: 0.0 }
    }
}

/// The most of a command's output kept: its last lines.
const OUTPUT_LINES: usize = 20;
const OUTPUT_BYTES: usize = 4096;

/// Runs `r` with `env`, stdin from /dev/null, killed (with its whole process
/// group) after `timeout`.
pub fn run(r: &Runnable, env: &[(&str, String)], timeout: Duration) -> Ran {
    let start = Instant::now();
    let failed = |why: String| Ran {
        name: r.name.clone(),
        ok: Some(false),
        exit_status: None,
        timed_out: false,
        output: why,
        seconds: start.elapsed().as_secs_f64(),
    };
    let (reader, writer) = match rustix::pipe::pipe() {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot make a pipe: {e}")),
    };
    let mut cmd = Command::new(&r.argv[0]);
    cmd.args(&r.argv[1..]).stdin(Stdio::null()).current_dir("/").process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (out, err) = match (writer.try_clone(), writer) {
        (Ok(a), b) => (a, b),
        (Err(e), _) => return failed(format!("cannot duplicate a pipe: {e}")),
    };
    cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot run {}: {e}", r.argv[0])),
    };
    // The pipe's write ends are the child's only (dropped with `cmd`).
    drop(cmd);
    let collector = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::fs::File::from(reader).read_to_end(&mut all);
        all
    });
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(st)) => break (Some(st), false),
            Ok(None) if start.elapsed() >= timeout => {
                let pgid = rustix::process::Pid::from_child(&child);
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return failed(format!("cannot wait for {}: {e}", r.name)),
        }
    };
    // What outlived it in its group (a daemon it started) must not hold the pipe open.
    let _ =
        rustix::process::kill_process_group(rustix::process::Pid::from_child(&child), rustix::process::Signal::KILL);
    let output = tail(&collector.join().unwrap_or_default());
    let exit_status = status.and_then(|s| s.code());
    Ran {
        name: r.name.clone(),
        ok: Some(status.is_some_and(|s| s.success())),
        exit_status,
        timed_out,
        output: if timed_out { format!("{output}(killed after {} s)\n", timeout.as_secs()) } else { output },
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// The last lines of `bytes`, as text.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(OUTPUT_BYTES)..]);
    let lines: Vec<&str> = text.lines().collect();
    let kept = &lines[lines.len().saturating_sub(OUTPUT_LINES)..];
    kept.iter().map(|l| format!("{l}\n")).collect()
}

/// Where the files of a set would be (for messages).
pub fn dirs_of(root: &Path, set: Set) -> Vec<PathBuf> {
    DIRS.iter().map(|d| root.join(d).join(set.dir())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_set_by_name_etc_wins_in_name_order() {
        let f = |n: &str, ok: bool| (n.to_string(), ok);
        let usr = ("usr/lib/greenboot", vec![f("20-b.sh", true), f("10-a", true), f("30-c", true), f("README", false)]);
        let etc = ("etc/greenboot", vec![f("10-a", true), f("05-z.sh", true), f("30-c", false)]);
        // 30-c: the admin's non-executable file in /etc masks /usr's, as systemd's masking does.
        assert_eq!(
            merge(&[usr, etc]),
            [
                ("05-z.sh".to_string(), "etc/greenboot".to_string()),
                ("10-a".to_string(), "etc/greenboot".to_string()),
                ("20-b.sh".to_string(), "usr/lib/greenboot".to_string()),
            ]
        );
    }

    #[test]
    fn disabled_checks_as_greenboot_conf_lists_them() {
        let conf = "# x\nGREENBOOT_WATCHDOG_CHECK_ENABLED=true\nDISABLED_HEALTHCHECKS=(\n\t\"01_repository_dns_check.sh\" # dns\n 02_watchdog.sh\n)\n";
        assert_eq!(disabled(conf), ["01_repository_dns_check.sh", "02_watchdog.sh"]);
        assert_eq!(disabled("DISABLED_HEALTHCHECKS=()\n"), Vec::<String>::new());
        assert_eq!(disabled("DISABLED_HEALTHCHECKS=('a.sh' \"b.sh\")"), ["a.sh", "b.sh"]);
        assert!(disabled("").is_empty());
    }

    #[test]
    fn a_command_runs_with_its_output_and_status_and_a_timeout() {
        let env = [("LIVEFS_TO", "abc".to_string())];
        let ok = run(&command("echo one; echo two >&2; echo $LIVEFS_TO"), &env, Duration::from_secs(10));
        assert_eq!((ok.ok, ok.exit_status, ok.timed_out), (Some(true), Some(0), false));
        assert_eq!(ok.output, "one\ntwo\nabc\n");
        let bad = run(&command("seq 100; exit 3"), &[], Duration::from_secs(10));
        assert_eq!((bad.ok, bad.exit_status), (Some(false), Some(3)));
        assert_eq!(bad.output.lines().count(), OUTPUT_LINES);
        assert!(bad.output.ends_with("100\n"), "{}", bad.output);
        // A check that hangs, with a child of its own holding the output open.
        let start = Instant::now();
        let slow = run(&command("sleep 60 & sleep 60"), &[], Duration::from_millis(300));
        assert!(start.elapsed() < Duration::from_secs(5), "not killed in time");
        assert_eq!((slow.ok, slow.timed_out, slow.exit_status), (Some(false), true, None));
        let missing =
            run(&Runnable { name: "x".into(), argv: vec!["/nonexistent/check".into()] }, &[], Duration::from_secs(1));
        assert_eq!(missing.ok, Some(false));
        assert!(missing.output.contains("cannot run /nonexistent/check"), "{}", missing.output);
    }
}
