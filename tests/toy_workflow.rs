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
    toy::save(&trained, &cfg, &path).unwrap();
    assert!(path.is_file() && dir.join("m.json").is_file());
    let (loaded, meta) = toy::load(&path, false, &Device::flex()).unwrap();
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
    toy::save(&trained, &cfg, &path).unwrap();
    assert!(toy::ema_path(&path).is_file());
    let (ema, _) = toy::load(&path, false, &Device::flex()).unwrap();
    let (raw, _) = toy::load(&path, true, &Device::flex()).unwrap();
    let w = |m: &diffuse::nn::simplenet::SimpleNet| common::to_vec(m.layers[0].fc.weight.val());
    assert_ne!(w(&ema), w(&raw));
    assert_eq!(w(&ema), w(&trained.sampling_model()));
    assert_eq!(w(&raw), w(&trained.model.valid()));
}

#[test]
fn corrupt_missing_and_mismatched_checkpoints_are_rejected() {
    let dir = common::temp_dir("toy-bad");
    let dev = Device::flex();
    let err = toy::load(&dir.join("nope.safetensors"), false, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    // Corrupt weights beside a valid config.
    let cfg = short(2);
    let trained = toy::train(&cfg, &dev.clone().autodiff(), false).unwrap();
    let path = dir.join("m.safetensors");
    toy::save(&trained, &cfg, &path).unwrap();
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = toy::load(&path, false, &dev).err().unwrap().to_string();
    assert!(err.contains("m.safetensors"), "{err}");
    // Weights of another shape than the config says.
    toy::save(&trained, &cfg, &path).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    meta["config"]["net"]["dims"] = serde_json::json!([2, 64, 64, 2]);
    std::fs::write(dir.join("m.json"), meta.to_string()).unwrap();
    let err = toy::load(&path, false, &dev).err().unwrap().to_string();
    assert!(
        err.contains("layers.0.fc.weight") || err.contains("Shape mismatch"),
        "{err}"
    );
}
