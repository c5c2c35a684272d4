//! `livefs auto` on simulated boots: the pending deployment taken live as the
//! policy in /etc/livefs/auto.conf allows, left for the reboot (the sentinel
//! says why) or refused (the run fails), each decision taken once per
//! deployment and policy, and one journal entry per change, refusal and
//! failure — received on a real datagram socket where journald's would be.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use common::schema::{assert_valid, validator};
use common::system::{ok, read_json, TestSystem};
use common::*;

/// A socket where journald's is, under the test system's /run: what livefs
/// sends arrives there.
struct Journal(UnixDatagram);

impl Journal {
    fn bind(sys: &TestSystem) -> Journal {
        let dir = sys.dir.path().join("run/systemd/journal");
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("socket")).unwrap();
        socket.set_nonblocking(true).unwrap();
        Journal(socket)
    }

    /// Every entry received so far, as `NAME=value` lines.
    fn entries(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = self.0.recv(&mut buf) {
            out.push(parse_entry(&buf[..n]));
        }
        out
    }
}

/// The native protocol's fields (`NAME=value\n`, or `NAME\n`, a 64-bit length, the value, `\n`).
fn parse_entry(mut b: &[u8]) -> Vec<String> {
    let mut fields = Vec::new();
    while !b.is_empty() {
        let nl = b.iter().position(|c| *c == b'\n').expect("a field ends with a newline");
        let line = String::from_utf8(b[..nl].to_vec()).unwrap();
        if line.contains('=') {
            fields.push(line);
            b = &b[nl + 1..];
        } else {
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = String::from_utf8(b[nl + 9..nl + 9 + len].to_vec()).unwrap();
            fields.push(format!("{line}={value}"));
            b = &b[nl + 10 + len..];
        }
    }
    fields
}

fn field<'a>(entry: &'a [String], name: &str) -> Vec<&'a str> {
    entry.iter().filter_map(|f| f.strip_prefix(&format!("{name}="))).collect()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A test system whose pending deployment brings `files` (path, content), the
/// journal's socket bound.
fn updated(files: &[(&str, &[u8])]) -> (TestSystem, String, Journal) {
    let mut sys = TestSystem::new();
    for (path, content) in files {
        write(&sys.tree.join(path), content);
    }
    let v2 = sys.commit("2");
    sys.deploy(&v2);
    let journal = Journal::bind(&sys);
    (sys, v2, journal)
}

const APPLIED: &str = "9156c2b8b135400a9b1a466e48a2a1ca";
const RESET: &str = "ba755d6699b54cde9504a15f88b91478";
const REFUSED: &str = "867364c173e340168e00d2cfb4dd065c";

