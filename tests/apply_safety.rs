//! apply-tree under stress: concurrent readers, hostile trees, a full filesystem.

mod common;

use common::craft;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A reader reading a file in a loop while it is replaced back and forth never
/// sees anything but the whole old or the whole new content.
#[test]
fn concurrent_reader_never_sees_a_partial_file() {
    let dir = scratch();
    let tree = dir.path().join("tree");
    let (old, new) = (vec![b'a'; 3 << 20], vec![b'b'; (2 << 20) + 12345]);
    write(&tree.join("lib/libbig.so"), &old);
    let repo = init_repo(dir.path(), "archive");
    commit(&repo, "v1", &tree, "one");
    write(&tree.join("lib/libbig.so"), &new);
    commit(&repo, "v2", &tree, "two");
    let target = dir.path().join("live");
    checkout(&repo, "v1", None, &target, false);

    let stop = Arc::new(AtomicBool::new(false));
    let (reads, seen_new) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (stop, reads, seen_new) = (stop.clone(), reads.clone(), seen_new.clone());
        let path = target.join("lib/libbig.so");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let data = std::fs::read(&path).expect("the file vanished during an apply");
                let ok_old = data.len() == 3 << 20 && data.iter().all(|&b| b == b'a');
                let ok_new = data.len() == (2 << 20) + 12345 && data.iter().all(|&b| b == b'b');
                assert!(ok_old || ok_new, "read a partial file: {} bytes", data.len());
                reads.fetch_add(1, Ordering::Relaxed);
                seen_new.fetch_add(usize::from(ok_new), Ordering::Relaxed);
            }
        })
    };
    for i in 0..20 {
        let (from, to) = if i % 2 == 0 { ("v1", "v2") } else { ("v2", "v1") };
        let out = apply_tree(&repo, from, to, &target, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw a partial file");
    assert!(reads.load(Ordering::Relaxed) > 20, "the reader barely ran");
    assert!(seen_new.load(Ordering::Relaxed) > 0, "the reader never saw the new version");
}

/// Crafted trees whose names would escape the target are refused before anything
/// is written, inside the target or out of it.
#[test]
fn hostile_names_write_nothing_anywhere() {
    let dir = scratch();
    let tree = dir.path().join("tree");
    write(&tree.join("x"), b"a file that becomes a directory");
    write(&tree.join("keep"), b"keep");
    let repo = init_repo(dir.path(), "archive");
    let base = commit(&repo, "base", &tree, "base");
    let base_c: [u8; 32] = hex32(&base);
    let meta = craft::store(&repo, "dirmeta", &craft::dirmeta(0, 0, 0o40755), None);
    let content = file_checksum(&repo, "base", "/keep");
    let empty = craft::store(&repo, "dirtree", &craft::dirtree(&[], &[]), None);

    let evil_dir = |name: &[u8]| craft::store(&repo, "dirtree", &craft::dirtree(&[(name, content)], &[]), None);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Added at the top.
        (craft::dirtree(&[(b"../escaped", content), (b"keep", content)], &[]), "invalid file name \"../escaped\""),
        (craft::dirtree(&[(b"keep", content)], &[(b"..", empty, meta)]), "invalid file name \"..\""),
        // Deep inside an added directory.
        (craft::dirtree(&[(b"keep", content)], &[(b"new", evil_dir(b"a/b"), meta)]), "invalid file name \"a/b\""),
        // Inside a directory that replaces a file (read only by the plan).
        (craft::dirtree(&[(b"keep", content)], &[(b"x", evil_dir(b""), meta)]), "invalid file name \"\""),
    ];
    let target = dir.path().join("sub/live");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    checkout(&repo, "base", None, &target, false);
    // Everything the target's parent holds, so an escape by `..` would show.
    let outside = snapshot(&dir.path().join("sub"));
    for (i, (bytes, want)) in cases.into_iter().enumerate() {
        let t = craft::store(&repo, "dirtree", &bytes, None);
        let c = craft::store(&repo, "commit", &craft::commit(Some(base_c), &format!("evil {i}"), t, meta), None);
        craft::set_ref(&repo, "evil", &c);
        let out = apply_tree(&repo, "base", "evil", &target, &[]);
        assert_eq!(out.status.code(), Some(1), "case {i}");
        let err = stderr(&out);
        assert!(err.contains(want) && err.lines().count() == 1, "case {i}: {err}");
        assert_eq!(snapshot(&dir.path().join("sub")), outside, "case {i} wrote something");
    }
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn file_checksum(repo: &std::path::Path, rev: &str, path: &str) -> [u8; 32] {
    hex32(&ls_checksum(repo, rev, path))
}

/// An update larger than the free space is refused up front with both numbers,
/// and nothing changes; with room made, the same command succeeds.
#[test]
fn full_filesystem_is_refused_up_front() {
    let dir = scratch();
    let tree = dir.path().join("tree");
    write(&tree.join("small"), b"small");
    let repo = init_repo(dir.path(), "bare");
    commit(&repo, "v1", &tree, "one");
    write(&tree.join("big"), &vec![1u8; 3 << 20]);
    write(&tree.join("small"), b"small v2");
    commit(&repo, "v2", &tree, "two");
    let want = dir.path().join("want");
    checkout(&repo, "v2", None, &want, false);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let livefs = env!("CARGO_BIN_EXE_livefs");
    let script = format!(
        r#"
        mount -t tmpfs -o size=2m tmpfs {mnt}
        ostree checkout --repo={repo} --force-copy v1 {mnt}/t
        before=$(ls -lanR --time-style=+%s {mnt})
        if {livefs} apply-tree --repo {repo} --from v1 --to v2 {mnt}/t; then exit 10; fi
        [ "$(ls -lanR --time-style=+%s {mnt})" = "$before" ] || exit 11
        mount -o remount,size=16m {mnt}
        {livefs} apply-tree --repo {repo} --from v1 --to v2 {mnt}/t
        diff -r {mnt}/t {want}
        "#,
        mnt = mnt.display(),
        repo = repo.display(),
        want = want.display(),
    );
    let out = in_mount_namespace(&script);
    let err = stderr(&out);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    let line = err.lines().find(|l| l.contains("not enough space")).unwrap_or_else(|| panic!("no refusal: {err}"));
    assert!(line.contains("the update needs") && line.contains("bytes are available"), "{line}");
    let numbers: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(numbers.len() == 2 && numbers[0] > numbers[1], "{line}");
}
