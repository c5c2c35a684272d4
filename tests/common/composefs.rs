//! A scratch host of bootc's native composefs backend, made with composefs-rs's
//! own `cfsctl` and laid out as bootc lays it out: the physical root holds the
//! repository (`composefs/`), each deployment's state (`state/deploy/HEX/{etc,
//! var}`) and Type 1 boot entries (`bootc_demo-VER-PRIO.conf`, `composefs=?HEX`
//! in `options`); an update is staged in `/run/composefs/staged-deployment`.
//! Booted (simulated) in a private mount namespace as composefs-setup-root
//! boots it: the image mounted as ROOT by `cfsctl mount` (source
//! `composefs:HEX`), the physical root bound on ROOT/sysroot read-only, `/etc`
//! and `/var` bound from the state directory, ROOT/run a persistent scratch
//! directory, and a kernel command line naming the image.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{chmod, copy_tree, scratch, stderr, stdout, write, TempDir};

/// composefs-rs's `cfsctl` (built by scripts/deps.sh's `livefs_composefs_tools`).
pub fn cfsctl() -> PathBuf {
    let path = std::env::var_os("LIVEFS_CFSCTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/livefs-test/composefs-0.9.4/bin/cfsctl"));
    assert!(path.exists(), "{} is missing: run scripts/test (scripts/deps.sh livefs_composefs_tools)", path.display());
    path
}

/// Runs `cmd`; a failure fails the test with its output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

pub struct CfsSystem {
    pub dir: TempDir,
    /// The working tree the next image is made from.
    pub tree: PathBuf,
    /// The physical root (`ROOT/sysroot`).
    pub phys: PathBuf,
    pub repo: PathBuf,
    /// The image booted.
    pub booted: String,
    /// Output directory shared with the namespaced scripts.
    pub out: PathBuf,
    versions: u32,
}

impl CfsSystem {
    /// A host with image 1 made, deployed and (when run) booted.
    pub fn new() -> CfsSystem {
        let dir = scratch();
        let tree = dir.path().join("tree");
        for d in ["var", "run", "sysroot", "boot", "proc", "tmp", "usr/lib64", "usr/local", "etc"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
        }
        for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
            std::os::unix::fs::symlink(target, tree.join(link)).unwrap();
        }
        let kver = super::system::kernel_release();
        write(&tree.join(format!("usr/lib/modules/{kver}/vmlinuz")), b"running kernel");
        write(&tree.join(format!("usr/lib/modules/{kver}/kernel/fs/x.ko")), &[7; 4096]);
        write(&tree.join("usr/lib/os-release"), b"ID=demo\nNAME=\"Demo OS\"\nVERSION_ID=1\n");
        write(&tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v1\n");
        chmod(&tree.join("usr/bin/hello"), 0o755);
        write(&tree.join("usr/share/doc/demo/README"), &b"v1, long enough to be an object of its own\n".repeat(4));
        write(&tree.join("etc/motd"), b"motd v1\n");
        let phys = dir.path().join("phys");
        std::fs::create_dir_all(phys.join("boot/loader/entries")).unwrap();
        let repo = phys.join("composefs");
        run(Command::new(cfsctl()).arg("--repo").arg(&repo).args(["init", "--insecure", "--erofs-version", "2"]));
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let mut sys = CfsSystem { dir, tree, phys, repo, booted: String::new(), out, versions: 0 };
        sys.booted = sys.image();
        sys.deploy(&sys.booted.clone());
        sys
    }

