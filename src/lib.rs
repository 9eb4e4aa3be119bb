//! diffuse: denoising diffusion models in Rust.
//!
//! Layout (math, networks and plumbing are kept apart):
//! - [`schedule`]: β/ᾱ tables in f64 and the forward-process math (q_sample, posterior σ).
//! - [`sampling`]: samplers as plain functions over a [`sampling::Denoiser`].
//! - [`nn`]: noise-prediction networks (they never see the schedule).
//! - [`data`]: data sets (2D toys, bundled digits, image folders).
//! - [`metrics`]: Chamfer distance, FID.
//! - [`train`], [`checkpoint`], [`run_checkpoint`]: the training loop, weight files, and a
//!   run's checkpoints written as one unit.

pub mod checkpoint;
pub mod checkpoint_report;
pub mod data;
pub mod device;
pub mod doctor;
pub mod error;
pub mod image;
pub mod metrics;
pub mod nn;
pub mod plot;
pub mod rng;
pub mod run_checkpoint;
pub mod sampling;
pub mod schedule;
pub mod toy;
pub mod train;

pub use error::{Error, Result};
