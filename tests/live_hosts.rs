//! The hosts livefs is for, as they look at run time: composefs-booted systems
//! (Fedora CoreOS, Fedora Atomic, bootc), `/run/ostree-booted` as a GVariant,
//! staged deployments named in `/run/ostree/staged-deployment`, ostree's and
//! rpm-ostree's own live state, and SELinux labels — simulated on scratch
//! sysroots in private mount namespaces (see tests/common/system.rs).

mod common;

use common::system::{ok, read_json, Boot, TestSystem};
use common::*;

/// v1 booted; v2 adds a program, changes /usr/etc/motd and adds /usr/etc/new.conf.
fn with_update() -> (TestSystem, String) {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/bin/newprog"), b"#!/bin/sh\necho hello from the new program\n");
    chmod(&sys.tree.join("usr/bin/newprog"), 0o755);
    write(&sys.tree.join("usr/etc/motd"), b"motd v2\n");
    write(&sys.tree.join("usr/etc/new.conf"), b"new\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    (sys, v2)
}

fn read(sys: &TestSystem, name: &str) -> String {
    std::fs::read_to_string(sys.out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn gvariant_writer_matches_ostree_prepare_root() {
    // The single-key record as ostree writes it: 55 bytes, key end 26, entry end 54.
    let b = gvariant::dict(&[("backing-root-device-inode".to_string(), gvariant::Value::DevIno(1, 2))]);
    assert_eq!(b.len(), 55);
    assert_eq!((b[53], b[54]), (26, 54));
}

/// A composefs boot: / is a read-only overlay (stat of / matches no deployment),
/// /usr is no mount of its own, /sysroot is read-only. The booted deployment comes
/// from `/run/ostree-booted`; the new /usr overlay's lower is the physical
/// deployment's usr, not the composefs view; apply and reset work.
#[test]
fn composefs_boot_apply_and_reset() {
    let (sys, v2) = with_update();
    let out = sys.run_as(
        Boot::Composefs { transient_etc: false },
        r#"
        L status --json > $OUT/status.json
        L status > $OUT/status.txt
        test -e $R/usr/composefs-view-only
        L apply --json > $OUT/apply.json
        if test -e $R/usr/composefs-view-only; then echo "the overlay's lower is the composefs view" >&2; exit 1; fi
        L apply > $OUT/apply-again.txt
        stat -c %i $S/ostree/deploy/demo/backing/*/livefs/usr.*/bin/newprog > $OUT/layer-inode
        $R/usr/bin/newprog > $OUT/newprog.out
        grep " $R/usr " /proc/self/mountinfo > $OUT/mountinfo
        if touch $R/usr/intruder 2>/dev/null; then echo "/usr is writable" >&2; exit 1; fi
        if touch $R/sysroot/probe 2>/dev/null; then echo "/sysroot became writable" >&2; exit 1; fi
        cat $S/ostree/repo/refs/heads/livefs/live > $OUT/ref-live
        cp $R/etc/motd $OUT/motd-live
        cp -a $R/usr $OUT/usr-live
        L reset --json > $OUT/reset.json
        cp -a $R/usr $OUT/usr-reset
        rm $OUT/usr-reset/composefs-view-only  # back to the composefs view itself
        cp $R/etc/motd $OUT/motd-reset
        test ! -e $R/etc/new.conf
        "#,
    );
    ok(&out);
    let status = read_json(&sys.out.join("status.json"));
    assert_eq!(status["booted"]["checksum"], sys.booted.as_str());
    assert_eq!(status["pending"]["checksum"], v2.as_str());
    assert_eq!(status["boot"]["composefs"], true);
    assert_eq!(status["boot"]["sysroot_ro"], true);
    assert_eq!(status["usr"]["kind"], "locked");
    assert!(read(&sys, "status.txt").contains("Boot:        composefs, read-only /sysroot"));

    let apply = read_json(&sys.out.join("apply.json"));
    assert_eq!(apply["state"]["state"], "live");
    assert_eq!(apply["etc_transient"], false);
    // Zero-copy through the read-only sysroot: the layer's files are the objects.
    assert_eq!(apply["layer"]["files_copied"], 0, "{apply}");
    assert_eq!(apply["layer"]["bytes_written"], 0, "{apply}");
    assert_eq!(apply["layer"]["files_linked"], 3, "{apply}");
    let object = ls_checksum(&sys.repo, &v2, "/usr/bin/newprog");
    let object = sys.repo.join(format!("objects/{}/{}.file", &object[..2], &object[2..]));
    use std::os::unix::fs::MetadataExt;
    let object_inode = std::fs::metadata(&object).unwrap().ino();
    assert_eq!(read(&sys, "layer-inode").trim(), object_inode.to_string(), "the layer's file is not the object");
    assert_eq!(read(&sys, "newprog.out"), "hello from the new program\n");
    let mountinfo = read(&sys, "mountinfo");
    assert!(mountinfo.contains(" - overlay livefs:usr."), "/usr is not livefs's overlay:\n{mountinfo}");
    assert_eq!(read(&sys, "ref-live").trim(), v2, "the commit is not pinned through the read-only sysroot");
    assert_eq!(read(&sys, "motd-live"), "motd v2\n");
    assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));
    assert!(read(&sys, "apply-again.txt").contains("0 added (0 directories), 0 replaced, 0 removed"));

    assert_eq!(read_json(&sys.out.join("reset.json"))["state"]["state"], "booted");
    assert_same_tree(&sys.out.join("usr-reset"), &sys.usr_of(&sys.booted));
    assert_eq!(read(&sys, "motd-reset"), "motd v1\n");
}

/// On a composefs boot, an update of the systemd manager (with
/// soft-reboot.target in the target) needs a soft reboot: refused at
/// `--max-strategy live`, applied at `soft-reboot`, and `/run/reboot-required`
/// names it.
#[test]
fn composefs_manager_update_needs_a_soft_reboot() {
    let mut sys = TestSystem::new();
    write(
        &sys.tree.join("usr/lib/systemd/system/soft-reboot.target"),
        b"[Unit]\nDescription=Reboot System Userspace\n",
    );
    // Booted: a commit with soft-reboot.target.
    let v1 = sys.commit("1.1");
    sys.deploy(&v1);
    sys.booted = v1;
    write(&sys.tree.join("usr/lib/systemd/systemd"), b"new manager");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run_as(
        Boot::Composefs { transient_etc: false },
        r#"
        L status --json > $OUT/status.json
        if L apply --max-strategy live --json > $OUT/limit.json; then exit 1; fi
        L apply --max-strategy soft-reboot --json > $OUT/apply.json
        cp $R/run/reboot-required.pkgs $OUT/rr.pkgs
        "#,
    );
    ok(&out);
    let s = read_json(&sys.out.join("status.json"))["strategy"].clone();
    assert_eq!(s["needs"], "soft-reboot", "{s}");
    assert_eq!(s["soft_reboot_capable"], true, "{s}");
    assert_eq!(
        s["soft_reboot_for"],
        serde_json::json!(["a changed systemd manager (PID 1): /usr/lib/systemd/systemd"])
    );
    assert_eq!(read_json(&sys.out.join("limit.json"))["kind"], "refused_strategy");
    assert_eq!(read_json(&sys.out.join("apply.json"))["state"]["state"], "live");
    assert_eq!(read(&sys, "rr.pkgs"), "livefs: a changed systemd manager (PID 1): /usr/lib/systemd/systemd\n");
}

/// With `etc.transient`, /etc is an overlay whose upper is on /run: livefs merges
/// into it as usual and says that the changes last until reboot only.
#[test]
fn composefs_transient_etc_is_reported() {
    let (sys, _) = with_update();
    let out = sys.run_as(
        Boot::Composefs { transient_etc: true },
        r#"
        L status --json > $OUT/status.json
        L apply > $OUT/apply.txt
        cp $R/etc/new.conf $OUT/new.conf
        test -e $R/run/ostree/transient-etc/upper/new.conf
        "#,
    );
    ok(&out);
    assert_eq!(read_json(&sys.out.join("status.json"))["boot"]["transient_etc"], "/run/ostree/transient-etc");
    let text = read(&sys, "apply.txt");
    assert!(
        text.contains("/etc is transient on this host (etc.transient): these changes last until reboot only"),
        "{text}"
    );
    assert_eq!(read(&sys, "new.conf"), "new\n");
}

/// A root with no /run/ostree-booted and no composefs= on its kernel command
/// line is told it is neither; bootc's native composefs backend is recognised by
/// its `composefs=` argument, and what is wrong with it named in one line
/// (a malformed image name; an image with no deployment state), nothing changed.
#[test]
fn neither_ostree_nor_composefs_booted_is_named() {
    let (sys, _) = with_update();
    let hex = "7c".repeat(64);
    let out = sys.run(&format!(
        r#"
        rm $R/run/ostree-booted
        if L status 2> $OUT/plain.err; then exit 1; fi
        mount -t tmpfs tmpfs $R/proc
        echo "BOOT_IMAGE=/vmlinuz composefs=7c1f0d2e rw" > $R/proc/cmdline
        if L status 2> $OUT/short.err; then exit 1; fi
        echo "BOOT_IMAGE=/vmlinuz composefs=?{hex} rw" > $R/proc/cmdline
        if L apply 2> $OUT/stateless.err; then exit 1; fi
        findmnt -n -o FSTYPE $R/usr | wc -l > $OUT/mounts
        "#
    ));
    ok(&out);
    let plain = read(&sys, "plain.err");
    assert!(
        plain.contains("is neither OSTree-booted") && plain.contains("nor booted from a composefs image"),
        "{plain}"
    );
    let err = read(&sys, "short.err");
    assert!(err.contains("composefs=7c1f0d2e on the kernel command line") && err.contains("names no image"), "{err}");
    let err = read(&sys, "stateless.err");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("the booted image {hex} has no state in")), "{err}");
    assert_eq!(read(&sys, "mounts").trim(), "1", "/usr was changed");
}

