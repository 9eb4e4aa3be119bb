//! Measurements behind `diffuse bench`: the image workflow's training step, DDIM sampling with
//! classifier-free guidance and a device probe, timed the way `bench/torch/unet_torch.py` times
//! its PyTorch twin, so that `bench/gpu_verdict.sh` can put the two side by side.
//!
//! Both sides do the same work per timed step: forward, ε-MSE, backward, Adam and an EMA
//! update of every weight, on a fixed batch already on the device; each step ends with one
//! device synchronisation (`Device::sync` here, `torch.cuda.synchronize()` there) and no other
//! host read-back. The step is [`crate::image::train::Run::optimize`]'s (same autocast, loss,
//! gradient clipping, optimizer and EMA), without the data plumbing (batch upload, host noise),
//! which the PyTorch twin does not have either.
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::Serialize;

use crate::device::Precision;
use crate::image::train::predict_eps;
use crate::image::{Generator, ImageTrainConfig};
use crate::nn::unet::{labels_tensor, UNet, UNetConfig};
use crate::rng::{normal_vec, seeded, uniform_ints};
use crate::sampling::{GuidanceConfig, SamplerKind};
use crate::schedule::{eps_mse, NoiseSchedule};
use crate::train::{adam_ema_step, clip_grads, Ema, FusedAdam};
use crate::{Error, Result};

/// What a training-step benchmark runs.
#[derive(Debug, Clone)]
pub struct StepBenchConfig {
    /// The training setup (network, optimizer, precision, EMA); the AFHQ preset by default.
    pub train: ImageTrainConfig,
    /// Images per step.
    pub batch: usize,
    /// Untimed steps after the first (which is timed on its own as the cold start).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Read every step's loss back to the host (`first-loss`); otherwise only the first and
    /// the last are read, outside the timed steps.
    pub read_every_loss: bool,
    /// Seed of the weights and of the fixed batch.
    pub seed: u64,
}

impl StepBenchConfig {
    /// The AFHQ preset (58.8 M-parameter UNet, 64×64, Adam 2e-4) at batch 16 with an EMA of
    /// decay 0.9999, as the PyTorch twin's step: `warmup` untimed and `steps` timed steps.
    pub fn afhq(precision: Precision, warmup: usize, steps: usize) -> Self {
        let mut train = ImageTrainConfig::reference();
        train.precision = precision;
        train.ema_decay = Some(0.9999);
        Self {
            train,
            batch: 16,
            warmup,
            steps,
            read_every_loss: false,
            seed: 0,
        }
    }

    /// `first-loss`: dropout off (so the loss is the same function of the batch on every
    /// device, whatever its random numbers), two steps, each loss read back. The second loss
    /// comes after one backward pass, Adam and EMA update, so it checks those too.
    pub fn first_loss(mut self) -> Self {
        self.train.unet.dropout = 0.0;
        self.warmup = 0;
        self.steps = 1;
        self.read_every_loss = true;
        self
    }

    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if self.batch == 0 {
            return Err(Error::invalid("bench.batch", "must be at least 1"));
        }
        Ok(())
    }
}

/// The timings and values of one training-step benchmark (seconds unless named `_ms`).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub mode: &'static str,
    pub device: String,
    pub precision: Precision,
    pub batch: usize,
    pub image_size: usize,
    pub channels: usize,
    pub params: usize,
    /// Opening (and proving) the device.
    pub open_s: f64,
    /// From before the device opened to the end of the first step (its loss on the host):
    /// the cold start, dominated on a GPU by kernel compilation and autotuning.
    pub first_step_s: f64,
    /// The first step alone (after set-up).
    pub first_step_only_s: f64,
    /// Loss of every step read back (the first, and with `read_every_loss` each one).
    pub losses: Vec<f64>,
    /// Loss of the last step.
    pub last_loss: f64,
    /// `first-loss` only, at the first step: mean of the network's prediction² and the norm of
    /// all gradients (‖g‖₂ over every parameter), before clipping and Adam.
    pub out_ms: Option<f64>,
    pub grad_norm: Option<f64>,
    pub warmup: usize,
    /// Each timed step, in milliseconds.
    pub step_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
    /// burn's memory pools after the steps (GPU backends only): reserved ≈ the peak, since
    /// pools keep their pages.
    pub pool_reserved_bytes: Option<u64>,
    pub pool_in_use_bytes: Option<u64>,
}

