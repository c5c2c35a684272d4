//! The staged deployment: `ROOT/run/ostree/staged-deployment`, a GVariant
//! `a{sv}` that rpm-ostree and bootc leave when they stage an update (the
//! deployment directory exists; its boot entry is only written at shutdown).
//! libostree reads the deployment's name from `target` → `name`
//! (`CHECKSUM.SERIAL`); so does livefs.

use std::path::Path;

use anyhow::{bail, Context};

use crate::gvariant::{self as gv, Error as GvError};

/// The staged deployment's `CHECKSUM.SERIAL`, if ROOT has one staged.
pub fn staged_name(root: &Path) -> anyhow::Result<Option<String>> {
    let path = root.join(crate::host::layout::STAGED_DEPLOYMENT);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match target_name(&bytes) {
        Ok(Some(name)) => Ok(Some(name)),
        Ok(None) => bail!("{} names no deployment (no target.name)", path.display()),
        Err(e) => Err(e).with_context(|| format!("{} is malformed", path.display())),
    }
}

/// `target.name` of the record.
fn target_name(bytes: &[u8]) -> Result<Option<String>, GvError> {
    for (key, value, ty) in gv::dict(bytes)? {
        if key != b"target" {
            continue;
        }
        if ty != b"a{sv}" {
            return Err(GvError("target is not an a{sv}"));
        }
        for (key, value, ty) in gv::dict(value)? {
            if key == b"name" {
                if ty != b"s" {
                    return Err(GvError("target.name is not a string"));
                }
                let name = std::str::from_utf8(gv::string(value)?).map_err(|_| GvError("target.name is not UTF-8"))?;
                return Ok(Some(name.to_string()));
            }
        }
    }
    Ok(None)
}
