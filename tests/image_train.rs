//! Image training: resume continues the same run, checkpoints load, sampling writes files.
mod common;

use std::sync::Arc;

use burn::prelude::*;
use diffuse::data::digits::load_digits;
use diffuse::image::{self as img, ImageTrainConfig};
use diffuse::sampling::selective::{least_sure, Selective};
use diffuse::sampling::{Guidance, GuidanceConvention, SamplerKind};
use diffuse::schedule::NoiseSchedule;

fn tiny(steps: usize) -> ImageTrainConfig {
    let mut c = common::tiny_image_config(steps);
    c.checkpoint_every = 2;
    c.ema_decay = Some(0.9);
    c
}

fn weights(m: &diffuse::nn::unet::UNet) -> Vec<f32> {
    common::to_vec(m.head.weight.val())
}

#[test]
fn resume_continues_the_same_run() {
    let data = Arc::new(load_digits(8).unwrap());
    let dev = Device::flex().autodiff();
    let a_dir = common::temp_dir("img-a");
    let b_dir = common::temp_dir("img-b");
    let full = img::train(&tiny(4), Arc::clone(&data), &a_dir, false, &dev, false).unwrap();
    let _half = img::train(&tiny(2), Arc::clone(&data), &b_dir, false, &dev, false).unwrap();
    let resumed = img::train(&tiny(4), Arc::clone(&data), &b_dir, true, &dev, false).unwrap();
    assert_eq!(resumed.step, 4);
    // Same batches, timesteps, noise and dropout: the losses agree to float rounding (a resumed
    // process may sum in another order, so bit equality is not promised).
    assert_eq!(full.losses.len(), resumed.losses.len());
    for ((sa, la), (sb, lb)) in full.losses.iter().zip(&resumed.losses) {
        assert_eq!(sa, sb);
        assert!(
            (la - lb).abs() < 1e-5 * la.abs().max(1.0),
            "step {sa}: {la} vs {lb}"
        );
    }
    let (wa, wb) = (
        weights(&full.model.valid()),
        weights(&resumed.model.valid()),
    );
    let diff = common::max_abs_diff(&wa, &wb);
    assert!(diff < 1e-5, "weights differ by {diff}");
    let (ea, eb) = (
        weights(&full.sampling_model()),
        weights(&resumed.sampling_model()),
    );
    assert!(common::max_abs_diff(&ea, &eb) < 1e-5, "EMA weights differ");
    // A run that was not resumed is not close: the check above can fail.
    let other = img::train(
        &ImageTrainConfig { seed: 5, ..tiny(4) },
        data,
        &common::temp_dir("img-c"),
        false,
        &dev,
        false,
    )
    .unwrap();
    assert!(common::max_abs_diff(&wa, &weights(&other.model.valid())) > 1e-4);
}