/// The fixed batch of a benchmark: noised images, their noise, timesteps and labels.
struct FixedBatch {
    x_t: Tensor<4>,
    noise: Tensor<4>,
    t: Tensor<1>,
    labels: Tensor<1, Int>,
}

impl FixedBatch {
    /// Drawn from `seed` on the host, so every device gets the same numbers: x₀ uniform in
    /// [−1, 1] (image-like range), ε and t as training draws them, x_t = q(x_t | x₀) (Ho et al.
    /// 2020, eq. 4), labels uniform over the real classes 1…K.
    fn new(u: &UNetConfig, b: usize, seed: u64, device: &Device) -> Result<Self> {
        let schedule = NoiseSchedule::new(&Default::default())?;
        let mut r = seeded(seed, 0xbe_0000);
        let n = b * u.in_channels * u.image_size * u.image_size;
        let shape = [b, u.in_channels, u.image_size, u.image_size];
        let x0: Vec<f32> = normal_vec(&mut r, n)
            .into_iter()
            .map(|v| (v * 0.5).clamp(-1.0, 1.0))
            .collect();
        let eps = normal_vec(&mut r, n);
        let t = uniform_ints(&mut r, b, schedule.num_steps());
        let labels: Vec<usize> = uniform_ints(&mut r, b, u.num_classes.max(1))
            .into_iter()
            .map(|l| l + usize::from(u.num_classes > 0))
            .collect();
        let x0 = Tensor::from_data(TensorData::new(x0, shape), device);
        let noise: Tensor<4> = Tensor::from_data(TensorData::new(eps, shape), device);
        let x_t = schedule.q_sample(x0, &t, noise.clone());
        let t = Tensor::from_data(
            TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b]),
            device,
        );
        Ok(Self {
            x_t,
            noise,
            t,
            labels: labels_tensor(&labels, device),
        })
    }
}

/// One training step as `image train` takes it ([`predict_eps`] in the run's precision, ε-MSE
/// in f32, backward, gradient clipping, Adam and EMA as [`adam_ema_step`]: the fused update on
/// a CubeCL device); returns the loss, still on the device, and
/// with `checks` also (mean of the prediction², sum of the gradients²), which depend on every
/// layer far more than the loss does: the reference initialisation makes the last convolution
/// tiny (gain 1e-5), so the first loss is ≈ mean(ε²) whatever the network computes.
fn train_step(
    cfg: &ImageTrainConfig,
    model: &mut Option<UNet>,
    optim: &mut burn::optim::ModuleOptimizer,
    fused: Option<&mut FusedAdam>,
    ema: Option<&mut Ema>,
    batch: &FixedBatch,
    checks: bool,
) -> Result<(Tensor<1>, Option<(Tensor<1>, Tensor<1>)>)> {
    let m = model.take().expect("a model between steps");
    let labels = Some(batch.labels.clone());
    let pred = predict_eps(
        &m,
        cfg.precision,
        batch.x_t.clone(),
        batch.t.clone(),
        labels,
    );
    let pred_ms = checks.then(|| pred.clone().inner().square().mean());
    let loss = eps_mse(batch.noise.clone(), pred);
    let grads = clip_grads(loss.backward(), &m, cfg.optim.grad_clip);
    let extra = pred_ms.map(|p| (p, grad_sum_sq(&grads, &m)));
    let m = adam_ema_step(optim, fused, cfg.optim.lr, m, grads, ema)?;
    *model = Some(m);
    Ok((loss.inner(), extra))
}

