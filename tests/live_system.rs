//! `livefs status`, `apply` and `reset` on scratch OSTree systems made with
//! `ostree admin init-fs / os-init / deploy`, booted in private mount namespaces.

mod common;

use common::system::{kernel_release, ok, read_json, TestSystem};
use common::*;
use std::os::unix::ffi::OsStrExt;

#[test]
fn status_finds_booted_and_pending() {
    let (sys, v2) = TestSystem::with_additions();
    let out = sys.run("L status --json > $OUT/status.json; L status > $OUT/status.txt");
    ok(&out);
    let v = read_json(&sys.out.join("status.json"));
    assert_eq!(v["booted"]["checksum"], sys.booted.as_str());
    assert_eq!(v["booted"]["version"], "1");
    assert_eq!(v["pending"]["checksum"], v2.as_str());
    assert_eq!(v["pending"]["subject"], "Demo OS 2");
    assert_eq!(v["state"]["state"], "booted");
    assert_eq!(v["usr"]["kind"], "locked");
    let text = std::fs::read_to_string(sys.out.join("status.txt")).unwrap();
    assert!(text.contains(&format!("Booted:      {} version 1", &sys.booted[..12])), "{text}");
    assert!(text.contains(&format!("Pending:     {} version 2", &v2[..12])), "{text}");
}

#[test]
fn apply_additions_then_reset() {
    let (sys, v2) = TestSystem::with_additions();
    let out = sys.run(
        r#"
        L apply --json > $OUT/apply.json
        $R/usr/bin/newprog > $OUT/newprog.out
        L status --json > $OUT/status.json
        if touch $R/usr/intruder 2>$OUT/touch.err; then echo "/usr is writable" >&2; exit 1; fi
        test -e $R/run/ostree/deployment-state/$BOOTED.0/unlocked-transient
        cat $S/ostree/repo/refs/heads/livefs/live > $OUT/ref-live
        cp -a $R/usr $OUT/usr-live
        L reset --json > $OUT/reset.json
        L status --json > $OUT/status-after-reset.json
        cp -a $R/usr $OUT/usr-reset
        test ! -e $S/ostree/repo/refs/heads/livefs/live
        "#,
    );
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    assert_eq!(apply["to"], v2.as_str());
    assert_eq!(apply["counts"]["added_files"], 2);
    assert_eq!(apply["counts"]["added_dirs"], 1);
    assert_eq!(apply["state"]["state"], "live");
    assert_eq!(std::fs::read_to_string(sys.out.join("newprog.out")).unwrap(), "hello from the new program\n");
    assert!(std::fs::read_to_string(sys.out.join("touch.err")).unwrap().contains("Read-only file system"));
    assert_eq!(std::fs::read_to_string(sys.out.join("ref-live")).unwrap().trim(), v2);
    let status = read_json(&sys.out.join("status.json"));
    assert_eq!(status["live"]["checksum"], v2.as_str());
    assert_eq!(status["usr"]["kind"], "livefs");
    assert_eq!(status["changes"]["added"], 3);
    assert!(status["layer"]["bytes_linked"].as_u64().unwrap() > 0, "{}", status["layer"]);
    assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));

    let reset = read_json(&sys.out.join("reset.json"));
    assert_eq!(reset["state"]["state"], "booted");
    assert_eq!(read_json(&sys.out.join("status-after-reset.json"))["state"]["state"], "booted");
    assert_same_tree(&sys.out.join("usr-reset"), &sys.usr_of(&sys.booted));
}

/// A change and a removal are refused, naming them, with /usr untouched (not even
/// unlocked); --allow-replacement applies them.
#[test]
fn replacement_needs_permission() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    rm(&sys.tree.join("usr/share/doc/demo/README"));
    write(&sys.tree.join("usr/etc/motd"), b"motd v2\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        if L apply 2> $OUT/refused.err; then exit 1; fi
        findmnt -n -o FSTYPE $R/usr > $OUT/fstype
        L status --json > $OUT/status.json
        L apply --allow-replacement > $OUT/apply.txt
        $R/usr/bin/hello > $OUT/hello.out
        cp -a $R/usr $OUT/usr-live
        "#,
    );
    ok(&out);
    let err = std::fs::read_to_string(sys.out.join("refused.err")).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("the update changes or removes 2 existing path(s) in /usr"), "{err}");
    assert!(err.contains("/usr/bin/hello") && err.contains("/usr/share/doc/demo/README"), "{err}");
    assert!(!err.contains("/usr/etc/motd"), "usr/etc is not subject to the policy: {err}");
    assert_eq!(std::fs::read_to_string(sys.out.join("fstype")).unwrap().trim(), "ext4", "refused apply unlocked /usr");
    assert_eq!(read_json(&sys.out.join("status.json"))["state"]["state"], "booted");
    assert_eq!(std::fs::read_to_string(sys.out.join("hello.out")).unwrap(), "hello v2\n");
    assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));
}

