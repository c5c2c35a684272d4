//! How the running system booted: `ROOT/run/ostree-booted`, which
//! ostree-prepare-root writes in the initramfs — or, on bootc's native
//! composefs backend (no OSTree), the composefs image ROOT is mounted from:
//! the mount source `composefs:HEX` (`transient:composefs=HEX` for a transient
//! root), which a soft reboot into another image changes, else the kernel
//! command line's `composefs=HEX` (`composefs=?HEX` where fs-verity is not
//! enforced).
//!
//! Up to ostree 2023.5 the file is empty. Since 2023.6 it is a GVariant `a{sv}`
//! in native byte order; since 2024.2 it always names the deployment directory
//! it booted (`backing-root-device-inode`, taken before anything was mounted),
//! which is how libostree finds the booted deployment — on a composefs-booted
//! host `/` is an overlay and its stat never matches the deployment directory.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::gvariant::{self as gv, Error as GvError};
use crate::repo::Checksum;

/// Which kind of image-based system this is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// OSTree deployments (rpm-ostree, bootc's default backend, plain ostree).
    #[default]
    Ostree,
    /// bootc's native composefs backend: images of a composefs repository.
    Composefs,
}

/// The facts `/run/ostree-booted` records (an empty file records none of
/// them), or, on bootc's native composefs backend, what the root's mount says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    /// The backend: OSTree deployments, or a composefs repository's images.
    #[serde(default)]
    pub backend: Backend,
    /// The composefs image booted (bootc's native backend): its name, and
    /// whether its fs-verity is enforced (`composefs=HEX`, not `composefs=?HEX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Checksum>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verity: bool,
    /// `(st_dev, st_ino)` of the booted deployment's directory.
    #[serde(skip)]
    pub backing_root: Option<(u64, u64)>,
    /// `/` is a composefs image: a read-only overlay, `/usr` not a mount of its own.
    pub composefs: bool,
    /// `/sysroot` is mounted read-only.
    pub sysroot_ro: bool,
    /// `/etc` is an overlay whose upper is on `/run` (`etc.transient`): its
    /// changes last until reboot only.
    pub transient_etc: Option<String>,
    /// `/` is a transient overlay (`root.transient`).
    pub root_transient: bool,
}

/// Why a root is not one livefs can serve.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(
        "{root} is neither OSTree-booted ({record} does not exist) nor booted from a composefs image (no \
         composefs= on its kernel command line)"
    )]
    NotBooted { root: String, record: String },
}

impl BootRecord {
    /// Reads `ROOT/run/ostree-booted`.
    pub fn read(root: &Path) -> anyhow::Result<BootRecord> {
        let path = root.join(crate::host::layout::OSTREE_BOOTED);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(record) = composefs_boot_record(root)? {
                    return Ok(record);
                }
                let name = root.display().to_string();
                return Err(BootError::NotBooted { root: name, record: path.display().to_string() }.into());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        BootRecord::parse(&bytes).with_context(|| format!("{} is malformed", path.display()))
    }

