//! `toy sweep`: the Chamfer distance against the number of sampling steps, for every sampler,
//! averaged over seeds.
use std::path::Path;
use std::time::Instant;

use super::sample_points;
use crate::metrics::chamfer::chamfer_distance;
use crate::nn::simplenet::SimpleNet;
use crate::sampling::{steps_series, SamplerKind, SamplerSpec, Spacing};
use crate::schedule::NoiseSchedule;
use crate::{Error, Result};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Samplers (DDPM is only the reference line, see `ddpm`).
    pub samplers: Vec<SamplerKind>,
    /// Step counts.
    pub steps: Vec<usize>,
    /// Timestep spacing.
    pub spacing: Spacing,
    /// Seeds averaged per point.
    pub seeds: Vec<u64>,
    /// Also run DDPM over all T steps as the reference line.
    pub ddpm: bool,
    /// Points per sample (compared with as many training points).
    pub n: usize,
}

/// One point: the Chamfer distance's mean, minimum and maximum over the seeds.
#[derive(Debug, Clone)]
pub struct SweepRow {
    pub label: String,
    pub spec: SamplerSpec,
    pub nfe: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Seconds per seed.
    pub seconds: f64,
}

impl SweepOptions {
    /// Checks the options against a schedule of `num_train` steps.
    pub fn validate(&self, num_train: usize) -> Result<()> {
        for (field, empty) in [
            ("sweep.samplers", self.samplers.is_empty()),
            ("sweep.steps", self.steps.is_empty()),
            ("sweep.seeds", self.seeds.is_empty()),
        ] {
            if empty {
                return Err(Error::invalid(field, "give at least one"));
            }
        }
        if let Some(s) = self.steps.iter().find(|&&s| s == 0 || s > num_train) {
            return Err(Error::invalid(
                "sweep.steps",
                format!("{s} is not between 1 and T = {num_train}"),
            ));
        }
        Ok(())
    }

    /// Every point of the sweep, DDPM last.
    fn specs(&self) -> Vec<SamplerSpec> {
        let mut specs = Vec::new();
        for &kind in self.samplers.iter().filter(|&&k| k != SamplerKind::Ddpm) {
            for &s in &self.steps {
                specs.push(SamplerSpec {
                    kind,
                    steps: s,
                    spacing: self.spacing,
                    ..SamplerSpec::default()
                });
            }
        }
        if self.ddpm {
            specs.push(SamplerSpec {
                kind: SamplerKind::Ddpm,
                ..SamplerSpec::default()
            });
        }
        specs
    }
}

/// Samples every point for every seed and measures the Chamfer distance to `reference` (the
/// run's first `n` training points); `on_row` sees each row as it is done.
pub fn run(
    model: &SimpleNet,
    schedule: &NoiseSchedule,
    reference: &[f32],
    opts: &SweepOptions,
    on_row: &mut dyn FnMut(&SweepRow),
) -> Result<Vec<SweepRow>> {
    opts.validate(schedule.num_steps())?;
    let mut rows = Vec::new();
    for spec in opts.specs() {
        let t = Instant::now();
        let mut cds = Vec::new();
        for &seed in &opts.seeds {
            let pts = sample_points(model, schedule, &spec, opts.n, seed, false)?;
            cds.push(chamfer_distance(&pts, reference, 2)?);
        }
        let mean = cds.iter().sum::<f64>() / cds.len() as f64;
        let (min, max) = cds
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &c| (a.min(c), b.max(c)));
        let row = SweepRow {
            label: spec.label(schedule.num_steps()),
            spec,
            nfe: spec.nfe(schedule.num_steps()),
            mean,
            min,
            max,
            seconds: t.elapsed().as_secs_f64() / opts.seeds.len() as f64,
        };
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// `sweep.csv` and `sweep.png` (Chamfer against steps, one line per sampler, DDPM as a flat
/// reference line) in `out`.
pub fn write(out: &Path, rows: &[SweepRow], opts: &SweepOptions, num_train: usize) -> Result<()> {
    let table = rows.iter().map(|r| {
        vec![
            r.spec.kind.name().to_string(),
            r.spec.steps.to_string(),
            r.nfe.to_string(),
            format!("{:.4}", r.mean),
            format!("{:.4}", r.min),
            format!("{:.4}", r.max),
            format!("{:.3}", r.seconds),
        ]
    });
    crate::files::write_csv_table(
        &out.join("sweep.csv"),
        &[
            "sampler",
            "steps",
            "nfe",
            "chamfer_mean",
            "chamfer_min",
            "chamfer_max",
            "seconds",
        ],
        table,
    )?;
    let points: Vec<(SamplerSpec, f64)> = rows.iter().map(|r| (r.spec, r.mean)).collect();
    let series = steps_series(&points, &opts.samplers, &opts.steps, num_train);
    crate::plot::lines(
        &out.join("sweep.png"),
        "Chamfer distance vs sampling steps",
        "steps",
        "Chamfer distance",
        true,
        &series,
    )
}
