//! What needs a restart after an apply (acting on it is `activation.rs`'s):
//! - units whose unit files (or drop-ins) changed and that are active, in the
//!   system manager and in each logged-in user's manager (`/usr/lib/systemd/user`);
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

use serde::{Deserialize, Serialize};

/// A process holding replaced files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StaleProcess {
    pub pid: u32,
    pub command: String,
    /// The replaced or removed paths it still uses (as on the running system).
    pub files: Vec<String>,
}

/// The restart report of an apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Restarts {
    /// Active units whose unit files changed.
    pub units: Vec<String>,
    /// Processes holding replaced files, by unit (`-` when not in a unit).
    pub processes: BTreeMap<String, Vec<StaleProcess>>,
    /// Active units of users' managers whose unit files changed, by user name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_units: BTreeMap<String, Vec<String>>,
}

impl Restarts {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.processes.is_empty() && self.user_units.is_empty()
    }
}

/// How a unit of users' managers is named among the changed units: the
/// system's and the users' unit names share one record.
pub const USER_UNIT: &str = "user/";

/// The unit names whose files are among `changed` (absolute paths): `foo.service`
/// for `…/foo.service` or a drop-in `…/foo.service.d/x.conf`; a template's own
/// name `foo@.service` when the template changed (it stands for all its instances).
/// Units of users' managers are named [`USER_UNIT`]`foo.service`.
pub fn changed_units<'a>(changed: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let dirs = UNIT_DIRS.iter().map(|d| (*d, "")).chain(USER_UNIT_DIRS.iter().map(|d| (*d, USER_UNIT)));
    let dirs: Vec<(&str, &str)> = dirs.collect();
    for p in changed {
        for (dir, kind) in &dirs {
            let Some(rest) = p.strip_prefix(dir) else { continue };
            // foo.service, or foo.service.d/override.conf
            let first = rest.split('/').next().unwrap_or("");
            let unit = first.strip_suffix(".d").unwrap_or(first);
            let Some((name, suffix)) = unit.rsplit_once('.') else { continue };
            if !name.is_empty() && UNIT_TYPES.contains(&suffix) {
                out.insert(format!("{kind}{unit}"));
            }
        }
    }
    out
}

/// Where system units live, as livefs changes them.
pub(crate) const UNIT_DIRS: [&str; 2] = ["/usr/lib/systemd/system/", "/etc/systemd/system/"];

/// Where units of users' managers live.
const USER_UNIT_DIRS: [&str; 2] = ["/usr/lib/systemd/user/", "/etc/systemd/user/"];

/// The unit types that have processes or state a restart renews.
const UNIT_TYPES: [&str; 7] = ["service", "socket", "timer", "path", "mount", "swap", "target"];

/// Whether systemd runs the system at `root` (so units can be asked about).
pub fn systemd_runs(root: &Path) -> bool {
    root == Path::new("/") && Path::new(crate::host::layout::SYSTEMD_RUNNING).exists()
}

/// Now, on the clock systemd stamps unit state changes with (`CLOCK_MONOTONIC`,
/// in microseconds): a unit last (re)started before its files changed runs the
/// old definition.
pub fn now_monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000 + (t.tv_nsec as u64) / 1_000
}

/// `systemctl` talking to the system's manager, or to user `user`'s: run as
/// that user on the manager's private socket (`$XDG_RUNTIME_DIR/systemd/private`),
/// which works without a message bus and whatever the user's session bus is.
pub(crate) fn systemctl_command(user: Option<&str>) -> Command {
    let Some(user) = user else { return Command::new("systemctl") };
    let uid = Command::new("id").args(["-u", "--", user]).output();
    let uid = uid.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let mut c = Command::new("runuser");
    c.args(["-u", user, "--", "env", &format!("XDG_RUNTIME_DIR=/run/user/{uid}"), "systemctl", "--user"]);
    c
}

/// Runs `systemctl [MANAGER] ARGS -- UNITS…` quietly and returns its stdout;
/// `None` when it failed (what systemctl said is not livefs's output).
pub(crate) fn systemctl_in(user: Option<&str>, args: &[&str], units: &[String]) -> Option<String> {
    let out = systemctl_command(user).args(args).arg("--").args(units).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`systemctl_in`] the system manager.
pub(crate) fn systemctl(args: &[&str], units: &[String]) -> Option<String> {
    systemctl_in(None, args, units)
}

/// `systemctl show` of `units`: one map of the asked properties per unit, in
/// order (empty maps when systemctl failed).
pub(crate) fn show(units: &[String], properties: &[&str]) -> Vec<BTreeMap<String, String>> {
    show_in(None, units, properties)
}

