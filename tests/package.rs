//! `scripts/package deb` builds a Debian package holding the binary, a man page
//! per command with the hand-written sections, and the shell completions; the
//! RPM spec ships the same files.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::scratch;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const PAGES: [&str; 10] = [
    "livefs",
    "livefs-status",
    "livefs-apply",
    "livefs-reset",
    "livefs-rollback",
    "livefs-confirm",
    "livefs-restart",
    "livefs-auto",
    "livefs-diff",
    "livefs-apply-tree",
];
/// The automatic runs' units.
const UNITS: [&str; 3] = ["livefs-auto.service", "livefs-auto.path", "livefs-auto.timer"];
const COMPLETIONS: [&str; 3] = [
    "usr/share/bash-completion/completions/livefs",
    "usr/share/zsh/vendor-completions/_livefs",
    "usr/share/fish/vendor_completions.d/livefs.fish",
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sh(script: &str) -> String {
    run(Command::new("bash").args(["-euo", "pipefail", "-c", script]))
}

/// Builds the package once and returns its path (the script's last line).
fn build_deb() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(Command::new(src.join("scripts/package")).arg("deb"));
    let path = PathBuf::from(out.lines().last().expect("scripts/package printed nothing").trim());
    assert!(path.is_absolute() && path.is_file(), "not a package: {}", path.display());
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("deb"));
    path
}

#[test]
fn deb_package_has_binary_man_pages_and_completions() {
    let deb = build_deb();
    let field = |f: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(f)).trim().to_string();
    assert_eq!(field("Package"), "livefs");
    assert_eq!(field("Version"), format!("{VERSION}-1"));
    assert_eq!(field("Section"), "admin");
    // Linked statically on glibc (scripts/deps.sh livefs_static_build): it
    // depends on no shared library, the libc an update replaces included.
    if cfg!(target_env = "gnu") {
        assert!(!field("Depends").contains("libc6"), "{}", field("Depends"));
    }

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: BTreeSet<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| l.split_whitespace().last().unwrap().trim_start_matches("./").to_string())
        .collect();
    let mut want: BTreeSet<String> = PAGES.iter().map(|p| format!("usr/share/man/man8/{p}.8.gz")).collect();
    want.extend(COMPLETIONS.iter().map(|c| c.to_string()));
    want.extend(
        ["usr/bin/livefs", "usr/share/doc/livefs/README.md", "usr/share/doc/livefs/copyright", "etc/livefs/auto.conf"]
            .map(String::from),
    );
    want.extend(UNITS.iter().map(|u| format!("usr/lib/systemd/system/{u}")));
    assert_eq!(files, want);
    // The policy is the admin's: a conffile, kept across upgrades.
    let control = scratch();
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(control.path().join("DEBIAN")));
    let conffiles = std::fs::read_to_string(control.path().join("DEBIAN/conffiles")).unwrap_or_default();
    assert!(conffiles.lines().any(|l| l == "/etc/livefs/auto.conf"), "conffiles: {conffiles:?}");
    assert!(listing.lines().any(|l| l.starts_with("-rwxr-xr-x 0/0") && l.ends_with("./usr/bin/livefs")), "{listing}");

    // Unpacked: the binary runs, the pages render without warnings, completions load.
    let dir = scratch();
    let root = dir.path();
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root));
    let version = run(Command::new(root.join("usr/bin/livefs")).arg("--version"));
    if cfg!(target_env = "gnu") {
        let ldd = Command::new("ldd").arg(root.join("usr/bin/livefs")).output().expect("cannot run ldd");
        let said = String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
        assert!(said.contains("statically linked"), "ldd: {said}");
    }
    assert_eq!(version.trim(), format!("livefs {VERSION}"));
    for page in PAGES {
        let file = root.join(format!("usr/share/man/man8/{page}.8.gz"));
        let warnings = sh(&format!("zcat {} | groff -man -ww -z 2>&1", file.display()));
        assert_eq!(warnings, "", "{page}: groff warns");
        let text = sh(&format!("MANWIDTH=100 man --nh --nj -l {} 2>&1 | col -b", file.display()));
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES", "EXAMPLES", "SEE ALSO"] {
            assert!(text.lines().any(|l| l == section), "{page} has no {section} section:\n{text}");
        }
        let sub = page.strip_prefix("livefs-").unwrap_or("");
        assert!(text.contains(&format!("livefs {sub}").trim().to_string()), "{page}:\n{text}");
    }
    let apply =
        sh(&format!("MANWIDTH=200 man --nh --nj -l {}/usr/share/man/man8/livefs-apply.8.gz | col -b", root.display()));
    for want in ["--allow-replacement", "--dry-run", "/run/livefs/", "livefs apply --allow-replacement"] {
        assert!(apply.contains(want), "livefs-apply(8) lacks {want}:\n{apply}");
    }
    // Words, however groff spaced them.
    let squash = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let status = |code: &str, what: &str| apply.lines().map(squash).any(|l| l.starts_with(code) && l.contains(what));
    assert!(
        status("0 ", "Done") && status("3 ", "Refused, nothing changed") && status("4 ", "Another livefs"),
        "exit statuses not documented:\n{apply}"
    );
    // Every kind of JSON error, with its exit status.
    for (_, name, code, _) in livefs::cli::KINDS {
        assert!(
            apply.lines().map(squash).any(|l| l == format!("{name} ({code})")),
            "kind {name} not documented:\n{apply}"
        );
    }
    units_verify(root);
    let words = sh(&format!(
        "source {}/{}; COMP_WORDS=(livefs ap); COMP_CWORD=1; COMP_LINE='livefs ap'; COMP_POINT=9; _livefs livefs ap livefs; echo \"${{COMPREPLY[*]}}\"",
        root.display(),
        COMPLETIONS[0]
    ));
    assert_eq!(words.split_whitespace().collect::<BTreeSet<_>>(), BTreeSet::from(["apply", "apply-tree"]));
    for c in &COMPLETIONS[1..] {
        assert!(std::fs::read_to_string(root.join(c)).unwrap().contains("allow-replacement"), "{c}");
    }
}

