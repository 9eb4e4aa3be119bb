//! The checkpoint of an image training run: which pieces one step consists of, how they are
//! saved as one unit ([`super::run`]) and how `--resume` and the sampling commands find, check
//! and load them.
//!
//! A checkpoint folder `RUN/checkpoints/step-NNNNNNNN/` holds `model.safetensors` +
//! `model.json` (weights and config), `model.ema.safetensors` when trained with EMA, and the
//! resume state: `optim.bin` (Adam moments) and `state.json` (step, parameter ids, loss
//! history), plus the manifest. Run folders of earlier versions (the same files directly in
//! RUN) are still read.
use std::path::{Path, PathBuf};

use burn::module::Module;
use serde::{Deserialize, Serialize};

use burn::prelude::*;

use super::optimizer::{load_optimizer, optimizer_bytes, param_ids, set_param_ids};
use super::run::{self as run_checkpoint, sha256_hex};
use super::{config_path, load_weights, save_weights};
use crate::files::read_json;
use crate::image::ImageTrainConfig;
use crate::nn::unet::UNet;
use crate::rng::seeded;
use crate::train::Ema;
use crate::{Error, Result};

/// Piece names inside a checkpoint folder.
pub const WEIGHTS: &str = "model.safetensors";
pub const META: &str = "model.json";
pub const EMA: &str = "model.ema.safetensors";
pub const OPTIM: &str = "optim.bin";
pub const STATE: &str = "state.json";

/// What `model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageCheckpointMeta {
    /// Always "image".
    pub kind: String,
    pub config: ImageTrainConfig,
    /// Class names; label l is `class_names[l − 1]`.
    pub class_names: Vec<String>,
    /// Steps trained.
    pub step: usize,
    pub has_ema: bool,
}

/// Resume state beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    step: usize,
    param_ids: Vec<u64>,
    losses: Vec<(usize, f64)>,
    ema: Option<(u64, String)>,
}

/// SHA-256 of a run configuration, as recorded in the manifest.
fn config_sha256(cfg: &ImageTrainConfig) -> String {
    sha256_hex(
        serde_json::to_string(cfg)
            .expect("config serialises")
            .as_bytes(),
    )
}

/// The state of a run after some step: what one checkpoint holds.
pub struct RunState<'a> {
    pub model: &'a UNet,
    pub ema: Option<&'a Ema>,
    pub optim: &'a burn::optim::ModuleOptimizer,
    /// Steps done.
    pub step: usize,
    /// (step, loss) of every step so far.
    pub losses: &'a [(usize, f64)],
}

/// Saves `state` as one checkpoint of the run in `out`.
pub fn save_checkpoint(
    out: &Path,
    cfg: &ImageTrainConfig,
    class_names: &[String],
    state: &RunState,
) -> Result<()> {
    let (model, ema, step) = (state.model, state.ema, state.step);
    run_checkpoint::commit(
        out,
        step,
        &config_sha256(cfg),
        cfg.keep_checkpoints,
        |stage| {
            let plain = model.valid();
            save_weights(&plain, &stage.path(WEIGHTS))?;
            stage.written(WEIGHTS)?;
            if let Some(e) = ema {
                save_weights(&e.apply(plain), &stage.path(EMA))?;
                stage.written(EMA)?;
            }
            stage.write(OPTIM, &optimizer_bytes(state.optim, &stage.path(OPTIM))?)?;
            stage.write_json(
                META,
                &ImageCheckpointMeta {
                    kind: "image".into(),
                    config: cfg.clone(),
                    class_names: class_names.to_vec(),
                    step,
                    has_ema: ema.is_some(),
                },
            )?;
            stage.write_json(
                STATE,
                &TrainState {
                    step,
                    param_ids: param_ids(model),
                    losses: state.losses.to_vec(),
                    ema: ema.map(|e| (e.updates, EMA.into())),
                },
            )
        },
    )?;
    Ok(())
}

/// What [`restore`] gives back.
pub struct Restored {
    pub model: UNet,
    pub optim: burn::optim::ModuleOptimizer,
    pub ema: Option<Ema>,
    pub step: usize,
    pub losses: Vec<(usize, f64)>,
}

