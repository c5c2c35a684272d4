//! The way back: `livefs rollback` undoes the last apply — to the previous live
//! commit or to the booted one, `/usr` and `/etc` exactly as they were before it
//! (the admin's edits made before it kept) — and an apply whose health checks
//! fail (greenboot's required checks, `--check`) is rolled back at once, exit
//! status 5; a failed wanted check only warns. A kill at any step of a rollback
//! is finished by the next `rollback`, `apply` or `reset`.

mod common;

use common::schema::{assert_valid, validator};
use common::system::{ok, read_json, TestSystem};
use common::*;

/// v1 booted; v2 (pending) adds a program, replaces one, changes and adds
/// `/etc` defaults; v3 changes them again and removes one.
fn with_two_updates() -> (TestSystem, String, String) {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/etc/untouched.conf"), b"same in every version\n");
    sys.booted = sys.commit("1b");
    sys.deploy(&sys.booted.clone());
    write(&sys.tree.join("usr/bin/newprog"), b"#!/bin/sh\necho v2\n");
    chmod(&sys.tree.join("usr/bin/newprog"), 0o755);
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    write(&sys.tree.join("usr/etc/motd"), b"motd v2\n");
    write(&sys.tree.join("usr/etc/new.d/a.conf"), b"a v2\n");
    let v2 = sys.commit("2");
    write(&sys.tree.join("usr/bin/newprog"), b"#!/bin/sh\necho v3\n");
    write(&sys.tree.join("usr/share/v3/data"), b"v3\n");
    write(&sys.tree.join("usr/etc/motd"), b"motd v3\n");
    write(&sys.tree.join("usr/etc/v3.conf"), b"v3\n");
    rm(&sys.tree.join("usr/etc/new.d"));
    let v3 = sys.commit("3");
    sys.deploy(&v2);
    (sys, v2, v3)
}

