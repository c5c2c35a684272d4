//! livefs: apply an OSTree update to a running image-based Linux system.
//!
//! The library is layered by concern: [`gvariant`] decodes the serialisation,
//! [`repo`] reads a repository (objects, refs, revisions), [`diff`] compares two
//! trees, [`plan`] turns a diff into checked operations, [`checkout`] writes and
//! inspects entries of a live tree, [`apply`] executes a plan; [`sysroot`] finds
//! the deployments, [`overlay`] manages the transient `/usr` overlay, [`state`]
//! keeps the live state, [`live`] drives them on a running system, and [`cli`] is
//! the command-line surface on top.

pub mod activation;
pub mod apply;
pub mod checkout;
pub mod cli;
pub mod diff;
pub mod etc;
pub mod fault;
pub mod gvariant;
pub mod layer;
pub mod live;
pub mod mounts;
pub mod overlay;
pub mod parallel;
pub mod plan;
pub mod repo;
pub mod restart;
pub mod state;
pub mod strategy;
pub mod submounts;
pub mod sysroot;
pub mod triggers;
pub mod xattrs;
