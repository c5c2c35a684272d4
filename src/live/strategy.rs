//! The apply strategy: how much of the running system an update needs to
//! restart to take effect whole (bootc #165 asks the same of `bootc upgrade`),
//! in three tiers:
//!
//! - **live**: a live apply delivers it all; the units and processes that use
//!   what it replaced need a restart (`restarts`);
//! - **soft-reboot**: userspace-wide changes that a live apply plus restarts
//!   cannot cleanly finish — PID 1's manager (`/usr/lib/systemd/systemd`), the
//!   message bus, the C library, the login manager: everything must restart,
//!   which `systemctl soft-reboot` does without the kernel;
//! - **reboot**: what only a new boot delivers — a new or changed kernel,
//!   initramfs or devicetree, changed kernel arguments, a changed SELinux policy
//!   (PID 1 does not reload it across a soft reboot).
//!
//! Whether a soft reboot into the target is possible at all is decided as
//! ostree (`ostree_sysroot_deployment_can_soft_reboot`) and bootc
//! (`has_soft_reboot_capability`) decide it: composefs booted, the same boot
//! checksum (kernel, initramfs, devicetree), the same kernel arguments (but for
//! `ostree=`), `soft-reboot.target` in the target, the same SELinux policy.
//! Soft-reboot content on a host that cannot soft-reboot needs a reboot.

use serde::{Deserialize, Serialize};

use crate::tree::diff::Diff;

/// How disruptive taking an update whole is, least first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    #[default]
    Live,
    SoftReboot,
    Reboot,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Live => "live",
            Tier::SoftReboot => "soft-reboot",
            Tier::Reboot => "reboot",
        }
    }
}

/// What a live apply of an update delivers, and what it costs the running system.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Strategy {
    /// The least disruptive way the whole update takes effect.
    pub needs: Tier,
    /// The whole update goes live (`needs` is `live`).
    pub live: bool,
    /// What only a reboot delivers.
    pub reboot_for: Vec<String>,
    /// What a soft reboot (or a reboot) delivers, and a live apply cannot finish.
    pub soft_reboot_for: Vec<String>,
    /// Whether a soft reboot into the target is possible; if not, why
    /// (`soft_reboot_blockers`).
    pub soft_reboot_capable: bool,
    pub soft_reboot_blockers: Vec<String>,
    /// What keeps any live apply of it from being made, whatever
    /// `--max-strategy` accepts (on an SELinux host: a target without labels,
    /// another SELinux policy); `needs` is then `reboot`.
    #[serde(default)]
    pub never_live: Vec<String>,
    /// The existing paths of `/usr` it replaces or removes (what
    /// `--allow-replacement` allows).
    pub replaces: Vec<String>,
    /// The units and processes this update alone would need restarted (what
    /// earlier transitions of this boot left is in the top-level report).
    pub restarts: crate::systemd::needs_restart::Restarts,
}

impl Strategy {
    /// Going back to the booted commit: live, whole.
    pub fn back() -> Strategy {
        Strategy { live: true, ..Default::default() }
    }

    /// The next boot starts another stateroot: another OS install, with its own
    /// `/etc` and `/var`, which only a reboot starts.
    pub fn elsewhere(osname: &str) -> Strategy {
        let why = format!(
            "the next boot starts another stateroot ({osname}): another OS install, with its own /etc and /var"
        );
        Strategy {
            needs: Tier::Reboot,
            reboot_for: vec![why],
            soft_reboot_blockers: vec!["another stateroot".into()],
            ..Default::default()
        }
    }

    /// Why the update needs more than a live apply (empty when it does not):
    /// the reasons of its tiers, and why a soft reboot will not do where it
    /// would otherwise.
    pub fn beyond_live(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self.reboot_for.iter().chain(&self.soft_reboot_for).cloned().collect();
        if self.needs == Tier::Reboot && self.reboot_for.is_empty() {
            reasons.push(format!("no soft reboot on this host: {}", self.soft_reboot_blockers.join("; ")));
        }
        reasons
    }
}

