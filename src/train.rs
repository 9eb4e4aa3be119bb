//! Training plumbing shared by the 2D and the image trainers: optimizer settings and the
//! learning-rate schedule, EMA of the weights, gradient clipping, mixed precision, the
//! progress bar and Ctrl-C handling. (The optimizer state's persistence for `--resume` is in
//! [`crate::checkpoint::optimizer`].)
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Gradients;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs a Ctrl-C handler that asks running loops to stop (they save first). A second
/// Ctrl-C exits at once.
pub fn install_ctrlc_handler() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step and saving (Ctrl-C again to abort)");
    });
}

/// True once Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Learning-rate shape after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Constant after warm-up (the reference).
    #[default]
    Constant,
    /// Cosine decay from the peak to `min_lr_frac`·peak at the last step.
    Cosine,
}

/// Optimizer and schedule settings (Adam with PyTorch's defaults for ε and β).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε (PyTorch's 1e-8; burn's default 1e-5 would change results).
    pub eps: f64,
    /// Linear warm-up steps: lr·min((step+1)/warmup, 1) (the reference's LambdaLR).
    pub warmup_steps: usize,
    /// Shape after warm-up.
    pub schedule: LrSchedule,
    /// Final lr as a fraction of the peak, for the cosine schedule.
    pub min_lr_frac: f64,
    /// Clip the global gradient L2 norm to this value (None: off).
    pub grad_clip: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_steps: 0,
            schedule: LrSchedule::Constant,
            min_lr_frac: 0.0,
            grad_clip: None,
        }
    }
}

impl OptimConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(
                "optim.lr",
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        if let Some(c) = self.grad_clip {
            if c.is_nan() || c <= 0.0 {
                return Err(Error::invalid(
                    "optim.grad_clip",
                    format!("must be positive, got {c}"),
                ));
            }
        }
        Ok(())
    }

    pub fn adam(&self) -> ModuleOptimizer {
        AdamConfig::new()
            .with_beta_1(self.beta1 as f32)
            .with_beta_2(self.beta2 as f32)
            .with_epsilon(self.eps as f32)
            .init()
    }

    /// Learning rate at 0-based `step` of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warm = if self.warmup_steps > 0 {
            ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        } else {
            1.0
        };
        let shape = match self.schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = (step.saturating_sub(self.warmup_steps) as f64 / span).min(1.0);
                self.min_lr_frac
                    + (1.0 - self.min_lr_frac) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        };
        self.lr * warm * shape
    }
}

/// Float parameters of a module in visiting order, flattened, off the autodiff graph, on the
/// device (no copy to the host).
pub fn flat_params<M: Module>(m: &M) -> Vec<Tensor<1>> {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let t = if t.is_autodiff() { t.inner() } else { t };
            let n = t.shape().num_elements();
            self.0.push(t.reshape([n]));
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Exponential moving average of a model's weights (Polyak averaging), kept on the model's
/// device, in the weights' dtype, with the optional warm-up of improved-diffusion/diffusers:
/// decay_k = min(decay, (1+k)/(10+k)). Updating it moves no data to the host, so a GPU run
/// does not wait for the device every step.
#[derive(Debug, Clone)]
pub struct Ema {
    pub decay: f64,
    pub warmup: bool,
    pub updates: u64,
    /// One flattened tensor per float parameter, in visiting order.
    shadow: Vec<Tensor<1>>,
}

impl Ema {
    pub fn new<M: Module>(model: &M, decay: f64, warmup: bool) -> Self {
        Self {
            decay,
            warmup,
            updates: 0,
            shadow: flat_params(model),
        }
    }

    /// The decay used at the next update.
    pub fn current_decay(&self) -> f64 {
        if self.warmup {
            let k = self.updates as f64;
            self.decay.min((1.0 + k) / (10.0 + k))
        } else {
            self.decay
        }
    }

    /// shadow ← d·shadow + (1−d)·θ, element-wise on the device.
    pub fn update<M: Module>(&mut self, model: &M) {
        // Rounded to f32 first, as the host version did, so the result does not depend on
        // the backend's scalar type.
        let d = self.current_decay() as f32;
        let (a, b) = (d as f64, (1.0 - d) as f64);
        // Owned shadows, so a backend can update them in place.
        self.shadow = std::mem::take(&mut self.shadow)
            .into_iter()
            .zip(flat_params(model))
            .map(|(s, p)| s.mul_scalar(a).add(p.mul_scalar(b)))
            .collect();
        self.updates += 1;
    }

    /// A copy of `model` holding the averaged weights.
    pub fn apply<M: Module>(&self, model: M) -> M {
        with_flat_params(model, &self.shadow)
    }

    /// An EMA whose shadow weights (one flattened tensor per float parameter, in visiting
    /// order) were kept elsewhere, e.g. by the fused 2D training step.
    pub fn from_shadow(decay: f64, warmup: bool, updates: u64, shadow: Vec<Tensor<1>>) -> Self {
        Self {
            decay,
            warmup,
            updates,
            shadow,
        }
    }
}

/// `model` with its float parameters replaced, in visiting order, by the flattened `values`
/// (reshaped to each parameter's shape, moved to its device; identities kept).
pub fn with_flat_params<M: Module>(model: M, values: &[Tensor<1>]) -> M {
    struct Put<'a>(&'a [Tensor<1>], usize);
    impl ModuleMapper for Put<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, value, mapper) = param.consume();
            let t = self.0[self.1]
                .clone()
                .to_device(&value.device())
                .reshape(value.shape());
            self.1 += 1;
            Param::from_mapped_value(id, t, mapper)
        }
    }
    model.map(&mut Put(values, 0))
}