/// A malformed `/run/ostree-booted` is named; nothing changes.
#[test]
fn malformed_boot_record_is_named() {
    let (sys, _) = with_update();
    let out = sys.run(
        r#"
        printf 'garbage!' > $R/run/ostree-booted
        if L apply 2> $OUT/err; then exit 1; fi
        findmnt -n -o FSTYPE $R/usr | wc -l > $OUT/mounts
        "#,
    );
    ok(&out);
    let err = read(&sys, "err");
    assert!(err.contains("run/ostree-booted is malformed"), "{err}");
    assert_eq!(read(&sys, "mounts").trim(), "1", "/usr was unlocked");
}

/// The staged deployment is the one `/run/ostree/staged-deployment` names
/// (`target.name`), not a guess: here an older deployment with no boot entry of
/// its own is staged while a newer one exists. A record naming no deployment,
/// or a malformed one, makes `apply` fail with the reason; `status`, `apply
/// --target` and `reset` still work.
#[test]
fn staged_deployment_is_read_from_its_record() {
    let (mut sys, v2) = with_update();
    write(&sys.tree.join("usr/bin/v3-only"), b"v3");
    let v3 = sys.commit("3");
    sys.deploy(&v3);
    // Stage v2: no boot entry names it (as before finalization).
    let entries = sys.sysroot.join("boot/loader/entries");
    for e in std::fs::read_dir(&entries).unwrap() {
        let p = e.unwrap().path();
        if std::fs::read_to_string(&p).unwrap().lines().any(|l| l == "version 2") {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let run = sys.dir.path().join("run/ostree");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("staged-deployment"), gvariant::staged_deployment(&format!("{v2}.0"), "demo")).unwrap();
    let out = sys.run("L status --json > $OUT/staged.json");
    ok(&out);
    assert_eq!(read_json(&sys.out.join("staged.json"))["pending"]["checksum"], v2.as_str());

    std::fs::write(
        run.join("staged-deployment"),
        gvariant::staged_deployment(&format!("{}.0", "ab".repeat(32)), "demo"),
    )
    .unwrap();
    let out = sys.run(
        r#"
        L status --json > $OUT/missing.json
        if L apply 2> $OUT/missing.err; then exit 1; fi
        printf 'xx' > $R/run/ostree/staged-deployment
        if L apply 2> $OUT/malformed.err; then exit 1; fi
        findmnt -n -o FSTYPE $R/usr | wc -l > $OUT/mounts
        L apply --target demo/os > $OUT/target.txt
        L reset > $OUT/reset.txt
        "#,
    );
    ok(&out);
    assert!(read_json(&sys.out.join("missing.json"))["pending"].is_null());
    let missing = read(&sys, "missing.err");
    assert!(missing.contains(&format!("the staged deployment {}.0 is not in", "ab".repeat(32))), "{missing}");
    let malformed = read(&sys, "malformed.err");
    assert!(malformed.contains("run/ostree/staged-deployment is malformed"), "{malformed}");
    assert_eq!(read(&sys, "mounts").trim(), "1", "a refused apply unlocked /usr");
    assert!(read(&sys, "target.txt").contains(&format!("-> {}", &v3[..12])));
    assert!(read(&sys, "reset.txt").contains("(booted)"));
}

/// rpm-ostree's apply-live state (its stamp, or its refs while /usr is ostree's
/// transient unlock) makes livefs refuse, saying what to do; its refs alone,
/// left from an earlier boot, do not.
#[test]
fn rpm_ostree_live_state_is_refused() {
    let (sys, _) = with_update();
    let out = sys.run(
        r#"
        mkdir -p $S/ostree/repo/refs/heads/rpmostree
        echo $BOOTED > $S/ostree/repo/refs/heads/rpmostree/live-apply
        L apply --dry-run > $OUT/stale-refs.txt
        O=$R/var/tmp/ostree-unlock-ovl.RPM; mkdir -p $O/upper $O/work
        mount -t overlay overlay -o lowerdir=$D/usr,upperdir=$O/upper,workdir=$O/work $R/usr
        mount -o remount,bind,ro $R/usr
        if L apply 2> $OUT/refs.err; then exit 1; fi
        rm -r $S/ostree/repo/refs/heads/rpmostree
        mkdir -p $R/run/ostree/deployment-state/$BOOTED.0
        touch $R/run/ostree/deployment-state/$BOOTED.0/rpmostree-is-live.stamp
        if L apply 2> $OUT/stamp.err; then exit 1; fi
        if L reset 2> $OUT/reset.err; then exit 1; fi
        L status > $OUT/status.txt
        test ! -e $O/upper/bin
        "#,
    );
    ok(&out);
    assert!(read(&sys, "stale-refs.txt").contains("Would apply"));
    for name in ["refs.err", "stamp.err", "reset.err"] {
        let err = read(&sys, name);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("rpm-ostree has live-applied to this boot"), "{err}");
        assert!(err.contains("rpm-ostree apply-live --reset"), "{err}");
    }
    assert!(read(&sys, "refs.err").contains("rpmostree/live-apply"));
    assert!(read(&sys, "stamp.err").contains("rpmostree-is-live.stamp"));
    assert!(read(&sys, "status.txt").contains("rpm-ostree:  live-applied to this boot"));
}

