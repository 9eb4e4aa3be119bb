//! Data sets.
pub mod image_io;