/// --target applies a commit that is not deployed; a second apply goes on from
/// the live commit (incremental); the running kernel's modules are kept.
#[test]
fn target_incremental_and_kernel_modules() {
    let (mut sys, v2) = TestSystem::with_additions();
    let kver = kernel_release();
    rm(&sys.tree.join(format!("usr/lib/modules/{kver}")));
    write(&sys.tree.join("usr/lib/modules/99.0-next/vmlinuz"), b"next kernel");
    write(&sys.tree.join("usr/bin/v3-only"), b"v3");
    let v3 = sys.commit("3");
    let out = sys.run(&format!(
        r#"
        L apply --json > $OUT/apply2.json
        L apply --target {v3} --allow-replacement --json > $OUT/apply3.json
        cp -a $R/usr $OUT/usr-live
        L status --json > $OUT/status.json
        "#
    ));
    ok(&out);
    let a2 = read_json(&sys.out.join("apply2.json"));
    assert_eq!((a2["from"].as_str(), a2["to"].as_str()), (Some(sys.booted.as_str()), Some(v2.as_str())));
    let a3 = read_json(&sys.out.join("apply3.json"));
    assert_eq!((a3["from"].as_str(), a3["to"].as_str()), (Some(v2.as_str()), Some(v3.as_str())), "not incremental");
    assert_eq!(a3["counts"]["added_files"], 2, "{a3}");
    assert_eq!(a3["kept"][0], format!("/usr/lib/modules/{kver}"));
    let live = sys.out.join("usr-live");
    assert!(live.join(format!("lib/modules/{kver}/kernel/fs/x.ko")).exists(), "running kernel modules removed");
    assert!(live.join("lib/modules/99.0-next/vmlinuz").exists());
    // Apart from the kept modules, /usr is v3.
    rm(&live.join(format!("lib/modules/{kver}")));
    assert_same_tree(&live, &sys.usr_of(&v3));
    assert_eq!(read_json(&sys.out.join("status.json"))["live"]["checksum"], v3.as_str());
}

/// Killed in the middle, an apply is reported as interrupted, refuses another
/// target, and finishes when run again.
#[cfg(feature = "fault-injection")]
#[test]
fn interrupted_apply_resumes() {
    let mut sys = TestSystem::new();
    for i in 0..30 {
        write(&sys.tree.join(format!("usr/share/many/f{i}")), format!("{i}").as_bytes());
    }
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    write(&sys.tree.join("usr/share/other"), b"other");
    let v3 = sys.commit("3");
    let out = sys.run(&format!(
        r#"
        interrupt_apply --allow-replacement
        L status --json > $OUT/status.json
        L status > $OUT/status.txt
        if L apply --target {v3} --allow-replacement 2> $OUT/other.err; then exit 1; fi
        L apply --allow-replacement --json > $OUT/resume.json
        cp -a $R/usr $OUT/usr-live
        L status --json > $OUT/status-done.json
        "#
    ));
    ok(&out);
    let st = read_json(&sys.out.join("status.json"));
    assert_eq!(st["state"]["state"], "applying");
    assert_eq!(st["in_progress"][1]["checksum"], v2.as_str());
    let text = std::fs::read_to_string(sys.out.join("status.txt")).unwrap();
    assert!(text.contains("In progress:") && text.contains("interrupted"), "{text}");
    let err = std::fs::read_to_string(sys.out.join("other.err")).unwrap();
    assert!(err.contains(&format!("an interrupted apply to {v2} must be finished first")), "{err}");
    let resume = read_json(&sys.out.join("resume.json"));
    assert_eq!(resume["resumed"], true);
    assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));
    assert_eq!(read_json(&sys.out.join("status-done.json"))["state"]["state"], "live");
}

