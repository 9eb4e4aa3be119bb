//! `diffuse image run`: the digits demo (`diffuse::image::demo`).
use anyhow::{bail, Result};
use clap::Args;
use diffuse::image::demo::Demo;
use diffuse::image::{DemoSampling, Recipe};
use diffuse::metrics::digit_frechet::DigitJudge;
use diffuse::sampling::{Feedback, Guidance, GuidanceConvention, GuidanceMethod, SamplerKind};

use super::ImageTrainArgs;
use crate::cli::args::{to_flags, GuidanceParams, SelectiveParams};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    train: ImageTrainArgs,
    /// Samples per guidance scale.
    #[arg(short = 'n', long = "num", default_value_t = 500)]
    n: usize,
    /// Guided scale compared with w = 0 (reference convention; the reference default 7.5).
    #[arg(long, default_value_t = 7.5, allow_negative_numbers = true)]
    cfg_scale: f64,
    /// Guidance method of the guided samples. APG keeps the digits' distribution at
    /// w = 7.5 where plain CFG collapses it (BENCHMARKS.md, guidance sweep).
    #[arg(long, value_enum, default_value_t = GuidanceMethod::Apg)]
    guidance: GuidanceMethod,
    #[command(flatten)]
    params: GuidanceParams,
    #[command(flatten)]
    selective: SelectiveParams,
    /// Sampler [default: the recipe's, ddim].
    #[arg(long, value_enum)]
    sampler: Option<SamplerKind>,
    /// Sampling steps of few-step samplers [default: the recipe's, 50].
    #[arg(long)]
    sample_steps: Option<usize>,
    /// DDIM's η [default: the recipe's: 1 for best, 0 for reference].
    #[arg(long)]
    eta: Option<f64>,
}

pub fn run(a: &RunArgs) -> Result<()> {
    demo(a).map_err(|e| {
        to_flags(
            e,
            &[
                ("sampler.steps", "--sample-steps"),
                ("sampler.eta", "--eta"),
            ],
        )
    })
}

fn demo(a: &RunArgs) -> Result<()> {
    // The demo trains and samples the best recipe unless told otherwise (`--recipe reference`).
    let mut train = a.train.clone();
    let recipe = *train.recipe.get_or_insert(Recipe::Best);
    let (train, n) = (&train, a.n);
    let mut sampling = DemoSampling::of(recipe);
    sampling.sampler = a.sampler.unwrap_or(sampling.sampler);
    sampling.steps = a.sample_steps.unwrap_or(sampling.steps);
    sampling.eta = a.eta.unwrap_or(sampling.eta);
    if train.data.data.as_deref().is_some_and(|d| d != "digits") {
        bail!("`image run` is the digits demo (its accuracy needs the digits classifier); use `image train` and `image sample` for other data");
    }
    if a.guidance == GuidanceMethod::Auto {
        bail!("`image run` trains one model; autoguidance needs a second, weaker one: train it with `image train` and use `image sample --guidance auto --guide-ckpt`");
    }
    let scale = Guidance::new(a.cfg_scale, GuidanceConvention::Reference)?;
    let mut guided = a.params.config(a.guidance, scale)?;
    // The recipe's APG settings where the flags leave them unset.
    if a.params.apg_norm.is_none() {
        guided.apg.norm_threshold = sampling.apg_norm;
    }
    if a.params.apg_interval.is_none() {
        guided.apg.interval = sampling.apg_interval;
    }
    if a.params.apg_feedback.is_none() {
        guided.apg.feedback = sampling.apg_feedback.map(|f| Feedback {
            temperature: a.params.apg_feedback_temperature,
            ..f
        });
    }
    guided.validate()?;
    let selective = a.selective.config(sampling.selective)?;
    if let Some(sel) = selective {
        sel.base(&guided)?;
    }
    let spec = sampling.spec();
    spec.validate(1000)?;
    if train.dry_run {
        let (f, _) = train.prepare()?;
        println!("{}", f.to_json());
        eprintln!(
            "recipe {}: samples with {}, x̂₀ clipped; guided: {} w = {} (APG bound r = {}, {}{}){}",
            recipe.name(),
            spec.label(f.train.schedule.num_steps),
            guided.method.name(),
            a.cfg_scale,
            guided.apg.norm_threshold,
            match guided.apg.interval {
                Some((lo, hi)) => format!("for σ in ({lo}, {hi}]"),
                None => "at every step".into(),
            },
            match guided.apg.feedback {
                Some(f) => format!(
                    ", per image min(w, π/(R − π)) with feedback π = {}, τ = {}",
                    f.pi, f.temperature
                ),
                None => String::new(),
            },
            match selective {
                Some(s) => format!(
                    "; selective: every image first at w = {} (r = {}), then the {} % the model is least sure of at the guided setting",
                    s.base_w,
                    s.base_apg_norm,
                    100.0 * s.share
                ),
                None => String::new(),
            }
        );
        return Ok(());
    }
    if n < 2 {
        bail!("invalid value for -n: must be at least 2 (the Fréchet distance needs a covariance)");
    }
    let dev = train.common.device()?;
    let t0 = std::time::Instant::now();
    // The judge: a classifier trained on the real 8×8 digits (10 % held out).
    let judge = DigitJudge::standard(&dev)?;
    let floor = judge.real_floor(n, 0)?;
    println!(
        "evaluation classifier: {:.1}% accuracy on held-out real digits; Fréchet real-vs-real floor {:.2} (halves), {:.2} ({} real digits)",
        100.0 * judge.holdout_accuracy,
        floor.halves,
        floor.at_n,
        floor.n
    );
    let (outcome, cfg, data) = train.train()?;
    if data.class_names.len() != 10 || (cfg.unet.in_channels, cfg.unet.image_size) != (1, 8) {
        bail!("`image run` is the digits demo: its --config must train on the bundled digits");
    }
    let demo = Demo {
        judge: &judge,
        spec,
        guided,
        selective,
        n,
        out: &train.out,
        show: !train.common.quiet,
        recipe: recipe.name(),
    };
    let results = demo.sample_and_judge(&outcome, &cfg, &data.class_names)?;
    let num_train = cfg.schedule.num_steps;
    let times = (outcome.seconds, t0.elapsed().as_secs_f64());
    demo.write_report(&results, &floor, times, num_train, &data.class_names)?;
    let summary: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{}: {:.1}% recognised, Fréchet {:.2}",
                demo.label(r),
                100.0 * r.judgement.accuracy,
                r.judgement.frechet
            )
        })
        .collect();
    println!(
        "digits: trained {} steps in {:.0} s; {} samples each ({}): {}; grids and metrics in {}",
        cfg.steps,
        outcome.seconds,
        n,
        spec.label(num_train),
        summary.join("; "),
        train.out.display()
    );
    let report = diffuse::report::write_after_run(&train.out, "image run")?;
    println!("report: {}", report.display());
    Ok(())
}
