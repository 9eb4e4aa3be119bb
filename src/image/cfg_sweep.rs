//! `image cfg-sweep`: guidance methods × scales on one run, each point scored by the digits
//! judge (accuracy and Fréchet distance) or by FID against a folder, with the fidelity /
//! diversity trade-off plot.
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;

use super::{write_samples, Generator};
use crate::files::write_json;
use crate::metrics::digit_frechet::{DigitJudge, RealFloor};
use crate::metrics::fid_pipeline::{fid_between, folder_stats, FidOptions};
use crate::sampling::{GuidanceConfig, GuidanceMethod};
use crate::Result;

/// How a point's samples are scored.
pub enum Metric {
    /// Digits: accuracy and Fréchet distance in the judge classifier's feature space.
    Digits(Box<DigitJudge>),
    /// A folder data set: FID against ground-truth statistics computed once.
    Fid { gt_stats: PathBuf, opts: FidOptions },
}

impl Metric {
    /// The digits judge on `device`.
    pub fn digits(device: &Device) -> Result<Self> {
        Ok(Metric::Digits(Box::new(DigitJudge::standard(device)?)))
    }

    /// FID against `gt`, whose statistics are computed once into `out/gt.fidstats` with `opts`.
    pub fn fid(gt: &Path, out: &Path, opts: FidOptions) -> Result<Self> {
        let gt_stats = out.join("gt.fidstats");
        folder_stats(
            gt,
            &FidOptions {
                save_stats: Some(gt_stats.clone()),
                ..opts.clone()
            },
        )?;
        Ok(Metric::Fid {
            gt_stats,
            opts: FidOptions {
                save_stats: None,
                progress: false,
                ..opts
            },
        })
    }

    /// The digits' real-vs-real Fréchet floor at `n` samples (none for FID).
    pub fn floor(&self, n: usize) -> Result<Option<RealFloor>> {
        match self {
            Metric::Digits(j) => Ok(Some(j.real_floor(n, 0)?)),
            Metric::Fid { .. } => Ok(None),
        }
    }

    /// The distance's name in files and on screen.
    pub fn distance_name(&self) -> &'static str {
        match self {
            Metric::Digits(_) => "Fréchet",
            Metric::Fid { .. } => "FID",
        }
    }
}

/// One (method, scale) point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepPoint {
    pub method: &'static str,
    pub w: f64,
    /// Digits only.
    pub accuracy: Option<f64>,
    /// Fréchet distance (digits feature space) or FID.
    pub distance: f64,
    pub seconds: f64,
}

/// The sweep: the sampler setup (`generator`, its guidance replaced point by point), the
/// guidance settings of every point, and where FID samples go.
pub struct CfgSweep<'a> {
    pub generator: Generator<'a>,
    /// Per method, its settings at every scale.
    pub points: Vec<(GuidanceMethod, Vec<GuidanceConfig>)>,
    /// Labels of the samples of every point.
    pub labels: Vec<usize>,
    pub seed: u64,
    /// Images per network batch.
    pub batch: usize,
    pub class_names: Vec<String>,
    /// FID samples are written under `out/samples/<method>-w<w>/`.
    pub out: PathBuf,
}

