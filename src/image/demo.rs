//! `image run`, the digits demo after training: sample at w = 0 and at a guided setting, judge
//! both with the classifier trained on the real digits, and write the samples, grids and
//! `metrics.json`.
use std::path::Path;
use std::time::Instant;

use super::ImageTrainConfig;
use super::{draw_labels, model_shape, write_class_grid, write_samples, Generator, TrainOutcome};
use crate::files::write_json;
use crate::metrics::digit_frechet::{DigitJudge, Judgement, RealFloor};
use crate::nn::digit_classifier::to_8x8;
use crate::sampling::{GuidanceConfig, GuidanceMethod, SamplerSpec, Selective};
use crate::schedule::NoiseSchedule;
use crate::Result;

/// The demo's sampling and judging settings.
pub struct Demo<'a> {
    pub judge: &'a DigitJudge,
    /// The sampler of both settings.
    pub spec: SamplerSpec,
    /// The guided setting compared with w = 0.
    pub guided: GuidanceConfig,
    /// Whether the guided setting is applied selectively.
    pub selective: Option<Selective>,
    /// Samples per setting.
    pub n: usize,
    /// The run folder: `samples_{w0,guided}/`, `grid_{w0,guided}.png`, `metrics.json`.
    pub out: &'a Path,
    /// Progress bars on stderr.
    pub show: bool,
    /// The recipe's name (`best`, `reference`, a study's file stem), recorded in `metrics.json`.
    pub recipe: &'a str,
}

/// The samples of one setting, judged.
pub struct DemoResult {
    /// `w0` or `guided`.
    pub name: &'static str,
    pub guidance: GuidanceConfig,
    pub judgement: Judgement,
    /// Sampling time.
    pub seconds: f64,
    /// How many images selective guidance sampled again (0 without it).
    pub resampled: usize,
}

impl Demo<'_> {
    /// Samples `n` images per setting from the trained model (EMA weights when trained with
    /// them), writes them with their grids, and judges them.
    pub fn sample_and_judge(
        &self,
        outcome: &TrainOutcome,
        cfg: &ImageTrainConfig,
        class_names: &[String],
    ) -> Result<Vec<DemoResult>> {
        let model = outcome.sampling_model();
        let schedule = NoiseSchedule::new(&cfg.schedule)?;
        let shape = model_shape(&cfg.unet);
        let labels = draw_labels(self.n, class_names.len(), None, cfg.seed);
        let mut results = Vec::new();
        let settings = [
            ("w0", GuidanceConfig::default(), None),
            ("guided", self.guided, self.selective),
        ];
        for (name, g, selective) in settings {
            let pb = if self.show {
                crate::train::progress_bar(self.n as u64, &format!("sample {name}"))
            } else {
                indicatif::ProgressBar::hidden()
            };
            let t = Instant::now();
            let (images, resampled) = Generator::new(&model, shape, &schedule, self.spec)
                .guided(g, None)
                .selective(selective)
                .generate_selected(&labels, cfg.seed, 250, Some(&pb))?;
            pb.finish_and_clear();
            let seconds = t.elapsed().as_secs_f64();
            let dir = self.out.join(format!("samples_{name}"));
            write_samples(&dir, &images, &labels, class_names, shape)?;
            let grid = self.out.join(format!("grid_{name}.png"));
            write_class_grid(&grid, &images, &labels, class_names.len(), shape)?;
            let judgement = self.judge.judge(&to_8x8(&images, shape.1)?, &labels)?;
            results.push(DemoResult {
                name,
                guidance: g,
                judgement,
                seconds,
                resampled: resampled.len(),
            });
        }
        Ok(results)
    }

    /// The guided setting's method, `+selective` when it is applied selectively.
    pub fn guided_name(&self) -> String {
        match self.selective {
            Some(_) => format!("{}+selective", self.guided.name()),
            None => self.guided.name(),
        }
    }

    /// A short label of the setting of `r`: `cfg w=0`, `apg+selective w=7.5`, ….
    pub fn label(&self, r: &DemoResult) -> String {
        match r.name {
            "guided" => format!("{} w={}", self.guided_name(), r.guidance.scale.w()),
            _ => r.guidance.label(),
        }
    }

    /// Writes `metrics.json`: the judge's held-out accuracy and real-vs-real floor, training and
    /// sampling times, and per setting the accuracy (overall and per class), the Fréchet
    /// distance and w.
    pub fn write_report(
        &self,
        results: &[DemoResult],
        floor: &RealFloor,
        times: (f64, f64),
        num_train: usize,
        class_names: &[String],
    ) -> Result<()> {
        let (train_seconds, total_seconds) = times;
        let mut report = serde_json::Map::new();
        report.insert(
            "classifier_holdout_accuracy".into(),
            self.judge.holdout_accuracy.into(),
        );
        report.insert(
            "frechet_floor".into(),
            serde_json::to_value(floor).expect("plain numbers"),
        );
        report.insert("train_seconds".into(), train_seconds.into());
        report.insert("recipe".into(), self.recipe.into());
        report.insert("sampler".into(), self.spec.label(num_train).into());
        report.insert("guidance".into(), self.guided_name().into());
        if self.guided.method == GuidanceMethod::Apg {
            let apg = &self.guided.apg;
            report.insert(
                "apg".into(),
                serde_json::json!({
                    "norm_threshold": apg.norm_threshold,
                    "interval": apg.interval,
                    "feedback": apg.feedback,
                }),
            );
        }
        if let Some(sel) = self.selective {
            report.insert(
                "selective".into(),
                serde_json::to_value(sel).expect("plain numbers"),
            );
        }
        for r in results {
            let j = &r.judgement;
            let per_class: serde_json::Map<String, serde_json::Value> = class_names
                .iter()
                .zip(&j.per_class)
                .map(|(c, &a)| (c.clone(), a.into()))
                .collect();
            let name = r.name;
            report.insert(format!("accuracy_{name}"), j.accuracy.into());
            report.insert(format!("frechet_{name}"), j.frechet.into());
            report.insert(format!("per_class_{name}"), per_class.into());
            report.insert(format!("w_{name}"), r.guidance.scale.w().into());
            report.insert(format!("sample_seconds_{name}"), r.seconds.into());
            if r.resampled > 0 {
                report.insert(format!("resampled_{name}"), r.resampled.into());
            }
        }
        report.insert("total_seconds".into(), total_seconds.into());
        write_json(&self.out.join("metrics.json"), &report)
    }
}
