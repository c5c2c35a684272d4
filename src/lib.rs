//! livefs: apply an OSTree update to a running image-based Linux system.
//!
//! The library is layered by concern: [`gvariant`] decodes the serialisation,
//! [`repo`] reads a repository (objects, refs, revisions), [`diff`] compares two
//! trees, and [`cli`] is the command-line surface on top.

pub mod cli;
pub mod diff;
pub mod gvariant;
pub mod repo;
