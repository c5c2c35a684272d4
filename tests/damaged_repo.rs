//! When something is already broken, the commands an admin reaches for still
//! answer: the pending deployment's commit loses a file object (an interrupted
//! pull, a bad sector), has a corrupt one, is missing altogether, or is partial.
//! Each command answers as much as it can: `status` shows everything else and
//! names what it could not read (the strategy cannot judge the update, and
//! why); `apply`, its dry run, `auto` and `diff` fail in one line naming the
//! object, changing nothing; `rollback` and `reset` work whatever the pending
//! deployment's state.

mod common;

use std::path::{Path, PathBuf};

use common::schema::{assert_valid, validator};
use common::system::{ok, read_json, TestSystem};
use common::*;

/// Where a loose object of `repo` is.
fn object(repo: &Path, checksum: &str, ext: &str) -> PathBuf {
    repo.join("objects").join(&checksum[..2]).join(format!("{}.{ext}", &checksum[2..]))
}

/// The content object of a file in a commit (`ostree ls -C`).
fn file_object(sys: &TestSystem, rev: &str, path: &str) -> PathBuf {
    object(&sys.repo, &ls_checksum(&sys.repo, rev, path), "file")
}

/// The dirtree object of a directory in a commit.
fn dirtree_object(sys: &TestSystem, rev: &str, path: &str) -> PathBuf {
    object(&sys.repo, &ls_checksum(&sys.repo, rev, path), "dirtree")
}

/// How the repository is damaged, and the object an error must name.
struct Damage {
    name: &'static str,
    /// The object file taken away (renamed) or rewritten.
    path: PathBuf,
    corrupt: bool,
    partial: bool,
    /// What an error names.
    names: String,
}

