//! The Ansible collection against a real boot: Debian 12 in QEMU with sshd,
//! driven over SSH by ansible-core (tests/vm/guest-ssh.sh keeps the guest up
//! while the host drives it; the image is vm_boot.rs's, cached in
//! /var/cache/livefs-test/vm).

mod common;

use std::path::Path;
use std::process::Command;

use common::schema::{assert_valid, validator};
use common::vm::read;
use common::*;

/// One ad-hoc Ansible task against the VM: its status word (`SUCCESS`,
/// `CHANGED`, `FAILED!`) and its result.
fn ansible(out: &Path, module: &str, args: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let run = Command::new(venv_bin("ansible"))
        .args(["-i", &out.join("inventory").display().to_string(), "vm", "-m", module, "-a", args])
        .args(extra)
        .env("ANSIBLE_COLLECTIONS_PATH", env!("CARGO_MANIFEST_DIR"))
        .env("ANSIBLE_LOCAL_TEMP", out.join("ansible-tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_SSH_RETRIES", "5")
        .env("ANSIBLE_TIMEOUT", "120")
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    eprintln!("ansible vm -m {module} -a '{args}' {extra:?}:\n{text}{}", String::from_utf8_lossy(&run.stderr));
    let (head, body) = text.split_once(" => ").unwrap_or_else(|| panic!("no result:\n{text}"));
    let status = head.rsplit(" | ").next().unwrap_or("").trim().to_string();
    // --diff prints the diff after the result: the result is the first JSON object.
    let value = serde_json::Deserializer::from_str(body).into_iter::<serde_json::Value>().next().unwrap().unwrap();
    (status, value)
}

/// The collection's module over SSH against the real Debian 12 VM (sshd and
/// python3 in the image, QEMU's user network forwarding 127.0.0.1:PORT to its
/// port 22): facts, a checked apply (nothing changed), the apply, facts again,
/// a reset, a reset with nothing left to do, and an apply with confirm_within
/// confirmed over a new connection.
#[test]
fn debian_vm_ansible_over_ssh() {
    let dir = scratch();
    let out = dir.path();
    let share = out.join("boot1");
    std::fs::create_dir_all(&share).unwrap();
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(out.join("key"))
        .output()
        .expect("cannot run ssh-keygen");
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    std::fs::copy(out.join("key.pub"), share.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(out.join("run.log")).unwrap();
    let mut vm = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/run.sh"))
        .args(["bookworm", "guest-ssh.sh"])
        .env("OUT", out)
        .env("LIVEFS", env!("CARGO_BIN_EXE_livefs"))
        .env("SSH_PORT", port.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot run tests/vm/run.sh");
    let started = std::time::Instant::now();
    while !share.join("out/ssh-ready").exists() {
        if let Some(status) = vm.try_wait().unwrap() {
            panic!("the VM stopped before sshd was ready ({status}):\n{}", read(out, "run.log"));
        }
        assert!(started.elapsed().as_secs() < 1800, "sshd not ready after 30 min:\n{}", read(out, "run.log"));
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let inventory = format!(
        "vm ansible_host=127.0.0.1 ansible_port={port} ansible_user=root ansible_ssh_private_key_file={key} \
         ansible_python_interpreter=/usr/bin/python3 \
         ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n",
        key = out.join("key").display()
    );
    std::fs::write(out.join("inventory"), inventory).unwrap();
    let exe = "executable=/run/livefs-vm/livefs";
    let steps = std::panic::catch_unwind(|| {
        let (st, info) = ansible(out, "livefs.livefs.livefs_info", exe, &[]);
        assert_eq!(st, "SUCCESS");
        assert_eq!(info["ansible_facts"]["livefs"]["state"]["state"], "booted", "{info}");
        let pending = info["status"]["pending"]["checksum"].as_str().unwrap().to_string();
        let apply = format!("{exe} allow_replacement=true");
        let (st, check) = ansible(out, "livefs.livefs.livefs", &apply, &["--check", "--diff"]);
        assert_eq!(st, "CHANGED", "{check}");
        assert_eq!(check["outcome"]["dry_run"], true);
        let (st, applied) = ansible(out, "livefs.livefs.livefs", &apply, &[]);
        assert_eq!(st, "CHANGED", "{applied}");
        assert_eq!(applied["state"]["state"], "live");
        assert_eq!(applied["state"]["commit"], pending.as_str());
        assert_eq!(applied["needs_reboot"], false, "{applied}");
        let (_, info) = ansible(out, "livefs.livefs.livefs_info", exe, &[]);
        assert_eq!(info["status"]["live"]["checksum"], pending.as_str());
        let reset = format!("{exe} state=reset");
        let (st, reset1) = ansible(out, "livefs.livefs.livefs", &reset, &[]);
        assert_eq!((st.as_str(), &reset1["state"]["state"]), ("CHANGED", &serde_json::json!("booted")), "{reset1}");
        let (st, reset2) = ansible(out, "livefs.livefs.livefs", &reset, &[]);
        assert_eq!(st, "SUCCESS", "a second reset changes nothing: {reset2}");
        // confirm_within: applied, then confirmed over a new connection (the
        // action plugin's), so the host's timer is stopped and the update stays.
        let guarded = format!("{apply} confirm_within=300");
        let (st, confirmed) = ansible(out, "livefs.livefs.livefs", &guarded, &[]);
        assert_eq!(st, "CHANGED", "{confirmed}");
        assert_eq!(confirmed["confirmed"], true, "{confirmed}");
        assert!(confirmed["confirm"]["timer"].as_str().unwrap().starts_with("livefs-confirm-"), "{confirmed}");
        let (_, info) = ansible(out, "livefs.livefs.livefs_info", exe, &[]);
        assert_eq!(info["status"]["live"]["checksum"], pending.as_str());
        assert!(info["status"]["way_back"]["confirm"].is_null(), "still awaiting a confirmation: {info}");
        let (st, _) = ansible(out, "livefs.livefs.livefs", &reset, &[]);
        assert_eq!(st, "CHANGED");
        apply_restart_over_a_killed_session(out, port);
    });
    std::fs::write(share.join("done"), b"").unwrap();
    let status = vm.wait().unwrap();
    if let Err(e) = steps {
        eprintln!("{}", read(out, "run.log"));
        std::panic::resume_unwind(e);
    }
    assert!(status.success(), "the VM scenario failed:\n{}", read(out, "run.log"));
    eprintln!("bookworm ssh: {}", read(out, "times.txt"));
    let o = share.join("out");
    let after = read(&o, "status-after.txt");
    assert!(after.contains("Activation:  finished, "), "{after}");
    // Not one request of the probe (every 20 ms, all along) failed; it saw both versions.
    let probe = read(&o, "probe.txt");
    eprintln!("the probe of the socket-activated server:\n{probe}");
    let journal = read(&o, "web-journal.txt");
    assert!(probe.starts_with("failed 0\n"), "requests failed during the live update:\n{probe}\n{journal}");
    assert!(probe.contains("version 1 ") && probe.contains("version 2 "), "{probe}");
    assert_eq!(read(&o, "web-active-before").trim(), "active");
    // The left-alone units were not restarted; the user's unit was, on request.
    assert_eq!(read(&o, "left-alone-after"), read(&o, "left-alone-before"), "a left-alone unit was restarted");
    let (user_before, user_after) = (read(&o, "user-pid-before"), read(&o, "user-pid-after"));
    assert!(user_before.trim().parse::<u32>().is_ok_and(|p| p > 0), "the user's unit did not run: {user_before}");
    assert_ne!(user_before, user_after, "livefs restart --user-units did not restart the user's unit");
}

/// An SSH command against the VM; its output.
fn ssh(out: &Path, port: u16) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-p", &port.to_string(), "-i", &out.join("key").display().to_string()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=60", "root@127.0.0.1"])
        .stdin(std::process::Stdio::null());
    c
}

fn ssh_output(out: &Path, port: u16, command: &str) -> String {
    let o = ssh(out, port).arg(command).output().expect("cannot run ssh");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `apply --restart` over an SSH session (with a terminal) killed while it
/// restarts units: it goes on, and `livefs status` shows the result. Then the
/// user's unit it left alone is restarted by `livefs restart --user-units`.
fn apply_restart_over_a_killed_session(out: &Path, port: u16) {
    let log = std::fs::File::create(out.join("killed-session.log")).unwrap();
    let mut session = ssh(out, port)
        .arg("-tt")
        .arg("/run/livefs-vm/livefs apply --allow-replacement --restart")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot run ssh");
    let started = std::time::Instant::now();
    while !ssh_output(out, port, "cat /run/livefs/activation.json 2>/dev/null").contains("\"finished\":false") {
        assert!(started.elapsed().as_secs() < 600, "no activation after 10 min:\n{}", read(out, "killed-session.log"));
        assert!(session.try_wait().unwrap().is_none(), "the apply ended early:\n{}", read(out, "killed-session.log"));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    session.kill().unwrap();
    session.wait().unwrap();
    let status = loop {
        let status: serde_json::Value =
            serde_json::from_str(&ssh_output(out, port, "/run/livefs-vm/livefs status --json")).unwrap_or_default();
        if status["activation"]["state"] == "finished" {
            break status;
        }
        assert!(started.elapsed().as_secs() < 900, "the activation did not finish: {status}");
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    assert_valid(&validator("status"), "status --json (after a killed session)", &status);
    assert_eq!(status["state"]["state"], "live", "{status}");
    let a = &status["activation"]["activation"];
    let actions: Vec<String> = a["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("{} {} {}", x["verb"].as_str().unwrap(), x["unit"].as_str().unwrap(), x["result"]["ok"]))
        .collect();
    for want in ["stop livefs-demo-web.service true", "restart livefs-demo.service true", "start lighttpd.service true"]
    {
        assert!(actions.iter().any(|a| a == want), "no {want:?} in {actions:?}");
    }
    assert!(actions.iter().all(|a| a.ends_with(" true")), "{actions:?}");
    let web = a["actions"].as_array().unwrap().iter().find(|x| x["unit"] == "livefs-demo-web.service").unwrap();
    assert!(web["reasons"].to_string().contains("socket-activated: livefs-demo-web.socket keeps listening"), "{web}");
    let skipped = |unit: &str, user: Option<&str>| -> String {
        let s = a["skipped"].as_array().unwrap().iter().find(|s| s["unit"] == unit && s["user"].as_str() == user);
        s.unwrap_or_else(|| panic!("{unit} ({user:?}) not left alone: {a}"))["reason"].as_str().unwrap().to_string()
    };
    for (unit, user, why) in [
        ("ssh.service", None, "sshd: "),
        ("systemd-journald.service", None, "the journal: "),
        ("systemd-logind.service", None, "the login manager: "),
        (
            "livefs-demo-user.service",
            Some("livefs-user"),
            "a unit of livefs-user's manager: restarted with --user-units",
        ),
    ] {
        let reason = skipped(unit, user);
        assert!(reason.starts_with(why), "{unit}: {reason}");
    }
    let restart = ssh_output(out, port, "/run/livefs-vm/livefs restart --user-units --json");
    let restart: serde_json::Value = serde_json::from_str(&restart).unwrap_or_else(|e| panic!("{e}: {restart}"));
    assert_valid(&validator("restart"), "restart --user-units --json", &restart);
    let done =
        restart["restart"]["actions"].as_array().unwrap().iter().any(|x| {
            x["unit"] == "livefs-demo-user.service" && x["user"] == "livefs-user" && x["result"]["ok"] == true
        });
    assert!(done, "{restart}");
}
