//! The seed's use case, end to end: a Debian 12 system made into OSTree commits
//! (debootstrap, then `apt-get install lighttpd`), booted at the first, updated
//! live to the second; lighttpd then starts from the live root and serves a page
//! over loopback; `livefs reset` takes it all back. See tests/e2e/webserver.sh.
//! Downloads are cached in /var/cache/livefs-test.

mod common;

use common::system::read_json;
use common::*;
use std::process::Command;

#[test]
fn install_lighttpd_apply_serve_reset() {
    let dir = scratch();
    let out = dir.path();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/webserver.sh");
    let run = Command::new("bash")
        .arg(script)
        .env("OUT", out)
        .env("LIVEFS", env!("CARGO_BIN_EXE_livefs"))
        .output()
        .expect("cannot run the end-to-end script");
    assert!(
        run.status.success(),
        "end-to-end script failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));

    // The page came from lighttpd running off the live /usr.
    let response = read("response.txt");
    assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
    assert!(response.contains("served by lighttpd from a live-updated /usr"), "{response}");

    let apply = read_json(&out.join("apply.json"));
    assert_eq!(apply["state"]["state"], "live");
    assert_eq!(apply["to"].as_str().unwrap(), read("target").trim());
    assert!(apply["added"].as_array().unwrap().iter().any(|e| e["path"] == "/sbin/lighttpd"), "lighttpd not added");
    let etc: Vec<(String, String)> = apply["etc"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_string(), p["action"].as_str().unwrap().to_string()))
        .collect();
    let action = |path: &str| etc.iter().find(|(p, _)| p == path).map(|(_, a)| a.as_str());
    assert_eq!(action("/motd"), Some("kept"), "{etc:?}");
    assert_eq!(action("/issue.net"), Some("updated"), "{etc:?}");
    assert_eq!(action("/lighttpd/lighttpd.conf"), Some("added"), "{etc:?}");
    let tmpfiles = apply["triggers"].as_array().unwrap().iter().find(|t| t["action"] == "tmpfiles");
    assert_eq!(tmpfiles.map(|t| t["ok"].as_bool()), Some(Some(true)), "{}", apply["triggers"]);

    // The admin's edit survived; the untouched file was updated; /var exists.
    assert_eq!(read("motd-after-apply"), read("motd-edited"));
    assert_eq!(read("issue-after-apply"), "Debian GNU/Linux 12 (livefs e2e v2)\n");
    let var = read("var-dirs.txt");
    assert!(var.contains("/var/log/lighttpd") && var.contains("/var/cache/lighttpd"), "{var}");
    assert!(read("apply-again.txt").contains("0 added (0 directories), 0 replaced, 0 removed"));
    assert!(read("status-after.txt").contains("Live:        "), "{}", read("status-after.txt"));

    // Reset: /usr and /etc are back, the admin's own edit stays.
    let reset = read_json(&out.join("reset.json"));
    assert_eq!(reset["state"]["state"], "booted");
    assert!(!reset["etc_restored"].as_array().unwrap().is_empty());
    assert_eq!(
        std::fs::read(out.join("etc-after-reset/issue.net")).unwrap(),
        std::fs::read(out.join("booted-etc/issue.net")).unwrap()
    );
    assert_eq!(read("etc-after-reset/motd"), read("motd-edited"));
}