/// A copy of `model` whose float parameters are cast to `dtype` inside the autodiff graph: the
/// forward pass then computes in `dtype`, and the gradients flow back through the casts to the
/// original (f32 "master") parameters in their own dtype, as under PyTorch's autocast. The
/// copy shares the parameters' identities, so `GradientsParams::from_grads(grads, &model)`
/// finds the master weights' gradients.
pub fn autocast<M: Module>(model: M, dtype: burn::tensor::FloatDType) -> M {
    struct Cast(burn::tensor::FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, value, mapper) = param.consume();
            Param::from_mapped_value(id, value.cast(self.0), mapper)
        }
    }
    model.map(&mut Cast(dtype))
}

/// Training losses kept on the device and read back to the host in one transfer every
/// `every` steps: reading a value back waits for the device to finish all queued work, which
/// on a GPU would stall the pipeline once per step.
pub struct LossReader {
    every: usize,
    pending: Vec<(usize, Tensor<1>)>,
}

impl LossReader {
    pub fn new(every: usize) -> Self {
        Self {
            every: every.max(1),
            pending: Vec::new(),
        }
    }

    /// Queues the (scalar) loss of 0-based `step`, detached from the autodiff graph.
    pub fn push(&mut self, step: usize, loss: Tensor<1>) {
        let loss = if loss.is_autodiff() {
            loss.inner()
        } else {
            loss
        };
        self.pending.push((step, loss));
    }

    /// True when `every` losses are waiting.
    pub fn due(&self) -> bool {
        self.pending.len() >= self.every
    }

    /// Reads the queued losses, appends them to `out` as (step, loss) and returns the last
    /// one; an error names the first step whose loss is not finite.
    pub fn flush(&mut self, out: &mut Vec<(usize, f64)>) -> Result<Option<f64>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let (steps, values): (Vec<usize>, Vec<Tensor<1>>) = self.pending.drain(..).unzip();
        let values = Tensor::cat(values, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::invalid("training", format!("could not read the loss: {e:?}")))?;
        for (step, v) in steps.into_iter().zip(values) {
            let v = v as f64;
            if !v.is_finite() {
                return Err(Error::invalid(
                    "training",
                    format!("loss became {v} at step {step}; lower the learning rate"),
                ));
            }
            out.push((step, v));
        }
        Ok(out.last().map(|&(_, v)| v))
    }
}

/// The weights to sample with: a plain-device copy of `model`, averaged by `ema` when given.
pub fn sampling_weights<M: Module>(model: &M, ema: Option<&Ema>) -> M {
    let m = model.valid();
    match ema {
        Some(e) => e.apply(m),
        None => m,
    }
}

/// A progress bar showing steps/s, ETA and a message (loss). Hidden when stderr is not a TTY.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}, {{per_sec}}] {{msg}}"
        ))
        .expect("valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(500));
    pb
}

/// Gradients of `model` from `grads`, rescaled so their global L2 norm is at most `max_norm`:
/// PyTorch's clip_grad_norm_, g ← g·min(1, max_norm/(‖g‖ + 1e-6)) (burn's own clipping works
/// per tensor). Computed on the device, without reading the norm back, so a GPU step does not
/// wait for it.
pub fn clip_grads<M: Module>(
    grads: Gradients,
    model: &M,
    max_norm: Option<f64>,
) -> GradientsParams {
    clip_params(GradientsParams::from_grads(grads, model), model, max_norm)
}

/// [`clip_grads`] on gradients already collected per parameter.
pub fn clip_params<M: Module>(
    mut g: GradientsParams,
    model: &M,
    max_norm: Option<f64>,
) -> GradientsParams {
    let Some(max_norm) = max_norm else { return g };
    struct SumSq<'a>(&'a GradientsParams, Vec<Tensor<1>>);
    impl ModuleVisitor for SumSq<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(t) = self.0.get::<D>(param.id) {
                self.1.push(t.square().sum());
            }
        }
    }
    let mut parts = SumSq(&g, Vec::new());
    model.visit(&mut parts);
    if parts.1.is_empty() {
        return g;
    }
    let norm = Tensor::cat(parts.1, 0).sum().sqrt();
    let scale = norm
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    struct Scale<'a>(&'a mut GradientsParams, Tensor<1>);
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(t) = self.0.remove::<D>(param.id) {
                self.0
                    .register(param.id, t * self.1.clone().unsqueeze::<D>());
            }
        }
    }
    model.visit(&mut Scale(&mut g, scale));
    g
}
