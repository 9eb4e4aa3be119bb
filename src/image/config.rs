//! Everything that defines an image training run, and its presets.
use serde::{Deserialize, Serialize};

use crate::device::Precision;
use crate::nn::unet::UNetConfig;
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::train::OptimConfig;
use crate::{Error, Result};

/// Named starting points of [`ImageTrainConfig`]; every field is also a flag of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The reference AFHQ protocol (58.8 M-parameter UNet, batch 16, 100k steps).
    Afhq,
    /// A small UNet on the bundled digits (8×8) that trains on a CPU in minutes.
    Digits,
}

impl Preset {
    /// The digits preset for the bundled digits, the reference (AFHQ) otherwise.
    pub fn for_data(data: &str) -> Self {
        if data == "digits" {
            Preset::Digits
        } else {
            Preset::Afhq
        }
    }

    /// The preset's configuration.
    pub fn config(self) -> ImageTrainConfig {
        match self {
            Preset::Afhq => ImageTrainConfig::reference(),
            Preset::Digits => ImageTrainConfig::digits(),
        }
    }

    /// The image side the preset trains at (digits: native 8×8; AFHQ: the course's 64×64).
    pub fn image_size(self) -> usize {
        match self {
            Preset::Digits => 8,
            Preset::Afhq => 64,
        }
    }
}

/// Everything that defines an image training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageTrainConfig {
    /// Network sizes.
    pub unet: UNetConfig,
    /// Variance schedule.
    pub schedule: ScheduleConfig,
    /// Adam settings and learning-rate schedule.
    pub optim: OptimConfig,
    /// Images per step.
    pub batch_size: usize,
    /// Optimisation steps.
    pub steps: usize,
    /// Probability of replacing a label by the null class 0 during training (CFG).
    pub p_uncond: f64,
    /// EMA decay of the weights (None: off, the reference).
    pub ema_decay: Option<f64>,
    /// Checkpoint (and resume state) every this many steps.
    pub checkpoint_every: usize,
    /// Preview grid every this many steps (0: never).
    pub preview_every: usize,
    /// Steps of the DDIM sampler used for previews.
    pub preview_steps: usize,
    /// Seed of initialisation, batches, timesteps, noise and dropout.
    pub seed: u64,
    /// How many of the newest checkpoints to keep in the run folder (at least 1).
    #[serde(default = "default_keep_checkpoints")]
    pub keep_checkpoints: usize,
    /// Arithmetic of the network in training (bf16: mixed precision with f32 master weights).
    /// Absent from runs saved before it existed, which trained in f32.
    #[serde(default)]
    pub precision: Precision,
}

fn default_keep_checkpoints() -> usize {
    2
}

impl ImageTrainConfig {
    /// The reference AFHQ protocol: batch 16, Adam 2e-4 with 200 warm-up steps, 100,000 steps,
    /// p_uncond 0.1, seed 63, checkpoint every 200 steps. (The reference previews with
    /// 1000-step DDPM; previews here use DDIM-50, which does not change training.)
    pub fn reference() -> Self {
        Self {
            unet: UNetConfig::default(),
            schedule: ScheduleConfig::default(),
            optim: OptimConfig {
                lr: 2e-4,
                warmup_steps: 200,
                ..OptimConfig::default()
            },
            batch_size: 16,
            steps: 100_000,
            p_uncond: 0.1,
            ema_decay: None,
            checkpoint_every: 200,
            preview_every: 200,
            preview_steps: 50,
            seed: 63,
            keep_checkpoints: default_keep_checkpoints(),
            precision: Precision::F32,
        }
    }

    /// A small run on the bundled digits (native 8×8) that trains on a 2-core CPU in minutes.
    pub fn digits() -> Self {
        Self {
            unet: UNetConfig::digits(),
            optim: OptimConfig {
                lr: 1e-3,
                warmup_steps: 100,
                schedule: crate::train::LrSchedule::Cosine,
                min_lr_frac: 0.05,
                grad_clip: Some(1.0),
                ..OptimConfig::default()
            },
            batch_size: 64,
            steps: 1500,
            ema_decay: Some(0.995),
            checkpoint_every: 500,
            preview_every: 500,
            preview_steps: 25,
            seed: 63,
            ..Self::reference()
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.unet.validate()?;
        self.optim.validate()?;
        NoiseSchedule::new(&self.schedule)?;
        if self.steps == 0 {
            return Err(Error::invalid("train.steps", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("train.batch_size", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.p_uncond) {
            return Err(Error::invalid(
                "train.p_uncond",
                format!("must be in [0, 1], got {}", self.p_uncond),
            ));
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return Err(Error::invalid(
                    "train.ema_decay",
                    format!("decay must be in [0, 1), got {d}"),
                ));
            }
        }
        if self.checkpoint_every == 0 {
            return Err(Error::invalid(
                "train.checkpoint_every",
                "must be at least 1",
            ));
        }
        if self.keep_checkpoints == 0 {
            return Err(Error::invalid(
                "train.keep_checkpoints",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
