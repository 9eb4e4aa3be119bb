//! Quality metrics.
pub mod chamfer;
pub mod fid;
pub mod fid_pipeline;
