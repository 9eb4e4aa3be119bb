//! The image workflow: class-conditional UNet training with classifier-free guidance, guided
//! sampling to PNG files, grids, and the studies of the digits demo.
//! `ImageTrainConfig::reference()` is the course's AFHQ protocol.
//!
//! - [`config`]: the run's settings and presets;
//! - [`train`]: the training loop in named steps; [`metrics_log`]: `RUN/metrics.jsonl`;
//!   [`train_eval`]: FID (digits: Fréchet distance) during training;
//! - [`generate`]: labels → images through a sampler and a guidance method;
//! - [`output`]: sample folders and grids;
//! - [`demo`], [`sweep`], [`cfg_sweep`], [`invert`], [`judge`]: the workflows behind
//!   `image run`, `image sweep`, `image cfg-sweep`, `image invert` and `image judge`.
//!
//! A run folder holds its checkpoints ([`crate::checkpoint::image`]: each step's weights,
//! config and resume state as one unit), `config.json` ([`RunFile`]), `metrics.jsonl`,
//! `loss.png` and `preview/`.
pub mod cfg_sweep;
pub mod config;
pub mod demo;
pub mod generate;
pub mod invert;
pub mod judge;
pub mod metrics_log;
pub mod output;
pub mod study;
pub mod sweep;
pub mod train;
pub mod train_eval;

pub use crate::checkpoint::image::{load, weights_file, ImageCheckpointMeta};
pub use config::{DataSpec, DemoSampling, EvalSpec, ImageTrainConfig, Preset, Recipe, RunFile};
pub use generate::{class_index, draw_labels, image_spec, model_shape, Generator};
pub use output::{grid_path, save_grid, to_image, to_u8, write_class_grid, write_samples};
pub use train::{train, train_with, Evaluate, Evaluation, Start, TrainOptions, TrainOutcome};
