//! A real boot is the final judge: a Debian 12 OSTree system booted in QEMU
//! (systemd as PID 1, ostree-prepare-root from a dracut initramfs), updated live
//! and reset by livefs, then rebooted. See tests/vm/run.sh for the scenario; the
//! image is cached in /var/cache/livefs-test/vm.

mod common;

use std::path::Path;
use std::process::Command;

use common::system::read_json;
use common::*;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// A command the guest ran: its stdout, after checking its exit status and that
/// it printed nothing on stderr (no systemctl noise anywhere).
fn quiet_ok(dir: &Path, name: &str) -> String {
    let (rc, err) = (read(dir, &format!("{name}.rc")), read(dir, &format!("{name}.err")));
    assert_eq!(rc.trim(), "0", "{name} failed:\n{err}\n{}", read(dir, &format!("{name}.out")));
    assert_eq!(err, "", "{name} wrote to stderr");
    read(dir, &format!("{name}.out"))
}

#[test]
fn debian_vm_apply_serve_restart_reset_reboot() {
    let dir = scratch();
    let out = dir.path();
    let run = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/run.sh"))
        .env("OUT", out)
        .env("LIVEFS", env!("CARGO_BIN_EXE_livefs"))
        .output()
        .expect("cannot run tests/vm/run.sh");
    assert!(
        run.status.success(),
        "VM scenario failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!("{}", read(out, "times.txt"));
    let b1 = out.join("boot1/out");
    let (a, b) = (read(&out.join("boot1"), "commit-a"), read(&out.join("boot1"), "commit-b"));
    let (a, b) = (a.trim(), b.trim());

    let status = quiet_ok(&b1, "status-before");
    assert!(status.contains(&format!("Booted:      {} version 1", &a[..12])), "{status}");
    assert!(status.contains(&format!("Pending:     {} version 2", &b[..12])), "{status}");

    // Replacements are refused until allowed; nothing changed meanwhile.
    assert_eq!(read(&b1, "apply-refused.rc").trim(), "3", "a policy refusal exits with 3");
    let refused = read(&b1, "apply-refused.err");
    assert!(refused.contains("rerun with --allow-replacement"), "{refused}");
    assert!(refused.contains("/usr/libexec/livefs-demo/livefs-demo-daemon"), "{refused}");

    let apply = quiet_ok(&b1, "apply");
    assert!(apply.contains(&format!("Applied {} -> {}", &a[..12], &b[..12])), "{apply}");
    assert!(apply.contains("/etc: kept /etc/motd (changed locally"), "{apply}");
    assert!(apply.contains("Trigger systemctl daemon-reload: ok"), "{apply}");
    // daemon-reload really ran: the new unit is loaded, the changed one re-read.
    assert_eq!(read(&b1, "lighttpd-load-before").trim(), "not-found");
    assert_eq!(read(&b1, "lighttpd-load-after").trim(), "loaded");
    assert_eq!(read(&b1, "demo-description-after").trim(), "livefs demo service, version 2");
    // Restart hints: the changed unit, the template's running instance, and the
    // processes running the replaced binary — from apply and from status.
    for text in [&apply, &quiet_ok(&b1, "status-live")] {
        for hint in [
            "Needs restart: livefs-demo.service (its unit files changed)",
            "Needs restart: livefs-demo-worker@1.service (its unit files changed)",
            "in livefs-demo.service uses replaced /usr/libexec/livefs-demo/livefs-demo-daemon",
        ] {
            assert!(text.contains(hint), "missing {hint:?} in:\n{text}");
        }
    }

    // The web server the update brought starts and serves from the live /usr.
    quiet_ok(&b1, "start-lighttpd");
    let http = read(&b1, "http.txt");
    assert!(http.starts_with("HTTP/1.0 200 OK"), "{http}");
    assert!(http.contains("served by lighttpd from a live-updated /usr"), "{http}");

    // A restart clears the hints; the service runs the new binary under a new PID.
    quiet_ok(&b1, "restart");
    assert_ne!(read(&b1, "demo-pid-before"), read(&b1, "demo-pid-after"));
    assert_eq!(read(&b1, "demo-exe-cmp").trim(), "0");
    let restarted = read_json(&b1.join("status-restarted-json.out"));
    assert_eq!(restarted["restarts"]["units"], serde_json::json!([]), "{}", restarted["restarts"]);
    assert_eq!(restarted["restarts"]["processes"], serde_json::json!({}), "{}", restarted["restarts"]);
    assert_eq!(read_json(&b1.join("status-live-json.out"))["boot"]["composefs"], false);

    // Reset: /usr and /etc exactly as booted (ld.so.cache aside, which ldconfig rewrites).
    quiet_ok(&b1, "stop-lighttpd");
    let reset = quiet_ok(&b1, "reset");
    assert!(reset.contains(&format!("Reset /usr {} -> {} (booted)", &b[..12], &a[..12])), "{reset}");
    assert!(quiet_ok(&b1, "status-reset").contains("Live:        none"));
    assert_eq!(read(&b1, "usr-after-reset.txt"), read(&b1, "usr-booted.txt"), "/usr differs from the booted commit");
    assert_eq!(read(&b1, "etc-after-reset.txt"), read(&b1, "etc-before.txt"), "/etc entries differ after reset");
    assert_eq!(read(&b1, "etc-after-reset.md5"), read(&b1, "etc-before.md5"), "/etc content differs after reset");
    quiet_ok(&b1, "apply-again");
    assert_eq!(read(&b1, "failed-units.txt"), "", "failed units");
    assert_eq!(read(&b1, "journal-systemctl.txt"), "", "systemctl complained");

    // After the reboot: nothing live, /usr the plain deployment, stale state removed.
    let b2 = out.join("boot2/out");
    let status = quiet_ok(&b2, "status");
    assert!(status.contains("Live:        none (/usr holds the booted commit)"), "{status}");
    assert!(status.contains("/usr:        read-only, not unlocked"), "{status}");
    assert_eq!(read(&b2, "usr-mount.txt").trim(), "ext4");
    assert_eq!(read(&b2, "lighttpd.txt").trim(), "absent");
    let before = read(&b2, "uppers-before.txt");
    assert!(before.lines().count() >= 1 && !before.contains("No such file"), "no layer of the previous boot: {before}");
    quiet_ok(&b2, "reset");
    assert!(read(&b2, "uppers-after.txt").contains("No such file"), "stale layers not removed");
    assert_eq!(read(&b2, "refs-after.txt"), "", "stale refs not removed");
}