/// [`show`] in the system's or a user's manager.
fn show_in(user: Option<&str>, units: &[String], properties: &[&str]) -> Vec<BTreeMap<String, String>> {
    let arg = format!("--property={}", properties.join(","));
    let shown = if units.is_empty() { None } else { systemctl_in(user, &["show", &arg], units) };
    let shown = shown.unwrap_or_default();
    // One block of KEY=VALUE lines per unit, in the order asked, blank-line separated.
    let mut blocks = shown.split("\n\n").map(|block| {
        block.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    });
    units.iter().map(|_| blocks.next().unwrap_or_default()).collect()
}

/// The loaded units a changed unit file stands for: a template's instances
/// (never the template name itself, which systemctl refuses), else the unit.
fn instances(user: Option<&str>, unit_files: &[&String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut patterns = Vec::new();
    for u in unit_files {
        match u.split_once("@.") {
            Some((prefix, suffix)) => patterns.push(format!("{prefix}@*.{suffix}")),
            None => out.push((*u).clone()),
        }
    }
    if !patterns.is_empty() {
        let listed = systemctl_in(user, &["list-units", "--all", "--plain", "--no-legend", "--full"], &patterns);
        for line in listed.unwrap_or_default().lines() {
            if let Some(name) = line.split_whitespace().next() {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// Active units whose files changed after they were last started. `changes` maps a
/// unit file name (from [`changed_units`]) to when it changed
/// ([`now_monotonic_usec`]).
pub fn units_to_restart(root: &Path, changes: &BTreeMap<String, u64>) -> Vec<String> {
    let system: BTreeMap<String, u64> =
        changes.iter().filter(|(u, _)| !u.starts_with(USER_UNIT)).map(|(u, t)| (u.clone(), *t)).collect();
    if system.is_empty() || !systemd_runs(root) {
        return Vec::new();
    }
    stale_units(None, &system)
}

/// The active units of each running user manager whose files changed after
/// they were last started, by user name (see [`units_to_restart`]).
pub fn user_units_to_restart(root: &Path, changes: &BTreeMap<String, u64>) -> BTreeMap<String, Vec<String>> {
    let user: BTreeMap<String, u64> =
        changes.iter().filter_map(|(u, t)| Some((u.strip_prefix(USER_UNIT)?.to_string(), *t))).collect();
    let mut out = BTreeMap::new();
    if user.is_empty() || !systemd_runs(root) {
        return out;
    }
    let managers =
        systemctl(&["list-units", "--plain", "--no-legend", "--full", "--state=active"], &["user@*.service".into()]);
    for line in managers.unwrap_or_default().lines() {
        let Some(uid) = line.split_whitespace().next().and_then(|u| u.strip_prefix("user@")?.strip_suffix(".service"))
        else {
            continue;
        };
        let name = user_name(uid);
        let units = stale_units(Some(&name), &user);
        if !units.is_empty() {
            out.insert(name, units);
        }
    }
    out
}

/// The name of user `uid` (through NSS, as systemd resolves `USER@.host`); the
/// number itself when it has none.
fn user_name(uid: &str) -> String {
    let out = Command::new("id").args(["-nu", "--", uid]).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => uid.to_string(),
    }
}

/// The active units of a manager whose files (`changes`) changed after they
/// were last started.
fn stale_units(user: Option<&str>, changes: &BTreeMap<String, u64>) -> Vec<String> {
    let files: Vec<&String> = changes.keys().collect();
    let units = instances(user, &files);
    if units.is_empty() {
        return Vec::new();
    }
    let shown = show_in(user, &units, &["Id", "ActiveState", "ActiveEnterTimestampMonotonic"]);
    let mut out = Vec::new();
    for (unit, props) in units.iter().zip(&shown) {
        if props.get("ActiveState").map(String::as_str) != Some("active") {
            continue;
        }
        let since = props.get("ActiveEnterTimestampMonotonic").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let file = match unit.split_once('@') {
            Some((prefix, rest)) => {
                let suffix = rest.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
                changes.get(unit).or_else(|| changes.get(&format!("{prefix}@.{suffix}")))
            }
            None => changes.get(unit),
        };
        if file.is_some_and(|&changed_at| since < changed_at) {
            out.push(unit.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Builds the report: `replaced` are the absolute paths (as under ROOT, e.g.
/// `/usr/lib/libfoo.so.1`) replaced or removed since boot, `unit_changes` the unit
/// files changed since boot and when. `pending` are paths a transition is about
/// to replace (a dry run): a process using them counts although they are current.
pub fn report(
    root: &Path,
    processes: &Processes,
    replaced: &HashSet<String>,
    pending: &HashSet<String>,
    unit_changes: &BTreeMap<String, u64>,
) -> Restarts {
    let mut r = Restarts {
        units: units_to_restart(root, unit_changes),
        user_units: user_units_to_restart(root, unit_changes),
        ..Default::default()
    };
    if replaced.is_empty() && pending.is_empty() {
        return r;
    }
    // Paths as processes see them: ROOT-prefixed when ROOT is not /.
    let prefix = if root == Path::new("/") { String::new() } else { root.display().to_string() };
    let mounts = crate::host::mounts::mounts().unwrap_or_default();
    let mounted: HashSet<u64> = mounts.iter().map(|m| m.dev).collect();
    // /usr of a composefs image (bootc's composefs backend): its inode numbers
    // are the image's own, equal across images for a file in the same place,
    // so a file is the same only with the same device too.
    let usr = root.join("usr");
    let images = mounts
        .iter()
        .rfind(|m| m.mount_point == usr)
        .is_some_and(|m| m.source.starts_with(crate::host::overlay::IMAGE_SOURCE_PREFIX));
    let seen = Seen { mounted: &mounted, images };
    let unreadable = processes.unreadable();
    if unreadable > 0 {
        crate::messages::warn(format!(
            "{unreadable} process(es) of other users not checked for replaced files (only root may read them): \
             what needs a restart may be more than listed"
        ));
    }
    for p in processes.list() {
        let files = stale_files(p, &prefix, replaced, pending, &seen);
        if files.is_empty() {
            continue;
        }
        let pid = p.pid;
        // Gone since the scan: nothing to restart.
        let Ok(command) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let command = command.trim().to_string();
        let unit = unit_of(pid).unwrap_or_else(|| "-".into());
        r.processes.entry(unit).or_default().push(StaleProcess { pid, command, files });
    }
    r
}

/// Every process's executable and mapped files, read from `/proc` on first use
/// and then kept: one command judges them against what its update replaces
/// before its switch (the cost) and after it (what needs a restart) from one
/// scan. What livefs restarts is seen by a new one.
#[derive(Default)]
pub struct Processes(std::sync::OnceLock<Scan>);

/// What one look at `/proc` found.
struct Scan {
    processes: Vec<Process>,
    /// Processes whose files this user may not read (another user's, when
    /// livefs runs unprivileged): not checked.
    unreadable: usize,
}

/// A process and the files it runs and maps.
struct Process {
    pid: u32,
    files: Vec<Mapped>,
}

/// A file as `/proc/PID/{exe,maps}` show it: its path (with the kernel's
/// ` (deleted)` suffix, if any), inode and device.
struct Mapped {
    path: String,
    inode: Option<u64>,
    dev: Option<u64>,
}

impl Processes {
    fn list(&self) -> &[Process] {
        &self.0.get_or_init(scan).processes
    }

    /// How many processes could not be checked (this user may not read them).
    fn unreadable(&self) -> usize {
        self.0.get_or_init(scan).unreadable
    }
}

/// The pids in `/proc` but livefs's own.
fn other_pids() -> impl Iterator<Item = u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(move |pid| *pid != me)
}

/// Reads every other process's executable and file mappings (each file once).
fn scan() -> Scan {
    let mut out = Vec::new();
    let mut unreadable = 0;
    let root = rustix::process::geteuid().is_root();
    for pid in other_pids() {
        let mut files: Vec<Mapped> = Vec::new();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
        // Root is denied only a process being set up or torn down (not dumpable
        // for a moment), which maps nothing to report.
        if !root && exe.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
            unreadable += 1;
            continue;
        }
        if let Ok(exe) = exe {
            let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok();
            files.push(Mapped {
                path: exe.to_string_lossy().into_owned(),
                inode: meta.as_ref().map(|m| m.ino()),
                dev: meta.as_ref().map(|m| m.dev()),
            });
        }
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            for line in maps.lines() {
                // address perms offset dev inode path
                let mut fields = line.splitn(6, ' ').skip(3);
                let dev = fields.next().and_then(|d| d.split_once(':')).and_then(|(major, minor)| {
                    Some(rustix::fs::makedev(
                        u32::from_str_radix(major, 16).ok()?,
                        u32::from_str_radix(minor, 16).ok()?,
                    ))
                });
                let inode = fields.next().and_then(|i| i.parse::<u64>().ok());
                let Some(path) = fields.next().map(str::trim_start).filter(|p| p.starts_with('/')) else { continue };
                // A file's mappings are adjacent: each is kept once.
                if files.last().is_some_and(|m| m.path == path && m.inode == inode && m.dev == dev) {
                    continue;
                }
                files.push(Mapped { path: path.to_string(), inode, dev });
            }
        }
        if !files.is_empty() {
            out.push(Process { pid, files });
        }
    }
    Scan { processes: out, unreadable }
}

/// The devices of the directories and files processes hold (open fds, working
/// and root directories): a detached tree someone may still look things up in.
pub fn devices_in_use() -> HashSet<u64> {
    let mut out = HashSet::new();
    for pid in other_pids() {
        let base = Path::new("/proc").join(pid.to_string());
        let fds = std::fs::read_dir(base.join("fd")).into_iter().flatten().flatten().map(|e| e.path());
        for p in [base.join("cwd"), base.join("root")].into_iter().chain(fds) {
            if let Ok(m) = std::fs::metadata(&p) {
                out.insert(m.dev());
            }
        }
    }
    out
}

/// What the mounts say about the files processes map.
struct Seen<'a> {
    /// The devices of every mount (a mapped file on another is of a detached tree).
    mounted: &'a HashSet<u64>,
    /// `/usr` is a composefs image's: a file is the same only on the same device.
    images: bool,
}

/// The replaced paths process `p` runs or maps.
///
/// A file of a `/usr` overlay livefs switched away from (detached) shows a path
/// relative to that `/usr` (`/libexec/foo`) on a device no longer mounted here: it
/// is stale when `/usr/libexec/foo` was replaced.
fn stale_files(
    p: &Process,
    prefix: &str,
    replaced: &HashSet<String>,
    pending: &HashSet<String>,
    seen: &Seen,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mounted = seen.mounted;
    let now = |p: &str| std::fs::symlink_metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let same = |now: Option<(u64, u64)>, inode: Option<u64>, dev: Option<u64>| match (now, inode) {
        (Some((d, i)), Some(inode)) => i == inode && (!seen.images || dev == Some(d)),
        _ => false,
    };
    // Judged by inode: a path that still names the mapped inode is current (even
    // if its name happens to end in " (deleted)"); otherwise the kernel's
    // " (deleted)" suffix is taken off to find which replaced path it was.
    let mut consider = |raw: &str, inode: Option<u64>, dev: Option<u64>| {
        let detached = dev.is_some_and(|d| !mounted.is_empty() && !mounted.contains(&d));
        let path = raw.strip_suffix(" (deleted)").unwrap_or(raw);
        let in_usr = format!("/usr{path}");
        if detached && replaced.contains(&in_usr) {
            // Replaced by an earlier switch, but maybe the same object again in
            // this /usr (both layers link one repository object): then current.
            if !same(now(&format!("{prefix}{in_usr}")), inode, dev) {
                out.insert(in_usr);
            }
            return;
        }
        if let Some(rel) = raw.strip_prefix(prefix).filter(|rel| pending.contains(*rel)) {
            out.insert(rel.to_string());
            return;
        }
        // Only a replaced path is looked at on disk: the cost follows the
        // update, not every file every process maps.
        let Some(rel) = path.strip_prefix(prefix).filter(|rel| replaced.contains(*rel)) else { return };
        if !same(now(raw), inode, dev) {
            out.insert(rel.to_string());
        }
    };
    for m in &p.files {
        consider(&m.path, m.inode, m.dev);
    }
    out.into_iter().collect()
}

/// The system manager's unit of a process, from its cgroup path: the outermost
/// service or scope (`user@1000.service` for a user's own units, whose processes
/// the system's `systemctl` does not manage one by one).
pub(crate) fn unit_of(pid: u32) -> Option<String> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let line = cgroup
        .lines()
        .find(|l| l.starts_with("0::"))
        .or_else(|| cgroup.lines().find(|l| l.contains("name=systemd")))?;
    let path = line.rsplit(':').next()?;
    path.split('/').find(|c| c.ends_with(".service") || c.ends_with(".scope")).map(str::to_string)
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
            "/usr/lib/systemd/system/apache2@.service",
            "/usr/lib/systemd/system/getty@tty1.service.d/x.conf",
            "/usr/lib/systemd/system/README",
            "/usr/lib/systemd/user/pipewire.service",
            "/etc/systemd/user/default.target.wants/pipewire.service",
            "/etc/systemd/user/app.service.d/x.conf",
            "/usr/lib/systemd/system/.service",
            "/usr/bin/httpd",
        ]);
        assert_eq!(
            u.into_iter().collect::<Vec<_>>(),
            [
                "apache2@.service",
                "getty@tty1.service",
                "httpd.service",
                "sshd.service",
                "user/app.service",
                "user/pipewire.service"
            ]
        );
    }
}
