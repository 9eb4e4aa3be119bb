//! The course's PyTorch files, both ways: its `{hparams, state_dict}` checkpoint (pickled
//! modules included) loads without running its pickles and reproduces PyTorch's outputs
//! (golden: bench/torch/course_export.py); our course export is that state dict again; an
//! exported run samples the same images as the run; formats that cannot hold the network are
//! refused with the reason.
mod common;
use common::{fails_with, ok, TempDir};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use diffuse::checkpoint::export::{load_course, save_course_weights};
use diffuse::nn::unet::{course_file_tensors, labels_tensor, load_pytorch};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn forward(model: &diffuse::nn::unet::UNet, doc: &serde_json::Value) -> Vec<f32> {
    let dev = Device::flex();
    let x = common::f32s(&doc["x"]);
    let n = doc["t"].as_array().unwrap().len();
    let x = Tensor::<4>::from_data(TensorData::new(x, [n, 3, 8, 8]), &dev);
    let t = Tensor::<1>::from_data(TensorData::new(common::f32s(&doc["t"]), [n]), &dev);
    let labels = labels_tensor(&common::usizes(&doc["labels"]), &dev);
    common::to_vec(model.forward(x, t, Some(labels)))
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn the_course_checkpoint_loads_and_matches_pytorch() {
    let doc = common::golden("course_tiny.json");
    let ckpt = golden("course_tiny.ckpt");
    let (model, meta) = load_course(&ckpt, &Device::flex()).unwrap();
    let u = &meta.config.unet;
    // The architecture read from the tensors alone (no arguments file beside it).
    assert_eq!(
        (
            u.channels,
            u.channel_mult.clone(),
            u.attn_levels.clone(),
            u.num_res_blocks,
            u.num_classes
        ),
        (32, vec![1], vec![0], 1, 2)
    );
    let want = common::f32s(&doc["out"]);
    let got = forward(&model, &doc);
    let e = rel_l2(&got, &want);
    eprintln!("course_tiny: relative L2 error {e:.3e} against PyTorch");
    assert!(e < 1e-4, "relative L2 error {e} against PyTorch");
    // The exported state dict is the course's again: same keys and shapes, same values.
    let dir = TempDir::new("course-export");
    let st = dir.0.join("unet.safetensors");
    save_course_weights(&model, &st).unwrap();
    let mut a = course_file_tensors(&ckpt).unwrap();
    let mut b = course_file_tensors(&st).unwrap();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let keys: Vec<String> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(b.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), keys);
    let back = load_pytorch(&st, &meta.config.unet, &Device::flex()).unwrap();
    assert_eq!(
        forward(&back, &doc),
        got,
        "the export holds exactly the loaded weights"
    );
}

#[test]
fn an_exported_run_samples_the_same_images_and_bad_exports_are_refused() {
    let dir = TempDir::new("export-cli");
    // A 3-channel run that the course's UNet can build: a folder of two classes at 8×8.
    let data = dir.0.join("data");
    common::two_class_folder(&data);
    let run = dir.0.join("run");
    let r = run.to_str().unwrap();
    // `image train` on the two-class folder at the digits preset, with `extra` flags.
    let train_on_folder = |out: &str, extra: &[&str]| {
        let d = data.to_str().unwrap();
        let flags = [
            "--data",
            d,
            "--preset",
            "digits",
            "--batch-size",
            "4",
            "--out",
            out,
        ];
        let quiet = ["-q", "--threads", "1"];
        ok(&[&["image", "train"][..], &flags, extra, &quiet].concat());
    };
    train_on_folder(r, &["--steps", "2"]);
    let ex = dir.0.join("export");
    let e = ex.to_str().unwrap();
    ok(&[
        "image", "export", "--ckpt", r, "--format", "course", "--out", e,
    ]);
    let args: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ex.join("unet.json")).unwrap()).unwrap();
    assert_eq!(args["unet"]["ch"], 32);
    assert_eq!(args["unet"]["image_resolution"], 8);
    assert_eq!(args["class_names"], serde_json::json!(["a", "b"]));
    let sample = |ckpt: &str, out: &Path, raw: bool| {
        let mut a = vec![
            "image",
            "sample",
            "--ckpt",
            ckpt,
            "-n",
            "4",
            "--sampler",
            "ddim",
            "--steps",
            "3",
            "--seed",
            "7",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ];
        if raw {
            a.push("--raw");
        }
        ok(&a);
        common::folder_files(out)
    };
    let from_run = sample(r, &dir.0.join("s-run"), true);
    let st = ex.join("unet.safetensors");
    let from_export = sample(st.to_str().unwrap(), &dir.0.join("s-export"), false);
    assert_eq!(
        from_run, from_export,
        "the course export samples the run's images"
    );
    ok(&[
        "image",
        "export",
        "--ckpt",
        r,
        "--format",
        "safetensors",
        "--out",
        dir.0.join("own").to_str().unwrap(),
        "--ema",
    ]);
    let from_own = sample(
        dir.0.join("own/model.safetensors").to_str().unwrap(),
        &dir.0.join("s-own"),
        false,
    );
    assert_eq!(
        from_own,
        sample(r, &dir.0.join("s-run-ema"), false),
        "the EMA export samples the run's EMA images"
    );
    // Formats that cannot hold the network say why.
    fails_with(
        &[
            "image",
            "export",
            "--ckpt",
            r,
            "--format",
            "diffusers",
            "--out",
            e,
        ],
        "timestep features",
    );
    // A run on the cosine schedule: the course's scheduler cannot hold it.
    let cosine = dir.0.join("cosine");
    let c = cosine.to_str().unwrap();
    train_on_folder(c, &["--schedule", "cosine", "--steps", "1"]);
    fails_with(
        &[
            "image", "export", "--ckpt", c, "--format", "course", "--out", e,
        ],
        "cosine schedule",
    );
    let digits = dir.0.join("digits");
    ok(&[
        "image",
        "train",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--out",
        digits.to_str().unwrap(),
        "-q",
        "--ema",
        "0",
    ]);
    fails_with(
        &[
            "image",
            "export",
            "--ckpt",
            digits.to_str().unwrap(),
            "--format",
            "course",
            "--out",
            e,
        ],
        "1 input channels",
    );
    fails_with(
        &[
            "image",
            "export",
            "--ckpt",
            digits.to_str().unwrap(),
            "--format",
            "safetensors",
            "--out",
            e,
            "--ema",
        ],
        "--ema",
    );
    // A PyTorch file that is not the course's network names what is missing.
    fails_with(
        &[
            "image",
            "sample",
            "--ckpt",
            golden("simplenet_small.pth").to_str().unwrap(),
            "--out",
            e,
        ],
        "head.weight",
    );
}
