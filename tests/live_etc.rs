//! /etc during `livefs apply` and `reset`: local changes are kept, the update's
//! own changes are carried, conflicts are reported, and a reset puts /etc back
//! exactly as it was.

mod common;

use common::system::{ok, read_json, TestSystem};
use common::*;

/// v1 and v2 differ in /usr/etc in every way that matters; returns v2.
fn etc_update(sys: &mut TestSystem) -> String {
    let e = sys.tree.join("usr/etc");
    for (name, body) in [
        ("edited.conf", "v1\n"),
        ("plain.conf", "v1\n"),
        ("gone.conf", "v1\n"),
        ("gone-edited.conf", "v1\n"),
        ("to-dir", "v1 file\n"),
        ("to-dir-edited", "v1 file\n"),
    ] {
        write(&e.join(name), body.as_bytes());
    }
    write(&e.join("olddir/x.conf"), b"x\n");
    let v1 = sys.commit("1.1");
    sys.booted = v1.clone();
    sys.deploy(&v1);
    write(&e.join("edited.conf"), b"v2\n");
    write(&e.join("plain.conf"), b"v2\n");
    rm(&e.join("gone.conf"));
    rm(&e.join("gone-edited.conf"));
    write(&e.join("new.conf"), b"new\n");
    write(&e.join("newdir/a.conf"), b"a\n");
    for d in ["to-dir", "to-dir-edited"] {
        rm(&e.join(d));
        write(&e.join(d).join("inner.conf"), b"inner\n");
    }
    rm(&e.join("olddir"));
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    v2
}

const LOCAL_EDITS: &str = r#"
    echo "admin" >> $R/etc/edited.conf
    echo "admin" >> $R/etc/gone-edited.conf
    echo "admin" >> $R/etc/to-dir-edited
    echo "admin only" > $R/etc/admin-only.conf
"#;

#[test]
fn etc_merge_and_exact_reset() {
    let mut sys = TestSystem::new();
    let v2 = etc_update(&mut sys);
    let out = sys.run(&format!(
        r#"
        {LOCAL_EDITS}
        cp -a $R/etc $OUT/etc-before
        L apply --allow-replacement --json > $OUT/apply.json
        cp -a $R/etc $OUT/etc-live
        L reset --json > $OUT/reset.json
        cp -a $R/etc $OUT/etc-reset
        test ! -e $R/run/livefs/etc-journal
        "#
    ));
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    assert_eq!(apply["to"], v2.as_str());
    let actions: Vec<(String, String)> = apply["etc"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_string(), p["action"].as_str().unwrap().to_string()))
        .collect();
    let action = |path: &str| actions.iter().find(|(p, _)| p == path).map(|(_, a)| a.as_str()).unwrap_or("none");
    assert_eq!(action("/edited.conf"), "kept", "{actions:?}");
    assert_eq!(action("/plain.conf"), "updated");
    assert_eq!(action("/gone.conf"), "removed");
    assert_eq!(action("/gone-edited.conf"), "kept");
    assert_eq!(action("/new.conf"), "added");
    assert_eq!(action("/newdir"), "added");
    assert_eq!(action("/newdir/a.conf"), "added");
    assert_eq!(action("/to-dir"), "updated");
    assert_eq!(action("/to-dir-edited"), "conflict");
    assert_eq!(action("/olddir"), "removed");

    let live = sys.out.join("etc-live");
    let read = |p: &str| std::fs::read_to_string(live.join(p)).ok();
    assert_eq!(read("edited.conf").as_deref(), Some("v1\nadmin\n"), "a local edit was overwritten");
    assert_eq!(read("plain.conf").as_deref(), Some("v2\n"));
    assert_eq!(read("gone.conf"), None);
    assert_eq!(read("gone-edited.conf").as_deref(), Some("v1\nadmin\n"));
    assert_eq!(read("new.conf").as_deref(), Some("new\n"));
    assert_eq!(read("newdir/a.conf").as_deref(), Some("a\n"));
    assert_eq!(read("to-dir/inner.conf").as_deref(), Some("inner\n"));
    assert_eq!(read("to-dir-edited").as_deref(), Some("v1 file\nadmin\n"));
    assert_eq!(read("admin-only.conf").as_deref(), Some("admin only\n"));
    assert!(!live.join("olddir").exists());

    // The reset restores /etc exactly: content, modes, owners, xattrs.
    assert_same_tree(&sys.out.join("etc-reset"), &sys.out.join("etc-before"));
    assert!(!read_json(&sys.out.join("reset.json"))["etc_restored"].as_array().unwrap().is_empty());
}

