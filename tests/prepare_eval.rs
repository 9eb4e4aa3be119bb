//! `prepare-eval` against Pillow (goldens from bench/goldens/prepare_eval.py): the JPEG
//! encoder, the whole course folder, FID against it, and bad input (the bicubic resize:
//! tests/image_io.rs).
mod common;
use common::{pattern, TempDir};
use std::path::{Path, PathBuf};

use diffuse::data::image_folder::{prepare_eval, EvalFormat, PrepareEvalConfig};
use diffuse::data::image_io::load_rgb;
use diffuse::metrics::fid_pipeline::{fid_between, FidOptions};
use diffuse_jpeg::decode_rgb;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Largest per-channel difference between two decoded images of the same size.
fn max_diff(a: &image::RgbImage, b: &image::RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// Copies tests/golden/prepare_eval/val into `root/val`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn course_folder_matches_pillow_and_gives_the_same_fid() {
    let dir = TempDir::new("prepare_eval_course");
    copy_tree(&golden("prepare_eval/val"), &dir.0.join("val"));
    let report = prepare_eval(&dir.0, &PrepareEvalConfig::default()).unwrap();
    let pillow = golden("prepare_eval/eval");
    let ours = dir.0.join("eval");
    assert_eq!(report.out_dir, ours);
    assert_eq!(file_names(&ours), file_names(&pillow));
    assert_eq!(report.written, file_names(&pillow).len());
    for name in file_names(&pillow) {
        let (a, b) = (ours.join(&name), pillow.join(&name));
        // Pillow writes the grayscale source as a one-component JPEG and the PNG source with
        // its own zlib settings; ours are RGB, so only their pixels can agree (exactly).
        let pixels_only = name.contains("wild_000005") || name.ends_with(".png");
        if pixels_only {
            assert_eq!(
                max_diff(&load_rgb(&a).unwrap(), &load_rgb(&b).unwrap()),
                0,
                "{name}"
            );
        } else {
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{name}: not byte-identical to Pillow's"
            );
        }
    }

    // FID against a second folder (the lossless bilinear variant), once with our course folder
    // and once with Pillow's: identical pixels give identical features, so the two agree far
    // inside the 1e-3 relative the issue asks for (the bound allows GEMM rounding only).
    let png_root = TempDir::new("prepare_eval_png");
    copy_tree(&golden("prepare_eval/val"), &png_root.0.join("val"));
    let cfg = PrepareEvalConfig {
        format: EvalFormat::Png,
        ..Default::default()
    };
    prepare_eval(&png_root.0, &cfg).unwrap();
    let opts = FidOptions {
        weights: golden("inception_ref_tiny.ckpt"),
        image_size: Some(75),
        batch_size: 6,
        progress: false,
        ..Default::default()
    };
    let other = png_root.0.join("eval");
    let f_ours = fid_between(&ours, &other, &opts).unwrap().fid;
    let f_pil = fid_between(&pillow, &other, &opts).unwrap().fid;
    assert!(f_pil > 0.0, "{f_pil}");
    assert!(
        (f_ours - f_pil).abs() <= 1e-3 * f_pil,
        "FID ours {f_ours} vs Pillow's folder {f_pil}"
    );
}

#[test]
fn png_format_keeps_the_lossless_class_prefixed_folder() {
    let dir = TempDir::new("prepare_eval_png_names");
    copy_tree(&golden("prepare_eval/val"), &dir.0.join("val"));
    let cfg = PrepareEvalConfig {
        size: 16,
        format: EvalFormat::Png,
        ..Default::default()
    };
    let report = prepare_eval(&dir.0, &cfg).unwrap();
    assert_eq!(report.written, 6);
    let names = file_names(&dir.0.join("eval"));
    assert_eq!(names[0], "cat_flickr_cat_000001.png");
    assert!(names.iter().all(|n| n.ends_with(".png")), "{names:?}");
    let img = load_rgb(&dir.0.join("eval/dog_flickr_dog_000003.png")).unwrap();
    assert_eq!(img.dimensions(), (16, 16));
    // Running it again rewrites the same files.
    assert_eq!(prepare_eval(&dir.0, &cfg).unwrap().written, 6);
    // The course's folder next to it would mix two sets in one FID folder.
    let err = prepare_eval(&dir.0, &PrepareEvalConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would not write") && err.contains("eval"),
        "{err}"
    );
}

fn rgb(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    pattern(w, h).save(path).unwrap();
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = TempDir::new("prepare_eval_bad");
    let cfg = PrepareEvalConfig::default();
    // No val/ folder.
    let err = prepare_eval(&dir.0, &cfg).unwrap_err().to_string();
    assert!(err.contains("val"), "{err}");
    // Two classes holding the same file name cannot be flattened.
    rgb(&dir.0.join("val/cat/x.jpg"), 8, 8);
    rgb(&dir.0.join("val/dog/x.jpg"), 8, 8);
    let err = prepare_eval(&dir.0, &cfg).unwrap_err().to_string();
    assert!(
        err.contains("cat/x.jpg") && err.contains("dog/x.jpg") && err.contains("same file name"),
        "{err}"
    );
    std::fs::remove_file(dir.0.join("val/dog/x.jpg")).unwrap();
    // An unreadable image is skipped and reported, as training does; with `strict` it is an
    // error naming it.
    std::fs::write(dir.0.join("val/dog/broken.jpg"), b"not a jpeg").unwrap();
    let report = prepare_eval(&dir.0, &cfg).unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].path.ends_with("broken.jpg"));
    assert!(!dir.0.join("eval/broken.jpg").exists());
    let strict = PrepareEvalConfig {
        strict: true,
        ..cfg.clone()
    };
    let err = prepare_eval(&dir.0, &strict).unwrap_err().to_string();
    assert!(err.contains("broken.jpg"), "{err}");
    std::fs::remove_file(dir.0.join("val/dog/broken.jpg")).unwrap();
    // Size 0.
    let zero = PrepareEvalConfig {
        size: 0,
        ..cfg.clone()
    };
    let err = prepare_eval(&dir.0, &zero).unwrap_err().to_string();
    assert!(err.contains("eval.size"), "{err}");
    // And the good remainder works.
    assert_eq!(prepare_eval(&dir.0, &cfg).unwrap().written, 1);
    let out = std::fs::read(dir.0.join("eval/x.jpg")).unwrap();
    assert_eq!(decode_rgb(&out).unwrap().width, 64);
}
