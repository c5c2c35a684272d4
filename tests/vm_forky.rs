//! A real boot is the final judge, on Debian forky (a 7.x kernel, systemd 262):
//! booted in QEMU from an OSTree deployment with composefs and a read-only
//! sysroot (then soft-rebooted), the same with SELinux enforcing, and from
//! bootc's native composefs backend (no OSTree: composefs-setup-root in the
//! initramfs mounts an image of a composefs repository). See tests/vm/run.sh for
//! the scenarios; the images are cached in
//! /var/cache/livefs-test/vm-forky{,-selinux}.

mod common;

use common::schema::{assert_valid, validator};
use common::system::read_json;
use common::vm::{quiet_ok, read, run_vm};

/// A real composefs boot (Debian forky: ostree 2026 with libcomposefs, `/` an
/// overlay with source `composefs`, `/sysroot` read-only): the seed flow (the web
/// server the update brings serves HTTP 200 after `apply --restart`, `reset
/// --restart` stops it), zero-copy through the read-only sysroot, a state
/// overlay on /usr/local kept across apply and reset, and a `systemctl
/// soft-reboot` after an apply with status truthful afterwards.
#[test]
fn composefs_vm_apply_serve_reset_soft_reboot() {
    let dir = run_vm("forky", &["guest-composefs.sh"]);
    let o = dir.path().join("boot1/out");
    let a = read(&dir.path().join("boot1"), "commit-a");
    let b = read(&dir.path().join("boot1"), "commit-b");
    let (a, b) = (a.trim(), b.trim());
    let status = validator("status");
    let apply_schema = validator("apply");

    // The composefs facts.
    assert_eq!(read(&o, "root-mount.txt").trim(), "composefs overlay");
    assert!(read(&o, "sysroot-options.txt").starts_with("ro,"), "/sysroot is not read-only");
    assert!(read(&o, "cfs.txt").trim().ends_with(".ostree.cfs"), "{}", read(&o, "cfs.txt"));
    let before = read_json(&o.join("status-before.out"));
    quiet_ok(&o, "status-before");
    assert_valid(&status, "status (composefs)", &before);
    assert_eq!(before["boot"]["composefs"], true);
    assert_eq!(before["boot"]["sysroot_ro"], true);
    assert_eq!(before["booted"]["checksum"], a);
    assert_eq!(before["pending"]["checksum"], b);

    // apply --restart: zero-copy, the web server started and serving.
    let apply = quiet_ok(&o, "apply");
    assert!(apply.contains(&format!("Applied {} -> {}", &a[..12], &b[..12])), "{apply}");
    let layer = apply.lines().find(|l| l.starts_with("/usr switched to a new layer: ")).expect("no layer line");
    assert!(layer.ends_with(", 0 copied (0 bytes)."), "files were copied on a read-only sysroot: {layer}");
    assert!(apply.contains("Start lighttpd.service (newly wanted by multi-user.target): ok"), "{apply}");
    assert!(apply.contains("Restart livefs-demo.service ("), "{apply}");
    let http = read(&o, "http.txt");
    assert!(http.starts_with("HTTP/1.0 200 OK"), "{http}");
    assert!(http.contains("served by lighttpd from a live-updated /usr"), "{http}");
    let live = read_json(&o.join("status-live.out"));
    assert_valid(&status, "status (composefs, live)", &live);
    assert_eq!((live["state"]["state"].as_str(), live["usr"]["kind"].as_str()), (Some("live"), Some("livefs")));
    // The state overlay below /usr: visible with its content after apply and reset.
    assert_eq!(read(&o, "state-after-apply"), "state of /usr/local\n");
    assert_eq!(read(&o, "state-after-reset"), "state of /usr/local\n");
    assert!(read(&o, "mounts-after-apply").contains("/usr/local livefs-state-overlay overlay"));

    let reset = read_json(&o.join("reset.out"));
    quiet_ok(&o, "reset");
    assert_valid(&apply_schema, "reset --restart --json (composefs)", &reset);
    assert_eq!(reset["state"]["state"], "booted");
    assert_eq!(read(&o, "lighttpd-after-reset").trim(), "inactive");
    let again = read_json(&o.join("apply-again.out"));
    quiet_ok(&o, "apply-again");
    assert_valid(&apply_schema, "apply --json (composefs)", &again);
    assert_eq!(again["layer"]["files_copied"], 0, "{again}");
    assert_eq!(again["layer"]["bytes_written"], 0, "{again}");
    assert!(again["layer"]["files_linked"].as_u64().unwrap() > 50, "{again}");

    // The soft reboot kept /run: whatever it did to the overlay, status tells the truth.
    assert_eq!(read(&o, "soft-reboots-before").trim(), "0");
    assert_eq!(read(&o, "soft-reboots-after").trim(), "1", "no soft reboot happened");
    let after = read_json(&o.join("status-after-soft-reboot.out"));
    quiet_ok(&o, "status-after-soft-reboot");
    assert_valid(&status, "status (after a soft reboot)", &after);
    let mounts = read(&o, "mounts-after-soft-reboot");
    let overlay_kept = mounts.lines().any(|l| l.starts_with("/usr livefs:usr."));
    let flag_kept = read(&o, "deployment-state-after-status").contains("unlocked-transient");
    if overlay_kept {
        assert_eq!(after["state"], serde_json::json!({"state": "live", "commit": b}), "{after}");
        assert_eq!(after["usr"]["kind"], "livefs");
    } else {
        assert_eq!(after["state"], serde_json::json!({"state": "usr-lost", "commit": b}), "{after}");
        assert_eq!(after["usr"]["kind"], "locked");
    }
    assert_eq!(flag_kept, overlay_kept, "ostree's unlocked-transient flag does not match the overlay:\n{mounts}");
    eprintln!("after the soft reboot the overlay was {}", if overlay_kept { "kept" } else { "gone" });
    let reset = read_json(&o.join("reset-after-soft-reboot.out"));
    quiet_ok(&o, "reset-after-soft-reboot");
    assert_eq!(reset["state"]["state"], "booted");
    assert_eq!(read_json(&o.join("status-final.out"))["state"]["state"], "booted");
    assert!(read(&o, "mounts-final").starts_with("/usr: no mount of its own\n/usr/local livefs-state-overlay"));
}

