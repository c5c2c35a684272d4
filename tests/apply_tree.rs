//! `livefs apply-tree`: the result equals `ostree checkout` of the target commit,
//! in every repository mode and in both directions; bad input changes nothing.

mod common;

use common::*;

fn fidelity(mode: &str) {
    let r = interop_repo(mode);
    let d = r.dir.path();
    for (from, to) in [("tree-a", "tree-b"), ("tree-b", "tree-a")] {
        let target = d.join(format!("live-{from}"));
        let want = d.join(format!("want-{to}"));
        checkout(&r.repo, from, None, &target, false);
        checkout(&r.repo, to, None, &want, false);
        let out = apply_tree(&r.repo, from, to, &target, &[]);
        assert!(out.status.success(), "{mode} {from}->{to}: {}", stderr(&out));
        assert_same_tree(&target, &want);
        // Applying again is a no-op.
        let out = apply_tree(&r.repo, from, to, &target, &["--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["mutations"], 0, "a second run changed something");
        assert_same_tree(&target, &want);
    }
}

#[test]
fn fidelity_bare() {
    fidelity("bare");
}

#[test]
fn fidelity_bare_user() {
    fidelity("bare-user");
}

#[test]
fn fidelity_bare_user_only() {
    fidelity("bare-user-only");
}

#[test]
fn fidelity_archive() {
    fidelity("archive");
}

/// On a hardlinked checkout of a bare repository (what a deployment is), files are
/// replaced, never written into: the repository's objects stay intact. Files
/// livefs writes get mtime 0, as ostree's own checkouts have.
#[test]
fn hardlinked_checkout_keeps_repository_intact() {
    let r = interop_repo("bare");
    let d = r.dir.path();
    let target = d.join("live");
    checkout(&r.repo, "tree-a", None, &target, true);
    let before = nonzero_mtimes(&target);
    let out = apply_tree(&r.repo, "tree-a", "tree-b", &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = d.join("want");
    checkout(&r.repo, "tree-b", None, &want, false);
    assert_same_tree(&target, &want);
    // ostree itself gives symlinks and empty files the current time; livefs gives
    // everything it writes mtime 0.
    let after = nonzero_mtimes(&target);
    assert!(after.iter().all(|p| before.contains(p)), "livefs wrote files with an mtime: {after:?}");
    for written in ["usr/bin/app", "usr/lib/empty2", "usr/lib/new-rel", "usr/share/will-be-link"] {
        assert!(!after.contains(&target.join(written)), "{written} has an mtime");
    }
    ostree(&["fsck", &format!("--repo={}", r.repo.display())]);
}

#[test]
fn subpath_usr() {
    let r = interop_repo("archive");
    let d = r.dir.path();
    let target = d.join("usr");
    let want = d.join("want-usr");
    checkout(&r.repo, "tree-a", Some("/usr"), &target, false);
    checkout(&r.repo, "tree-b", Some("/usr"), &want, false);
    let out = apply_tree(&r.repo, "tree-a", "tree-b", &target, &["--subpath", "/usr", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&target, &want);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths = |k: &str| -> Vec<String> {
        v[k].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
    };
    assert!(paths("added").contains(&"/share/added-tree/x/y/z".to_string()));
    assert!(paths("replaced").contains(&"/bin/app".to_string()));
    assert!(paths("replaced").contains(&"/share/modedir".to_string()));
    assert!(paths("removed").contains(&"/share/removed-tree".to_string()));
    assert!(!paths("replaced").iter().any(|p| p.starts_with("/etc")), "outside the subpath");
    assert!(v["bytes_written"].as_u64().unwrap() > (4 << 20));
    assert_eq!(v["counts"]["removed_dirs"], 1);
    let missing = apply_tree(&r.repo, "tree-a", "tree-b", &target, &["--subpath", "/nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("/nope is not a directory in the commit"), "{}", stderr(&missing));
}

#[test]
fn dry_run_changes_nothing() {
    let r = interop_repo("bare-user");
    let target = r.dir.path().join("live");
    checkout(&r.repo, "tree-a", None, &target, false);
    let before = snapshot(&target);
    let out = apply_tree(&r.repo, "tree-a", "tree-b", &target, &["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("mkdir    /usr/share/added-tree\n"), "{text}");
    assert!(text.contains("retype   /usr/share/was-dir\n"), "{text}");
    assert!(text.contains("remove   /usr/share/removed-tree\n"), "{text}");
    assert!(text.contains("chmeta   /usr/share/modedir\n"), "{text}");
    assert!(text.contains("dry run: nothing changed"), "{text}");
    // Phases: every mkdir before every add, every remove last.
    let verbs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| ["mkdir", "add", "replace", "retype", "chmeta", "remove"].contains(v))
        .collect();
    let last_mkdir = verbs.iter().rposition(|v| *v == "mkdir").unwrap();
    let first_add = verbs.iter().position(|v| *v == "add").unwrap();
    let first_remove = verbs.iter().position(|v| *v == "remove").unwrap();
    assert!(last_mkdir < first_add && verbs[first_remove..].iter().all(|v| *v == "remove"));
    assert_eq!(snapshot(&target), before);
}

/// A locally changed path is refused, with its name, unless --force.
#[test]
fn drift_is_refused_unless_forced() {
    let r = interop_repo("archive");
    let d = r.dir.path();
    let target = d.join("live");
    checkout(&r.repo, "tree-a", None, &target, false);
    write(&target.join("usr/share/doc/readme"), b"edited by the admin");
    chmod(&target.join("usr/share/removed-file"), 0o600);
    let before = snapshot(&target);
    let out = apply_tree(&r.repo, "tree-a", "tree-b", &target, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("2 path(s) differ from what the source commit has (use --force to overwrite)"), "{err}");
    assert!(err.contains("/usr/share/doc/readme (content or metadata differs)"), "{err}");
    assert!(err.contains("/usr/share/removed-file"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(snapshot(&target), before, "a refused apply changed the tree");
    let out = apply_tree(&r.repo, "tree-a", "tree-b", &target, &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = d.join("want");
    checkout(&r.repo, "tree-b", None, &want, false);
    assert_same_tree(&target, &want);
}

/// A symlink planted where A has a directory is never followed: refused, even
/// with --force, and nothing is written anywhere.
#[test]
fn symlink_where_a_directory_is_expected() {
    let r = interop_repo("bare-user");
    let d = r.dir.path();
    let target = d.join("live");
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    checkout(&r.repo, "tree-a", None, &target, false);
    let doc = target.join("usr/share/doc");
    copy_tree(&doc, &elsewhere.join("doc"));
    rm(&doc);
    link(&doc, elsewhere.join("doc").to_str().unwrap());
    let before = (snapshot(&target), snapshot(&elsewhere));
    for extra in [&[][..], &["--force"][..]] {
        let out = apply_tree(&r.repo, "tree-a", "tree-b", &target, extra);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("cannot be updated safely"), "{err}");
        assert!(
            err.contains("/usr/share/doc/readme (a symlink or non-directory where a directory is expected)"),
            "{err}"
        );
        assert_eq!((snapshot(&target), snapshot(&elsewhere)), before);
    }
}

/// A file object whose content does not match its checksum aborts before it is
/// renamed into place, leaving no temporary file behind.
#[test]
fn corrupt_content_is_never_renamed_into_place() {
    let dir = scratch();
    let tree = dir.path().join("tree");
    write(&tree.join("keep"), b"keep");
    let repo = init_repo(dir.path(), "bare-user");
    commit(&repo, "main", &tree, "one");
    write(&tree.join("keep"), b"changed content");
    commit(&repo, "main", &tree, "two");
    let csum = ls_checksum(&repo, "main", "/keep");
    let obj = repo.join("objects").join(&csum[..2]).join(format!("{}.file", &csum[2..]));
    let xattr = livefs::xattrs::of_path(&obj).unwrap();
    std::fs::write(&obj, b"CHANGED content").unwrap();
    for (k, v) in xattr {
        setxattr(&obj, std::str::from_utf8(&k).unwrap(), &v);
    }
    let target = dir.path().join("live");
    checkout(&repo, "main^", None, &target, false);
    let before = snapshot(&target);
    let out = apply_tree(&repo, "main^", "main", &target, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("file object {csum} does not match its checksum")), "{err}");
    assert_eq!(snapshot(&target), before);
}
