//! The 2D workflow: training lowers the loss, checkpoints round-trip, recipe flags do what they
//! claim, and bad input is rejected with a clear message.
mod common;

use burn::prelude::*;
use diffuse::sampling::{SamplerKind, SamplerSpec};
use diffuse::schedule::NoiseSchedule;
use diffuse::toy::{self, ToyConfig};

fn short(steps: usize) -> ToyConfig {
    ToyConfig {
        steps,
        num_points: 20_000,
        seed: 7,
        ..ToyConfig::default()
    }
}

#[test]
fn short_training_lowers_the_loss() {
    let cfg = short(400);
    let t = toy::train(&cfg, &Device::flex().autodiff(), false).unwrap();
    let mean = |s: &[(usize, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let first = mean(&t.losses[..25]);
    let last = mean(&t.losses[t.losses.len() - 100..]);
    assert!(last < 0.75 * first, "loss {first:.3} → {last:.3}");
}

#[test]
fn same_seed_same_model_and_samples() {
    let cfg = short(30);
    let dev = Device::flex().autodiff();
    let a = toy::train(&cfg, &dev, false).unwrap();
    let b = toy::train(&cfg, &dev, false).unwrap();
    assert_eq!(a.losses, b.losses);
    let s = NoiseSchedule::new(&cfg.schedule).unwrap();
    let spec = SamplerSpec {
        steps: 10,
        ..SamplerSpec::default()
    };
    let pa = toy::sample_points(&a.sampling_model(), &s, &spec, 64, 3, false).unwrap();
    let pb = toy::sample_points(&b.sampling_model(), &s, &spec, 64, 3, false).unwrap();
    assert_eq!(pa, pb);
}

#[test]
fn checkpoint_round_trip_gives_identical_samples() {
    let dir = common::temp_dir("toy-ckpt");
    let cfg = short(20);
    let trained = toy::train(&cfg, &Device::flex().autodiff(), false).unwrap();
    let path = dir.join("m.safetensors");
    diffuse::checkpoint::toy::save(&trained, &cfg, &path).unwrap();
    assert!(path.is_file() && dir.join("m.json").is_file());
    let (loaded, meta) = diffuse::checkpoint::toy::load(&path, false, &Device::flex()).unwrap();
    assert_eq!(meta.config, cfg);
    let s = NoiseSchedule::new(&cfg.schedule).unwrap();
    for spec in [
        SamplerSpec {
            steps: 10,
            ..SamplerSpec::default()
        },
        SamplerSpec {
            kind: SamplerKind::Ddpm,
            ..SamplerSpec::default()
        },
    ] {
        let a = toy::sample_points(&trained.sampling_model(), &s, &spec, 50, 11, false).unwrap();
        let b = toy::sample_points(&loaded, &s, &spec, 50, 11, false).unwrap();
        assert_eq!(a, b, "{spec:?}");
    }
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn ema_weights_differ_from_raw_and_are_used_for_sampling() {
    let dir = common::temp_dir("toy-ema");
    let cfg = ToyConfig {
        ema_decay: Some(0.9),
        ..short(50)
    };
    let trained = toy::train(&cfg, &Device::flex().autodiff(), false).unwrap();
    let path = dir.join("m.safetensors");
    diffuse::checkpoint::toy::save(&trained, &cfg, &path).unwrap();
    assert!(diffuse::checkpoint::toy::ema_path(&path).is_file());
    let (ema, _) = diffuse::checkpoint::toy::load(&path, false, &Device::flex()).unwrap();
    let (raw, _) = diffuse::checkpoint::toy::load(&path, true, &Device::flex()).unwrap();
    let w = |m: &diffuse::nn::simplenet::SimpleNet| common::to_vec(m.layers[0].fc.weight.val());
    assert_ne!(w(&ema), w(&raw));
    assert_eq!(w(&ema), w(&trained.sampling_model()));
    assert_eq!(w(&raw), w(&trained.model.valid()));
}

#[test]
fn corrupt_missing_and_mismatched_checkpoints_are_rejected() {
    let dir = common::temp_dir("toy-bad");
    let dev = Device::flex();
    let err = diffuse::checkpoint::toy::load(&dir.join("nope.safetensors"), false, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    // Corrupt weights beside a valid config.
    let cfg = short(2);
    let trained = toy::train(&cfg, &dev.clone().autodiff(), false).unwrap();
    let path = dir.join("m.safetensors");
    diffuse::checkpoint::toy::save(&trained, &cfg, &path).unwrap();
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = diffuse::checkpoint::toy::load(&path, false, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("m.safetensors"), "{err}");
    // Weights of another shape than the config says.
    diffuse::checkpoint::toy::save(&trained, &cfg, &path).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    meta["config"]["net"]["dims"] = serde_json::json!([2, 64, 64, 2]);
    std::fs::write(dir.join("m.json"), meta.to_string()).unwrap();
    let err = diffuse::checkpoint::toy::load(&path, false, &dev)
        .err()
        .unwrap()
        .to_string();
    // Named: the file, a tensor of the layout, and that the shapes do not fit.
    assert!(
        err.contains("m.safetensors") && err.contains("layers.0.") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn grouped_forward_equals_the_per_row_forward() {
    use diffuse::nn::simplenet::SimpleNetConfig;
    let dev = Device::flex();
    let net = SimpleNetConfig::default()
        .init(&mut diffuse::rng::seeded(3, 0), &dev)
        .unwrap();
    let (k, g) = (4, 8);
    let ts = [0usize, 17, 500, 999];
    let x = diffuse::rng::normal_tensor(&mut diffuse::rng::seeded(4, 0), [k * g, 2], &dev);
    let per_row: Vec<usize> = ts.iter().flat_map(|&t| [t; 8]).collect();
    let want = common::to_vec(net.forward_steps(x.clone(), &per_row));
    let got = common::to_vec(net.forward_grouped(x.clone(), &ts).unwrap());
    // The same products and sums; only the GEMM blocking over K vs B rows may differ, so allow
    // a few f32 roundings of the largest output per accumulation (width 256) step.
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let tol = 256.0 * f32::EPSILON * scale;
    assert!(
        common::max_abs_diff(&want, &got) <= tol,
        "{want:?} vs {got:?}"
    );
    assert!(
        net.forward_grouped(x, &[1, 2, 3]).is_err(),
        "3 groups of 32 rows"
    );
}

#[test]
fn grouped_timestep_training_is_deterministic_and_learns() {
    let cfg = ToyConfig {
        batch_size: 256,
        t_groups: Some(32),
        t_power: 1.5,
        stratified_t: true,
        ..short(300)
    };
    let dev = Device::flex().autodiff();
    let a = toy::train(&cfg, &dev, false).unwrap();
    let b = toy::train(
        &ToyConfig {
            steps: 30,
            ..cfg.clone()
        },
        &dev,
        false,
    )
    .unwrap();
    assert_eq!(a.losses[..30], b.losses[..]);
    let mean = |s: &[(usize, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&a.losses[..25]), mean(&a.losses[200..]));
    assert!(last < 0.75 * first, "loss {first:.3} → {last:.3}");
}

fn diffuse_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("run diffuse");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `toy study` with 4 training steps per model and 32 scored points.
fn study_cli(seeds: &str, recipes: &str, out: &std::path::Path) -> (bool, String, String) {
    diffuse_cli(&[
        "toy",
        "study",
        "--seeds",
        seeds,
        "--recipes",
        recipes,
        "--steps",
        "4",
        "--num-points",
        "2048",
        "--eval-points",
        "32",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn study_writes_one_row_per_seed_and_recipe_and_a_summary() {
    let dir = common::TempDir::new("toy-study");
    let out = dir.0.join("s");
    let (ok, stdout, err) = study_cli("3,5", "reference,best", &out);
    assert!(ok, "{err}");
    assert!(stdout.contains("paired by seed"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("study.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "recipe,seed,train_seconds,final_loss,ddpm1000,ddim50,ddim50_quad,dpm2m20_quad"
    );
    let keys: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(keys, ["reference,3", "best,3", "reference,5", "best,5"]);
    for l in &lines[1..] {
        let v: Vec<f64> = l.split(',').skip(2).map(|x| x.parse().unwrap()).collect();
        assert!(
            v.len() == 6 && v.iter().all(|x| x.is_finite() && *x >= 0.0),
            "{l}"
        );
    }
    // The summary's median of two seeds is their mean, min and max the two values.
    let cd = |row: usize| {
        lines[row]
            .split(',')
            .nth(5)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let row = summary
        .lines()
        .find(|l| l.starts_with("best,ddim50,"))
        .expect("best ddim50 row");
    let v: Vec<f64> = row.split(',').skip(2).map(|x| x.parse().unwrap()).collect();
    let (a, b) = (cd(2), cd(4));
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-3 * (1.0 + y.abs()); // 4-decimal CSV
    assert!(close(v[0], 0.5 * (a + b)) && close(v[1], a.min(b)) && close(v[2], a.max(b)));
    assert_eq!(v[3], 2.0);
    assert!(out.join("best-seed5/model.safetensors").is_file());
    // The same seed gives the same numbers as a lone run of that seed.
    let out2 = dir.0.join("s2");
    let (ok, _, err) = study_cli("5", "best", &out2);
    assert!(ok, "{err}");
    let csv2 = std::fs::read_to_string(out2.join("study.csv")).unwrap();
    let tail = |l: &str| l.split(',').skip(3).collect::<Vec<_>>().join(",");
    assert_eq!(tail(csv2.lines().nth(1).unwrap()), tail(lines[4]));
}

#[test]
fn study_rejects_bad_seed_lists() {
    for seeds in ["9-0", "a", "1,,2", "1,1"] {
        let (ok, _, err) = diffuse_cli(&["toy", "study", "--seeds", seeds, "--steps", "1"]);
        assert!(
            !ok && err.contains("--seeds") && !err.contains("panicked"),
            "{seeds}: {err}"
        );
    }
}

/// `toy sweep` as a library call: one row per (sampler, steps) and the DDPM reference last,
/// each Chamfer distance the mean of its seeds', the NFE of each sampler, and the table.
#[test]
fn sweep_scores_every_point_and_writes_its_table() {
    use diffuse::sampling::Spacing;
    use diffuse::toy::sweep::{run, write, SweepOptions};
    let cfg = short(200);
    let trained = toy::train(&cfg, &Device::flex().autodiff(), false).unwrap();
    let model = trained.sampling_model();
    let s = NoiseSchedule::new(&cfg.schedule).unwrap();
    let reference = cfg.training_points(256).unwrap();
    assert_eq!(&reference[..], &trained.data[..512]);
    let opts = SweepOptions {
        samplers: vec![SamplerKind::Ddim, SamplerKind::Heun],
        steps: vec![4, 8],
        spacing: Spacing::Leading,
        seeds: vec![0, 1],
        ddpm: true,
        n: 256,
    };
    let mut seen = 0;
    let rows = run(&model, &s, &reference, &opts, &mut |_| seen += 1).unwrap();
    assert_eq!((rows.len(), seen), (5, 5));
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        ["ddim-4", "ddim-8", "heun-4", "heun-8", "ddpm-1000"]
    );
    let nfe: Vec<usize> = rows.iter().map(|r| r.nfe).collect();
    assert_eq!(nfe, [4, 8, 7, 15, 1000]);
    // The mean over seeds, between their min and max; seed 0 alone is the plain Chamfer.
    let cd = |seed| {
        let pts = toy::sample_points(&model, &s, &rows[1].spec, 256, seed, false).unwrap();
        diffuse::metrics::chamfer::chamfer_distance(&pts, &reference, 2).unwrap()
    };
    let (a, b) = (cd(0), cd(1));
    assert!((rows[1].mean - 0.5 * (a + b)).abs() <= 1e-9 * a.max(b));
    assert_eq!((rows[1].min, rows[1].max), (a.min(b), a.max(b)));
    let dir = common::TempDir::new("toy-sweep-lib");
    write(&dir.0, &rows, &opts, s.num_steps()).unwrap();
    let csv = std::fs::read_to_string(dir.0.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "sampler,steps,nfe,chamfer_mean,chamfer_min,chamfer_max,seconds"
    );
    assert!(lines[3].starts_with("heun,4,7,") && lines[5].starts_with("ddpm,50,1000,"));
    assert!(dir.0.join("sweep.png").is_file());
    // Bad options name the field.
    let bad = SweepOptions {
        steps: vec![0],
        ..opts
    };
    let err = run(&model, &s, &reference, &bad, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("sweep.steps"), "{err}");
}
