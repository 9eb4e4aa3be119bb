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

use super::optimizer::{
    load_optimizer, moments_bytes, param_ids, record_bytes, set_param_ids, AdamMoments,
};
use super::run::{self as run_checkpoint, sha256_hex};
use super::{config_path, load_weights};
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
pub fn config_sha256(cfg: &ImageTrainConfig) -> String {
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
    pub optim: OptimState,
    /// Steps done.
    pub step: usize,
    /// (step, loss) of every step so far.
    pub losses: &'a [(usize, f64)],
    /// The run it belongs to ([`run_checkpoint::Manifest::run_sha256`]).
    pub run_sha256: &'a str,
}

/// The optimizer state of a run, read back to the host: burn's Adam as its record
/// (`ModuleOptimizer::to_record`), or the moments of the fused update
/// ([`crate::train::FusedAdam::moments`]). Both save as the same `optim.bin`.
pub enum OptimState {
    Record(burn::optim::OptimizerRecord),
    Moments(Vec<AdamMoments>),
}

/// Saves `state` as one checkpoint of the run in `out`, on this thread: [`Snapshot::take`] and
/// [`Snapshot::write`] in one go.
pub fn save_checkpoint(
    out: &Path,
    cfg: &ImageTrainConfig,
    class_names: &[String],
    state: RunState,
) -> Result<()> {
    Snapshot::take(out, cfg, class_names, state)?.write()?;
    Ok(())
}

/// Everything one checkpoint holds, read back to the host: taken on the training thread
/// (a copy of every tensor, so training may go on and update them in place), written by
/// [`Snapshot::write`] on any thread.
pub struct Snapshot {
    out: PathBuf,
    config_sha256: String,
    run_sha256: String,
    keep: usize,
    step: usize,
    weights: super::WeightsSnapshot,
    ema: Option<super::WeightsSnapshot>,
    optim: OptimState,
    meta: ImageCheckpointMeta,
    state: TrainState,
}

impl Snapshot {
    /// Reads `state` back to the host. On a GPU this waits for the queued steps once and copies
    /// the weights, EMA weights and Adam moments over; nothing is serialised or hashed here.
    pub fn take(
        out: &Path,
        cfg: &ImageTrainConfig,
        class_names: &[String],
        state: RunState,
    ) -> Result<Self> {
        let (model, ema, step) = (state.model, state.ema, state.step);
        let target = run_checkpoint::step_dir(out, step);
        let plain = model.valid();
        let weights = super::WeightsSnapshot::take(&plain, &target.join(WEIGHTS))?;
        let ema_weights = match ema {
            Some(e) => Some(super::WeightsSnapshot::take(
                &e.apply(plain),
                &target.join(EMA),
            )?),
            None => None,
        };
        Ok(Self {
            out: out.to_path_buf(),
            config_sha256: config_sha256(cfg),
            run_sha256: state.run_sha256.to_string(),
            keep: cfg.keep_checkpoints,
            step,
            weights,
            ema: ema_weights,
            optim: state.optim,
            meta: ImageCheckpointMeta {
                kind: "image".into(),
                config: cfg.clone(),
                class_names: class_names.to_vec(),
                step,
                has_ema: ema.is_some(),
            },
            state: TrainState {
                step,
                param_ids: param_ids(model),
                losses: state.losses.to_vec(),
                ema: ema.map(|e| (e.updates, EMA.into())),
            },
        })
    }

    /// The snapshot, committed keeping only the newest `n` checkpoints of its run folder.
    pub fn keep_only(mut self, n: usize) -> Self {
        self.keep = n;
        self
    }

    /// The step the snapshot was taken after.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The checkpoint folder [`Snapshot::write`] commits.
    pub fn target(&self) -> PathBuf {
        run_checkpoint::step_dir(&self.out, self.step)
    }

    /// The (step, loss) history saved with it.
    pub fn losses(&self) -> &[(usize, f64)] {
        &self.state.losses
    }

    /// Serialises, hashes, flushes and commits the snapshot as one checkpoint of its run
    /// ([`run_checkpoint::commit`]: staging folder, manifest, one rename, then the pruning of
    /// old checkpoints). Returns the checkpoint folder.
    pub fn write(self) -> Result<PathBuf> {
        let Self {
            out,
            config_sha256,
            run_sha256,
            keep,
            step,
            weights,
            ema,
            optim,
            meta,
            state,
        } = self;
        run_checkpoint::commit(&out, step, &config_sha256, &run_sha256, keep, |stage| {
            weights.write(&stage.path(WEIGHTS))?;
            stage.written(WEIGHTS)?;
            if let Some(e) = &ema {
                e.write(&stage.path(EMA))?;
                stage.written(EMA)?;
            }
            let path = stage.path(OPTIM);
            let bytes = match optim {
                OptimState::Record(r) => record_bytes(r, &path)?,
                OptimState::Moments(m) => moments_bytes(m, &path)?,
            };
            stage.write(OPTIM, &bytes)?;
            stage.write_json(META, &meta)?;
            stage.write_json(STATE, &state)
        })
    }
}

/// What [`restore`] gives back.
pub struct Restored {
    pub model: UNet,
    pub optim: burn::optim::ModuleOptimizer,
    pub ema: Option<Ema>,
    pub step: usize,
    pub losses: Vec<(usize, f64)>,
    /// The run the checkpoint belongs to, which the resumed run's checkpoints carry on.
    pub run_sha256: String,
}

/// What `out` holds of a training run, if anything: its newest checkpoint's step (a
/// `checkpoints/step-*` folder, or the pieces of an earlier version's layout directly in
/// `out`). A fresh run must not write into such a folder.
pub fn existing_run(out: &Path) -> Result<Option<String>> {
    if let Some((step, dir)) = run_checkpoint::list(out)?.into_iter().next() {
        return Ok(Some(format!(
            "a checkpoint of step {step} ({})",
            dir.display()
        )));
    }
    if out.join(STATE).is_file() {
        return Ok(Some(format!(
            "a checkpoint ({})",
            out.join(STATE).display()
        )));
    }
    Ok(None)
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
    let run_sha256 = match &manifest {
        Some(m) => m.run().to_string(),
        None => config_sha256(&meta.config),
    };
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
        run_sha256,
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

/// Loads a run's model (EMA weights when present, unless `raw`) and its metadata; also a file
/// in the course's layout ([`super::export::load_course`]).
pub fn load(ckpt: &Path, raw: bool, device: &Device) -> Result<(UNet, ImageCheckpointMeta)> {
    // The course's PyTorch files and our course exports: weights without our metadata.
    if super::export::is_course_file(ckpt) {
        return super::export::load_course(ckpt, device);
    }
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
