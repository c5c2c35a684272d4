//! The apply strategy on scratch OSTree systems booted in private mount
//! namespaces: what needs a reboot or a soft reboot and why, the
//! `--max-strategy` limit and the reboot sentinel, what an update replaces (one
//! answer for status, the dry run and the refusal), another stateroot's
//! deployment.

mod common;

use common::system::{ok, read_json, TestSystem};
use common::*;

/// The apply strategy says what a live apply cannot deliver: a new kernel and
/// changed kernel arguments need a reboot, a changed systemd manager a soft
/// reboot (a reboot here: this host is not composefs-booted); an update of plain
/// files goes live whole.
#[test]
fn strategy_names_what_needs_a_reboot() {
    let (mut sys, _) = TestSystem::with_additions();
    let out = sys.run("L apply --dry-run --json > $OUT/additions.json");
    ok(&out);
    let s = read_json(&sys.out.join("additions.json"))["strategy"].clone();
    let nothing = serde_json::json!({"units": [], "processes": {}});
    let not_composefs = "not booted with composefs (ostree soft-reboots only composefs-booted hosts)";
    let no_target = "the target has no soft-reboot.target (systemd before 254)";
    assert_eq!(
        s,
        serde_json::json!({"needs": "live", "live": true, "reboot_for": [], "soft_reboot_for": [],
            "soft_reboot_capable": false, "soft_reboot_blockers": [not_composefs, no_target], "never_live": [],
            "replaces": [], "restarts": nothing})
    );
    write(&sys.tree.join("usr/lib/modules/9.9.9-new/vmlinuz"), b"new kernel");
    write(&sys.tree.join("usr/lib/modules/9.9.9-new/initramfs.img"), b"new initramfs");
    write(&sys.tree.join("usr/lib/systemd/systemd"), b"new manager");
    let v3 = sys.commit("3");
    let deploy = std::process::Command::new("ostree")
        .args(["admin", "deploy", "--retain", &format!("--sysroot={}", sys.sysroot.display()), "--os=demo"])
        .args(["--karg-append=quiet", &v3])
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .output()
        .unwrap();
    assert!(deploy.status.success(), "{}", String::from_utf8_lossy(&deploy.stderr));
    let out = sys.run(
        "L apply --dry-run --json > $OUT/kernel.json; L status > $OUT/status.txt; L apply --dry-run > $OUT/kernel.txt",
    );
    ok(&out);
    let s = read_json(&sys.out.join("kernel.json"))["strategy"].clone();
    assert_eq!(s["live"], false, "{s}");
    let reasons: Vec<&str> = s["reboot_for"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reasons.contains(&"a new kernel (9.9.9-new)"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("changed kernel arguments") && r.ends_with("quiet\")")),
        "{reasons:?}"
    );
    assert_eq!(s["needs"], "reboot", "{s}");
    assert_eq!(
        s["soft_reboot_for"],
        serde_json::json!(["a changed systemd manager (PID 1): /usr/lib/systemd/systemd"])
    );
    assert_eq!(s["soft_reboot_capable"], false);
    let text = std::fs::read_to_string(sys.out.join("status.txt")).unwrap();
    assert!(text.contains("Strategy:    the pending deployment can go live except for what needs a reboot:"), "{text}");
    assert!(text.contains("  reboot for a new kernel (9.9.9-new)"), "{text}");
    assert!(text.contains("  soft reboot for a changed systemd manager (PID 1): /usr/lib/systemd/systemd"), "{text}");
    assert!(text.contains("  no soft reboot on this host: not booted with composefs"), "{text}");
    let dry = std::fs::read_to_string(sys.out.join("kernel.txt")).unwrap();
    eprintln!("livefs apply --dry-run:\n{dry}");
    assert!(dry.contains("Strategy:    this update can go live except for what needs a reboot:"), "{dry}");
    assert!(dry.contains("  reboot for a new kernel (9.9.9-new)"), "{dry}");
    assert!(dry.contains("(dry run: nothing changed)"), "{dry}");
}