/// SELinux: a merged directory takes its attributes from the topmost layer that
/// has it, so every directory of the layer — its root, the merged /usr, included —
/// carries the target commit's label for its path (written here without a loaded
/// policy, as the kernel allows).
#[test]
fn layer_directories_carry_the_target_labels() {
    let mut sys = TestSystem::new();
    let (usr_label, share_label) = (b"system_u:object_r:usr_t:s0", b"system_u:object_r:share_t:s0");
    write(&sys.tree.join("usr/share/newpkg/data"), b"data\n");
    setxattr(&sys.tree.join("usr"), "security.selinux", usr_label);
    setxattr(&sys.tree.join("usr/share"), "security.selinux", share_label);
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        L apply --allow-replacement
        Y=$(ls -d $S/ostree/deploy/demo/backing/$BOOTED.0/livefs/usr.*)
        getfattr --absolute-names --only-values -n security.selinux $Y > $OUT/layer-label
        getfattr --absolute-names --only-values -n security.selinux $R/usr > $OUT/usr-label
        getfattr --absolute-names --only-values -n security.selinux $R/usr/share > $OUT/share-label
        "#,
    );
    ok(&out);
    assert_eq!(read(&sys, "layer-label").as_bytes(), usr_label);
    assert_eq!(read(&sys, "usr-label").as_bytes(), usr_label);
    assert_eq!(read(&sys, "share-label").as_bytes(), share_label);
}

