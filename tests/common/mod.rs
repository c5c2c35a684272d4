//! Shared helpers for the integration tests: scratch trees, the real `ostree` CLI,
//! and running the `livefs` binary.

#![allow(dead_code)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use tempfile::TempDir;

/// The repository modes livefs reads, as `ostree init --mode` spells them.
pub const MODES: [&str; 4] = ["bare", "bare-user", "bare-user-only", "archive"];

pub fn scratch() -> TempDir {
    tempfile::Builder::new().prefix("livefs-test-").tempdir().expect("cannot create a scratch directory")
}

/// Runs the real `ostree` CLI; a failure fails the test with its stderr.
pub fn ostree(args: &[&str]) -> String {
    let out = Command::new("ostree").args(args).output().expect("cannot run ostree: is it installed?");
    assert!(out.status.success(), "ostree {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("ostree printed non-UTF-8")
}

/// Runs the `ostree` CLI and returns its whole output, successful or not.
pub fn ostree_output(args: &[&str]) -> Output {
    Command::new("ostree").args(args).output().expect("cannot run ostree")
}

pub fn livefs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livefs")).args(args).output().expect("cannot run livefs")
}

/// A command of the Python tools' virtualenv that `scripts/test` makes
/// (`livefs_python_tools` in scripts/deps.sh; LIVEFS_VENV overrides where).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv =
        std::env::var_os("LIVEFS_VENV").map_or_else(|| PathBuf::from("/var/cache/livefs-test/venv"), PathBuf::from);
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test (or `. scripts/deps.sh; livefs_python_tools`)",
        bin.display()
    );
    bin
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The checksum `ostree ls -C` prints for `path` in `rev`: a file's content
/// object, or (with `-d` semantics for directories) a directory's dirtree.
pub fn ls_checksum(repo: &Path, rev: &str, path: &str) -> String {
    let out = ostree(&["ls", &format!("--repo={}", repo.display()), "-C", "-d", rev, path]);
    // "-00644 0 0 SIZE CHECKSUM PATH" or "d00755 0 0 0 TREE META PATH"
    out.split_whitespace().nth(4).expect("unexpected `ostree ls` output").to_string()
}

/// Creates a repository of `mode` under `dir` and returns its path.
pub fn init_repo(dir: &Path, mode: &str) -> PathBuf {
    let repo = dir.join(format!("repo-{mode}"));
    ostree(&["init", &format!("--repo={}", repo.display()), &format!("--mode={mode}")]);
    repo
}

/// Commits `tree` to `branch` and returns the commit checksum.
pub fn commit(repo: &Path, branch: &str, tree: &Path, subject: &str) -> String {
    ostree(&[
        "commit",
        &format!("--repo={}", repo.display()),
        "-b",
        branch,
        "-s",
        subject,
        "--add-metadata-string=version=1.0",
        &format!("--tree=dir={}", tree.display()),
    ])
    .trim()
    .to_string()
}