/// Σ g² over every parameter's gradient, as a one-element tensor on the device.
fn grad_sum_sq(grads: &GradientsParams, model: &UNet) -> Tensor<1> {
    struct SumSq<'a>(&'a GradientsParams, Vec<Tensor<1>>);
    impl ModuleVisitor for SumSq<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(t) = self.0.get::<D>(param.id) {
                self.1
                    .push(t.cast(burn::tensor::FloatDType::F32).square().sum());
            }
        }
    }
    let mut parts = SumSq(grads, Vec::new());
    model.visit(&mut parts);
    Tensor::cat(parts.1, 0).sum()
}

fn read_loss(loss: Tensor<1>) -> Result<f64> {
    let v = loss
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::invalid("bench", format!("could not read the loss: {e:?}")))?;
    let v = v.first().copied().unwrap_or(f32::NAN) as f64;
    if !v.is_finite() {
        return Err(Error::invalid("bench", format!("the loss is {v}")));
    }
    Ok(v)
}

fn sync(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| Error::invalid("device", format!("synchronisation failed: {e:?}")))
}

/// Median and minimum of `v` (NaN for an empty slice).
pub fn median_min(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let med = if n.is_multiple_of(2) {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    } else {
        s[n / 2]
    };
    (med, s[0])
}

/// Runs the training-step benchmark on `device` (the plain device; the autodiff wrapper is
/// added here). `started` is when the command started (before the device was opened) and
/// `open_s` how long opening took, for the cold-start figure. `on_step` sees each timed step
/// (index, milliseconds) as soon as it is done.
pub fn step_bench(
    cfg: &StepBenchConfig,
    device: &Device,
    device_name: &str,
    started: Instant,
    open_s: f64,
    mut on_step: impl FnMut(usize, f64),
) -> Result<StepReport> {
    cfg.validate()?;
    cfg.train.precision.check(device)?;
    let tc = &cfg.train;
    let ad = device.clone().autodiff();
    let mut model = Some(tc.unet.init(&ad, &mut seeded(cfg.seed, 2))?);
    let params = model.as_ref().map(|m| m.num_params()).unwrap_or(0);
    let mut optim = tc.optim.adam();
    let mut fused = FusedAdam::for_model(&tc.optim, &optim, model.as_ref().unwrap())?;
    let mut ema = tc
        .ema_decay
        .map(|d| Ema::new(model.as_ref().unwrap(), d, true));
    let batch = FixedBatch::new(&tc.unet, cfg.batch, cfg.seed, &ad)?;
    device.seed(cfg.seed);
    // The first step: compiles and tunes every kernel of the step on a cold GPU process.
    let mut step = |checks: bool| {
        train_step(
            tc,
            &mut model,
            &mut optim,
            fused.as_mut(),
            ema.as_mut(),
            &batch,
            checks,
        )
    };
    let t1 = Instant::now();
    let (loss, extra) = step(cfg.read_every_loss)?;
    let mut losses = vec![read_loss(loss)?];
    let (mut out_ms, mut grad_norm) = (None, None);
    if let Some((p, g)) = extra {
        out_ms = Some(read_loss(p)?);
        grad_norm = Some(read_loss(g)?.sqrt());
    }
    sync(device)?;
    let first_step_only_s = t1.elapsed().as_secs_f64();
    let first_step_s = started.elapsed().as_secs_f64();
    for _ in 0..cfg.warmup {
        let (loss, _) = step(false)?;
        if cfg.read_every_loss {
            losses.push(read_loss(loss)?);
        }
        sync(device)?;
    }
    let mut step_ms = Vec::with_capacity(cfg.steps);
    let mut last = None;
    for i in 0..cfg.steps {
        let t = Instant::now();
        let (loss, _) = step(false)?;
        if cfg.read_every_loss {
            losses.push(read_loss(loss.clone())?);
        }
        sync(device)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        step_ms.push(ms);
        on_step(i, ms);
        last = Some(loss);
    }
    let last_loss = match last {
        Some(l) => read_loss(l)?,
        None => losses.last().copied().unwrap_or(f64::NAN),
    };
    let (median_ms, min_ms) = median_min(&step_ms);
    let pool = device.memory_pool_usage();
    Ok(StepReport {
        mode: if cfg.read_every_loss {
            "first-loss"
        } else {
            "step"
        },
        device: device_name.to_string(),
        precision: tc.precision,
        batch: cfg.batch,
        image_size: tc.unet.image_size,
        channels: tc.unet.channels,
        params,
        open_s,
        first_step_s,
        first_step_only_s,
        losses,
        last_loss,
        out_ms,
        grad_norm,
        warmup: cfg.warmup,
        step_ms,
        median_ms,
        min_ms,
        pool_reserved_bytes: pool.as_ref().map(|u| u.bytes_reserved),
        pool_in_use_bytes: pool.as_ref().map(|u| u.bytes_in_use),
    })
}