/// On an SELinux host (the booted commit labelled, as `ostree commit
/// --selinux-policy` labels it), a target without labels would make all of the
/// live /usr `unlabeled_t`: refused before anything changes (exit status 3,
/// kind refused_selinux), status's strategy says so; an update that changes the
/// SELinux policy is refused the same way, with its reason. An automatic run
/// leaves both for the reboot.
#[test]
fn selinux_hosts_refuse_unlabelled_targets_and_policy_changes() {
    let mut sys = TestSystem::new();
    let policy = "usr/etc/selinux/default/policy/policy.33";
    setxattr(&sys.tree.join("usr"), "security.selinux", b"system_u:object_r:usr_t:s0");
    write(&sys.tree.join(policy), b"policy v1");
    sys.booted = sys.commit("1b");
    sys.deploy(&sys.booted.clone());
    write(&sys.tree.join("usr/bin/newprog"), b"#!/bin/sh\necho new\n");
    let repo = format!("--repo={}", sys.repo.display());
    let tree = format!("--tree=dir={}", sys.tree.display());
    let unlabelled = ostree(&["commit", &repo, "-b", "demo/os", "--no-xattrs", "-s", "unlabelled", &tree]);
    sys.deploy(unlabelled.trim());
    let check = r#"
        set +e
        L status --json > $OUT/$N-status.json
        L status > $OUT/$N-status.txt
        L apply --allow-replacement --json > $OUT/$N-apply.json; echo $? > $OUT/$N-apply.rc
        printf '[Auto]\nRestart=no\nAllowReplacement=yes\nMaxStrategy=reboot\n' > $R/etc/livefs/auto.conf
        L auto --json > $OUT/$N-auto.json; echo $? > $OUT/$N-auto.rc
        set -e
        test ! -e $R/usr/bin/newprog
        findmnt -n -o FSTYPE $R/usr > $OUT/$N-fstype
    "#;
    ok(&sys.run(&format!("mkdir -p $R/etc/livefs; N=unlabelled; {check}")));
    write(&sys.tree.join(policy), b"policy v2");
    let new_policy = sys.commit("3");
    sys.deploy(&new_policy);
    ok(&sys.run(&format!("mkdir -p $R/etc/livefs; N=policy; {check}")));

    let unlabelled_why =
        "the target carries no SELinux labels and the booted commit does: live, all of /usr would be unlabeled_t";
    let policy_why = "a changed SELinux policy: the running policy cannot judge the new labels, only a boot loads it";
    for (n, why) in [("unlabelled", unlabelled_why), ("policy", policy_why)] {
        let status = read_json(&sys.out.join(format!("{n}-status.json")));
        assert_eq!(status["strategy"]["needs"], "reboot", "{n}: {status}");
        assert_eq!(status["strategy"]["never_live"], serde_json::json!([why]), "{n}");
        let text = read(&sys, &format!("{n}-status.txt"));
        assert!(text.contains(&format!("  never live: {why}")), "{n}: {text}");
        assert_eq!(read(&sys, &format!("{n}-apply.rc")).trim(), "3", "{n}");
        let apply = read_json(&sys.out.join(format!("{n}-apply.json")));
        assert_eq!(apply["kind"], "refused_selinux", "{n}: {apply}");
        assert!(apply["error"].as_str().unwrap().contains(why), "{n}: {apply}");
        assert_eq!(read(&sys, &format!("{n}-auto.rc")).trim(), "0", "{n}: left for the reboot");
        let auto = read_json(&sys.out.join(format!("{n}-auto.json")));
        assert_eq!(
            (auto["ending"].as_str(), auto["kind"].as_str()),
            (Some("left_for_reboot"), Some("refused_selinux"))
        );
        assert_eq!(read(&sys, &format!("{n}-fstype")).trim(), "ext4", "{n}: /usr changed");
    }
}