/// A dry run decides the same, and changes nothing.
#[test]
fn etc_dry_run_changes_nothing() {
    let mut sys = TestSystem::new();
    etc_update(&mut sys);
    let out = sys.run(&format!(
        r#"
        {LOCAL_EDITS}
        cp -a $R/etc $OUT/etc-before
        L apply --allow-replacement --dry-run --json > $OUT/dry.json
        cp -a $R/etc $OUT/etc-after
        "#
    ));
    ok(&out);
    let dry = read_json(&sys.out.join("dry.json"));
    assert!(dry["etc"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["path"] == "/plain.conf" && p["action"] == "updated"));
    assert_same_tree(&sys.out.join("etc-after"), &sys.out.join("etc-before"));
}

/// Killed after each mutation of an apply (in /usr, /etc, the state records and
/// the triggers), the next apply finishes all of them, and a reset still restores
/// /etc exactly.
#[cfg(feature = "fault-injection")]
#[test]
fn interrupted_apply_resumes_etc() {
    let mut sys = TestSystem::new();
    let v2 = etc_update(&mut sys);
    // How many mutations a whole apply makes (/usr, then /etc).
    ok(&sys.run(&format!("{LOCAL_EDITS}\n L apply --allow-replacement --json > $OUT/probe.json; L reset > /dev/null")));
    let total = read_json(&sys.out.join("probe.json"))["mutations"].as_u64().unwrap();
    assert!(total > 20, "{total}");
    eprintln!("mutations in a whole apply: {total}");
    for f in ["edited.conf", "gone-edited.conf"] {
        write(&sys.sysroot.join(format!("ostree/deploy/demo/deploy/{}.0/etc/{f}", sys.booted)), b"v1\n");
    }
    write(&sys.sysroot.join(format!("ostree/deploy/demo/deploy/{}.0/etc/to-dir-edited", sys.booted)), b"v1 file\n");
    for n in 1..total {
        sys.reboot();
        let out = sys.run(&format!(
            r#"
            rm -rf $OUT/etc-before $OUT/etc-live $OUT/etc-reset
            {LOCAL_EDITS}
            cp -a $R/etc $OUT/etc-before
            LIVEFS_FAULT_AFTER={n} L apply --allow-replacement > /dev/null 2>&1 || true
            L apply --allow-replacement --json > $OUT/apply.json
            cp -a $R/etc $OUT/etc-live
            cp -a $R/usr $OUT/usr-live
            L reset > /dev/null
            cp -a $R/etc $OUT/etc-reset
            "#
        ));
        ok(&out);
        let live = sys.out.join("etc-live");
        assert_eq!(std::fs::read_to_string(live.join("plain.conf")).unwrap(), "v2\n", "kill at {n}");
        assert_eq!(std::fs::read_to_string(live.join("edited.conf")).unwrap(), "v1\nadmin\n", "kill at {n}");
        assert!(
            live.join("newdir/a.conf").exists() && !live.join("gone.conf").exists(),
            "kill at {n}: {}",
            std::fs::read_to_string(sys.out.join("apply.json")).unwrap()
        );
        assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));
        assert_same_tree(&sys.out.join("etc-reset"), &sys.out.join("etc-before"));
        std::fs::remove_dir_all(sys.out.join("usr-live")).unwrap();
        // The next round starts from the booted /etc again.
        let etc = sys.sysroot.join(format!("ostree/deploy/demo/deploy/{}.0/etc", sys.booted));
        for f in ["edited.conf", "gone-edited.conf", "to-dir-edited"] {
            write(&etc.join(f), b"v1\n");
        }
        write(&etc.join("to-dir-edited"), b"v1 file\n");
    }
}