/// Loads the newest checkpoint of the run in `out` into a fresh `model`, `optim` and `ema`,
/// after checking that its pieces belong together and to this run's network. `None` when the
/// run has no checkpoint yet (it was stopped before its first one).
pub fn restore(
    out: &Path,
    cfg: &ImageTrainConfig,
    model: UNet,
    optim: burn::optim::ModuleOptimizer,
    ema: Option<Ema>,
) -> Result<Option<Restored>> {
    let (dir, manifest) = match run_checkpoint::latest(out)? {
        Some((dir, manifest)) => (dir, Some(manifest)),
        // A run folder of an earlier version: the pieces directly in `out`, no manifest.
        None if out.join(STATE).is_file() => (out.to_path_buf(), None),
        None => return Ok(None),
    };
    let meta: ImageCheckpointMeta = read_json(&dir.join(META))?;
    if let Some(m) = manifest {
        if config_sha256(&meta.config) != m.config_sha256 {
            return Err(Error::Checkpoint {
                path: dir,
                msg: format!("{META} holds another configuration than the manifest records"),
            });
        }
    }
    if meta.config.unet != cfg.unet {
        return Err(Error::invalid(
            "train.resume",
            format!(
                "{} was trained with another network configuration",
                dir.display()
            ),
        ));
    }
    let st: TrainState = read_json(&dir.join(STATE))?;
    if st.step != meta.step {
        return Err(Error::Checkpoint {
            path: dir,
            msg: format!(
                "{STATE} is at step {} but {META} at step {}: the pieces do not belong together",
                st.step, meta.step
            ),
        });
    }
    if st.ema.is_some() != cfg.ema_decay.is_some() {
        return Err(Error::invalid(
            "train.resume",
            format!(
                "{} was trained {} EMA; resume with the same EMA setting",
                dir.display(),
                if st.ema.is_some() { "with" } else { "without" }
            ),
        ));
    }
    let model = load_weights(model, &dir.join(WEIGHTS))?;
    let model = set_param_ids(model, &st.param_ids)?;
    let optim = load_optimizer(optim, &dir.join(OPTIM))?;
    let ema = match (ema, st.ema.as_ref()) {
        (Some(e), Some((updates, _))) => {
            let saved = load_weights(model.valid(), &dir.join(EMA))?;
            let mut e2 = Ema::new(&saved, e.decay, e.warmup);
            e2.updates = *updates;
            Some(e2)
        }
        (e, _) => e,
    };
    Ok(Some(Restored {
        model,
        optim,
        ema,
        step: st.step,
        losses: st.losses,
    }))
}

/// The weights file a sampling command should read for `ckpt`: a run folder (its newest
/// checkpoint, verified), a checkpoint folder, a run folder of an earlier version, or a
/// `model.safetensors` path.
pub fn weights_file(ckpt: &Path) -> Result<PathBuf> {
    if ckpt.is_dir() {
        if let Some((dir, _)) = run_checkpoint::latest(ckpt)? {
            return Ok(dir.join(WEIGHTS));
        }
        if ckpt.join(run_checkpoint::MANIFEST).is_file() {
            run_checkpoint::verify(ckpt)?;
        }
        let legacy = ckpt.join(WEIGHTS);
        if legacy.is_file() {
            return Ok(legacy);
        }
        return Err(Error::Checkpoint {
            path: ckpt.into(),
            msg: format!(
                "holds no checkpoint (expected {}/step-*/ or {WEIGHTS})",
                run_checkpoint::CHECKPOINTS
            ),
        });
    }
    if !ckpt.is_file() {
        return Err(Error::Checkpoint {
            path: ckpt.into(),
            msg: "no such file (give a run folder or its model.safetensors)".into(),
        });
    }
    Ok(ckpt.to_path_buf())
}

/// Loads a run's model (EMA weights when present, unless `raw`) and its metadata.
pub fn load(ckpt: &Path, raw: bool, device: &Device) -> Result<(UNet, ImageCheckpointMeta)> {
    let ckpt = weights_file(ckpt)?;
    let meta_path = config_path(&ckpt);
    if !meta_path.is_file() {
        return Err(Error::Checkpoint {
            path: ckpt.clone(),
            msg: format!("its config {} is missing", meta_path.display()),
        });
    }
    let meta: ImageCheckpointMeta = read_json(&meta_path)?;
    if meta.kind != "image" {
        return Err(Error::Checkpoint {
            path: ckpt,
            msg: format!("is a `{}` checkpoint, not an image one", meta.kind),
        });
    }
    let model = meta.config.unet.init(device, &mut seeded(0, 2))?;
    let ema_file = ckpt.with_file_name(EMA);
    let file = if meta.has_ema && !raw && ema_file.is_file() {
        ema_file
    } else {
        ckpt.clone()
    };
    Ok((load_weights(model, &file)?, meta))
}