/// What a sampling benchmark runs: DDIM (η = 0) with classifier-free guidance, one batch.
#[derive(Debug, Clone)]
pub struct SampleBenchConfig {
    pub unet: UNetConfig,
    /// Images generated (one batch: each network call sees 2× this many, conditional and
    /// unconditional).
    pub batch: usize,
    /// DDIM steps.
    pub steps: usize,
    /// CFG scale w (reference convention: ε̃ = (1 + w) ε_c − w ε_u).
    pub cfg_scale: f64,
    /// Untimed warm-up runs (each with `warmup_steps` DDIM steps).
    pub warmup: usize,
    pub warmup_steps: usize,
    /// Timed runs.
    pub runs: usize,
    pub seed: u64,
}

impl SampleBenchConfig {
    /// The AFHQ network, 16 images, DDIM-50, w = 7.5 (the course's sampling setting).
    pub fn afhq() -> Self {
        Self {
            unet: UNetConfig::default(),
            batch: 16,
            steps: 50,
            cfg_scale: 7.5,
            warmup: 1,
            warmup_steps: 2,
            runs: 1,
            seed: 0,
        }
    }
}

/// Timings of a sampling benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub mode: &'static str,
    pub device: String,
    pub batch: usize,
    pub steps: usize,
    pub cfg_scale: f64,
    pub image_size: usize,
    pub channels: usize,
    pub open_s: f64,
    /// The warm-up runs together (the cold start of the sampler's kernels).
    pub warmup_s: f64,
    /// Each timed run (all `batch` images, `steps` steps, read back to the host), seconds.
    pub run_s: Vec<f64>,
    /// Median run divided by the images per run.
    pub per_image_ms: f64,
    /// Mean of the images of the last run (a sanity value: finite, near 0 for noise-like data).
    pub mean: f64,
    pub pool_reserved_bytes: Option<u64>,
    pub pool_in_use_bytes: Option<u64>,
}

/// Runs the sampling benchmark through [`Generator`] (the `image sample` path) on `device`.
pub fn sample_bench(
    cfg: &SampleBenchConfig,
    device: &Device,
    device_name: &str,
    open_s: f64,
) -> Result<SampleReport> {
    cfg.unet.validate()?;
    if cfg.batch == 0 || cfg.steps == 0 || cfg.runs == 0 {
        return Err(Error::invalid(
            "bench",
            "batch, steps and runs must be at least 1",
        ));
    }
    let model = cfg.unet.init(device, &mut seeded(cfg.seed, 2))?;
    let schedule = NoiseSchedule::new(&Default::default())?;
    let guidance = GuidanceConfig::from(crate::sampling::Guidance::new(
        cfg.cfg_scale,
        crate::sampling::GuidanceConvention::Reference,
    )?);
    let labels: Vec<usize> = (0..cfg.batch)
        .map(|i| 1 + i % cfg.unet.num_classes.max(1))
        .collect();
    let shape = crate::image::model_shape(&cfg.unet);
    let generate = |steps: usize| -> Result<Vec<f32>> {
        let spec = crate::image::image_spec(SamplerKind::Ddim, steps, 0.0, false);
        Generator::new(&model, shape, &schedule, spec)
            .guided(guidance, None)
            .generate(&labels, cfg.seed, cfg.batch, None)
    };
    let t = Instant::now();
    for _ in 0..cfg.warmup {
        generate(cfg.warmup_steps.max(1))?;
    }
    let warmup_s = t.elapsed().as_secs_f64();
    let mut run_s = Vec::new();
    let mut mean = f64::NAN;
    for _ in 0..cfg.runs {
        let t = Instant::now();
        let out = generate(cfg.steps)?;
        run_s.push(t.elapsed().as_secs_f64());
        mean = out.iter().map(|&v| v as f64).sum::<f64>() / out.len().max(1) as f64;
    }
    if !mean.is_finite() {
        return Err(Error::invalid("bench", "the samples are not finite"));
    }
    let (med, _) = median_min(&run_s);
    let pool = device.memory_pool_usage();
    Ok(SampleReport {
        mode: "sample",
        device: device_name.to_string(),
        batch: cfg.batch,
        steps: cfg.steps,
        cfg_scale: cfg.cfg_scale,
        image_size: cfg.unet.image_size,
        channels: cfg.unet.channels,
        open_s,
        warmup_s,
        run_s,
        per_image_ms: med / cfg.batch as f64 * 1e3,
        mean,
        pool_reserved_bytes: pool.as_ref().map(|u| u.bytes_reserved),
        pool_in_use_bytes: pool.as_ref().map(|u| u.bytes_in_use),
    })
}

