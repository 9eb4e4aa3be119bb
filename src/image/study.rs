//! `image study`: one digits model per (seed, recipe), each judged like the demo at w = 0 and at
//! the guided default, and the median, minimum and maximum per recipe — the image side's
//! counterpart of [`crate::toy::study`], for finding a recipe that beats the reference at equal
//! training compute.
//!
//! A recipe is `reference` (the digits preset, what `image run` trains) or a TOML/JSON file of
//! `RUN/config.json` keys laid over it (e.g. `[train] batch_size = 128`), named by its file
//! stem. Training cost is the process's CPU seconds (user + system, all threads) spent
//! training, so machine load matters less than for wall time; the recipes of a seed train back
//! to back, in alternating order from seed to seed, so a drift in machine speed does not favour
//! one recipe.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;

use super::config::{overlay_typed, read_settings};
use super::demo::Demo;
use super::{train, DemoSampling, ImageTrainConfig, Preset, Recipe, RunFile};
use crate::data::digits::load_digits;
use crate::files::{ensure_dir, write_csv_table};
use crate::metrics::digit_frechet::DigitJudge;
use crate::stats::median_min_max;
use crate::train::interrupted;
use crate::{Error, Result};

/// One recipe of a study.
#[derive(Debug, Clone)]
pub struct ImageRecipe {
    /// `reference`, `best`, or the overlay file's stem.
    pub name: String,
    pub config: ImageTrainConfig,
    /// How its models are sampled and judged.
    pub sampling: DemoSampling,
}

impl ImageRecipe {
    /// `reference` or `best` (the [`Recipe`]s over the digits preset), or a TOML/JSON file of
    /// `RUN/config.json` keys laid over the digits preset, with an optional `[sample]` table
    /// of [`DemoSampling`] keys laid over the demo's sampling (e.g. `eta = 1.0`).
    pub fn parse(spec: &str) -> Result<Self> {
        for r in [Recipe::Reference, Recipe::Best] {
            if spec == r.name() {
                return Ok(Self {
                    name: spec.into(),
                    config: Preset::Digits.with_recipe(r),
                    sampling: DemoSampling::of(r),
                });
            }
        }
        let base = RunFile {
            data: Default::default(),
            train: ImageTrainConfig::digits(),
            log_every: 0,
            eval: Default::default(),
        };
        let path = Path::new(spec);
        if !path.is_file() {
            return Err(Error::invalid(
                "study.recipes",
                format!("`{spec}` is neither `reference`, `best` nor a TOML/JSON file of run-config keys"),
            ));
        }
        let mut settings = read_settings(path)?;
        let sample = settings
            .as_object_mut()
            .and_then(|m| m.remove("sample"))
            .unwrap_or_else(|| serde_json::json!({}));
        let sampling = overlay_typed(&DemoSampling::default(), sample, path)?;
        let f = overlay_typed(&base, settings, path)?;
        sampling
            .validate(f.train.schedule.num_steps)
            .map_err(|e| Error::bad_file(path, format!("[sample]: {e}")))?;
        if f.data.path != "digits" {
            return Err(Error::bad_file(
                path,
                "a study recipe trains on the digits: leave out data.path",
            ));
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_string());
        Ok(Self {
            name,
            config: f.train,
            sampling,
        })
    }
}

/// A study: recipes, seeds, samples per setting, where the runs and tables go.
pub struct ImageStudy {
    pub recipes: Vec<ImageRecipe>,
    pub seeds: Vec<u64>,
    /// Samples per setting (w = 0 and guided).
    pub n: usize,
    /// `RECIPE-seedS/` run folders, `study.csv`, `summary.csv`.
    pub out: PathBuf,
    /// Progress on stderr.
    pub show: bool,
}