#[test]
fn saved_run_samples_images_and_rejects_bad_requests() {
    let data = Arc::new(load_digits(8).unwrap());
    let dir = common::temp_dir("img-sample");
    let out = img::train(
        &tiny(2),
        Arc::clone(&data),
        &dir,
        false,
        &Device::flex().autodiff(),
        false,
    )
    .unwrap();
    let (model, meta) = img::load(&dir, false, &Device::flex()).unwrap();
    assert_eq!(meta.class_names.len(), 10);
    assert_eq!(weights(&model), weights(&out.sampling_model()));
    let s = NoiseSchedule::new(&meta.config.schedule).unwrap();
    let spec = img::image_spec(SamplerKind::Ddim, 3, 0.0, true);
    let labels = img::draw_labels(5, 10, None, 1);
    assert!(labels.iter().all(|&l| (1..=10).contains(&l)));
    let shape = img::model_shape(&meta.config.unet);
    let g = Guidance::new(2.0, GuidanceConvention::Reference).unwrap();
    let gen = img::Generator::new(&model, shape, &s, spec).guided(g.into(), None);
    let a = gen.generate(&labels, 3, 2, None).unwrap();
    let b = gen.generate(&labels, 3, 5, None).unwrap();
    assert_eq!(a.len(), 5 * 64);
    assert!(
        common::max_abs_diff(&a, &b) < 1e-5,
        "images must not depend on the batch size"
    );
    let samples = dir.join("samples");
    img::write_samples(&samples, &a, &labels, &meta.class_names, shape).unwrap();
    assert!(samples.join("4.png").is_file());
    let csv = std::fs::read_to_string(samples.join("labels.csv")).unwrap();
    assert!(csv.starts_with("file,class\n0.png,"));
    assert!(img::class_index("7", &meta.class_names).unwrap() == 8);
    let err = img::class_index("cat", &meta.class_names)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cat") && err.contains("sample.class"), "{err}");
    // Labels outside the class table are refused, not indexed.
    assert!(gen.generate(&[11], 3, 1, None).is_err());

    // Stochastic sampling too: each image's fresh noise is its own, whatever its batch.
    let eta1 = img::image_spec(SamplerKind::Ddim, 3, 1.0, true);
    let gen1 = img::Generator::new(&model, shape, &s, eta1).guided(g.into(), None);
    let one = gen1.generate(&labels, 3, 2, None).unwrap();
    assert!(common::max_abs_diff(&one, &gen1.generate(&labels, 3, 5, None).unwrap()) < 1e-5);
    assert!(
        common::max_abs_diff(&one, &a) > 1e-3,
        "η = 1 draws fresh noise"
    );

    // Selective guidance: the base pass for every image, then the ⌈0.4 · 5⌉ = 2 with the
    // largest margins again at the guided setting along their own noise — so exactly the
    // images a fully guided run gives them.
    let sel = Selective {
        share: 0.4,
        base_w: 0.0,
        base_apg_norm: 0.01,
    };
    let base = gen1
        .guided(Default::default(), None)
        .generate(&labels, 3, 5, None)
        .unwrap();
    let selective = gen1.selective(Some(sel));
    let (mixed, flagged) = selective.generate_selected(&labels, 3, 2, None).unwrap();
    let margins = gen1.margins(&base, &labels, 3, 5, None).unwrap();
    assert_eq!(flagged, least_sure(&margins, 2));
    assert_eq!(margins, gen1.margins(&base, &labels, 3, 1, None).unwrap());
    for i in 0..5 {
        let want = if flagged.contains(&i) { &one } else { &base };
        let rows = i * 64..(i + 1) * 64;
        let d = common::max_abs_diff(&mixed[rows.clone()], &want[rows]);
        assert!(d < 1e-5, "image {i} (flagged: {flagged:?}) differs by {d}");
    }
    assert!(common::max_abs_diff(&mixed, &selective.generate(&labels, 3, 5, None).unwrap()) < 1e-5);
    // Selective guidance needs a model that can tell classes apart.
    let bad = Selective { share: 0.0, ..sel };
    let e = gen1
        .selective(Some(bad))
        .generate(&labels, 3, 2, None)
        .unwrap_err();
    assert!(e.to_string().contains("guidance.selective.share"), "{e}");
}

#[test]
fn checkpoint_from_another_configuration_is_rejected() {
    let data = Arc::new(load_digits(8).unwrap());
    let dir = common::temp_dir("img-mismatch");
    img::train(
        &tiny(2),
        data,
        &dir,
        false,
        &Device::flex().autodiff(),
        false,
    )
    .unwrap();
    let ckpt = dir.join("checkpoints/step-00000002");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("model.json")).unwrap()).unwrap();
    meta["config"]["unet"]["channels"] = serde_json::json!(16);
    std::fs::write(ckpt.join("model.json"), meta.to_string()).unwrap();
    // Through the run folder, the manifest catches the edited piece …
    let err = img::load(&dir, true, &Device::flex())
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("model.json") && err.contains("does not belong"),
        "{err}"
    );
    // … and a weights file given directly is checked against the config beside it.
    let err = img::load(&ckpt.join("model.safetensors"), true, &Device::flex())
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.to_lowercase().contains("shape"),
        "{err}"
    );
}

