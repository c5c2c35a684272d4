//! A real boot is the final judge: Debian 12 OSTree systems booted in QEMU
//! (systemd as PID 1, ostree-prepare-root from a dracut initramfs), updated live
//! and reset by livefs, rolled back, run unattended, driven over SSH by
//! Ansible, then rebooted (Debian forky's boots are in vm_forky.rs). See
//! tests/vm/run.sh for the scenarios; the images are cached in
//! /var/cache/livefs-test/vm.

mod common;

use common::schema::{assert_valid, validator};
use common::system::read_json;
use common::vm::{quiet_ok, read, run_vm};

#[test]
fn debian_vm_apply_serve_restart_reset_reboot() {
    let dir = run_vm("bookworm", &["guest-boot1.sh", "guest-boot2.sh"]);
    let out = dir.path();
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

    // The dry run: the actions apply --restart is about to take, and nothing changed.
    let dry = quiet_ok(&b1, "apply-dry");
    let dry_json = read_json(&b1.join("apply-dry-json.out"));
    assert_valid(&validator("apply"), "apply --restart --dry-run --json", &dry_json);
    assert_eq!(dry_json["changed"], false);
    let planned: Vec<(String, String)> = dry_json["restart"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["verb"].as_str().unwrap().to_string(), a["unit"].as_str().unwrap().to_string()))
        .collect();
    let want = [
        ("restart", "livefs-demo-worker@1.service"),
        ("restart", "livefs-demo.service"),
        ("start", "lighttpd.service"),
    ]
    .map(|(v, u)| (v.to_string(), u.to_string()));
    assert_eq!(planned, want, "{dry}");
    assert!(dry.contains("Would restart livefs-demo.service (its unit files changed; livefs-demo-dae (pid"), "{dry}");
    assert!(dry.contains("Would start lighttpd.service (newly wanted by multi-user.target)"), "{dry}");
    assert!(dry.contains("Left alone: livefs-demo-pinned.service (X-RestartIfChanged=false)"), "{dry}");
    assert_eq!(read(&b1, "pids-dry"), read(&b1, "pids-before"), "the dry run restarted something");
    assert_eq!(read(&b1, "lighttpd-load-dry").trim(), "not-found", "the dry run reloaded systemd");
    assert!(quiet_ok(&b1, "status-dry").contains("Live:        none"));

    let apply = quiet_ok(&b1, "apply");
    assert!(apply.contains(&format!("Applied {} -> {}", &a[..12], &b[..12])), "{apply}");
    assert!(apply.contains("/etc: kept /etc/motd (changed locally"), "{apply}");
    assert!(apply.contains("Trigger systemctl daemon-reload: ok"), "{apply}");
    // Exactly the actions the dry run listed, all done.
    for (verb, unit) in &planned {
        let done = format!("{}{} {unit} (", verb[..1].to_uppercase(), &verb[1..]);
        let line = apply.lines().find(|l| l.starts_with(&done)).unwrap_or_else(|| panic!("no {done:?} in:\n{apply}"));
        assert!(line.ends_with(": ok"), "{line}");
    }
    assert_eq!(
        apply.lines().filter(|l| l.ends_with(": ok") && !l.starts_with("Trigger")).count(),
        planned.len(),
        "{apply}"
    );
    assert!(apply.contains("Left alone: livefs-demo-pinned.service (X-RestartIfChanged=false)"), "{apply}");
    // The session-like scope's process is listed, not killed.
    assert!(
        dry.contains(") in livefs-demo-session.scope uses replaced /usr/libexec/livefs-demo/livefs-demo-daemon"),
        "{dry}"
    );
    let listed = apply.lines().find(|l| l.starts_with("Not restarted: livefs-demo-dae (pid "));
    assert!(listed.is_some_and(|l| l.contains(" in livefs-demo-session.scope uses replaced ")), "{apply}");
    assert_eq!(read(&b1, "session-after").trim(), "active", "the scope was stopped");
    // daemon-reload really ran: the new unit is loaded, the changed one re-read.
    assert_eq!(read(&b1, "lighttpd-load-before").trim(), "not-found");
    assert_eq!(read(&b1, "lighttpd-load-after").trim(), "loaded");
    assert_eq!(read(&b1, "demo-description-after").trim(), "livefs demo service, version 2");
    // The changed services run the new binary under new PIDs; the pinned one was left alone.
    let pids = |name: &str| -> std::collections::BTreeMap<String, String> {
        read(&b1, name).lines().filter_map(|l| l.split_once(' ')).map(|(u, p)| (u.into(), p.into())).collect()
    };
    let (before, after) = (pids("pids-before"), pids("pids-after"));
    assert_ne!(before["livefs-demo"], after["livefs-demo"]);
    assert_ne!(before["livefs-demo-worker@1"], after["livefs-demo-worker@1"]);
    assert_eq!(before["livefs-demo-pinned"], after["livefs-demo-pinned"], "X-RestartIfChanged=false not honoured");
    assert_eq!(read(&b1, "demo-exe-cmp").trim(), "0");
    // The web server the update brought and enabled was started, and serves from the live /usr.
    assert_eq!(read(&b1, "lighttpd-active-after").trim(), "active");
    let http = read(&b1, "http.txt");
    assert!(http.starts_with("HTTP/1.0 200 OK"), "{http}");
    assert!(http.contains("served by lighttpd from a live-updated /usr"), "{http}");
    // Nothing left needing a restart but the unit that opted out and the units
    // left alone (version 2 changed their drop-ins); no failed units.
    let live = read_json(&b1.join("status-live-json.out"));
    let left = ["livefs-demo-pinned.service", "ssh.service", "systemd-journald.service", "systemd-logind.service"];
    assert_eq!(live["restarts"]["units"], serde_json::json!(left), "{}", live["restarts"]);
    for unit in &left[1..] {
        assert!(apply.contains(&format!("Left alone: {unit} (")), "{unit} not reported left alone:\n{apply}");
    }
    let procs = live["restarts"]["processes"].as_object().unwrap();
    assert_eq!(procs.keys().collect::<Vec<_>>(), ["livefs-demo-pinned.service"], "{}", live["restarts"]);
    assert_eq!(live["boot"]["composefs"], false);
    let again = read_json(&b1.join("restart-dry-json.out"));
    assert_valid(&validator("restart"), "restart --dry-run --json", &again);
    assert_eq!(again["restart"]["actions"], serde_json::json!([]), "{again}");
    assert_eq!(again["restart"]["skipped"][0]["unit"], "livefs-demo-pinned.service");
    assert_eq!(read(&b1, "failed-units-live.txt"), "", "failed units after apply --restart");

    // Reset --restart: /usr and /etc exactly as booted (ld.so.cache aside, which
    // ldconfig rewrites), lighttpd stopped (its unit went away), the demo on v1 again.
    let reset = read_json(&b1.join("reset.out"));
    quiet_ok(&b1, "reset");
    assert_valid(&validator("apply"), "reset --restart --json", &reset);
    assert_eq!(reset["to"], a);
    let actions: Vec<String> = reset["restart"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {} {}", a["verb"].as_str().unwrap(), a["unit"].as_str().unwrap(), a["result"]["ok"]))
        .collect();
    assert_eq!(
        actions,
        ["stop lighttpd.service true", "restart livefs-demo-worker@1.service true", "restart livefs-demo.service true"],
        "{}",
        reset["restart"]
    );
    assert_eq!(read(&b1, "lighttpd-active-reset").trim(), "inactive");
    assert_eq!(read(&b1, "demo-exe-reset-cmp").trim(), "0");
    assert!(quiet_ok(&b1, "status-reset").contains("Live:        none"));
    assert_eq!(read(&b1, "usr-after-reset.txt"), read(&b1, "usr-booted.txt"), "/usr differs from the booted commit");
    assert_eq!(read(&b1, "etc-after-reset.txt"), read(&b1, "etc-before.txt"), "/etc entries differ after reset");
    assert_eq!(read(&b1, "etc-after-reset.md5"), read(&b1, "etc-before.md5"), "/etc content differs after reset");
    quiet_ok(&b1, "apply-again");
    // livefs restart after it: the failing restart is reported with the unit's
    // status (exit 1, the JSON report on stdout); the other actions went on.
    assert_eq!(read(&b1, "restart-failing.rc").trim(), "1", "{}", read(&b1, "restart-failing.out"));
    assert_eq!(read(&b1, "restart-failing.err"), "");
    let failing = read_json(&b1.join("restart-failing.out"));
    assert_valid(&validator("restart"), "restart --json (failing)", &failing);
    let results: Vec<(String, bool)> = failing["restart"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (format!("{} {}", a["verb"].as_str().unwrap(), a["unit"].as_str().unwrap()), a["result"]["ok"] == true)
        })
        .collect();
    assert_eq!(
        results,
        [
            ("restart livefs-demo-worker@1.service".to_string(), true),
            ("restart livefs-demo.service".to_string(), false),
            ("start lighttpd.service".to_string(), true),
        ],
        "{failing}"
    );
    let status = failing["restart"]["actions"][1]["result"]["status"].as_str().unwrap();
    assert!(status.contains("livefs-demo.service") && status.contains("ExecStartPre"), "{status}");
    let retry = quiet_ok(&b1, "restart-retry");
    let started = "Start livefs-demo.service (livefs failed to restart it before): ok";
    assert!(retry.lines().any(|l| l == started), "{retry}");
    assert_eq!(read_json(&b1.join("restart-done-json.out"))["restart"]["actions"], serde_json::json!([]));
    assert_eq!(read(&b1, "failed-units.txt"), "", "failed units");
    assert_eq!(read(&b1, "journal-systemctl.txt"), "", "systemctl complained");
    // The journal: every command that changed the system, refused or failed, once
    // (dry runs none); the units each acted on.
    let entries: Vec<serde_json::Value> =
        read(&b1, "journal.json").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let field = |e: &serde_json::Value, f: &str| e[f].as_str().unwrap_or_default().to_string();
    let events: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| (field(e, "LIVEFS_EVENT"), field(e, "LIVEFS_COMMAND"), field(e, "LIVEFS_KIND")))
        .collect();
    let want = [
        ("refused", "apply", "refused_replacement"),
        ("applied", "apply", ""),
        ("reset", "reset", ""),
        ("applied", "apply", ""),
        ("failed", "restart", "unit_failed"),
        ("restarted", "restart", ""),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(events, want, "{}", read(&b1, "journal.json"));
    // LIVEFS_UNIT repeats, one per unit: journalctl's JSON makes it an array.
    assert_eq!(
        entries[1]["LIVEFS_UNIT"],
        serde_json::json!(["livefs-demo-worker@1.service", "livefs-demo.service", "lighttpd.service"])
    );
    assert_eq!(field(&entries[4], "LIVEFS_UNIT_FAILED"), "livefs-demo.service");

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

/// A journal entry of `journalctl -o verbose` output: its `NAME=value` fields.
fn verbose_fields(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| l.contains('=')).map(str::to_string).collect()
}