/// What the strategy of an update is decided from.
pub struct Facts<'a> {
    /// `/usr` of the booted commit → the target's.
    pub diff: &'a Diff,
    /// The running kernel's release.
    pub release: &'a str,
    /// Kernel arguments now, and in the target's boot entry (when it has one).
    pub booted_kargs: Option<&'a str>,
    pub target_kargs: Option<&'a str>,
    /// The host booted with composefs (ostree soft-reboots only those).
    pub composefs: bool,
    /// The target has `soft-reboot.target` (systemd ≥ 254).
    pub target_soft_reboot_target: bool,
    /// A changed manager is re-executed live (`--restart --daemon-reexec`).
    pub daemon_reexec: bool,
    /// Whether the booted commit's `/usr` and the target's carry SELinux labels
    /// (a labelled booted commit: an SELinux host).
    pub labels: (bool, bool),
    /// `/usr` is switched to the target's whole (bootc's native composefs
    /// backend mounts the image itself): nothing of the booted tree can be kept.
    pub whole_images: bool,
}

/// On an SELinux host (the booted commit is labelled), what no live apply may
/// take: a target without labels (its files would all be `unlabeled_t` under
/// the running policy: nothing confined could read them), or another policy
/// (the running one would judge the new labels; only a boot loads it).
fn never_live(labels: (bool, bool), policy_changed: bool) -> Vec<String> {
    let mut out = Vec::new();
    if labels.0 && !labels.1 {
        out.push(
            "the target carries no SELinux labels and the booted commit does: live, all of /usr would be unlabeled_t"
                .to_string(),
        );
    }
    if labels.0 && policy_changed {
        out.push(
            "a changed SELinux policy: the running policy cannot judge the new labels, only a boot loads it"
                .to_string(),
        );
    }
    out
}

/// Where `/usr` is switched whole, what of the running kernel's modules the
/// target changes or removes: live, `modprobe` of the running kernel would
/// load the target's (or nothing), so only a boot takes it.
fn running_modules_lost(diff: &Diff, release: &str) -> Option<String> {
    let dir = format!("/lib/modules/{release}");
    let under = |p: &str| p == dir || p.strip_prefix(&dir).is_some_and(|r| r.starts_with('/'));
    let lost = diff.modified.iter().map(|m| &m.path).chain(diff.removed.iter().map(|n| &n.path)).any(|p| under(p));
    lost.then(|| {
        format!(
            "the running kernel's modules (/usr{dir}) change, and on this backend /usr is switched to the target's \
             image whole: none of the booted tree can be kept"
        )
    })
}

/// Why a change of the `/usr` path `path` needs everything restarted, if it
/// does (`daemon_reexec`: the manager is re-executed live).
fn userspace_wide(path: &str, daemon_reexec: bool) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or("");
    let what = match path {
        "/lib/systemd/systemd" if daemon_reexec => return None,
        "/lib/systemd/systemd" => "a changed systemd manager (PID 1)",
        "/lib/systemd/systemd-logind" => "a changed login manager",
        "/bin/dbus-daemon" | "/bin/dbus-broker" | "/bin/dbus-broker-launch" => "a changed message bus",
        _ if name == "libc.so.6" || name.starts_with("ld-linux") => "a changed C library",
        _ => return None,
    };
    Some(format!("{what}: {}", crate::quote::path(&format!("/usr{path}"))))
}

