//! The VM tests' side of a real boot (tests/vm/run.sh): booting an image once
//! per guest script, and reading what the guest left.

use std::path::Path;
use std::process::Command;

/// A file the guest (or run.sh) left.
pub fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// A command the guest ran: its stdout, after checking its exit status and that
/// it printed nothing on stderr (no systemctl noise anywhere).
pub fn quiet_ok(dir: &Path, name: &str) -> String {
    let (rc, err) = (read(dir, &format!("{name}.rc")), read(dir, &format!("{name}.err")));
    assert_eq!(rc.trim(), "0", "{name} failed:\n{err}\n{}", read(dir, &format!("{name}.out")));
    assert_eq!(err, "", "{name} wrote to stderr");
    read(dir, &format!("{name}.out"))
}

/// Boots `release`'s image once per guest script (tests/vm/run.sh); the results
/// are in the returned directory's `bootN/`.
pub fn run_vm(release: &str, scripts: &[&str]) -> super::TempDir {
    let dir = super::scratch();
    let run = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/run.sh"))
        .arg(release)
        .args(scripts)
        .env("OUT", dir.path())
        .env("LIVEFS", env!("CARGO_BIN_EXE_livefs"))
        .output()
        .expect("cannot run tests/vm/run.sh");
    assert!(
        run.status.success(),
        "VM scenario failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!("{release}: {}", read(dir.path(), "times.txt"));
    dir
}
