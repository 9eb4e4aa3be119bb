//! Quality metrics.
pub mod chamfer;
pub mod digit_frechet;
pub mod fid;
pub mod fid_pipeline;
pub mod stats_file;
