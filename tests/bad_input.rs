//! Bad repositories and revisions: a non-zero exit, one line naming what is wrong,
//! never a panic.

mod common;

use common::craft::{self, Part};
use common::*;
use std::path::Path;
use std::process::Command;

/// Runs `livefs diff` and checks it failed cleanly with one line containing `want`.
fn diff_fails(repo: &Path, from: &str, to: &str, want: &str) -> String {
    let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), from, to]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "expected failure, got {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("livefs: warning:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(lines[0].starts_with("livefs: error: "), "{err}");
    assert!(lines[0].contains(want), "error {:?} does not mention {want:?}", lines[0]);
    assert!(out.stdout.is_empty(), "printed output despite the error");
    err
}

/// A small bare repo with two commits; returns (dir, repo, commit A, commit B).
fn small_repo(mode: &str) -> (TempDir, std::path::PathBuf, String, String) {
    let dir = scratch();
    let tree = dir.path().join("tree");
    write(&tree.join("sub/f"), b"1");
    let repo = init_repo(dir.path(), mode);
    let a = commit(&repo, "main", &tree, "one");
    write(&tree.join("sub/f"), b"2");
    let b = commit(&repo, "main", &tree, "two");
    (dir, repo, a, b)
}

fn object_path(repo: &Path, checksum: &str, ext: &str) -> std::path::PathBuf {
    repo.join("objects").join(&checksum[..2]).join(format!("{}.{ext}", &checksum[2..]))
}

fn root_tree_of(repo: &Path, commit: &str) -> String {
    ls_checksum(repo, commit, "/")
}

#[test]
fn truncated_garbage_and_wrong_checksum_objects() {
    let (_d, repo, _a, b) = small_repo("bare");
    let commit_path = object_path(&repo, &b, "commit");
    let good = std::fs::read(&commit_path).unwrap();

    std::fs::write(&commit_path, &good[..good.len() / 2]).unwrap();
    diff_fails(&repo, "main^", "main", &format!("object {b}.commit is corrupt"));

    std::fs::write(&commit_path, b"\xff garbage \x00\x01").unwrap();
    diff_fails(&repo, "main^", "main", &format!("object {b}.commit is corrupt"));
    std::fs::write(&commit_path, &good).unwrap();

    // A dirtree replaced by another valid dirtree: the content no longer matches the name.
    let tree = root_tree_of(&repo, &b);
    let tree_a = root_tree_of(&repo, "main^");
    let other = std::fs::read(object_path(&repo, &tree_a, "dirtree")).unwrap();
    std::fs::write(object_path(&repo, &tree, "dirtree"), other).unwrap();
    diff_fails(&repo, "main^", "main", &format!("object {tree}.dirtree is corrupt"));
}

#[test]
fn missing_objects_are_named() {
    let (_d, repo, _a, b) = small_repo("archive");
    let tree = root_tree_of(&repo, &b);
    std::fs::remove_file(object_path(&repo, &tree, "dirtree")).unwrap();
    diff_fails(&repo, "main^", "main", &format!("object {tree}.dirtree is missing"));
    std::fs::remove_file(object_path(&repo, &b, "commit")).unwrap();
    diff_fails(&repo, "main^", &b, &format!("object {b}.commit is missing"));
}

#[test]
fn partial_commit_is_reported() {
    let (_d, repo, _a, b) = small_repo("bare");
    let tree = root_tree_of(&repo, &b);
    std::fs::remove_file(object_path(&repo, &tree, "dirtree")).unwrap();
    write(&repo.join(format!("state/{b}.commitpartial")), b"");
    let err = diff_fails(&repo, "main^", "main", "commit is partial");
    assert!(err.contains(&format!("livefs: warning: commit {b} ('main') is partial")), "{err}");
}

#[test]
fn bad_refs_and_prefixes() {
    let dir = scratch();
    let tree = dir.path().join("tree");
    let repo = init_repo(dir.path(), "bare");
    let mut commits = Vec::new();
    // 17 commits: two must share their first hex digit.
    for i in 0..17 {
        write(&tree.join("f"), format!("{i}").as_bytes());
        commits.push(commit(&repo, "main", &tree, &format!("c{i}")));
    }
    let (x, y) = commits
        .iter()
        .enumerate()
        .flat_map(|(i, x)| commits[i + 1..].iter().map(move |y| (x, y)))
        .find(|(x, y)| x[..1] == y[..1])
        .unwrap();
    let common_len = x.bytes().zip(y.bytes()).take_while(|(a, b)| a == b).count();
    let prefix = &x[..common_len];
    diff_fails(&repo, prefix, "main", &format!("refspec '{prefix}' is ambiguous"));
    diff_fails(&repo, "main", "nosuchref", "refspec 'nosuchref' not found");
    diff_fails(&repo, "origin:nosuch", "main", "refspec 'origin:nosuch' not found");
    diff_fails(&repo, "../../etc/passwd", "main", "invalid refspec '../../etc/passwd'");
    let first = &commits[0];
    diff_fails(&repo, &format!("{first}^"), "main", &format!("commit {first} has no parent"));
    let absent = "0".repeat(64);
    diff_fails(&repo, &absent, "main", &format!("object {absent}.commit is missing"));
    write(&repo.join("refs/heads/broken"), b"not a checksum\n");
    diff_fails(&repo, "broken", "main", "ref file");
}