pub fn write(path: &Path, content: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

pub fn link(path: &Path, target: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    symlink(target, path).unwrap();
}

pub fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

pub fn rm(path: &Path) {
    let m = std::fs::symlink_metadata(path).unwrap();
    if m.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
}

/// Copies a tree with `cp -a` (owners, modes, xattrs, symlinks preserved).
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

/// Tree A of the interop set: every kind of entry the format has.
pub fn build_tree_a(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    chmod(root, 0o755);
    write(&root.join("usr/bin/app"), b"#!/bin/sh\necho v1\n");
    chmod(&root.join("usr/bin/app"), 0o755);
    write(&root.join("usr/bin/su-helper"), b"setuid v1");
    chmod(&root.join("usr/bin/su-helper"), 0o4755);
    write(&root.join("usr/lib/libfoo.so.1"), &vec![7u8; 3 << 20]);
    write(&root.join("usr/lib/empty"), b"");
    link(&root.join("usr/lib/libfoo.so"), "libfoo.so.1");
    link(&root.join("usr/lib/abs-link"), "/usr/bin/app");
    link(&root.join("usr/lib/dangling"), "does/not/exist");
    write(&root.join("usr/share/doc/readme"), b"readme v1");
    write(&root.join("usr/share/doc/with space.txt"), b"spaces");
    write(&root.join("usr/share/doc/caf\u{e9} \u{65e5}\u{672c}.txt"), b"non-ascii");
    write(&root.join("usr/share/owned"), b"owned");
    chown(&root.join("usr/share/owned"), 1000, 1000);
    write(&root.join("usr/share/xattr-file"), b"x");
    setxattr(&root.join("usr/share/xattr-file"), "user.test", b"one");
    write(&root.join("usr/share/will-be-dir"), b"file now");
    write(&root.join("usr/share/was-dir/inner"), b"inner");
    write(&root.join("usr/share/will-be-link"), b"file now");
    write(&root.join("usr/share/modedir/f"), b"f");
    write(&root.join("usr/share/removed-tree/a/b/c"), b"c");
    write(&root.join("usr/share/removed-tree/d"), b"d");
    write(&root.join("usr/share/removed-file"), b"gone");
    let mut deep = root.join("usr/deep");
    for i in 0..40 {
        deep = deep.join(format!("level{i}"));
    }
    write(&deep.join("leaf"), b"leaf v1");
    write(&root.join("etc/config"), b"key=1\n");
    std::fs::create_dir_all(root.join("var/empty-dir")).unwrap();
}

/// Tree B: tree A with one change of every kind (root metadata unchanged).
pub fn mutate_to_b(root: &Path) {
    write(&root.join("usr/bin/app"), b"#!/bin/sh\necho v2\n");
    chmod(&root.join("usr/bin/su-helper"), 0o755);
    write(&root.join("usr/bin/new-setuid"), b"new setuid");
    chmod(&root.join("usr/bin/new-setuid"), 0o4711);
    write(&root.join("usr/lib/libfoo.so.1"), &vec![8u8; 3 << 20]);
    write(&root.join("usr/lib/big-new"), &vec![9u8; (1 << 20) + 17]);
    write(&root.join("usr/lib/empty2"), b"");
    rm(&root.join("usr/lib/abs-link"));
    link(&root.join("usr/lib/abs-link"), "/usr/bin/other");
    link(&root.join("usr/lib/new-rel"), "../bin/app");
    write(&root.join("usr/share/doc/readme"), b"readme v2");
    write(&root.join("usr/share/doc/with space.txt"), b"spaces v2");
    write(&root.join("usr/share/doc/caf\u{e9} \u{65e5}\u{672c}.txt"), b"non-ascii v2");
    write(&root.join("usr/share/doc/new \u{fc}ber.txt"), b"new");
    chown(&root.join("usr/share/owned"), 1001, 1002);
    setxattr(&root.join("usr/share/xattr-file"), "user.test", b"two");
    rm(&root.join("usr/share/will-be-dir"));
    write(&root.join("usr/share/will-be-dir/child"), b"child");
    rm(&root.join("usr/share/was-dir"));
    write(&root.join("usr/share/was-dir"), b"now a file");
    rm(&root.join("usr/share/will-be-link"));
    link(&root.join("usr/share/will-be-link"), "doc/readme");
    chmod(&root.join("usr/share/modedir"), 0o700);
    rm(&root.join("usr/share/removed-tree"));
    rm(&root.join("usr/share/removed-file"));
    write(&root.join("usr/share/added-tree/x/y/z"), b"z");
    write(&root.join("usr/share/added-tree/w"), b"w");
    std::fs::create_dir_all(root.join("usr/share/added-tree/empty")).unwrap();
    let mut deep = root.join("usr/deep");
    for i in 0..40 {
        deep = deep.join(format!("level{i}"));
    }
    write(&deep.join("leaf"), b"leaf v2");
    write(&deep.join("level40/new-leaf"), b"deeper");
    write(&root.join("etc/config"), b"key=2\n");
}

/// A repository of `mode` holding tree A (branch `tree-a`) and tree B (branch `tree-b`).
pub struct InteropRepo {
    pub dir: TempDir,
    pub repo: PathBuf,
    pub a: String,
    pub b: String,
}

pub fn interop_repo(mode: &str) -> InteropRepo {
    let dir = scratch();
    let tree = dir.path().join("tree");
    build_tree_a(&tree);
    let repo = init_repo(dir.path(), mode);
    let a = commit(&repo, "tree-a", &tree, "tree A");
    mutate_to_b(&tree);
    let b = commit(&repo, "tree-b", &tree, "tree B");
    InteropRepo { dir, repo, a, b }
}

pub mod composefs;
pub mod gvariant;
pub mod schema;
pub mod system;
pub mod vm;

/// A minimal GVariant encoder for crafting objects that `ostree` would never write
/// (hostile names, malformed framing), so the reader's refusals can be tested.
pub mod craft {
    use sha2::{Digest, Sha256};
    use std::path::Path;

    fn width(size: usize) -> usize {
        match size {
            0..=0xff => 1,
            0x100..=0xffff => 2,
            _ => 4,
        }
    }

    fn pad(v: &mut Vec<u8>, align: usize) {
        while v.len() % align != 0 {
            v.push(0);
        }
    }

    /// A member of a structure: its bytes, alignment and whether its size varies.
    pub struct Part<'a>(pub &'a [u8], pub usize, pub bool);

    pub fn structure(parts: &[Part]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut ends = Vec::new();
        for (i, Part(data, align, var)) in parts.iter().enumerate() {
            pad(&mut body, *align);
            body.extend_from_slice(data);
            if *var && i + 1 < parts.len() {
                ends.push(body.len());
            }
        }
        let mut w = 1;
        while width(body.len() + w * ends.len()) > w {
            w *= 2;
        }
        for e in ends.iter().rev() {
            body.extend_from_slice(&(*e as u64).to_le_bytes()[..w]);
        }
        body
    }

    pub fn array(elems: &[Vec<u8>], align: usize) -> Vec<u8> {
        let mut body = Vec::new();
        let mut ends = Vec::new();
        for e in elems {
            pad(&mut body, align);
            body.extend_from_slice(e);
            ends.push(body.len());
        }
        if elems.is_empty() {
            return body;
        }
        let mut w = 1;
        while width(body.len() + w * ends.len()) > w {
            w *= 2;
        }
        for e in ends {
            body.extend_from_slice(&(e as u64).to_le_bytes()[..w]);
        }
        body
    }

    pub fn string(s: &[u8]) -> Vec<u8> {
        let mut v = s.to_vec();
        v.push(0);
        v
    }

    /// A dirtree with entries in the given order (sorted or not, names unchecked).
    pub fn dirtree(files: &[(&[u8], [u8; 32])], dirs: &[(&[u8], [u8; 32], [u8; 32])]) -> Vec<u8> {
        let f: Vec<Vec<u8>> =
            files.iter().map(|(n, c)| structure(&[Part(&string(n), 1, true), Part(c, 1, true)])).collect();
        let d: Vec<Vec<u8>> = dirs
            .iter()
            .map(|(n, t, m)| structure(&[Part(&string(n), 1, true), Part(t, 1, true), Part(m, 1, true)]))
            .collect();
        structure(&[Part(&array(&f, 1), 1, true), Part(&array(&d, 1), 1, true)])
    }

    pub fn dirmeta(uid: u32, gid: u32, mode: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&uid.to_be_bytes());
        v.extend_from_slice(&gid.to_be_bytes());
        v.extend_from_slice(&mode.to_be_bytes());
        v
    }

    /// A commit with no metadata, the given parent, and the given root.
    pub fn commit(parent: Option<[u8; 32]>, subject: &str, tree: [u8; 32], meta: [u8; 32]) -> Vec<u8> {
        let parent = parent.map(|p| p.to_vec()).unwrap_or_default();
        structure(&[
            Part(&[], 8, true),
            Part(&parent, 1, true),
            Part(&[], 1, true),
            Part(&string(subject.as_bytes()), 1, true),
            Part(&string(b""), 1, true),
            Part(&1_700_000_000u64.to_be_bytes(), 8, false),
            Part(&tree, 1, true),
            Part(&meta, 1, true),
        ])
    }

    pub fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    pub fn hex(c: &[u8; 32]) -> String {
        c.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Stores `data` as an object of extension `ext` named by its sha256 (or by
    /// `name` when given, to plant a wrong-checksum object).
    pub fn store(repo: &Path, ext: &str, data: &[u8], name: Option<[u8; 32]>) -> [u8; 32] {
        let c = name.unwrap_or_else(|| sha(data));
        let h = hex(&c);
        let dir = repo.join("objects").join(&h[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.{ext}", &h[2..])), data).unwrap();
        c
    }

    /// Points `refs/heads/NAME` at a commit.
    pub fn set_ref(repo: &Path, name: &str, c: &[u8; 32]) {
        std::fs::write(repo.join("refs/heads").join(name), format!("{}\n", hex(c))).unwrap();
    }
}

/// A canonical description of a tree, one line per entry: path, type, mode, uid,
/// gid, xattrs, and content hash or symlink target (not times: see `mtimes`).
/// Two trees are equal for livefs's purposes when their snapshots are.
pub fn snapshot(root: &Path) -> Vec<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let xattrs = livefs::xattrs::of_path(&p).unwrap();
        let xattrs: Vec<String> = xattrs
            .iter()
            .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
            .collect();
        let what = if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_file() {
            let h = Sha256::digest(std::fs::read(&p).unwrap());
            format!("sha256 {}", h.iter().map(|b| format!("{b:02x}")).collect::<String>())
        } else {
            let mut children: Vec<_> = std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().file_name()).collect();
            children.sort();
            stack.extend(children.into_iter().rev().map(|c| rel.join(c)));
            String::new()
        };
        out.push(format!("/{} {:o} {}:{} [{}] {what}", rel.display(), m.mode(), m.uid(), m.gid(), xattrs.join(",")));
    }
    out.sort();
    out
}

