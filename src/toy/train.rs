//! The 2D trainers: on the CPU the fused step of `diffuse_kernels::time_mlp` (through
//! [`crate::nn::simplenet::fused`]), elsewhere burn's autodiff. Both draw the same data,
//! timesteps and noise from the same streams and apply the same Adam, clipping, learning-rate
//! schedule and EMA.
use std::time::Instant;

use burn::prelude::*;

use super::{stream, ToyConfig};
use crate::nn::simplenet::SimpleNet;
use crate::rng::{normal_vec, seeded, uniform_ints};
use crate::schedule::{eps_mse, NoiseSchedule};
use crate::train::{interrupted, progress_bar, Ema};
use crate::{Error, Result};

/// A trained 2D model.
pub struct TrainedToy {
    pub model: SimpleNet,
    pub ema: Option<Ema>,
    /// (step, loss) for every step.
    pub losses: Vec<(usize, f64)>,
    pub seconds: f64,
    pub data: Vec<f32>,
    /// Which training step ran.
    pub path: TrainPath,
}

/// The implementation of the training step a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainPath {
    /// Hand-fused forward, backward and Adam on host buffers (the CPU default).
    Fused,
    /// burn's autodiff graph (GPU devices).
    Autodiff,
}

impl TrainPath {
    pub fn name(&self) -> &'static str {
        match self {
            TrainPath::Fused => "fused CPU step",
            TrainPath::Autodiff => "burn autodiff",
        }
    }
}

impl TrainedToy {
    /// Mean loss of the last 100 steps.
    pub fn final_loss(&self) -> f64 {
        let tail = &self.losses[self.losses.len().saturating_sub(100)..];
        tail.iter().map(|(_, l)| l).sum::<f64>() / tail.len().max(1) as f64
    }

    /// The weights sampling should use: EMA if trained with it, else raw; on a plain device.
    pub fn sampling_model(&self) -> SimpleNet {
        crate::train::sampling_weights(&self.model, self.ema.as_ref())
    }
}

/// t for one batch: i.i.d. uniform, or stratified (one draw in each of B equal strata of
/// {0 … T−1}, shuffled — a low-discrepancy draw with the same marginal). With `power` ≠ 1 the
/// uniform (or stratified) u ∈ [0, 1) is mapped to t = ⌊T·u^power⌋.
pub fn draw_t(
    rng: &mut impl rand::Rng,
    b: usize,
    num_t: usize,
    stratified: bool,
    power: f64,
) -> Vec<usize> {
    use rand::seq::SliceRandom;
    if power != 1.0 {
        let mut ts: Vec<usize> = (0..b)
            .map(|i| {
                let u = if stratified {
                    (i as f64 + rng.gen::<f64>()) / b as f64
                } else {
                    rng.gen::<f64>()
                };
                ((num_t as f64 * u.powf(power)) as usize).min(num_t - 1)
            })
            .collect();
        if stratified {
            ts.shuffle(rng);
        }
        return ts;
    }
    if !stratified {
        return uniform_ints(rng, b, num_t);
    }
    let mut ts: Vec<usize> = (0..b)
        .map(|i| {
            let lo = i * num_t / b;
            let hi = ((i + 1) * num_t / b).max(lo + 1);
            rng.gen_range(lo..hi)
        })
        .collect();
    ts.shuffle(rng);
    ts
}

/// Trains a SimpleNet with `cfg` on `device` (an autodiff device): on the CPU through the
/// fused step of [`crate::nn::simplenet::fused`], elsewhere through burn's autodiff
/// ([`train_autodiff`]). Both draw the same data, timesteps and noise from the same streams and
/// apply the same Adam, clipping, learning-rate schedule and EMA.
pub fn train(cfg: &ToyConfig, device: &Device, show_progress: bool) -> Result<TrainedToy> {
    if *device == Device::flex() {
        train_fused(cfg, device, show_progress)
    } else {
        train_autodiff(cfg, device, show_progress)
    }
}