/// Live updates that break something undo themselves, on a real boot
/// (tests/vm/guest-rollback.sh): a broken nginx build, a failing greenboot
/// required check, a failing wanted one (kept), `livefs rollback` to the
/// previous live commit, `--confirm-within` unconfirmed (its session killed)
/// and confirmed, and the automatic run of a broken staged deployment.
#[test]
fn debian_vm_rollbacks() {
    let dir = run_vm("bookworm", &["guest-rollback.sh"]);
    let o = dir.path().join("boot1/out");
    let transcript = read(&o, "transcript.txt");
    eprintln!("{transcript}");
    let b = read(&dir.path().join("boot1"), "commit-b").trim().to_string();
    let a = read(&dir.path().join("boot1"), "commit-a").trim().to_string();
    let (apply, rollback, status) = (validator("apply"), validator("rollback"), validator("status"));
    let json = |name: &str| read_json(&o.join(name));

    // 1. The broken build: exit 5, rolled back, nginx serves the booted page again.
    assert_eq!(read(&o, "broken.rc").trim(), "5", "{}", read(&o, "broken.err"));
    let broken = json("broken.out");
    assert_valid(&apply, "apply (rolled back)", &broken);
    assert_eq!(broken["kind"], "rolled_back");
    assert_eq!(
        broken["rolled_back"]["failed_units"],
        serde_json::json!(["nginx.service"]),
        "{}",
        broken["rolled_back"]
    );
    assert_eq!(broken["rolled_back"]["outcome"]["to"], a.as_str());
    let took = broken["rolled_back"]["seconds"].as_f64().unwrap();
    assert!(took < 30.0, "the way back took {took} s");
    let before = read(&o, "nginx-before.txt");
    assert!(before.contains("served by nginx, the booted build"), "{before}");
    let after = read(&o, "nginx-after.txt");
    assert!(after.contains("200 OK") && after.contains("served by nginx, the booted build"), "{after}");
    assert_eq!(read(&o, "nginx-active-after").trim(), "active");
    assert_eq!(read(&o, "nginx-binary-cmp").trim(), "0", "/usr/sbin/nginx is not the booted one");
    let st = json("status-broken-json.out");
    assert_valid(&status, "status", &st);
    assert_eq!(st["state"]["state"], "booted");
    assert_eq!(st["last_rollback"]["cause"], "failed_checks");
    assert!(quiet_ok(&o, "status-broken").contains("Rolled back: "), "{}", read(&o, "status-broken.out"));
    let journal = verbose_fields(&read(&o, "journal-broken.txt"));
    for want in ["LIVEFS_EVENT=rolled_back", "LIVEFS_UNIT_FAILED=nginx.service", "LIVEFS_ROLLBACK_CAUSE=failed_checks"]
    {
        assert!(journal.iter().any(|f| f == want), "no {want} in {journal:#?}");
    }
    assert!(journal.iter().any(|f| f.starts_with("LIVEFS_FAILED_CHECK=nginx.service: ")), "{journal:#?}");

    // 2. A failing required check: rolled back, red.d ran; 3. a wanted one: kept, green.d ran.
    assert_eq!(read(&o, "required.rc").trim(), "5");
    let required = json("required.out");
    assert_eq!(required["health"]["required"][0]["name"], "/etc/greenboot/check/required.d/10-marker.sh");
    assert_eq!(required["health"]["required"][0]["output"], "marker missing: unhealthy\n");
    assert_eq!(required["health"]["scripts"][0]["name"], "/etc/greenboot/red.d/10-red.sh");
    assert_eq!(read(&o, "required-program-gone").trim(), "1", "D's program is still there");
    assert_eq!(read(&o, "wanted.rc").trim(), "0", "{}", read(&o, "wanted.err"));
    assert!(read(&o, "wanted.err").contains("a wanted health check failed: /etc/greenboot/check/wanted.d/20-wanted.sh"));
    assert_eq!(read(&o, "wanted-program.txt"), "new program of D\n");
    assert_eq!(read(&o, "red.txt"), "red\n", "red.d after the rollback");
    assert_eq!(read(&o, "green.txt"), "green\n", "green.d after the update kept");

    // 4. livefs rollback from live E goes back to live B, not to the booted A.
    let back = json("rollback-e.out");
    assert_valid(&rollback, "rollback --json", &back);
    assert_eq!((back["outcome"]["to"].as_str(), back["cause"].as_str()), (Some(b.as_str()), Some("by_hand")));
    let st = json("status-after-rollback-json.out");
    assert_eq!(st["state"], serde_json::json!({"state": "live", "commit": b}));
    assert_eq!(read(&o, "rollback-program-gone").trim(), "1");
    assert!(read(&o, "lighttpd-after-rollback.txt").contains("200 OK"), "B's lighttpd does not serve");

    // 5. Unconfirmed, its session killed: systemd's timer rolled it back.
    assert_eq!(read(&o, "confirm-apply.rc").trim(), "0", "{}", read(&o, "confirm-apply.err"));
    let awaiting = quiet_ok(&o, "status-awaiting");
    assert!(awaiting.contains("Confirm:     by "), "{awaiting}");
    assert!(read(&o, "timers-awaiting.txt").contains("livefs-confirm-"), "{}", read(&o, "timers-awaiting.txt"));
    let secs: f64 = read(&o, "unconfirmed-seconds").trim().parse().unwrap();
    assert!((18.0..60.0).contains(&secs), "rolled back {secs} s after the apply");
    let st = json("status-unconfirmed-json.out");
    assert_eq!(st["state"], serde_json::json!({"state": "live", "commit": b}));
    assert_eq!(
        (st["last_rollback"]["cause"].as_str(), st["last_rollback"]["command"].as_str()),
        (Some("unconfirmed"), Some("rollback"))
    );
    assert_eq!(read(&o, "unconfirmed-program-gone").trim(), "1");
    assert_eq!(read(&o, "confirm-late.rc").trim(), "5", "a late confirmation: {}", read(&o, "confirm-late.err"));
    let journal = verbose_fields(&read(&o, "journal-unconfirmed.txt"));
    assert!(journal.iter().any(|f| f == "LIVEFS_ROLLBACK_CAUSE=unconfirmed"), "{journal:#?}");

    // 6. Confirmed from another session: kept past the deadline, no timer left.
    assert_eq!(read(&o, "confirm.rc").trim(), "0", "{}", read(&o, "confirm.err"));
    assert_eq!(json("confirm.out")["changed"], true);
    let st = json("status-confirmed-json.out");
    assert_eq!(st["state"]["state"], "live");
    assert!(st["way_back"]["confirm"].is_null(), "{}", st["way_back"]);
    assert_eq!(read(&o, "confirmed-program.txt"), "program of F\n");
    assert!(!read(&o, "timers-confirmed.txt").contains("livefs-confirm-"), "{}", read(&o, "timers-confirmed.txt"));

    // 7. The automatic run: the broken staged deployment rolled back, the unit
    // failed, the sentinel says why, not applied again on the next trigger.
    let g = read(&o, "commit-g").trim().to_string();
    let secs: f64 = read(&o, "auto-seconds").trim().parse().unwrap_or_else(|_| panic!("no run:\n{transcript}"));
    assert!(secs < 120.0, "{secs}");
    assert_eq!(read(&o, "auto-unit-state").trim(), "failed");
    assert!(read(&o, "auto-failed-units.txt").contains("livefs-auto.service"));
    assert!(read(&o, "auto-nginx-after.txt").contains("200 OK"), "{}", read(&o, "auto-nginx-after.txt"));
    let st = json("status-auto-json.out");
    assert_valid(&status, "status", &st);
    assert_eq!(
        (st["auto"]["ending"].as_str(), st["auto"]["kind"].as_str()),
        (Some("rolled_back"), Some("rolled_back"))
    );
    assert_eq!(st["auto"]["target"], g.as_str());
    let pkgs = read(&o, "auto-reboot-required.pkgs");
    assert!(
        pkgs.contains(&format!("livefs: deployment {} not applied live: it failed its health checks", &g[..12])),
        "{pkgs}"
    );
    assert_eq!(st["last_rollback"]["command"], "auto");
    // Decided once: the next run repeats the decision (the record is the first
    // run's, no second rollback in the journal), and fails its unit again.
    let again = json("status-auto-again-json.out");
    assert_eq!(again["auto"], st["auto"], "decided again");
    assert_eq!(read(&o, "auto-again-unit-state").trim(), "failed");
    let entries: Vec<serde_json::Value> =
        read(&o, "journal.json").lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let rolled: Vec<&serde_json::Value> = entries.iter().filter(|e| e["LIVEFS_EVENT"] == "rolled_back").collect();
    // Cases 1 (twice: JSON, then text), 2, 4, 5 and 7.
    assert_eq!(rolled.len(), 6, "a rolled_back entry per rollback: {rolled:#?}");
    assert!(rolled.iter().any(|e| e["LIVEFS_COMMAND"] == "auto" && e["LIVEFS_TO"] == g.as_str()), "{rolled:#?}");
}