/// An interrupted apply whose pending deployment was undeployed since (and its
/// objects pruned but for livefs's pin) resumes its recorded target.
#[cfg(feature = "fault-injection")]
#[test]
fn interrupted_apply_resumes_after_undeploy() {
    let (sys, v2) = TestSystem::with_additions();
    let out = sys.run("interrupt_apply; L status --json > $OUT/status.json");
    ok(&out);
    assert_eq!(read_json(&sys.out.join("status.json"))["state"]["state"], "applying");
    let list = ostree(&["admin", "status", &format!("--sysroot={}", sys.sysroot.display())]);
    let index = list.lines().filter(|l| l.contains(" demo ")).position(|l| l.contains(&v2)).expect("v2 deployed");
    let undeploy = std::process::Command::new("ostree")
        .args(["admin", "undeploy", &format!("--sysroot={}", sys.sysroot.display()), &index.to_string()])
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .output()
        .unwrap();
    assert!(undeploy.status.success(), "{}", String::from_utf8_lossy(&undeploy.stderr));
    ostree(&["prune", &format!("--repo={}", sys.repo.display()), "--refs-only"]);
    let out = sys.run(
        r#"
        L status --json > $OUT/status-undeployed.json
        L apply --json > $OUT/resume.json
        cp -a $R/usr $OUT/usr-live
        "#,
    );
    ok(&out);
    assert!(read_json(&sys.out.join("status-undeployed.json"))["pending"].is_null());
    let resume = read_json(&sys.out.join("resume.json"));
    assert_eq!(resume["resumed"], true);
    assert_eq!(resume["to"], v2.as_str());
    assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));
}

/// Exit statuses: 0 done (also when there is nothing to do: `"changed": false`),
/// 1 error, 2 usage, 3 refused (nothing changed), 4 busy. With `--json`, an
/// error is a JSON object on stdout, its `kind` one of a few, and stderr stays empty.
#[test]
fn exit_statuses_and_json_errors() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        st() { if "$@" > $OUT/$NAME.out 2> $OUT/$NAME.err; then echo 0; else echo $?; fi > $OUT/$NAME.rc; }
        NAME=refused st L apply
        NAME=refused-json st L apply --json
        NAME=bad-rev-json st L apply --json --target no-such-ref
        NAME=usage st L apply --no-such-flag
        NAME=applied st L apply --allow-replacement --json
        NAME=again st L apply --allow-replacement --json
        NAME=dry st L reset --dry-run --json
        "#,
    );
    ok(&out);
    let read = |n: &str| std::fs::read_to_string(sys.out.join(n)).unwrap();
    let rc = |n: &str| read(&format!("{n}.rc")).trim().parse::<i32>().unwrap();
    assert_eq!(rc("refused"), 3);
    assert!(read("refused.err").contains("rerun with --allow-replacement"));
    assert_eq!(rc("refused-json"), 3);
    assert_eq!(read("refused-json.err"), "");
    let e = read_json(&sys.out.join("refused-json.out"));
    assert_eq!(e["kind"], "refused_replacement");
    assert!(e["error"].as_str().unwrap().contains("/usr/bin/hello"), "{e}");
    assert_eq!(rc("bad-rev-json"), 1);
    assert_eq!(read_json(&sys.out.join("bad-rev-json.out"))["kind"], "bad_revision");
    assert_eq!(rc("usage"), 2);
    assert_eq!(rc("applied"), 0);
    assert_eq!(read_json(&sys.out.join("applied.out"))["changed"], true);
    assert_eq!(rc("again"), 0);
    assert_eq!(read_json(&sys.out.join("again.out"))["changed"], false);
    assert_eq!(rc("dry"), 0);
    assert_eq!(read_json(&sys.out.join("dry.out"))["changed"], false);
}

