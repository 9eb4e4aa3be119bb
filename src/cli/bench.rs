//! `diffuse bench …`: the measurements `bench/gpu_verdict.sh` puts side by side with PyTorch
//! (`bench/torch/unet_torch.py`), on any device. The work is in `diffuse::bench`.
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use diffuse::bench::{self, SampleBenchConfig, StepBenchConfig};
use diffuse::device::{Adapter, DeviceKind, Precision};

use super::args::CommonArgs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Open the device and prove it with a small computation; on CUDA also print the versions
    /// of the binary's bindings, the driver and NVRTC, and check bindings ≤ NVRTC ≤ driver.
    Probe(ProbeArgs),
    /// Time training steps (forward, ε-MSE, backward, Adam, EMA) of the AFHQ UNet on a fixed
    /// batch: the cold first step, then the median of --steps after --warmup.
    Step(StepArgs),
    /// The loss of a fixed seeded batch (dropout off) before and after one training step, to
    /// compare devices: the same flags give the same two numbers on every correct device.
    FirstLoss(StepArgs),
    /// Time DDIM sampling with classifier-free guidance (the `image sample` path) per image.
    Sample(SampleArgs),
}

#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// Network overrides of the AFHQ preset (for dry runs on a CPU).
#[derive(Args, Clone)]
pub struct NetArgs {
    /// Base channel count of the UNet [AFHQ: 128].
    #[arg(long)]
    channels: Option<usize>,
    /// Image side [AFHQ: 64].
    #[arg(long)]
    image_size: Option<usize>,
}

impl NetArgs {
    fn apply(&self, u: &mut diffuse::nn::unet::UNetConfig) {
        if let Some(c) = self.channels {
            u.channels = c;
        }
        if let Some(s) = self.image_size {
            u.image_size = s;
        }
    }
}

#[derive(Args)]
pub struct StepArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Network arithmetic: f32, or bf16 mixed precision as `image train --precision bf16`.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    /// Timed steps (`step` only).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps after the first (`step` only).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Images per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Seed of the weights and the batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON line (the report) after the text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Images per run (one batch; each network call sees twice as many).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// CFG scale w (reference convention).
    #[arg(long, default_value_t = 7.5)]
    cfg_scale: f64,
    /// Timed runs.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Untimed 2-step runs first (kernel compilation and tuning).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON line (the report) after the text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Probe(a) => probe(&a),
        BenchCommand::Step(a) => step(&a, false),
        BenchCommand::FirstLoss(a) => step(&a, true),
        BenchCommand::Sample(a) => sample(&a),
    }
}

/// Opens the device; returns it with the seconds it took.
fn open(common: &CommonArgs) -> Result<(burn::prelude::Device, f64)> {
    let t = Instant::now();
    let dev = common.device()?;
    Ok((dev, t.elapsed().as_secs_f64()))
}

fn probe(a: &ProbeArgs) -> Result<()> {
    let (_dev, open_s) = open(&a.common)?;
    // Only once CUDA opened: the version queries load the driver and NVRTC libraries.
    let versions = if a.common.device.kind == DeviceKind::Cuda {
        let ordinal = match a.common.device.adapter {
            Adapter::Discrete(n) => n,
            _ => 0,
        };
        bench::cuda_versions(ordinal)
    } else {
        None
    };
    let problems = versions.as_ref().map(|v| v.problems()).unwrap_or_default();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": "probe",
                "device": a.common.device.to_string(),
                "open_s": open_s,
                "cuda": versions,
                "problems": problems,
            })
        );
    } else {
        println!("device {} started in {open_s:.2} s", a.common.device);
        if let Some(v) = &versions {
            println!("{}", v.line());
        }
        for p in &problems {
            println!("warning: {p}");
        }
    }
    Ok(())
}

fn step(a: &StepArgs, first_loss: bool) -> Result<()> {
    let started = Instant::now();
    if a.batch == 0 {
        bail!("invalid value for --batch: must be at least 1");
    }
    if !first_loss && a.steps == 0 {
        bail!("invalid value for --steps: must be at least 1");
    }
    let mut cfg = StepBenchConfig::afhq(a.precision, a.warmup, a.steps);
    a.net.apply(&mut cfg.train.unet);
    cfg.batch = a.batch;
    cfg.seed = a.seed;
    if first_loss {
        cfg = cfg.first_loss();
    }
    // A bad network override fails before the device opens.
    cfg.validate()
        .map_err(|e| super::args::to_flags(e.into(), FLAGS))?;
    let (dev, open_s) = open(&a.common)?;
    let name = a.common.device.to_string();
    let quiet = a.common.quiet;
    let r = bench::step_bench(&cfg, &dev, &name, started, open_s, |i, ms| {
        if !quiet {
            eprintln!("step {i}: {ms:.1} ms");
        }
    })?;
    println!(
        "{} {name} {:?} b{} {}x{} ({} params): device open {:.2} s, first step {:.2} s after \
         start ({:.2} s alone), loss {}",
        r.mode,
        r.precision,
        r.batch,
        r.image_size,
        r.image_size,
        r.params,
        r.open_s,
        r.first_step_s,
        r.first_step_only_s,
        r.losses
            .iter()
            .map(|l| format!("{l:.7}"))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    if !first_loss {
        println!(
            "median {:.2} ms, min {:.2} ms over {} steps after {} warm-up; last loss {:.6}",
            r.median_ms,
            r.min_ms,
            r.step_ms.len(),
            r.warmup,
            r.last_loss
        );
    }
    if let Some(b) = r.pool_reserved_bytes {
        println!(
            "burn memory pools: {:.2} GiB reserved, {:.2} GiB in use",
            gib(b),
            gib(r.pool_in_use_bytes.unwrap_or(0))
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

fn sample(a: &SampleArgs) -> Result<()> {
    let mut cfg = SampleBenchConfig::afhq();
    a.net.apply(&mut cfg.unet);
    if a.batch == 0 || a.steps == 0 || a.runs == 0 {
        bail!("invalid value for --batch, --steps or --runs: each must be at least 1");
    }
    cfg.batch = a.batch;
    cfg.steps = a.steps;
    cfg.cfg_scale = a.cfg_scale;
    cfg.runs = a.runs;
    cfg.warmup = a.warmup;
    cfg.seed = a.seed;
    cfg.unet
        .validate()
        .map_err(|e| super::args::to_flags(e.into(), FLAGS))?;
    let (dev, open_s) = open(&a.common)?;
    let name = a.common.device.to_string();
    let r = bench::sample_bench(&cfg, &dev, &name, open_s)?;
    println!(
        "sample {name} DDIM-{} CFG w={} b{} {}x{}: {:.2} ms per image (runs {:?} s; warm-up \
         {:.2} s)",
        r.steps,
        r.cfg_scale,
        r.batch,
        r.image_size,
        r.image_size,
        r.per_image_ms,
        r.run_s,
        r.warmup_s
    );
    if let Some(b) = r.pool_reserved_bytes {
        println!(
            "burn memory pools: {:.2} GiB reserved, {:.2} GiB in use",
            gib(b),
            gib(r.pool_in_use_bytes.unwrap_or(0))
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

/// Config fields of the network overrides, told as flags.
const FLAGS: &[(&str, &str)] = &[
    ("unet.channels", "--channels"),
    ("unet.image_size", "--image-size"),
    ("unet.num_groups", "--channels"),
];

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}
