//! UNet: PyTorch parity (golden files written by bench/torch/unet_torch.py), parameter counts,
//! checkpoint diagnostics, CFG label dropout.
mod common;

use std::path::PathBuf;

use common::{assert_close, f32_rtol, to_vec};

use burn::module::Module;
use burn::prelude::*;
use diffuse::nn::unet::{drop_labels, labels_tensor, load_pytorch, Block, UNetConfig};
use diffuse::rng;
use diffuse::sampling::Denoiser;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

struct Golden {
    config: UNetConfig,
    num_params: usize,
    x_shape: [usize; 4],
    x: Vec<f32>,
    cases: Vec<serde_json::Value>,
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(golden_dir().join("unet_small.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let shape: Vec<usize> = v["x_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    Golden {
        config: serde_json::from_value(v["config"].clone()).unwrap(),
        num_params: v["num_params"].as_u64().unwrap() as usize,
        x_shape: [shape[0], shape[1], shape[2], shape[3]],
        x: floats(&v["x"]),
        cases: v["cases"].as_array().unwrap().clone(),
    }
}

/// The small golden UNet's longest reduction is a 3×3 convolution over 64 channels (a skip
/// concatenation, k = 576); its longest path is about 20 layers (embedding MLP, two levels of
/// residual blocks with attention, decoder, head).
fn rtol() -> f64 {
    f32_rtol(576, 20)
}

#[test]
fn unet_forward_matches_pytorch_golden() {
    let g = golden();
    let dev = Device::flex();
    let net = load_pytorch(golden_dir().join("unet_small.pth"), &g.config, &dev).unwrap();
    assert_eq!(net.num_params(), g.num_params);
    let x: Tensor<4> = Tensor::from_data(TensorData::new(g.x.clone(), g.x_shape), &dev);
    for case in &g.cases {
        let t: Vec<f32> = case["t"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let labels: Option<Vec<usize>> = case["labels"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().unwrap() as usize).collect());
        let want: Vec<f32> = case["out"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let n = t.len();
        let tt: Tensor<1> = Tensor::from_data(TensorData::new(t.clone(), [n]), &dev);
        let out = net.forward(
            x.clone(),
            tt,
            labels.as_deref().map(|l| labels_tensor(l, &dev)),
        );
        let got: Vec<f32> = out.into_data().try_into_vec::<f32>().unwrap();
        let what = format!("case {}", case["name"]);
        assert_close(&got, &want, rtol(), &what);
        // The sampler interface (one shared timestep) gives the same numbers.
        if n == 1 {
            let out = net.eps(x.clone(), t[0] as usize, labels.as_deref());
            let got: Vec<f32> = out.into_data().try_into_vec::<f32>().unwrap();
            assert_close(&got, &want, rtol(), &format!("{what} via eps"));
        }
    }
}

#[test]
fn param_count_at_defaults() {
    let cfg = UNetConfig::default();
    assert_eq!(cfg.num_params(), 58_753_283 + 2_048);
    // The analytic count agrees with the module on the small configuration …
    let small = golden().config;
    let mut rng = diffuse::rng::seeded(0, 0);
    let net = small.init(&Device::flex(), &mut rng).unwrap();
    assert_eq!(net.num_params(), small.num_params());
    // … and at the defaults (one ~240 MB allocation).
    let t0 = std::time::Instant::now();
    let net = cfg.init(&Device::flex(), &mut rng).unwrap();
    assert_eq!(net.num_params(), 58_755_331);
    println!("default UNet init: {:.2} s", t0.elapsed().as_secs_f64());
    // Unconditional: no class table.
    let uncond = UNetConfig {
        num_classes: 0,
        ..UNetConfig::default()
    };
    assert_eq!(uncond.num_params(), 58_753_283);
}

#[test]
fn checkpoint_from_other_config_names_tensor_and_shapes() {
    let g = golden();
    let dev = Device::flex();
    let path = golden_dir().join("unet_small.pth");
    let cfg = UNetConfig {
        num_classes: 3,
        ..g.config.clone()
    };
    let err = load_pytorch(&path, &cfg, &dev).unwrap_err().to_string();
    println!("{err}");
    assert!(err.contains("class_embedding.weight"), "{err}");
    assert!(err.contains("[3, 64]") && err.contains("[4, 64]"), "{err}");

    // Wider time MLP: a Linear weight, reported in PyTorch's [out, in] layout.
    let cfg = UNetConfig {
        time_freq_dim: 128,
        ..g.config.clone()
    };
    let err = load_pytorch(&path, &cfg, &dev).unwrap_err().to_string();
    assert!(
        err.contains("time_embedding.mlp.0.weight")
            && err.contains("[64, 256]")
            && err.contains("[64, 128]"),
        "{err}"
    );

    // More blocks than the file has: missing tensors by their PyTorch names.
    let cfg = UNetConfig {
        num_res_blocks: 2,
        ..g.config.clone()
    };
    let err = load_pytorch(&path, &cfg, &dev).unwrap_err().to_string();
    assert!(err.contains("missing tensor"), "{err}");

    // Unconditional network: the class table in the file is unexpected.
    let cfg = UNetConfig {
        num_classes: 0,
        ..g.config.clone()
    };
    let err = load_pytorch(&path, &cfg, &dev).unwrap_err().to_string();
    assert!(
        err.contains("unexpected tensors (1): class_embedding.weight"),
        "{err}"
    );

    // Not a checkpoint at all / no file.
    let err = load_pytorch(golden_dir().join("unet_small.json"), &g.config, &dev).unwrap_err();
    assert!(matches!(err, diffuse::Error::Checkpoint { .. }), "{err}");
    let err = load_pytorch(golden_dir().join("nope.pth"), &g.config, &dev).unwrap_err();
    assert!(matches!(err, diffuse::Error::Io { .. }), "{err}");
}

#[test]
fn invalid_configs_are_errors() {
    let bad = [
        UNetConfig {
            attn_levels: vec![4],
            ..Default::default()
        },
        UNetConfig {
            channels: 100,
            ..Default::default()
        },
        UNetConfig {
            image_size: 60,
            ..Default::default()
        },
        UNetConfig {
            channel_mult: vec![],
            ..Default::default()
        },
        UNetConfig {
            dropout: 1.0,
            ..Default::default()
        },
    ];
    let mut rng = diffuse::rng::seeded(0, 0);
    for c in bad {
        assert!(c.init(&Device::flex(), &mut rng).is_err(), "{c:?}");
    }
}

#[test]
fn drop_labels_rate() {
    let mut rng = diffuse::rng::seeded(7, 0);
    let labels: Vec<usize> = (0..10_000).map(|i| 1 + i % 3).collect();
    let p = 0.1;
    let out = drop_labels(&labels, p, &mut rng);
    let dropped = out.iter().filter(|&&l| l == 0).count() as f64;
    let n = labels.len() as f64;
    let sigma = (n * p * (1.0 - p)).sqrt();
    assert!((dropped - n * p).abs() < 3.0 * sigma, "dropped {dropped}");
    // Kept labels are unchanged.
    assert!(out.iter().zip(&labels).all(|(&o, &l)| o == 0 || o == l));
    assert!(drop_labels(&labels, 0.0, &mut rng)
        .iter()
        .zip(&labels)
        .all(|(a, b)| a == b));
    assert!(drop_labels(&labels, 1.0, &mut rng).iter().all(|&l| l == 0));
}

#[test]
fn check_labels_range() {
    let g = golden();
    let mut rng = diffuse::rng::seeded(0, 0);
    let net = g.config.init(&Device::flex(), &mut rng).unwrap();
    assert!(net.check_labels(&[0, 1, 2]).is_ok());
    assert!(net.check_labels(&[3]).is_err());
}

#[test]
fn digits_preset_trains_on_autodiff() {
    use burn::nn::loss::{MseLoss, Reduction};
    use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
    let cfg = UNetConfig::digits();
    assert_eq!(cfg.num_params(), {
        let mut rng = diffuse::rng::seeded(0, 0);
        cfg.init(&Device::flex(), &mut rng).unwrap().num_params()
    });
    let data = diffuse::data::digits::load_digits(16).unwrap();
    let dev = Device::flex().autodiff();
    let mut rng = diffuse::rng::seeded(3, 0);
    let mut net = cfg.init(&dev, &mut rng).unwrap();
    let mut opt: ModuleOptimizer = AdamConfig::new().with_epsilon(1e-8).init();
    let batch = data.gather(&[0, 1, 2, 3, 4, 5, 6, 7]);
    let labels = drop_labels(&batch.labels, 0.1, &mut rng);
    let x = batch.to_tensor(&dev);
    let eps = diffuse::rng::normal_tensor(&mut rng, [8, 1, 16, 16], &dev);
    let t: Tensor<1> = Tensor::from_data(
        TensorData::new(vec![10f32, 100., 200., 300., 400., 500., 600., 900.], [8]),
        &dev,
    );
    // A fixed noisy input; the network must learn to predict the fixed noise.
    let xt = x * 0.5 + eps.clone() * 0.8;
    let mut losses = Vec::new();
    for _ in 0..8 {
        let out = net.forward(xt.clone(), t.clone(), Some(labels_tensor(&labels, &dev)));
        assert_eq!(out.dims(), [8, 1, 16, 16]);
        let loss = MseLoss::new().forward(out, eps.clone(), Reduction::Mean);
        losses.push(loss.clone().into_scalar::<f32>());
        let g = GradientsParams::from_grads(loss.backward(), &net);
        net = opt.step(1e-3, net, g);
    }
    println!("losses {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[7] < 0.8 * losses[0], "{losses:?}");
}

/// The attention block's training path (fused softmax) against burn's attention: output and
/// the gradients of the input and of the query projection.
#[test]
fn attention_block_training_path_matches_burn_attention() {
    let dev = Device::flex().autodiff();
    let cfg = UNetConfig {
        image_size: 8,
        channels: 16,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_levels: vec![1],
        num_groups: 8,
        ..UNetConfig::default()
    };
    let net = cfg.init(&dev, &mut rng::seeded(3, 0)).expect("UNet");
    let attn = net
        .downblocks
        .iter()
        .find_map(|b| match b {
            Block::Res(r) => r.attn.as_ref(),
            _ => None,
        })
        .expect("a block with attention");
    let c = attn.proj_q.weight.dims()[0];
    let mut r = rng::seeded(4, 0);
    let shape = [3, c, 4, 5];
    let n: usize = shape.iter().product();
    let xv = rng::normal_vec(&mut r, n);
    let rv: Tensor<4> = Tensor::from_data(TensorData::new(rng::normal_vec(&mut r, n), shape), &dev);
    let run = |fused: bool| {
        let x: Tensor<4> =
            Tensor::from_data(TensorData::new(xv.clone(), shape), &dev).require_grad();
        let y = attn.forward_with(x.clone(), fused);
        let grads = (y.clone() * rv.clone()).sum().backward();
        let gx = to_vec(x.grad(&grads).expect("x grad"));
        let gq = to_vec(attn.proj_q.weight.grad(&grads).expect("proj_q grad"));
        [to_vec(y), gx, gq]
    };
    let (got, want) = (run(true), run(false));
    // Reductions over C (projections) and HW (attention), through ~6 chained operations.
    let k = c.max(20);
    assert_close(&got[0], &want[0], f32_rtol(k, 6), "attention output");
    assert_close(&got[1], &want[1], f32_rtol(k, 12), "attention dx");
    assert_close(
        &got[2],
        &want[2],
        f32_rtol(3 * 20, 12),
        "attention d proj_q",
    );
}