/// One livefs at a time: a second one waits for the first (up to
/// --lock-timeout), then fails as busy (exit status 4), having changed nothing.
#[test]
fn one_livefs_at_a_time() {
    let (sys, _) = TestSystem::with_additions();
    let out = sys.run(
        r#"
        mkdir -p $R/run/livefs
        flock -o $R/run/livefs/lock sleep 30 > /dev/null 2>&1 &
        sleep 0.5
        if L apply --lock-timeout 1 2> $OUT/busy.err; then exit 1; else echo $? > $OUT/busy.rc; fi
        if L apply --json --lock-timeout 0 > $OUT/busy.json; then exit 1; fi
        L status --json > $OUT/status-busy.json
        kill %1; wait
        # The holder lets go within the wait: the second one goes ahead.
        flock $R/run/livefs/lock sleep 2 &
        sleep 0.5
        L apply --lock-timeout 30 --json > $OUT/waited.json 2> $OUT/waited.err
        "#,
    );
    ok(&out);
    let err = std::fs::read_to_string(sys.out.join("busy.err")).unwrap();
    assert!(err.contains("another livefs is running on this system"), "{err}");
    assert!(err.contains("waiting up to 1 s for another livefs"), "{err}");
    assert_eq!(std::fs::read_to_string(sys.out.join("busy.rc")).unwrap().trim(), "4");
    assert_eq!(read_json(&sys.out.join("busy.json"))["kind"], "busy");
    assert_eq!(read_json(&sys.out.join("status-busy.json"))["state"]["state"], "booted", "nothing changed");
    assert_eq!(read_json(&sys.out.join("waited.json"))["state"]["state"], "live");
}

#[test]
fn not_booted_and_no_pending() {
    let sys = TestSystem::new();
    let out = sys.run(
        r#"
        L apply > $OUT/nopending.out
        L apply --json > $OUT/nopending.json
        rm $R/run/ostree-booted
        if L status 2> $OUT/notbooted.err; then exit 1; fi
        "#,
    );
    ok(&out);
    // Nothing pending is a no-op (exit 0), so automation can run apply blindly.
    let out = std::fs::read_to_string(sys.out.join("nopending.out")).unwrap();
    assert!(out.starts_with("Nothing to do: nothing to apply: no pending deployment"), "{out}");
    assert_eq!(read_json(&sys.out.join("nopending.json"))["changed"], false);
    let err = std::fs::read_to_string(sys.out.join("notbooted.err")).unwrap();
    assert!(err.contains("is neither OSTree-booted") && err.contains("run/ostree-booted does not exist"), "{err}");
}

/// After a reboot the state in /run is gone: livefs sees a booted system again
/// and removes what the previous boot left (refs, layers no mount uses).
#[test]
fn reboot_forgets_and_cleans_up() {
    let (sys, _) = TestSystem::with_additions();
    ok(&sys.run("L apply"));
    assert!(sys.repo.join("refs/heads/livefs/live").exists());
    let layers_dir = sys.sysroot.join(format!("ostree/deploy/demo/backing/{}.0/livefs", sys.booted));
    let layers = || {
        std::fs::read_dir(&layers_dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().as_encoded_bytes().starts_with(b"usr."))
            .count()
    };
    assert_eq!(layers(), 1);
    // Names that are not livefs's (one not even UTF-8) never block the cleanup
    // and are left alone.
    std::fs::create_dir(layers_dir.join("not-ours")).unwrap();
    std::fs::write(layers_dir.join(std::ffi::OsStr::from_bytes(b"usr.\xff\xfe")), b"x").unwrap();
    sys.reboot();
    let out = sys.run("L status --json > $OUT/status.json; L apply --json > $OUT/apply.json");
    ok(&out);
    assert_eq!(read_json(&sys.out.join("status.json"))["state"]["state"], "booted");
    assert_eq!(read_json(&sys.out.join("apply.json"))["from"], sys.booted.as_str());
    assert_eq!(layers(), 2, "the stale layer was not removed (or the foreign name was)");
    assert!(layers_dir.join("not-ours").is_dir());
}