impl CfgSweep<'_> {
    /// Samples and scores every point; at w = 0 every method is the plain conditional model,
    /// sampled once and shared. `on_point` sees each point as it is done.
    pub fn run(
        &self,
        metric: &Metric,
        on_point: &mut dyn FnMut(&SweepPoint),
    ) -> Result<Vec<SweepPoint>> {
        let shape = self.generator.shape;
        let mut points = Vec::new();
        let mut at_zero: Option<(Option<f64>, f64, f64)> = None;
        for (method, cfgs) in &self.points {
            for g in cfgs {
                let w = g.scale.w();
                let (accuracy, distance, seconds) = match at_zero {
                    Some(r) if w == 0.0 => r,
                    _ => {
                        let t = Instant::now();
                        let guide = self
                            .generator
                            .guide
                            .filter(|_| *method == GuidanceMethod::Auto);
                        let images = self.generator.guided(*g, guide).generate(
                            &self.labels,
                            self.seed,
                            self.batch,
                            None,
                        )?;
                        let secs = t.elapsed().as_secs_f64();
                        let r = match metric {
                            Metric::Digits(judge) => {
                                let j = judge.judge(&images, &self.labels)?;
                                (Some(j.accuracy), j.frechet, secs)
                            }
                            Metric::Fid { gt_stats, opts } => {
                                let dir = self
                                    .out
                                    .join("samples")
                                    .join(format!("{}-w{w}", method.name()));
                                write_samples(
                                    &dir,
                                    &images,
                                    &self.labels,
                                    &self.class_names,
                                    shape,
                                )?;
                                (None, fid_between(gt_stats, &dir, opts)?.fid, secs)
                            }
                        };
                        if w == 0.0 {
                            at_zero = Some(r);
                        }
                        r
                    }
                };
                let p = SweepPoint {
                    method: method.name(),
                    w,
                    accuracy,
                    distance,
                    seconds,
                };
                on_point(&p);
                points.push(p);
            }
        }
        Ok(points)
    }
}

/// What [`write`] records besides the points.
pub struct SweepRecord<'a> {
    pub ckpt: &'a Path,
    /// The sampler's label, e.g. `ddim-50`.
    pub sampler: String,
    pub n: usize,
    pub seed: u64,
    /// The scales as given (for the plot's title).
    pub scales: &'a [f64],
    pub floor: Option<RealFloor>,
}

/// `cfg-sweep.csv`, `cfg-sweep.json` and the trade-off plot `cfg-sweep.png` in `out`: for the
/// digits accuracy (fidelity) against Fréchet distance (distribution) with the real-vs-real
/// floor, for FID the distance against w.
pub fn write(
    out: &Path,
    methods: &[GuidanceMethod],
    points: &[SweepPoint],
    rec: &SweepRecord,
) -> Result<()> {
    let dist_name = if rec.floor.is_some() {
        "frechet"
    } else {
        "fid"
    };
    let table = points.iter().map(|p| {
        vec![
            p.method.to_string(),
            p.w.to_string(),
            p.accuracy.map_or(String::new(), |v| format!("{v:.4}")),
            format!("{:.4}", p.distance),
            format!("{:.2}", p.seconds),
        ]
    });
    crate::files::write_csv_table(
        &out.join("cfg-sweep.csv"),
        &["method", "w", "accuracy", dist_name, "seconds"],
        table,
    )?;
    write_json(
        &out.join("cfg-sweep.json"),
        &serde_json::json!({
            "ckpt": rec.ckpt,
            "sampler": rec.sampler,
            "n": rec.n,
            "seed": rec.seed,
            "frechet_floor": rec.floor,
            "points": points,
        }),
    )?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = methods
        .iter()
        .map(|m| {
            let pts = points
                .iter()
                .filter(|p| p.method == m.name())
                .map(|p| match p.accuracy {
                    Some(acc) => (100.0 * acc, p.distance),
                    None => (p.w, p.distance),
                })
                .collect();
            (m.name().to_string(), pts)
        })
        .collect();
    let plot = out.join("cfg-sweep.png");
    let label = &rec.sampler;
    match rec.floor {
        Some(f) => {
            let xs = points.iter().filter_map(|p| p.accuracy.map(|v| 100.0 * v));
            let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
            series.push((
                format!("real-vs-real floor (n = {})", f.n),
                vec![(lo, f.at_n), (hi, f.at_n)],
            ));
            crate::plot::lines(
                &plot,
                &format!(
                    "digits: fidelity vs distribution, w = {:?} ({label}, n = {})",
                    rec.scales, rec.n
                ),
                "accuracy (%) — fidelity",
                "Fréchet distance (classifier features) — lower is better",
                true,
                &series,
            )
        }
        None => crate::plot::lines(
            &plot,
            &format!("FID vs guidance scale ({label}, n = {})", rec.n),
            "w (reference convention)",
            "FID",
            true,
            &series,
        ),
    }
}