/// /etc is judged as ostree judges it: an xattr-only difference (a label that
/// differs between `usr/etc` and `/etc`) is not a local edit, so the update is
/// applied; a content edit still is one.
#[test]
fn etc_xattr_only_difference_is_not_a_local_edit() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/etc/edited.conf"), b"edited v1\n");
    write(&sys.tree.join("usr/etc/labelled.d/x.conf"), b"x v1\n");
    // Rebuild v1 with these files, then v2 changing all three.
    sys.booted = sys.commit("1b");
    sys.deploy(&sys.booted.clone());
    write(&sys.tree.join("usr/etc/motd"), b"motd v2\n");
    write(&sys.tree.join("usr/etc/edited.conf"), b"edited v2\n");
    write(&sys.tree.join("usr/etc/labelled.d/x.conf"), b"x v2\n");
    chmod(&sys.tree.join("usr/etc/labelled.d"), 0o750);
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let etc = sys.booted_deployment().join("etc");
    setxattr(&etc.join("motd"), "security.selinux", b"system_u:object_r:etc_t:s0");
    setxattr(&etc.join("labelled.d"), "user.label", b"local");
    write(&etc.join("edited.conf"), b"edited by the admin\n");
    let out = sys.run("L apply --json > $OUT/apply.json");
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    let action = |path: &str| {
        apply["etc"]["paths"].as_array().unwrap().iter().find(|p| p["path"] == path).map(|p| p["action"].clone())
    };
    assert_eq!(action("/motd"), Some("updated".into()), "{}", apply["etc"]);
    assert_eq!(action("/labelled.d"), Some("updated".into()), "{}", apply["etc"]);
    assert_eq!(action("/labelled.d/x.conf"), Some("updated".into()), "{}", apply["etc"]);
    assert_eq!(action("/edited.conf"), Some("kept".into()), "{}", apply["etc"]);
    assert_eq!(std::fs::read_to_string(etc.join("motd")).unwrap(), "motd v2\n");
    assert_eq!(std::fs::read_to_string(etc.join("edited.conf")).unwrap(), "edited by the admin\n");
}

