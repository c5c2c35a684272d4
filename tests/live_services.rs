//! After the files: users, /var state, and what needs a restart.

mod common;

use common::system::{ok, read_json, TestSystem};
use common::*;

/// A real process running a replaced executable with a replaced library mapped is
/// reported (by pid, with both files); one started afterwards is not.
#[test]
fn processes_holding_replaced_files_need_a_restart() {
    let mut sys = TestSystem::new();
    let sleep = std::fs::read("/usr/bin/sleep").unwrap();
    let libz = std::fs::read("/lib/x86_64-linux-gnu/libz.so.1").unwrap();
    write(&sys.tree.join("usr/bin/mysleep"), &sleep);
    chmod(&sys.tree.join("usr/bin/mysleep"), 0o755);
    write(&sys.tree.join("usr/lib/libdemo.so.1"), &libz);
    let v1 = sys.commit("1.1");
    sys.booted = v1.clone();
    sys.deploy(&v1);
    // Version 2: both files change (trailing bytes keep them loadable).
    write(&sys.tree.join("usr/bin/mysleep"), &[sleep.as_slice(), b"livefs v2"].concat());
    write(&sys.tree.join("usr/lib/libdemo.so.1"), &[libz.as_slice(), b"livefs v2"].concat());
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    // Version 3 (applied with --target): both change again, under a process
    // started from version 2's layer, which the switch detaches.
    write(&sys.tree.join("usr/bin/mysleep"), &[sleep.as_slice(), b"livefs v3"].concat());
    write(&sys.tree.join("usr/lib/libdemo.so.1"), &[libz.as_slice(), b"livefs v3"].concat());
    let v3 = sys.commit("3");
    // Version 4: only another file changes; a process running version 3's files
    // from its layer (detached by the switch to 4) runs what 4 has too.
    write(&sys.tree.join("usr/share/livefs-v4"), b"4");
    let v4 = sys.commit("4");
    let out = sys.run(&format!(
        r#"
        LD_PRELOAD=$R/usr/lib/libdemo.so.1 $R/usr/bin/mysleep 60 &
        old=$!
        sleep 0.3
        L status --json > $OUT/status-before.json
        L apply --allow-replacement --json > $OUT/apply.json
        L apply --allow-replacement > $OUT/apply.txt
        LD_PRELOAD=$R/usr/lib/libdemo.so.1 $R/usr/bin/mysleep 60 &
        new=$!
        sleep 0.3
        L status --json > $OUT/status.json
        L apply --target {v3} --allow-replacement --dry-run --json > $OUT/dry3.json
        L apply --target {v3} --allow-replacement --json > $OUT/apply3.json
        LD_PRELOAD=$R/usr/lib/libdemo.so.1 $R/usr/bin/mysleep 60 &
        newer=$!
        sleep 0.3
        L apply --target {v4} --allow-replacement --json > $OUT/apply4.json
        echo "$old $new $newer" > $OUT/pids
        kill $old $new $newer
        "#
    ));
    ok(&out);
    let pids = std::fs::read_to_string(sys.out.join("pids")).unwrap();
    let (old, new, newer): (u64, u64, u64) = {
        let mut it = pids.split_whitespace().map(|p| p.parse().unwrap());
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let holders = |v: &serde_json::Value| -> Vec<(u64, Vec<String>)> {
        v["restarts"]["processes"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|ps| ps.as_array().unwrap().clone())
            .map(|p| {
                let files = p["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
                (p["pid"].as_u64().unwrap(), files)
            })
            .collect()
    };
    // Before: the pending deployment's strategy says what it replaces and who would need a restart.
    let strategy = read_json(&sys.out.join("status-before.json"))["strategy"].clone();
    assert_eq!(strategy["replaces"], serde_json::json!(["/usr/bin/mysleep", "/usr/lib/libdemo.so.1"]), "{strategy}");
    let would = holders(&strategy);
    assert!(would.iter().any(|(p, f)| *p == old && f.len() == 2), "{strategy}");
    let apply = read_json(&sys.out.join("apply.json"));
    let found = holders(&apply);
    let mine = found.iter().find(|(p, _)| *p == old).unwrap_or_else(|| panic!("pid {old} not reported: {found:?}"));
    assert_eq!(mine.1, ["/usr/bin/mysleep", "/usr/lib/libdemo.so.1"]);
    let text = std::fs::read_to_string(sys.out.join("apply.txt")).unwrap();
    assert!(text.contains(&format!("Needs restart: mysleep (pid {old})")), "{text}");
    // status re-checks: the old process is still stale, the new one is not.
    let status = holders(&read_json(&sys.out.join("status.json")));
    assert!(status.iter().any(|(p, _)| *p == old), "{status:?}");
    assert!(!status.iter().any(|(p, _)| *p == new), "a process started after the apply is reported: {status:?}");
    // Version 3: the dry run names the process running version 2's files (they
    // are about to be replaced); the apply still does once they are in a
    // detached layer, whose paths show relative to /usr (/bin/mysleep).
    for name in ["dry3.json", "apply3.json"] {
        let found = holders(&read_json(&sys.out.join(name)));
        if name == "dry3.json" {
            let strategy = holders(&read_json(&sys.out.join(name))["strategy"]);
            assert!(strategy.iter().any(|(p, _)| *p == new), "{name}: strategy: {strategy:?}");
        }
        let mine =
            found.iter().find(|(p, _)| *p == new).unwrap_or_else(|| panic!("{name}: pid {new} not in {found:?}"));
        assert_eq!(mine.1, ["/usr/bin/mysleep", "/usr/lib/libdemo.so.1"], "{name}");
    }
    // Version 4 left version 3's files as they were: the process running them
    // from the detached layer is current (it used to be restarted for nothing).
    let found = holders(&read_json(&sys.out.join("apply4.json")));
    assert!(found.iter().any(|(p, _)| *p == new), "{found:?}");
    assert!(!found.iter().any(|(p, _)| *p == newer), "pid {newer} runs current files: {found:?}");
}

/// New sysusers.d and tmpfiles.d snippets create the user and its /var directory.
/// A failing trigger is reported with its output and retried by the next apply
/// (which has nothing else to do), and the retry runs the triggers after it too.
#[test]
fn triggers_create_users_and_var_and_retry_failures() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/lib/sysusers.d/demo.conf"), b"u demo-svc - \"Demo service\" /var/lib/demo\n");
    write(&sys.tree.join("usr/lib/tmpfiles.d/demo.conf"), b"d /var/lib/demo 0750 demo-svc demo-svc -\n");
    write(&sys.tree.join("usr/lib/systemd/system/demo.service"), b"[Service]\nExecStart=/usr/bin/true\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        # A broken user database: the sysusers trigger fails.
        mkdir $R/etc/passwd
        L apply --json > $OUT/apply.json
        cat $R/run/livefs/triggers-pending.json > $OUT/pending.json
        L apply > $OUT/second-failure.txt
        rmdir $R/etc/passwd
        L apply --json > $OUT/retry.json
        test ! -e $R/run/livefs/triggers-pending.json
        grep '^demo-svc:' $R/etc/passwd > $OUT/passwd
        stat -c '%a %u' $R/var/lib/demo > $OUT/var-demo
        "#,
    );
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    let trig =
        |v: &serde_json::Value, a: &str| v["triggers"].as_array().unwrap().iter().find(|t| t["action"] == a).cloned();
    let sysusers = trig(&apply, "sysusers").unwrap();
    assert_eq!(sysusers["ok"], false, "{sysusers}");
    assert!(sysusers["output"].as_str().unwrap().contains("Is a directory"), "{sysusers}");
    let reload = trig(&apply, "daemon-reload").unwrap();
    assert_eq!(reload["skipped"], true, "daemon-reload must not run for another root: {reload}");
    // tmpfiles fails too: the user it needs does not exist yet.
    assert_eq!(
        std::fs::read_to_string(sys.out.join("pending.json")).unwrap(),
        r#"{"sysusers":{"attempts":1,"configs":["demo.conf"]},"tmpfiles":{"attempts":1,"configs":["demo.conf"]}}"#
    );
    let second = std::fs::read_to_string(sys.out.join("second-failure.txt")).unwrap();
    assert!(
        second.contains("Trigger systemd-sysusers (demo.conf): FAILED (will be retried by the next apply)"),
        "{second}"
    );
    let retry = read_json(&sys.out.join("retry.json"));
    assert_eq!(trig(&retry, "sysusers").unwrap()["ok"], true, "{}", retry["triggers"]);
    assert_eq!(trig(&retry, "tmpfiles").unwrap()["ok"], true, "{}", retry["triggers"]);
    let passwd = std::fs::read_to_string(sys.out.join("passwd")).unwrap();
    let uid = passwd.split(':').nth(2).unwrap();
    assert_eq!(std::fs::read_to_string(sys.out.join("var-demo")).unwrap(), format!("750 {uid}\n"), "{passwd}");
}