/// The strategy of the update `f` describes (the cost fields left empty).
pub fn of(f: &Facts) -> Strategy {
    let (mut reboot_for, mut soft_reboot_for, mut boot_changed, mut policy_changed) = (vec![], vec![], false, false);
    let changed = f.diff.modified.iter().map(|m| &m.path).chain(f.diff.added.iter().map(|n| &n.path));
    for path in changed.chain(f.diff.removed.iter().map(|n| &n.path)) {
        if path.starts_with("/etc/selinux/") && path.contains("/policy/") {
            reboot_for.push("a changed SELinux policy".to_string());
            policy_changed = true;
        }
        let Some(rest) = path.strip_prefix("/lib/modules/") else {
            soft_reboot_for.extend(userspace_wide(path, f.daemon_reexec));
            continue;
        };
        let reason = match rest.split_once('/') {
            Some((kver, "vmlinuz")) if kver != f.release => format!("a new kernel ({kver})"),
            Some((kver, "vmlinuz")) => format!("a changed kernel ({kver}, running)"),
            Some((kver, "initramfs.img")) => format!("a changed initramfs ({kver})"),
            Some((kver, p)) if p == "devicetree" || p.starts_with("dtb/") || p == "dtb" => {
                format!("a changed devicetree ({kver})")
            }
            _ => continue,
        };
        reboot_for.push(reason);
        boot_changed = true;
    }
    let kargs_changed = matches!((f.booted_kargs, f.target_kargs), (Some(a), Some(b)) if a != b);
    if let (true, Some(a), Some(b)) = (kargs_changed, f.booted_kargs, f.target_kargs) {
        reboot_for.push(format!("changed kernel arguments (\"{a}\" -> \"{b}\")"));
    }
    let blockers: Vec<String> = [
        (!f.composefs, "not booted with composefs (ostree soft-reboots only composefs-booted hosts)"),
        (boot_changed, "another kernel, initramfs or devicetree (the boot checksum differs)"),
        (kargs_changed, "other kernel arguments"),
        (!f.target_soft_reboot_target, "the target has no soft-reboot.target (systemd before 254)"),
        (policy_changed, "another SELinux policy (PID 1 does not reload it across a soft reboot)"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, why)| why.to_string())
    .collect();
    for v in [&mut reboot_for, &mut soft_reboot_for] {
        v.sort();
        v.dedup();
    }
    let mut never_live = never_live(f.labels, policy_changed);
    if f.whole_images {
        never_live.extend(running_modules_lost(f.diff, f.release));
    }
    reboot_for.extend(never_live.iter().filter(|r| !r.starts_with("a changed SELinux policy")).cloned());
    let needs = match (reboot_for.is_empty(), soft_reboot_for.is_empty(), blockers.is_empty()) {
        (false, _, _) => Tier::Reboot,
        (true, false, false) => Tier::Reboot,
        (true, false, true) => Tier::SoftReboot,
        (true, true, _) => Tier::Live,
    };
    Strategy {
        needs,
        live: needs == Tier::Live,
        reboot_for,
        soft_reboot_for,
        soft_reboot_capable: blockers.is_empty(),
        soft_reboot_blockers: blockers,
        never_live,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (booted labelled, target labelled, policy changed) -> what no live apply may take.
    #[test]
    fn what_an_selinux_host_never_takes_live() {
        let unlabelled = "the target carries no SELinux labels";
        let policy = "a changed SELinux policy";
        let cases: [((bool, bool), bool, &[&str]); 6] = [
            ((true, true), false, &[]),
            ((true, false), false, &[unlabelled]),
            ((true, true), true, &[policy]),
            ((true, false), true, &[unlabelled, policy]),
            // No SELinux host: nothing to keep from going live on that account.
            ((false, false), true, &[]),
            ((false, true), false, &[]),
        ];
        for (labels, policy_changed, want) in cases {
            let got = never_live(labels, policy_changed);
            assert_eq!(got.len(), want.len(), "{labels:?} {policy_changed}: {got:?}");
            assert!(got.iter().zip(want).all(|(g, w)| g.starts_with(w)), "{labels:?} {policy_changed}: {got:?}");
        }
    }

    /// Another stateroot next: only a reboot goes there, and the sentinel says why.
    #[test]
    fn another_stateroot_needs_a_reboot() {
        let s = Strategy::elsewhere("fedora");
        assert_eq!((s.needs, s.live, s.soft_reboot_capable), (Tier::Reboot, false, false));
        assert_eq!(s.beyond_live().len(), 1);
        assert!(s.beyond_live()[0].contains("another stateroot (fedora)"), "{:?}", s.beyond_live());
    }
    use crate::repo::Checksum;
    use crate::tree::diff::{Modified, Node, NodeKind};

    fn diff(modified: &[&str], added: &[&str]) -> Diff {
        let file = NodeKind::File(Checksum::sha256([1; 32]));
        let m = |p: &&str| Modified { path: p.to_string(), from: file, to: file };
        let n = |p: &&str| Node { path: p.to_string(), kind: file };
        Diff { modified: modified.iter().map(m).collect(), added: added.iter().map(n).collect(), ..Default::default() }
    }

    #[test]
    fn three_tiers_with_their_reasons() {
        fn facts(d: &Diff, composefs: bool, target_sr: bool) -> Facts<'_> {
            Facts {
                diff: d,
                release: "6.1.0-13-amd64",
                booted_kargs: Some("root=UUID=x rw"),
                target_kargs: Some("root=UUID=x rw"),
                composefs,
                target_soft_reboot_target: target_sr,
                daemon_reexec: false,
                labels: (false, false),
                whole_images: false,
            }
        }
        let plain = diff(&["/bin/hello"], &["/share/newpkg/data"]);
        let manager = diff(&["/lib/systemd/systemd", "/bin/hello"], &[]);
        let libc = diff(&["/lib/x86_64-linux-gnu/libc.so.6"], &[]);
        let kernel = diff(&["/lib/systemd/systemd"], &["/lib/modules/6.1.0-15-amd64/vmlinuz"]);
        let policy = diff(&["/etc/selinux/targeted/policy/policy.33"], &[]);
        let cases: &[(&Diff, bool, bool, Tier, bool)] = &[
            (&plain, true, true, Tier::Live, true),
            (&plain, false, false, Tier::Live, false),
            (&manager, true, true, Tier::SoftReboot, true),
            // Userspace-wide content on a host that cannot soft-reboot: a reboot.
            (&manager, false, true, Tier::Reboot, false),
            (&manager, true, false, Tier::Reboot, false),
            (&libc, true, true, Tier::SoftReboot, true),
            (&kernel, true, true, Tier::Reboot, false),
            (&policy, true, true, Tier::Reboot, false),
        ];
        for (d, composefs, target_sr, needs, capable) in cases {
            let s = of(&facts(d, *composefs, *target_sr));
            assert_eq!((s.needs, s.soft_reboot_capable), (*needs, *capable), "{:?}", d.modified);
            assert_eq!(s.live, *needs == Tier::Live);
            assert_eq!(s.soft_reboot_capable, s.soft_reboot_blockers.is_empty());
        }
        let s = of(&facts(&kernel, true, true));
        assert_eq!(s.reboot_for, ["a new kernel (6.1.0-15-amd64)"]);
        assert_eq!(s.soft_reboot_for, ["a changed systemd manager (PID 1): /usr/lib/systemd/systemd"]);
        assert_eq!(s.soft_reboot_blockers, ["another kernel, initramfs or devicetree (the boot checksum differs)"]);
        let s = of(&facts(&libc, false, true));
        assert_eq!(s.soft_reboot_for, ["a changed C library: /usr/lib/x86_64-linux-gnu/libc.so.6"]);
        assert_eq!(
            s.soft_reboot_blockers[0],
            "not booted with composefs (ostree soft-reboots only composefs-booted hosts)"
        );
        // Re-executed live, a changed manager needs no soft reboot; the C library still does.
        let reexec = Facts { daemon_reexec: true, ..facts(&manager, true, true) };
        assert_eq!((of(&reexec).needs, of(&reexec).soft_reboot_for.len()), (Tier::Live, 0));
        let reexec = Facts { daemon_reexec: true, ..facts(&libc, true, true) };
        assert_eq!(of(&reexec).needs, Tier::SoftReboot);
        let kargs = Facts { target_kargs: Some("root=UUID=x rw quiet"), ..facts(&plain, true, true) };
        let s = of(&kargs);
        assert_eq!((s.needs, s.reboot_for.len()), (Tier::Reboot, 1), "{s:?}");
        assert!(Tier::Live < Tier::SoftReboot && Tier::SoftReboot < Tier::Reboot);
    }

    /// Where `/usr` is switched whole (a composefs image), a target that
    /// changes or removes the running kernel's modules never goes live; one
    /// that only adds another kernel's does, with a reboot for the kernel.
    #[test]
    fn whole_images_cannot_keep_the_running_modules() {
        let running = "/lib/modules/6.1.0-13-amd64";
        let changed = diff(&[&format!("{running}/kernel/fs/x.ko")], &[]);
        let mut removed = diff(&[], &["/lib/modules/6.1.0-15-amd64/vmlinuz"]);
        removed.removed.push(Node { path: running.into(), kind: NodeKind::File(Checksum::sha256([1; 32])) });
        let added = diff(&[], &["/lib/modules/6.1.0-15-amd64/vmlinuz"]);
        let near = diff(&["/lib/modules/6.1.0-13-amd64x/a.ko"], &[]);
        let cases: [(&Diff, bool, usize); 5] =
            [(&changed, true, 1), (&removed, true, 1), (&added, true, 0), (&near, true, 0), (&changed, false, 0)];
        for (d, whole, never) in cases {
            let f = Facts {
                diff: d,
                release: "6.1.0-13-amd64",
                booted_kargs: None,
                target_kargs: None,
                composefs: true,
                target_soft_reboot_target: true,
                daemon_reexec: false,
                labels: (false, false),
                whole_images: whole,
            };
            let s = of(&f);
            assert_eq!(s.never_live.len(), never, "{:?} {:?}", d.modified, d.removed);
            if never > 0 {
                assert_eq!(s.needs, Tier::Reboot);
                assert!(s.never_live[0].starts_with("the running kernel's modules (/usr/lib/modules/6.1.0-13-amd64)"));
            }
        }
    }
}