/// systemd accepts the shipped units as they are installed: `systemd-analyze
/// verify` in the unpacked package's root, beside the host's own units (the
/// targets they order against), with livefs at the path the service runs.
fn units_verify(root: &Path) {
    sh(&format!(
        "mkdir -p {r}/usr/lib/systemd && cp -a /usr/lib/systemd/system {r}/usr/lib/systemd/",
        r = root.display()
    ));
    for u in UNITS {
        let text = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(u)).unwrap();
        assert!(text.contains("Documentation=man:livefs-auto(8)"), "{u}");
    }
    let units: Vec<String> = UNITS.iter().map(|u| format!("/usr/lib/systemd/system/{u}")).collect();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .args(&units)
        .output()
        .expect("cannot run systemd-analyze");
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    let path = std::fs::read_to_string(root.join("usr/lib/systemd/system/livefs-auto.path")).unwrap();
    for want in [
        "PathChanged=/run/ostree/staged-deployment",
        "PathChanged=/boot",
        "TriggerLimitBurst=",
        "Wants=livefs-auto.timer",
    ] {
        assert!(path.contains(want), "livefs-auto.path lacks {want}");
    }
}

/// The RPM spec is of this version and ships what the .deb ships.
#[test]
fn rpm_spec_matches_the_deb() {
    let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/livefs.spec")).unwrap();
    let version = spec.lines().find_map(|l| l.strip_prefix("Version:")).expect("no Version:").trim();
    assert_eq!(version, VERSION);
    let files: BTreeSet<&str> = spec
        .split("%files\n")
        .nth(1)
        .and_then(|s| s.split("\n%changelog").next())
        .expect("no %files section")
        .lines()
        .filter(|l| l.starts_with("%{"))
        .collect();
    let mut want: BTreeSet<String> = PAGES.iter().map(|p| format!("%{{_mandir}}/man8/{p}.8*")).collect();
    want.extend([
        "%{_bindir}/livefs".to_string(),
        "%{bash_completions_dir}/livefs".to_string(),
        "%{zsh_completions_dir}/_livefs".to_string(),
        "%{fish_completions_dir}/livefs.fish".to_string(),
    ]);
    want.extend(UNITS.iter().map(|u| format!("%{{_unitdir}}/{u}")));
    assert_eq!(files, want.iter().map(String::as_str).collect());
    assert!(spec.contains("\n%config(noreplace) %{_sysconfdir}/livefs/auto.conf\n"), "the policy is not a config file");
}