/// The CUDA versions that matter for a carried binary: the driver API bindings it was built
/// with (cudarc's `CUDA_VERSION`), and at run time the driver's and NVRTC's. The rule is
/// bindings ≤ NVRTC ≤ driver: bindings newer than the driver call entry points it lacks
/// (CUDA 13 bindings call `cuEventElapsedTime_v2`, absent before 12.8, and `cuDeviceGetUuid_v2`),
/// cubecl enables kernel features from the bindings' version (f32×2/×4 atomics above 12.8,
/// fast tanh from 12.8) that an older NVRTC cannot compile, and an NVRTC newer than the
/// driver emits PTX the driver cannot load.
#[derive(Debug, Clone, Serialize)]
pub struct CudaVersions {
    /// As 1000·major + 10·minor (13000 = 13.0).
    pub bindings: u32,
    pub driver: Option<u32>,
    pub nvrtc: Option<u32>,
    pub device_name: Option<String>,
}

impl CudaVersions {
    /// The rule's violations, as sentences (empty when it holds or a version is unknown).
    pub fn problems(&self) -> Vec<String> {
        let v = |x: u32| format!("{}.{}", x / 1000, (x % 1000) / 10);
        let mut out = Vec::new();
        if let Some(d) = self.driver {
            if self.bindings > d {
                out.push(format!(
                    "the binary's CUDA bindings ({}) are newer than the driver ({}): rebuild \
                     with CUDARC_CUDA_VERSION={} or update the driver",
                    v(self.bindings),
                    v(d),
                    d / 10 * 10
                ));
            }
        }
        if let Some(n) = self.nvrtc {
            if self.bindings > n {
                out.push(format!(
                    "NVRTC ({}) is older than the binary's CUDA bindings ({}): use a newer \
                     toolkit's libnvrtc or rebuild with CUDARC_CUDA_VERSION={}",
                    v(n),
                    v(self.bindings),
                    n / 10 * 10
                ));
            }
            if let Some(d) = self.driver {
                if n > d {
                    out.push(format!(
                        "NVRTC ({}) is newer than the driver ({}): its PTX may not load; use \
                         the toolkit that matches the driver",
                        v(n),
                        v(d)
                    ));
                }
            }
        }
        out
    }

    /// One line: "bindings 13.0, driver 13.0, NVRTC 13.0, NVIDIA H200".
    pub fn line(&self) -> String {
        let v = |x: Option<u32>| match x {
            Some(x) => format!("{}.{}", x / 1000, (x % 1000) / 10),
            None => "unknown".into(),
        };
        format!(
            "CUDA bindings {}, driver {}, NVRTC {}{}",
            v(Some(self.bindings)),
            v(self.driver),
            v(self.nvrtc),
            self.device_name
                .as_ref()
                .map(|n| format!(", {n}"))
                .unwrap_or_default()
        )
    }
}