/// `--max-strategy` refuses an update that needs more, before anything changes
/// (exit status 3, kind refused_strategy); applied anyway, the update leaves
/// `/run/reboot-required` saying why, which a reset removes. A sentinel someone
/// else wrote is never rewritten nor removed.
#[test]
fn the_strategy_limit_and_the_reboot_sentinel() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/lib/modules/9.9.9-new/vmlinuz"), b"new kernel");
    write(&sys.tree.join("usr/bin/newprog"), b"#!/bin/sh\necho new\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let out = sys.run(
        r#"
        if L apply --max-strategy soft-reboot --json > $OUT/limit.json; then exit 1; else echo $? > $OUT/limit.rc; fi
        L status --json > $OUT/status-limit.json
        test ! -e $R/run/reboot-required
        L apply --max-strategy reboot --json > $OUT/apply.json
        cp $R/run/reboot-required $OUT/rr; cp $R/run/reboot-required.pkgs $OUT/rr.pkgs
        stat -c %a $R/run/reboot-required $R/run/reboot-required.pkgs > $OUT/rr.mode
        L apply --json > $OUT/apply-again.json
        test -e $R/run/reboot-required
        L reset > /dev/null
        if test -e $R/run/reboot-required || test -e $R/run/reboot-required.pkgs; then exit 1; fi
        # Someone else's (apt's) sentinel stays as it is.
        echo "*** System restart required ***" > $R/run/reboot-required
        echo linux-image-amd64 > $R/run/reboot-required.pkgs
        L apply > /dev/null
        L reset > /dev/null
        cp $R/run/reboot-required.pkgs $OUT/theirs.pkgs
        "#,
    );
    ok(&out);
    assert_eq!(std::fs::read_to_string(sys.out.join("limit.rc")).unwrap().trim(), "3");
    let limit = read_json(&sys.out.join("limit.json"));
    assert_eq!(limit["kind"], "refused_strategy");
    let msg = limit["error"].as_str().unwrap();
    assert!(
        msg.contains("needs a reboot (a new kernel (9.9.9-new))") && msg.contains("--max-strategy soft-reboot"),
        "{msg}"
    );
    assert_eq!(read_json(&sys.out.join("status-limit.json"))["state"]["state"], "booted", "nothing changed");
    assert_eq!(read_json(&sys.out.join("apply.json"))["strategy"]["needs"], "reboot");
    assert_eq!(std::fs::read_to_string(sys.out.join("rr")).unwrap(), "*** System restart required ***\n");
    assert_eq!(std::fs::read_to_string(sys.out.join("rr.pkgs")).unwrap(), "livefs: a new kernel (9.9.9-new)\n");
    assert_eq!(std::fs::read_to_string(sys.out.join("theirs.pkgs")).unwrap(), "linux-image-amd64\n");
    assert_eq!(std::fs::read_to_string(sys.out.join("rr.mode")).unwrap(), "644\n644\n", "world-readable, as apt's");
}

/// One answer to "what does this update replace": status, the dry run, the
/// refusal without --allow-replacement and the apply list the same paths — a
/// directory whose mode changed, a replaced and a removed file, not the /etc
/// default (which needs no --allow-replacement).
#[test]
fn replaces_is_one_answer_everywhere() {
    let mut sys = TestSystem::new();
    chmod(&sys.tree.join("usr/share/doc/demo"), 0o700);
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    rm(&sys.tree.join("usr/share/doc/demo/README"));
    write(&sys.tree.join("usr/etc/motd"), b"motd v2\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    ok(&sys.run(
        r#"
        L status --json > $OUT/status.json
        L apply --allow-replacement --dry-run --json > $OUT/dry.json
        L apply --json > $OUT/refused.json || true
        L apply --allow-replacement --json > $OUT/apply.json
        "#,
    ));
    let want = ["/usr/bin/hello", "/usr/share/doc/demo", "/usr/share/doc/demo/README"];
    for name in ["status.json", "dry.json", "apply.json"] {
        let doc = read_json(&sys.out.join(name));
        let got: Vec<&str> =
            doc["strategy"]["replaces"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(got, want, "{name}: {doc}");
    }
    let refused = read_json(&sys.out.join("refused.json"));
    let error = refused["error"].as_str().unwrap();
    let listed = error.rsplit_once("): ").map(|(_, l)| l).unwrap_or_default();
    let mut listed: Vec<&str> = listed.split(", ").collect();
    listed.sort();
    assert_eq!(listed, want, "{error}");
}

