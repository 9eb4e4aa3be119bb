//! Training a class-conditional UNet with classifier-free guidance's label dropout, in named
//! steps: [`validate`] the data against the config, [`Run::set_up`] the model, optimizer, EMA
//! and resume state, [`Run::optimize`] one step at a time, [`Run::save`] checkpoints and the
//! loss curve, [`Run::preview`] grids.
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::metrics_log::{MetricsLog, Record};
use super::{model_shape, save_grid, Generator, ImageTrainConfig};
use crate::checkpoint::background::{times_requested, Writer};
use crate::checkpoint::image::{
    config_sha256, existing_run, restore, OptimState, RunState, Snapshot,
};
use crate::checkpoint::optimizer::{param_ids, set_param_ids};
use crate::checkpoint::run as run_checkpoint;
use crate::data::image_set::{HostBatch, ImageSet};
use crate::device::Precision;
use crate::files::ensure_dir;
use crate::nn::unet::{drop_labels, labels_tensor, UNet};
use crate::rng::{normal_vec, seeded};
use crate::sampling::SamplerSpec;
use crate::schedule::NoiseSchedule;
use crate::train::{autocast, clip_params, grad_norm, interrupted, progress_bar, Ema, LossReader};
use crate::{Error, Result};

/// Training steps between two reads of the losses back to the host (each read waits for the
/// device to finish the steps queued so far).
const LOSS_READ_EVERY: usize = 20;

/// The ε prediction the training step differentiates, always as an f32 tensor. In f32 the
/// network's forward; in mixed precision (`Precision::Bf16`) the network runs under
/// [`autocast`] (bf16 convolutions and matrix products, f32 GroupNorm and softmax) on the
/// input cast to bf16, and its output is cast back to f32 so the loss and everything after it
/// stay in f32, with the gradients reaching `model`'s f32 parameters through the casts.
pub fn predict_eps(
    model: &UNet,
    precision: Precision,
    x_t: Tensor<4>,
    t: Tensor<1>,
    labels: Option<Tensor<1, Int>>,
) -> Tensor<4> {
    match precision {
        Precision::F32 => model.forward(x_t, t, labels),
        p => autocast(model.clone(), p.dtype())
            .forward(x_t.cast(p.dtype()), t, labels)
            .cast(burn::tensor::FloatDType::F32),
    }
}

/// Result of a training call.
pub struct TrainOutcome {
    pub model: UNet,
    pub ema: Option<Ema>,
    pub step: usize,
    pub losses: Vec<(usize, f64)>,
    pub seconds: f64,
    /// Of `seconds`, the time training stood still for checkpoints (the stall): reading the
    /// state back to the host, and waiting for the previous (or, at the end, the last)
    /// background save. Serialising, hashing and flushing happen on the writer thread.
    pub checkpoint_seconds: f64,
    pub interrupted: bool,
}

impl TrainOutcome {
    /// The weights sampling uses: EMA when trained with it.
    pub fn sampling_model(&self) -> UNet {
        crate::train::sampling_weights(&self.model, self.ema.as_ref())
    }
}

/// How a training call treats the run folder it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run: refused when the folder holds another run's checkpoints.
    Fresh,
    /// Continue the run in the folder from its newest checkpoint (from step 0 if it has none).
    Resume,
    /// A new run; a run already in the folder is first moved aside to a sibling
    /// `DIR.old-N` (never deleted).
    Overwrite,
}

impl From<bool> for Start {
    /// `true` = [`Start::Resume`], `false` = [`Start::Fresh`] (the former `resume` flag).
    fn from(resume: bool) -> Self {
        if resume {
            Start::Resume
        } else {
            Start::Fresh
        }
    }
}

