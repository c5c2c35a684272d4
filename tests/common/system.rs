//! A scratch OSTree system, built with the real `ostree admin` commands and booted
//! (simulated) in a private mount namespace: the booted deployment bind-mounted as
//! ROOT, the stateroot's var on ROOT/var, a persistent scratch directory as
//! ROOT/run (it survives between namespaces, like /run within one boot), and
//! ROOT/usr read-only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{chmod, scratch, write, TempDir};

pub const OS: &str = "demo";

pub struct TestSystem {
    pub dir: TempDir,
    /// The working tree the next commit is made from.
    pub tree: PathBuf,
    pub sysroot: PathBuf,
    pub repo: PathBuf,
    /// The commit of the booted deployment.
    pub booted: String,
    /// Output directory shared with the namespaced scripts.
    pub out: PathBuf,
}

/// How the simulated system booted.
#[derive(Debug, Clone, Copy)]
pub enum Boot {
    /// ostree-prepare-root without composefs: ROOT is the deployment directory
    /// (bind-mounted), `/usr` a read-only bind mount, `/run/ostree-booted` empty.
    Plain,
    /// A composefs boot as Fedora CoreOS has it: ROOT a read-only overlay of the
    /// deployment, `/usr` part of it, `/etc` a bind mount (or, with
    /// `transient_etc`, an overlay with its upper on `/run`), `/sysroot`
    /// read-only, `/run/ostree-booted` the GVariant naming the deployment.
    Composefs { transient_etc: bool },
}

pub fn kernel_release() -> String {
    String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout).unwrap().trim().to_string()
}