/// One training batch drawn from the run's streams: the data read in order (wrapping around
/// like the reference's endless loader), timesteps (one per group), per-row timesteps, noise.
struct Batch<'a> {
    x0: &'a [f32],
    t_group: Vec<usize>,
    t: Vec<usize>,
    noise: Vec<f32>,
}

fn draw_batch<'a>(
    cfg: &ToyConfig,
    data: &'a [f32],
    num_t: usize,
    rng: &mut impl rand::Rng,
    step: usize,
) -> Batch<'a> {
    let (b, n) = (cfg.batch_size, cfg.num_points);
    let off = (step * b) % (n - n % b).max(b);
    let groups = cfg.t_groups.unwrap_or(b);
    let t_group = draw_t(rng, groups, num_t, cfg.stratified_t, cfg.t_power);
    let t: Vec<usize> = t_group
        .iter()
        .flat_map(|&t| std::iter::repeat_n(t, b / groups))
        .collect();
    let noise = normal_vec(rng, 2 * b);
    Batch {
        x0: &data[2 * off..2 * (off + b)],
        t_group,
        t,
        noise,
    }
}

/// An error naming the step when the loss is NaN or infinite (checked before the update).
fn finite_loss(step: usize, loss: f64) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(Error::invalid(
        "training",
        format!("loss became {loss} at step {step}; lower the learning rate"),
    ))
}

/// The training loop's bookkeeping shared by both paths: progress, loss log, interruption.
struct Progress {
    pb: indicatif::ProgressBar,
    losses: Vec<(usize, f64)>,
    steps: usize,
}

impl Progress {
    fn new(cfg: &ToyConfig, show: bool) -> Self {
        Self {
            pb: if show {
                progress_bar(cfg.steps as u64, "train")
            } else {
                indicatif::ProgressBar::hidden()
            },
            losses: Vec::with_capacity(cfg.steps),
            steps: cfg.steps,
        }
    }

    /// Records `loss` of `step`; false when training should stop (interrupted).
    fn record(&mut self, step: usize, loss: f64) -> Result<bool> {
        finite_loss(step, loss)?;
        self.losses.push((step, loss));
        if step.is_multiple_of(50) || step + 1 == self.steps {
            self.pb.set_position(step as u64 + 1);
            self.pb.set_message(format!("loss {loss:.4}"));
        }
        if interrupted() {
            self.pb
                .abandon_with_message(format!("interrupted at step {}", step + 1));
            return Ok(false);
        }
        Ok(true)
    }
}

/// [`train`] through burn's autodiff on any device.
pub fn train_autodiff(cfg: &ToyConfig, device: &Device, show_progress: bool) -> Result<TrainedToy> {
    cfg.validate()?;
    let schedule = NoiseSchedule::new(&cfg.schedule)?;
    let data = cfg.data();
    let mut model = cfg.net.init(&mut seeded(cfg.seed, stream::INIT), device)?;
    let mut optim = cfg.optim.adam();
    let mut ema = cfg.ema_decay.map(|d| Ema::new(&model, d, cfg.ema_warmup));
    let mut rng = seeded(cfg.seed, stream::TRAIN);
    let b = cfg.batch_size;
    let mut progress = Progress::new(cfg, show_progress);
    let start = Instant::now();
    for step in 0..cfg.steps {
        let batch = draw_batch(cfg, &data, schedule.num_steps(), &mut rng, step);
        let x0: Tensor<2> = Tensor::from_data(TensorData::new(batch.x0.to_vec(), [b, 2]), device);
        let noise = Tensor::from_data(TensorData::new(batch.noise, [b, 2]), device);
        let x_t = schedule.q_sample(x0, &batch.t, noise.clone());
        let eps_pred = if cfg.t_groups.is_some() {
            model.forward_grouped(x_t, &batch.t_group)?
        } else {
            let t_f: Tensor<1> = Tensor::from_data(
                TensorData::new(batch.t.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b]),
                device,
            );
            model.forward(x_t, t_f)
        };
        let loss = eps_mse(noise, eps_pred);
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        finite_loss(step, loss_value)?;
        let grads = crate::train::clip_grads(loss.backward(), &model, cfg.optim.grad_clip);
        model = optim.step(cfg.optim.lr_at(step, cfg.steps), model, grads);
        if let Some(e) = ema.as_mut() {
            e.update(&model);
        }
        if !progress.record(step, loss_value)? {
            break;
        }
    }
    progress.pb.finish_and_clear();
    Ok(TrainedToy {
        model,
        ema,
        losses: progress.losses,
        seconds: start.elapsed().as_secs_f64(),
        data,
        path: TrainPath::Autodiff,
    })
}