/// `ostree admin status` itself, run as on the booted system, shows the unlock.
/// It runs in a chroot whose / is a second bind mount of the booted deployment
/// (so ostree recognises it as booted) with the host's /usr mounted over it for
/// the ostree binary; livefs's /usr under $R is a different mount and unaffected.
#[test]
fn ostree_admin_status_shows_the_unlock() {
    let (sys, _) = TestSystem::with_additions();
    let out = sys.run(
        r#"
        L apply
        R2=$OUT/chroot; mkdir -p $R2
        mount --bind $S/ostree/deploy/demo/deploy/$BOOTED.0 $R2
        mount --bind /usr $R2/usr
        mount --bind $R/run $R2/run
        mount --bind $S $R2/sysroot
        mount --bind $S/boot $R2/boot
        mount -t proc proc $R2/proc
        chroot $R2 ostree admin status > $OUT/admin-status.txt
        "#,
    );
    ok(&out);
    let text = std::fs::read_to_string(sys.out.join("admin-status.txt")).unwrap();
    assert!(text.contains(&format!("* demo {}.0", sys.booted)), "ostree does not see the booted deployment:\n{text}");
    assert!(text.contains("Unlocked: transient"), "ostree does not show the unlock:\n{text}");
}

/// An existing `ostree admin unlock --transient` overlay (read-only) is used as it
/// is: written through, file by file, not stacked on. `upper` is where ostree
/// keeps its upper and work directories.
fn ostree_transient_unlock_is_used(upper: &str) {
    let (sys, v2) = TestSystem::with_additions();
    let out = sys.run(&format!(
        r#"
        O={upper}; mkdir -p $O/upper $O/work
        mount -t overlay overlay -o lowerdir=$R/usr,upperdir=$O/upper,workdir=$O/work $R/usr
        mount -o remount,bind,ro $R/usr
        L status --json > $OUT/before.json
        L apply --json > $OUT/apply.json
        findmnt -n -o FSTYPE $R/usr | wc -l > $OUT/mounts
        test -e $O/upper/bin/newprog
        cp -a $R/usr $OUT/usr-live
        "#
    ));
    ok(&out);
    assert_eq!(read_json(&sys.out.join("before.json"))["usr"]["kind"], "ostree-transient");
    assert_eq!(read_json(&sys.out.join("apply.json"))["state"]["state"], "live");
    // No second overlay was stacked on top: ro bind + the ostree overlay.
    assert_eq!(std::fs::read_to_string(sys.out.join("mounts")).unwrap().trim(), "2");
    assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));
}

/// ostree 2025.2 and older: /var/tmp/ostree-unlock-ovl.XXXXXX.
#[test]
fn ostree_transient_unlock_in_var_tmp_is_used() {
    ostree_transient_unlock_is_used("$R/var/tmp/ostree-unlock-ovl.TEST");
}

/// ostree 2025.3 and later: SYSROOT/ostree/deploy/OS/backing/CSUM.SERIAL/usr-transient.
#[test]
fn ostree_transient_unlock_in_backing_is_used() {
    ostree_transient_unlock_is_used("$S/ostree/deploy/demo/backing/$BOOTED.0/usr-transient");
}

/// A hotfix unlock persists across reboots: livefs refuses to write through it.
#[test]
fn hotfix_unlock_is_refused() {
    let (sys, _) = TestSystem::with_additions();
    let origin = sys.sysroot.join(format!("ostree/deploy/demo/deploy/{}.0.origin", sys.booted));
    let text = std::fs::read_to_string(&origin).unwrap();
    std::fs::write(&origin, format!("{text}\nunlocked=hotfix\n")).unwrap();
    let out = sys.run("if L apply 2> $OUT/err; then exit 1; fi; findmnt -n -o FSTYPE $R/usr | wc -l > $OUT/mounts");
    ok(&out);
    let err = std::fs::read_to_string(sys.out.join("err")).unwrap();
    assert!(err.contains("unlocked in hotfix mode"), "{err}");
    assert_eq!(std::fs::read_to_string(sys.out.join("mounts")).unwrap().trim(), "1", "an overlay was mounted");
}

/// A sysroot mounted read-only (as Fedora CoreOS does): the pinning refs are
/// written through a private writable clone, with no warning; others still see
/// it read-only.
#[test]
fn read_only_sysroot_still_pins() {
    let (sys, v2) = TestSystem::with_additions();
    let out = sys.run(
        r#"
        mount --bind $S $S
        mount -o remount,bind,ro $S
        if touch $S/ostree/repo/probe 2>/dev/null; then echo "sysroot is writable" >&2; exit 1; fi
        L apply 2> $OUT/stderr || { cat $OUT/stderr >&2; exit 1; }
        cat $S/ostree/repo/refs/heads/livefs/live > $OUT/ref
        if touch $S/ostree/repo/probe 2>/dev/null; then echo "sysroot became writable" >&2; exit 1; fi
        "#,
    );
    ok(&out);
    assert_eq!(std::fs::read_to_string(sys.out.join("stderr")).unwrap(), "", "apply warned");
    assert_eq!(std::fs::read_to_string(sys.out.join("ref")).unwrap().trim(), v2);
}

