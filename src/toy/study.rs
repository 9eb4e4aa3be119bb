//! `toy study`: one model per (seed, recipe), scored with several samplers, and the median,
//! minimum and maximum per recipe. The recipes of a seed train back to back, so their times
//! are measured under the same machine load.
use std::path::PathBuf;

use burn::module::Module;
use burn::prelude::*;

use super::{sample_points, train, Recipe, ToyConfig};
use crate::files::ensure_dir;
use crate::metrics::chamfer::chamfer_distance;
use crate::sampling::{SamplerKind, SamplerSpec, Spacing};
use crate::schedule::NoiseSchedule;
use crate::stats::median_min_max;
use crate::train::interrupted;
use crate::{Error, Result};

/// The samplers a seed study scores every model with, by column name: DDPM-1000 (the quality
/// the network has learnt), DDIM-50 with the reference's leading spacing and with quadratic
/// spacing, and DPM-Solver++(2M)-20 with quadratic spacing.
pub fn study_samplers() -> Vec<(&'static str, SamplerSpec)> {
    let spec = |kind, steps, spacing| SamplerSpec {
        kind,
        steps,
        spacing,
        ..SamplerSpec::default()
    };
    vec![
        ("ddpm1000", spec(SamplerKind::Ddpm, 1000, Spacing::Leading)),
        ("ddim50", spec(SamplerKind::Ddim, 50, Spacing::Leading)),
        (
            "ddim50_quad",
            spec(SamplerKind::Ddim, 50, Spacing::Quadratic),
        ),
        (
            "dpm2m20_quad",
            spec(SamplerKind::DpmSolver2m, 20, Spacing::Quadratic),
        ),
    ]
}

/// A study: recipes (each with its config, the seed replaced per model), seeds, and where the
/// models and tables go.
pub struct Study {
    pub recipes: Vec<(Recipe, ToyConfig)>,
    pub seeds: Vec<u64>,
    /// Points sampled per model (compared with its first as many training points).
    pub eval_points: usize,
    /// `RECIPE-seedS/model.safetensors`, `study.csv`, `summary.csv`.
    pub out: PathBuf,
    /// Training progress bars on stderr.
    pub show: bool,
}

/// One trained and scored model.
#[derive(Debug, Clone)]
pub struct StudyRow {
    pub recipe: Recipe,
    pub seed: u64,
    pub train_seconds: f64,
    pub final_loss: f64,
    /// Chamfer distance per sampler of [`study_samplers`].
    pub chamfer: Vec<f64>,
}