/// How [`train`] runs, beyond the run's config.
pub struct TrainOptions<'e> {
    /// A new run, a resumed one, or a new one after moving the folder's run aside.
    pub start: Start,
    /// Progress on stderr: a bar on a terminal, plain lines (one per log line) otherwise.
    pub show: bool,
    /// Steps between two lines of `metrics.jsonl` (at least 1).
    pub log_every: usize,
    /// An evaluation run during training (FID), its value logged.
    pub evaluator: Option<&'e mut dyn Evaluate>,
    /// Keep the checkpoint with the best evaluation under `RUN/best/`.
    pub keep_best: bool,
}

impl Default for TrainOptions<'_> {
    fn default() -> Self {
        Self {
            start: Start::Fresh,
            show: false,
            log_every: 100,
            evaluator: None,
            keep_best: false,
        }
    }
}

/// A metric computed from the sampling weights during training; lower is better.
pub trait Evaluate {
    /// Its key in `metrics.jsonl` (e.g. `fid`).
    fn name(&self) -> &str;
    /// Steps between two evaluations (0: never).
    fn every(&self) -> usize;
    /// The metric of `model` (the EMA weights when trained with EMA) after `step` steps.
    fn evaluate(&mut self, model: &UNet, step: usize) -> Result<Evaluation>;
}

/// What one evaluation measured.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation {
    pub value: f64,
    /// Of the evaluation's time, the seconds spent on the reference (its statistics computed,
    /// or read from the cache): logged as `<name>_ref_seconds`.
    pub reference_seconds: f64,
}

/// The folder under a run where `keep_best` keeps the best checkpoint (a run folder of its own
/// whose newest checkpoint is the best, so `image sample --ckpt RUN/best` samples it).
pub const BEST: &str = "best";

/// Trains (or resumes, when `out` holds a checkpoint and `start` is [`Start::Resume`]) on
/// `data`, logging every 100 steps and evaluating nothing: [`train_with`] with those options.
pub fn train(
    cfg: &ImageTrainConfig,
    data: Arc<ImageSet>,
    out: &Path,
    start: impl Into<Start>,
    device: &Device,
    show: bool,
) -> Result<TrainOutcome> {
    let opts = TrainOptions {
        start: start.into(),
        show,
        ..TrainOptions::default()
    };
    train_with(cfg, data, out, device, opts)
}