/// A full /run never blocks the way back: an apply keeps room for its records
/// there before anything changes; once /run fills up, another apply finishes
/// (or is refused before anything changes), a reset goes back, and a reset with
/// nothing to do succeeds.
#[test]
fn a_full_run_never_blocks_the_way_back() {
    let (mut sys, _v2) = TestSystem::with_additions();
    write(&sys.tree.join("usr/bin/third"), b"v3\n");
    let v3 = sys.commit("3");
    ok(&sys.run(&format!(
        r#"
        mount -t tmpfs -o size=1m small-run $R/run
        touch $R/run/ostree-booted
        L apply > $OUT/apply1.out
        dd if=/dev/zero of=$R/run/filler bs=4k 2> /dev/null || true
        rc=0; L apply --target {v3} > $OUT/apply2.out 2> $OUT/apply2.err || rc=$?
        echo $rc > $OUT/apply2.rc
        L status --json > $OUT/status-full.json
        L reset > $OUT/reset.out 2> $OUT/reset.err
        L status --json > $OUT/status-reset.json
        L reset > $OUT/reset-again.out 2> $OUT/reset-again.err
        "#
    )));
    let st = read_json(&sys.out.join("status-full.json"));
    let rc = std::fs::read_to_string(sys.out.join("apply2.rc")).unwrap();
    let err = std::fs::read_to_string(sys.out.join("apply2.err")).unwrap();
    assert_ne!(st["state"]["state"], "applying", "a full /run left an interrupted apply: {err}");
    if rc.trim() == "0" {
        assert_eq!(st["state"]["commit"], v3.as_str());
    } else {
        assert!(err.contains("no room for livefs's records"), "{err}");
    }
    assert_eq!(read_json(&sys.out.join("status-reset.json"))["state"]["state"], "booted");
    assert_eq!(std::fs::read_to_string(sys.out.join("reset-again.err")).unwrap(), "");
}

/// `livefs status` answers any user, as `ostree admin status` does: as `nobody`
/// on a live system it reports the live commit, and says that other users'
/// processes were not checked for restarts instead of claiming none need one.
/// What changes the system refuses early as non-root, changing nothing.
#[test]
fn status_for_an_unprivileged_user() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    // The scratch directory is private (0700) to root; a user must reach ROOT in it.
    chmod(sys.dir.path(), 0o755);
    let out = sys.run(
        r#"
        L apply --allow-replacement > /dev/null
        sleep 300 & # a root process: not readable by nobody
        N() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
        N $LIVEFS --root $R --sysroot $S status --json > $OUT/nobody.json 2> $OUT/nobody-json.err || { cat $OUT/nobody.json >&2; exit 1; }
        N $LIVEFS --root $R --sysroot $S status > $OUT/nobody.txt 2> $OUT/nobody.err || { cat $OUT/nobody.err >&2; exit 1; }
        cp -a $R/run/livefs $OUT/run-before
        N $LIVEFS --root $R --sysroot $S reset > /dev/null 2> $OUT/reset.err && exit 1
        echo $? > $OUT/reset.rc
        N $LIVEFS --root $R --sysroot $S reset --json > $OUT/reset.json && exit 1
        N $LIVEFS --root $R --sysroot $S apply --dry-run > /dev/null 2> $OUT/dry.err && exit 1
        diff -r $R/run/livefs $OUT/run-before
        L status --json > $OUT/root.json
        kill %1
        "#,
    );
    ok(&out);
    let st = read_json(&sys.out.join("nobody.json"));
    common::schema::assert_valid(&common::schema::validator("status"), "nobody.json", &st);
    assert_eq!(st["state"]["state"], "live", "{st}");
    assert_eq!(st["live"]["checksum"], v2.as_str());
    assert_eq!(st["usr"]["kind"], "livefs");
    let warnings = st["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().contains("not checked")),
        "no warning that other users' processes were not checked: {warnings:?}"
    );
    assert_eq!(std::fs::read_to_string(sys.out.join("nobody-json.err")).unwrap(), "", "JSON carries the warnings");
    let text = std::fs::read_to_string(sys.out.join("nobody.txt")).unwrap();
    assert!(text.contains(&format!("Live:        {}", &v2[..12])), "{text}");
    let err = std::fs::read_to_string(sys.out.join("nobody.err")).unwrap();
    assert!(err.contains("not checked"), "{err}");
    let reset = std::fs::read_to_string(sys.out.join("reset.err")).unwrap();
    assert_eq!(reset.lines().count(), 1, "{reset}");
    assert!(reset.contains("livefs reset needs root"), "{reset}");
    assert_eq!(std::fs::read_to_string(sys.out.join("reset.rc")).unwrap().trim(), "3");
    assert_eq!(read_json(&sys.out.join("reset.json"))["kind"], "not_root");
    assert!(std::fs::read_to_string(sys.out.join("dry.err")).unwrap().contains("livefs apply needs root"));
    assert_eq!(read_json(&sys.out.join("root.json"))["state"]["state"], "live", "nothing changed");
}

