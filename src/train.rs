//! Training plumbing shared by the 2D and the image trainers: optimizer settings and the
//! learning-rate schedule, EMA of the weights, optimizer-state persistence for `--resume`,
//! the progress bar and Ctrl-C handling.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
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
                "--lr",
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        if let Some(c) = self.grad_clip {
            if !(c > 0.0) {
                return Err(Error::invalid(
                    "--grad-clip",
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

/// Float parameters of a module in visiting order.
struct Collect(Vec<(ParamId, TensorData, Vec<usize>)>);
impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        self.0.push((param.id, t.to_data(), t.dims().to_vec()));
    }
}

/// Parameter identities in visiting order (optimizer state is keyed by them).
pub fn param_ids<M: Module>(m: &M) -> Vec<u64> {
    struct Ids(Vec<u64>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id.val());
        }
    }
    let mut v = Ids(Vec::new());
    m.visit(&mut v);
    v.0
}

/// Gives `m`'s parameters the identities `ids` (in visiting order), so a saved optimizer state
/// applies to a freshly loaded model.
pub fn set_param_ids<M: Module>(m: M, ids: &[u64]) -> Result<M> {
    let n = param_ids(&m).len();
    if n != ids.len() {
        return Err(Error::invalid(
            "resume",
            format!("saved state has {} parameters, the model {n}", ids.len()),
        ));
    }
    struct SetIds<'a>(&'a [u64], usize);
    impl ModuleMapper for SetIds<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, value, mapper) = param.consume();
            let id = ParamId::from(self.0[self.1]);
            self.1 += 1;
            Param::from_mapped_value(id, value, mapper)
        }
    }
    Ok(m.map(&mut SetIds(ids, 0)))
}

/// The optimizer state (moments and step counts) as bytes, in a canonical order: burn keeps the
/// per-parameter states in a hash map, so its own serialisation lists them in a different order
/// in every process; sorting them by name makes identical runs write identical files.
/// `path` only names the file in errors.
pub fn optimizer_bytes(opt: &ModuleOptimizer, path: &Path) -> Result<Vec<u8>> {
    let fail = |e: String| Error::Checkpoint {
        path: path.into(),
        msg: format!("could not serialise the optimizer state: {e}"),
    };
    let bytes = opt.into_bytes().map_err(|e| fail(format!("{e:?}")))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| fail(e.to_string()))?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut tensors = reader.into_tensors().map_err(|e| fail(e.to_string()))?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut w = burn_pack::Writer::new(tensors);
    for (k, v) in &scalars {
        w = w.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        w = w.with_metadata(k, v);
    }
    Ok(w.into_bytes().map_err(|e| fail(e.to_string()))?.to_vec())
}

/// Restores an optimizer state written from [`optimizer_bytes`].
pub fn load_optimizer(opt: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    opt.from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::Checkpoint {
            path: path.into(),
            msg: format!("not a valid optimizer state: {e:?}"),
        })
}

/// Exponential moving average of a model's weights (Polyak averaging), kept on the host in
/// f32, with the optional warm-up of improved-diffusion/diffusers: decay_k = min(decay, (1+k)/(10+k)).
#[derive(Debug, Clone)]
pub struct Ema {
    pub decay: f64,
    pub warmup: bool,
    pub updates: u64,
    shadow: Vec<Vec<f32>>,
}

impl Ema {
    pub fn new<M: Module>(model: &M, decay: f64, warmup: bool) -> Self {
        let mut c = Collect(Vec::new());
        model.visit(&mut c);
        let shadow =
            c.0.into_iter()
                .map(|(_, d, _)| d.try_to_vec::<f32>().expect("f32 params"))
                .collect();
        Self {
            decay,
            warmup,
            updates: 0,
            shadow,
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

    /// shadow ← d·shadow + (1−d)·θ.
    pub fn update<M: Module>(&mut self, model: &M) {
        let d = self.current_decay() as f32;
        let mut c = Collect(Vec::new());
        model.visit(&mut c);
        for (s, (_, data, _)) in self.shadow.iter_mut().zip(c.0) {
            let p = data.try_to_vec::<f32>().expect("f32 params");
            for (a, b) in s.iter_mut().zip(p) {
                *a = d * *a + (1.0 - d) * b;
            }
        }
        self.updates += 1;
    }

    /// A copy of `model` holding the averaged weights.
    pub fn apply<M: Module>(&self, model: M) -> M {
        struct Put<'a>(&'a [Vec<f32>], usize);
        impl ModuleMapper for Put<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let (id, value, mapper) = param.consume();
                let dims = value.dims();
                let t = Tensor::from_data(
                    TensorData::new(self.0[self.1].clone(), dims),
                    &value.device(),
                );
                self.1 += 1;
                Param::from_mapped_value(id, t, mapper)
            }
        }
        model.map(&mut Put(&self.shadow, 0))
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

/// Gradients of `model` from `grads`, rescaled so their global L2 norm is at most `max_norm`
/// (PyTorch's clip_grad_norm_; burn's own clipping works per tensor).
pub fn clip_grads<M: Module>(
    grads: Gradients,
    model: &M,
    max_norm: Option<f64>,
) -> GradientsParams {
    let mut g = GradientsParams::from_grads(grads, model);
    let Some(max_norm) = max_norm else { return g };
    struct Norm<'a>(&'a GradientsParams, f64);
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(t) = self.0.get::<D>(param.id) {
                self.1 += t.square().sum().into_scalar::<f32>() as f64;
            }
        }
    }
    let mut n = Norm(&g, 0.0);
    model.visit(&mut n);
    let norm = n.1.sqrt();
    if norm > max_norm {
        let scale = (max_norm / (norm + 1e-6)) as f32;
        struct Scale<'a>(&'a mut GradientsParams, f32);
        impl ModuleVisitor for Scale<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(t) = self.0.remove::<D>(param.id) {
                    self.0.register(param.id, t * self.1);
                }
            }
        }
        model.visit(&mut Scale(&mut g, scale));
    }
    g
}
