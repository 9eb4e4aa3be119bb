//! Flags shared by several subcommands, and how library errors, which name config fields
//! (`guidance.rescale_phi`), are told in terms of the flags that set them (`--rescale-phi`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::device::DeviceSpec;
use diffuse::sampling::{
    ApgConfig, Feedback, Guidance, GuidanceConfig, GuidanceMethod, SamplerKind, Selective,
};
use diffuse::sampling::{SamplerSpec, Spacing};
use diffuse::schedule::SigmaKind;
use diffuse::train::{LrSchedule, OptimConfig};

/// Options every command shares.
#[derive(Args, Clone)]
pub struct CommonArgs {
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compute device: cpu, wgpu[:ADAPTER], vulkan[:ADAPTER] or cuda[:N]; ADAPTER is best (the
    /// default), cpu (a software driver such as Mesa's lavapipe), discrete[:N], integrated[:N]
    /// or virtual[:N]. GPU backends need a build with `--features wgpu|vulkan|cuda`.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl CommonArgs {
    /// Sets the thread count (when given) and opens the device.
    pub fn device(&self) -> Result<burn::prelude::Device> {
        set_threads(self.threads)?;
        Ok(diffuse::device::open(&self.device)?)
    }
}

fn parse_device(s: &str) -> std::result::Result<DeviceSpec, String> {
    s.parse::<DeviceSpec>().map_err(|e| match e {
        diffuse::Error::InvalidArgument { msg, .. } => msg,
        other => other.to_string(),
    })
}

/// Sets the number of CPU threads for rayon (and so for the flex backend) once.
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            anyhow::bail!("invalid value for --threads: must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .ok();
    }
    Ok(())
}

/// Optimizer flags shared by the 2D and image trainers; unset flags keep the preset's value.
#[derive(Args, Clone)]
pub struct OptimArgs {
    /// Peak learning rate [2D reference: 1e-3; AFHQ reference: 2e-4].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Linear warm-up steps [2D reference: 0; AFHQ reference: 200].
    #[arg(long)]
    warmup: Option<usize>,
    /// Learning-rate schedule after warm-up [reference: constant].
    #[arg(long, value_enum)]
    lr_schedule: Option<LrSchedule>,
    /// Clip the global gradient norm, 0 = off [reference: off].
    #[arg(long, allow_negative_numbers = true)]
    grad_clip: Option<f64>,
    /// EMA decay of the weights, 0 = off [reference: off].
    #[arg(long, allow_negative_numbers = true)]
    ema: Option<f64>,
}

impl OptimArgs {
    /// Overrides the preset's optimizer settings and EMA decay with the flags that were given.
    pub fn apply(&self, o: &mut OptimConfig, ema: &mut Option<f64>) {
        if let Some(v) = self.lr {
            o.lr = v;
        }
        if let Some(v) = self.warmup {
            o.warmup_steps = v;
        }
        if let Some(v) = self.lr_schedule {
            o.schedule = v;
        }
        if let Some(v) = self.grad_clip {
            o.grad_clip = (v != 0.0).then_some(v);
        }
        if let Some(v) = self.ema {
            *ema = (v != 0.0).then_some(v);
        }
    }
}

/// Sampler flags of the 2D commands.
#[derive(Args, Clone)]
pub struct SamplerArgs {
    /// Sampler.
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    pub sampler: SamplerKind,
    /// Sampling steps (few-step samplers; DDPM always runs all T).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// DDIM η (0 = deterministic).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub eta: f64,
    /// Timestep spacing.
    #[arg(long, value_enum, default_value_t = Spacing::Leading)]
    pub spacing: Spacing,
    /// DDPM σ_t: small (posterior) or large (√β).
    #[arg(long, value_enum, default_value_t = SigmaKind::Small)]
    pub sigma: SigmaKind,
    /// Clip the predicted x̂₀ to [−1, 1].
    #[arg(long)]
    pub clip_x0: bool,
}

impl SamplerArgs {
    pub fn spec(&self) -> SamplerSpec {
        SamplerSpec {
            kind: self.sampler,
            steps: self.steps,
            eta: self.eta,
            spacing: self.spacing,
            sigma: self.sigma,
            clip_x0: self.clip_x0,
        }
    }
}

