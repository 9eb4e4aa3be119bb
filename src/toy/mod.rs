//! The 2D workflow: train SimpleNet on a toy distribution, sample with DDPM/DDIM and the faster
//! solvers, measure the Chamfer distance, draw the pictures. `ToyConfig::default()` is the
//! reference protocol; [`Recipe`] names the improved one.
//!
//! - [`config`]: the run's settings and the recipes;
//! - [`train`]: the trainers (the fused CPU step, burn's autodiff elsewhere);
//! - [`sample`]: sampling points, the q(x_t) strip, DDIM inversion;
//! - [`points`]: point sets as CSV;
//! - [`run`], [`sweep`], [`study`], [`invert`]: the workflows behind `toy run`, `toy sweep`,
//!   `toy study` and `toy invert`.
//!
//! Saving and loading a trained model: [`crate::checkpoint::toy`].
pub mod config;
pub mod invert;
pub mod points;
pub mod run;
pub mod sample;
pub mod study;
pub mod sweep;
pub mod train;

pub use config::{Recipe, ToyConfig};
pub use points::{parse_csv, read_csv, write_csv};
pub use sample::{invert_round_trip, q_strip, sample_points};
pub use train::{draw_t, train, train_autodiff, train_fused, TrainPath, TrainedToy};

/// RNG streams of one seed, so that changing one use never shifts another.
pub mod stream {
    pub const DATA: u64 = 1;
    pub const INIT: u64 = 2;
    pub const TRAIN: u64 = 3;
    pub const SAMPLE: u64 = 4;
    pub const PLOT: u64 = 5;
}
