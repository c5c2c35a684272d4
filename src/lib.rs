//! livefs: apply an OSTree update to a running image-based Linux system.
//!
//! The library is layered: a module only uses modules of lower layers (and its
//! own submodules). From the bottom:
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | [`fault`], [`parallel`], [`messages`], [`quote`] | crash points, threads, warnings and progress, paths in text |
//! | 1 | [`dirfd`], [`gvariant`], [`xattrs`] | dirfd-relative filesystem helpers, the serialisation, extended attributes |
//! | 2 | [`repo`] | reading a repository: objects, refs, revisions |
//! | 3 | [`tree`] | diff, plan, checkout, apply in place, the `/usr` layer |
//! | 4 | [`host`] | layout, deployments, mounts, the `/usr` overlay, `/run/livefs` |
//! | 5 | [`etc`], [`systemd`] | the `/etc` merge and journal; restarts, activation, triggers |
//! | 6 | [`live`] | the state machine: decisions, status, apply, reset and restart |
//! | 7 | [`cli`] | arguments, rendering, exit statuses |
//!
//! [`LAYERS`] is that table as data; a unit test checks every `crate::` path in
//! `src/` against it.

pub mod cli;
pub mod dirfd;
pub mod etc;
pub mod fault;
pub mod gvariant;
pub mod host;
pub mod live;
pub mod messages;
pub mod parallel;
pub mod quote;
pub mod repo;
pub mod systemd;
pub mod tree;
pub mod xattrs;

/// The layers, bottom first: a module may use the modules of lower rows only.
pub const LAYERS: &[&[&str]] = &[
    &["fault", "parallel", "messages", "quote"],
    &["dirfd", "gvariant", "xattrs"],
    &["repo"],
    &["tree"],
    &["host"],
    &["etc", "systemd"],
    &["live"],
    &["cli"],
];

#[cfg(test)]
mod layering {
    use super::LAYERS;

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|row| row.contains(&module))
    }

    /// Every `crate::MODULE` a file of `src/` mentions, with its line.
    fn uses(text: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let name: String =
                    code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                out.push((n + 1, name));
            }
        }
        out
    }

    #[test]
    fn every_module_uses_only_lower_layers() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        let mut dirs = vec![src.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        let mut checked = 0;
        let mut wrong = vec![];
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let module = rel.split(['/', '.']).next().unwrap().to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let own = layer_of(&module).unwrap_or_else(|| panic!("src/{rel}: module {module} is in no layer"));
            for (line, used) in uses(&std::fs::read_to_string(f).unwrap()) {
                let Some(theirs) = layer_of(&used) else { panic!("src/{rel}:{line}: crate::{used} is in no layer") };
                checked += 1;
                if used != module && theirs >= own {
                    wrong.push(format!("src/{rel}:{line}: {module} (layer {own}) uses {used} (layer {theirs})"));
                }
            }
        }
        assert!(checked > 100, "only {checked} uses found: is the scan broken?");
        assert!(wrong.is_empty(), "modules that use their own or a higher layer:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_scan_finds_uses() {
        let found = uses("use crate::tree::diff;\nlet x = crate::host::Host::open(p); // crate::cli\n");
        assert_eq!(found, vec![(1, "tree".to_string()), (2, "host".to_string())]);
    }
}
