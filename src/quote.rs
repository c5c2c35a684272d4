//! Paths in text output, one per line whatever their bytes: OSTree allows any
//! UTF-8 in a name but `/`, so a name may hold a newline, a tab or a quote. A
//! path that needs it is quoted as git quotes paths (C-style escapes inside
//! double quotes); any other is printed as it is. JSON output stays exact.

use std::borrow::Cow;

/// Whether `c` cannot stand as itself in a one-line, unambiguous path.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '"' || c == '\\'
}

/// `path` as text output shows it: unchanged when it is plain, else in double
/// quotes with `\n`, `\t`, `\"`, `\\`, … and other control characters as octal
/// escapes of their UTF-8 bytes (`\302\205`), as `git` shows such names.
pub fn path(path: &str) -> Cow<'_, str> {
    if !path.chars().any(needs_escape) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 8);
    out.push('"');
    for c in path.chars() {
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// The most of an admin's value a warning quotes.
pub const EXCERPT_CHARS: usize = 40;

/// A value from a file, as a warning quotes it: one line ([`path`]'s quoting),
/// and at most its first [`EXCERPT_CHARS`] characters, with how long it was —
/// a 1 MiB value is not echoed into the terminal and the journal.
pub fn excerpt(value: &str) -> String {
    let mut chars = value.char_indices();
    match chars.nth(EXCERPT_CHARS) {
        None => path(value).into_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", path(&value[..end]), value.len()),
    }
}

/// Paths joined with `sep`, each quoted as [`path`] does.
pub fn join<'a>(paths: impl IntoIterator<Item = &'a str>, sep: &str) -> String {
    paths.into_iter().map(path).collect::<Vec<_>>().join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_quoted_in_part() {
        assert_eq!(excerpt("fast"), "fast");
        let long = "x".repeat(1 << 20);
        assert_eq!(excerpt(&long), format!("{}… (1048576 bytes)", "x".repeat(EXCERPT_CHARS)));
        let odd = format!("a\n{}", "é".repeat(60));
        let got = excerpt(&odd);
        assert!(got.starts_with("\"a\\n") && got.ends_with(" bytes)"), "{got}");
        assert_eq!(got.lines().count(), 1);
    }

    #[test]
    fn only_what_needs_it_is_quoted() {
        let cases = [
            ("/usr/bin/hello", "/usr/bin/hello"),
            ("/usr/share/a b", "/usr/share/a b"),
            ("/usr/share/é", "/usr/share/é"),
            ("/usr/a\nb", r#""/usr/a\nb""#),
            ("/usr/a\tb", r#""/usr/a\tb""#),
            ("/usr/\"q\"", r#""/usr/\"q\"""#),
            ("/usr/back\\slash", r#""/usr/back\\slash""#),
            ("/usr/\r\x07\x08\x0b\x0c", r#""/usr/\r\a\b\v\f""#),
            ("/usr/esc\x1b", r#""/usr/esc\033""#),
            ("/usr/del\x7f", r#""/usr/del\177""#),
            // A C1 control character: its two UTF-8 bytes in octal, as git shows it.
            ("/usr/nel\u{85}", r#""/usr/nel\302\205""#),
        ];
        for (raw, shown) in cases {
            assert_eq!(path(raw), shown, "{raw:?}");
            assert_eq!(path(raw).lines().count(), 1, "{raw:?} is not one line");
        }
        assert!(matches!(path("/usr/plain"), Cow::Borrowed(_)), "a plain path is not copied");
    }

    #[test]
    fn lists_quote_each_path() {
        assert_eq!(join(["/a", "/b\nc", "/d"], ", "), r#"/a, "/b\nc", /d"#);
    }
}
