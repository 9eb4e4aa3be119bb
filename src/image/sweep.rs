//! `image sweep`: on a digits run, how often the judge recognises the requested digit and the
//! Fréchet distance, against the number of sampling steps, for every sampler.
use std::path::Path;
use std::time::Instant;

use super::judge::DigitsRun;
use super::{draw_labels, image_spec, model_shape, Generator};
use crate::sampling::{steps_series, Guidance, SamplerKind, SamplerSpec, Spacing};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Samplers (DDPM is only the reference line, see `ddpm`).
    pub samplers: Vec<SamplerKind>,
    /// Step counts.
    pub steps: Vec<usize>,
    /// Timestep spacing of the few-step samplers.
    pub spacing: Spacing,
    /// The guidance scale every point samples with (CFG).
    pub guidance: Guidance,
    /// Samples per point.
    pub n: usize,
    /// Also run DDPM over all T steps as the reference line.
    pub ddpm: bool,
    /// Seed of labels and noise.
    pub seed: u64,
}

/// One point of the sweep.
#[derive(Debug, Clone)]
pub struct SweepRow {
    /// The sampler's short name, e.g. `ddim-10`.
    pub label: String,
    pub spec: SamplerSpec,
    /// Network evaluations per batch.
    pub nfe: usize,
    pub accuracy: f64,
    pub frechet: f64,
    pub seconds: f64,
}

impl SweepOptions {
    pub fn validate(&self) -> Result<()> {
        if self.steps.is_empty() {
            return Err(Error::invalid(
                "sweep.steps",
                "give at least one step count",
            ));
        }
        if self.n < 2 {
            return Err(Error::invalid(
                "sweep.n",
                "must be at least 2 (the Fréchet distance needs a covariance)",
            ));
        }
        Ok(())
    }
}

/// Samples and judges every (sampler, steps) point, then the DDPM reference when asked;
/// `on_row` sees each row as it is done.
pub fn run(
    digits: &DigitsRun,
    opts: &SweepOptions,
    on_row: &mut dyn FnMut(&SweepRow),
) -> Result<Vec<SweepRow>> {
    opts.validate()?;
    let schedule = NoiseSchedule::new(&digits.meta.config.schedule)?;
    let shape = model_shape(&digits.meta.config.unet);
    let labels = draw_labels(opts.n, 10, None, opts.seed);
    let mut specs: Vec<SamplerSpec> = Vec::new();
    for &kind in opts.samplers.iter().filter(|&&k| k != SamplerKind::Ddpm) {
        for &s in &opts.steps {
            specs.push(SamplerSpec {
                kind,
                steps: s,
                spacing: opts.spacing,
                clip_x0: true,
                ..Default::default()
            });
        }
    }
    if opts.ddpm {
        specs.push(image_spec(SamplerKind::Ddpm, 0, 0.0, true));
    }
    let mut rows = Vec::new();
    for spec in specs {
        spec.validate(schedule.num_steps())?;
        let t = Instant::now();
        let images = Generator::new(&digits.model, shape, &schedule, spec)
            .guided(opts.guidance.into(), None)
            .generate(&labels, opts.seed, 250, None)?;
        let seconds = t.elapsed().as_secs_f64();
        let j = digits.judge.judge(&images, &labels)?;
        let row = SweepRow {
            label: spec.label(schedule.num_steps()),
            spec,
            nfe: spec.nfe(schedule.num_steps()),
            accuracy: j.accuracy,
            frechet: j.frechet,
            seconds,
        };
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// `sweep.csv` (sampler, steps, nfe, accuracy, frechet, seconds) and `sweep.png` (accuracy
/// against steps, one line per sampler, DDPM as a flat reference line) in `out`.
pub fn write(out: &Path, rows: &[SweepRow], opts: &SweepOptions, num_train: usize) -> Result<()> {
    let table = rows.iter().map(|r| {
        vec![
            r.spec.kind.name().to_string(),
            r.spec.steps.to_string(),
            r.nfe.to_string(),
            format!("{:.4}", r.accuracy),
            format!("{:.3}", r.frechet),
            format!("{:.2}", r.seconds),
        ]
    });
    crate::files::write_csv_table(
        &out.join("sweep.csv"),
        &["sampler", "steps", "nfe", "accuracy", "frechet", "seconds"],
        table,
    )?;
    let points: Vec<(SamplerSpec, f64)> =
        rows.iter().map(|r| (r.spec, 100.0 * r.accuracy)).collect();
    let series = steps_series(&points, &opts.samplers, &opts.steps, num_train);
    crate::plot::lines(
        &out.join("sweep.png"),
        &format!(
            "digits recognised at w = {} vs sampling steps",
            opts.guidance.w()
        ),
        "steps",
        "accuracy (%)",
        false,
        &series,
    )
}