/// Trains (or resumes, when `out` holds a checkpoint and `opts.start` is [`Start::Resume`]) on
/// `data`. Checkpoints, previews, `metrics.jsonl` and the loss curve go to `out`, which is
/// locked against a second trainer for the duration ([`run_checkpoint::RunLock`]).
pub fn train_with(
    cfg: &ImageTrainConfig,
    data: Arc<ImageSet>,
    out: &Path,
    device: &Device,
    mut opts: TrainOptions,
) -> Result<TrainOutcome> {
    validate(cfg, &data)?;
    let show = opts.show;
    let mut run = Run::set_up(cfg, out, opts.start, device, show)?;
    drop_stale_best(out, run.step)?;
    let log_every = opts.log_every.max(1);
    // Batches are gathered on a helper thread, ahead of the network.
    let mut batches = data.batches(cfg.batch_size, cfg.seed, 2, run.step, cfg.xflip)?;
    // A bar on a terminal; plain lines at the log's cadence when stderr is a file or a pipe.
    let lines = show && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pb = if show && !lines {
        progress_bar(cfg.steps as u64, "train")
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_position(run.step as u64);
    let t0 = Instant::now();
    let mut window = (Instant::now(), run.step);
    let mut was_interrupted = false;
    while run.step < cfg.steps {
        let batch = batches
            .next()
            .ok_or_else(|| Error::invalid("data", "the batch producer stopped"))?;
        let next = run.step + 1;
        let log_due = next.is_multiple_of(log_every) || next == cfg.steps;
        let eval_due = opts.evaluator.as_ref().is_some_and(|e| {
            e.every() > 0 && (next.is_multiple_of(e.every()) || next == cfg.steps)
        });
        let norm = run.optimize_logged(batch, log_due || eval_due)?;
        pb.set_position(run.step as u64);
        let stop = interrupted();
        // The losses come back to the host together (one wait for the device) every few
        // steps, and always before anything is saved, logged or previewed.
        if run.loss_reader.due()
            || stop
            || log_due
            || eval_due
            || run.checkpoint_due()
            || run.preview_due()
        {
            if let Some(lv) = run.loss_reader.flush(&mut run.losses)? {
                pb.set_message(format!("loss {lv:.4}"));
            }
        }
        // Logged even when interrupted (the checkpoint below holds this step, so a resumed run
        // will not log it); only the evaluation is skipped then, to stop promptly.
        if log_due || eval_due {
            let mut eval = std::collections::BTreeMap::new();
            let mut best_now = false;
            if let (true, false, Some(ev)) = (eval_due, stop, opts.evaluator.as_deref_mut()) {
                let te = Instant::now();
                let r = ev.evaluate(&run.sampling_model(), run.step)?;
                let (name, v) = (ev.name().to_string(), r.value);
                best_now = opts.keep_best
                    && v.is_finite()
                    && run.log.best(&name).is_none_or(|(_, b)| v < b);
                eval.insert(format!("{name}_seconds"), te.elapsed().as_secs_f64());
                eval.insert(format!("{name}_ref_seconds"), r.reference_seconds);
                eval.insert(name, v);
            }
            let record = run.record(norm, window, eval)?;
            window = (Instant::now(), run.step);
            let line = progress_line(&record, cfg.steps, t0, run.step);
            if lines {
                eprintln!("{line}");
            } else if show && !record.eval.is_empty() {
                pb.println(line);
            }
            run.log.append(record)?;
            if best_now {
                run.save_best(&data.class_names)?;
            }
        }
        if run.checkpoint_due() || stop {
            run.save(&data.class_names)?;
        }
        if run.preview_due() && !stop {
            run.preview(&data.class_names)?;
        }
        if stop {
            was_interrupted = true;
            pb.abandon_with_message(format!(
                "interrupted at step {}; saved (resume the run to continue)",
                run.step
            ));
            if lines {
                eprintln!(
                    "interrupted at step {}; saved (resume the run to continue)",
                    run.step
                );
            }
            break;
        }
    }
    pb.finish_and_clear();
    drop(batches);
    // The last checkpoint is complete and committed (or its error returned) before the run
    // returns.
    run.finish()?;
    Ok(TrainOutcome {
        model: run.model.expect("a model between steps"),
        ema: run.ema,
        step: run.step,
        losses: run.losses,
        seconds: t0.elapsed().as_secs_f64(),
        checkpoint_seconds: run.checkpoint_seconds,
        interrupted: was_interrupted,
    })
}

/// `RUN/best/` keeps every best checkpoint saved since the last regular checkpoint, and the
/// newest one at or before it ([`prune_best`]), so that whatever checkpoint a run resumes
/// from, the best checkpoint up to it is still there. At start-up the ones after the resumed
/// step (saved by a process that was killed, whose log lines after that step are dropped too)
/// are removed — all of them for a fresh run — so `RUN/best` always holds the best value that
/// `metrics.jsonl` shows.
fn drop_stale_best(out: &Path, step: usize) -> Result<()> {
    let best = out.join(BEST);
    if !best.exists() {
        return Ok(());
    }
    if step == 0 {
        return std::fs::remove_dir_all(&best).map_err(|e| Error::io(&best, e));
    }
    for (s, dir) in run_checkpoint::list(&best)? {
        if s > step {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(())
}

/// After the regular checkpoint of `step` is committed: the best checkpoints older than the
/// newest one at or before `step` can no longer be needed by a resume.
fn prune_best(out: &Path, step: usize) -> Result<()> {
    let list = run_checkpoint::list(&out.join(BEST))?;
    let Some(keep) = list.iter().map(|e| e.0).find(|&s| s <= step) else {
        return Ok(());
    };
    for (s, dir) in list {
        if s < keep {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(())
}

/// The plain progress line of a log record: step, loss, speed, ETA and any evaluation.
fn progress_line(r: &Record, total: usize, t0: Instant, step: usize) -> String {
    let left = total.saturating_sub(step) as f64 * r.sec_per_step;
    let mut line = format!(
        "step {}/{total} loss {:.4} {:.2} it/s {:.0} img/s elapsed {} ETA {}",
        r.step,
        r.loss,
        if r.sec_per_step > 0.0 {
            1.0 / r.sec_per_step
        } else {
            0.0
        },
        r.images_per_sec,
        hms(t0.elapsed().as_secs_f64()),
        hms(left)
    );
    for (k, v) in &r.eval {
        if !k.ends_with("_seconds") {
            line.push_str(&format!(" {k} {v:.4}"));
        }
    }
    line
}

fn hms(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Checks the config, and the data against the network it configures.
pub fn validate(cfg: &ImageTrainConfig, data: &ImageSet) -> Result<()> {
    cfg.validate()?;
    let u = &cfg.unet;
    if data.channels != u.in_channels || data.height != u.image_size || data.width != u.image_size {
        return Err(Error::invalid(
            "data",
            format!(
                "images are {}×{}×{} but the network expects {}×{}×{}",
                data.channels, data.height, data.width, u.in_channels, u.image_size, u.image_size
            ),
        ));
    }
    if data.num_classes() != u.num_classes {
        return Err(Error::invalid(
            "data",
            format!(
                "{} classes in the data, {} in the network config",
                data.num_classes(),
                u.num_classes
            ),
        ));
    }
    if cfg.batch_size > data.len() {
        return Err(Error::invalid(
            "train.batch_size",
            format!(
                "{} is larger than the data set ({} images)",
                cfg.batch_size,
                data.len()
            ),
        ));
    }
    Ok(())
}

/// A training run in progress: the network, its optimizer and EMA, and the bookkeeping.
pub struct Run<'a> {
    cfg: &'a ImageTrainConfig,
    out: &'a Path,
    device: &'a Device,
    schedule: NoiseSchedule,
    /// The network (taken out while the optimizer updates it, so that its tensors are not
    /// shared and can be updated in place).
    model: Option<UNet>,
    optim: burn::optim::ModuleOptimizer,
    /// On a CubeCL device, Adam + EMA as one multi-tensor update, holding the optimizer state
    /// (`optim` is then unused); None on the CPU, which runs burn's Adam.
    fused: Option<crate::train::FusedAdam>,
    pub ema: Option<Ema>,
    /// Steps done.
    pub step: usize,
    /// (step, loss) of every step read back so far.
    pub losses: Vec<(usize, f64)>,
    loss_reader: LossReader,
    /// Writes checkpoints on a thread of its own while training goes on.
    writer: Writer,
    /// Time the training thread spent on checkpoints (snapshots and waits for the writer).
    pub checkpoint_seconds: f64,
    /// `metrics.jsonl`.
    pub log: MetricsLog,
    /// The run the checkpoints belong to ([`run_checkpoint::Manifest::run_sha256`]).
    run_sha256: String,
    /// Keeps a second trainer out of `out` while this run lives. Declared after `writer`, so
    /// it is released after the writer's thread has finished with the folder.
    _lock: run_checkpoint::RunLock,
}

impl<'a> Run<'a> {
    /// A fresh run of `cfg` in `out`, or the run in `out` at its newest checkpoint when
    /// `start` is [`Start::Resume`]. `out` is locked first; staging folders left by dead
    /// processes are removed. A fresh run refuses a folder that holds another run's
    /// checkpoints ([`Start::Overwrite`] moves that run aside instead).
    pub fn set_up(
        cfg: &'a ImageTrainConfig,
        out: &'a Path,
        start: impl Into<Start>,
        device: &'a Device,
        show: bool,
    ) -> Result<Self> {
        let start = start.into();
        let lock = claim_folder(out, start)?;
        let schedule = NoiseSchedule::new(&cfg.schedule)?;
        cfg.precision.check(device)?;
        let mut model = cfg.unet.init(device, &mut seeded(cfg.seed, 2))?;
        let mut optim = cfg.optim.adam();
        let mut ema = cfg.ema_decay.map(|d| Ema::new(&model, d, true));
        // Parameter ids key the optimizer state: make them a function of the layout alone, so
        // two identical runs write identical checkpoint files.
        let n_params = param_ids(&model).len() as u64;
        model = set_param_ids(model, &(1..=n_params).collect::<Vec<_>>())?;
        for p in run_checkpoint::clean_orphans(out)? {
            if show {
                eprintln!("removed {} (left by a process that died)", p.display());
            }
        }
        let (mut step, mut losses) = (0, Vec::new());
        let mut run_sha256 = config_sha256(cfg);
        if start == Start::Resume {
            match restore(out, cfg, model.clone(), optim.clone(), ema.clone())? {
                Some(r) => {
                    (model, optim, ema, step, losses) = (r.model, r.optim, r.ema, r.step, r.losses);
                    run_sha256 = r.run_sha256;
                    if show {
                        eprintln!("resuming {} at step {step}", out.display());
                    }
                }
                // Stopped before its first checkpoint: nothing was lost but the steps since the
                // start, so the run starts again (the same run, as it is seeded).
                None => eprintln!(
                    "{} holds no checkpoint yet; starting the run from step 0",
                    out.display()
                ),
            }
        }
        if show {
            eprintln!("UNet: {} parameters", model.num_params());
        }
        // A resumed run keeps its log up to the checkpoint; a fresh one starts it empty.
        let log = MetricsLog::open(out, (step > 0).then_some(step))?;
        let fused = crate::train::FusedAdam::for_model(&cfg.optim, &optim, &model)?;
        if fused.is_some() {
            // The state lives in `fused` from here on; do not keep a second copy of a resumed one.
            optim = cfg.optim.adam();
        }
        Ok(Self {
            cfg,
            out,
            device,
            schedule,
            model: Some(model),
            optim,
            fused,
            ema,
            step,
            losses,
            loss_reader: LossReader::new(LOSS_READ_EVERY),
            writer: Writer::from_env(),
            checkpoint_seconds: 0.0,
            log,
            run_sha256,
            _lock: lock,
        })
    }

    /// One optimisation step on `batch` (Ho et al. 2020, Algorithm 1, with the labels dropped to
    /// the null class with probability p_uncond): t uniform, x_t = q(x_t | x₀), the ε-MSE, Adam,
    /// EMA. Everything random comes from streams of (seed, step), so a resumed run draws what
    /// the uninterrupted one would have.
    pub fn optimize(&mut self, batch: HostBatch) -> Result<()> {
        self.optimize_logged(batch, false).map(|_| ())
    }

    /// [`Run::optimize`], also returning the global gradient norm (before clipping, read back
    /// to the host) when `norm` is set.
    pub fn optimize_logged(&mut self, batch: HostBatch, norm: bool) -> Result<Option<f64>> {
        let (cfg, device, step) = (self.cfg, self.device, self.step);
        let b = batch.labels.len();
        let mut rng = seeded(cfg.seed, 0x5eed_0000_0000 + step as u64);
        device.seed(cfg.seed.wrapping_mul(1_000_003).wrapping_add(step as u64));
        let labels = drop_labels(&batch.labels, cfg.p_uncond, &mut rng);
        let (x0, _) = batch.into_tensor(device);
        let t = cfg.objective.draw_timesteps(&mut rng, b, &self.schedule);
        let noise = Tensor::from_data(
            TensorData::new(normal_vec(&mut rng, x0.shape().num_elements()), x0.dims()),
            device,
        );
        let x_t = self.schedule.q_sample(x0, &t, noise.clone());
        let t_f = Tensor::from_data(
            TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b]),
            device,
        );
        let labels = Some(labels_tensor(&labels, device));
        let model = self.model.take().expect("a model between steps");
        // The loss in f32 whatever the precision (PyTorch's autocast computes mse_loss in f32).
        let eps_pred = predict_eps(&model, cfg.precision, x_t, t_f, labels);
        let loss = cfg.objective.loss(&self.schedule, &t, noise, eps_pred);
        self.loss_reader.push(step, loss.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = match norm.then(|| grad_norm(&grads, &model)).flatten() {
            Some(t) => Some(scalar(t)?),
            None => None,
        };
        let grads = clip_params(grads, &model, cfg.optim.grad_clip);
        let model = crate::train::adam_ema_step(
            &mut self.optim,
            self.fused.as_mut(),
            cfg.optim.lr_at(step, cfg.steps),
            model,
            grads,
            self.ema.as_mut(),
        )?;
        self.model = Some(model);
        self.step += 1;
        Ok(norm)
    }

    /// The weights sampling uses: the EMA when trained with it.
    pub fn sampling_model(&self) -> UNet {
        crate::train::sampling_weights(self.model(), self.ema.as_ref())
    }

    /// The log record of the steps since `window` (its start time and step): the mean of their
    /// losses (read back already), the learning rate, the speed.
    fn record(
        &self,
        grad_norm: Option<f64>,
        window: (Instant, usize),
        eval: std::collections::BTreeMap<String, f64>,
    ) -> Result<Record> {
        let from = self.log.last_step().unwrap_or(0);
        let losses: Vec<f64> = self
            .losses
            .iter()
            .filter(|(s, _)| *s >= from && *s < self.step)
            .map(|&(_, l)| l)
            .collect();
        let loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        let steps = self.step.saturating_sub(window.1).max(1) as f64;
        let secs = window.0.elapsed().as_secs_f64();
        let sec_per_step = secs / steps;
        Ok(Record {
            step: self.step,
            loss,
            lr: self.cfg.optim.lr_at(self.step - 1, self.cfg.steps),
            grad_norm,
            sec_per_step,
            images_per_sec: if secs > 0.0 {
                steps * self.cfg.batch_size as f64 / secs
            } else {
                0.0
            },
            eval,
        })
    }

    /// Saves the current state as the run's best checkpoint in `RUN/best/` (see
    /// `prune_best`), on this thread.
    pub fn save_best(&mut self, class_names: &[String]) -> Result<()> {
        let t = Instant::now();
        self.finish()?;
        // Nothing pruned here: see `prune_best`.
        let snap = self
            .snapshot_into(&self.out.join(BEST), class_names)?
            .keep_only(usize::MAX);
        snap.write()?;
        self.checkpoint_seconds += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// The network.
    pub fn model(&self) -> &UNet {
        self.model.as_ref().expect("a model between steps")
    }

    /// Whether the step just done is a checkpoint step (every `checkpoint_every`, and the last).
    pub fn checkpoint_due(&self) -> bool {
        self.step.is_multiple_of(self.cfg.checkpoint_every) || self.step == self.cfg.steps
    }

    /// Whether the step just done gets a preview grid.
    pub fn preview_due(&self) -> bool {
        let every = self.cfg.preview_every;
        every > 0 && (self.step.is_multiple_of(every) || self.step == self.cfg.steps)
    }

    /// Saves the state after the current step as one checkpoint, and the loss curve. The
    /// state is read back here; it is written in the background (unless
    /// `DIFFUSE_SYNC_CHECKPOINTS=1`), after the previous save has finished. Returns the
    /// previous save's error if it failed; [`Run::finish`] returns this one's.
    pub fn save(&mut self, class_names: &[String]) -> Result<()> {
        let t = Instant::now();
        // At most one save in flight: a second snapshot is not taken (nor its memory held)
        // before the previous one is on disk.
        let waited = self.writer.wait();
        let t_wait = t.elapsed().as_secs_f64();
        let result = match waited {
            Ok(()) => self.hand_over(class_names),
            Err(e) => Err(e),
        };
        let stall = t.elapsed().as_secs_f64();
        self.checkpoint_seconds += stall;
        if times_requested() {
            eprintln!(
                "checkpoint step {}: training stalled {stall:.3} s ({t_wait:.3} s of it waiting for the previous save)",
                self.step
            );
        }
        result
    }

    /// Takes the snapshot and gives it to the writer (which is idle).
    fn hand_over(&mut self, class_names: &[String]) -> Result<()> {
        let snap = self.snapshot(class_names)?;
        let out = self.out.to_path_buf();
        // The curve is drawn from the log (its mean loss per line), as it stands now.
        let curve: Vec<(usize, f64)> = self
            .log
            .records()
            .iter()
            .map(|r| (r.step, r.loss))
            .collect();
        let step = self.step;
        self.writer.submit(snap.target(), move || {
            snap.write()?;
            prune_best(&out, step)?;
            plot_losses(&out, &curve)
        })
    }

    /// The state after the current step, read back to the host: what [`Run::save`] writes.
    pub fn snapshot(&self, class_names: &[String]) -> Result<Snapshot> {
        self.snapshot_into(self.out, class_names)
    }

    /// [`Run::snapshot`] as a checkpoint of the run folder `dir`.
    fn snapshot_into(&self, dir: &Path, class_names: &[String]) -> Result<Snapshot> {
        let optim = match &self.fused {
            Some(f) => OptimState::Moments(f.moments(self.model())?),
            None => OptimState::Record(self.optim.to_record()),
        };
        let state = RunState {
            model: self.model(),
            ema: self.ema.as_ref(),
            optim,
            step: self.step,
            losses: &self.losses,
            run_sha256: &self.run_sha256,
        };
        Snapshot::take(dir, self.cfg, class_names, state)
    }

    /// Replaces the checkpoint writer (e.g. by a synchronous one), after waiting for the
    /// current one's save; its error, if any, is returned.
    pub fn set_writer(&mut self, writer: Writer) -> Result<()> {
        self.finish()?;
        self.writer = writer;
        Ok(())
    }

    /// Waits for the checkpoint being written, if any, and returns its result; the time waited
    /// counts as checkpoint time. [`train`] calls it before it returns.
    pub fn finish(&mut self) -> Result<()> {
        let t = Instant::now();
        let r = self.writer.wait();
        self.checkpoint_seconds += t.elapsed().as_secs_f64();
        r
    }

    /// A small grid (one row per class, 4 columns) with DDIM at w = 0, for watching training:
    /// `preview/step-NNNNNN.png`.
    pub fn preview(&self, class_names: &[String]) -> Result<()> {
        let model = crate::train::sampling_weights(self.model(), self.ema.as_ref());
        let cfg = self.cfg;
        let k = class_names.len().min(10);
        let labels: Vec<usize> = if k == 0 {
            // Unconditional: four rows of the null label.
            vec![0; 16]
        } else {
            (1..=k).flat_map(|c| std::iter::repeat_n(c, 4)).collect()
        };
        let spec = SamplerSpec {
            steps: cfg.preview_steps.min(self.schedule.num_steps()),
            clip_x0: true,
            ..SamplerSpec::default()
        };
        let shape = model_shape(&cfg.unet);
        let imgs = Generator::new(&model, shape, &self.schedule, spec).generate(
            &labels,
            cfg.seed,
            labels.len(),
            None,
        )?;
        let path = self
            .out
            .join("preview")
            .join(format!("step-{:06}.png", self.step));
        save_grid(&path, &imgs, shape, 4)
    }
}

/// A scalar tensor's value on the host.
fn scalar(t: Tensor<1>) -> Result<f64> {
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::invalid("training", format!("could not read a value back: {e:?}")))?;
    Ok(v.first().copied().unwrap_or(f32::NAN) as f64)
}

/// Creates and locks `out` for a run started as `start`: a fresh run refuses a folder that holds
/// another run's checkpoints; an overwriting one moves that run aside to `OUT.old-N` first.
/// A stale lock (its process is gone) is taken over with a message.
fn claim_folder(out: &Path, start: Start) -> Result<run_checkpoint::RunLock> {
    ensure_dir(out)?;
    let lock = lock_folder(out)?;
    if start == Start::Resume {
        return Ok(lock);
    }
    let Some(what) = existing_run(out)? else {
        return Ok(lock);
    };
    if start == Start::Fresh {
        return Err(Error::invalid(
            "train.out",
            format!(
                "{} already holds another run ({what}); a new run would mix with it. Continue that run with `train.resume`, or give a new `train.out` (`train.overwrite` moves the old run aside)",
                out.display()
            ),
        ));
    }
    let aside = aside_name(out)?;
    // The lock goes with the folder; drop it there and lock the new folder.
    drop(lock);
    std::fs::rename(out, &aside).map_err(|e| Error::io(out, e))?;
    crate::files::sync_dir(aside.parent().unwrap_or(Path::new(".")))?;
    eprintln!(
        "moved the run that was in {} aside to {}",
        out.display(),
        aside.display()
    );
    ensure_dir(out)?;
    lock_folder(out)
}

fn lock_folder(out: &Path) -> Result<run_checkpoint::RunLock> {
    let (lock, stale) = run_checkpoint::RunLock::acquire(out)?;
    if let Some(pid) = stale {
        eprintln!(
            "{}: took over the lock of process {pid}, which is no longer running",
            out.display()
        );
    }
    Ok(lock)
}

/// The first free sibling `OUT.old-N` (N = 1, 2, …) of `out`.
fn aside_name(out: &Path) -> Result<std::path::PathBuf> {
    let name = out
        .file_name()
        .ok_or_else(|| {
            Error::invalid("train.out", format!("{} has no folder name", out.display()))
        })?
        .to_string_lossy()
        .into_owned();
    (1..)
        .map(|n| out.with_file_name(format!("{name}.old-{n}")))
        .find(|p| !p.exists())
        .ok_or_else(|| Error::invalid("train.out", "no free name"))
}

fn plot_losses(out: &Path, losses: &[(usize, f64)]) -> Result<()> {
    if losses.is_empty() {
        return Ok(());
    }
    let pts: Vec<(f64, f64)> = losses.iter().map(|&(s, l)| (s as f64, l)).collect();
    crate::plot::lines(
        &out.join("loss.png"),
        "training loss",
        "step",
        "ε-MSE",
        true,
        &[("loss".into(), pts)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(out: &Path) -> Vec<usize> {
        let mut v: Vec<usize> = run_checkpoint::list(&out.join(BEST))
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_best_checkpoint_up_to_any_resume_point_is_kept() {
        let out = std::env::temp_dir().join(format!("diffuse-best-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        for s in [1, 3, 5, 6] {
            std::fs::create_dir_all(run_checkpoint::step_dir(&out.join(BEST), s)).unwrap();
        }
        // Regular checkpoint at 4 committed: 3 is the best up to it, 1 is no longer needed.
        prune_best(&out, 4).unwrap();
        assert_eq!(steps(&out), [3, 5, 6]);
        // Killed before the checkpoint of 6 was committed: resuming at 4 keeps the best up to 4.
        drop_stale_best(&out, 4).unwrap();
        assert_eq!(steps(&out), [3]);
        // A fresh run starts without one.
        drop_stale_best(&out, 0).unwrap();
        assert!(!out.join(BEST).exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
