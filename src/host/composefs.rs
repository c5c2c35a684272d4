//! bootc's native composefs backend's deployments, as bootc finds them: no
//! OSTree, but a composefs repository in `SYSROOT/composefs` whose images are
//! the OS versions (which one is booted: [`crate::host::booted`]). A deployment is an image with its state in `SYSROOT/state/deploy/HEX/`
//! (its `etc`, `var`); the boot entries (`boot/loader/entries/*.conf`, Type 1,
//! as bootc writes them) name their image with `composefs=` in `options`. The
//! pending deployment is the staged one (`ROOT/run/composefs/staged-deployment`,
//! JSON `{"depl_id": HEX, …}`), else the default boot entry's image when it is
//! not the booted one.

use std::path::Path;

use anyhow::Context;

use crate::host::booted::{parse_image, BootRecord};
use crate::host::layout::{COMPOSEFS_STAGED as STAGED, COMPOSEFS_STATE as STATE};
use crate::host::sysroot::{Deployment, System};
use crate::repo::Checksum;

/// The stateroot name livefs gives the deployments of this backend.
pub const OSNAME: &str = "composefs";

/// The deployments: an image with a state directory (`SYSROOT/state/deploy/HEX`).
fn deployments(sysroot: &Path) -> anyhow::Result<Vec<Deployment>> {
    let dir = sysroot.join(STATE);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        // No deployment at all: the booted image is named as having no state.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(checksum) = e.file_name().to_str().and_then(|n| n.parse::<Checksum>().ok()) else { continue };
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        out.push(Deployment::image(OSNAME, checksum, e.path()));
    }
    out.sort_by_key(|d| d.checksum);
    Ok(out)
}

/// One boot entry: its file name, `sort-key`, image and kernel arguments
/// (but `composefs=`, which differs between any two deployments).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    file: String,
    sort_key: Option<String>,
    image: Checksum,
    kargs: String,
}

fn entries(sysroot: &Path) -> anyhow::Result<Vec<Entry>> {
    let dir = sysroot.join("boot/loader/entries");
    let list = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in list.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if !file.ends_with(".conf") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).with_context(|| format!("cannot read {}", e.path().display()))?;
        if let Some(entry) = parse_entry(&file, &text) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// A Type 1 entry's fields, if it names a composefs image.
fn parse_entry(file: &str, text: &str) -> Option<Entry> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(char::is_whitespace)?;
            (k == key).then(|| v.trim().to_string())
        })
    };
    let options = field("options").unwrap_or_default();
    let image = options.split_whitespace().find_map(|o| o.strip_prefix("composefs=")).and_then(parse_image)?.0;
    let kargs = options.split_whitespace().filter(|o| !o.starts_with("composefs=")).collect::<Vec<_>>().join(" ");
    Some(Entry { file: file.to_string(), sort_key: field("sort-key"), image, kargs })
}

/// The boot order: by `sort-key` where the entries have one (systemd-boot),
/// else by file name, descending (GRUB, as bootc sorts them); the first is
/// the default.
fn boot_order(mut entries: Vec<Entry>) -> Vec<Entry> {
    if entries.iter().all(|e| e.sort_key.is_some()) {
        entries.sort_by(|a, b| a.sort_key.cmp(&b.sort_key).then(b.file.cmp(&a.file)));
    } else {
        entries.sort_by(|a, b| b.file.cmp(&a.file));
    }
    entries
}

/// The staged deployment's image, if one is staged.
fn staged(root: &Path) -> anyhow::Result<Option<Checksum>> {
    let path = root.join(STAGED);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
    let id = v["depl_id"].as_str().with_context(|| format!("{} has no depl_id", path.display()))?;
    Ok(Some(id.parse().with_context(|| format!("{}: depl_id {id:?} names no image", path.display()))?))
}

/// The system of a root booted from image `boot.image`.
pub fn load(root: &Path, sysroot: &Path, boot: BootRecord) -> anyhow::Result<System> {
    let booted_image = boot.image.context("a composefs boot record without an image")?;
    let sysroot =
        &std::fs::canonicalize(sysroot).with_context(|| format!("cannot open sysroot {}", sysroot.display()))?;
    let mut deployments = deployments(sysroot)?;
    let order = boot_order(entries(sysroot)?);
    for d in &mut deployments {
        d.kargs = order.iter().find(|e| e.image == d.checksum).map(|e| e.kargs.clone());
    }
    let find = |image: Checksum| deployments.iter().find(|d| d.checksum == image).cloned();
    let booted = find(booted_image)
        .with_context(|| format!("the booted image {booted_image} has no state in {}/{STATE}", sysroot.display()))?;
    let (staged, pending_error) = match staged(root) {
        Ok(s) => (s, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let next = staged.or_else(|| order.first().map(|e| e.image));
    let pending = match next {
        Some(image) if pending_error.is_none() && image != booted_image => match find(image) {
            Some(d) => Some(d),
            None => {
                let e = format!("the next deployment's image {image} has no state in {}/{STATE}", sysroot.display());
                return Ok(System::new(root, sysroot, deployments, booted, None, Some(e), boot));
            }
        },
        _ => None,
    };
    Ok(System::new(root, sysroot, deployments, booted, pending, pending_error, boot))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries as bootc writes them → the boot order (the default first).
    #[test]
    fn boot_entries_and_their_order() {
        let (a, b) = ("aa".repeat(64), "bb".repeat(64));
        let entry = |file: &str, image: &str, sort: Option<&str>| {
            let sort = sort.map(|s| format!("sort-key {s}\n")).unwrap_or_default();
            parse_entry(
                file,
                &format!(
                    "title Debian\n{sort}version 1\nlinux /x/vmlinuz\noptions root=UUID=1 rw composefs=?{image}\n"
                ),
            )
            .unwrap()
        };
        let e = entry("bootc_debian-1-1.conf", &a, None);
        assert_eq!((e.kargs.as_str(), e.image.to_hex()), ("root=UUID=1 rw", a.clone()));
        assert_eq!(parse_entry("x.conf", "options ostree=/ostree/boot.1/x rw\n"), None, "an OSTree entry");
        // GRUB: file names, descending.
        let order =
            boot_order(vec![entry("bootc_debian-1-1.conf", &a, None), entry("bootc_debian-2-0.conf", &b, None)]);
        assert_eq!(order[0].image.to_hex(), b);
        // systemd-boot: sort-key, ascending.
        let order = boot_order(vec![entry("z.conf", &a, Some("0")), entry("a.conf", &b, Some("1"))]);
        assert_eq!(order[0].image.to_hex(), a);
    }
}
