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

/// Named training recipes, for the 2D workflow ([`crate::toy`]: `Recipe::config`) and over
/// an image preset ([`crate::image::Preset::with_recipe`]); every ingredient is also a flag of
/// its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// The course protocol (comparable numbers); on the digits, the demo's preset as it was.
    #[default]
    Reference,
    /// The improved recipe, measured in BENCHMARKS.md.
    Best,
}

impl Recipe {
    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Reference => "reference",
            Recipe::Best => "best",
        }
    }
}

/// Optimizer and schedule settings (Adam with PyTorch's defaults for ε and β).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
///
/// The parameters of normalisation layers (GroupNorm, LayerNorm, BatchNorm, RmsNorm) stay in
/// f32: PyTorch's autocast runs the norms in f32 with the f32 weights, and the UNet does the
/// same (`nn::unet::norm_act` casts the activations to f32 around each GroupNorm), so a bf16
/// copy of γ and β would only lose their low bits.
pub fn autocast<M: Module>(model: M, dtype: burn::tensor::FloatDType) -> M {
    /// Module types whose parameters keep f32 (burn's `Struct:<type>` container names).
    const KEEP_F32: [&str; 4] = [
        "Struct:GroupNorm",
        "Struct:LayerNorm",
        "Struct:BatchNorm",
        "Struct:RmsNorm",
    ];
    struct Cast {
        dtype: burn::tensor::FloatDType,
        /// How many normalisation modules enclose the current parameter.
        in_norm: usize,
    }
    impl ModuleMapper for Cast {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            self.in_norm += usize::from(KEEP_F32.contains(&container_type));
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.in_norm -= usize::from(KEEP_F32.contains(&container_type));
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.in_norm > 0 {
                return param;
            }
            let (id, value, mapper) = param.consume();
            Param::from_mapped_value(id, value.cast(self.dtype), mapper)
        }
    }
    model.map(&mut Cast { dtype, in_norm: 0 })
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

/// The global L2 norm of `model`'s gradients in `g`, on the device (None when there are none).
pub fn grad_norm<M: Module>(g: &GradientsParams, model: &M) -> Option<Tensor<1>> {
    struct SumSq<'a>(&'a GradientsParams, Vec<Tensor<1>>);
    impl ModuleVisitor for SumSq<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(t) = self.0.get::<D>(param.id) {
                self.1.push(t.square().sum());
            }
        }
    }
    let mut parts = SumSq(g, Vec::new());
    model.visit(&mut parts);
    (!parts.1.is_empty()).then(|| Tensor::cat(parts.1, 0).sum().sqrt())
}

/// [`clip_grads`] on gradients already collected per parameter.
pub fn clip_params<M: Module>(
    mut g: GradientsParams,
    model: &M,
    max_norm: Option<f64>,
) -> GradientsParams {
    let Some(max_norm) = max_norm else { return g };
    let Some(norm) = grad_norm(&g, model) else {
        return g;
    };
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

/// Adam + the EMA of the weights as one multi-tensor update per step
/// ([`diffuse_kernels::adam`]): on a CubeCL device a few tens of kernel launches for all the
/// parameters instead of burn's per-tensor chains (thousands of tiny kernels per step). The
/// arithmetic is burn's Adam as [`OptimConfig::adam`] configures it (the same f32 operations in
/// the same order) followed by [`Ema::update`]; other devices run burn's composed operations.
///
/// The state is burn's per parameter (step count, first and second moments), kept in the
/// parameters' visiting order, flattened, on the device; [`FusedAdam::to_optimizer`] and
/// [`FusedAdam::from_optimizer`] convert it losslessly to and from burn's `ModuleOptimizer`, so
/// checkpoints (`optim.bin`) and `--resume` are the same files either way.
#[derive(Debug, Clone)]
pub struct FusedAdam {
    hyper: diffuse_kernels::adam::AdamHyper,
    /// Per parameter in visiting order: (updates done, m, v); None before its first update.
    state: Vec<Option<(usize, Tensor<1>, Tensor<1>)>>,
}

/// A model's float parameters in visiting order: id, module path (as burn's optimizer names
/// it), shape, and the value off the autodiff graph, flattened.
struct ParamList {
    ids: Vec<u64>,
    paths: Vec<String>,
    dims: Vec<Vec<usize>>,
    values: Vec<Tensor<1>>,
}

fn param_list<M: Module>(m: &M) -> ParamList {
    struct Collect(Vec<String>, ParamList);
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let t = if t.is_autodiff() { t.inner() } else { t };
            let dims = t.dims().to_vec();
            let n: usize = dims.iter().product();
            self.1.ids.push(param.id.val());
            self.1.paths.push(self.0.join("."));
            self.1.dims.push(dims);
            self.1.values.push(t.reshape([n]));
        }
    }
    let mut c = Collect(
        Vec::new(),
        ParamList {
            ids: Vec::new(),
            paths: Vec::new(),
            dims: Vec::new(),
            values: Vec::new(),
        },
    );
    m.visit(&mut c);
    c.1
}

