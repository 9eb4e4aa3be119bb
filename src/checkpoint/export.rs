//! Exporting an image run's network for other tools, and reading the course's files back.
//!
//! - [`ExportFormat::Course`]: `unet.safetensors` with the course's `UNet.state_dict()` keys
//!   and layout (PyTorch's `[out, in]` Linear weights, GroupNorm `weight`/`bias`) and
//!   `unet.json` with its constructor arguments (`{"unet": {T, image_resolution, ch, ch_mult,
//!   attn, num_res_blocks, dropout, use_cfg, cfg_dropout, num_classes}, "scheduler": …,
//!   "class_names": …}`), so that `UNet(**args["unet"]).load_state_dict(load_file(…),
//!   strict=True)` works in the course's code (README "Export"). The course pickles whole
//!   modules into its `.ckpt`; re-creating those pickles is not worth it, so this is the
//!   issue's safetensors + JSON alternative.
//! - [`ExportFormat::Safetensors`]: our own `model.safetensors` + `model.json`, what
//!   `image sample --ckpt` reads, with one set of weights (EMA or raw) chosen.
//! - [`ExportFormat::Diffusers`]: refused with the reason — see [`diffusers_mismatch`].
//!
//! [`load_course`] reads the course's files back for sampling: its `{hparams, state_dict}`
//! `.ckpt` (the pickled `hparams` objects are never executed: only tensors are read), a bare
//! `UNet.state_dict()` file, or our course export; the architecture comes from `unet.json`
//! (or `X.json`) beside the file, else from the tensors' shapes.
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use super::image::{ImageCheckpointMeta, META, WEIGHTS};
use crate::files::{ensure_dir, read_json, tmp_path, write_json};
use crate::image::ImageTrainConfig;
use crate::nn::unet::{course_file_tensors, infer_course_config, load_pytorch, UNet, UNetConfig};
use crate::schedule::{BetaSchedule, ScheduleConfig};
use crate::{Error, Result};

/// What `image export --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// The course's `UNet` state dict (safetensors) and constructor arguments (JSON).
    Course,
    /// diffusers' `UNet2DModel` folder (refused: the architectures differ, see the error).
    Diffusers,
    /// Our own weights + config, one set of weights.
    Safetensors,
}

/// The course's `UNet(...)` constructor arguments (its `train.py` call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct CourseUNetArgs {
    #[serde(rename = "T")]
    pub t: usize,
    pub image_resolution: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub attn: Vec<usize>,
    pub num_res_blocks: usize,
    pub dropout: f64,
    pub use_cfg: bool,
    pub cfg_dropout: f64,
    pub num_classes: usize,
}

/// The course's `BaseScheduler(num_train_timesteps, beta_1, beta_T, mode)` arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseSchedulerArgs {
    pub num_train_timesteps: usize,
    pub beta_1: f64,
    #[serde(rename = "beta_T")]
    pub beta_t: f64,
    pub mode: String,
}

/// `unet.json` of a course export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseExport {
    pub unet: CourseUNetArgs,
    pub scheduler: CourseSchedulerArgs,
    /// Label l (1 … K) is `class_names[l − 1]`; 0 is the null class.
    pub class_names: Vec<String>,
}

/// File names of a course export.
pub const COURSE_WEIGHTS: &str = "unet.safetensors";
pub const COURSE_ARGS: &str = "unet.json";

