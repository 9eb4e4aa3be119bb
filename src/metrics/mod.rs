//! Quality metrics.
pub mod fid;
pub mod fid_pipeline;