impl FusedAdam {
    /// A fresh optimizer for a model with `n_params` float parameters.
    pub fn new(cfg: &OptimConfig, n_params: usize) -> Self {
        Self {
            hyper: diffuse_kernels::adam::AdamHyper {
                beta1: cfg.beta1 as f32,
                beta2: cfg.beta2 as f32,
                eps: cfg.eps as f32,
            },
            state: vec![None; n_params],
        }
    }

    /// The state of burn's Adam `opt` for `model`'s parameters, on `model`'s device.
    pub fn from_optimizer<M: Module>(
        cfg: &OptimConfig,
        opt: &burn::optim::ModuleOptimizer,
        model: &M,
    ) -> Result<Self> {
        let params = param_list(model);
        let mut me = Self::new(cfg, params.ids.len());
        let index: std::collections::HashMap<u64, usize> = params
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        for s in crate::checkpoint::optimizer::adam_moments(opt)? {
            let Some(&i) = index.get(&s.id) else {
                return Err(Error::invalid(
                    "optimizer state",
                    format!("parameter {} is not in the model", s.id),
                ));
            };
            let n: usize = params.dims[i].iter().product();
            let device = params.values[i].device();
            let flat = |d: TensorData| -> Result<Tensor<1>> {
                if d.shape().iter().product::<usize>() != n {
                    return Err(Error::invalid(
                        "optimizer state",
                        format!("the moments of parameter {} do not fit it", s.id),
                    ));
                }
                let (bytes, _, dtype) = d.convert::<f32>().into_parts();
                Ok(Tensor::<1>::from_data(
                    TensorData::from_bytes(bytes, [n], dtype),
                    &device,
                ))
            };
            me.state[i] = Some((s.time, flat(s.m)?, flat(s.v)?));
        }
        Ok(me)
    }

    /// The fused optimizer for training `model` on its device, holding `opt`'s state: Some on
    /// a CubeCL device (f32 parameters), None on the CPU, which keeps burn's Adam (the
    /// reference, byte for byte). `DIFFUSE_FUSED_ADAM=0` keeps burn's Adam everywhere (for
    /// comparisons).
    pub fn for_model<M: Module>(
        cfg: &OptimConfig,
        opt: &burn::optim::ModuleOptimizer,
        model: &M,
    ) -> Result<Option<Self>> {
        if std::env::var("DIFFUSE_FUSED_ADAM").is_ok_and(|v| v == "0") {
            return Ok(None);
        }
        #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
        let cube = param_list(model)
            .values
            .first()
            .is_some_and(diffuse_kernels::is_cube_f32);
        #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
        let cube = false;
        // Without the CubeCL kernel in this build the update would be burn's operations anyway.
        if !(cube && diffuse_kernels::adam::CUBE_KERNEL) {
            return Ok(None);
        }
        Self::from_optimizer(cfg, opt, model).map(Some)
    }

    /// This state as burn's Adam (`OptimConfig::adam`) for `model`.
    pub fn to_optimizer<M: Module>(
        &self,
        cfg: &OptimConfig,
        model: &M,
    ) -> Result<burn::optim::ModuleOptimizer> {
        crate::checkpoint::optimizer::optimizer_from_moments(cfg.adam(), self.moments(model)?)
    }

    /// This state as burn's Adam keeps it, per parameter of `model`, read back to the host:
    /// what checkpoints save (`checkpoint::optimizer::moments_bytes`).
    pub fn moments<M: Module>(
        &self,
        model: &M,
    ) -> Result<Vec<crate::checkpoint::optimizer::AdamMoments>> {
        let params = param_list(model);
        let mut states = Vec::new();
        for (i, s) in self.state.iter().enumerate() {
            let Some((time, m, v)) = s else { continue };
            let dims = params.dims[i].clone();
            let host = |t: &Tensor<1>| t.clone().into_data().convert::<f32>();
            let shaped = |d: TensorData| {
                TensorData::from_bytes(d.into_parts().0, dims.clone(), burn::tensor::DType::F32)
            };
            states.push(crate::checkpoint::optimizer::AdamMoments {
                id: params.ids[i],
                path: Some(params.paths[i].clone()),
                time: *time,
                m: shaped(host(m)),
                v: shaped(host(v)),
            });
        }
        Ok(states)
    }

