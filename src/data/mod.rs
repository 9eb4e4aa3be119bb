//! Data sets.
pub mod digits;
pub mod image_folder;
pub mod image_io;
pub mod image_set;
pub mod labels;
pub mod layouts;
pub mod toy;
