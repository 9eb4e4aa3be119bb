//! What the 2D workflow saves: `X.safetensors` (raw weights), `X.ema.safetensors` (when
//! trained with EMA) and `X.json` (the run's config and a few facts).
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{config_path, save_weights};
use crate::files::{read_json, write_json};
use crate::nn::simplenet::SimpleNet;
use crate::rng::seeded;
use crate::toy::{stream, ToyConfig, TrainedToy};
use crate::{Error, Result};

/// What a checkpoint's JSON holds besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyCheckpointMeta {
    /// Always "toy".
    pub kind: String,
    pub config: ToyConfig,
    /// Steps trained.
    pub step: usize,
    /// Mean loss over the last 100 steps.
    pub final_loss: f64,
    /// Whether `NAME.ema.safetensors` sits beside the raw weights.
    pub has_ema: bool,
}

/// Saves a trained model as `path` (+ `.json`, + `.ema.safetensors` when EMA was used).
pub fn save(trained: &TrainedToy, cfg: &ToyConfig, path: &Path) -> Result<()> {
    save_weights(&trained.model.valid(), path)?;
    if trained.ema.is_some() {
        save_weights(&trained.sampling_model(), &ema_path(path))?;
    }
    let meta = ToyCheckpointMeta {
        kind: "toy".into(),
        config: cfg.clone(),
        step: trained.losses.len(),
        final_loss: trained.final_loss(),
        has_ema: trained.ema.is_some(),
    };
    write_json(&config_path(path), &meta)
}

/// `X.safetensors` → `X.ema.safetensors`.
pub fn ema_path(path: &Path) -> PathBuf {
    path.with_extension("ema.safetensors")
}

/// Loads a checkpoint written by [`save`]: the EMA weights when present unless `raw`.
/// A PyTorch state dict (`.pt/.pth/.ckpt`) loads with the default config when no JSON is beside it.
pub fn load(path: &Path, raw: bool, device: &Device) -> Result<(SimpleNet, ToyCheckpointMeta)> {
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.into(),
            msg: "no such file".into(),
        });
    }
    let json = config_path(path);
    let meta: ToyCheckpointMeta = if json.is_file() {
        read_json(&json)?
    } else if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("pt" | "pth" | "ckpt")
    ) {
        ToyCheckpointMeta {
            kind: "toy".into(),
            config: ToyConfig::default(),
            step: 0,
            final_loss: f64::NAN,
            has_ema: false,
        }
    } else {
        return Err(Error::Checkpoint {
            path: path.into(),
            msg: format!("its config {} is missing", json.display()),
        });
    };
    if meta.kind != "toy" {
        return Err(Error::Checkpoint {
            path: path.into(),
            msg: format!("is a `{}` checkpoint, not a 2D (toy) one", meta.kind),
        });
    }
    meta.config.net.validate()?;
    let model = meta.config.net.init(&mut seeded(0, stream::INIT), device)?;
    let file = if meta.has_ema && !raw {
        ema_path(path)
    } else {
        path.to_path_buf()
    };
    Ok((crate::nn::simplenet::load_pytorch(model, &file)?, meta))
}