#[test]
fn every_command_answers_as_much_as_it_can_from_a_damaged_repository() {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/share/healthy/data"), b"v1.5\n");
    let v15 = sys.commit("1.5");
    // Kept from the prune `ostree admin deploy` makes.
    ostree(&["refs", &format!("--repo={}", sys.repo.display()), "--create=test/v15", &v15]);
    write(&sys.tree.join("usr/bin/newprog"), b"#!/bin/sh\necho new\n");
    write(&sys.tree.join("usr/share/newpkg/sub/data"), b"new\n");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let file = file_object(&sys, &v2, "/usr/bin/newprog");
    let dirtree = dirtree_object(&sys, &v2, "/usr/share/newpkg");
    let commit = object(&sys.repo, &v2, "commit");
    let short = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
    let named = |p: &Path| {
        let dir = p.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        format!("{dir}{}", short(p))
    };
    let damages = [
        Damage { name: "missing-file", names: named(&file), path: file.clone(), corrupt: false, partial: false },
        Damage { name: "corrupt-dirtree", names: named(&dirtree), path: dirtree, corrupt: true, partial: false },
        Damage { name: "missing-commit", names: v2.clone(), path: commit, corrupt: false, partial: false },
        Damage { name: "partial", names: named(&file), path: file, corrupt: false, partial: true },
    ];
    for d in &damages {
        let saved = sys.out.join(format!("{}.saved", d.name));
        let partial = sys.repo.join("state").join(format!("{v2}.commitpartial"));
        let (obj, saved_s, partial_s) = (d.path.display(), saved.display(), partial.display());
        let mut damage = format!("cp -a {obj} {saved_s}\n");
        damage += &match d.corrupt {
            true => format!("chmod 644 {obj}; printf 'not a dirtree' > {obj}\n"),
            false => format!("rm {obj}\n"),
        };
        if d.partial {
            damage += &format!("mkdir -p $(dirname {partial_s}); : > {partial_s}\n");
        }
        let repair = format!("rm -f {obj} {partial_s}; cp -a {saved_s} {obj}");
        let k = d.name;
        // A live commit first: the way back and the reset must not need the pending one.
        let out = sys.run(&format!(
            r#"
            L apply --target {v15} > /dev/null
            {damage}
            run() {{ local name=$1; shift; set +e; "$@" > $OUT/{k}-$name.out 2> $OUT/{k}-$name.err; echo $? > $OUT/{k}-$name.rc; set -e; }}
            run status L status
            run status-json L status --json
            run apply L apply --allow-replacement
            run apply-json L apply --allow-replacement --json
            run apply-dry L apply --dry-run
            run auto L auto --json
            run diff L diff $BOOTED {v2}
            run status-after L status --json
            run rollback L rollback --json
            run rollback-again L rollback --json
            run reset L reset --json
            run status-end L status --json
            {repair}
            "#
        ));
        ok(&out);
        sys.reboot();
        let text = |step: &str, ext: &str| std::fs::read_to_string(sys.out.join(format!("{k}-{step}.{ext}"))).unwrap();
        let rc = |step: &str| text(step, "rc").trim().to_string();
        let json = |step: &str| read_json(&sys.out.join(format!("{k}-{step}.out")));
        // status: exit 0, everything it can read, and what it cannot, named.
        assert_eq!(rc("status"), "0", "{k}: status failed: {}", text("status", "err"));
        assert_eq!(rc("status-json"), "0", "{k}");
        let st = json("status-json");
        assert_valid(&validator("status"), &format!("{k}-status"), &st);
        assert_eq!(st["booted"]["checksum"], sys.booted.as_str(), "{k}");
        assert_eq!(st["state"], serde_json::json!({"state": "live", "commit": v15}), "{k}");
        assert_eq!(st["pending"]["checksum"], v2.as_str(), "{k}");
        assert_eq!(st["way_back"]["to"]["checksum"], sys.booted.as_str(), "{k}");
        assert_eq!(st["strategy"], serde_json::Value::Null, "{k}");
        let why = st["unreadable"]["strategy"].as_str().unwrap_or_else(|| panic!("{k}: {st:#}"));
        assert!(why.contains(&d.names), "{k}: {why}");
        let status_text = text("status", "out");
        assert!(status_text.contains("Strategy:    cannot judge the pending deployment: "), "{k}:\n{status_text}");
        assert!(status_text.contains(&format!("Live:        {}", &v15[..12])), "{k}:\n{status_text}");
        if d.name == "missing-commit" {
            assert!(
                st["pending"]["problem"].as_str().unwrap().contains("cannot read the commit"),
                "{k}: {}",
                st["pending"]
            );
        }
        if d.partial {
            assert!(st["pending"]["problem"].as_str().unwrap().contains("partial"), "{k}: {}", st["pending"]);
        }
        // apply, its dry run, auto, diff: one line naming the object, nothing changed.
        // diff compares checksums only: a missing file object does not stop it
        // (nor `ostree diff`); a missing commit or corrupt dirtree does.
        let diff_reads_it = matches!(k, "corrupt-dirtree" | "missing-commit");
        if !diff_reads_it {
            assert_eq!(rc("diff"), "0", "{k}: {}", text("diff", "err"));
            assert!(text("diff", "out").contains("A    /usr/bin/newprog"), "{k}: {}", text("diff", "out"));
        }
        let steps: &[&str] = if diff_reads_it { &["apply", "apply-dry", "diff"] } else { &["apply", "apply-dry"] };
        for step in steps.iter().copied() {
            assert_eq!(rc(step), "1", "{k}: {step}: {}", text(step, "err"));
            let err = text(step, "err");
            assert_eq!(err.lines().filter(|l| l.starts_with("livefs: error:")).count(), 1, "{k}: {step}: {err}");
            assert!(err.contains(&d.names), "{k}: {step} does not name {}: {err}", d.names);
        }
        assert_eq!(json("apply-json")["kind"], "bad_repository", "{k}");
        assert_eq!(rc("auto"), "1", "{k}: {}", text("auto", "err"));
        let after = json("status-after");
        assert_eq!(
            after["state"],
            serde_json::json!({"state": "live", "commit": v15}),
            "{k}: the failures changed the state"
        );
        assert_eq!(after["auto"]["ending"], "failed", "{k}");
        assert!(after["auto"]["reason"].as_str().unwrap().contains(&d.names), "{k}: {}", after["auto"]);
        // The way back and the reset work whatever the pending deployment's state.
        assert_eq!(rc("rollback"), "0", "{k}: {}", text("rollback", "err"));
        assert_eq!(json("rollback")["outcome"]["to"], sys.booted.as_str(), "{k}");
        assert_eq!(json("rollback-again")["kind"], "no_rollback", "{k}");
        assert_eq!(rc("reset"), "0", "{k}: {}", text("reset", "err"));
        assert_eq!(json("status-end")["state"]["state"], "booted", "{k}");
    }
}

/// A configuration value far too long is quoted in part in the warning.
#[test]
fn a_huge_bad_value_is_quoted_in_part() {
    let (sys, _) = TestSystem::with_additions();
    let out = sys.run(
        r#"
        mkdir -p $R/etc/livefs
        printf '[Auto]\nMaxStrategy=%s\n' "$(head -c 1048576 /dev/zero | tr '\0' x)" > $R/etc/livefs/auto.conf
        # (exit status 3 here: Restart=yes, and systemd does not run this root)
        L auto --dry-run > /dev/null 2> $OUT/auto.err || true
        "#,
    );
    ok(&out);
    let err = std::fs::read_to_string(sys.out.join("auto.err")).unwrap();
    let line = err.lines().find(|l| l.contains("MaxStrategy=")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.len() < 300, "{} bytes of warning", line.len());
    assert!(line.contains("… (1048576 bytes) is not live, soft-reboot or reboot"), "{line}");
}
