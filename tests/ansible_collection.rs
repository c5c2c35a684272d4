//! The Ansible collection (`ansible_collections/livefs/livefs`), with
//! ansible-core from PyPI (the venv `scripts/test` makes): its README's rolling
//! playbook over four simulated booted hosts, each its own deployment tree,
//! booted in one private mount namespace and driven with a local connection and
//! a per-host root.

mod common;

use std::collections::BTreeMap;

use common::system::{ok, read_json, Boot, TestSystem};
use common::*;

/// `host : ok=N changed=N unreachable=N failed=N …` lines of a play recap.
fn recap(out: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut hosts = BTreeMap::new();
    let Some(start) = out.rfind("PLAY RECAP") else { return hosts };
    for line in out[start..].lines().skip(1) {
        let Some((host, counts)) = line.split_once(" : ") else { continue };
        let counts = counts
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
            .collect();
        hosts.insert(host.trim().to_string(), counts);
    }
    hosts
}

fn count(r: &BTreeMap<String, BTreeMap<String, u32>>, host: &str, what: &str) -> u32 {
    r.get(host).and_then(|c| c.get(what)).copied().unwrap_or(0)
}

/// Four hosts booted at v1: host1 and host2 get additions, host3 an update that
/// replaces a file (it needs allow_replacement), host4 a new kernel (it needs a
/// reboot).
fn hosts() -> Vec<TestSystem> {
    (1..=4)
        .map(|i| {
            let mut sys = TestSystem::new();
            write(&sys.tree.join(format!("usr/share/host{i}/data")), b"data\n");
            match i {
                3 => write(&sys.tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello v2\n"),
                4 => write(&sys.tree.join("usr/lib/modules/9.9.9-new/vmlinuz"), b"new kernel"),
                _ => {}
            }
            let v2 = sys.commit("2");
            sys.deploy(&v2);
            sys
        })
        .collect()
}

#[test]
fn rolling_playbook_over_four_hosts() {
    let hosts = hosts();
    let python = venv_bin("python");
    let playbook = venv_bin("ansible-playbook");
    let adhoc = venv_bin("ansible");
    let out = hosts[0].out.clone();
    let mut inventory = String::from("[ostree_hosts]\n");
    for (i, sys) in hosts.iter().enumerate() {
        inventory += &format!(
            "host{} ansible_connection=local ansible_python_interpreter={} livefs_root={} livefs_sysroot={} livefs_executable={}\n",
            i + 1,
            python.display(),
            sys.root().display(),
            sys.sysroot.display(),
            env!("CARGO_BIN_EXE_livefs"),
        );
    }
    std::fs::write(out.join("inventory"), inventory).unwrap();
    let boots: String = hosts.iter().map(|s| s.boot_script(Boot::Plain)).collect();
    let status: String = hosts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "$LIVEFS --root {} --sysroot {} status --json > $OUT/$1-host{}.json\n",
                s.root().display(),
                s.sysroot.display(),
                i + 1
            )
        })
        .collect();
    let script = format!(
        r#"
        {boots}
        OUT={out}
        export ANSIBLE_COLLECTIONS_PATH={collections} ANSIBLE_LOCAL_TEMP=$OUT/ansible-tmp ANSIBLE_REMOTE_TEMP=$OUT/ansible-tmp
        export ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=False ANSIBLE_RETRY_FILES_ENABLED=False
        statuses() {{
            {status}
        }}
        play() {{ {playbook} -i $OUT/inventory livefs.livefs.rolling_update -e livefs_hosts=ostree_hosts -e livefs_reboot=false -e livefs_restart=false "$@"; }}
        play --check --diff > $OUT/check.out 2>&1 || true
        statuses check
        play > $OUT/first.out 2>&1 || echo $? > $OUT/first.rc
        statuses first
        play -e livefs_allow_replacement=true > $OUT/second.out 2>&1
        statuses second
        play -e livefs_allow_replacement=true > $OUT/third.out 2>&1
        # The modules one by one: facts, then a reset (checked first, then done).
        host1() {{ {adhoc} -i $OUT/inventory host1 -m "$@"; }}
        common='root={{{{ livefs_root }}}} sysroot={{{{ livefs_sysroot }}}} executable={{{{ livefs_executable }}}}'
        host1 livefs.livefs.livefs_info -a "$common" > $OUT/info.out 2>&1
        host1 livefs.livefs.livefs -a "state=reset $common" --check > $OUT/reset-check.out 2>&1
        statuses reset-check
        host1 livefs.livefs.livefs -a "state=reset $common" > $OUT/reset.out 2>&1
        statuses reset
        "#,
        out = out.display(),
        collections = env!("CARGO_MANIFEST_DIR"),
        playbook = playbook.display(),
        adhoc = adhoc.display(),
    );
    let result = in_mount_namespace(&script);
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap_or_default();
    for n in ["check.out", "first.out", "second.out", "third.out", "info.out", "reset-check.out", "reset.out"] {
        eprintln!("===== ansible-playbook ({n})\n{}", read(n));
    }
    ok(&result);
    let state = |run: &str, h: u32| read_json(&out.join(format!("{run}-host{h}.json")))["state"]["state"].clone();

    // Check mode: a dry run on every host it reached, nothing changed anywhere;
    // host3's update is refused there too (no allow_replacement), which stops the roll.
    let check = read("check.out");
    assert!(check.contains("--- before") || check.contains("\"commit\""), "no diff shown:\n{check}");
    for h in 1..=4 {
        assert_eq!(state("check", h), "booted", "check mode changed host{h}");
    }
    // The real run: host1 and host2 go live; host3 fails with livefs's kind and
    // stops the roll (max_fail_percentage: 0); host4 is never touched.
    let first = read("first.out");
    let r = recap(&first);
    assert_eq!(read("first.rc").trim(), "2", "{first}");
    assert_eq!((count(&r, "host1", "changed"), count(&r, "host2", "changed")), (1, 1), "{r:?}");
    assert_eq!(count(&r, "host3", "failed"), 1, "{r:?}");
    assert!(first.contains("refused_replacement"), "{first}");
    assert_eq!(count(&r, "host4", "ok") + count(&r, "host4", "changed"), 0, "{r:?}");
    let states: Vec<_> = (1..=4).map(|h| state("first", h)).collect();
    assert_eq!(states, ["live", "live", "booted", "booted"]);
    // Allowed to replace: host3 and host4 go live, host1 and host2 are already
    // (changed=0); only host4's update needs a reboot, and only host4 is named.
    let second = read("second.out");
    let r = recap(&second);
    let changed: Vec<u32> = (1..=4).map(|h| count(&r, &format!("host{h}"), "changed")).collect();
    assert_eq!(changed, [0, 0, 1, 1], "{second}");
    assert!(second.contains("would reboot host4 for"), "{second}");
    assert!(!second.contains("would reboot host3"), "{second}");
    for h in 1..=4 {
        assert_eq!(state("second", h), "live", "host{h}");
    }
    // Run again: nothing to do anywhere.
    let third = read("third.out");
    let r = recap(&third);
    for h in 1..=4 {
        let host = format!("host{h}");
        assert_eq!((count(&r, &host, "changed"), count(&r, &host, "failed")), (0, 0), "{third}");
    }
    // livefs_info: the status as the fact `livefs`.
    let info = read("info.out");
    assert!(
        info.contains("host1 | SUCCESS") && info.contains("\"livefs\": {") && info.contains("\"state\": \"live\""),
        "{info}"
    );
    // state=reset: checked (changed, nothing done), then done.
    assert!(read("reset-check.out").contains("host1 | CHANGED"), "{}", read("reset-check.out"));
    assert_eq!(state("reset-check", 1), "live");
    assert!(read("reset.out").contains("host1 | CHANGED"), "{}", read("reset.out"));
    assert_eq!(state("reset", 1), "booted");
    assert_eq!(state("reset", 2), "live");
}

/// `ansible-test sanity` of the collection is clean (every test ansible-core
/// runs for Python 3.11: documentation, argument specs against it, yamllint,
/// pylint, pep8, imports, …).
#[test]
fn ansible_test_sanity_is_clean() {
    let collection = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible_collections/livefs/livefs");
    let out = std::process::Command::new(venv_bin("ansible-test"))
        .args(["sanity", "--python", "3.11", "--requirements", "--color", "no"])
        .current_dir(&collection)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "ansible-test sanity:\n{text}");
    assert!(text.matches("Running sanity test").count() >= 20, "{text}");
}