/// A run folder knows its run: a fresh run into a folder that holds another run's checkpoints
/// is refused (and writes nothing); `Start::Overwrite` moves the old run aside intact; a second
/// trainer is kept out while the folder is locked; a lock left by a dead process is taken over.
#[test]
fn a_run_folder_is_never_shared_by_two_runs() {
    use diffuse::checkpoint::run::{self as rc, RunLock, LOCK};
    use img::Start;
    let data = Arc::new(load_digits(8).unwrap());
    let dev = Device::flex().autodiff();
    let root = common::TempDir::new("img-clobber");
    let dir = root.0.join("run");
    img::train(&tiny(4), Arc::clone(&data), &dir, Start::Fresh, &dev, false).unwrap();
    let first = common::folder_files(&rc::step_dir(&dir, 4));
    assert!(
        !dir.join(LOCK).exists(),
        "the lock is released when training returns"
    );

    // Another (seed 9) fresh run into it: refused before it writes a checkpoint.
    let other = ImageTrainConfig { seed: 9, ..tiny(2) };
    let err = img::train(&other, Arc::clone(&data), &dir, Start::Fresh, &dev, false)
        .err()
        .expect("a used folder must be refused")
        .to_string();
    assert!(
        err.contains(&dir.display().to_string())
            && err.contains("`train.resume`")
            && err.contains("`train.out`"),
        "{err}"
    );
    let steps: Vec<usize> = rc::list(&dir).unwrap().iter().map(|c| c.0).collect();
    assert_eq!(steps, [4, 2], "nothing was added or pruned");
    assert_eq!(common::folder_files(&rc::step_dir(&dir, 4)), first);

    // A trainer holding the folder keeps a second one out, resume or not.
    let (held, _) = RunLock::acquire(&dir).unwrap();
    for start in [Start::Resume, Start::Overwrite] {
        let err = img::train(&tiny(4), Arc::clone(&data), &dir, start, &dev, false)
            .err()
            .expect("a locked folder must be refused")
            .to_string();
        assert!(err.contains("in use") && err.contains(LOCK), "{err}");
    }
    drop(held);

    // Overwrite: the old run moves to a sibling, complete; the new run is alone in the folder.
    img::train(
        &other,
        Arc::clone(&data),
        &dir,
        Start::Overwrite,
        &dev,
        false,
    )
    .unwrap();
    let aside = root.0.join("run.old-1");
    assert_eq!(common::folder_files(&rc::step_dir(&aside, 4)), first);
    let steps: Vec<usize> = rc::list(&dir).unwrap().iter().map(|c| c.0).collect();
    assert_eq!(steps, [2]);
    assert_ne!(
        rc::latest(&dir).unwrap().unwrap().1.run_sha256,
        rc::latest(&aside).unwrap().unwrap().1.run_sha256
    );

    // A lock left by a process that is gone (pid beyond any pid_max) is taken over.
    std::fs::write(dir.join(LOCK), "999999999 0\n").unwrap();
    let resumed = img::train(
        &ImageTrainConfig { seed: 9, ..tiny(4) },
        Arc::clone(&data),
        &dir,
        Start::Resume,
        &dev,
        false,
    )
    .unwrap();
    assert_eq!(resumed.step, 4);
    assert!(!dir.join(LOCK).exists());
    // A resumed run with a longer schedule (another config hash) is still the same run.
    let m = rc::latest(&dir).unwrap().unwrap().1;
    assert_ne!(m.config_sha256, m.run_sha256);
}

#[test]
fn the_demo_records_selective_guidance() {
    use diffuse::image::demo::Demo;
    use diffuse::metrics::digit_frechet::DigitJudge;
    let data = Arc::new(load_digits(8).unwrap());
    let dir = common::temp_dir("img-demo-selective");
    let cfg = tiny(2);
    let dev = Device::flex().autodiff();
    let out = img::train(&cfg, Arc::clone(&data), &dir, false, &dev, false).unwrap();
    let judge = DigitJudge::standard(&Device::flex()).unwrap();
    let mut sampling = img::DemoSampling::of(img::Recipe::Best);
    sampling.steps = 2;
    sampling.selective = Some(Selective {
        share: 0.5,
        ..Selective::default()
    });
    let demo = Demo {
        judge: &judge,
        spec: sampling.spec(),
        guided: sampling.guided(),
        selective: sampling.selective,
        n: 6,
        out: &dir,
        show: false,
        recipe: "best",
    };
    let results = demo
        .sample_and_judge(&out, &cfg, &data.class_names)
        .unwrap();
    assert_eq!(
        results.iter().map(|r| r.resampled).collect::<Vec<_>>(),
        [0, 3]
    );
    assert_eq!(demo.label(&results[1]), "apg+selective w=7.5");
    let floor = judge.real_floor(6, 0).unwrap();
    demo.write_report(&results, &floor, (1.0, 2.0), 1000, &data.class_names)
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["guidance"], "apg+selective");
    assert_eq!(m["selective"]["share"], 0.5);
    assert_eq!(m["selective"]["base_w"], 0.5);
    assert_eq!(m["resampled_guided"], 3);
    assert!(m.get("resampled_w0").is_none());
}