    /// Decodes the file's bytes; unknown keys are ignored, a known key of another
    /// type is an error.
    pub fn parse(bytes: &[u8]) -> Result<BootRecord, GvError> {
        let mut r = BootRecord::default();
        for (key, value, ty) in gv::dict(bytes)? {
            let boolean = || match (ty, value) {
                (b"b", [v]) => Ok(*v != 0),
                _ => Err(GvError("a boolean key of another type")),
            };
            match key {
                b"backing-root-device-inode" => {
                    if ty != b"(tt)" || value.len() != 16 {
                        return Err(GvError("backing-root-device-inode is not a (tt)"));
                    }
                    let word = |i: usize| u64::from_ne_bytes(value[i..i + 8].try_into().expect("8 bytes"));
                    r.backing_root = Some((word(0), word(8)));
                }
                b"composefs" => r.composefs = boolean()?,
                b"sysroot-ro" => r.sysroot_ro = boolean()?,
                b"root.transient" => r.root_transient = boolean()?,
                b"transient-etc" => {
                    if ty != b"s" {
                        return Err(GvError("transient-etc is not a string"));
                    }
                    let s = gv::string(value)?;
                    r.transient_etc = Some(String::from_utf8_lossy(s).into_owned());
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

/// An image name as the kernel command line or a mount source writes it:
/// `HEX` or `?HEX` (fs-verity not enforced). Returns it and whether fs-verity is.
pub fn parse_image(value: &str) -> Option<(Checksum, bool)> {
    let (hex, verity) = match value.strip_prefix('?') {
        Some(rest) => (rest, false),
        None => (value, true),
    };
    hex.parse().ok().map(|c| (c, verity))
}

/// The image ROOT's mount comes from, by its source (`composefs:HEX`,
/// `transient:composefs=HEX`).
fn mounted_image(root: &Path) -> Option<Checksum> {
    let root = std::fs::canonicalize(root).ok()?;
    let mounts = crate::host::mounts::mounts().ok()?;
    let m = mounts.iter().rfind(|m| m.mount_point == root)?;
    let hex = m.source.strip_prefix("composefs:").or_else(|| m.source.strip_prefix("transient:composefs="))?;
    parse_image(hex).map(|(c, _)| c)
}

/// The boot record of a root booted from a composefs image, if it is one: the
/// image its mount comes from, else the one of its kernel command line.
pub fn composefs_boot_record(root: &Path) -> anyhow::Result<Option<BootRecord>> {
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    let karg = cmdline.split_whitespace().find_map(|a| a.strip_prefix("composefs="));
    let from_cmdline = match karg {
        Some(v) => Some(parse_image(v).with_context(|| {
            format!("composefs={v} on the kernel command line of {} names no image", root.display())
        })?),
        None => None,
    };
    let image = match (mounted_image(root), from_cmdline) {
        // A soft reboot into another image keeps the command line: the mount says.
        (Some(mounted), verity) => Some((mounted, verity.is_some_and(|(_, v)| v))),
        (None, from_cmdline) => from_cmdline,
    };
    Ok(image.map(|(image, verity)| BootRecord {
        backend: Backend::Composefs,
        image: Some(image),
        verity,
        composefs: true,
        ..BootRecord::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_from_the_command_line_and_mounts() {
        let hex = "ab".repeat(64);
        assert_eq!(parse_image(&hex).map(|(_, v)| v), Some(true));
        assert_eq!(parse_image(&format!("?{hex}")).map(|(_, v)| v), Some(false));
        assert_eq!(parse_image("7c1f0d2e"), None);
    }

    /// The single-key file as ostree-prepare-root writes it (55 bytes; the key's
    /// end at 26, the entry's at 54).
    fn single_key(dev: u64, ino: u64) -> Vec<u8> {
        let mut b = b"backing-root-device-inode\0".to_vec();
        b.resize(32, 0);
        b.extend_from_slice(&dev.to_ne_bytes());
        b.extend_from_slice(&ino.to_ne_bytes());
        b.push(0);
        b.extend_from_slice(b"(tt)");
        b.push(26);
        b.push(54);
        b
    }

    /// The record's path is shown as the system would spell it (no `//run`).
    #[test]
    fn a_missing_record_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let err = BootRecord::read(dir.path()).unwrap_err().to_string();
        let want = format!("({}/run/ostree-booted does not exist)", dir.path().display());
        assert!(err.contains(&want), "{err}");
        let err = BootRecord::read(Path::new("/nonexistent-root/")).unwrap_err().to_string();
        assert!(err.contains("(/nonexistent-root/run/ostree-booted does not exist)"), "{err}");
        if !Path::new("/run/ostree-booted").exists() && composefs_boot_record(Path::new("/")).unwrap().is_none() {
            let err = BootRecord::read(Path::new("/")).unwrap_err().to_string();
            assert!(err.starts_with("/ is neither OSTree-booted (/run/ostree-booted does not exist) nor"), "{err}");
        }
    }

    #[test]
    fn empty_file_is_an_empty_record() {
        assert_eq!(BootRecord::parse(b"").unwrap(), BootRecord::default());
    }

    #[test]
    fn backing_root_device_inode() {
        let b = single_key(0x803, 1234567);
        assert_eq!(b.len(), 55);
        let r = BootRecord::parse(&b).unwrap();
        assert_eq!(r.backing_root, Some((0x803, 1234567)));
        assert!(!r.composefs);
    }

    #[test]
    fn malformed_records_are_errors() {
        let b = single_key(1, 2);
        for cut in [1, 10, 30, 54] {
            assert!(BootRecord::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_type = b.clone();
        wrong_type[50] = b'u';
        assert!(BootRecord::parse(&wrong_type).is_err());
    }
}