/// Settings of the guidance methods (each used only by its method); defaults from
/// [`GuidanceConfig::default`].
#[derive(Args, Clone)]
pub struct GuidanceParams {
    /// interval: guidance only for EDM noise levels σ = √((1−ᾱ)/ᾱ) above this…
    #[arg(long, default_value_t = GuidanceConfig::default().interval.0)]
    interval_lo: f64,
    /// interval: …and at most this (Kynkäänniemi et al. 2024, EDM2-S: (0.28, 5.42]).
    #[arg(long, default_value_t = GuidanceConfig::default().interval.1)]
    interval_hi: f64,
    /// rescale: φ, the weight of the std-rescaled prediction (Lin et al. 2024: 0.7).
    #[arg(long, default_value_t = GuidanceConfig::default().rescale_phi)]
    rescale_phi: f64,
    /// apg: η, weight of the update's component parallel to the conditional x̂₀.
    #[arg(long, default_value_t = ApgConfig::default().eta, allow_negative_numbers = true)]
    apg_eta: f64,
    /// apg: momentum β (Sadat et al. 2025 recommend a negative value).
    #[arg(long, default_value_t = ApgConfig::default().momentum, allow_negative_numbers = true)]
    apg_momentum: f64,
    /// apg: bound r on the per-value RMS of the x̂₀ update (its L2 norm / √(values per
    /// image); 0 = none). One r for every resolution; the paper's L2 bound is r·√(values).
    /// [default: 0.01875; `image run`: the recipe's]
    #[arg(long)]
    pub apg_norm: Option<f64>,
    /// apg: guide only for EDM noise levels σ in (LO, HI], e.g. `0.28,5.42` [default: every
    /// step; `image run`: the recipe's].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LO,HI",
        allow_negative_numbers = true
    )]
    pub apg_interval: Option<Vec<f64>>,
    /// apg: feedback guidance's π in (0, 1): each image gets min(w, π/(R − π)), R the model's
    /// running estimate of p(c|x_t)/p(c), so images already clearly of their class are left
    /// nearly unguided (Koulischer et al. 2025); 0 = off [default: off, w for every image;
    /// `image run`: the recipe's].
    #[arg(long, value_name = "PI")]
    pub apg_feedback: Option<f64>,
    /// apg: feedback's temperature τ in (0, 1], the weight of each step's evidence in the
    /// running estimate.
    #[arg(long, value_name = "TAU", default_value_t = Feedback::default().temperature)]
    pub apg_feedback_temperature: f64,
    /// threshold: quantile p of |x̂₀| per image (Saharia et al. 2022: 0.995).
    #[arg(long, default_value_t = GuidanceConfig::default().threshold_percentile)]
    threshold_percentile: f64,
    /// auto: the weaker guide model (a run folder or its model.safetensors), e.g. an early or
    /// smaller run of the same data (Karras et al. 2024).
    #[arg(long)]
    pub guide_ckpt: Option<PathBuf>,
}

impl GuidanceParams {
    /// The configuration of `method` at `scale`.
    pub fn config(&self, method: GuidanceMethod, scale: Guidance) -> Result<GuidanceConfig> {
        let c = GuidanceConfig {
            method,
            scale,
            interval: (self.interval_lo, self.interval_hi),
            rescale_phi: self.rescale_phi,
            apg: ApgConfig {
                eta: self.apg_eta,
                momentum: self.apg_momentum,
                norm_threshold: self
                    .apg_norm
                    .unwrap_or(ApgConfig::default().norm_threshold),
                interval: match self.apg_interval.as_deref() {
                    None => None,
                    Some(&[lo, hi]) => Some((lo, hi)),
                    Some(v) => anyhow::bail!(
                        "invalid value for --apg-interval: expected two noise levels LO,HI, got {v:?}"
                    ),
                },
                feedback: self
                    .apg_feedback
                    .filter(|&pi| pi != 0.0)
                    .map(|pi| Feedback {
                        pi,
                        temperature: self.apg_feedback_temperature,
                    }),
            },
            threshold_percentile: self.threshold_percentile,
        };
        c.validate()?;
        Ok(c)
    }
}

/// Selective guidance's flags ([`diffuse::sampling::selective`]).
#[derive(Args, Clone)]
pub struct SelectiveParams {
    /// Selective guidance: sample every image at --base-scale first, let the model classify its
    /// own samples (Li et al. 2023), and sample the SHARE in (0, 1] it is least sure of again
    /// at --cfg-scale along the same noise (about twice the sampling time); 0 = off [default:
    /// off; `image run`: the recipe's, 0.05 for best].
    #[arg(long, value_name = "SHARE", allow_negative_numbers = true)]
    pub guide_share: Option<f64>,
    /// selective: the first pass's w (reference convention) [default: 0.5].
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub base_scale: Option<f64>,
    /// selective: the first pass's APG bound r (--apg-norm is the second pass's) [default:
    /// 0.01].
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub base_apg_norm: Option<f64>,
}

impl SelectiveParams {
    /// The setting the flags ask for over `recipe`'s (None: off).
    pub fn config(&self, recipe: Option<Selective>) -> Result<Option<Selective>> {
        let share = self.guide_share.or(recipe.map(|r| r.share));
        let Some(share) = share.filter(|&s| s != 0.0) else {
            if self.base_scale.is_some() || self.base_apg_norm.is_some() {
                anyhow::bail!("--base-scale and --base-apg-norm set selective guidance's first pass: they need --guide-share");
            }
            return Ok(None);
        };
        let base = recipe.unwrap_or_default();
        let sel = Selective {
            share,
            base_w: self.base_scale.unwrap_or(base.base_w),
            base_apg_norm: self.base_apg_norm.unwrap_or(base.base_apg_norm),
        };
        sel.validate()?;
        Ok(Some(sel))
    }
}