/// Unattended, on a real boot (tests/vm/guest-auto.sh): with livefs-auto.path
/// enabled, a deployment `ostree admin deploy` makes, and one it stages, go live
/// by themselves within 60 s, each logged with its MESSAGE_ID and fields; a
/// kernel update is left for the reboot (the unit succeeds, the sentinel and the
/// journal say why); a replacement the policy forbids fails the unit, its kind
/// in the journal; the reboot starts the last deployment, nothing live.
#[test]
fn debian_vm_automatic_runs() {
    let dir = run_vm("bookworm", &["guest-auto.sh", "guest-auto2.sh"]);
    let b1 = dir.path().join("boot1");
    let o = b1.join("out");
    let transcript = read(&o, "transcript.txt");
    eprintln!("{transcript}");
    let commit = |name: &str| read(&o, &format!("commit-{name}")).trim().to_string();
    let (c, d, k, e) = (commit("c"), commit("d"), commit("k"), commit("e"));
    assert_eq!(read(&o, "units-active.txt"), "active\nactive\n", "the path unit brings its timer along");
    let start = read_json(&o.join("status-start.json"));
    assert!(start["pending"].is_null(), "the image's own pending deployment was undeployed: {start}");

    // Deployed at once, and staged: live within 60 s, by themselves.
    for (name, seconds) in [("C", "c-seconds"), ("D", "d-seconds")] {
        let s: f64 =
            read(&o, seconds).trim().parse().unwrap_or_else(|_| panic!("{name} never went live:\n{transcript}"));
        assert!(s <= 60.0, "{name} took {s} s");
    }
    assert!(quiet_ok(&o, "c-status").contains(&format!("Live:        {} version 3", &c[..12])));
    assert_eq!(quiet_ok(&o, "c-hello"), "hello from commit C\n");
    assert_eq!(quiet_ok(&o, "d-staged"), "staged D\n");
    let d_status = read_json(&o.join("d-status-json.out"));
    assert_valid(&validator("status"), "status --json", &d_status);
    assert_eq!(d_status["live"]["checksum"], d.as_str());
    assert_eq!(d_status["auto"]["ending"], "applied");

    // The kernel: left for the reboot, the unit fine, the sentinel says why.
    let k_status = read_json(&o.join("k-status-json.out"));
    assert_eq!(k_status["live"]["checksum"], d.as_str(), "nothing applied");
    assert_eq!(k_status["auto"]["ending"], "left_for_reboot", "{k_status}");
    assert_eq!(k_status["auto"]["target"], k.as_str());
    assert_eq!(read(&o, "k-unit-state").trim(), "inactive");
    let pkgs = read(&o, "k-reboot-required.pkgs");
    assert!(pkgs.contains(&format!("livefs: deployment {} not applied live: a changed kernel", &k[..12])), "{pkgs}");

    // A forbidden replacement: not applied, the unit failed.
    let e_status = read_json(&o.join("e-status-json.out"));
    assert_eq!(e_status["live"]["checksum"], d.as_str(), "nothing applied");
    assert_eq!(
        (e_status["auto"]["ending"].as_str(), e_status["auto"]["kind"].as_str()),
        (Some("refused"), Some("refused_replacement"))
    );
    assert_eq!(quiet_ok(&o, "e-hello"), "hello from commit C\n");
    assert_eq!(read(&o, "e-unit-state").trim(), "failed");
    assert!(read(&o, "e-failed-units.txt").contains("livefs-auto.service"));
    assert!(read(&o, "e-reboot-required.pkgs").contains(&format!("livefs: deployment {} not applied live: it changes or removes 1 existing path(s) in /usr, and AllowReplacement=no", &e[..12])));

    // One run per deployment, however many times /boot changed while ostree wrote it.
    let service = read(&o, "journal-service.txt");
    assert_eq!(service.lines().filter(|l| l.starts_with("Starting livefs-auto.service")).count(), 4, "{service}");

    // The journal: one entry per run, with the documented IDs and fields.
    let entries: Vec<serde_json::Value> =
        read(&o, "journal.json").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let get = |e: &serde_json::Value, f: &str| e[f].as_str().unwrap_or_default().to_string();
    let seen: Vec<(String, String)> = entries.iter().map(|e| (get(e, "LIVEFS_EVENT"), get(e, "LIVEFS_TO"))).collect();
    let want: Vec<(String, String)> = [("applied", &c), ("applied", &d), ("refused", &k), ("refused", &e)]
        .iter()
        .map(|(ev, to)| (ev.to_string(), to.to_string()))
        .collect();
    assert_eq!(seen, want, "{}", read(&o, "journal-verbose.txt"));
    for (entry, id) in entries.iter().zip([
        "9156c2b8b135400a9b1a466e48a2a1ca",
        "9156c2b8b135400a9b1a466e48a2a1ca",
        "867364c173e340168e00d2cfb4dd065c",
        "867364c173e340168e00d2cfb4dd065c",
    ]) {
        assert_eq!(get(entry, "MESSAGE_ID"), id);
        assert_eq!(get(entry, "LIVEFS_COMMAND"), "auto");
        assert_eq!(get(entry, "_SYSTEMD_UNIT"), "livefs-auto.service");
    }
    assert_eq!(get(&entries[0], "LIVEFS_STRATEGY"), "live");
    assert_eq!(get(&entries[2], "LIVEFS_KIND"), "refused_strategy");
    assert!(get(&entries[2], "MESSAGE").contains("left for the reboot: a changed kernel"), "{:?}", entries[2]);
    assert_eq!(get(&entries[3], "LIVEFS_KIND"), "refused_replacement");

    // The reboot: the last deployment boots, nothing is live, still enabled.
    let o2 = dir.path().join("boot2/out");
    let status = read_json(&o2.join("status-json.out"));
    assert_eq!(status["booted"]["checksum"], e.as_str(), "{status}");
    assert!(status["live"].is_null() && status["auto"].is_null(), "{status}");
    assert_eq!(quiet_ok(&o2, "hello"), "hello from commit E\n");
    assert_eq!(quiet_ok(&o2, "staged"), "staged D\n");
    assert_eq!(read(&o2, "path-enabled.txt").trim(), "enabled");
    assert_eq!(read(&o2, "path-active.txt").trim(), "active");
    assert_eq!(read(&o2, "reboot-required.txt").trim(), "absent");
}