/// One trained and judged model.
#[derive(Debug, Clone)]
pub struct ImageStudyRow {
    pub recipe: String,
    pub seed: u64,
    /// CPU seconds (user + system, all threads of the process) spent training.
    pub train_cpu_seconds: f64,
    pub train_seconds: f64,
    /// Mean loss of the last tenth of the steps.
    pub final_loss: f64,
    pub accuracy_w0: f64,
    pub frechet_w0: f64,
    pub accuracy_guided: f64,
    pub frechet_guided: f64,
    /// The real-vs-real Fréchet floor at the same n.
    pub floor: f64,
}

impl ImageStudyRow {
    /// The metrics in `study.csv` order after recipe and seed.
    fn values(&self) -> [f64; 9] {
        [
            self.train_cpu_seconds,
            self.train_seconds,
            self.final_loss,
            self.accuracy_w0,
            self.frechet_w0,
            self.accuracy_guided,
            self.frechet_guided,
            self.floor,
            self.frechet_w0 / self.floor,
        ]
    }
}

const METRICS: [&str; 9] = [
    "train_cpu_seconds",
    "train_seconds",
    "final_loss",
    "accuracy_w0",
    "frechet_w0",
    "accuracy_guided",
    "frechet_guided",
    "floor",
    "frechet_w0_over_floor",
];

/// median, min, max of a metric of a recipe over the seeds.
#[derive(Debug, Clone)]
pub struct SummaryLine {
    pub recipe: String,
    pub metric: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl SummaryLine {
    fn new(recipe: &str, metric: &str, (median, min, max): (f64, f64, f64), count: usize) -> Self {
        Self {
            recipe: recipe.into(),
            metric: metric.into(),
            median,
            min,
            max,
            count,
        }
    }
}

/// CPU seconds (user + system) this process has used so far, all threads; wall-clock seconds
/// since the first call where the platform has no `getrusage`.
pub fn process_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
            let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
            return t(u.ru_utime) + t(u.ru_stime);
        }
    }
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

impl ImageStudy {
    pub fn validate(&self) -> Result<()> {
        if self.recipes.is_empty() {
            return Err(Error::invalid("study.recipes", "give at least one recipe"));
        }
        if self.seeds.is_empty() {
            return Err(Error::invalid("study.seeds", "give at least one seed"));
        }
        if self.n < 2 {
            return Err(Error::invalid(
                "study.n",
                "must be at least 2 (the Fréchet distance needs a covariance)",
            ));
        }
        let mut names: Vec<&str> = self.recipes.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        names.dedup();
        if names.len() != self.recipes.len() {
            return Err(Error::invalid(
                "study.recipes",
                "two recipes have the same name",
            ));
        }
        for r in &self.recipes {
            r.config.validate()?;
        }
        Ok(())
    }