fn admin(args: &[&str]) -> String {
    let out = Command::new("ostree")
        .args(args)
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .output()
        .expect("cannot run ostree");
    assert!(out.status.success(), "ostree {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TestSystem {
    /// A system with version 1 committed, deployed and (when run) booted.
    pub fn new() -> TestSystem {
        let dir = scratch();
        let tree = dir.path().join("tree");
        for d in ["var", "run", "sysroot", "boot", "proc", "tmp", "usr/etc", "usr/lib64", "usr/local"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
        }
        for (link, target) in
            [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("ostree", "sysroot/ostree")]
        {
            std::os::unix::fs::symlink(target, tree.join(link)).unwrap();
        }
        let kver = kernel_release();
        write(&tree.join(format!("usr/lib/modules/{kver}/vmlinuz")), b"running kernel");
        write(&tree.join(format!("usr/lib/modules/{kver}/kernel/fs/x.ko")), b"module");
        write(&tree.join("usr/lib/os-release"), b"ID=demo\nNAME=\"Demo OS\"\n");
        write(&tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v1\n");
        chmod(&tree.join("usr/bin/hello"), 0o755);
        write(&tree.join("usr/share/doc/demo/README"), b"v1\n");
        write(&tree.join("usr/etc/motd"), b"motd v1\n");
        let sysroot = dir.path().join("sysroot");
        std::fs::create_dir(&sysroot).unwrap();
        admin(&["admin", "init-fs", sysroot.to_str().unwrap()]);
        admin(&["admin", "os-init", &format!("--sysroot={}", sysroot.display()), OS]);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let repo = sysroot.join("ostree/repo");
        let mut sys = TestSystem { dir, tree, sysroot, repo, booted: String::new(), out };
        sys.booted = sys.commit("1");
        sys.deploy(&sys.booted.clone());
        sys
    }

    /// A system booted at v1 with v2 (pure additions: a program and a data
    /// file) deployed as pending; returns v2's checksum.
    pub fn with_additions() -> (TestSystem, String) {
        let mut sys = TestSystem::new();
        write(&sys.tree.join("usr/bin/newprog"), b"#!/bin/sh\necho hello from the new program\n");
        chmod(&sys.tree.join("usr/bin/newprog"), 0o755);
        write(&sys.tree.join("usr/share/newpkg/data"), b"data\n");
        let v2 = sys.commit("2");
        sys.deploy(&v2);
        (sys, v2)
    }

    /// Commits the working tree as `version` (ref demo/os) and returns the checksum.
    pub fn commit(&mut self, version: &str) -> String {
        admin(&[
            "commit",
            &format!("--repo={}", self.repo.display()),
            "-b",
            "demo/os",
            "-s",
            &format!("Demo OS {version}"),
            &format!("--add-metadata-string=version={version}"),
            &format!("--tree=dir={}", self.tree.display()),
        ])
        .trim()
        .to_string()
    }

    /// `ostree admin deploy` of a commit: it becomes the default (pending) entry.
    pub fn deploy(&self, commit: &str) {
        // --retain: ostree would otherwise prune the (simulated) booted deployment.
        admin(&[
            "admin",
            "deploy",
            "--retain",
            &format!("--sysroot={}", self.sysroot.display()),
            &format!("--os={OS}"),
            commit,
        ]);
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Forgets everything a boot kept in /run, as a reboot does.
    pub fn reboot(&self) {
        let run = self.dir.path().join("run");
        std::fs::remove_dir_all(&run).unwrap();
        std::fs::create_dir(&run).unwrap();
    }

    /// Runs `script` (bash) with the system booted in a fresh private mount
    /// namespace. The script sees $R (root), $S (sysroot), $OUT, and `L` (livefs
    /// with --root and --sysroot).
    pub fn run(&self, script: &str) -> Output {
        self.run_as(Boot::Plain, script)
    }

    /// The deployment directory of the booted commit.
    pub fn booted_deployment(&self) -> PathBuf {
        self.sysroot.join(format!("ostree/deploy/{OS}/deploy/{}.0", self.booted))
    }

    /// Runs `script` as [`TestSystem::run`] does, on a system booted as `boot` says.
    pub fn run_as(&self, boot: Boot, script: &str) -> Output {
        super::in_mount_namespace(&format!("{}\n{script}", self.boot_script(boot)))
    }

    /// The commands that boot this system (in a mount namespace made by the
    /// caller) as `boot` says, defining $S, $R, $OUT, $BOOTED, $LIVEFS, `L` and
    /// `interrupt_apply` for the script that follows. Several systems can boot
    /// in one namespace, one after the other.
    pub fn boot_script(&self, boot: Boot) -> String {
        let run = self.dir.path().join("run");
        let (mount_root, rest) = match boot {
            Boot::Plain => (
                "mount --bind $D $R".to_string(),
                r#"
            touch $R/run/ostree-booted
            mount --bind $R/usr $R/usr
            mount -o remount,bind,ro $R/usr
            L() { $LIVEFS --root $R --sysroot $S "$@"; }
            "#
                .to_string(),
            ),
            Boot::Composefs { transient_etc } => {
                use std::os::unix::fs::MetadataExt;
                let st = std::fs::metadata(self.booted_deployment()).unwrap();
                let etc = transient_etc.then_some("/run/ostree/transient-etc");
                std::fs::write(run.join("ostree-booted"), super::gvariant::composefs_booted(st.dev(), st.ino(), etc))
                    .unwrap();
                let etc_mount = if transient_etc {
                    "E=$R/run/ostree/transient-etc; mkdir -p $E/upper $E/work
                     mount -t overlay transient-etc -o lowerdir=$D/etc,upperdir=$E/upper,workdir=$E/work $R/etc"
                } else {
                    "mount --bind $D/etc $R/etc"
                };
                // / is a read-only overlay (composefs); /usr is no mount of its own;
                // /etc is a bind mount (or a transient overlay); /sysroot is read-only.
                // A file only the composefs view shows (its data layer): gone once
                // /usr is an overlay of the physical deployment's usr.
                let root = "mkdir -p $OUT/composefs-data/usr; touch $OUT/composefs-data/usr/composefs-view-only
            mount -t overlay composefs -o ro,lowerdir=$D:$OUT/composefs-data $R"
                    .to_string();
                let rest = format!(
                    r#"
            {etc_mount}
            mount --bind $S $R/sysroot
            mount -o remount,bind,ro $R/sysroot
            L() {{ $LIVEFS --root $R "$@"; }}
            "#
                );
                (root, rest)
            }
        };
        let preamble = format!(
            r#"
            S={s}; R={r}; OUT={out}; BOOTED={booted}; LIVEFS={livefs}
            D=$S/ostree/deploy/{os}/deploy/$BOOTED.0
            mkdir -p $R
            {mount_root}
            mount --bind $S/ostree/deploy/{os}/var $R/var
            mount --bind {run} $R/run
            {rest}
            # Kills `L apply ARGS` at the first mutation after which the state
            # records it (the layer is built before): an interrupted apply.
            interrupt_apply() {{
                local n
                for n in $(seq 1 500); do
                    if LIVEFS_FAULT_AFTER=$n L apply "$@" > /dev/null 2>&1; then return 1; fi
                    grep -q '"applying"' $R/run/livefs/state.json 2> /dev/null && return 0
                done
                return 1
            }}
            "#,
            s = self.sysroot.display(),
            r = self.root().display(),
            out = self.out.display(),
            booted = self.booted,
            os = OS,
            run = run.display(),
            livefs = env!("CARGO_BIN_EXE_livefs"),
        );
        preamble
    }

    /// `ostree checkout --subpath=/usr` of a commit, for comparing with a live /usr.
    pub fn usr_of(&self, commit: &str) -> PathBuf {
        let dest = self.dir.path().join(format!("usr-{commit}"));
        if !dest.exists() {
            super::checkout(&self.repo, commit, Some("/usr"), &dest, false);
        }
        dest
    }
}

/// Fails with the script's output unless it succeeded.
pub fn ok(out: &Output) -> String {
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "script failed ({:?}):\nstdout:\n{o}\nstderr:\n{e}", out.status.code());
    o.into_owned()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}