/// systemd-tmpfiles runs for the changed configuration files only, looked up
/// as systemd does (the admin's file in /etc wins over the update's); one the
/// update removed is not passed, and when none is left the trigger is skipped.
#[test]
fn tmpfiles_runs_for_the_changed_files_only() {
    let mut sys = TestSystem::new();
    let confs = sys.tree.join("usr/lib/tmpfiles.d");
    let conf = |name: &str, dir: &str| write(&confs.join(name), format!("d /var/lib/{dir} 0755 - - -\n").as_bytes());
    conf("other.conf", "other");
    conf("gone.conf", "gone");
    let v1 = sys.commit("1.1");
    sys.booted = v1.clone();
    sys.deploy(&v1);
    conf("new.conf", "new-usr");
    std::fs::remove_file(confs.join("gone.conf")).unwrap();
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    std::fs::remove_file(confs.join("new.conf")).unwrap();
    let v3 = sys.commit("3");
    std::fs::remove_file(confs.join("other.conf")).unwrap();
    let v4 = sys.commit("4");
    let out = sys.run(&format!(
        r#"
        mkdir -p $R/etc/tmpfiles.d
        echo 'd /var/lib/new-etc 0755 - - -' > $R/etc/tmpfiles.d/new.conf
        L apply --allow-replacement --json > $OUT/apply.json
        L apply --allow-replacement --target {v3} --json > $OUT/apply3.json
        L apply --allow-replacement --target {v4} --json > $OUT/apply4.json
        ls $R/var/lib > $OUT/var-lib
        "#
    ));
    ok(&out);
    let tmpfiles = |name: &str| {
        let v = read_json(&sys.out.join(name));
        v["triggers"].as_array().unwrap().iter().find(|t| t["action"] == "tmpfiles").cloned().unwrap()
    };
    let t = tmpfiles("apply.json");
    assert_eq!(t["configs"], serde_json::json!(["new.conf"]), "{t}");
    assert!(t["command"].as_str().unwrap().ends_with(" new.conf"), "{t}");
    assert_eq!((&t["ok"], &t["skipped"]), (&serde_json::json!(true), &serde_json::json!(false)), "{t}");
    let var_lib = std::fs::read_to_string(sys.out.join("var-lib")).unwrap();
    assert!(var_lib.lines().any(|l| l == "new-etc"), "{var_lib}");
    for dir in ["new-usr", "other", "gone"] {
        assert!(!var_lib.lines().any(|l| l == dir), "/var/lib/{dir} created: {var_lib}");
    }
    // Version 3 removes new.conf from /usr: the admin's /etc/tmpfiles.d/new.conf
    // still stands, so it is run. Version 4 only removes other.conf: nothing to run.
    let t3 = tmpfiles("apply3.json");
    assert_eq!((&t3["configs"], &t3["skipped"]), (&serde_json::json!(["new.conf"]), &serde_json::json!(false)), "{t3}");
    let t4 = tmpfiles("apply4.json");
    assert_eq!((&t4["configs"], &t4["skipped"]), (&serde_json::json!([]), &serde_json::json!(true)), "{t4}");
    assert!(t4["command"].as_str().unwrap().contains("configuration files are gone"), "{t4}");
}