/// Config fields of the library and the flags that set them. A library error names the field
/// (`invalid value for guidance.rescale_phi: …`); the program shows the flag instead.
const FLAGS: &[(&str, &str)] = &[
    ("train.steps", "--steps"),
    ("train.batch_size", "--batch-size"),
    ("train.num_points", "--num-points"),
    ("train.ema_decay", "--ema"),
    ("train.t_groups", "--t-groups"),
    ("train.t_power", "--t-power"),
    ("train.p_uncond", "--p-uncond"),
    ("train.checkpoint_every", "--checkpoint-every"),
    ("train.keep_checkpoints", "--keep-checkpoints"),
    ("train.resume", "--resume"),
    ("train.out", "--out"),
    ("train.overwrite", "--overwrite"),
    ("train.precision", "--precision"),
    ("optim.lr", "--lr"),
    ("optim.grad_clip", "--grad-clip"),
    ("sampler.steps", "--steps"),
    ("sampler.eta", "--eta"),
    ("sample.class", "--class"),
    ("sample.n", "-n"),
    ("points.n", "-n"),
    ("guidance.scale", "--cfg-scale"),
    ("guidance.interval", "--interval-lo/--interval-hi"),
    ("guidance.rescale_phi", "--rescale-phi"),
    ("guidance.apg.eta", "--apg-eta"),
    ("guidance.apg.momentum", "--apg-momentum"),
    ("guidance.apg.norm_threshold", "--apg-norm"),
    ("guidance.apg.interval", "--apg-interval"),
    ("guidance.apg.feedback", "--apg-feedback"),
    (
        "guidance.apg.feedback_temperature",
        "--apg-feedback-temperature",
    ),
    ("guidance.threshold_percentile", "--threshold-percentile"),
    ("guidance.guide", "--guide-ckpt"),
    ("guidance.selective", "--guide-share"),
    ("guidance.selective.share", "--guide-share"),
    ("guidance.selective.base_w", "--base-scale"),
    ("guidance.selective.base_apg_norm", "--base-apg-norm"),
    ("run.ddim_steps", "--ddim-steps"),
    ("run.eval_points", "--eval-points"),
    ("study.eval_points", "--eval-points"),
    ("study.recipes", "--recipes"),
    ("study.seeds", "--seeds"),
    ("study.n", "-n"),
    ("sweep.samplers", "--samplers"),
    ("sweep.steps", "--steps"),
    ("sweep.seeds", "--seeds"),
    ("sweep.n", "-n"),
    ("fid.image_size", "--image-size"),
    ("fid.batch_size", "--batch"),
    ("classifier.image_size", "--image-size"),
    ("eval.size", "--size"),
    ("eval.n", "--fid-n"),
    ("eval.cfg_scale", "--fid-cfg-scale"),
    ("eval.reference", "--fid-ref"),
    ("eval.weights", "--weights"),
    ("export.format", "--format"),
    ("export.ema", "--ema"),
    ("device", "--device"),
];

/// `e` with every library error that names a config field renamed to its flag: first by
/// `overrides` (for a command whose flag differs, e.g. `--sample-steps`), then by the table.
pub fn to_flags(e: anyhow::Error, overrides: &[(&str, &str)]) -> anyhow::Error {
    let Some(diffuse::Error::InvalidArgument { name, msg }) = e.downcast_ref::<diffuse::Error>()
    else {
        return e;
    };
    let flag = overrides
        .iter()
        .chain(FLAGS)
        .find(|(field, _)| field == name)
        .map(|(_, flag)| *flag);
    // A message may name other fields too, in backquotes (`train.resume`): those become flags.
    let mut text = msg.clone();
    for (field, f) in overrides.iter().chain(FLAGS) {
        text = text.replace(&format!("`{field}`"), &format!("`{f}`"));
    }
    match flag {
        Some(flag) => anyhow::Error::new(diffuse::Error::invalid(flag, text)),
        None if text != *msg => anyhow::Error::new(diffuse::Error::invalid(name.clone(), text)),
        None => e,
    }
}

/// Parses a `--seeds` value: comma-separated seeds and inclusive ranges, e.g. `0-9` or
/// `0,3,100-109`.
pub fn seed_list(s: &str) -> std::result::Result<SeedList, String> {
    diffuse::stats::parse_seeds(s)
        .map(SeedList)
        .map_err(|e| match e {
            diffuse::Error::InvalidArgument { msg, .. } => msg,
            e => e.to_string(),
        })
}

/// A parsed `--seeds` value.
#[derive(Clone, Debug)]
pub struct SeedList(pub Vec<u64>);