/// An update that adds a program goes live by itself (the default policy, no
/// restarts where systemd does not run), once: a `livefs reset` afterwards is
/// not undone by the next automatic run. One journal entry per change.
#[test]
fn an_addition_goes_live_once_and_is_logged() {
    let (sys, v2) = TestSystem::with_additions();
    let journal = Journal::bind(&sys);
    let out = sys.run(
        r#"
        mkdir -p $R/etc/livefs
        printf '[Auto]\nRestart=no\n' > $R/etc/livefs/auto.conf
        L auto --dry-run --json > $OUT/dry.json
        test ! -e $R/run/livefs/auto.json
        L auto > $OUT/auto.txt
        $R/usr/bin/newprog > $OUT/newprog.out
        L status --json > $OUT/status.json
        L status > $OUT/status.txt
        L auto --json > $OUT/again.json
        L reset > /dev/null
        L auto --json > $OUT/after-reset.json
        L status --json > $OUT/status-reset.json
        test ! -e $R/run/reboot-required
        "#,
    );
    ok(&out);
    let o = &sys.out;
    let auto_schema = validator("auto");
    let dry = read_json(&o.join("dry.json"));
    assert_valid(&auto_schema, "auto --dry-run --json", &dry);
    assert_eq!((dry["ending"].as_str(), dry["target"].as_str()), (Some("applied"), Some(v2.as_str())));
    let text = read(o, "auto.txt");
    assert!(text.contains(&format!("Automatic run: applied {} at ", &v2[..12])), "{text}");
    assert!(text.contains("(MaxStrategy=live, AllowReplacement=no, Restart=no)"), "{text}");
    assert_eq!(read(o, "newprog.out"), "hello from the new program\n");
    let status = read_json(&o.join("status.json"));
    assert_valid(&validator("status"), "status --json", &status);
    assert_eq!(status["live"]["checksum"], v2.as_str());
    assert_eq!(status["auto"]["ending"], "applied");
    assert_eq!(status["auto"]["target"], v2.as_str());
    assert_eq!(status["auto"]["from"], sys.booted.as_str());
    assert!(read(o, "status.txt").contains(&format!("Last auto:   applied {} at ", &v2[..12])));
    // The same deployment under the same policy: decided already.
    for name in ["again.json", "after-reset.json"] {
        let again = read_json(&o.join(name));
        assert_valid(&auto_schema, name, &again);
        assert_eq!((again["ending"].as_str(), again["repeated"].as_bool()), (Some("applied"), Some(true)), "{name}");
    }
    assert_eq!(read_json(&o.join("status-reset.json"))["state"]["state"], "booted", "the reset stands");

    let entries = journal.entries();
    let ids: Vec<&str> = entries.iter().map(|e| field(e, "MESSAGE_ID")[0]).collect();
    assert_eq!(ids, [APPLIED, RESET], "one entry per change, none for dry runs or repeats: {entries:#?}");
    let applied = &entries[0];
    assert_eq!(field(applied, "LIVEFS_COMMAND"), ["auto"]);
    assert_eq!(field(applied, "LIVEFS_FROM"), [sys.booted.as_str()]);
    assert_eq!(field(applied, "LIVEFS_TO"), [v2.as_str()]);
    assert_eq!(field(applied, "LIVEFS_STRATEGY"), ["live"]);
    assert_eq!(field(applied, "SYSLOG_IDENTIFIER"), ["livefs"]);
    assert_eq!(field(applied, "PRIORITY"), ["5"]);
    assert!(field(applied, "LIVEFS_ADDED")[0].parse::<u32>().unwrap() >= 3, "{applied:?}");
    assert_eq!(field(&entries[1], "LIVEFS_COMMAND"), ["reset"]);
}

/// A kernel update is left for the reboot under the default policy: nothing
/// changes, the run succeeds, /run/reboot-required says why, the journal too.
/// A drop-in that raises MaxStrategy decides it again, and it goes live (the
/// sentinel then speaks of the live state). A bad line is a warning naming the
/// file and line, its key keeps the default.
#[test]
fn what_needs_a_reboot_is_left_for_it() {
    let kernel: &[u8] = b"new kernel";
    let (sys, v2, journal) =
        updated(&[("usr/lib/modules/9.9.9-new/vmlinuz", kernel), ("usr/bin/newprog", b"#!/bin/sh\necho new\n")]);
    let out = sys.run(
        r#"
        mkdir -p $R/etc/livefs/auto.conf.d
        printf '[Auto]\nRestart=no\nMaxStrategy=reboot\n' > $R/etc/livefs/auto.conf
        printf '[Auto]\n\nMaxStrategy=fast\n' > $R/etc/livefs/auto.conf.d/50-typo.conf
        L auto --json > $OUT/left.json 2> $OUT/left.err
        test ! -e $R/usr/bin/newprog
        cp $R/run/reboot-required.pkgs $OUT/left.pkgs
        L status --json > $OUT/status-left.json
        printf '[Auto]\nMaxStrategy=reboot\n' > $R/etc/livefs/auto.conf.d/50-typo.conf
        L auto --json > $OUT/applied.json
        test -e $R/usr/bin/newprog
        cp $R/run/reboot-required.pkgs $OUT/applied.pkgs
        "#,
    );
    ok(&out);
    let o = &sys.out;
    let left = read_json(&o.join("left.json"));
    assert_valid(&validator("auto"), "auto --json", &left);
    assert_eq!(left["ending"], "left_for_reboot", "{left}");
    assert_eq!(left["kind"], "refused_strategy");
    assert_eq!(left["left_for_reboot"], serde_json::json!(["a new kernel (9.9.9-new)"]));
    assert_eq!(left["policy"]["max_strategy"], "live", "the bad line's key has the default");
    let err = read(o, "left.err");
    assert!(
        err.contains("/etc/livefs/auto.conf.d/50-typo.conf:3: MaxStrategy=fast is not live, soft-reboot or reboot; MaxStrategy is live (the default)"),
        "{err}"
    );
    let short = &v2[..12];
    assert_eq!(
        read(o, "left.pkgs"),
        format!("livefs: deployment {short} not applied live: a new kernel (9.9.9-new)\n")
    );
    let status = read_json(&o.join("status-left.json"));
    assert_eq!(status["state"]["state"], "booted");
    assert_eq!(status["auto"]["ending"], "left_for_reboot");
    // Decided again under the new policy: live, and the sentinel is the live state's.
    let applied = read_json(&o.join("applied.json"));
    assert_eq!((applied["ending"].as_str(), applied["repeated"].as_bool()), (Some("applied"), Some(false)));
    assert_eq!(read(o, "applied.pkgs"), "livefs: a new kernel (9.9.9-new)\n");

    let entries = journal.entries();
    let ids: Vec<&str> = entries.iter().map(|e| field(e, "MESSAGE_ID")[0]).collect();
    assert_eq!(ids, [REFUSED, APPLIED], "{entries:#?}");
    assert_eq!(field(&entries[0], "LIVEFS_KIND"), ["refused_strategy"]);
    assert_eq!(field(&entries[0], "LIVEFS_REBOOT_FOR"), ["a new kernel (9.9.9-new)"]);
    assert_eq!(field(&entries[0], "LIVEFS_TO"), [v2.as_str()]);
    assert_eq!(field(&entries[1], "LIVEFS_STRATEGY"), ["reboot"]);
}