/// A path the update cannot change (an immutable file) is contained: reported as
/// failed with the reason, left as it was, and the rest of /etc (and /usr) goes
/// on. A reset that cannot put it back keeps it in the journal; once possible,
/// the next reset does, and /etc is exactly as before.
#[test]
fn etc_failures_are_contained_per_path() {
    let mut sys = TestSystem::new();
    etc_update(&mut sys);
    let out = sys.run(
        r#"
        cp -a $R/etc $OUT/etc-before
        chattr +i $R/etc/plain.conf
        L apply --allow-replacement --json > $OUT/apply.json
        L apply --allow-replacement > $OUT/apply.txt
        cat $R/etc/plain.conf > $OUT/plain-after-apply
        L reset --json > $OUT/reset.json
        L status --json > $OUT/status.json
        chattr -i $R/etc/plain.conf
        L reset --json > $OUT/reset-again.json
        cp -a $R/etc $OUT/etc-after
        "#,
    );
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    assert_eq!(apply["state"]["state"], "live");
    let paths = apply["etc"]["paths"].as_array().unwrap();
    let of = |p: &str| paths.iter().find(|e| e["path"] == p).unwrap_or_else(|| panic!("{p} in {paths:?}")).clone();
    assert_eq!(of("/plain.conf")["action"], "failed");
    assert!(of("/plain.conf")["error"].as_str().unwrap().contains("Operation not permitted"), "{paths:?}");
    assert_eq!(of("/new.conf")["action"], "added");
    assert_eq!(of("/newdir/a.conf")["action"], "added");
    assert_eq!(std::fs::read_to_string(sys.out.join("plain-after-apply")).unwrap(), "v1\n");
    let reset = read_json(&sys.out.join("reset.json"));
    assert_eq!(reset["state"]["state"], "booted");
    let failed = reset["etc"]["paths"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["path"], "/plain.conf");
    assert_eq!(read_json(&sys.out.join("status.json"))["state"]["state"], "booted");
    let again = read_json(&sys.out.join("reset-again.json"));
    assert_eq!(again["etc_restored"], serde_json::json!(["/plain.conf"]));
    assert_same_tree(&sys.out.join("etc-after"), &sys.out.join("etc-before"));
}

/// The admin's own changes win, judged per subtree: a directory replaced by a
/// symlink keeps its subtree (the rest of the update goes on), and a directory
/// whose own mode the admin changed still gets the updates of its children.
#[test]
fn etc_local_changes_are_judged_per_subtree() {
    let mut sys = TestSystem::new();
    let e = sys.tree.join("usr/etc");
    write(&e.join("linked.d/a.conf"), b"a v1\n");
    write(&e.join("chmodded.d/b.conf"), b"b v1\n");
    sys.booted = sys.commit("1.1");
    sys.deploy(&sys.booted.clone());
    write(&e.join("linked.d/a.conf"), b"a v2\n");
    write(&e.join("linked.d/new.conf"), b"new\n");
    write(&e.join("chmodded.d/b.conf"), b"b v2\n");
    chmod(&e.join("chmodded.d"), 0o750);
    write(&e.join("other.conf"), b"other\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        mkdir $OUT/elsewhere
        rm -r $R/etc/linked.d && ln -s $OUT/elsewhere $R/etc/linked.d
        chmod 700 $R/etc/chmodded.d
        L apply --json > $OUT/apply.json
        stat -c %a $R/etc/chmodded.d > $OUT/mode
        "#,
    );
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    let paths = apply["etc"]["paths"].as_array().unwrap();
    let of = |p: &str| paths.iter().find(|e| e["path"] == p).map(|e| e["action"].as_str().unwrap().to_string());
    assert_eq!(of("/linked.d/a.conf").as_deref(), Some("kept"), "{paths:?}");
    assert_eq!(of("/linked.d/new.conf").as_deref(), Some("kept"), "{paths:?}");
    assert_eq!(of("/chmodded.d").as_deref(), Some("kept"), "{paths:?}");
    assert_eq!(of("/chmodded.d/b.conf").as_deref(), Some("updated"), "{paths:?}");
    assert_eq!(of("/other.conf").as_deref(), Some("added"), "{paths:?}");
    assert!(std::fs::read_dir(sys.out.join("elsewhere")).unwrap().next().is_none(), "wrote through the symlink");
    assert_eq!(std::fs::read_to_string(sys.out.join("mode")).unwrap().trim(), "700");
}

