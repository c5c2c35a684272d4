//! Trees: comparing two commits' trees ([`diff`]), turning a difference into
//! checked operations ([`plan`]), writing and checking entries of a live tree
//! ([`checkout`]), executing a plan in place ([`apply`]), and building the
//! `/usr` layer off to the side ([`layer`]).

pub mod apply;
pub mod checkout;
pub mod diff;
pub mod layer;
pub mod plan;