#[test]
fn rollback_goes_back_to_the_previous_live_commit_then_to_booted() {
    let (sys, v2, v3) = with_two_updates();
    let out = sys.run(&format!(
        r#"
        echo "the admin's" > $R/etc/admin.conf
        cp -a $R/etc $OUT/etc-booted
        L rollback --json > $OUT/nothing.json
        L apply --allow-replacement > /dev/null
        # Edited while v2 is live, before v3: a rollback of v3 keeps it.
        echo "edited while v2 was live" >> $R/etc/untouched.conf
        cp -a $R/etc $OUT/etc-v2
        cp -a $R/usr $OUT/usr-v2
        layer2=$(findmnt -n -o SOURCE $R/usr)
        L apply --target {v3} --allow-replacement > /dev/null
        cp -a $R/usr $OUT/usr-v3
        L status --json > $OUT/status-v3.json
        L status > $OUT/status-v3.txt
        L rollback --dry-run --json > $OUT/dry.json
        L rollback --json > $OUT/back-to-v2.json
        cp -a $R/usr $OUT/usr-back-v2
        cp -a $R/etc $OUT/etc-back-v2
        [ "$(findmnt -n -o SOURCE $R/usr)" = "$layer2" ] && echo same > $OUT/layer-reused
        L status --json > $OUT/status-back.json
        L status > $OUT/status-back.txt
        L rollback --json > $OUT/again.json
        # From v2, applied from the booted commit: back to booted.
        L reset > /dev/null
        cp -a $R/etc $OUT/etc-reset
        L apply --allow-replacement > /dev/null
        L rollback > $OUT/back-to-booted.txt
        cp -a $R/usr $OUT/usr-back-booted
        cp -a $R/etc $OUT/etc-back-booted
        L status --json > $OUT/status-booted.json
        "#
    ));
    ok(&out);
    let json = |name: &str| read_json(&sys.out.join(name));
    let rollback = validator("rollback");
    // Nothing to undo yet: a no-op, exit status 0.
    let nothing = json("nothing.json");
    assert_valid(&rollback, "nothing.json", &nothing);
    assert_eq!((nothing["changed"].clone(), nothing["kind"].clone()), (false.into(), "no_rollback".into()));
    // While v3 is live, status names the way back.
    let st = json("status-v3.json");
    assert_valid(&validator("status"), "status-v3.json", &st);
    assert_eq!(st["way_back"]["to"]["checksum"], v2.as_str(), "{}", st["way_back"]);
    assert_eq!(st["way_back"]["applied"], v3.as_str());
    assert!(st["way_back"]["layer"].as_str().unwrap().starts_with("usr."), "the previous layer is kept");
    let text = std::fs::read_to_string(sys.out.join("status-v3.txt")).unwrap();
    assert!(text.contains(&format!("Way back:    `livefs rollback` returns {} -> {}", &v3[..12], &v2[..12])), "{text}");
    // The dry run says what it would restore, and changes nothing.
    let dry = json("dry.json");
    assert_valid(&rollback, "dry.json", &dry);
    assert_eq!(dry["outcome"]["dry_run"], true);
    assert!(!dry["outcome"]["etc_restored"].as_array().unwrap().is_empty(), "{dry}");
    // Back to v2: /usr through v2's own layer (nothing built), /etc as v2 left it
    // with the admin's edit made since.
    let back = json("back-to-v2.json");
    assert_valid(&rollback, "back-to-v2.json", &back);
    assert_eq!((back["cause"].as_str(), back["outcome"]["from"].as_str()), (Some("by_hand"), Some(v3.as_str())));
    assert_eq!(back["outcome"]["to"], v2.as_str());
    assert_eq!(back["outcome"]["state"], serde_json::json!({"state": "live", "commit": v2}));
    assert_eq!(back["outcome"]["layer"], serde_json::Value::Null, "a new layer was built: {back}");
    assert!(sys.out.join("layer-reused").exists(), "/usr is not v2's layer again");
    assert_same_tree(&sys.out.join("usr-back-v2"), &sys.out.join("usr-v2"));
    assert_same_tree(&sys.out.join("etc-back-v2"), &sys.out.join("etc-v2"));
    let st = json("status-back.json");
    assert_eq!(st["way_back"], serde_json::Value::Null, "the way back is taken once");
    assert_eq!(st["last_rollback"]["from"], v3.as_str());
    assert_eq!(st["last_rollback"]["command"], "rollback");
    let text = std::fs::read_to_string(sys.out.join("status-back.txt")).unwrap();
    assert!(text.contains(&format!("Rolled back: {} -> {} at ", &v3[..12], &v2[..12])), "{text}");
    // Once: a second rollback has nothing to undo.
    assert_eq!(json("again.json")["kind"], "no_rollback");
    // From v2 applied over the booted commit: back to it exactly.
    let text = std::fs::read_to_string(sys.out.join("back-to-booted.txt")).unwrap();
    assert!(text.contains(&format!("Rolled back /usr {} -> {}", &v2[..12], &sys.booted[..12])), "{text}");
    assert_same_tree(&sys.out.join("usr-back-booted"), &sys.usr_of(&sys.booted));
    assert_same_tree(&sys.out.join("etc-back-booted"), &sys.out.join("etc-reset"));
    assert_eq!(json("status-booted.json")["state"]["state"], "booted");
}