/// Mounts below /usr (a state overlay on /usr/local as ostree-state-overlay@
/// makes it, with a mount nested in it; an admin's bind mount; a mount made on
/// the live /usr) stay visible with their content across apply, an apply over
/// the live layer, and reset; writes to the state overlay land in its upper.
#[test]
fn mounts_below_usr_are_carried_across_switches() {
    let (mut sys, _v2) = with_update();
    write(&sys.tree.join("usr/bin/third"), b"v3\n");
    let v3 = sys.commit("3");
    let out = sys.run(&format!(
        r#"
        mkdir -p $OUT/st/upper $OUT/st/work $OUT/bind
        mount -t overlay state-overlay -o lowerdir=$R/usr/local,upperdir=$OUT/st/upper,workdir=$OUT/st/work $R/usr/local
        echo state > $R/usr/local/state-file
        mkdir $R/usr/local/nested
        mount -t tmpfs nested $R/usr/local/nested
        echo nested > $R/usr/local/nested/f
        echo bound > $OUT/bind/f
        mount --bind $OUT/bind $R/usr/share/doc
        show() {{ cat $R/usr/local/state-file $R/usr/local/nested/f $R/usr/share/doc/f $R/usr/lib64/f 2>&1 || true; }}
        show > $OUT/before
        L apply > $OUT/apply1.txt
        show > $OUT/apply1
        test -x $R/usr/bin/newprog
        # A mount made on the live /usr.
        mount -t tmpfs live-made $R/usr/lib64
        echo live-made > $R/usr/lib64/f
        echo written-live >> $R/usr/local/state-file
        L apply --allow-replacement --target {v3} > $OUT/apply2.txt
        show > $OUT/apply2
        test -e $R/usr/bin/third
        L reset > $OUT/reset.txt
        show > $OUT/reset
        test ! -e $R/usr/bin/newprog
        cat $OUT/st/upper/state-file > $OUT/upper
        "#
    ));
    ok(&out);
    let before = "state\nnested\nbound\ncat: ROOT/usr/lib64/f: No such file or directory\n";
    let root = sys.root().display().to_string();
    let got = |name: &str| read(&sys, name).replace(&root, "ROOT");
    assert_eq!(got("before"), before);
    assert_eq!(got("apply1"), before, "a mount below /usr is hidden after apply");
    let live = "state\nwritten-live\nnested\nbound\nlive-made\n";
    assert_eq!(got("apply2"), live, "a mount below /usr is hidden after an apply over the live layer");
    assert_eq!(got("reset"), live, "a mount below /usr is hidden after reset");
    assert_eq!(read(&sys, "upper"), "state\nwritten-live\n");
}

/// A mount below /usr on a path the update removes cannot be carried: the apply
/// is refused (exit status 3) naming it, and nothing changed.
#[test]
fn a_mount_the_update_cannot_carry_is_refused_by_name() {
    let mut sys = TestSystem::new();
    std::fs::remove_dir_all(sys.tree.join("usr/share/doc/demo")).unwrap();
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        mount -t tmpfs admin $R/usr/share/doc/demo
        rc=0; L apply --allow-replacement 2> $OUT/err || rc=$?
        echo $rc > $OUT/rc
        L status --json > $OUT/status.json
        test -e $R/usr/share/doc/demo/README || echo gone > $OUT/readme
        "#,
    );
    ok(&out);
    assert_eq!(read(&sys, "rc").trim(), "3");
    let err = read(&sys, "err");
    assert!(err.contains("cannot carry the mount on") && err.contains("/usr/share/doc/demo"), "{err}");
    assert!(err.contains(&format!("{} has no /usr/share/doc/demo", &v2[..12])), "{err}");
    let status = read_json(&sys.out.join("status.json"));
    assert_eq!(status["state"]["state"], "booted");
    assert_eq!(status["usr"]["kind"], "locked");
}

