//! How the running system booted: `ROOT/run/ostree-booted`, which
//! ostree-prepare-root writes in the initramfs.
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

/// The facts `/run/ostree-booted` records. An empty file records none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
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
    #[error("{root} is not an OSTree-booted system ({record} does not exist)")]
    NotBooted { root: String, record: String },
    #[error(
        "{0} boots with bootc's native composefs backend (composefs= on the kernel command line, no \
         /run/ostree-booted): it has no OSTree deployments, which livefs needs"
    )]
    BootcComposefs(String),
}

impl BootRecord {
    /// Reads `ROOT/run/ostree-booted`.
    pub fn read(root: &Path) -> anyhow::Result<BootRecord> {
        let path = root.join(crate::host::layout::OSTREE_BOOTED);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
                let name = root.display().to_string();
                if cmdline.split_whitespace().any(|a| a.starts_with("composefs=")) {
                    return Err(BootError::BootcComposefs(name).into());
                }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(err.ends_with(&want), "{err}");
        let err = BootRecord::read(Path::new("/nonexistent-root/")).unwrap_err().to_string();
        assert!(err.contains("(/nonexistent-root/run/ostree-booted does not exist)"), "{err}");
        if !Path::new("/run/ostree-booted").exists() {
            let err = BootRecord::read(Path::new("/")).unwrap_err().to_string();
            assert_eq!(err, "/ is not an OSTree-booted system (/run/ostree-booted does not exist)");
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
