//! `/usr` switches in one mount operation to a pre-built layer of hardlinks:
//! the layer shares its files' inodes with the repository's objects, a process
//! holding the old tree keeps a consistent view while new lookups see the new
//! tree, and a kill at any step leaves `/usr` exactly one of the two trees.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::system::{ok, read_json, TestSystem};
use common::*;

/// v1 → v2: files added (in a new directory and an existing one), changed,
/// removed, a directory removed, a file turned into a directory and back.
fn with_mixed_update() -> (TestSystem, String) {
    let mut sys = TestSystem::new();
    write(&sys.tree.join("usr/share/doc/demo/old-dir/x"), b"x");
    write(&sys.tree.join("usr/share/doc/demo/becomes-dir"), b"file");
    write(&sys.tree.join("usr/share/doc/demo/becomes-file/y"), b"y");
    write(&sys.tree.join("usr/lib/gone.so"), b"gone");
    sys.booted = sys.commit("1b");
    sys.deploy(&sys.booted.clone());
    for i in 0..8 {
        write(&sys.tree.join(format!("usr/share/big/f{i}")), &vec![b'a' + i as u8; 64 << 10]);
    }
    write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n");
    write(&sys.tree.join("usr/etc/motd"), b"motd v2\n");
    write(&sys.tree.join("usr/etc/new.conf"), b"new\n");
    write(&sys.tree.join("usr/etc/new.d/a.conf"), b"a\n");
    rm(&sys.tree.join("usr/share/doc/demo/old-dir"));
    rm(&sys.tree.join("usr/lib/gone.so"));
    rm(&sys.tree.join("usr/share/doc/demo/becomes-dir"));
    write(&sys.tree.join("usr/share/doc/demo/becomes-dir/z"), b"z");
    rm(&sys.tree.join("usr/share/doc/demo/becomes-file"));
    write(&sys.tree.join("usr/share/doc/demo/becomes-file"), b"now a file");
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    (sys, v2)
}

/// (device, inode) → size of every file object of the repository.
fn object_inodes(repo: &Path) -> HashMap<(u64, u64), u64> {
    let mut out = HashMap::new();
    for sub in std::fs::read_dir(repo.join("objects")).unwrap() {
        for obj in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let p = obj.unwrap().path();
            if p.extension().is_some_and(|e| e == "file") {
                let m = std::fs::symlink_metadata(&p).unwrap();
                out.insert((m.dev(), m.ino()), m.size());
            }
        }
    }
    out
}

/// Regular files under `dir`: (device, inode, size).
fn files(dir: &Path, out: &mut Vec<(u64, u64, u64)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            files(&p, out);
        } else if m.is_file() {
            out.push((m.dev(), m.ino(), m.size()));
        }
    }
}

/// On a bare repository the layer's files are the objects' inodes: ≥ 95% of its
/// bytes are shared, none written; `status` reports the bytes linked and written.
#[test]
fn layer_files_are_repository_objects() {
    let (sys, v2) = with_mixed_update();
    let out = sys.run(
        r#"
        L apply --allow-replacement --json > $OUT/apply.json
        grep " - overlay livefs:" /proc/self/mountinfo > $OUT/mount-1
        L apply --allow-replacement > $OUT/again.txt
        grep " - overlay livefs:" /proc/self/mountinfo > $OUT/mount-2
        L status --json > $OUT/status.json
        cp -a $R/usr $OUT/usr-live
        "#,
    );
    ok(&out);
    assert_same_tree(&sys.out.join("usr-live"), &sys.usr_of(&v2));
    // Applied again: nothing to do, no new layer, the same mount.
    let read = |n: &str| std::fs::read_to_string(sys.out.join(n)).unwrap();
    assert!(read("again.txt").contains("0 added (0 directories), 0 replaced, 0 removed"), "{}", read("again.txt"));
    assert!(!read("again.txt").contains("switched"), "{}", read("again.txt"));
    assert_eq!(read("mount-1"), read("mount-2"));
    let status = read_json(&sys.out.join("status.json"));
    let layer = Path::new(status["layer"]["layer"].as_str().unwrap()).to_path_buf();
    let objects = object_inodes(&sys.repo);
    let mut found = Vec::new();
    files(&layer, &mut found);
    let total: u64 = found.iter().map(|f| f.2).sum();
    let shared: u64 = found.iter().filter(|f| objects.contains_key(&(f.0, f.1))).map(|f| f.2).sum();
    assert!(total >= 8 * (64 << 10), "the layer holds {total} bytes");
    assert!(shared * 100 >= total * 95, "only {shared} of {total} bytes are shared with objects");
    let apply = read_json(&sys.out.join("apply.json"));
    assert_eq!(apply["layer"]["bytes_written"], 0, "{}", apply["layer"]);
    assert_eq!(apply["layer"]["bytes_linked"].as_u64().unwrap(), shared);
    assert_eq!(status["layer"]["bytes_linked"].as_u64().unwrap(), shared);
    // The repository is intact: nothing was written into an object.
    ostree(&["fsck", &format!("--repo={}", sys.repo.display())]);
}