    /// A host booted at image 1 with image 2 deployed and staged: `hello`
    /// replaced, a new program, a file removed, `/etc/motd` updated and a new
    /// `/etc` file, an owned setuid file with a user xattr. Returns image 2.
    pub fn with_update() -> (CfsSystem, String) {
        let mut sys = CfsSystem::new();
        let t = sys.tree.clone();
        write(&t.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
        write(&t.join("usr/bin/newprog"), b"#!/bin/sh\necho hello from the new program\n");
        chmod(&t.join("usr/bin/newprog"), 0o755);
        write(&t.join("usr/libexec/demo/helper"), &[9; 100]);
        chmod(&t.join("usr/libexec/demo/helper"), 0o4750);
        super::chown(&t.join("usr/libexec/demo/helper"), 0, 1234);
        super::setxattr(&t.join("usr/libexec/demo/helper"), "user.demo", b"kept");
        std::fs::remove_file(t.join("usr/share/doc/demo/README")).unwrap();
        write(&t.join("etc/motd"), b"motd v2\n");
        write(&t.join("etc/new.conf"), b"new\n");
        let v2 = sys.image();
        sys.deploy(&v2);
        sys.stage(&v2);
        (sys, v2)
    }

    /// Makes an image of the working tree (the next version, in its
    /// os-release and its ref), keeping a copy of the tree; returns its name.
    pub fn image(&mut self) -> String {
        self.versions += 1;
        let v = self.versions;
        let os_release = self.tree.join("usr/lib/os-release");
        write(&os_release, format!("ID=demo\nNAME=\"Demo OS\"\nVERSION_ID={v}\n").as_bytes());
        let out = run(Command::new(cfsctl())
            .arg("--repo")
            .arg(&self.repo)
            .args(["create-image", "--xattrs", "keep-user-xattrs"])
            .arg(&self.tree)
            .arg(format!("demo-{v}")));
        let hex = out.trim().strip_prefix("sha512:").unwrap_or_else(|| panic!("cfsctl printed {out:?}")).to_string();
        copy_tree(&self.tree, &self.dir.path().join(format!("tree-{hex}")));
        hex
    }

    /// Deploys an image as bootc does: its state directory (`/etc` a copy of
    /// the image's, an empty `/var`) and a boot entry that becomes the default.
    pub fn deploy(&self, image: &str) {
        let state = self.phys.join("state/deploy").join(image);
        std::fs::create_dir_all(state.join("var")).unwrap();
        copy_tree(&self.dir.path().join(format!("tree-{image}/etc")), &state.join("etc"));
        let entries = self.phys.join("boot/loader/entries");
        let n = std::fs::read_dir(&entries).unwrap().count();
        let entry = format!(
            "title Demo OS {v}\nversion {v}\nlinux /bootc_composefs-{image}/vmlinuz\ninitrd \
             /bootc_composefs-{image}/initrd\noptions root=UUID=0 rw composefs=?{image}\n",
            v = n + 1
        );
        std::fs::write(entries.join(format!("bootc_demo-{}-{n}.conf", n + 1)), entry).unwrap();
    }

    /// Stages a deployed image as bootc does (`/run/composefs/staged-deployment`).
    pub fn stage(&self, image: &str) {
        let dir = self.dir.path().join("run/composefs");
        std::fs::create_dir_all(&dir).unwrap();
        let record = format!(r#"{{"depl_id":"{image}","finalization_locked":false}}"#);
        std::fs::write(dir.join("staged-deployment"), record).unwrap();
    }

    /// The tree image `image` was made from.
    pub fn tree_of(&self, image: &str) -> PathBuf {
        self.dir.path().join(format!("tree-{image}"))
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Runs `script` (bash) with the host booted in a fresh private mount
    /// namespace: $R (root), $S (the physical root), $OUT, $BOOTED, `L` (livefs
    /// with --root).
    pub fn run(&self, script: &str) -> Output {
        super::in_mount_namespace(&format!("{}\n{script}", self.boot_script()))
    }

    fn boot_script(&self) -> String {
        format!(
            r#"
            S={s}; R={r}; OUT={out}; BOOTED={booted}; LIVEFS={livefs}; CFSCTL={cfsctl}
            mkdir -p $R
            $CFSCTL --repo $S/composefs mount $BOOTED $R
            mount --bind $S $R/sysroot
            mount -o remount,bind,ro $R/sysroot
            mount --bind $S/state/deploy/$BOOTED/etc $R/etc
            mount --bind $S/state/deploy/$BOOTED/var $R/var
            mount --bind {run} $R/run
            mount -t tmpfs cmdline $R/proc
            echo "BOOT_IMAGE=/bootc_composefs-$BOOTED/vmlinuz root=UUID=0 rw composefs=?$BOOTED" > $R/proc/cmdline
            L() {{ $LIVEFS --root $R "$@"; }}
            "#,
            s = self.phys.display(),
            r = self.root().display(),
            out = self.out.display(),
            booted = self.booted,
            livefs = env!("CARGO_BIN_EXE_livefs"),
            cfsctl = cfsctl().display(),
            run = self.dir.path().join("run").display(),
        )
    }
}
