//! livefs on bootc's native composefs backend (no OSTree): a host made with
//! composefs-rs's `cfsctl` and laid out as bootc lays it out, booted in a
//! private mount namespace (see `common::composefs`). The same commands as on
//! an OSTree host: status names the backend; apply switches `/usr` to the
//! staged image's `/usr` in one mount (nothing written), `/etc` merged with the
//! images' `/etc` as the defaults, an admin's edit kept; reset brings the
//! booted image's `/usr` and `/etc` back exactly.

mod common;

use common::composefs::CfsSystem;
use common::schema;
use common::system::{ok, read_json};
use common::*;

fn read(sys: &CfsSystem, name: &str) -> String {
    std::fs::read_to_string(sys.out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn status_apply_and_reset_on_a_composefs_host() {
    let (sys, v2) = CfsSystem::with_update();
    let out = sys.run(
        r#"
        L status --json > $OUT/status.json
        L status > $OUT/status.txt
        echo "admin's motd" > $R/etc/motd
        du -s --block-size=1 $S/composefs/objects > $OUT/du-before
        if L apply > $OUT/refused.txt 2> $OUT/refused.err; then exit 1; fi
        { findmnt -n -o FSTYPE $R/usr || true; } | wc -l > $OUT/mounts-after-refusal
        L apply --allow-replacement --json > $OUT/apply.json || { cat $OUT/apply.json >&2; exit 1; }
        du -s --block-size=1 $S/composefs/objects > $OUT/du-after
        $R/usr/bin/hello > $OUT/hello.out
        $R/usr/bin/newprog > $OUT/newprog.out
        if touch $R/usr/intruder 2> $OUT/touch.err; then echo "/usr is writable" >&2; exit 1; fi
        findmnt -n -o SOURCE,OPTIONS $R/usr > $OUT/usr-mount
        cp -a $R/usr $OUT/usr-live
        cp -a $R/etc $OUT/etc-live
        readlink $S/composefs/images/refs/livefs/live > $OUT/pin
        L status --json > $OUT/status-live.json
        L apply --allow-replacement --json > $OUT/again.json
        L reset --json > $OUT/reset.json
        { findmnt -n -o FSTYPE $R/usr || true; } | wc -l > $OUT/mounts-after-reset
        cp -a $R/usr $OUT/usr-reset
        cp -a $R/etc $OUT/etc-reset
        test ! -e $S/composefs/images/refs/livefs/live
        "#,
    );
    ok(&out);
    let booted = sys.booted.as_str();
    // status names the backend, the booted image and the staged one.
    let st = read_json(&sys.out.join("status.json"));
    assert_eq!(st["boot"]["backend"], "composefs");
    assert_eq!(st["boot"]["image"], booted);
    assert_eq!(st["booted"]["checksum"], booted);
    assert_eq!(st["booted"]["version"], "1");
    assert_eq!(st["booted"]["deployment"], format!("composefs {booted}").as_str());
    assert_eq!(st["pending"]["checksum"], v2.as_str());
    assert_eq!(st["pending"]["version"], "2");
    assert_eq!(st["usr"]["kind"], "locked");
    let replaces = serde_json::json!(["/usr/bin/hello", "/usr/lib/os-release", "/usr/share/doc/demo/README"]);
    assert_eq!(st["strategy"]["replaces"], replaces);
    assert_eq!(st["strategy"]["needs"], "live");
    // Refused without --allow-replacement, nothing changed.
    let err = read(&sys, "refused.err");
    assert!(err.contains("/usr/bin/hello"), "{err}");
    assert_eq!(read(&sys, "mounts-after-refusal").trim(), "0", "/usr was switched");
    // Applied: /usr is image 2's exactly, from the image (nothing written).
    let a = read_json(&sys.out.join("apply.json"));
    assert_eq!((a["to"].as_str(), a["state"]["state"].as_str()), (Some(v2.as_str()), Some("live")), "{a}");
    assert_eq!(a["bytes_written"], 0, "{a}");
    assert!(a["layer"].is_null(), "{a}");
    assert_eq!(read(&sys, "hello.out"), "hello v2\n");
    assert_eq!(read(&sys, "newprog.out"), "hello from the new program\n");
    assert!(read(&sys, "touch.err").contains("Read-only file system"), "{}", read(&sys, "touch.err"));
    let mount = read(&sys, "usr-mount");
    assert!(mount.starts_with(&format!("livefs:image.{v2} ro")), "{mount}");
    assert_same_tree(&sys.out.join("usr-live"), &sys.tree_of(&v2).join("usr"));
    let du = |n: &str| read(&sys, n).split_whitespace().next().unwrap().parse::<u64>().unwrap();
    assert_eq!(du("du-after"), du("du-before"), "bytes written to the repository");
    assert_eq!(read(&sys, "pin").trim(), format!("../../{v2}"));
    // /etc merged: the new file added, the admin's motd kept.
    let etc = sys.out.join("etc-live");
    assert_eq!(std::fs::read_to_string(etc.join("new.conf")).unwrap(), "new\n");
    assert_eq!(std::fs::read_to_string(etc.join("motd")).unwrap(), "admin's motd\n");
    let st = read_json(&sys.out.join("status-live.json"));
    assert_eq!(st["state"]["state"], "live");
    assert_eq!(st["usr"], serde_json::json!({"kind": "livefs-image", "image": v2}));
    assert_eq!(read_json(&sys.out.join("again.json"))["changed"], false);
    // Reset: the booted image's /usr (no mount of livefs's left) and /etc back.
    let r = read_json(&sys.out.join("reset.json"));
    assert_eq!(r["state"]["state"], "booted", "{r}");
    assert_eq!(read(&sys, "mounts-after-reset").trim(), "0");
    assert_same_tree(&sys.out.join("usr-reset"), &sys.tree_of(booted).join("usr"));
    let etc = sys.out.join("etc-reset");
    assert!(!etc.join("new.conf").exists());
    assert_eq!(std::fs::read_to_string(etc.join("motd")).unwrap(), "admin's motd\n");
    // What this backend adds follows the schemas (image names, backend, /usr kind).
    let (status, apply) = (schema::validator("status"), schema::validator("apply"));
    for n in ["status.json", "status-live.json"] {
        schema::assert_valid(&status, n, &read_json(&sys.out.join(n)));
    }
    for n in ["apply.json", "again.json", "reset.json"] {
        schema::assert_valid(&apply, n, &read_json(&sys.out.join(n)));
    }
}

/// Image to image (B live, then C: `/usr` switched beneath, the old image's
/// mount detached), `livefs rollback` back to B (one mount, nothing built), a
/// `/usr` mount gone (as after a soft reboot that dropped it: usr-lost, brought
/// back by apply), and a target that changes the running kernel's modules:
/// never live on this backend (an image switches whole), nothing changed.
#[test]
fn image_to_image_rollback_lost_usr_and_kernel_modules() {
    let (mut sys, v2) = CfsSystem::with_update();
    write(&sys.tree.join("usr/bin/third"), b"#!/bin/sh\necho third\n");
    chmod(&sys.tree.join("usr/bin/third"), 0o755);
    let v3 = sys.image();
    sys.deploy(&v3);
    let kver = common::system::kernel_release();
    write(&sys.tree.join(format!("usr/lib/modules/{kver}/kernel/fs/x.ko")), b"another build of the module");
    let v4 = sys.image();
    sys.deploy(&v4);
    let out = sys.run(&format!(
        r#"
        L apply --allow-replacement > /dev/null
        L apply --allow-replacement --target {v3} --json > $OUT/c.json
        findmnt -n -o SOURCE $R/usr | wc -l > $OUT/c-mounts
        cp -a $R/usr $OUT/usr-c
        L rollback --json > $OUT/rollback.json
        cp -a $R/usr $OUT/usr-b
        umount $R/usr
        L status --json > $OUT/lost.json
        L apply --allow-replacement --json > $OUT/back.json
        cp -a $R/usr $OUT/usr-back
        if L apply --allow-replacement --target {v4} > $OUT/kernel.out 2> $OUT/kernel.err; then exit 1; else echo $? > $OUT/kernel.rc; fi
        findmnt -n -o SOURCE $R/usr > $OUT/kernel-mount
        "#
    ));
    ok(&out);
    let c = read_json(&sys.out.join("c.json"));
    assert_eq!((c["from"].as_str(), c["to"].as_str()), (Some(v2.as_str()), Some(v3.as_str())), "{c}");
    assert_eq!(read(&sys, "c-mounts").trim(), "1", "the previous image's mount was not detached");
    assert_same_tree(&sys.out.join("usr-c"), &sys.tree_of(&v3).join("usr"));
    let r = read_json(&sys.out.join("rollback.json"));
    assert_eq!(r["outcome"]["state"], serde_json::json!({"state": "live", "commit": v2}), "{r}");
    assert_same_tree(&sys.out.join("usr-b"), &sys.tree_of(&v2).join("usr"));
    let lost = read_json(&sys.out.join("lost.json"));
    assert_eq!(lost["state"], serde_json::json!({"state": "usr-lost", "commit": v2}));
    assert_eq!(lost["usr"]["kind"], "locked");
    assert_eq!(read_json(&sys.out.join("back.json"))["state"]["state"], "live");
    assert_same_tree(&sys.out.join("usr-back"), &sys.tree_of(&v2).join("usr"));
    let err = read(&sys, "kernel.err");
    assert_eq!(read(&sys, "kernel.rc").trim(), "3", "{err}");
    assert!(err.contains(&format!("the running kernel's modules (/usr/lib/modules/{kver}) change")), "{err}");
    assert_eq!(read(&sys, "kernel-mount").trim(), format!("livefs:image.{v2}"));
}

/// Killed after each of its mutations, `apply` (from the booted image, and
/// from a live one: a switch beneath) and `reset` leave `/usr` exactly one of
/// the two images' trees; running the command again finishes it.
#[cfg(feature = "fault-injection")]
#[test]
fn killed_at_every_step_usr_is_one_image() {
    let (mut sys, v2) = CfsSystem::with_update();
    write(&sys.tree.join("usr/bin/third"), b"#!/bin/sh\necho third\n");
    let v3 = sys.image();
    sys.deploy(&v3);
    let out = sys.run(&format!(
        r#"
        sweep() {{  # NAME, then the command killed and rerun; SETUP and UNDO run around each
            local name=$1 n=1; shift
            eval "$SETUP"
            while LIVEFS_FAULT_AFTER=$n L "$@" > /dev/null 2>&1; [ $? -eq 137 ]; do
                cp -a $R/usr $OUT/$name-killed-$n
                L "$@" > /dev/null
                cp -a $R/usr $OUT/$name-done-$n
                eval "$UNDO"
                eval "$SETUP"
                n=$((n + 1))
            done
            eval "$UNDO"
            echo $((n - 1)) > $OUT/$name-kills
        }}
        SETUP=":"; UNDO="L reset > /dev/null"
        sweep apply apply --allow-replacement
        SETUP="L apply --allow-replacement > /dev/null"; UNDO="L reset > /dev/null"
        sweep beneath apply --allow-replacement --target {v3}
        SETUP="L apply --allow-replacement > /dev/null"; UNDO=":"
        sweep reset reset
        "#
    ));
    ok(&out);
    let kills = |name: &str| read(&sys, &format!("{name}-kills")).trim().parse::<u64>().unwrap();
    let trees = |v: &str| snapshot(&sys.tree_of(v).join("usr"));
    let booted = sys.booted.clone();
    for (name, from, to) in [("apply", &booted, &v2), ("beneath", &v2, &v3), ("reset", &v2, &booted)] {
        let n = kills(name);
        eprintln!("{name}: killed after each of {n} mutations");
        assert!(n >= 4, "{name}: too few crash points ({n})");
        let (a, b) = (trees(from), trees(to));
        for i in 1..=n {
            let s = snapshot(&sys.out.join(format!("{name}-killed-{i}")));
            assert!(s == a || s == b, "{name} killed after {i}: /usr is neither tree");
            assert_same_tree(&sys.out.join(format!("{name}-done-{i}")), &sys.tree_of(to).join("usr"));
        }
    }
}