/// The CUDA versions of this binary and machine, and the name of CUDA device `ordinal` (`None`
/// without the `cuda` feature). Call it after that device opened: the driver and NVRTC
/// libraries are then known to load (the queries panic when a library is missing).
pub fn cuda_versions(ordinal: usize) -> Option<CudaVersions> {
    #[cfg(feature = "cuda")]
    {
        use cudarc::driver::sys as drv;
        use cudarc::nvrtc::sys as rtc;
        let mut d: std::ffi::c_int = 0;
        // SAFETY: cuDriverGetVersion writes one int and needs no initialisation; the library
        // was loaded by the device that opened.
        let driver = unsafe { drv::cuDriverGetVersion(&mut d) }
            .result()
            .ok()
            .map(|_| d as u32);
        let (mut ma, mut mi): (std::ffi::c_int, std::ffi::c_int) = (0, 0);
        // SAFETY: nvrtcVersion writes two ints; NVRTC was loaded to compile the probe kernel.
        let nvrtc = unsafe { rtc::nvrtcVersion(&mut ma, &mut mi) }
            .result()
            .ok()
            .map(|_| (ma * 1000 + mi * 10) as u32);
        let device_name = cudarc::driver::result::init()
            .ok()
            .and_then(|_| cudarc::driver::result::device::get(ordinal as std::ffi::c_int).ok())
            .and_then(|dev| cudarc::driver::result::device::get_name(dev).ok());
        Some(CudaVersions {
            bindings: drv::CUDA_VERSION,
            driver,
            nvrtc,
            device_name,
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_min(&[3.0, 1.0, 2.0]), (2.0, 1.0));
        assert_eq!(median_min(&[4.0, 1.0, 3.0, 2.0]), (2.5, 1.0));
        assert!(median_min(&[]).0.is_nan());
    }

    #[test]
    fn cuda_version_rule() {
        let ok = CudaVersions {
            bindings: 13000,
            driver: Some(13000),
            nvrtc: Some(13000),
            device_name: None,
        };
        assert!(ok.problems().is_empty());
        assert_eq!(ok.line(), "CUDA bindings 13.0, driver 13.0, NVRTC 13.0");
        // The fallback bindings (13.4) on a 13.0 driver with 13.0 NVRTC break both halves.
        let newer = CudaVersions {
            bindings: 13040,
            ..ok.clone()
        };
        let p = newer.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("CUDARC_CUDA_VERSION=13000"), "{}", p[0]);
        let nvrtc_ahead = CudaVersions {
            nvrtc: Some(13020),
            ..ok
        };
        assert_eq!(nvrtc_ahead.problems().len(), 1);
    }

    /// The benchmark's step is a real training step: on a tiny UNet the second loss of
    /// `first-loss` (after one Adam step on the same batch) is below the first, and two runs
    /// give the same bytes on the CPU.
    #[test]
    fn first_loss_is_deterministic_and_learns() {
        let mut cfg = StepBenchConfig::afhq(Precision::F32, 0, 1).first_loss();
        cfg.train.unet = UNetConfig {
            image_size: 8,
            channels: 8,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attn_levels: vec![1],
            num_groups: 4,
            ..UNetConfig::default()
        };
        cfg.train.optim.lr = 1e-3;
        cfg.batch = 4;
        let dev = Device::flex();
        let run = || step_bench(&cfg, &dev, "cpu", Instant::now(), 0.0, |_, _| {}).unwrap();
        let (a, b) = (run(), run());
        assert_eq!(a.losses.len(), 2);
        assert_eq!(a.losses, b.losses);
        assert_eq!((a.out_ms, a.grad_norm), (b.out_ms, b.grad_norm));
        // The prediction is small (last convolution at gain 1e-5) but not zero, and every
        // parameter gets a gradient.
        let (o, g) = (a.out_ms.unwrap(), a.grad_norm.unwrap());
        assert!(o > 0.0 && o < 1e-3 && g > 0.0 && g.is_finite(), "{o} {g}");
        assert!(a.losses[1] < a.losses[0], "{:?}", a.losses);
        assert_eq!(a.step_ms.len(), 1);
    }
}
