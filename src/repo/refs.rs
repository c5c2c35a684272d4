//! Refs and revision parsing, following `ostree rev-parse`.

use std::path::Path;

use anyhow::Context;

use super::{Checksum, Repo, RepoError};

/// Whether `s` is a valid ref: `/`-separated components matching
/// `[A-Za-z0-9_][-._A-Za-z0-9]*` (OSTree's rule), so a ref can never escape `refs/`.
fn valid_ref(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|c| {
            let mut chars = c.chars();
            matches!(chars.next(), Some(ch) if ch.is_ascii_alphanumeric() || ch == '_')
                && chars.all(|ch| ch.is_ascii_alphanumeric() || "-._".contains(ch))
        })
}

fn read_ref_file(path: &Path) -> anyhow::Result<Option<Checksum>> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let s = s.trim_end();
            let c = s.parse().with_context(|| format!("ref file {} is corrupt", path.display()))?;
            Ok(Some(c))
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read ref {}", path.display())),
    }
}

pub(super) fn resolve(repo: &Repo, rev: &str) -> anyhow::Result<Checksum> {
    if Checksum::is_valid_hex(rev) {
        return Ok(rev.parse()?);
    }
    if !rev.is_empty() && rev.len() < 64 && rev.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        let found = repo.commits_with_prefix(rev)?;
        match found.len() {
            0 => {}
            1 => return Ok(found[0]),
            n => return Err(RepoError::AmbiguousRev(rev.to_string(), n).into()),
        }
    }
    if let Some(base) = rev.strip_suffix('^') {
        let c = resolve(repo, base)?;
        let commit = repo.read_commit(c)?;
        return commit.parent.ok_or_else(|| RepoError::NoParent(c, rev.to_string()).into());
    }
    let refs = repo.path().join("refs");
    let candidates = match rev.split_once(':') {
        Some((remote, name)) => {
            if !valid_ref(remote) || remote.contains('/') || !valid_ref(name) {
                return Err(RepoError::InvalidRef(rev.to_string()).into());
            }
            vec![refs.join("remotes").join(remote).join(name)]
        }
        None => {
            if !valid_ref(rev) {
                return Err(RepoError::InvalidRef(rev.to_string()).into());
            }
            vec![refs.join("heads").join(rev), refs.join("remotes").join(rev), refs.join("mirrors").join(rev)]
        }
    };
    for path in candidates {
        if let Some(c) = read_ref_file(&path)? {
            return Ok(c);
        }
    }
    Err(RepoError::RefNotFound(rev.to_string()).into())
}

/// Points local ref `name` at `target`, or deletes it for `None`; atomic.
pub(super) fn set(repo: &Repo, name: &str, target: Option<Checksum>) -> anyhow::Result<()> {
    if !valid_ref(name) {
        return Err(RepoError::InvalidRef(name.to_string()).into());
    }
    write_ref(&repo.path().join("refs/heads"), name, target)
}

fn write_ref(heads: &Path, name: &str, target: Option<Checksum>) -> anyhow::Result<()> {
    let path = heads.join(name);
    match target {
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove ref {}", path.display())),
        },
        Some(c) => {
            let dir = path.parent().context("ref without a directory")?;
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let tmp = dir.join(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
            std::fs::write(&tmp, format!("{c}\n")).with_context(|| format!("cannot write ref {}", path.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("cannot write ref {}", path.display()))
        }
    }
}

pub(super) fn list(repo: &Repo) -> anyhow::Result<Vec<(String, Checksum)>> {
    let mut out = Vec::new();
    let refs = repo.path().join("refs");
    walk(&refs.join("heads"), "", &mut out)?;
    if let Ok(remotes) = std::fs::read_dir(refs.join("remotes")) {
        for r in remotes.flatten() {
            let name = r.file_name().to_string_lossy().into_owned();
            walk(&r.path(), &format!("{name}:"), &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, Checksum)>) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !valid_ref(&name) {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            walk(&path, &format!("{prefix}{name}/"), out)?;
        } else if let Some(c) = read_ref_file(&path)? {
            out.push((format!("{prefix}{name}"), c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_ref;

    #[test]
    fn ref_names() {
        assert!(valid_ref("exampleos/x86_64/stable"));
        assert!(valid_ref("_x.y-z"));
        for bad in ["", "../etc", "a//b", "a/", "-a", "a b", "/a"] {
            assert!(!valid_ref(bad), "{bad}");
        }
    }
}
