//! composefs repositories and images, as bootc's native backend keeps them,
//! read by livefs in Rust: composefs-rs's own `cfsctl` makes a repository and
//! images of the interop trees (every kind of entry and of change); livefs's
//! diff of two images is exactly `ostree diff`'s of the same trees committed
//! to an OSTree repository (the real `ostree` as the oracle); apply-tree from
//! image A to image B turns a copy of tree A into tree B exactly (content from
//! the image and from the repository's objects, owners, modes, xattrs,
//! symlinks); a damaged image or repository is named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::composefs::{cfsctl, run};
use common::*;

/// A composefs repository at `dir/cfs` (no fs-verity on this machine: `--insecure`).
fn init(dir: &Path) -> PathBuf {
    let repo = dir.join("cfs");
    run(Command::new(cfsctl()).arg("--repo").arg(&repo).args(["init", "--insecure", "--erofs-version", "2"]));
    repo
}

/// `cfsctl create-image` of `tree` into `repo`, the tree as it is (not the OCI
/// transform, which gives `/` the metadata of `/usr` and drops user xattrs);
/// returns the image's name (hex).
fn image(repo: &Path, tree: &Path, name: &str) -> String {
    let out = run(Command::new(cfsctl())
        .arg("--repo")
        .arg(repo)
        .args(["create-image", "--no-propagate-usr-to-root"])
        .arg(tree)
        .arg(name));
    out.trim().strip_prefix("sha512:").unwrap_or_else(|| panic!("cfsctl printed {out:?}")).to_string()
}

/// The interop trees A and B, as images of one composefs repository and
/// commits of one OSTree repository.
struct Both {
    dir: TempDir,
    cfs: PathBuf,
    images: (String, String),
    ostree: PathBuf,
    commits: (String, String),
}

fn both() -> Both {
    let dir = scratch();
    let tree = dir.path().join("tree");
    build_tree_a(&tree);
    let cfs = init(dir.path());
    let ostree = init_repo(dir.path(), "bare");
    let (ia, ca) = (image(&cfs, &tree, "a"), commit(&ostree, "a", &tree, "A"));
    copy_tree(&tree, &dir.path().join("tree-a"));
    mutate_to_b(&tree);
    let (ib, cb) = (image(&cfs, &tree, "b"), commit(&ostree, "b", &tree, "B"));
    Both { dir, cfs, images: (ia, ib), ostree, commits: (ca, cb) }
}

#[test]
fn the_diff_of_two_images_is_ostree_diffs_of_the_same_trees() {
    let b = both();
    let cfs = b.cfs.to_str().unwrap();
    for (from, to, ofrom, oto) in
        [(&b.images.0, &b.images.1, &b.commits.0, &b.commits.1), (&b.images.1, &b.images.0, &b.commits.1, &b.commits.0)]
    {
        let ours = livefs(&["diff", "--repo", cfs, from, to]);
        assert!(ours.status.success(), "{}", stderr(&ours));
        let theirs = ostree(&["diff", &format!("--repo={}", b.ostree.display()), ofrom, oto]);
        assert_eq!(stdout(&ours), theirs, "livefs diff of the images vs ostree diff of the commits");
        assert!(theirs.lines().count() > 20, "{theirs}");
    }
    // Images by unique prefix and by ref; --json and --stat too.
    let by_ref = livefs(&["diff", "--repo", cfs, "a", &b.images.1[..16], "--stat"]);
    assert!(by_ref.status.success(), "{}", stderr(&by_ref));
    let ostree_stat = livefs(&["diff", "--repo", b.ostree.to_str().unwrap(), &b.commits.0, &b.commits.1, "--stat"]);
    assert_eq!(stdout(&by_ref), stdout(&ostree_stat));
    let json = livefs(&["diff", "--repo", cfs, &b.images.0, &b.images.1, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["from"], b.images.0.as_str(), "an image is named by its SHA-512");
    assert_eq!(v["to"].as_str().unwrap().len(), 128);
}

#[test]
fn apply_tree_turns_tree_a_into_tree_b_from_the_images() {
    let b = both();
    let target = b.dir.path().join("target");
    copy_tree(&b.dir.path().join("tree-a"), &target);
    let out = apply_tree(&b.cfs, &b.images.0, &b.images.1, &target, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&target, &b.dir.path().join("tree"));
    // Back again, and the file contents of the objects and the image read.
    let out = apply_tree(&b.cfs, &b.images.1, &b.images.0, &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&target, &b.dir.path().join("tree-a"));
}

#[test]
fn a_damaged_image_or_repository_is_named() {
    let b = both();
    let cfs = b.cfs.to_str().unwrap();
    let image_file = std::fs::canonicalize(b.cfs.join("images").join(&b.images.1)).unwrap();
    std::fs::write(&image_file, b"not an image").unwrap();
    let out = livefs(&["diff", "--repo", cfs, &b.images.0, &b.images.1]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("image {} is malformed", b.images.1)) && err.contains("too small"), "{err}");
    std::fs::remove_file(&image_file).unwrap();
    let out = livefs(&["diff", "--repo", cfs, &b.images.0, &b.images.1]);
    assert!(stderr(&out).contains(&format!("object {}.image is missing", b.images.1)), "{}", stderr(&out));
    let out = livefs(&["diff", "--repo", cfs, &b.images.0, "no-such-ref"]);
    assert!(stderr(&out).contains("refspec 'no-such-ref' not found"), "{}", stderr(&out));
    std::fs::write(b.cfs.join("meta.json"), br#"{"version": 9}"#).unwrap();
    let out = livefs(&["diff", "--repo", cfs, &b.images.0, &b.images.0]);
    assert!(stderr(&out).contains("repository version 9, livefs reads version 1"), "{}", stderr(&out));
}