/// A deployment of another stateroot (`ostree admin os-init other; ostree admin
/// deploy --os=other`) is another OS install: never the pending deployment of
/// this one. `status` names it as the next boot with a reboot strategy, `apply`
/// has nothing to do (and takes neither its /usr nor its /etc), `--target` still
/// applies a commit to the booted stateroot.
#[test]
fn another_stateroots_deployment_is_not_pending() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/bin/otherprog"), b"#!/bin/sh\necho other\n");
    write(&sys.tree.join("usr/etc/other.conf"), b"other\n");
    let other = sys.commit("9");
    let sysroot = format!("--sysroot={}", sys.sysroot.display());
    ostree(&["admin", "os-init", &sysroot, "other"]);
    ostree(&["admin", "deploy", "--retain", &sysroot, "--os=other", &other]);
    let out = sys.run(&format!(
        r#"
        L status --json > $OUT/status.json
        L status > $OUT/status.txt
        L apply --json > $OUT/apply.json
        L apply > $OUT/apply.txt
        test ! -e $R/usr/bin/otherprog
        test ! -e $R/etc/other.conf
        L apply --target {other} --json > $OUT/target.json
        test -e $R/usr/bin/otherprog
        L status --json > $OUT/status-live.json
        "#
    ));
    ok(&out);
    let st = read_json(&sys.out.join("status.json"));
    common::schema::assert_valid(&common::schema::validator("status"), "status.json", &st);
    assert_eq!(st["pending"], serde_json::Value::Null, "{st}");
    assert_eq!(st["next_boot_elsewhere"]["checksum"], other.as_str());
    assert!(st["next_boot_elsewhere"]["deployment"].as_str().unwrap().starts_with("other "), "{st}");
    assert_eq!(st["strategy"]["needs"], "reboot");
    let why = st["strategy"]["reboot_for"][0].as_str().unwrap();
    assert!(why.contains("another stateroot (other)"), "{why}");
    let text = std::fs::read_to_string(sys.out.join("status.txt")).unwrap();
    assert!(text.contains("Pending:     none\n"), "{text}");
    assert!(text.contains(&format!("Next boot:   {}", &other[..12])), "{text}");
    assert!(text.contains("another stateroot: not applied live"), "{text}");
    assert!(text.contains("reboot for the next boot starts another stateroot (other)"), "{text}");
    let apply = read_json(&sys.out.join("apply.json"));
    assert_eq!(apply["changed"], false);
    assert_eq!(apply["kind"], "no_pending");
    assert!(apply["reason"].as_str().unwrap().contains("no pending deployment of the booted stateroot"), "{apply}");
    let text = std::fs::read_to_string(sys.out.join("apply.txt")).unwrap();
    assert!(text.contains("no pending deployment of the booted stateroot"), "{text}");
    let target = read_json(&sys.out.join("target.json"));
    assert_eq!(target["state"]["state"], "live");
    assert_eq!(target["to"], other.as_str());
    let live = read_json(&sys.out.join("status-live.json"));
    assert_eq!(live["live"]["checksum"], other.as_str());
    assert_eq!(live["booted"]["checksum"], sys.booted.as_str());
}
