//! diffuse: denoising diffusion models in Rust — training noise-prediction networks, sampling
//! (DDPM, DDIM and faster solvers) with classifier-free guidance and its successors, and
//! measuring quality (Chamfer distance, FID).
//!
//! # Layers
//!
//! Lower layers never use higher ones; the command-line program (`src/cli/`, not part of the
//! library) sits on top and only parses arguments and prints. See `ARCHITECTURE.md`.
//!
//! 1. Foundations: [`error`] (one error type, naming the file or config field at fault),
//!    [`files`] (atomic writes, JSON), [`rng`] (seeded host randomness), [`device`] (CPU and
//!    GPU backends), [`plot`].
//! 2. Math and networks, apart from each other:
//!    - [`schedule`]: β/ᾱ tables in f64 and the forward process q(x_t | x₀);
//!    - [`sampling`]: samplers over any [`sampling::Denoiser`], one signature for all, the
//!      noise levels built outside them, guidance as denoiser wrappers with one type per
//!      method;
//!    - [`nn`]: the networks (SimpleNet, the UNet, Inception-v3, the digits judge), which
//!      never see the schedule; their CPU kernels are in the `diffuse-kernels` crate.
//! 3. Data and measurements: [`data`] (2D toys, the bundled digits, image data sets in four layouts; JPEG
//!    through the `diffuse-jpeg` crate), [`metrics`] (Chamfer, FID and its statistics files —
//!    `metrics::stats_file::load_stats` reads NumPy `.npz` and diffuse's own —, the digits'
//!    Fréchet distance), [`stats`] (summaries over seeds).
//! 4. Training and checkpoints: [`train`] (optimizer, learning-rate schedule, EMA, mixed
//!    precision, Ctrl-C), [`checkpoint`] (weights and metadata, a run's checkpoint as one
//!    unit, per-workflow save/load).
//! 5. Workflows: [`toy`] (the 2D study) and [`image`] (class-conditional images), each with
//!    its config, trainer and the studies behind the commands; [`doctor`] (self-check);
//!    [`report`] (`RUN/report.html`, one self-contained page of a run folder).
//!
//! The optional `cli` feature (on by default, needed by the binary) derives `clap::ValueEnum`
//! for the library's enums; without it the library does not depend on `clap`.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod doctor;
pub mod error;
pub mod files;
pub mod image;
pub mod metrics;
pub mod nn;
pub mod objective;
pub mod plot;
pub mod report;
pub mod rng;
pub mod sampling;
pub mod schedule;
pub mod stats;
pub mod toy;
pub mod train;

pub use error::{Error, Result};