/// [`train`] through the fused CPU step (host buffers, hand-written backward and Adam).
pub fn train_fused(cfg: &ToyConfig, device: &Device, show_progress: bool) -> Result<TrainedToy> {
    use crate::nn::simplenet::fused;
    cfg.validate()?;
    let schedule = NoiseSchedule::new(&cfg.schedule)?;
    let data = cfg.data();
    let model = cfg.net.init(&mut seeded(cfg.seed, stream::INIT), device)?;
    let mut trainer = fused::trainer(&model, &cfg.optim)?;
    let mut ema = cfg.ema_decay.map(|d| Ema::new(&model, d, cfg.ema_warmup));
    let mut shadow = ema.as_ref().map(|_| trainer.net.params.clone());
    let mut rng = seeded(cfg.seed, stream::TRAIN);
    let mut progress = Progress::new(cfg, show_progress);
    let scales: Vec<(f32, f32)> = (0..schedule.num_steps())
        .map(|t| {
            let ab = schedule.alpha_bar(t);
            (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32)
        })
        .collect();
    let mut x_t = vec![0f32; 2 * cfg.batch_size];
    let start = Instant::now();
    for step in 0..cfg.steps {
        let batch = draw_batch(cfg, &data, schedule.num_steps(), &mut rng, step);
        // q(x_t | x_0) (Ho et al. eq. 4) in f32, as `NoiseSchedule::q_sample` computes it.
        for (((o, x), e), &t) in x_t
            .chunks_exact_mut(2)
            .zip(batch.x0.chunks_exact(2))
            .zip(batch.noise.chunks_exact(2))
            .zip(&batch.t)
        {
            let (a, s) = scales[t];
            o[0] = x[0] * a + e[0] * s;
            o[1] = x[1] * a + e[1] * s;
        }
        let loss = trainer
            .loss_and_grad(&x_t, &batch.noise, &batch.t_group)
            .map_err(|e| Error::invalid("fused step", e.0))?;
        finite_loss(step, loss)?;
        trainer.adam_step(cfg.optim.lr_at(step, cfg.steps));
        if let (Some(e), Some(sh)) = (ema.as_mut(), shadow.as_mut()) {
            // shadow ← d·shadow + (1−d)·θ in f32, as `Ema::update` computes it.
            let d = e.current_decay() as f32;
            let c = 1.0 - d;
            for (s, &p) in sh.iter_mut().zip(&trainer.net.params) {
                *s = *s * d + p * c;
            }
            e.updates += 1;
        }
        // The loss as the autodiff path logs it: rounded to f32.
        if !progress.record(step, loss as f32 as f64)? {
            break;
        }
    }
    progress.pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let ema = match (ema, shadow) {
        (Some(e), Some(sh)) => Some(Ema::from_shadow(
            e.decay,
            e.warmup,
            e.updates,
            fused::param_tensors(&trainer.net, &sh, device),
        )),
        _ => None,
    };
    Ok(TrainedToy {
        model: fused::write_into(&trainer.net, &trainer.net.params, model),
        ema,
        losses: progress.losses,
        seconds,
        data,
        path: TrainPath::Fused,
    })
}
