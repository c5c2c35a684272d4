//! Crash safety: kill apply-tree (SIGKILL) right after its Nth mutation, for every
//! N, then run it again: the tree must always end up exactly as the target commit.
//! Needs the `fault-injection` feature (scripts/test enables it).
#![cfg(feature = "fault-injection")]

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

fn sweep(mode: &str, from: &str, to: &str) {
    let r = interop_repo(mode);
    let d = r.dir.path();
    let base = d.join("base");
    let want = d.join("want");
    checkout(&r.repo, from, None, &base, false);
    checkout(&r.repo, to, None, &want, false);

    let probe = d.join("probe");
    copy_tree(&base, &probe);
    let out = apply_tree(&r.repo, from, to, &probe, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = v["mutations"].as_u64().unwrap();
    assert!(total > 50, "too few mutations to be a meaningful sweep: {total}");

    for n in 1..=total {
        let t = d.join(format!("t{n}"));
        copy_tree(&base, &t);
        let killed = Command::new(env!("CARGO_BIN_EXE_livefs"))
            .args(["apply-tree", "--repo", r.repo.to_str().unwrap(), "--from", from, "--to", to])
            .arg(&t)
            .env("LIVEFS_FAULT_AFTER", n.to_string())
            .output()
            .unwrap();
        assert_eq!(killed.status.signal(), Some(9), "run {n}/{total} was not killed: {}", stderr(&killed));
        let out = apply_tree(&r.repo, from, to, &t, &[]);
        assert!(out.status.success(), "rerun after a kill at {n}/{total} failed: {}", stderr(&out));
        assert_same_tree(&t, &want);
        std::fs::remove_dir_all(&t).unwrap();
    }
}

#[test]
fn killed_at_every_mutation_then_resumed_archive_a_to_b() {
    sweep("archive", "tree-a", "tree-b");
}

#[test]
fn killed_at_every_mutation_then_resumed_bare_b_to_a() {
    sweep("bare", "tree-b", "tree-a");
}