/// An update that brings its own loader cache (its compose ran ldconfig) needs
/// no ldconfig when the admin's cache is the booted default: the /etc merge puts
/// the update's in place, as a reboot into it would. An admin's own cache (local
/// ld.so.conf.d entries) is kept, and ldconfig rebuilds it.
#[test]
fn the_updates_loader_cache_spares_ldconfig() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/etc/ld.so.cache"), b"the cache of version 1");
    let v1 = sys.commit("1.1");
    sys.booted = v1.clone();
    sys.deploy(&v1);
    write(&sys.tree.join("usr/lib/libnew.so.1"), &std::fs::read("/lib/x86_64-linux-gnu/libz.so.1").unwrap());
    write(&sys.tree.join("usr/etc/ld.so.cache"), b"the cache of version 2");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        L apply --dry-run --json > $OUT/dry.json
        L apply --json > $OUT/apply.json
        cp $R/etc/ld.so.cache $OUT/cache
        L reset > /dev/null
        echo "the admin's own cache" > $R/etc/ld.so.cache
        L apply --json > $OUT/apply-admin.json
        "#,
    );
    ok(&out);
    let actions = |name: &str| -> Vec<String> {
        let v = read_json(&sys.out.join(name));
        v["triggers"].as_array().unwrap().iter().map(|t| t["action"].as_str().unwrap().to_string()).collect()
    };
    assert!(!actions("dry.json").contains(&"ldconfig".to_string()), "{:?}", actions("dry.json"));
    assert!(!actions("apply.json").contains(&"ldconfig".to_string()), "{:?}", actions("apply.json"));
    assert_eq!(std::fs::read(sys.out.join("cache")).unwrap(), b"the cache of version 2");
    let admin = read_json(&sys.out.join("apply-admin.json"));
    let ldconfig = admin["triggers"].as_array().unwrap().iter().find(|t| t["action"] == "ldconfig").cloned();
    assert_eq!(ldconfig.map(|t| t["ok"].clone()), Some(serde_json::json!(true)), "{}", admin["triggers"]);
}