/// An update that replaces a file, under AllowReplacement=no (the default): not
/// applied, the run fails (exit status 3: its unit fails), the reason is in the
/// journal and the sentinel; run again, it fails the same way without a second
/// entry. Allowed by a drop-in, it goes live. `livefs apply`'s own refusal is
/// logged too.
#[test]
fn a_forbidden_replacement_fails_the_run() {
    let (sys, v2, journal) = updated(&[("usr/bin/hello", b"#!/bin/sh\necho hello v2\n")]);
    let out = sys.run(
        r#"
        mkdir -p $R/etc/livefs/auto.conf.d
        printf '[Auto]\nRestart=no\n' > $R/etc/livefs/auto.conf
        set +e
        L auto --json > $OUT/refused.json; echo $? > $OUT/refused.rc
        L auto 2> $OUT/again.err > $OUT/again.txt; echo $? > $OUT/again.rc
        L apply 2> /dev/null; echo $? > $OUT/apply.rc
        set -e
        cp $R/run/reboot-required.pkgs $OUT/refused.pkgs
        $R/usr/bin/hello > $OUT/hello-before.out
        printf '[Auto]\nAllowReplacement=yes\n' > $R/etc/livefs/auto.conf.d/50-allow.conf
        L auto --json > $OUT/applied.json
        $R/usr/bin/hello > $OUT/hello-after.out
        "#,
    );
    ok(&out);
    let o = &sys.out;
    assert_eq!(read(o, "refused.rc").trim(), "3");
    let refused = read_json(&o.join("refused.json"));
    assert_valid(&validator("auto"), "auto --json", &refused);
    assert_eq!((refused["ending"].as_str(), refused["kind"].as_str()), (Some("refused"), Some("refused_replacement")));
    assert!(refused["reason"].as_str().unwrap().contains("/usr/bin/hello"), "{refused}");
    assert_eq!(read(o, "again.rc").trim(), "3", "a repeated refusal still fails");
    assert!(read(o, "again.txt").contains("decided already, nothing done now"));
    assert!(read(o, "again.err").starts_with("livefs: error: automatic run refused: "), "{}", read(o, "again.err"));
    assert_eq!(read(o, "apply.rc").trim(), "3");
    let short = &v2[..12];
    assert_eq!(
        read(o, "refused.pkgs"),
        format!(
            "livefs: deployment {short} not applied live: it changes or removes 1 existing path(s) in /usr, and AllowReplacement=no\n"
        )
    );
    assert_eq!(read(o, "hello-before.out"), "hello v1\n", "nothing changed");
    assert_eq!(read_json(&o.join("applied.json"))["ending"], "applied");
    assert_eq!(read(o, "hello-after.out"), "hello v2\n");

    let entries = journal.entries();
    let events: Vec<(&str, &str)> =
        entries.iter().map(|e| (field(e, "LIVEFS_EVENT")[0], field(e, "LIVEFS_COMMAND")[0])).collect();
    assert_eq!(events, [("refused", "auto"), ("refused", "apply"), ("applied", "auto")], "{entries:#?}");
    assert_eq!(field(&entries[0], "LIVEFS_KIND"), ["refused_replacement"]);
    assert_eq!(field(&entries[1], "LIVEFS_KIND"), ["refused_replacement"]);
    assert_eq!(field(&entries[0], "PRIORITY"), ["4"]);
}
