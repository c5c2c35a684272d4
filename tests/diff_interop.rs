//! `livefs diff` against the real `ostree diff`, line for line, in every repo mode.

mod common;

use common::*;

fn assert_same_as_ostree(repo: &std::path::Path, from: &str, to: &str) {
    let r = format!("--repo={}", repo.display());
    let want = ostree(&["diff", &r, from, to]);
    let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), from, to]);
    assert!(out.status.success(), "livefs diff failed: {}", stderr(&out));
    assert_eq!(stdout(&out), want, "livefs diff {from} {to} differs from ostree diff");
}

fn interop(mode: &str) {
    let r = interop_repo(mode);
    let diff = ostree(&["diff", &format!("--repo={}", r.repo.display()), "tree-a", "tree-b"]);
    // The test set must really exercise every kind of change.
    for line in [
        "M    /usr/share/will-be-dir",
        "M    /usr/share/was-dir",
        "M    /usr/share/will-be-link",
        "D    /usr/share/removed-tree",
        "A    /usr/share/added-tree/x/y/z",
    ] {
        assert!(diff.contains(line), "{mode}: ostree diff lacks {line:?}:\n{diff}");
    }
    assert_same_as_ostree(&r.repo, "tree-a", "tree-b");
    assert_same_as_ostree(&r.repo, "tree-b", "tree-a");
    assert_same_as_ostree(&r.repo, &r.a, &r.b);
    assert_same_as_ostree(&r.repo, "tree-a", "tree-a");
}

#[test]
fn interop_bare() {
    interop("bare");
}

#[test]
fn interop_bare_user() {
    interop("bare-user");
}

#[test]
fn interop_bare_user_only() {
    interop("bare-user-only");
}

#[test]
fn interop_archive() {
    interop("archive");
}

/// `ostree diff` misses a change of the root directory's own metadata; livefs
/// reports it as `M    /` before the rest, which matches ostree's output.
#[test]
fn root_metadata_change_is_reported() {
    for mode in MODES {
        let dir = scratch();
        let tree = dir.path().join("tree");
        write(&tree.join("f"), b"1");
        chmod(&tree, 0o755);
        let repo = init_repo(dir.path(), mode);
        commit(&repo, "m", &tree, "one");
        chmod(&tree, 0o700);
        write(&tree.join("g"), b"2");
        commit(&repo, "m", &tree, "two");
        let ostree_out = ostree(&["diff", &format!("--repo={}", repo.display()), "m^", "m"]);
        assert!(!ostree_out.contains("M    /\n"), "ostree now reports the root; update the README");
        let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), "m^", "m"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("M    /\n{ostree_out}"), "mode {mode}");
    }
}

#[test]
fn json_and_stat_report_types_counts_and_bytes() {
    let dir = scratch();
    let tree = dir.path().join("tree");
    write(&tree.join("keep"), b"same");
    write(&tree.join("change"), &[1u8; 100]);
    write(&tree.join("gone"), b"x");
    let repo = init_repo(dir.path(), "archive");
    commit(&repo, "m", &tree, "one");
    write(&tree.join("change"), &[2u8; 500]);
    rm(&tree.join("gone"));
    write(&tree.join("sub/new"), &[3u8; 1000]);
    link(&tree.join("sub/link"), "new");
    commit(&repo, "m", &tree, "two");

    let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), "--json", "m^", "m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes_to_write"], 1500);
    assert_eq!(v["modified"][0]["path"], "/change");
    assert_eq!(v["removed"][0]["path"], "/gone");
    assert_eq!(v["removed"][0]["type"], "file");
    let added: Vec<(String, String)> = v["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().into(), e["type"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        added,
        [("/sub", "directory"), ("/sub/link", "symlink"), ("/sub/new", "file")]
            .map(|(p, t)| (p.to_string(), t.to_string()))
    );
    assert_eq!(v["summary"]["added_files"], 2);
    assert_eq!(v["summary"]["added_dirs"], 1);
    assert_eq!(v["from"].as_str().unwrap().len(), 64);

    let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), "--stat", "m^", "m"]);
    assert_eq!(stdout(&out), "1 modified, 1 removed, 3 added (4 files, 1 directories); 1.5 KiB to write\n");
}

/// Revisions: full checksum, unique prefix, local ref, remote ref, mirror ref,
/// `^` and `^^`, each checked against `ostree rev-parse`.
#[test]
fn revisions_resolve_like_ostree() {
    let dir = scratch();
    let tree = dir.path().join("tree");
    let repo = init_repo(dir.path(), "bare");
    let mut commits = Vec::new();
    for i in 0..3 {
        write(&tree.join("f"), format!("{i}").as_bytes());
        commits.push(commit(&repo, "main", &tree, &format!("c{i}")));
    }
    let c = |s: &str| s.to_string();
    write(&repo.join("refs/remotes/origin/os/stable"), format!("{}\n", commits[1]).as_bytes());
    write(&repo.join("refs/mirrors/mirror/os/old"), format!("{}\n", commits[0]).as_bytes());
    let r = format!("--repo={}", repo.display());
    for (rev, want) in [
        (c("main"), &commits[2]),
        (c("main^"), &commits[1]),
        (c("main^^"), &commits[0]),
        (commits[2][..10].to_string(), &commits[2]),
        (format!("{}^", commits[2]), &commits[1]),
        (c("origin:os/stable"), &commits[1]),
        (c("origin/os/stable"), &commits[1]),
        (c("mirror/os/old"), &commits[0]),
    ] {
        let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), "--json", &rev, &rev]);
        assert!(out.status.success(), "{rev}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["from"].as_str().unwrap(), want, "{rev}");
        if !rev.starts_with("mirror/") {
            assert_eq!(ostree(&["rev-parse", &r, &rev]).trim(), want, "ostree disagrees on {rev}");
        }
    }
}