/// A trigger that keeps failing is tried a bounded number of times, then given up
/// (and said so), not retried by every apply forever.
#[test]
fn failing_trigger_is_given_up_after_bounded_retries() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/lib/sysusers.d/demo.conf"), b"u demo-svc - \"Demo service\" /var/lib/demo\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        mkdir $R/etc/passwd
        for i in 1 2 3; do L apply > $OUT/apply-$i.txt; done
        test ! -e $R/run/livefs/triggers-pending.json
        L apply > $OUT/apply-4.txt
        "#,
    );
    ok(&out);
    let read = |n: &str| std::fs::read_to_string(sys.out.join(n)).unwrap();
    for i in 1..=2 {
        assert!(read(&format!("apply-{i}.txt")).contains("systemd-sysusers (demo.conf): FAILED (will be retried"));
    }
    assert!(
        read("apply-3.txt").contains("systemd-sysusers (demo.conf): FAILED (for the last time: not retried"),
        "{}",
        read("apply-3.txt")
    );
    assert!(!read("apply-4.txt").contains("Trigger"), "{}", read("apply-4.txt"));
}

#[test]
fn no_triggers_runs_none() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/lib/sysusers.d/demo.conf"), b"u demo-svc - \"Demo service\"\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out =
        sys.run("L apply --no-triggers --json > $OUT/apply.json; grep -c demo-svc $R/etc/passwd > $OUT/n || true");
    ok(&out);
    let apply = read_json(&sys.out.join("apply.json"));
    assert_eq!(apply["triggers"].as_array().unwrap().len(), 0);
    assert!(!std::fs::read_to_string(sys.out.join("n")).unwrap_or_default().starts_with('1'));
}