/// Why `cfg` cannot be built by the course's `UNet` (it hard-codes 3 input channels, 32
/// GroupNorm groups with ε = 1e-5 and a 256-wide timestep sinusoid), or None.
pub fn course_mismatch(cfg: &UNetConfig) -> Option<String> {
    let mut why = Vec::new();
    if cfg.in_channels != 3 {
        why.push(format!(
            "{} input channels (the course's head is Conv2d(3, ch))",
            cfg.in_channels
        ));
    }
    if cfg.num_groups != 32 {
        why.push(format!(
            "GroupNorm with {} groups (the course's has 32)",
            cfg.num_groups
        ));
    }
    if cfg.norm_eps != 1e-5 {
        why.push(format!(
            "GroupNorm ε {} (the course's is 1e-5)",
            cfg.norm_eps
        ));
    }
    if cfg.time_freq_dim != 256 {
        why.push(format!(
            "a {}-wide timestep sinusoid (the course's is 256)",
            cfg.time_freq_dim
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Why diffusers' `UNet2DModel` cannot hold the course's network exactly. Everything maps
/// (conv_in; `DownBlock2D`/`AttnDownBlock2D` with `layers_per_block` ResNets and a
/// stride-2 conv downsampler; the skip stack; `UNetMidBlock2D` = ResNet, attention, ResNet;
/// `UpBlock2D`/`AttnUpBlock2D` with `layers_per_block + 1` ResNets and nearest ×2 + conv; the
/// ResNet's norm → SiLU → conv, SiLU → Linear time projection added before norm2, dropout before
/// conv2, 1×1 shortcut; single-head attention with GroupNorm and scale 1/√C, residual; the class
/// table as `num_class_embeds = K + 1` added to the time embedding; GroupNorm 32, ε 1e-5;
/// conv_norm_out → SiLU → conv_out) except the timestep features: `UNet2DModel` sizes its
/// sinusoid by `block_out_channels[0]` (ch), while the course's is 256 wide whatever ch is.
/// The 256-wide embedding has frequencies 10000^(−i/128); a ch-wide one only 10000^(−2i/ch), so
/// for ch < 256 the odd-index frequencies the first time-MLP layer was trained on do not exist
/// in diffusers. (`time_embedding_type="fourier"` does not help: it embeds log t, infinite at
/// t = 0, with sine first.) The network maps exactly only when `time_freq_dim == channels`.
pub fn diffusers_mismatch(cfg: &UNetConfig) -> Option<String> {
    (cfg.time_freq_dim != cfg.channels).then(|| {
        format!(
            "diffusers' UNet2DModel cannot hold this network exactly: it builds its timestep \
             features with block_out_channels[0] = {} dimensions, this network (like the course's) \
             uses {} ({} frequencies 10000^(-i/{}) that a {}-wide diffusers embedding does not \
             have), so the first time-MLP layer [{}, {}] has no place in it; everything else maps \
             (README \"Export\"). Use --format course or --format safetensors",
            cfg.channels,
            cfg.time_freq_dim,
            cfg.time_freq_dim / 2,
            cfg.time_freq_dim / 2,
            cfg.channels,
            cfg.temb_dim(),
            cfg.time_freq_dim
        )
    })
}

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub files: Vec<PathBuf>,
    /// Whether the EMA weights were exported.
    pub ema: bool,
}

/// Exports the run (or checkpoint) `ckpt` in `format` into the folder `out`: the EMA weights
/// with `ema` (an error when the run has none), the raw weights otherwise.
pub fn export(ckpt: &Path, format: ExportFormat, out: &Path, ema: bool) -> Result<Exported> {
    let device = Device::flex();
    let (model, meta) = crate::checkpoint::image::load(ckpt, !ema, &device)?;
    if ema && !meta.has_ema {
        return Err(Error::invalid(
            "export.ema",
            format!(
                "{} was trained without EMA: leave out --ema",
                ckpt.display()
            ),
        ));
    }
    let cfg = &meta.config;
    ensure_dir(out)?;
    let files = match format {
        ExportFormat::Diffusers => {
            let why = diffusers_mismatch(&cfg.unet).unwrap_or_else(|| {
                "the diffusers writer is not implemented for networks whose time features do \
                 match (time_freq_dim == channels); use --format course or safetensors"
                    .into()
            });
            return Err(Error::invalid("export.format", why));
        }
        ExportFormat::Course => {
            if let Some(why) = course_mismatch(&cfg.unet) {
                return Err(Error::invalid(
                    "export.format",
                    format!("the course's UNet cannot build this network: {why}; use --format safetensors"),
                ));
            }
            let s = &cfg.schedule;
            let mode = match s.kind {
                BetaSchedule::Linear => "linear",
                BetaSchedule::Quad => "quad",
                BetaSchedule::Cosine => {
                    return Err(Error::invalid(
                        "export.format",
                        "the course's scheduler has the linear and quad modes only; this run \
                         trained on the cosine schedule: use --format safetensors",
                    ))
                }
            };
            let args = CourseExport {
                unet: CourseUNetArgs {
                    t: s.num_steps,
                    image_resolution: cfg.unet.image_size,
                    ch: cfg.unet.channels,
                    ch_mult: cfg.unet.channel_mult.clone(),
                    attn: cfg.unet.attn_levels.clone(),
                    num_res_blocks: cfg.unet.num_res_blocks,
                    dropout: cfg.unet.dropout,
                    use_cfg: cfg.unet.num_classes > 0,
                    cfg_dropout: cfg.p_uncond,
                    num_classes: cfg.unet.num_classes,
                },
                scheduler: CourseSchedulerArgs {
                    num_train_timesteps: s.num_steps,
                    beta_1: s.beta_start,
                    beta_t: s.beta_end,
                    mode: mode.into(),
                },
                class_names: meta.class_names.clone(),
            };
            let weights = out.join(COURSE_WEIGHTS);
            save_course_weights(&model, &weights)?;
            let json = out.join(COURSE_ARGS);
            write_json(&json, &args)?;
            vec![weights, json]
        }
        ExportFormat::Safetensors => {
            let weights = out.join(WEIGHTS);
            crate::checkpoint::save_weights(&model, &weights)?;
            let m = ImageCheckpointMeta {
                has_ema: false,
                ..meta.clone()
            };
            let json = out.join(META);
            write_json(&json, &m)?;
            vec![weights, json]
        }
    };
    Ok(Exported { files, ema })
}

/// Writes `model` with the course's keys and PyTorch's tensor layouts, atomically.
pub fn save_course_weights(model: &UNet, path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    let mut store = SafetensorsStore::from_file(&tmp)
        .clear_metadata()
        .metadata("format", "pt")
        .skip_enum_variants(true)
        .with_to_adapter(BurnToPyTorchAdapter);
    for (from, to) in crate::nn::unet::TO_COURSE_KEYS {
        store = store.with_key_remapping(*from, *to);
    }
    model.save_into(&mut store).map_err(|e| Error::Checkpoint {
        path: path.into(),
        msg: format!("could not write weights: {e}"),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Is `path` a file in the course's layout (a PyTorch file, or a safetensors file with a
/// course `unet.json`/`X.json` beside it) rather than one of our checkpoints?
pub fn is_course_file(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "pt" | "pth" | "ckpt" | "bin" => true,
        "safetensors" => course_args_path(path).is_some(),
        _ => false,
    }
}

/// The course arguments beside `path`: `X.json` holding a course export, or `unet.json`.
fn course_args_path(path: &Path) -> Option<PathBuf> {
    [
        path.with_extension("json"),
        path.with_file_name(COURSE_ARGS),
    ]
    .into_iter()
    .find(|p| {
        p.is_file()
            && std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v.get("unet").and_then(|u| u.get("ch")).is_some())
    })
}

/// Loads a course-layout file (see the module docs) as a model and the metadata sampling
/// needs: the architecture from the arguments beside it, else from the tensors' shapes; the
/// schedule from the arguments, else the course's (T = 1000, linear 1e-4 … 0.02); class names
/// from the arguments, else `cat, dog, wild` for the course's three classes and `1 … K`
/// otherwise.
pub fn load_course(path: &Path, device: &Device) -> Result<(UNet, ImageCheckpointMeta)> {
    let args: Option<CourseExport> = match course_args_path(path) {
        Some(p) => Some(read_json(&p)?),
        None => None,
    };
    let tensors = course_file_tensors(path)?;
    let mut unet = infer_course_config(&tensors).map_err(|e| Error::Checkpoint {
        path: path.into(),
        msg: format!(
            "{e}; put the course's constructor arguments in {} beside it ({{\"unet\": {{\"T\": …, \"ch\": …}}}}, as `image export --format course` writes)",
            path.with_file_name(COURSE_ARGS).display()
        ),
    })?;
    let mut schedule = ScheduleConfig::default();
    let class_names = match &args {
        Some(a) => {
            let u = &a.unet;
            unet.image_size = u.image_resolution;
            unet.dropout = u.dropout;
            let given = (u.ch, &u.ch_mult, &u.attn, u.num_res_blocks, u.num_classes);
            let found = (
                unet.channels,
                &unet.channel_mult,
                &unet.attn_levels,
                unet.num_res_blocks,
                unet.num_classes,
            );
            if given != found {
                return Err(Error::Checkpoint {
                    path: path.into(),
                    msg: format!(
                        "its arguments say ch {}, ch_mult {:?}, attn {:?}, num_res_blocks {}, num_classes {} but the weights are ch {}, ch_mult {:?}, attn {:?}, num_res_blocks {}, num_classes {}",
                        given.0, given.1, given.2, given.3, given.4, found.0, found.1, found.2, found.3, found.4
                    ),
                });
            }
            let s = &a.scheduler;
            schedule.num_steps = s.num_train_timesteps;
            schedule.beta_start = s.beta_1;
            schedule.beta_end = s.beta_t;
            schedule.kind = match s.mode.as_str() {
                "linear" => BetaSchedule::Linear,
                "quad" => BetaSchedule::Quad,
                m => {
                    return Err(Error::Checkpoint {
                        path: path.into(),
                        msg: format!("unknown scheduler mode `{m}` (linear or quad)"),
                    })
                }
            };
            a.class_names.clone()
        }
        None if unet.num_classes == 3 => vec!["cat".into(), "dog".into(), "wild".into()],
        None => (1..=unet.num_classes).map(|k| k.to_string()).collect(),
    };
    if class_names.len() != unet.num_classes {
        return Err(Error::Checkpoint {
            path: path.into(),
            msg: format!(
                "{} class names for {} classes",
                class_names.len(),
                unet.num_classes
            ),
        });
    }
    let model = load_pytorch(path, &unet, device)?;
    let config = ImageTrainConfig {
        unet,
        schedule,
        ..ImageTrainConfig::reference()
    };
    Ok((
        model,
        ImageCheckpointMeta {
            kind: "image".into(),
            config,
            class_names,
            step: 0,
            has_ema: false,
        },
    ))
}