#[test]
fn unsupported_repositories() {
    let (_d, repo, _a, _b) = small_repo("bare");
    let config = std::fs::read_to_string(repo.join("config")).unwrap();
    std::fs::write(repo.join("config"), config.replace("mode=bare", "mode=weird")).unwrap();
    diff_fails(&repo, "main^", "main", "unknown mode 'weird'");
    std::fs::write(repo.join("config"), format!("{config}parent=/some/where\n")).unwrap();
    diff_fails(&repo, "main^", "main", "parent repository (parent=/some/where)");
    std::fs::remove_file(repo.join("config")).unwrap();
    diff_fails(&repo, "main^", "main", "is not an OSTree repository");
    diff_fails(Path::new("/nonexistent/repo"), "a", "b", "cannot open repository /nonexistent/repo");
}

/// Crafted trees with hostile or malformed entries are refused, naming the object.
#[test]
fn hostile_and_malformed_trees() {
    let (_d, repo, _a, _b) = small_repo("archive");
    let meta = craft::store(&repo, "dirmeta", &craft::dirmeta(0, 0, 0o40755), None);
    let empty_tree = craft::store(&repo, "dirtree", &craft::dirtree(&[], &[]), None);
    let file = [0x11u8; 32];
    let base_tree = craft::store(&repo, "dirtree", &craft::dirtree(&[(b"ok", file)], &[]), None);
    let base = craft::store(&repo, "commit", &craft::commit(None, "base", base_tree, meta), None);
    craft::set_ref(&repo, "base", &base);

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (craft::dirtree(&[(b"..", file)], &[]), "invalid file name \"..\""),
        (craft::dirtree(&[(b"a/b", file)], &[]), "invalid file name \"a/b\""),
        (craft::dirtree(&[(b"", file)], &[]), "invalid file name \"\""),
        (craft::dirtree(&[], &[(b".", empty_tree, meta)]), "invalid file name \".\""),
        (craft::dirtree(&[(b"\xffbad", file)], &[]), "invalid file name"),
        (craft::dirtree(&[(b"b", file), (b"a", file)], &[]), "not sorted"),
        (craft::dirtree(&[(b"x", file)], &[(b"x", empty_tree, meta)]), "both a file and a directory"),
        (craft::dirtree(&[(b"short", [0u8; 32])], &[]).split_at(40).0.to_vec(), "malformed"),
        (craft::structure(&[Part(&craft::array(&[b"noterm".to_vec()], 1), 1, true), Part(&[], 1, true)]), "malformed"),
    ];
    for (i, (tree_bytes, want)) in cases.into_iter().enumerate() {
        let tree = craft::store(&repo, "dirtree", &tree_bytes, None);
        let c = craft::commit(Some(base), &format!("hostile {i}"), tree, meta);
        let c = craft::store(&repo, "commit", &c, None);
        craft::set_ref(&repo, "hostile", &c);
        let err = diff_fails(&repo, "base", "hostile", want);
        assert!(err.contains(&format!("{}.dirtree", craft::hex(&tree))), "case {i}: {err}");
    }

    // A dirmeta that is not a directory is refused by the reader.
    let bad_meta = craft::store(&repo, "dirmeta", &craft::dirmeta(0, 0, 0o100644), None);
    let r = livefs::repo::Repo::open(&repo).unwrap();
    let err = format!("{:#}", r.read_dirmeta(livefs::repo::Checksum::sha256(bad_meta)).unwrap_err());
    assert!(err.contains("is malformed: dirmeta mode is not a directory"), "{err}");
    let junk = craft::store(&repo, "commit", b"\x00\x01\x02", None);
    craft::set_ref(&repo, "junk", &junk);
    diff_fails(&repo, "base", "junk", &format!("object {}.commit is malformed", craft::hex(&junk)));
}

#[test]
fn bare_file_object_of_wrong_type() {
    let (_d, repo, _a, b) = small_repo("bare");
    let file = ls_checksum(&repo, &b, "/sub/f");
    let p = object_path(&repo, &file, "file");
    std::fs::remove_file(&p).unwrap();
    std::fs::create_dir(&p).unwrap();
    let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), "--stat", "main^", "main"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("object {file}.file is malformed: not a regular file or symlink")), "{err}");
    // With --json the error is JSON on stdout, with the same status.
    let out = livefs(&["diff", "--repo", repo.to_str().unwrap(), "--json", "main^", "main"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "bad_repository");
    assert!(v["error"].as_str().unwrap().contains(&format!("object {file}.file is malformed")), "{v}");
}

/// Activation flags without `--restart` would do nothing: a usage error (exit
/// status 2) before the system is even opened.
#[test]
fn activation_flags_need_restart() {
    for args in [&["apply", "--daemon-reexec"][..], &["reset", "--user-units"], &["apply", "--user-units", "--dry-run"]]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_livefs"))
            .args(["--root", "/nonexistent-livefs-root", "--sysroot", "/nonexistent-livefs-sysroot"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--daemon-reexec and --user-units need --restart"), "{args:?}: {err}");
    }
}