/// A directory whose metadata one apply changes and a later apply removes comes
/// back from a reset with its original metadata and its content.
#[test]
fn etc_dir_changed_then_removed_comes_back_whole() {
    let mut sys = TestSystem::new();
    let e = sys.tree.join("usr/etc");
    write(&e.join("d/a.conf"), b"a v1\n");
    write(&e.join("d/sub/b.conf"), b"b v1\n");
    sys.booted = sys.commit("1.1");
    sys.deploy(&sys.booted.clone());
    chmod(&e.join("d"), 0o750);
    write(&e.join("d/a.conf"), b"a v2\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    rm(&e.join("d"));
    let v3 = sys.commit("3");
    let out = sys.run(&format!(
        r#"
        cp -a $R/etc $OUT/etc-before
        L apply --allow-replacement > /dev/null
        stat -c %a $R/etc/d > $OUT/mode-v2
        L apply --allow-replacement --target {v3} > /dev/null
        test ! -e $R/etc/d
        L reset > /dev/null
        cp -a $R/etc $OUT/etc-after
        "#
    ));
    ok(&out);
    assert_eq!(std::fs::read_to_string(sys.out.join("mode-v2")).unwrap().trim(), "750");
    assert_same_tree(&sys.out.join("etc-after"), &sys.out.join("etc-before"));
}

/// A mode change of `usr/etc` itself is carried to `/etc` like any directory's,
/// and a reset takes it back.
#[test]
fn etc_own_mode_change_is_applied_and_reset() {
    let mut sys = TestSystem::new();
    chmod(&sys.tree.join("usr/etc"), 0o750);
    write(&sys.tree.join("usr/etc/new.conf"), b"new\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        stat -c %a $R/etc > $OUT/before
        L apply --allow-replacement --json > $OUT/apply.json
        stat -c %a $R/etc > $OUT/live
        L reset > /dev/null
        stat -c %a $R/etc > $OUT/reset
        "#,
    );
    ok(&out);
    let read = |n: &str| std::fs::read_to_string(sys.out.join(n)).unwrap().trim().to_string();
    assert_eq!((read("before"), read("live"), read("reset")), ("755".into(), "750".into(), "755".into()));
    let apply = read_json(&sys.out.join("apply.json"));
    assert!(apply["etc"]["paths"].as_array().unwrap().iter().any(|p| p["path"] == "/" && p["action"] == "updated"));
}

/// The journal holds only what livefs writes: an index naming a path outside
/// /etc is refused with a one-line error before anything changes, and nothing
/// outside ROOT is touched. A directory holding a name that is not UTF-8 is a
/// local change (no OSTree tree has one): kept, never a reason to fail.
#[test]
fn hostile_journal_and_odd_names() {
    let mut sys = TestSystem::new();
    etc_update(&mut sys);
    let out = sys.run(
        r#"
        touch $OUT/outside
        mkdir -p $R/run/livefs/etc-journal
        echo '[{"path": "/../../../outside", "original": {"kind": "absent"}}]' > $R/run/livefs/etc-journal/index.json
        if L apply --allow-replacement 2> $OUT/apply.err; then exit 1; fi
        findmnt -n -o FSTYPE $R/usr | wc -l > $OUT/mounts
        if L reset 2> $OUT/reset.err; then exit 1; fi
        test -e $OUT/outside
        if L apply --allow-replacement 2> $OUT/apply-after-reset.err; then exit 1; fi
        rm -r $R/run/livefs/etc-journal
        L reset > /dev/null
        touch $R/etc/olddir/$'\xff\xfe'
        L apply --allow-replacement --json > $OUT/apply.json
        test -e $R/etc/olddir/$'\xff\xfe'
        L reset > /dev/null
        "#,
    );
    ok(&out);
    for name in ["apply.err", "reset.err"] {
        let err = std::fs::read_to_string(sys.out.join(name)).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("which livefs never journals"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(sys.out.join("mounts")).unwrap().trim(), "1", "a refused apply changed /usr");
    let err = std::fs::read_to_string(sys.out.join("apply-after-reset.err")).unwrap();
    assert!(err.contains("an interrupted reset must be finished first: run `livefs reset`"), "{err}");
    let apply = read_json(&sys.out.join("apply.json"));
    let olddir = apply["etc"]["paths"].as_array().unwrap().iter().find(|p| p["path"] == "/olddir").cloned();
    assert_eq!(olddir.map(|p| p["action"].clone()), Some("kept".into()), "{}", apply["etc"]);
}

/// The update turns /etc directories into files (and back) where the admin has
/// content of their own: nothing of the admin's is ever deleted or reported as
/// done; the path is reported as a conflict and left as it was; a reset restores
/// /etc exactly.
#[test]
fn etc_type_changes_never_take_the_admins_content() {
    let mut sys = TestSystem::new();
    let e = sys.tree.join("usr/etc");
    write(&e.join("conf.d/default.conf"), b"default\n");
    write(&e.join("unit.d/default.conf"), b"default\n");
    write(&e.join("becomes-dir"), b"a file\n");
    let v1 = sys.commit("1.1");
    sys.booted = v1.clone();
    sys.deploy(&v1);
    rm(&e.join("conf.d"));
    write(&e.join("conf.d"), b"now a file\n");
    rm(&e.join("unit.d"));
    rm(&e.join("becomes-dir"));
    write(&e.join("becomes-dir/inner.conf"), b"inner\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        echo local > $R/etc/conf.d/local.conf
        echo local > $R/etc/unit.d/local.conf
        rm $R/etc/becomes-dir
        mkdir $R/etc/becomes-dir
        echo admin > $R/etc/becomes-dir/admin.conf
        cp -a $R/etc $OUT/etc-before
        L apply --allow-replacement --json > $OUT/apply.json
        cp -a $R/etc $OUT/etc-live
        L reset > $OUT/reset.txt
        cp -a $R/etc $OUT/etc-reset
        "#,
    );
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    let action = |path: &str| {
        apply["etc"]["paths"].as_array().unwrap().iter().find(|p| p["path"] == path).map(|p| p["action"].clone())
    };
    assert_eq!(action("/conf.d"), Some("conflict".into()), "{apply}");
    assert_eq!(action("/unit.d"), Some("kept".into()), "{apply}");
    assert_eq!(action("/becomes-dir"), Some("conflict".into()), "{apply}");
    let live = sys.out.join("etc-live");
    assert_eq!(std::fs::read_to_string(live.join("conf.d/local.conf")).unwrap(), "local\n");
    assert_eq!(std::fs::read_to_string(live.join("conf.d/default.conf")).unwrap(), "default\n");
    assert_eq!(std::fs::read_to_string(live.join("unit.d/local.conf")).unwrap(), "local\n");
    assert_eq!(std::fs::read_to_string(live.join("becomes-dir/admin.conf")).unwrap(), "admin\n");
    assert!(!live.join("becomes-dir/inner.conf").exists(), "the update wrote into the admin's directory");
    assert_same_tree(&sys.out.join("etc-reset"), &sys.out.join("etc-before"));
}
