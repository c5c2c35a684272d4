//! The admin's configuration files, read as systemd reads its own: `NAME.conf`,
//! then `NAME.conf.d/*.conf` in name order, each a `[Section]` of `Key=value`
//! lines (`#` and `;` start comments). A reader takes its section's assignments
//! in order — a later one wins, an empty one resets a list — so a drop-in
//! overrides the main file. A line that is not an assignment is reported with
//! its file and line (a warning), never fatal; nothing here decides what a key
//! means.

use std::path::Path;

/// One `Key=value` line of the section asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The file, absolute as the admin knows it (`/etc/livefs/auto.conf`).
    pub file: String,
    /// Its line, from 1.
    pub line: usize,
    pub key: String,
    pub value: String,
}

impl Assignment {
    /// `FILE:LINE`, for warnings.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The assignments of `[section]` in `text`, the contents of `file`. A line of
/// that section that is not an assignment is a warning.
pub fn parse(text: &str, file: &str, section: &str) -> Vec<Assignment> {
    let header = format!("[{section}]");
    let mut in_section = false;
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_section = line == header;
            continue;
        }
        if !in_section {
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => out.push(Assignment {
                file: file.to_string(),
                line: n + 1,
                key: key.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => crate::messages::warn(format!(
                "{file}:{}: {} is not a Key=value assignment; ignored",
                n + 1,
                crate::quote::excerpt(line)
            )),
        }
    }
    out
}

/// The assignments of `[section]` in `ROOT/conf`, then in `ROOT/conf_d/*.conf`
/// in name order. A file that cannot be read is skipped, and said.
pub fn read(root: &Path, conf: &str, conf_d: &str, section: &str) -> Vec<Assignment> {
    let mut files = vec![conf.to_string()];
    if let Ok(dir) = std::fs::read_dir(root.join(conf_d)) {
        let mut names: Vec<String> =
            dir.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.ends_with(".conf")).collect();
        names.sort();
        files.extend(names.into_iter().map(|n| format!("{conf_d}/{n}")));
    }
    let mut out = Vec::new();
    for rel in files {
        match std::fs::read_to_string(root.join(&rel)) {
            Ok(text) => out.extend(parse(&text, &format!("/{rel}"), section)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => crate::messages::warn(format!("cannot read /{rel}: {e}; its settings are ignored")),
        }
    }
    out
}

/// A systemd boolean.
pub fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sections_assignments_with_file_and_line() {
        let text = "# c\n[Other]\nA=1\n[Auto]\n; c\nMaxStrategy = reboot\nnonsense\nRestart=\n=x\n";
        let got = parse(text, "/etc/livefs/auto.conf", "Auto");
        let got: Vec<(usize, &str, &str)> = got.iter().map(|a| (a.line, a.key.as_str(), a.value.as_str())).collect();
        assert_eq!(got, [(6, "MaxStrategy", "reboot"), (8, "Restart", "")]);
        // Warnings are process-wide: other tests' may be there too.
        let warnings = crate::messages::take();
        for want in [
            "/etc/livefs/auto.conf:7: nonsense is not a Key=value assignment; ignored",
            "/etc/livefs/auto.conf:9: =x is not a Key=value assignment; ignored",
        ] {
            assert!(warnings.iter().any(|w| w == want), "{want} not in {warnings:?}");
        }
    }

    #[test]
    fn the_main_file_then_drop_ins_in_name_order() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("etc/x.conf.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(root.path().join("etc/x.conf"), "[S]\nK=main\n").unwrap();
        std::fs::write(d.join("20-b.conf"), "[S]\nK=b\n").unwrap();
        std::fs::write(d.join("10-a.conf"), "[S]\nK=a\n").unwrap();
        std::fs::write(d.join("30-c.txt"), "[S]\nK=c\n").unwrap();
        let got = read(root.path(), "etc/x.conf", "etc/x.conf.d", "S");
        let at: Vec<String> = got.iter().map(|a| format!("{} {}", a.at(), a.value)).collect();
        assert_eq!(at, ["/etc/x.conf:2 main", "/etc/x.conf.d/10-a.conf:2 a", "/etc/x.conf.d/20-b.conf:2 b"]);
        assert!(read(&root.path().join("none"), "etc/x.conf", "etc/x.conf.d", "S").is_empty());
    }

    #[test]
    fn booleans_as_systemd_spells_them() {
        for (v, want) in [("yes", Some(true)), (" On", Some(true)), ("1", Some(true)), ("false", Some(false))] {
            assert_eq!(boolean(v), want, "{v}");
        }
        assert_eq!(boolean("maybe"), None);
        assert_eq!(boolean(""), None);
    }
}