    /// One Adam step on `model` with `grads` at learning rate `lr`, then `ema`'s update with
    /// the new weights. A parameter without a gradient keeps its value and state, as under
    /// burn's Adam; the EMA averages every parameter, as [`Ema::update`] does.
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        model: M,
        mut grads: GradientsParams,
        ema: Option<&mut Ema>,
    ) -> Result<M> {
        use diffuse_kernels::adam::{adam_ema, AdamEmaScalars, AdamEmaTensors};
        let params = param_list(&model);
        let n = params.ids.len();
        if n != self.state.len() {
            return Err(Error::invalid(
                "optimizer",
                format!(
                    "state for {} parameters, the model has {n}",
                    self.state.len()
                ),
            ));
        }
        // Gradients in visiting order, flattened.
        struct Take<'a>(&'a mut GradientsParams, Vec<Option<Tensor<1>>>);
        impl ModuleVisitor for Take<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let g = self.0.remove::<D>(param.id).map(|g| {
                    let n = g.shape().num_elements();
                    g.reshape([n])
                });
                self.1.push(g);
            }
        }
        let mut take = Take(&mut grads, Vec::with_capacity(n));
        model.visit(&mut take);
        let g = take.1;
        let decay = ema.as_ref().map(|e| e.current_decay() as f32);
        let mut shadow = ema.as_ref().map(|e| e.shadow.clone());
        let mut new_values = params.values.clone();
        // Parameters grouped by their step count (one group in practice: all of them get a
        // gradient every step); each group is one update with its own bias corrections.
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, gi) in g.iter().enumerate() {
            if gi.is_some() {
                let t = self.state[i].as_ref().map_or(0, |s| s.0);
                groups.entry(t + 1).or_default().push(i);
            }
        }
        let mut updated = vec![false; n];
        for (time, idx) in groups {
            let mut t = AdamEmaTensors::default();
            for &i in &idx {
                let p = params.values[i].clone();
                let (m, v) = match self.state[i].take() {
                    Some((_, m, v)) => (m, v),
                    None => (p.zeros_like(), p.zeros_like()),
                };
                t.grads.push(g[i].clone().expect("grouped with a gradient"));
                t.m.push(m);
                t.v.push(v);
                if let Some(s) = shadow.as_ref() {
                    t.shadow.push(s[i].clone());
                }
                t.params.push(p);
            }
            let scalars = AdamEmaScalars::new(self.hyper, time, lr, decay);
            let out = adam_ema(t, &scalars).map_err(|e| Error::invalid("optimizer", e.0))?;
            for (k, &i) in idx.iter().enumerate() {
                new_values[i] = out.params[k].clone();
                self.state[i] = Some((time, out.m[k].clone(), out.v[k].clone()));
                if let Some(s) = shadow.as_mut() {
                    s[i] = out.shadow[k].clone();
                }
                updated[i] = true;
            }
        }
        if let (Some(e), Some(mut s), Some(d)) = (ema, shadow, decay) {
            // Parameters without a gradient: the EMA alone, as Ema::update computes it.
            let (a, b) = (d as f64, (1.0 - d) as f64);
            for i in (0..n).filter(|&i| !updated[i]) {
                s[i] = s[i]
                    .clone()
                    .mul_scalar(a)
                    .add(new_values[i].clone().mul_scalar(b));
            }
            e.shadow = s;
            e.updates += 1;
        }
        // The new values into the model, with each parameter's autodiff settings kept (as
        // burn's optimizer restores them).
        struct Put<'a>(&'a [Tensor<1>], &'a [Vec<usize>], &'a [bool], usize);
        impl ModuleMapper for Put<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let i = self.3;
                self.3 += 1;
                if !self.2[i] {
                    return param;
                }
                let (id, old, mapper) = param.consume();
                let dims: [usize; D] = self.1[i].clone().try_into().expect("the parameter's rank");
                let mut t = Tensor::from_inner(self.0[i].clone().reshape(dims));
                if let Some(strategy) = old.gradient_checkpointing_strategy() {
                    t = t.with_gradient_checkpointing_strategy(strategy);
                }
                if old.is_require_grad() {
                    t = t.require_grad();
                }
                Param::from_mapped_value(id, t, mapper)
            }
        }
        Ok(model.map(&mut Put(&new_values, &params.dims, &updated, 0)))
    }
}

/// One optimizer step on `model` then the EMA update: [`FusedAdam::step`] when `fused` is given
/// (see [`FusedAdam::for_model`]), burn's Adam and [`Ema::update`] otherwise.
pub fn adam_ema_step<M: Module>(
    optim: &mut burn::optim::ModuleOptimizer,
    fused: Option<&mut FusedAdam>,
    lr: f64,
    model: M,
    grads: GradientsParams,
    ema: Option<&mut Ema>,
) -> Result<M> {
    if let Some(f) = fused {
        return f.step(lr, model, grads, ema);
    }
    let model = optim.step(lr, model, grads);
    if let Some(e) = ema {
        e.update(&model);
    }
    Ok(model)
}
