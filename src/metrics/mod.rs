//! Quality metrics.
pub mod chamfer;
