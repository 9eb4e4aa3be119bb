//! Data sets.
pub mod toy;