/// Paths of regular files and symlinks whose mtime is not 0.
pub fn nonzero_mtimes(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if m.mtime() != 0 {
            out.push(p);
        }
    }
    out
}

/// Asserts two snapshots are equal, showing the lines that differ.
pub fn assert_same_tree(got: &Path, want: &Path) {
    let (g, w) = (snapshot(got), snapshot(want));
    if g != w {
        let only_g: Vec<_> = g.iter().filter(|l| !w.contains(l)).collect();
        let only_w: Vec<_> = w.iter().filter(|l| !g.contains(l)).collect();
        panic!(
            "trees differ:\n  only in {}:\n    {only_g:#?}\n  only in {}:\n    {only_w:#?}",
            got.display(),
            want.display()
        );
    }
}

/// `ostree checkout` of REV (optionally a subpath) into DEST, copying files (never
/// hardlinking repository objects) unless `hardlink`.
pub fn checkout(repo: &Path, rev: &str, subpath: Option<&str>, dest: &Path, hardlink: bool) {
    let r = format!("--repo={}", repo.display());
    let mut args = vec!["checkout".to_string(), r];
    if let Some(s) = subpath {
        args.push(format!("--subpath={s}"));
    }
    if !hardlink {
        args.push("--force-copy".into());
    }
    args.push(rev.to_string());
    args.push(dest.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ostree(&args);
}

/// Runs `livefs apply-tree` with extra arguments.
pub fn apply_tree(repo: &Path, from: &str, to: &str, target: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["apply-tree", "--repo", repo.to_str().unwrap(), "--from", from, "--to", to];
    args.extend_from_slice(extra);
    args.push(target.to_str().unwrap());
    livefs(&args)
}

/// Runs a bash script as root in a private mount namespace, so it can mount
/// scratch filesystems without touching the machine's mounts.
pub fn in_mount_namespace(script: &str) -> Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-euo", "pipefail", "-c", script])
        .output()
        .expect("cannot run unshare")
}
