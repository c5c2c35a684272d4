//! What needs a restart after an apply. livefs never restarts anything itself; it
//! reports:
//! - units whose unit files (or drop-ins) changed and that are active;
//! - processes that still run a replaced or removed executable or map a replaced
//!   or removed library, from `/proc/PID/exe` and `/proc/PID/maps`, grouped by
//!   their systemd unit (`/proc/PID/cgroup`).
//!
//! Paths read from a process are only compared and `lstat`ed, never opened or
//! executed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// A process holding replaced files.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StaleProcess {
    pub pid: u32,
    pub command: String,
    /// The replaced or removed paths it still uses (as on the running system).
    pub files: Vec<String>,
}

/// The restart report of an apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Restarts {
    /// Active units whose unit files changed.
    pub units: Vec<String>,
    /// Processes holding replaced files, by unit (`-` when not in a unit).
    pub processes: BTreeMap<String, Vec<StaleProcess>>,
}

impl Restarts {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.processes.is_empty()
    }
}

/// The unit names whose files are among `changed` (absolute paths).
pub fn changed_units<'a>(changed: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in changed {
        for dir in ["/usr/lib/systemd/system/", "/etc/systemd/system/"] {
            let Some(rest) = p.strip_prefix(dir) else { continue };
            // foo.service, or foo.service.d/override.conf
            let first = rest.split('/').next().unwrap_or("");
            let unit = first.strip_suffix(".d").unwrap_or(first);
            if unit.contains('.') && !unit.ends_with(".wants") && !unit.ends_with(".requires") {
                out.insert(unit.to_string());
            }
        }
    }
    out
}

/// Whether systemd runs the system at `root` (so units can be asked about).
fn systemd_runs(root: &Path) -> bool {
    root == Path::new("/") && Path::new("/run/systemd/system").exists()
}

/// Builds the report: `changed` are the absolute paths (as under ROOT, e.g.
/// `/usr/lib/libfoo.so.1`) this apply replaced or removed, plus changed unit files.
pub fn report(root: &Path, replaced: &HashSet<String>, changed_unit_files: &[String]) -> Restarts {
    let mut r = Restarts::default();
    if systemd_runs(root) {
        for unit in changed_units(changed_unit_files.iter().map(String::as_str)) {
            let active = Command::new("systemctl")
                .args(["is-active", "--quiet", &unit])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if active {
                r.units.push(unit);
            }
        }
    }
    if replaced.is_empty() {
        return r;
    }
    // Paths as processes see them: ROOT-prefixed when ROOT is not /.
    let prefix = if root == Path::new("/") { String::new() } else { root.display().to_string() };
    let Ok(procs) = std::fs::read_dir("/proc") else { return r };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == std::process::id() {
            continue;
        }
        let files = stale_files(pid, &prefix, replaced);
        if files.is_empty() {
            continue;
        }
        let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        let unit = unit_of(pid).unwrap_or_else(|| "-".into());
        r.processes.entry(unit).or_default().push(StaleProcess { pid, command, files });
    }
    r
}

/// The replaced paths process `pid` runs or maps.
fn stale_files(pid: u32, prefix: &str, replaced: &HashSet<String>) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut consider = |raw: &str, inode: Option<u64>| {
        let (path, deleted) = match raw.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (raw, false),
        };
        let Some(rel) = path.strip_prefix(prefix) else { return };
        if !replaced.contains(rel) {
            return;
        }
        // Still the same file as the path now names? Then it is not stale.
        let same = !deleted
            && inode.is_some()
            && std::fs::symlink_metadata(path).map(|m| Some(m.ino()) == inode).unwrap_or(false);
        if !same {
            out.insert(rel.to_string());
        }
    };
    if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        let ino = std::fs::metadata(format!("/proc/{pid}/exe")).ok().map(|m| m.ino());
        consider(&exe.to_string_lossy(), ino);
    }
    if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        for line in maps.lines() {
            // address perms offset dev inode path
            let mut fields = line.splitn(6, ' ');
            let inode = fields.nth(4).and_then(|i| i.parse::<u64>().ok());
            let Some(path) = fields.next().map(str::trim_start) else { continue };
            if path.starts_with('/') {
                consider(path, inode);
            }
        }
    }
    out.into_iter().collect()
}

/// The systemd unit of a process, from its cgroup path.
fn unit_of(pid: u32) -> Option<String> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let line = cgroup
        .lines()
        .find(|l| l.starts_with("0::"))
        .or_else(|| cgroup.lines().find(|l| l.contains("name=systemd")))?;
    let path = line.rsplit(':').next()?;
    path.rsplit('/').find(|c| c.ends_with(".service") || c.ends_with(".scope")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_paths() {
        let u = changed_units([
            "/usr/lib/systemd/system/httpd.service",
            "/etc/systemd/system/sshd.service.d/override.conf",
            "/usr/lib/systemd/system/multi-user.target.wants/httpd.service",
            "/usr/bin/httpd",
        ]);
        assert_eq!(u.into_iter().collect::<Vec<_>>(), ["httpd.service", "sshd.service"]);
    }
}