/// median, min, max of a metric of a recipe.
#[derive(Debug, Clone)]
pub struct SummaryLine {
    pub recipe: Recipe,
    pub metric: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Study {
    /// Checks every recipe's config and the evaluation size.
    pub fn validate(&self) -> Result<()> {
        if self.recipes.is_empty() {
            return Err(Error::invalid("study.recipes", "give at least one recipe"));
        }
        for (r, cfg) in &self.recipes {
            cfg.validate().map_err(|e| match e {
                Error::InvalidArgument { name, msg } => Error::InvalidArgument {
                    name,
                    msg: format!("{msg} (recipe {})", r.name()),
                },
                e => e,
            })?;
            if self.eval_points == 0 || self.eval_points > cfg.num_points {
                return Err(Error::invalid(
                    "study.eval_points",
                    format!(
                        "must be between 1 and the training-set size {}",
                        cfg.num_points
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The header of `study.csv`.
    fn csv_header() -> Vec<&'static str> {
        let names = study_samplers().into_iter().map(|s| s.0);
        ["recipe", "seed", "train_seconds", "final_loss"]
            .into_iter()
            .chain(names)
            .collect()
    }

    /// Trains and scores every (seed, recipe) on `device`, saving each model and rewriting
    /// `study.csv` after each, so an interrupted study keeps what it measured. Stops before
    /// scoring a model whose training was interrupted. `on_row` sees each row.
    pub fn run(&self, device: &Device, on_row: &mut dyn FnMut(&StudyRow)) -> Result<Vec<StudyRow>> {
        self.validate()?;
        ensure_dir(&self.out)?;
        let samplers = study_samplers();
        let header = Self::csv_header();
        let mut table: Vec<Vec<String>> = Vec::new();
        let mut rows = Vec::new();
        for &seed in &self.seeds {
            for (r, cfg) in &self.recipes {
                let cfg = ToyConfig {
                    seed,
                    ..cfg.clone()
                };
                let trained = train(&cfg, &device.clone().autodiff(), self.show)?;
                if interrupted() {
                    // A model cut short is not a sample of the recipe: stop before scoring it.
                    return Ok(rows);
                }
                let dir = self.out.join(format!("{}-seed{seed}", r.name()));
                ensure_dir(&dir)?;
                crate::checkpoint::toy::save(&trained, &cfg, &dir.join("model.safetensors"))?;
                let model = trained.sampling_model().to_device(device);
                let schedule = NoiseSchedule::new(&cfg.schedule)?;
                let reference = &trained.data[..2 * self.eval_points];
                let mut chamfer = Vec::new();
                for (_, spec) in &samplers {
                    let pts =
                        sample_points(&model, &schedule, spec, self.eval_points, seed, false)?;
                    chamfer.push(chamfer_distance(&pts, reference, 2)?);
                }
                let row = StudyRow {
                    recipe: *r,
                    seed,
                    train_seconds: trained.seconds,
                    final_loss: trained.final_loss(),
                    chamfer,
                };
                table.push(
                    [
                        r.name().to_string(),
                        seed.to_string(),
                        format!("{:.3}", row.train_seconds),
                        format!("{:.6}", row.final_loss),
                    ]
                    .into_iter()
                    .chain(row.chamfer.iter().map(|c| format!("{c:.4}")))
                    .collect(),
                );
                crate::files::write_csv_table(
                    &self.out.join("study.csv"),
                    &header,
                    table.iter().cloned(),
                )?;
                on_row(&row);
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// Median, min and max per recipe of the training time and every sampler's Chamfer
    /// distance, then the training-time ratio of every later recipe to the first, paired by
    /// seed; written to `summary.csv`.
    pub fn summarize(&self, rows: &[StudyRow]) -> Result<Vec<SummaryLine>> {
        let names: Vec<&str> = study_samplers().iter().map(|s| s.0).collect();
        let mut lines = Vec::new();
        let of = |r: Recipe| rows.iter().filter(move |x| x.recipe == r);
        for (r, _) in &self.recipes {
            let metrics = std::iter::once("train_seconds").chain(names.iter().copied());
            for (j, metric) in metrics.enumerate() {
                let vals: Vec<f64> = of(*r)
                    .map(|x| {
                        if j == 0 {
                            x.train_seconds
                        } else {
                            x.chamfer[j - 1]
                        }
                    })
                    .collect();
                let (median, min, max) = median_min_max(&vals);
                lines.push(SummaryLine {
                    recipe: *r,
                    metric: metric.to_string(),
                    median,
                    min,
                    max,
                    count: vals.len(),
                });
            }
        }
        let first = self.recipes[0].0;
        if self.recipes.len() > 1 && of(first).next().is_some() {
            for (r, _) in self.recipes.iter().skip(1) {
                let ratios: Vec<f64> = of(*r)
                    .zip(of(first))
                    .map(|(a, b)| a.train_seconds / b.train_seconds)
                    .collect();
                let (median, min, max) = median_min_max(&ratios);
                lines.push(SummaryLine {
                    recipe: *r,
                    metric: format!("train_time_ratio_vs_{}", first.name()),
                    median,
                    min,
                    max,
                    count: ratios.len(),
                });
            }
        }
        let table = lines.iter().map(|l| {
            vec![
                l.recipe.name().to_string(),
                l.metric.clone(),
                format!("{:.4}", l.median),
                format!("{:.4}", l.min),
                format!("{:.4}", l.max),
                l.count.to_string(),
            ]
        });
        crate::files::write_csv_table(
            &self.out.join("summary.csv"),
            &["recipe", "metric", "median", "min", "max", "seeds"],
            table,
        )?;
        Ok(lines)
    }
}