/// SELinux enforcing, on a real boot (tests/vm/guest-selinux.sh: Debian forky,
/// composefs, Debian's refpolicy enforcing, commits labelled by ostree): the
/// seed flow works as on any host — the web server the update brings (nginx) runs
/// confined (httpd_t) and serves, every label of the live /usr is the target
/// deployment's, /etc is labelled as the policy says, nothing livefs runs is
/// denied anything, reset goes back — and the guest stays enforcing.
#[test]
fn selinux_vm_enforcing_seed_flow() {
    let dir = run_vm("forky-selinux", &["guest-selinux.sh"]);
    let o = dir.path().join("boot1/out");
    assert_eq!(read(&o, "getenforce-before"), "Enforcing\n");
    assert_eq!(read(&o, "getenforce-after"), "Enforcing\n");
    assert_eq!(read(&o, "apply-refused.rc").trim(), "3", "{}", read(&o, "apply-refused.err"));
    let apply = read_json(&o.join("apply.out"));
    assert_valid(&validator("apply"), "apply --json", &apply);
    assert_eq!(read(&o, "apply.rc").trim(), "0", "{apply}");
    let started = apply["restart"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["unit"] == "nginx.service" && a["verb"] == "start" && a["result"]["ok"] == true);
    assert!(started, "nginx was not started: {}", apply["restart"]);
    let http = read(&o, "http.txt");
    assert!(http.starts_with("HTTP/1.1 200 OK") && http.contains("served by nginx from a live-updated /usr"), "{http}");
    let ps = read(&o, "ps.txt");
    let servers: Vec<&str> = ps.lines().filter(|l| l.contains(" nginx")).collect();
    assert!(!servers.is_empty(), "no nginx:\n{ps}");
    assert!(servers.iter().all(|l| l.contains(":httpd_t:")), "not confined: {servers:?}");
    // Every label of the live /usr is the target deployment's.
    let live = read(&o, "usr-labels-live.txt");
    let count = live.lines().count();
    let mismatches = read(&o, "usr-labels-diff.txt").lines().filter(|l| l.starts_with('<')).count();
    eprintln!("/usr labels compared: {count}, mismatches: {mismatches}");
    assert!(count > 5000, "only {count} paths under /usr");
    assert_eq!(read(&o, "usr-labels-diff.txt"), "", "labels of the live /usr differ from the target's");
    // /etc: every path the apply added or updated carries the label the target
    // deployment has for it (the others are the booted deployment's, untouched).
    let labels_of = |name: &str| -> std::collections::BTreeMap<String, String> {
        read(&o, name)
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(p, z)| (format!("/etc/{p}"), z.to_string()))
            .collect()
    };
    let (live_etc, target_etc) = (labels_of("etc-labels-live.txt"), labels_of("etc-labels-target.txt"));
    let changed = read(&o, "etc-changed.txt");
    let mut differ = vec![];
    for path in changed.lines() {
        let (live, want) = (live_etc.get(path), target_etc.get(path));
        if live.is_none() || live != want {
            differ.push(format!("{path}: {live:?}, the target has {want:?}"));
        }
    }
    eprintln!(
        "/etc paths the apply added or updated, labels compared: {}, mismatches: {}",
        changed.lines().count(),
        differ.len()
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    let etc_live = read(&o, "etc-labels-live.txt");
    assert!(etc_live.contains("nginx/nginx.conf system_u:object_r:httpd_config_t:s0"), "{etc_live}");
    assert!(changed.lines().any(|l| l == "/etc/nginx/nginx.conf"), "{changed}");
    assert_eq!(read(&o, "restorecon-etc.txt"), "", "paths of /etc the policy labels otherwise");
    // No denial of livefs, nor of what it runs.
    let denials = read(&o, "denials.txt");
    let ours: Vec<&str> = denials
        .lines()
        .filter(|l| {
            ["livefs", "systemctl", "systemd-tmpfile", "systemd-sysuser", "ldconfig"]
                .iter()
                .any(|c| l.contains(&format!("comm=\"{c}\"")))
        })
        .collect();
    eprintln!("denials during the flow: {} in all, {} of livefs or what it runs", denials.lines().count(), ours.len());
    assert!(ours.is_empty(), "{}", ours.join("\n"));
    assert_valid(&validator("status"), "status --json", &read_json(&o.join("status-live.out")));
    quiet_ok(&o, "reset");
    assert_eq!(read(&o, "server-after-reset").trim(), "inactive");
    assert_eq!(read(&o, "usr-labels-reset.txt"), read(&o, "usr-labels-booted.txt"), "reset: labels of /usr");
}

