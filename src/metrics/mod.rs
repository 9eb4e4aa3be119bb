//! Quality metrics.
pub mod chamfer;
pub mod digit_frechet;
pub mod fid;
pub mod fid_pipeline;
