//! `toy run`, the whole 2D workflow: train, sample with DDPM over all T steps and with a
//! few-step DDIM, measure both Chamfer distances, draw the samples, the q(x_t) strip and the
//! loss curve, and write the checkpoint and `metrics.json`.
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;

use super::{q_strip, sample_points, train, write_csv, ToyConfig, TrainedToy};
use crate::files::{ensure_dir, write_json};
use crate::metrics::chamfer::chamfer_distance;
use crate::plot;
use crate::sampling::{SamplerKind, SamplerSpec};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// What `toy run` evaluates.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Points sampled and compared with the first as many training points.
    pub eval_points: usize,
    /// The few-step DDIM evaluation (steps and spacing; the reference: 50, leading).
    pub ddim: SamplerSpec,
    /// Progress bars and notes on stderr.
    pub show: bool,
}

/// The outcome of a run.
pub struct RunReport {
    pub trained: TrainedToy,
    /// Chamfer distance of DDPM-T's samples.
    pub cd_ddpm: f64,
    /// Chamfer distance of the few-step DDIM's samples.
    pub cd_ddim: f64,
    /// Seconds from the start of training to the last file.
    pub total_seconds: f64,
}

impl RunOptions {
    /// Checks the options against the run's config.
    pub fn validate(&self, cfg: &ToyConfig) -> Result<()> {
        let t = NoiseSchedule::new(&cfg.schedule)?.num_steps();
        if self.ddim.validate(t).is_err() {
            return Err(Error::invalid(
                "run.ddim_steps",
                format!("must be between 1 and T = {t}, got {}", self.ddim.steps),
            ));
        }
        if self.eval_points == 0 || self.eval_points > cfg.num_points {
            return Err(Error::invalid(
                "run.eval_points",
                format!(
                    "must be between 1 and the training-set size {}",
                    cfg.num_points
                ),
            ));
        }
        Ok(())
    }
}

/// Trains `cfg` on `device` (its autodiff form for GPUs) and evaluates it into `out`:
/// `model.safetensors` (+ `.json`), `samples_{ddpm,ddim}.{csv,png}`, `q_xt.png`, `loss.png`
/// and `metrics.json`.
pub fn run(cfg: &ToyConfig, opts: &RunOptions, out: &Path, device: &Device) -> Result<RunReport> {
    cfg.validate()?;
    opts.validate(cfg)?;
    ensure_dir(out)?;
    let schedule = NoiseSchedule::new(&cfg.schedule)?;
    let t0 = Instant::now();
    let trained = train(cfg, &device.clone().autodiff(), opts.show)?;
    if opts.show {
        eprintln!("training ran on the {}", trained.path.name());
    }
    crate::checkpoint::toy::save(&trained, cfg, &out.join("model.safetensors"))?;
    let model = trained.sampling_model().to_device(device);
    let reference = &trained.data[..2 * opts.eval_points];
    let ddpm = SamplerSpec {
        kind: SamplerKind::Ddpm,
        ..SamplerSpec::default()
    };
    let mut results = serde_json::Map::new();
    // The samplers' labels, so that reports name the few-step sampler and its spacing.
    let spacing = serde_json::to_value(opts.ddim.spacing).expect("an enum serialises");
    results.insert(
        "samplers".into(),
        serde_json::json!({
            "ddpm": ddpm.label(schedule.num_steps()),
            "ddim": format!("{}, {} spacing", opts.ddim.label(schedule.num_steps()), spacing.as_str().unwrap_or("?")),
        }),
    );
    let mut sample_seconds = serde_json::Map::new();
    for (name, spec) in [("ddpm", ddpm), ("ddim", opts.ddim)] {
        let t = Instant::now();
        let pts = sample_points(
            &model,
            &schedule,
            &spec,
            opts.eval_points,
            cfg.seed,
            opts.show,
        )?;
        sample_seconds.insert(name.into(), t.elapsed().as_secs_f64().into());
        let cd = chamfer_distance(&pts, reference, 2)?;
        results.insert(format!("cd_{name}"), cd.into());
        write_csv(&out.join(format!("samples_{name}.csv")), &pts)?;
        let title = format!("{} — Chamfer {cd:.2}", spec.label(schedule.num_steps()));
        plot::scatter(
            &out.join(format!("samples_{name}.png")),
            &title,
            reference,
            &pts,
        )?;
    }
    let panels = q_strip(&trained.data, &schedule, 500, cfg.seed, device);
    plot::strip(&out.join("q_xt.png"), &panels)?;
    plot_losses(&out.join("loss.png"), &trained.losses)?;
    results.insert("train_seconds".into(), trained.seconds.into());
    results.insert("train_path".into(), trained.path.name().into());
    results.insert("final_loss".into(), trained.final_loss().into());
    results.insert("sample_seconds".into(), sample_seconds.into());
    let total_seconds = t0.elapsed().as_secs_f64();
    results.insert("total_seconds".into(), total_seconds.into());
    results.insert(
        "config".into(),
        serde_json::to_value(cfg).expect("configs serialise"),
    );
    write_json(&out.join("metrics.json"), &results)?;
    let cd = |k: &str| results[k].as_f64().unwrap_or(f64::NAN);
    Ok(RunReport {
        cd_ddpm: cd("cd_ddpm"),
        cd_ddim: cd("cd_ddim"),
        trained,
        total_seconds,
    })
}

/// The loss of every step and its trailing 100-step mean.
fn plot_losses(path: &Path, losses: &[(usize, f64)]) -> Result<()> {
    plot::lines(
        path,
        "training loss",
        "step",
        "loss (ε-MSE)",
        true,
        &[
            (
                "loss".into(),
                losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
            ),
            ("moving average (100)".into(), smooth_losses(losses)),
        ],
    )
}

/// Trailing moving average over 100 steps.
fn smooth_losses(losses: &[(usize, f64)]) -> Vec<(f64, f64)> {
    let mut acc = 0.0;
    let mut out = Vec::with_capacity(losses.len());
    for (i, &(s, l)) in losses.iter().enumerate() {
        acc += l;
        if i >= 100 {
            acc -= losses[i - 100].1;
        }
        out.push((s as f64, acc / (i + 1).min(100) as f64));
    }
    out
}
