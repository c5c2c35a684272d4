//! The JSON contract: real outputs of `status`, `apply`, `reset` (with and without
//! `--dry-run`) and `diff`, in every state they can be printed from, validate
//! against the schemas in docs/schema/; documents that drift from them do not.

mod common;

use common::schema::{assert_valid, validator};
use common::system::{ok, read_json, TestSystem};
use common::*;
use serde_json::Value;

/// Validates every `*.json` of `sys.out` whose name starts with `prefix`; returns how many.
fn validate_outputs(sys: &TestSystem, v: &jsonschema::Validator, prefix: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(&sys.out).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.starts_with(prefix) && name.ends_with(".json") {
            assert_valid(v, &name, &read_json(&sys.out.join(&name)));
            n += 1;
        }
    }
    n
}

/// A system booted at v1 with v2 deployed: a file replaced, one added, /etc changed.
fn system() -> (TestSystem, String) {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    write(&sys.tree.join("usr/share/newpkg/data"), b"data\n");
    write(&sys.tree.join("usr/etc/motd"), b"motd v2\n");
    write(&sys.tree.join("usr/etc/newpkg.conf"), b"x=1\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    (sys, v2)
}

#[test]
fn status_apply_and_reset_outputs_follow_their_schemas() {
    let (sys, _) = system();
    let out = sys.run(
        r#"
        L status --json > $OUT/status-booted.json
        L apply --json > $OUT/apply-refused.json && exit 1
        # systemd does not run this (simulated) root: --restart refuses before anything changes.
        L apply --allow-replacement --restart --json > $OUT/apply-restart-nosystemd.json && exit 1
        L restart --json > $OUT/restart-nosystemd.json && exit 1
        L status --json > $OUT/status-after-nosystemd.json
        L apply --dry-run --allow-replacement --json > $OUT/apply-dry.json
        interrupt_apply --allow-replacement
        L status --json > $OUT/status-interrupted.json
        if L restart --json > $OUT/restart-interrupted.json; then exit 1; else echo $? > $OUT/restart-interrupted.rc; fi
        L apply --allow-replacement --json > $OUT/apply-resumed.json
        L status --json > $OUT/status-live.json
        L apply --allow-replacement --json > $OUT/apply-again.json
        L apply --json --target no-such-ref > $OUT/apply-error.json && exit 1
        L reset --dry-run --json > $OUT/apply-reset-dry.json
        L reset --json > $OUT/apply-reset.json
        L reset --json > $OUT/apply-reset-again.json
        L status --json > $OUT/status-reset.json
        true
        "#,
    );
    ok(&out);
    let status = validator("status");
    let apply = validator("apply");
    assert_eq!(validate_outputs(&sys, &status, "status-"), 5);
    assert_eq!(validate_outputs(&sys, &apply, "apply-"), 9);
    assert_eq!(validate_outputs(&sys, &validator("restart"), "restart-"), 2);
    // The documents are what their names say (the schema's branches were taken).
    let doc = |n: &str| read_json(&sys.out.join(n));
    assert_eq!(doc("status-interrupted.json")["state"]["state"], "applying");
    // An interrupted transition is finished before units are acted on: refused by policy.
    let rc = std::fs::read_to_string(sys.out.join("restart-interrupted.rc")).unwrap();
    assert_eq!(rc.trim(), "3");
    assert!(doc("restart-interrupted.json")["error"].as_str().unwrap().contains("finish it"));
    assert_eq!(doc("restart-interrupted.json")["kind"], "interrupted");
    assert_eq!(doc("status-live.json")["usr"]["kind"], "livefs");
    assert_eq!(doc("apply-refused.json")["kind"], "refused_replacement");
    for n in ["apply-restart-nosystemd.json", "restart-nosystemd.json"] {
        assert_eq!(doc(n)["kind"], "unsupported_host", "{n}");
        assert!(doc(n)["error"].as_str().unwrap().contains("systemd does not run"), "{n}");
    }
    assert_eq!(doc("status-after-nosystemd.json")["state"], doc("status-booted.json")["state"]);
    assert_eq!(doc("apply-resumed.json")["resumed"], true);
    assert_eq!(doc("apply-error.json")["kind"], "bad_revision");
    assert_eq!(doc("apply-reset.json")["etc_restored"].as_array().map(Vec::len), Some(2));

    // With nothing pending, apply prints the no-op document.
    sys.reboot();
    let out = std::process::Command::new("ostree")
        .args(["admin", "undeploy", &format!("--sysroot={}", sys.sysroot.display()), "0"])
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(&sys.run("L apply --json > $OUT/apply-nothing.json; L status --json > $OUT/status-nothing.json"));
    assert_eq!(doc("apply-nothing.json")["changed"], false);
    assert_eq!(doc("apply-nothing.json")["kind"], "no_pending");
    assert_eq!(doc("status-nothing.json")["pending"], Value::Null);
    assert_eq!(validate_outputs(&sys, &apply, "apply-nothing"), 1);
    assert_eq!(validate_outputs(&sys, &status, "status-nothing"), 1);
}

#[test]
fn diff_outputs_follow_the_schema() {
    let (sys, v2) = system();
    let repo = sys.repo.to_str().unwrap();
    let diff = validator("diff");
    for (from, to) in [(sys.booted.as_str(), v2.as_str()), (&v2, &sys.booted), (&v2, &v2)] {
        let out = livefs(&["diff", "--repo", repo, "--json", from, to]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_valid(&diff, "diff", &serde_json::from_slice(&out.stdout).unwrap());
    }
    let out = livefs(&["diff", "--repo", repo, "--json", "no-such-ref", &v2]);
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["kind"], "bad_revision");
    assert_valid(&diff, "diff error", &err);
}

/// The schemas are strict: a document with a field they do not know, without one
/// they require, or of the wrong type fails, so an output that drifts fails the
/// tests above instead of passing unnoticed.
#[test]
fn drifted_documents_fail() {
    let (sys, v2) = system();
    ok(&sys.run("L status --json > $OUT/status.json; L apply --allow-replacement --json > $OUT/apply.json"));
    let status = validator("status");
    let apply = validator("apply");
    let good = read_json(&sys.out.join("status.json"));
    assert!(status.is_valid(&good));
    let mut extra = good.clone();
    extra["new_field"] = Value::Bool(true);
    assert!(!status.is_valid(&extra));
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("strategy");
    assert!(!status.is_valid(&missing));
    let mut bad_state = good.clone();
    bad_state["state"] = serde_json::json!({"state": "live"});
    assert!(!status.is_valid(&bad_state), "live without its commit");

    let good = read_json(&sys.out.join("apply.json"));
    assert!(apply.is_valid(&good));
    assert_eq!(good["to"], v2.as_str());
    let mut bad_checksum = good.clone();
    bad_checksum["to"] = Value::String(v2[..12].to_string());
    assert!(!apply.is_valid(&bad_checksum));
    let mut dry_but_changed = good.clone();
    dry_but_changed["dry_run"] = Value::Bool(true);
    assert!(!apply.is_valid(&dry_but_changed), "a dry run never changes the system");
    assert!(!apply.is_valid(&serde_json::json!({"error": "x", "kind": "fatal"})));
}

/// The renderers' fixtures (`src/cli/fixtures/`, some edited by hand to reach
/// every branch) are documents the schemas accept: they cannot drift from what
/// livefs prints.
#[test]
fn render_fixtures_follow_their_schemas() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli/fixtures");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".json") else { continue };
        let schema = match stem.split('-').next().unwrap() {
            "status" => "status",
            "apply" | "applied" | "reset" => "apply",
            "rollback" => "rollback",
            "restart" => "restart",
            "auto" => "auto",
            other => panic!("a fixture {name} of no known command {other}"),
        };
        assert_valid(&validator(schema), &name, &read_json(&dir.join(&name)));
        n += 1;
    }
    assert!(n >= 14, "only {n} fixtures");
}

