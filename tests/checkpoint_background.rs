//! Checkpoints written on a background thread (src/checkpoint/background.rs):
//! - a snapshot is a copy: training on after it is taken does not change what it writes, and it
//!   writes the same files, byte for byte, as the synchronous save at that step, whose weights
//!   files are in turn those of burn's own safetensors writer (the path used before);
//! - an error of a background save is returned by the next save, or at the end of the run;
//! - when `train` returns, its last checkpoint is committed and complete.
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use diffuse::checkpoint::background::Writer;
use diffuse::checkpoint::run as run_checkpoint;
use diffuse::checkpoint::{save_weights, WeightsSnapshot};
use diffuse::data::digits::load_digits;
use diffuse::data::image_set::ImageSet;
use diffuse::image::train::Run;
use diffuse::image::{self as img, ImageTrainConfig};

fn tiny(steps: usize) -> ImageTrainConfig {
    let mut c = common::tiny_image_config(steps);
    c.checkpoint_every = 2;
    c.keep_checkpoints = 3;
    c.ema_decay = Some(0.9);
    c
}

fn assert_same_files(a: &Path, b: &Path, what: &str) {
    let (fa, fb) = (common::folder_files(a), common::folder_files(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb), "{what}: file lists differ");
    let differ: Vec<&str> = fa
        .iter()
        .zip(&fb)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((name, _), _)| name.as_str())
        .collect();
    assert!(differ.is_empty(), "{what}: {differ:?} differ");
}

/// `n` optimisation steps of `run` on the run's own batch stream.
fn steps(run: &mut Run, data: &Arc<ImageSet>, cfg: &ImageTrainConfig, n: usize) {
    let mut batches = data
        .batches(cfg.batch_size, cfg.seed, 1, run.step, false)
        .unwrap();
    for _ in 0..n {
        run.optimize(batches.next().unwrap()).unwrap();
    }
}

#[test]
fn snapshot_is_a_copy_and_writes_the_synchronous_files() {
    let data = Arc::new(load_digits(8).unwrap());
    let names = data.class_names.clone();
    let dev = Device::flex().autodiff();
    let cfg = tiny(8);
    let root = common::TempDir::new("ckbg-copy");
    let a_dir = root.0.join("a");
    let step2 = run_checkpoint::step_dir(&a_dir, 2);
    let reference = root.0.join("ref");
    std::fs::create_dir_all(&reference).unwrap();

    // Two snapshots after step 2: one written at once (what a synchronous save writes) …
    let mut a = Run::set_up(&cfg, &a_dir, false, &dev, false).unwrap();
    steps(&mut a, &data, &cfg, 2);
    let delayed = a.snapshot(&names).unwrap();
    assert_eq!(a.snapshot(&names).unwrap().write().unwrap(), step2);
    let at_once = reference.join("step2");
    std::fs::rename(&step2, &at_once).unwrap();
    // … whose weights files are those of burn's SafetensorsStore (the path used before).
    save_weights(&a.model().valid(), &reference.join("w.safetensors")).unwrap();
    let ema_model = a.ema.as_ref().unwrap().apply(a.model().valid());
    save_weights(&ema_model, &reference.join("e.safetensors")).unwrap();
    let w = WeightsSnapshot::take(&a.model().valid(), &reference).unwrap();
    assert_eq!(w.bytes(), 4 * a.model().num_params());

    // … and one written only after two more steps (Adam and the EMA update their tensors in
    // place where they can): the same files.
    steps(&mut a, &data, &cfg, 2);
    assert_eq!(delayed.write().unwrap(), step2);
    assert_same_files(
        &step2,
        &at_once,
        "snapshot written 2 steps later vs at once",
    );
    run_checkpoint::verify(&step2).unwrap();
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    assert!(read(reference.join("w.safetensors")) == read(step2.join("model.safetensors")));
    assert!(read(reference.join("e.safetensors")) == read(step2.join("model.ema.safetensors")));

    // The checks above can fail: two steps later every piece has changed.
    a.snapshot(&names).unwrap().write().unwrap();
    let (f2, f4) = (
        common::folder_files(&step2),
        common::folder_files(&run_checkpoint::step_dir(&a_dir, 4)),
    );
    assert_eq!(f2.len(), 6);
    for ((name, x), (_, y)) in f2.iter().zip(&f4) {
        assert!(x != y, "{name} did not change between steps 2 and 4");
    }

    // A synchronous writer commits before `save` returns.
    a.set_writer(Writer::new(false)).unwrap();
    steps(&mut a, &data, &cfg, 2);
    a.save(&names).unwrap();
    assert!(run_checkpoint::step_dir(&a_dir, 6)
        .join("manifest.json")
        .is_file());
}

#[test]
fn a_failed_background_save_is_reported_at_the_next_save_and_at_the_end() {
    let data = Arc::new(load_digits(8).unwrap());
    let names = data.class_names.clone();
    let dev = Device::flex().autodiff();
    let cfg = tiny(8);
    let root = common::TempDir::new("ckbg-err");

    // The checkpoint folder cannot be created: a file stands in its place.
    let out = root.0.join("next");
    let mut run = Run::set_up(&cfg, &out, false, &dev, false).unwrap();
    run.set_writer(Writer::new(true)).unwrap();
    std::fs::write(out.join(run_checkpoint::CHECKPOINTS), b"in the way").unwrap();
    steps(&mut run, &data, &cfg, 2);
    run.save(&names)
        .expect("the save itself runs in the background");
    steps(&mut run, &data, &cfg, 2);
    let err = run
        .save(&names)
        .expect_err("the earlier failure")
        .to_string();
    assert!(err.contains(run_checkpoint::CHECKPOINTS), "{err}");
    run.finish().expect("the failed save was reported once");

    // The last save fails: `finish` (called by `train` before it returns) reports it.
    let out = root.0.join("last");
    let mut run = Run::set_up(&cfg, &out, false, &dev, false).unwrap();
    run.set_writer(Writer::new(true)).unwrap();
    steps(&mut run, &data, &cfg, 2);
    std::fs::write(out.join(run_checkpoint::CHECKPOINTS), b"in the way").unwrap();
    run.save(&names).unwrap();
    let err = run
        .finish()
        .expect_err("the failure of the last save")
        .to_string();
    assert!(err.contains(run_checkpoint::CHECKPOINTS), "{err}");
}

#[test]
fn the_last_checkpoint_is_complete_when_train_returns() {
    let data = Arc::new(load_digits(8).unwrap());
    let root = common::TempDir::new("ckbg-last");
    let mut cfg = tiny(5);
    cfg.checkpoint_every = 3;
    let out = img::train(
        &cfg,
        data,
        &root.0,
        false,
        &Device::flex().autodiff(),
        false,
    )
    .unwrap();
    assert_eq!(out.step, 5);
    let (dir, manifest) = run_checkpoint::latest(&root.0)
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(manifest.step, 5);
    assert_eq!(dir, run_checkpoint::step_dir(&root.0, 5));
    let steps: Vec<usize> = run_checkpoint::list(&root.0)
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(steps, [5, 3]);
    // No staging folder is left, the loss curve of the last save is there.
    let staged: Vec<_> = std::fs::read_dir(root.0.join(run_checkpoint::CHECKPOINTS))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    assert!(root.0.join("loss.png").is_file());
    assert!(out.checkpoint_seconds > 0.0 && out.checkpoint_seconds < out.seconds);
}
