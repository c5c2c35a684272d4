//! livefs: apply an OSTree update to a running image-based Linux system.
//!
//! The library is layered: a module only uses modules of lower layers (and its
//! own submodules). From the bottom:
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | [`fault`], [`parallel`], [`messages`], [`quote`], [`clock`] | crash points, threads, warnings and progress, paths in text, times |
//! | 1 | [`dirfd`], [`gvariant`], [`xattrs`], [`conf`], [`journal`] | dirfd-relative filesystem helpers, the serialisation, extended attributes, the admin's configuration files, journal entries |
//! | 2 | [`repo`] | reading a repository: objects, refs, revisions |
//! | 3 | [`tree`] | diff, plan, checkout, apply in place, the `/usr` layer |
//! | 4 | [`host`] | layout, deployments, mounts, the `/usr` overlay, `/run/livefs` |
//! | 5 | [`etc`], [`systemd`] | the `/etc` merge and journals; restarts, activation, triggers |
//! | 6 | [`health`] | the checks after a live apply (units, greenboot's checks) and their verdict |
//! | 7 | [`live`] | the state machine: decisions, status, apply, reset, rollback and restart |
//! | 8 | [`cli`] | arguments, rendering, exit statuses |
//!
//! [`LAYERS`] is that table as data; a unit test checks every `crate::` path in
//! `src/` against it.

pub mod cli;
pub mod clock;
pub mod conf;
pub mod dirfd;
pub mod etc;
pub mod fault;
pub mod gvariant;
pub mod health;
pub mod host;
pub mod journal;
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
    &["fault", "parallel", "messages", "quote", "clock"],
    &["dirfd", "gvariant", "xattrs", "conf", "journal"],
    &["repo"],
    &["tree"],
    &["host"],
    &["etc", "systemd"],
    &["health"],
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
        let files = rust_files();
        let mut checked = 0;
        let mut wrong = vec![];
        for (rel, text) in &files {
            let module = rel.split(['/', '.']).next().unwrap().to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let own = layer_of(&module).unwrap_or_else(|| panic!("src/{rel}: module {module} is in no layer"));
            for (line, used) in uses(text) {
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

    /// Every `src/` file's path (relative to `src/`) and text.
    fn rust_files() -> Vec<(String, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = vec![];
        let mut dirs = vec![src.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
                    out.push((rel, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out
    }

    /// The code of every `src/` file, up to its `#[cfg(test)]` module.
    fn sources() -> Vec<(String, String)> {
        let code = |text: &str| text.split("\n#[cfg(test)]").next().unwrap_or("").to_string();
        rust_files().into_iter().map(|(rel, text)| (rel, code(&text))).collect()
    }

    /// Each function's lines, from its `fn` line to the brace closing it at the
    /// same indentation.
    fn function_lengths(code: &str) -> Vec<(usize, usize)> {
        let lines: Vec<&str> = code.lines().collect();
        let mut out = vec![];
        for (i, line) in lines.iter().enumerate() {
            let body = line.trim_start();
            let indent = &line[..line.len() - body.len()];
            let head = ["pub(crate) ", "pub(super) ", "pub ", "const ", "unsafe "]
                .iter()
                .fold(body, |b, p| b.strip_prefix(p).unwrap_or(b));
            if !head.starts_with("fn ") || line.trim_end().ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            let end = if line.trim_end().ends_with('}') {
                Some(i)
            } else {
                lines[i..].iter().position(|l| *l == close).map(|n| i + n)
            };
            out.push((i + 1, end.map_or(usize::MAX, |e| e - i + 1)));
        }
        out
    }

    /// Functions stay short enough to read at once: a longer one is split
    /// into steps with names (as `activation::decide` is).
    #[test]
    fn functions_are_at_most_80_lines() {
        assert_eq!(function_lengths("fn a() {\n    x;\n}\n    pub fn b() { y }\nfn c();\n"), vec![(1, 3), (4, 1)]);
        let mut long = vec![];
        let mut counted = 0;
        for (file, code) in sources() {
            for (line, n) in function_lengths(&code) {
                counted += 1;
                if n > 80 {
                    long.push(format!("src/{file}:{line}: {n} lines"));
                }
            }
        }
        assert!(counted > 300, "only {counted} functions found: is the scan broken?");
        assert!(long.is_empty(), "functions over 80 lines:\n{}", long.join("\n"));
    }

    /// The sibling modules a file of subsystem `sub` names: `crate::SUB::X`,
    /// `crate::SUB::{X, Y::z}` and `super::X`.
    fn sibling_uses(sub: &str, code: &str) -> std::collections::BTreeSet<String> {
        let ident =
            |t: &str| t.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
        let mut out = std::collections::BTreeSet::new();
        for prefix in [format!("crate::{sub}::"), "super::".to_string()] {
            for (i, _) in code.match_indices(&prefix) {
                let rest = &code[i + prefix.len()..];
                match rest.strip_prefix('{') {
                    Some(group) => out.extend(group.split('}').next().unwrap_or("").split(',').map(ident)),
                    None => drop(out.insert(ident(rest))),
                }
            }
        }
        out.retain(|m| !m.is_empty());
        out
    }

    /// Within a subsystem the modules are layered too: no two of them use each
    /// other, however indirectly (a cycle means a concern is split wrongly).
    #[test]
    fn no_module_cycles_within_a_subsystem() {
        assert_eq!(
            sibling_uses("host", "use crate::host::{layout, Host};\nuse super::mounts::x;\ncrate::host::sysroot::S"),
            ["Host", "layout", "mounts", "sysroot"].map(String::from).into()
        );
        let mut edges: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<String>> =
            Default::default();
        for (rel, code) in sources() {
            let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
            if let [sub, module] = parts[..] {
                edges.insert((sub.into(), module.into()), sibling_uses(sub, &code));
            }
        }
        let mut cycles = vec![];
        for (sub, module) in edges.keys() {
            // Depth-first from the module: reaching it again is a cycle.
            let (mut stack, mut seen) = (vec![module.clone()], std::collections::BTreeSet::new());
            while let Some(m) = stack.pop() {
                for next in edges.get(&(sub.clone(), m)).into_iter().flatten() {
                    if next == module {
                        cycles.push(format!("{sub}::{module}"));
                    } else if seen.insert(next.clone()) {
                        stack.push(next.clone());
                    }
                }
            }
        }
        cycles.dedup();
        assert!(cycles.is_empty(), "modules on a cycle of uses: {cycles:?}");
    }

    #[test]
    fn the_scan_finds_uses() {
        let found = uses("use crate::tree::diff;\nlet x = crate::host::Host::open(p); // crate::cli\n");
        assert_eq!(found, vec![(1, "tree".to_string()), (2, "host".to_string())]);
    }
}