/// The schemas as shipped resolve their references with a standard validator
/// (check-jsonschema, from PyPI): real outputs of every command pass it, and a
/// drifted one fails it.
#[test]
fn a_standard_validator_resolves_the_schemas() {
    let (sys, v2) = system();
    let out = sys.run(
        r#"
        L status --json > $OUT/status.json
        L auto --dry-run --json > $OUT/auto-dry.json || true
        L apply --dry-run --allow-replacement --json > $OUT/apply-dry.json
        L apply --allow-replacement --json > $OUT/apply.json
        L status --json > $OUT/status-live.json
        L restart --json > $OUT/restart-error.json || true
        L confirm --json > $OUT/confirm.json
        L rollback --dry-run --json > $OUT/rollback-dry.json
        L rollback --json > $OUT/rollback.json
        L rollback --json > $OUT/rollback-nothing.json
        L apply --allow-replacement --check false --json > $OUT/apply-rolled-back.json || true
        L reset --json > $OUT/reset.json
        "#,
    );
    ok(&out);
    let repo = sys.repo.to_str().unwrap();
    let diff = livefs(&["diff", "--repo", repo, "--json", &sys.booted, &v2]);
    std::fs::write(sys.out.join("diff.json"), &diff.stdout).unwrap();
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema");
    let check = |schema: &str, files: &[&str]| {
        std::process::Command::new(venv_bin("check-jsonschema"))
            .arg("--schemafile")
            .arg(schemas.join(format!("{schema}.schema.json")))
            .args(files.iter().map(|f| sys.out.join(f)))
            .output()
            .unwrap()
    };
    for (schema, files) in [
        ("status", &["status.json", "status-live.json"][..]),
        ("apply", &["apply-dry.json", "apply.json", "apply-rolled-back.json", "reset.json"][..]),
        ("rollback", &["rollback-dry.json", "rollback.json", "rollback-nothing.json"][..]),
        ("confirm", &["confirm.json"][..]),
        ("restart", &["restart-error.json"][..]),
        ("diff", &["diff.json"][..]),
        ("auto", &["auto-dry.json"][..]),
    ] {
        let out = check(schema, files);
        assert!(out.status.success(), "{schema}: {}{}", stdout(&out), stderr(&out));
    }
    assert_eq!(read_json(&sys.out.join("apply-rolled-back.json"))["kind"], "rolled_back");
    assert_eq!(read_json(&sys.out.join("rollback-nothing.json"))["kind"], "no_rollback");
    assert_eq!(read_json(&sys.out.join("confirm.json"))["changed"], false);
    let mut drifted = read_json(&sys.out.join("apply.json"));
    drifted["strategy"]["needs"] = Value::String("someday".into());
    std::fs::write(sys.out.join("drifted.json"), drifted.to_string()).unwrap();
    let out = check("apply", &["drifted.json"]);
    assert!(!out.status.success(), "a drifted document passed: {}", stdout(&out));
}