/// A process holding a directory of /usr keeps the tree it opened, whole, across
/// an apply, an incremental apply (switched beneath) and a reset, while new
/// lookups see the new tree at once; one livefs overlay is mounted at a time.
#[test]
fn held_directories_keep_their_tree() {
    let (mut sys, v2) = with_mixed_update();
    write(&sys.tree.join("usr/share/v3-only"), b"v3");
    rm(&sys.tree.join("usr/share/big/f0"));
    let v3 = sys.commit("3");
    let out = sys.run(&format!(
        r#"
        exec 3<$R/usr
        L apply --allow-replacement --no-triggers > /dev/null
        exec 4<$R/usr
        cp -a $R/usr $OUT/new-after-apply
        L apply --allow-replacement --target {v3} > /dev/null
        exec 5<$R/usr
        grep -c " - overlay livefs:" /proc/self/mountinfo > $OUT/livefs-mounts
        cp -a $R/usr $OUT/new-after-incremental
        cp -a /proc/$$/fd/4/. $OUT/held-v2-after-incremental
        L reset --no-triggers > /dev/null
        cp -a $R/usr $OUT/new-after-reset
        cp -a /proc/$$/fd/3/. $OUT/held-v1-after-all
        cp -a /proc/$$/fd/4/. $OUT/held-v2-after-reset
        cp -a /proc/$$/fd/5/. $OUT/held-v3-after-reset
        "#
    ));
    ok(&out);
    let o = |n: &str| sys.out.join(n);
    assert_same_tree(&o("new-after-apply"), &sys.usr_of(&v2));
    assert_same_tree(&o("new-after-incremental"), &sys.usr_of(&v3));
    assert_same_tree(&o("new-after-reset"), &sys.usr_of(&sys.booted));
    assert_eq!(std::fs::read_to_string(o("livefs-mounts")).unwrap().trim(), "1", "overlays stacked up");
    for (held, commit) in [
        ("held-v2-after-incremental", &v2),
        ("held-v1-after-all", &sys.booted),
        ("held-v2-after-reset", &v2),
        ("held-v3-after-reset", &v3),
    ] {
        // The copy's root takes cp's own metadata; compare the contents.
        let (got, want) = (snapshot(&o(held)), snapshot(&sys.usr_of(commit)));
        let strip = |s: Vec<String>| s.into_iter().filter(|l| !l.starts_with("/ ")).collect::<Vec<_>>();
        assert_eq!(strip(got), strip(want), "{held} is not the tree it was opened on");
    }
}

/// Killed after each of its mutations — of /usr, /etc, the state records and the
/// triggers (ldconfig runs: a library is removed) — `apply` and then `reset`
/// leave /usr exactly one of the two trees, never a mix; running the command
/// again finishes it, and /etc (the loader cache included) comes back exactly.
#[cfg(feature = "fault-injection")]
#[test]
fn killed_at_every_step_usr_is_one_tree() {
    let (sys, v2) = with_mixed_update();
    write(&sys.booted_deployment().join("etc/edited"), b"the admin's own file\n");
    let out = sys.run(
        r#"
        cp -a $R/etc $OUT/etc-before
        L apply --allow-replacement --json > $OUT/full.json
        L reset > /dev/null
        "#,
    );
    ok(&out);
    let apply_n = read_json(&sys.out.join("full.json"))["mutations"].as_u64().unwrap();
    assert!(apply_n >= 15, "only {apply_n} mutations");
    // Kill after mutation 1, 2, … until a run is not killed (it made fewer).
    let out = sys.run(
        r#"
        n=1
        while LIVEFS_FAULT_AFTER=$n L apply --allow-replacement > /dev/null 2>&1; [ $? -eq 137 ]; do
            cp -a $R/usr $OUT/apply-killed-$n
            L apply --allow-replacement > /dev/null
            cp -a $R/usr $OUT/apply-resumed-$n
            L reset > /dev/null
            n=$((n + 1))
        done
        echo $((n - 1)) > $OUT/apply-kills
        n=1
        while LIVEFS_FAULT_AFTER=$n L reset > /dev/null 2>&1; [ $? -eq 137 ]; do
            cp -a $R/usr $OUT/reset-killed-$n
            L reset > /dev/null
            cp -a $R/usr $OUT/reset-done-$n
            cp -a $R/etc $OUT/etc-reset-$n
            L apply --allow-replacement > /dev/null
            n=$((n + 1))
        done
        echo $((n - 1)) > $OUT/reset-kills
        "#,
    );
    ok(&out);
    let kills = |name: &str| std::fs::read_to_string(sys.out.join(name)).unwrap().trim().parse::<u64>().unwrap();
    let (apply_n, reset_n) = (kills("apply-kills"), kills("reset-kills"));
    eprintln!("killed apply after each of {apply_n} mutations, reset after each of {reset_n}");
    assert!(apply_n >= 15 && reset_n >= 3, "too few crash points: {apply_n}, {reset_n}");
    let (a, b) = (snapshot(&sys.usr_of(&sys.booted)), snapshot(&sys.usr_of(&v2)));
    let one_of = |name: &str| {
        let s = snapshot(&sys.out.join(name));
        assert!(s == a || s == b, "{name}: /usr is neither tree");
    };
    for n in 1..=apply_n {
        one_of(&format!("apply-killed-{n}"));
        assert_same_tree(&sys.out.join(format!("apply-resumed-{n}")), &sys.usr_of(&v2));
    }
    for n in 1..=reset_n {
        one_of(&format!("reset-killed-{n}"));
        assert_same_tree(&sys.out.join(format!("reset-done-{n}")), &sys.usr_of(&sys.booted));
        assert_same_tree(&sys.out.join(format!("etc-reset-{n}")), &sys.out.join("etc-before"));
    }
}