/// Names with a newline, a tab, quotes or a backslash (OSTree allows them):
/// every text listing shows one path per line, quoted as git quotes them; JSON
/// keeps them exact.
#[test]
fn odd_names_are_one_line_each_in_text_and_exact_in_json() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/share/odd/back\\slash"), b"v1\n");
    sys.booted = sys.commit("1b");
    sys.deploy(&sys.booted.clone());
    let names = ["two\nlines", "tab\there", "\"quoted\""];
    for n in names {
        write(&sys.tree.join("usr/share/odd").join(n), b"new\n");
    }
    write(&sys.tree.join("usr/share/odd/back\\slash"), b"v2\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(&format!(
        r#"
        L diff --repo $S/ostree/repo {booted} {v2} > $OUT/diff.txt
        L diff --repo $S/ostree/repo --json {booted} {v2} > $OUT/diff.json
        L status --json > $OUT/status.json
        L apply > /dev/null 2> $OUT/refused.err && exit 1
        L apply --allow-replacement --dry-run > $OUT/dry.txt
        L apply --allow-replacement --json > $OUT/apply.json
        cat "$R/usr/share/odd/two
lines" > $OUT/content
        "#,
        booted = sys.booted,
    ));
    ok(&out);
    let diff = std::fs::read_to_string(sys.out.join("diff.txt")).unwrap();
    let want = [
        r#"M    "/usr/share/odd/back\\slash""#,
        r#"A    "/usr/share/odd/\"quoted\"""#,
        r#"A    "/usr/share/odd/tab\there""#,
        r#"A    "/usr/share/odd/two\nlines""#,
    ];
    for w in want {
        assert!(diff.lines().any(|l| l == w), "{w} not a line of:\n{diff}");
    }
    assert!(diff.lines().all(|l| l.len() > 5 && ["M    ", "A    ", "D    "].contains(&&l[..5])), "{diff}");
    let json = read_json(&sys.out.join("diff.json"));
    let added: Vec<&str> = json["added"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(added.contains(&"/usr/share/odd/two\nlines"), "{added:?}");
    let status = read_json(&sys.out.join("status.json"));
    assert_eq!(status["strategy"]["replaces"], serde_json::json!(["/usr/share/odd/back\\slash"]));
    let refused = std::fs::read_to_string(sys.out.join("refused.err")).unwrap();
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert!(refused.contains(r#""/usr/share/odd/back\\slash""#), "{refused}");
    let dry = std::fs::read_to_string(sys.out.join("dry.txt")).unwrap();
    assert!(dry.lines().any(|l| l == r#"add      "/share/odd/two\nlines""#), "{dry}");
    assert!(dry.lines().any(|l| l == r#"replace  "/share/odd/back\\slash""#), "{dry}");
    let apply = read_json(&sys.out.join("apply.json"));
    let added: Vec<&str> = apply["added"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    for n in names {
        assert!(added.contains(&format!("/share/odd/{n}").as_str()), "{n:?} not in {added:?}");
    }
    assert_eq!(std::fs::read_to_string(sys.out.join("content")).unwrap(), "new\n");
}