    /// Trains and judges every (seed, recipe), rewriting `study.csv` after each model, so an
    /// interrupted study keeps what it measured; stops before judging a model whose training
    /// was interrupted. `on_row` sees each row.
    pub fn run(
        &self,
        device: &Device,
        on_row: &mut dyn FnMut(&ImageStudyRow),
    ) -> Result<Vec<ImageStudyRow>> {
        self.validate()?;
        ensure_dir(&self.out)?;
        let data = Arc::new(load_digits(8)?);
        let judge = DigitJudge::standard(device)?;
        let mut rows: Vec<ImageStudyRow> = Vec::new();
        for (i, &seed) in self.seeds.iter().enumerate() {
            let floor = judge.real_floor(self.n, seed)?.at_n;
            let order: Vec<&ImageRecipe> = if i % 2 == 0 {
                self.recipes.iter().collect()
            } else {
                self.recipes.iter().rev().collect()
            };
            for r in order {
                let cfg = ImageTrainConfig {
                    seed,
                    preview_every: 0,
                    ..r.config.clone()
                };
                let dir = self.out.join(format!("{}-seed{seed}", r.name));
                let cpu0 = process_cpu_seconds();
                let outcome = train(
                    &cfg,
                    Arc::clone(&data),
                    &dir,
                    false,
                    &device.clone().autodiff(),
                    self.show,
                )?;
                let train_cpu_seconds = process_cpu_seconds() - cpu0;
                if outcome.interrupted || interrupted() {
                    return Ok(rows);
                }
                let demo = Demo {
                    judge: &judge,
                    spec: r.sampling.spec(),
                    guided: r.sampling.guided(),
                    selective: r.sampling.selective,
                    n: self.n,
                    out: &dir,
                    show: self.show,
                    recipe: &r.name,
                };
                let results = demo.sample_and_judge(&outcome, &cfg, &data.class_names)?;
                let tail = (outcome.losses.len() / 10).max(1);
                let last = &outcome.losses[outcome.losses.len().saturating_sub(tail)..];
                let row = ImageStudyRow {
                    recipe: r.name.clone(),
                    seed,
                    train_cpu_seconds,
                    train_seconds: outcome.seconds,
                    final_loss: last.iter().map(|l| l.1).sum::<f64>() / last.len().max(1) as f64,
                    accuracy_w0: results[0].judgement.accuracy,
                    frechet_w0: results[0].judgement.frechet,
                    accuracy_guided: results[1].judgement.accuracy,
                    frechet_guided: results[1].judgement.frechet,
                    floor,
                };
                on_row(&row);
                rows.push(row);
                self.write_rows(&rows)?;
            }
        }
        Ok(rows)
    }

    fn write_rows(&self, rows: &[ImageStudyRow]) -> Result<()> {
        let header: Vec<&str> = ["recipe", "seed"].into_iter().chain(METRICS).collect();
        let table = rows.iter().map(|r| {
            let mut v = vec![r.recipe.clone(), r.seed.to_string()];
            v.extend(r.values().iter().map(|x| format!("{x:.6}")));
            v
        });
        write_csv_table(&self.out.join("study.csv"), &header, table)
    }

    /// Median, min and max per recipe and metric, then every later recipe's training CPU time
    /// relative to the first's, paired by seed; written to `summary.csv`.
    pub fn summarize(&self, rows: &[ImageStudyRow]) -> Result<Vec<SummaryLine>> {
        let mut lines = Vec::new();
        for r in &self.recipes {
            let of: Vec<&ImageStudyRow> = rows.iter().filter(|x| x.recipe == r.name).collect();
            if of.is_empty() {
                continue;
            }
            for (j, m) in METRICS.iter().enumerate() {
                let vals: Vec<f64> = of.iter().map(|x| x.values()[j]).collect();
                let (med, min, max) = median_min_max(&vals);
                lines.push(SummaryLine::new(&r.name, m, (med, min, max), vals.len()));
            }
        }
        let first = &self.recipes[0].name;
        for r in self.recipes.iter().skip(1) {
            let ratios: Vec<f64> = rows
                .iter()
                .filter(|x| x.recipe == r.name)
                .filter_map(|x| {
                    rows.iter()
                        .find(|y| &y.recipe == first && y.seed == x.seed)
                        .map(|y| x.train_cpu_seconds / y.train_cpu_seconds)
                })
                .collect();
            if !ratios.is_empty() {
                let (med, min, max) = median_min_max(&ratios);
                let metric = format!("train_cpu_ratio_vs_{first}");
                lines.push(SummaryLine::new(
                    &r.name,
                    &metric,
                    (med, min, max),
                    ratios.len(),
                ));
            }
        }
        let table = lines.iter().map(|l| {
            vec![
                l.recipe.clone(),
                l.metric.clone(),
                format!("{:.6}", l.median),
                format!("{:.6}", l.min),
                format!("{:.6}", l.max),
                l.count.to_string(),
            ]
        });
        write_csv_table(
            &self.out.join("summary.csv"),
            &["recipe", "metric", "median", "min", "max", "seeds"],
            table,
        )?;
        Ok(lines)
    }
}