/// bootc's native composefs backend on a real boot (tests/vm/image-bootc.sh,
/// guest-bootc.sh, guest-bootc2.sh): no OSTree, `/` the composefs image A. The
/// seed flow (B staged as bootc stages it: apply refused, then allowed with
/// --restart; lighttpd starts and serves from the live /usr; /etc merged with
/// the admin's edit kept; /usr exactly B's, read-only for root and nobody,
/// nothing written to the repository; reset to A exactly), a broken build C
/// rolled back at once (exit 5), the automatic run (B live by itself; C rolled
/// back, its unit failed), a soft reboot with status truthful, and a reboot
/// that forgets it all.
#[test]
fn bootc_composefs_vm_seed_flow_rollback_auto_soft_reboot() {
    let dir = run_vm("forky-bootc", &["guest-bootc.sh", "guest-bootc2.sh"]);
    let (b1, b2) = (dir.path().join("boot1"), dir.path().join("boot2"));
    let (o, o2) = (b1.join("out"), b2.join("out"));
    let image = |n: &str| read(&b1, n).trim().to_string();
    let (a, b, c) = (image("commit-a"), image("commit-b"), image("commit-c"));
    let status = validator("status");
    let apply_schema = validator("apply");
    let same = |name: &str| assert_eq!(read(&o, &format!("{name}.diff")), "", "/usr differs ({name})");

    // The host's facts: / the image A, its name on the kernel command line, no OSTree.
    let root = read(&o, "root-mount.txt");
    assert!(root.starts_with(&format!("composefs:{a} overlay ro,")), "{root}");
    assert!(root.contains("metacopy=on"), "{root}");
    assert!(read(&o, "cmdline.txt").contains(&format!("composefs=?{a}")));
    assert_eq!(read(&o, "no-ostree-booted").trim(), "1", "/run/ostree-booted exists");
    let before = read_json(&o.join("status-before.out"));
    quiet_ok(&o, "status-before");
    assert_valid(&status, "status (bootc composefs)", &before);
    assert_eq!(before["boot"]["backend"], "composefs");
    assert_eq!(before["boot"]["image"], a.as_str());
    assert_eq!(before["booted"]["checksum"], a.as_str());
    assert_eq!(before["pending"]["checksum"], b.as_str());

    // Refused without --allow-replacement, then applied: nothing written, /usr B's.
    assert_eq!(read(&o, "refused.rc").trim(), "3", "{}", read(&o, "refused.err"));
    assert_eq!(read(&o, "usr-mount-refused"), "/usr: no mount of its own\n");
    let apply = quiet_ok(&o, "apply");
    assert!(apply.contains(&format!("Applied {} -> {}", &a[..12], &b[..12])), "{apply}");
    assert!(apply.contains("; 0 bytes written."), "{apply}");
    assert!(apply.contains("Start lighttpd.service (newly wanted by multi-user.target): ok"), "{apply}");
    assert!(apply.contains("/etc: kept /etc/motd (changed locally"), "{apply}");
    assert_eq!(read(&o, "objects-before"), read(&o, "objects-after"), "the repository grew");
    let http = read(&o, "http.txt");
    assert!(http.starts_with("HTTP/1.0 200 OK") && http.contains("served by lighttpd from a live-updated /usr"));
    assert!(read(&o, "usr-mount-live").starts_with(&format!("livefs:image.{b} overlay ro,")));
    same("usr-live");
    for who in ["root", "nobody"] {
        assert_eq!(read(&o, &format!("touch-{who}.rc")).trim(), "1", "{who} wrote to /usr");
        assert!(read(&o, &format!("touch-{who}.err")).contains("Read-only file system"));
    }
    assert!(read(&o, "read-nobody.txt").contains("served by lighttpd"), "nobody cannot read /usr");
    assert!(read(&o, "motd-live").ends_with("# the admin's line\n"), "the admin's edit was lost");
    assert_eq!(read(&o, "default-live"), "LIVEFS_DEMO_VERSION=2\n");
    let live = read_json(&o.join("status-live.out"));
    assert_valid(&status, "status (bootc composefs, live)", &live);
    assert_eq!(live["usr"], serde_json::json!({"kind": "livefs-image", "image": b}));
    assert_eq!(live["state"], serde_json::json!({"state": "live", "commit": b}));

    // Reset: A's /usr and /etc, lighttpd stopped.
    let reset = read_json(&o.join("reset.out"));
    quiet_ok(&o, "reset");
    assert_valid(&apply_schema, "reset --restart --json (bootc composefs)", &reset);
    assert_eq!(reset["state"]["state"], "booted");
    assert_eq!(read(&o, "lighttpd-after-reset").trim(), "inactive");
    assert_eq!(read(&o, "usr-mount-reset"), "/usr: no mount of its own\n");
    same("usr-reset");
    assert_eq!(read(&o, "default-reset"), "LIVEFS_DEMO_VERSION=1\n");
    assert!(read(&o, "motd-reset").ends_with("# the admin's line\n"));

    // C, broken: rolled back at once, exit 5; the way back undone whole.
    let broken = read_json(&o.join("broken.out"));
    assert_eq!(read(&o, "broken.rc").trim(), "5", "{broken}");
    assert_valid(&apply_schema, "apply --json (rolled back)", &broken);
    assert_eq!(broken["kind"], "rolled_back");
    assert_eq!(broken["rolled_back"]["failed_units"], serde_json::json!(["lighttpd.service"]));
    let undone = broken["rolled_back"]["outcome"]["restart"]["actions"].as_array().unwrap();
    assert!(undone.iter().all(|x| x["result"]["ok"] == true), "{undone:?}");
    assert_eq!(read(&o, "usr-mount-broken"), "/usr: no mount of its own\n");
    same("usr-broken");
    let st = read_json(&o.join("status-broken.out"));
    assert_eq!(st["last_rollback"]["from"], c.as_str());

    // The automatic run: B live by itself; C rolled back, its unit failed.
    assert_eq!(read(&o, "auto-b-waited").trim(), "0", "no automatic run of B");
    assert_eq!(read_json(&o.join("status-auto-b.out"))["state"], serde_json::json!({"state": "live", "commit": b}));
    same("usr-auto-b");
    assert_eq!(read(&o, "auto-c-waited").trim(), "0", "no automatic run of C");
    let st = read_json(&o.join("status-auto-c.out"));
    assert_valid(&status, "status (after the automatic rollback)", &st);
    assert_eq!(st["auto"]["ending"], "rolled_back", "{}", st["auto"]);
    assert_eq!(st["state"], serde_json::json!({"state": "live", "commit": b}));
    same("usr-auto-c");
    let journal = read(&o, "auto-journal.txt");
    assert!(journal.contains("livefs-auto.service: Main process exited, code=exited, status=5"), "{journal}");

    // The soft reboot kept /run and the mount: status tells the truth; reset works.
    assert_eq!((read(&o, "soft-reboots-before").trim(), read(&o, "soft-reboots-after").trim()), ("0", "1"));
    let after = read_json(&o.join("status-after-soft-reboot.out"));
    quiet_ok(&o, "status-after-soft-reboot");
    let kept = read(&o, "mounts-after-soft-reboot").starts_with(&format!("livefs:image.{b} "));
    let want = if kept {
        serde_json::json!({"state": "live", "commit": b})
    } else {
        serde_json::json!({"state": "usr-lost", "commit": b})
    };
    assert_eq!(after["state"], want, "{after}");
    eprintln!("after the soft reboot the image's mount was {}", if kept { "kept" } else { "gone" });
    quiet_ok(&o, "reset-after-soft-reboot");
    same("usr-final");
    assert_eq!(read_json(&o.join("status-final.out"))["state"]["state"], "booted");
    assert_eq!(read(&o, "mounts-final"), "/usr: no mount of its own\n");

    // The reboot forgot it: A booted, nothing live, nothing staged.
    let st = read_json(&o2.join("status.out"));
    quiet_ok(&o2, "status");
    assert_eq!((st["booted"]["checksum"].as_str(), st["state"]["state"].as_str()), (Some(a.as_str()), Some("booted")));
    assert!(st["pending"].is_null(), "{st}");
    assert_eq!(read(&o2, "usr-mount"), "/usr: no mount of its own\n");
}