/// A soft reboot keeps /run but not (necessarily) the overlay on /usr: each
/// simulated boot is a fresh mount namespace over the same ROOT/run. A live
/// state whose overlay is gone is reported as such (never as live), livefs's
/// unlocked-transient flag goes with it, and apply and reset carry on from it.
#[test]
fn a_soft_reboot_that_drops_the_overlay_is_never_reported_live() {
    let (sys, v2) = with_update();
    let flag = format!("$R/run/ostree/deployment-state/{}.0/unlocked-transient", sys.booted);
    ok(&sys.run(&format!(
        r#"
        L apply > $OUT/apply.txt
        test -e {flag}
        "#
    )));
    ok(&sys.run(&format!(
        r#"
        L status --json > $OUT/status-lost.json
        L status > $OUT/status-lost.txt
        if test -e {flag}; then echo "the unlocked-transient flag outlived the overlay" >&2; exit 1; fi
        test ! -e $R/usr/bin/newprog
        L apply > $OUT/apply-again.txt
        $R/usr/bin/newprog > $OUT/newprog.out
        L status --json > $OUT/status-live.json
        "#
    )));
    ok(&sys.run(
        r#"
        L reset --json > $OUT/reset.json
        cp $R/etc/motd $OUT/motd-reset
        test ! -e $R/etc/new.conf
        "#,
    ));
    let lost = read_json(&sys.out.join("status-lost.json"));
    common::schema::assert_valid(&common::schema::validator("status"), "status (usr-lost)", &lost);
    assert_eq!(lost["state"]["state"], "usr-lost", "{lost}");
    assert_eq!(lost["state"]["commit"], v2.as_str());
    assert_eq!(lost["usr"]["kind"], "locked");
    assert_eq!(lost["live"], serde_json::Value::Null);
    let text = read(&sys, "status-lost.txt");
    assert!(text.contains(&format!("Live:        none: the overlay of {} on /usr is gone", &v2[..12])), "{text}");
    assert!(read(&sys, "apply-again.txt").contains(&format!("Applied {} -> {}", &v2[..12], &v2[..12])));
    assert_eq!(read(&sys, "newprog.out"), "hello from the new program\n");
    let live = read_json(&sys.out.join("status-live.json"));
    assert_eq!((live["state"]["state"].as_str(), live["usr"]["kind"].as_str()), (Some("live"), Some("livefs")));
    // The reset (from a state whose overlay went again) restores /etc.
    assert_eq!(read_json(&sys.out.join("reset.json"))["state"]["state"], "booted");
    assert_eq!(read(&sys, "motd-reset"), "motd v1\n");
}

/// `ostree admin prepare-soft-reboot` loads the next root at /run/nextroot and
/// names it in /run/ostree/nextroot-booted: status says the next reboot is a
/// soft reboot into it.
#[test]
fn a_loaded_next_root_is_reported() {
    use std::os::unix::fs::MetadataExt;
    let (sys, v2) = with_update();
    let next = sys.sysroot.join(format!("ostree/deploy/{}/deploy/{v2}.0", common::system::OS));
    let st = std::fs::metadata(&next).unwrap();
    std::fs::create_dir_all(sys.dir.path().join("run/ostree")).unwrap();
    std::fs::write(
        sys.dir.path().join("run/ostree/nextroot-booted"),
        gvariant::composefs_booted(st.dev(), st.ino(), None),
    )
    .unwrap();
    ok(&sys.run(
        r#"
        L status --json > $OUT/before.json
        mkdir -p $R/run/nextroot
        mount -t tmpfs nextroot $R/run/nextroot
        L status --json > $OUT/status.json
        L status > $OUT/status.txt
        "#,
    ));
    assert_eq!(read_json(&sys.out.join("before.json"))["soft_reboot_into"], serde_json::Value::Null);
    let status = read_json(&sys.out.join("status.json"));
    common::schema::assert_valid(&common::schema::validator("status"), "status (next root)", &status);
    assert_eq!(status["soft_reboot_into"]["checksum"], v2.as_str(), "{status}");
    let text = read(&sys, "status.txt");
    assert!(text.contains("loaded at /run/nextroot: the next `systemctl reboot` is a soft reboot into it"), "{text}");
}