/// greenboot's checks (required, wanted, green.d, red.d, /etc winning by
/// name) and `--check` decide whether an apply stays.
#[test]
fn failed_checks_roll_back_and_wanted_ones_warn() {
    let (sys, v2, _) = with_two_updates();
    // A required check of the booted /usr, which the admin's /etc copy replaces
    // by one that fails once the new program is there.
    let usr_check = sys.booted_deployment().join("usr/lib/greenboot/check/required.d/20-probe.sh");
    assert!(!usr_check.exists());
    let out = sys.run(
        r#"
        G=$R/etc/greenboot
        mkdir -p $G/check/required.d $G/check/wanted.d $G/green.d $G/red.d
        printf 'echo "$LIVEFS_FROM -> $LIVEFS_TO" >> %s/green\n' $OUT > $G/green.d/10-green.sh
        printf 'echo red >> %s/red\n' $OUT > $G/red.d/10-red.sh
        cp -a $R/etc $OUT/etc-booted
        printf 'test ! -e $LIVEFS_ROOT/usr/bin/newprog || { echo "newprog is there"; exit 1; }\n' > $G/check/required.d/20-probe.sh
        set +e
        L apply --allow-replacement --json > $OUT/rolled.json; echo $? > $OUT/rolled.rc
        L apply --allow-replacement > $OUT/rolled.txt 2> $OUT/rolled.err; echo $? > $OUT/rolled-text.rc
        set -e
        cp -a $R/usr $OUT/usr-rolled
        rm $G/check/required.d/20-probe.sh
        cp -a $R/etc $OUT/etc-rolled
        L status --json > $OUT/status-rolled.json
        # --check: the fleet's probe; --no-rollback keeps it; --no-check checks nothing.
        set +e
        L apply --allow-replacement --check 'echo probe down >&2; exit 3' --json > $OUT/check.json; echo $? > $OUT/check.rc
        L apply --allow-replacement --check 'exit 3' --no-rollback --json > $OUT/kept.json; echo $? > $OUT/kept.rc
        set -e
        L reset > /dev/null
        printf 'exit 1\n' > $G/check/required.d/90-always-fails.sh
        L apply --allow-replacement --no-check --json > $OUT/unchecked.json
        rm $G/check/required.d/90-always-fails.sh
        L reset > /dev/null
        # A failed wanted check warns; green.d runs.
        printf 'echo degraded; exit 2\n' > $G/check/wanted.d/50-warn.sh
        L apply --allow-replacement --dry-run --json > $OUT/dry.json
        L apply --allow-replacement > $OUT/warned.txt 2> $OUT/warned.err
        L status --json > $OUT/status-warned.json
        "#,
    );
    ok(&out);
    let json = |name: &str| read_json(&sys.out.join(name));
    let text = |name: &str| std::fs::read_to_string(sys.out.join(name)).unwrap();
    let apply = validator("apply");
    // The required check failed: rolled back at once, exit status 5, red.d ran.
    assert_eq!(text("rolled.rc").trim(), "5");
    let rolled = json("rolled.json");
    assert_valid(&apply, "rolled.json", &rolled);
    assert_eq!(rolled["kind"], "rolled_back");
    assert!(rolled["error"].as_str().unwrap().contains("20-probe.sh: exit status 1"), "{}", rolled["error"]);
    let health = &rolled["health"];
    assert_eq!(health["verdict"], "failed");
    assert_eq!(health["required"][0]["name"], "/etc/greenboot/check/required.d/20-probe.sh");
    assert_eq!(health["required"][0]["output"], "newprog is there\n");
    assert_eq!(health["scripts"][0]["name"], "/etc/greenboot/red.d/10-red.sh");
    let back = &rolled["rolled_back"];
    assert_eq!(
        (back["cause"].as_str(), back["outcome"]["to"].as_str()),
        (Some("failed_checks"), Some(sys.booted.as_str()))
    );
    assert!(back["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(rolled["state"]["state"], "live", "the apply's own state: {}", rolled["state"]);
    assert_eq!(back["outcome"]["state"]["state"], "booted");
    assert_eq!(text("rolled-text.rc").trim(), "5");
    let t = text("rolled.txt");
    assert!(t.contains("Check required /etc/greenboot/check/required.d/20-probe.sh: FAILED, exit status 1"), "{t}");
    assert!(t.contains("Health:      FAILED: /etc/greenboot/check/required.d/20-probe.sh: exit status 1"), "{t}");
    assert!(t.contains(&format!("Rolled back: {} -> {} in ", &v2[..12], &sys.booted[..12])), "{t}");
    assert!(
        text("rolled.err").contains("livefs: error: the update was rolled back: it failed its health checks"),
        "{}",
        text("rolled.err")
    );
    assert_eq!(text("red"), "red\nred\nred\n", "red.d ran after each of the three rollbacks");
    assert_same_tree(&sys.out.join("usr-rolled"), &sys.usr_of(&sys.booted));
    assert_same_tree(&sys.out.join("etc-rolled"), &sys.out.join("etc-booted"));
    let st = json("status-rolled.json");
    assert_eq!(st["state"]["state"], "booted");
    assert_eq!(
        (st["last_rollback"]["cause"].as_str(), st["last_rollback"]["command"].as_str()),
        (Some("failed_checks"), Some("apply"))
    );
    // --check.
    assert_eq!(text("check.rc").trim(), "5");
    let check = json("check.json");
    assert_eq!(check["health"]["required"].as_array().unwrap().last().unwrap()["output"], "probe down\n");
    // --no-rollback: kept, reported, exit status 1.
    assert_eq!(text("kept.rc").trim(), "1");
    let kept = json("kept.json");
    assert_valid(&apply, "kept.json", &kept);
    assert_eq!((kept["kind"].as_str(), kept["rolled_back"].is_null()), (Some("check_failed"), true));
    assert_eq!(kept["state"]["commit"], v2.as_str());
    assert_eq!(json("unchecked.json")["health"], serde_json::Value::Null);
    // The dry run names the checks it would run.
    let dry = json("dry.json");
    assert_valid(&apply, "dry.json", &dry);
    assert_eq!(dry["health"]["verdict"], "not_run");
    assert_eq!(dry["health"]["wanted"][0]["name"], "/etc/greenboot/check/wanted.d/50-warn.sh");
    // A wanted check: kept with a warning, green.d ran with the commits.
    assert!(
        text("warned.err")
            .contains("a wanted health check failed: /etc/greenboot/check/wanted.d/50-warn.sh: exit status 2"),
        "{}",
        text("warned.err")
    );
    assert!(
        text("warned.txt").contains("Health:      healthy but for wanted checks (warnings)"),
        "{}",
        text("warned.txt")
    );
    // green.d ran once: for the update kept with a warning (not for those rolled
    // back, nor for the one kept unhealthy, nor without checks).
    assert_eq!(text("green"), format!("{} -> {v2}\n", sys.booted));
    assert_eq!(json("status-warned.json")["state"]["commit"], v2.as_str());
}

/// A rollback killed after each of its mutations, then finished by the next
/// `rollback`, `apply` or `reset` in turn: `/usr` is always one whole tree,
/// and the finished state is exactly where the host was before the apply
/// (or, for a reset, the booted one).
#[cfg(feature = "fault-injection")]
#[test]
fn a_killed_rollback_is_finished_by_rollback_apply_or_reset() {
    let (sys, v2, v3) = with_two_updates();
    let out = sys.run(&format!(
        r#"
        echo "the admin's" > $R/etc/admin.conf
        L apply --allow-replacement > /dev/null
        cp -a $R/etc $OUT/etc-v2
        L apply --target {v3} --allow-replacement > /dev/null
        L rollback --json > $OUT/full.json
        n=1
        while true; do
            L apply --target {v3} --allow-replacement > /dev/null
            set +e; LIVEFS_FAULT_AFTER=$n L rollback > /dev/null 2>&1; rc=$?; set -e
            [ $rc -eq 137 ] || {{ [ $rc -eq 0 ]; break; }}
            cp -a $R/usr $OUT/killed-$n
            L status --json > $OUT/status-$n.json
            case $((n % 3)) in
                0) L rollback > /dev/null ;;
                1) L apply > /dev/null ;;
                2) L reset > /dev/null; L apply --allow-replacement > /dev/null ;;
            esac
            cp -a $R/usr $OUT/done-$n
            cp -a $R/etc $OUT/etc-done-$n
            n=$((n + 1))
        done
        echo $((n - 1)) > $OUT/kills
        "#
    ));
    ok(&out);
    let full = read_json(&sys.out.join("full.json"))["outcome"]["mutations"].as_u64().unwrap();
    let kills: u64 = std::fs::read_to_string(sys.out.join("kills")).unwrap().trim().parse().unwrap();
    eprintln!("killed rollback after each of {kills} mutations ({full} in a whole one)");
    assert!(kills >= 5, "too few crash points: {kills}");
    let (t2, t3) = (snapshot(&sys.usr_of(&v2)), snapshot(&sys.usr_of(&v3)));
    for n in 1..=kills {
        let killed = snapshot(&sys.out.join(format!("killed-{n}")));
        assert!(killed == t2 || killed == t3, "kill {n}: /usr is neither v2 nor v3");
        let st = read_json(&sys.out.join(format!("status-{n}.json")));
        let state = st["state"]["state"].as_str().unwrap().to_string();
        assert!(["rolling-back", "live"].contains(&state.as_str()), "kill {n}: {state}");
        // Whoever finished it, the host is where it was before v3: v2 live
        // (after a reset, v2 applied afresh from the booted commit).
        assert_same_tree(&sys.out.join(format!("done-{n}")), &sys.usr_of(&v2));
        assert_same_tree(&sys.out.join(format!("etc-done-{n}")), &sys.out.join("etc-v2"));
    }
}
