//! `diffuse toy …`: the 2D workflow.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use clap::{Args, Subcommand};
use diffuse::checkpoint::{ensure_dir, write_json};
use diffuse::data::toy::ToyDataset;
use diffuse::device::{device, DeviceKind};
use diffuse::metrics::chamfer::chamfer_distance;
use diffuse::plot;
use diffuse::sampling::{SamplerKind, SamplerSpec, Spacing};
use diffuse::schedule::{NoiseSchedule, SigmaKind};
use diffuse::toy::{self, Recipe, ToyConfig};

#[derive(Subcommand)]
pub enum ToyCommand {
    /// Train a SimpleNet and save a checkpoint (safetensors + JSON config).
    Train {
        #[command(flatten)]
        train: TrainArgs,
        /// Checkpoint file to write (`.safetensors`; the config goes to `.json` beside it).
        #[arg(long, default_value = "out/toy/model.safetensors")]
        out: PathBuf,
    },
    /// Sample points from a checkpoint and write them as CSV (`x,y`).
    Sample {
        /// Checkpoint (`.safetensors` with its `.json`, or a PyTorch state dict).
        #[arg(long)]
        ckpt: PathBuf,
        #[command(flatten)]
        sampler: SamplerArgs,
        /// Number of points.
        #[arg(short = 'n', long = "num", default_value_t = 2048)]
        n: usize,
        /// Seed of the initial noise (and of DDPM/DDIM-η noise).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use the raw weights even when EMA weights are saved.
        #[arg(long)]
        raw: bool,
        /// Output CSV file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Chamfer distance of a sample CSV against a checkpoint's training data (first N points)
    /// or against another CSV.
    Eval {
        /// Generated points (CSV `x,y`).
        samples: PathBuf,
        /// Checkpoint whose training set is the reference.
        #[arg(long, conflicts_with = "reference")]
        ckpt: Option<PathBuf>,
        /// Reference points (CSV `x,y`).
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Reference points taken from the checkpoint's training set.
        #[arg(short = 'n', long = "num", default_value_t = 2048)]
        n: usize,
    },
    /// DDIM inversion: encode training points to x_T and decode them back, for several step
    /// counts (mean round-trip error), plus an interpolation picture between two encoded points.
    Invert {
        /// Checkpoint.
        #[arg(long)]
        ckpt: PathBuf,
        /// Step counts to try (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = vec![10, 20, 50, 100, 200])]
        steps: Vec<usize>,
        /// Timestep spacing.
        #[arg(long, value_enum, default_value_t = Spacing::Leading)]
        spacing: Spacing,
        /// Training points encoded (the first N of the checkpoint's run).
        #[arg(short = 'n', long = "num", default_value_t = 2048)]
        n: usize,
        /// Output folder (inversion.json, interpolation.png).
        #[arg(long, default_value = "out/toy-invert")]
        out: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Chamfer distance against the number of sampling steps, for every sampler: a table
    /// (sweep.csv) and a plot (sweep.png).
    Sweep {
        /// Checkpoint.
        #[arg(long)]
        ckpt: PathBuf,
        /// Samplers (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![SamplerKind::Ddim, SamplerKind::DpmSolver2m, SamplerKind::Heun])]
        samplers: Vec<SamplerKind>,
        /// Step counts (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = vec![5, 10, 20, 50, 100, 200])]
        steps: Vec<usize>,
        /// Timestep spacing.
        #[arg(long, value_enum, default_value_t = Spacing::Leading)]
        spacing: Spacing,
        /// Seeds averaged per point (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = vec![0])]
        seeds: Vec<u64>,
        /// Also run DDPM-1000 as the reference line.
        #[arg(long)]
        ddpm: bool,
        /// Points per sample.
        #[arg(short = 'n', long = "num", default_value_t = 2048)]
        n: usize,
        /// Use the raw weights even when EMA weights are saved.
        #[arg(long)]
        raw: bool,
        /// Output folder.
        #[arg(long, default_value = "out/toy-sweep")]
        out: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Train, sample with DDPM-1000 and DDIM-50, evaluate, plot: the whole workflow.
    Run {
        #[command(flatten)]
        train: TrainArgs,
        /// Output folder.
        #[arg(long, default_value = "out/toy")]
        out: PathBuf,
        /// Points sampled and compared (against the first N training points).
        #[arg(long, default_value_t = 2048)]
        eval_points: usize,
        /// DDIM steps of the few-step evaluation.
        #[arg(long, default_value_t = 50)]
        ddim_steps: usize,
        /// Timestep spacing of the DDIM evaluation [reference: leading; best: quadratic].
        #[arg(long, value_enum)]
        ddim_spacing: Option<Spacing>,
    },
    /// Train and score one model per seed and recipe: Chamfer of DDPM-1000, DDIM-50 (leading
    /// and quadratic spacing) and DPM-Solver++(2M)-20 (quadratic), training seconds; median,
    /// min and max per recipe. The recipes of a seed train back to back, so their times are
    /// measured under the same machine load. Training flags override every recipe listed.
    /// Writes study.csv, summary.csv and the models.
    Study {
        /// Recipes compared (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Recipe::Reference, Recipe::Best])]
        recipes: Vec<Recipe>,
        /// Seeds: comma-separated seeds and inclusive ranges, e.g. `0-9` or `0,3,100-109`.
        #[arg(long, default_value = "0-9", value_parser = seed_list)]
        seeds: SeedList,
        #[command(flatten)]
        over: TrainOverrides,
        /// Points sampled and compared per model (against its first N training points).
        #[arg(long, default_value_t = 2048)]
        eval_points: usize,
        /// Output folder.
        #[arg(long, default_value = "out/toy-study")]
        out: PathBuf,
    },
}

/// A parsed `--seeds` value.
#[derive(Clone, Debug)]
pub struct SeedList(Vec<u64>);

fn seed_list(s: &str) -> std::result::Result<SeedList, String> {
    toy::parse_seeds(s).map(SeedList).map_err(|e| match e {
        diffuse::Error::InvalidArgument { msg, .. } => msg,
        e => e.to_string(),
    })
}

/// Options every command shares.
#[derive(Args, Clone)]
pub struct CommonArgs {
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Training flags: a recipe, a seed and overrides.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Preset: `reference` (the course protocol) or `best` (the improved recipe).
    #[arg(long, value_enum, default_value_t = Recipe::Reference)]
    recipe: Recipe,
    /// Seed of data, initialisation and training noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    over: TrainOverrides,
}

impl TrainArgs {
    fn config(&self) -> ToyConfig {
        self.over.config(self.recipe, self.seed)
    }
}

/// Flags that override a recipe. Unset flags take the value of the recipe (reference by
/// default), so the defaults live in one place: `ToyConfig::default()` and `Recipe`.
#[derive(Args, Clone)]
pub struct TrainOverrides {
    /// Data set.
    #[arg(long, value_enum)]
    dataset: Option<ToyDataset>,
    /// Training steps [reference: 5000].
    #[arg(long)]
    steps: Option<usize>,
    /// Batch size [reference: 128].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Size of the training set [reference: 1,000,000].
    #[arg(long)]
    num_points: Option<usize>,
    /// Stratified timestep sampling [reference: off].
    #[arg(long)]
    stratified_t: Option<bool>,
    /// Distinct timesteps per batch, 0 = one per point [reference: 0].
    #[arg(long)]
    t_groups: Option<usize>,
    /// Timestep skew: t = ⌊T·u^p⌋ [reference: 1, uniform].
    #[arg(long)]
    t_power: Option<f64>,
    /// Hidden widths of SimpleNet, comma-separated [reference: 128,128,128].
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    #[command(flatten)]
    optim: super::OptimArgs,
    #[command(flatten)]
    common: CommonArgs,
}

impl TrainOverrides {
    /// The config of `recipe` at `seed` with the given flags applied.
    fn config(&self, recipe: Recipe, seed: u64) -> ToyConfig {
        let mut c = recipe.config();
        c.seed = seed;
        self.optim.apply(&mut c.optim, &mut c.ema_decay);
        if let Some(v) = self.dataset {
            c.dataset = v;
        }
        if let Some(v) = self.steps {
            c.steps = v;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if let Some(v) = self.num_points {
            c.num_points = v;
        }
        if let Some(v) = self.stratified_t {
            c.stratified_t = v;
        }
        if let Some(v) = self.t_groups {
            c.t_groups = (v != 0).then_some(v);
        }
        if let Some(v) = self.t_power {
            c.t_power = v;
        }
        if let Some(h) = &self.hidden {
            c.net.dims = std::iter::once(2)
                .chain(h.iter().copied())
                .chain(std::iter::once(2))
                .collect();
        }
        c
    }
}

/// Sampler flags.
#[derive(Args, Clone)]
pub struct SamplerArgs {
    /// Sampler.
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    pub sampler: SamplerKind,
    /// Sampling steps (few-step samplers; DDPM always runs all T).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// DDIM η (0 = deterministic).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub eta: f64,
    /// Timestep spacing.
    #[arg(long, value_enum, default_value_t = Spacing::Leading)]
    pub spacing: Spacing,
    /// DDPM σ_t: small (posterior) or large (√β).
    #[arg(long, value_enum, default_value_t = SigmaKind::Small)]
    pub sigma: SigmaKind,
    /// Clip the predicted x̂₀ to [−1, 1].
    #[arg(long)]
    pub clip_x0: bool,
}

impl SamplerArgs {
    pub fn spec(&self) -> SamplerSpec {
        SamplerSpec {
            kind: self.sampler,
            steps: self.steps,
            eta: self.eta,
            spacing: self.spacing,
            sigma: self.sigma,
            clip_x0: self.clip_x0,
        }
    }
}

pub fn run(cmd: ToyCommand) -> Result<()> {
    match cmd {
        ToyCommand::Train { train, out } => {
            super::set_threads(train.over.common.threads)?;
            let cfg = train.config();
            cfg.validate()?;
            diffuse::checkpoint::ensure_parent(&out)?;
            let dev = device(train.over.common.device)?.autodiff();
            let trained = toy::train(&cfg, &dev, !train.over.common.quiet)?;
            toy::save(&trained, &cfg, &out)?;
            println!(
                "trained {} steps in {:.1} s, final loss {:.4}; saved {}",
                trained.losses.len(),
                trained.seconds,
                trained.final_loss(),
                out.display()
            );
            Ok(())
        }
        ToyCommand::Sample {
            ckpt,
            sampler,
            n,
            seed,
            raw,
            out,
            common,
        } => {
            super::set_threads(common.threads)?;
            let spec = sampler.spec();
            let dev = device(common.device)?;
            let (model, meta) = toy::load(&ckpt, raw, &dev)?;
            let schedule = NoiseSchedule::new(&meta.config.schedule)?;
            spec.validate(schedule.num_steps())?;
            diffuse::checkpoint::ensure_parent(&out)?;
            let pts = toy::sample_points(&model, &schedule, &spec, n, seed, !common.quiet)?;
            toy::write_csv(&out, &pts)?;
            println!(
                "wrote {n} points ({}) to {}",
                spec.label(schedule.num_steps()),
                out.display()
            );
            Ok(())
        }
        ToyCommand::Eval {
            samples,
            ckpt,
            reference,
            n,
        } => {
            let gen = toy::read_csv(&samples)?;
            let reference = match (ckpt, reference) {
                (_, Some(r)) => toy::read_csv(&r)?,
                (Some(c), None) => {
                    let meta: toy::ToyCheckpointMeta =
                        diffuse::checkpoint::read_json(&diffuse::checkpoint::config_path(&c))?;
                    let mut cfg = meta.config;
                    cfg.num_points = cfg.num_points.max(n);
                    cfg.data()[..2 * n.min(cfg.num_points)].to_vec()
                }
                (None, None) => anyhow::bail!(
                    "give the reference: --ckpt FILE (its training data) or --reference FILE.csv"
                ),
            };
            let cd = chamfer_distance(&gen, &reference, 2)?;
            println!("chamfer: {cd:.4}");
            Ok(())
        }
        ToyCommand::Run {
            train,
            out,
            eval_points,
            ddim_steps,
            ddim_spacing,
        } => run_all(
            &train,
            &out,
            eval_points,
            ddim_steps,
            ddim_spacing.unwrap_or(train.recipe.few_step_spacing()),
        ),
        ToyCommand::Study {
            recipes,
            seeds,
            over,
            eval_points,
            out,
        } => study(&recipes, &seeds.0, &over, eval_points, &out),
        ToyCommand::Invert {
            ckpt,
            steps,
            spacing,
            n,
            out,
            common,
        } => invert(&ckpt, &steps, spacing, n, &out, &common),
        ToyCommand::Sweep {
            ckpt,
            samplers,
            steps,
            spacing,
            seeds,
            ddpm,
            n,
            raw,
            out,
            common,
        } => sweep(
            &ckpt, &samplers, &steps, spacing, &seeds, ddpm, n, raw, &out, &common,
        ),
    }
}

fn run_all(
    train: &TrainArgs,
    out: &std::path::Path,
    eval_points: usize,
    ddim_steps: usize,
    ddim_spacing: Spacing,
) -> Result<()> {
    super::set_threads(train.over.common.threads)?;
    let cfg = train.config();
    cfg.validate()?;
    let show = !train.over.common.quiet;
    ensure_dir(out)?;
    let schedule = NoiseSchedule::new(&cfg.schedule)?;
    let ddim = SamplerSpec {
        steps: ddim_steps,
        spacing: ddim_spacing,
        ..SamplerSpec::default()
    };
    if ddim.validate(schedule.num_steps()).is_err() {
        anyhow::bail!(
            "invalid value for --ddim-steps: must be between 1 and T = {}, got {ddim_steps}",
            schedule.num_steps()
        );
    }
    if eval_points == 0 || eval_points > cfg.num_points {
        anyhow::bail!(
            "invalid value for --eval-points: must be between 1 and the training-set size {}",
            cfg.num_points
        );
    }
    let base = device(train.over.common.device)?;
    let t0 = Instant::now();
    let trained = toy::train(&cfg, &base.clone().autodiff(), show)?;
    if show {
        eprintln!("training ran on the {}", trained.path.name());
    }
    let ckpt = out.join("model.safetensors");
    toy::save(&trained, &cfg, &ckpt)?;
    let model = trained.sampling_model().to_device(&base);
    let reference = &trained.data[..2 * eval_points];

    let ddpm = SamplerSpec {
        kind: SamplerKind::Ddpm,
        ..SamplerSpec::default()
    };
    let mut results = serde_json::Map::new();
    let mut sample_seconds = serde_json::Map::new();
    for (name, spec) in [("ddpm", ddpm), ("ddim", ddim)] {
        let t = Instant::now();
        let pts = toy::sample_points(&model, &schedule, &spec, eval_points, cfg.seed, show)?;
        sample_seconds.insert(name.into(), t.elapsed().as_secs_f64().into());
        let cd = chamfer_distance(&pts, reference, 2)?;
        results.insert(format!("cd_{name}"), cd.into());
        toy::write_csv(&out.join(format!("samples_{name}.csv")), &pts)?;
        let title = format!("{} — Chamfer {cd:.2}", spec.label(schedule.num_steps()));
        plot::scatter(
            &out.join(format!("samples_{name}.png")),
            &title,
            reference,
            &pts,
        )?;
    }
    let panels = toy::q_strip(&trained.data, &schedule, 500, cfg.seed, &base);
    plot::strip(&out.join("q_xt.png"), &panels)?;
    let smooth = smooth_losses(&trained.losses);
    plot::lines(
        &out.join("loss.png"),
        "training loss",
        "step",
        "loss (ε-MSE)",
        true,
        &[
            (
                "loss".into(),
                trained.losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
            ),
            ("moving average (100)".into(), smooth),
        ],
    )?;
    results.insert("train_seconds".into(), trained.seconds.into());
    results.insert("train_path".into(), trained.path.name().into());
    results.insert("final_loss".into(), trained.final_loss().into());
    results.insert("sample_seconds".into(), sample_seconds.into());
    results.insert("total_seconds".into(), t0.elapsed().as_secs_f64().into());
    results.insert(
        "config".into(),
        serde_json::to_value(&cfg).context("config to JSON")?,
    );
    write_json(&out.join("metrics.json"), &results)?;
    println!(
        "{}: trained {} steps in {:.1} s (final loss {:.4}); Chamfer DDPM-{} {:.2}, DDIM-{} {:.2}; total {:.1} s; results in {}",
        cfg.dataset.name(),
        trained.losses.len(),
        trained.seconds,
        trained.final_loss(),
        schedule.num_steps(),
        results["cd_ddpm"].as_f64().unwrap_or(f64::NAN),
        ddim_steps,
        results["cd_ddim"].as_f64().unwrap_or(f64::NAN),
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// `toy study`: one model per (seed, recipe), scored with `toy::study_samplers()`.
fn study(
    recipes: &[Recipe],
    seeds: &[u64],
    over: &TrainOverrides,
    eval_points: usize,
    out: &std::path::Path,
) -> Result<()> {
    super::set_threads(over.common.threads)?;
    if recipes.is_empty() {
        anyhow::bail!("invalid value for --recipes: give at least one recipe");
    }
    let samplers = toy::study_samplers();
    let mut configs = Vec::new();
    for &r in recipes {
        let cfg = over.config(r, 0);
        cfg.validate()
            .with_context(|| format!("recipe {}", recipe_name(r)))?;
        if eval_points == 0 || eval_points > cfg.num_points {
            anyhow::bail!(
                "invalid value for --eval-points: must be between 1 and the training-set size {}",
                cfg.num_points
            );
        }
        configs.push((r, cfg));
    }
    ensure_dir(out)?;
    let base = device(over.common.device)?;
    let show = !over.common.quiet;
    let names: Vec<&str> = samplers.iter().map(|s| s.0).collect();
    let mut csv = format!("recipe,seed,train_seconds,final_loss,{}\n", names.join(","));
    // rows[recipe] = per seed (train seconds, Chamfer per sampler).
    let mut rows: Vec<Vec<(f64, Vec<f64>)>> = vec![Vec::new(); configs.len()];
    println!(
        "{:>10} {:>6} {:>8} {}",
        "recipe",
        "seed",
        "train s",
        names.iter().map(|n| format!("{n:>13}")).collect::<String>()
    );
    'seeds: for &seed in seeds {
        for (i, (r, cfg)) in configs.iter().enumerate() {
            let cfg = ToyConfig {
                seed,
                ..cfg.clone()
            };
            let trained = toy::train(&cfg, &base.clone().autodiff(), show)?;
            if diffuse::train::interrupted() {
                // A model cut short is not a sample of the recipe: stop before scoring it.
                break 'seeds;
            }
            let dir = out.join(format!("{}-seed{seed}", recipe_name(*r)));
            ensure_dir(&dir)?;
            toy::save(&trained, &cfg, &dir.join("model.safetensors"))?;
            let model = trained.sampling_model().to_device(&base);
            let schedule = NoiseSchedule::new(&cfg.schedule)?;
            let reference = &trained.data[..2 * eval_points];
            let mut cds = Vec::new();
            for (_, spec) in &samplers {
                let pts = toy::sample_points(&model, &schedule, spec, eval_points, seed, false)?;
                cds.push(chamfer_distance(&pts, reference, 2)?);
            }
            println!(
                "{:>10} {seed:>6} {:>8.1} {}",
                recipe_name(*r),
                trained.seconds,
                cds.iter().map(|c| format!("{c:>13.2}")).collect::<String>()
            );
            csv.push_str(&format!(
                "{},{seed},{:.3},{:.6},{}\n",
                recipe_name(*r),
                trained.seconds,
                trained.final_loss(),
                cds.iter()
                    .map(|c| format!("{c:.4}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            // Rewritten after every model, so an interrupted study keeps what it measured.
            diffuse::checkpoint::write_atomic(&out.join("study.csv"), csv.as_bytes())?;
            rows[i].push((trained.seconds, cds));
        }
    }
    let mut summary = String::from("recipe,metric,median,min,max,seeds\n");
    println!("\nmedian [min, max] over seeds");
    for ((r, _), rs) in configs.iter().zip(&rows) {
        let mut line = format!("{:>10} ({} seeds):", recipe_name(*r), rs.len());
        let metrics = std::iter::once("train_seconds").chain(names.iter().copied());
        for (j, metric) in metrics.enumerate() {
            let vals: Vec<f64> = rs
                .iter()
                .map(|(secs, cds)| if j == 0 { *secs } else { cds[j - 1] })
                .collect();
            let (med, lo, hi) = toy::median_min_max(&vals);
            summary.push_str(&format!(
                "{},{metric},{med:.4},{lo:.4},{hi:.4},{}\n",
                recipe_name(*r),
                vals.len()
            ));
            line.push_str(&format!("  {metric} {med:.2} [{lo:.2}, {hi:.2}]"));
        }
        println!("{line}");
    }
    if rows.len() > 1 && !rows[0].is_empty() {
        for (k, (r, _)) in configs.iter().enumerate().skip(1) {
            let ratios: Vec<f64> = rows[k]
                .iter()
                .zip(&rows[0])
                .map(|(a, b)| a.0 / b.0)
                .collect();
            let (med, lo, hi) = toy::median_min_max(&ratios);
            println!(
                "training time {} / {}, paired by seed: median {med:.3} [{lo:.3}, {hi:.3}]",
                recipe_name(*r),
                recipe_name(configs[0].0)
            );
            summary.push_str(&format!(
                "{},train_time_ratio_vs_{},{med:.4},{lo:.4},{hi:.4},{}\n",
                recipe_name(*r),
                recipe_name(configs[0].0),
                ratios.len()
            ));
        }
    }
    diffuse::checkpoint::write_atomic(&out.join("summary.csv"), summary.as_bytes())?;
    println!("study.csv, summary.csv and the models in {}", out.display());
    Ok(())
}

fn recipe_name(r: Recipe) -> &'static str {
    match r {
        Recipe::Reference => "reference",
        Recipe::Best => "best",
    }
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

/// The first `n` training points of a checkpoint's run.
fn training_points(meta: &toy::ToyCheckpointMeta, n: usize) -> Result<Vec<f32>> {
    let mut cfg = meta.config.clone();
    if n == 0 {
        anyhow::bail!("invalid value for -n: must be at least 1");
    }
    cfg.num_points = cfg.num_points.max(n);
    Ok(cfg.data()[..2 * n].to_vec())
}

fn invert(
    ckpt: &std::path::Path,
    steps: &[usize],
    spacing: Spacing,
    n: usize,
    out: &std::path::Path,
    common: &CommonArgs,
) -> Result<()> {
    super::set_threads(common.threads)?;
    let dev = device(common.device)?;
    let (model, meta) = toy::load(ckpt, false, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let pts = training_points(&meta, n)?;
    ensure_dir(out)?;
    let mut rows = Vec::new();
    println!("steps  mean round-trip error");
    for &s in steps {
        let (_, _, err) = toy::invert_round_trip(&model, &schedule, &pts, s, spacing)
            .with_context(|| format!("--steps {s}"))?;
        println!("{s:>5}  {err:.5}");
        rows.push(serde_json::json!({"steps": s, "mean_error": err}));
    }
    // Interpolation between the codes of two far-apart training points.
    let s = *steps.iter().max().unwrap_or(&50);
    let (a, b) = (&pts[0..2], &pts[2 * (n / 2)..2 * (n / 2) + 2]);
    let (codes, _, _) = toy::invert_round_trip(&model, &schedule, &[a, b].concat(), s, spacing)?;
    let path: Vec<f32> = (0..=32)
        .flat_map(|k| toy::slerp(&codes[0..2], &codes[2..4], k as f64 / 32.0))
        .collect();
    let spec = SamplerSpec {
        steps: s,
        spacing,
        ..SamplerSpec::default()
    };
    let base =
        burn::prelude::Tensor::<2>::from_data(burn::prelude::TensorData::new(path, [33, 2]), &dev);
    let mut none = diffuse::sampling::no_progress;
    let decoded = diffuse::sampling::sample(
        &model,
        &schedule,
        &spec,
        base,
        None,
        &mut diffuse::rng::seeded(0, 0),
        &mut none,
    )?;
    let decoded: Vec<f32> = decoded
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    plot::scatter(
        &out.join("interpolation.png"),
        &format!("slerp between two DDIM-{s} codes, decoded"),
        &pts,
        &decoded,
    )?;
    write_json(
        &out.join("inversion.json"),
        &serde_json::json!({"points": n, "spacing": spacing, "results": rows}),
    )?;
    println!(
        "interpolation picture and inversion.json in {}",
        out.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn sweep(
    ckpt: &std::path::Path,
    samplers: &[SamplerKind],
    steps: &[usize],
    spacing: Spacing,
    seeds: &[u64],
    ddpm: bool,
    n: usize,
    raw: bool,
    out: &std::path::Path,
    common: &CommonArgs,
) -> Result<()> {
    super::set_threads(common.threads)?;
    if seeds.is_empty() || steps.is_empty() || samplers.is_empty() {
        anyhow::bail!("give at least one sampler, step count and seed");
    }
    let dev = device(common.device)?;
    let (model, meta) = toy::load(ckpt, raw, &dev)?;
    let schedule = NoiseSchedule::new(&meta.config.schedule)?;
    let reference = training_points(&meta, n)?;
    for &s in steps {
        if s == 0 || s > schedule.num_steps() {
            anyhow::bail!(
                "invalid value for --steps: {s} is not between 1 and T = {}",
                schedule.num_steps()
            );
        }
    }
    ensure_dir(out)?;
    let mut csv = String::from("sampler,steps,nfe,chamfer_mean,chamfer_min,chamfer_max,seconds\n");
    let mut series = Vec::new();
    let run = |spec: SamplerSpec, csv: &mut String| -> Result<f64> {
        let mut cds = Vec::new();
        let t = Instant::now();
        for &seed in seeds {
            let pts = toy::sample_points(&model, &schedule, &spec, n, seed, false)?;
            cds.push(chamfer_distance(&pts, &reference, 2)?);
        }
        let mean = cds.iter().sum::<f64>() / cds.len() as f64;
        let (lo, hi) = cds
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &c| (a.min(c), b.max(c)));
        let secs = t.elapsed().as_secs_f64() / seeds.len() as f64;
        let label = spec.label(schedule.num_steps());
        csv.push_str(&format!(
            "{},{},{},{mean:.4},{lo:.4},{hi:.4},{secs:.3}\n",
            label.rsplit_once('-').map_or(label.as_str(), |p| p.0),
            spec.steps,
            spec.nfe(schedule.num_steps())
        ));
        println!(
            "{label:>14}  NFE {:>4}  Chamfer {mean:8.3}  ({secs:.2} s)",
            spec.nfe(schedule.num_steps())
        );
        Ok(mean)
    };
    for &kind in samplers {
        let mut pts = Vec::new();
        for &s in steps {
            if kind == SamplerKind::Ddpm {
                continue;
            }
            let spec = SamplerSpec {
                kind,
                steps: s,
                spacing,
                ..SamplerSpec::default()
            };
            pts.push((s as f64, run(spec, &mut csv)?));
        }
        if !pts.is_empty() {
            series.push((
                format!("{kind:?}")
                    .to_lowercase()
                    .replace("dpmsolver2m", "dpm++2m"),
                pts,
            ));
        }
    }
    if ddpm {
        let spec = SamplerSpec {
            kind: SamplerKind::Ddpm,
            ..SamplerSpec::default()
        };
        let cd = run(spec, &mut csv)?;
        let (lo, hi) = (
            *steps.iter().min().unwrap() as f64,
            *steps.iter().max().unwrap() as f64,
        );
        series.push((
            format!("ddpm-{} (reference)", schedule.num_steps()),
            vec![(lo, cd), (hi, cd)],
        ));
    }
    diffuse::checkpoint::write_atomic(&out.join("sweep.csv"), csv.as_bytes())?;
    plot::lines(
        &out.join("sweep.png"),
        "Chamfer distance vs sampling steps",
        "steps",
        "Chamfer distance",
        true,
        &series,
    )?;
    println!("table and plot in {}", out.display());
    Ok(())
}