/// An update may carry a tree longer than PATH_MAX and deeper than the usual
/// open-file limit (1,100 levels: 4,400 bytes of path): with `ulimit -n 1024`,
/// livefs applies it, reports on it while it is live, resets, and removes the
/// stale layer afterwards — every walk dirfd-relative, with bounded descriptors —
/// and no housekeeping failure ever becomes the exit status.
#[test]
fn deep_trees_apply_report_reset_and_clean_up() {
    use rustix::fs::{Mode, OFlags};
    let mut sys = TestSystem::new();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(sys.tree.join("usr/share"), flags, Mode::empty()).unwrap();
    for _ in 0..1100 {
        rustix::fs::mkdirat(&dir, "abc", Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, "abc", flags, Mode::empty()).unwrap();
    }
    let leaf = rustix::fs::openat(&dir, "leaf", OFlags::WRONLY | OFlags::CREATE, Mode::from_raw_mode(0o644)).unwrap();
    rustix::io::write(&leaf, b"deep\n").unwrap();
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    ok(&sys.run(
        r#"
        ulimit -n 1024
        L apply > $OUT/apply.txt
        L status > $OUT/status.txt
        c=$(printf 'abc/%.0s' $(seq 550))
        (cd $R/usr/share && cd $c && cd $c && cat leaf) > $OUT/leaf
        L reset > $OUT/reset.txt 2> $OUT/reset.err
        L apply > $OUT/apply2.txt 2> $OUT/apply2.err
        L reset > $OUT/reset2.txt 2> $OUT/reset2.err
        ls $S/ostree/deploy/demo/backing/*/livefs/ > $OUT/layers
        "#,
    ));
    let read = |name: &str| std::fs::read_to_string(sys.out.join(name)).unwrap();
    assert_eq!(read("leaf"), "deep\n");
    assert!(read("status.txt").contains("Live:        "), "{}", read("status.txt"));
    for name in ["reset.err", "apply2.err", "reset2.err"] {
        assert_eq!(read(name), "", "{name}");
    }
    assert_eq!(read("layers"), "", "stale layers were not removed");
}

/// The preflight counts every inode the layer takes (its entries, the parent
/// directories it makes for them, its own directories): on a filesystem with
/// too few, the apply is refused before anything changes. A build that fails
/// anyway leaves the state as it was, never an interrupted apply.
#[test]
fn the_layer_preflight_counts_what_the_build_creates_and_a_failed_build_changes_nothing() {
    let mut sys = TestSystem::new();
    for i in 0..8 {
        write(&sys.tree.join(format!("usr/share/new/d{i}/sub/file")), b"x\n");
    }
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let backing = format!("$S/ostree/deploy/demo/backing/{}.0", sys.booted);
    ok(&sys.run(&format!(
        r#"
        # The layers' filesystem: room for the 8 files' directories, not for their parents too.
        mkdir -p {backing}
        mount -t tmpfs -o size=16m,nr_inodes=24 layers {backing}
        rc=0; L apply > $OUT/refused.out 2> $OUT/refused.err || rc=$?
        echo $rc > $OUT/refused.rc
        L status --json > $OUT/status-refused.json
        umount {backing}
        # A build that fails: where the layers go is a file.
        mkdir -p {backing}
        touch {backing}/livefs
        rc=0; L apply > $OUT/failed.out 2> $OUT/failed.err || rc=$?
        echo $rc > $OUT/failed.rc
        L status --json > $OUT/status-failed.json
        rm {backing}/livefs
        L apply > $OUT/apply.out
        "#
    )));
    let read = |name: &str| std::fs::read_to_string(sys.out.join(name)).unwrap();
    assert_eq!(read("refused.rc").trim(), "1");
    assert!(read("refused.err").contains("inodes"), "{}", read("refused.err"));
    assert_eq!(read("failed.rc").trim(), "1");
    assert!(read("failed.err").contains("livefs"), "{}", read("failed.err"));
    for name in ["status-refused.json", "status-failed.json"] {
        let st = read_json(&sys.out.join(name));
        assert_eq!(st["state"]["state"], "booted", "{name}: {st}");
        assert_eq!(st["usr"]["kind"], "locked", "{name}: {st}");
    }
    assert!(read("apply.out").starts_with("Applied "), "{}", read("apply.out"));
}
