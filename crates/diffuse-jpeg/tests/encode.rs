//! The encoder against Pillow: `Image.save(f)` on its defaults (libjpeg-turbo, quality 75,
//! 4:2:0, standard Huffman tables) of known pixels, byte for byte (goldens from
//! bench/goldens/prepare_eval.py).
use diffuse_testkit::pattern;
use std::path::{Path, PathBuf};

use diffuse_jpeg::decode_rgb;
use diffuse_jpeg::encode::{encode_rgb, EncodeOptions};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/jpeg_encode")
        .join(name)
}

/// The cases of `encode_cases` in bench/goldens/prepare_eval.py: file, pixels, options.
fn encode_cases() -> Vec<(String, image::RgbImage, EncodeOptions)> {
    let d = EncodeOptions::default();
    let smooth = image::open(golden("smooth_64x64.png")).unwrap().to_rgb8();
    let mut v = vec![("smooth_64x64.jpg".to_string(), smooth, d.clone())];
    for (w, h) in [
        (64, 64),
        (37, 23),
        (16, 16),
        (17, 9),
        (1, 1),
        (8, 40),
        (130, 33),
    ] {
        v.push((format!("pattern_{w}x{h}.jpg"), pattern(w, h), d.clone()));
    }
    for q in [10, 50, 95, 100] {
        let o = EncodeOptions {
            quality: q,
            ..d.clone()
        };
        v.push((format!("pattern_64x64_q{q}.jpg"), pattern(64, 64), o));
    }
    let o = EncodeOptions {
        comment: b"made by dataset.py".to_vec(),
        ..d
    };
    v.push(("pattern_64x64_comment.jpg".into(), pattern(64, 64), o));
    v
}

#[test]
fn jpeg_encoder_writes_pillows_bytes() {
    // Sizes that need edge replication and libjpeg's dummy blocks (odd block counts, 1×1),
    // several qualities, a comment.
    for (name, img, opts) in encode_cases() {
        let want = std::fs::read(golden(&name)).unwrap();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let got = encode_rgb(w, h, img.as_raw(), &opts).unwrap();
        if got != want {
            // Say how far off the pixels are before failing.
            let a = decode_rgb(&got).unwrap();
            let b = decode_rgb(&want).unwrap();
            let d = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| x.abs_diff(*y))
                .max();
            let at = got.iter().zip(&want).position(|(x, y)| x != y);
            panic!(
                "{name}: {} bytes vs Pillow's {}, first difference at {at:?}, max decoded difference {d:?}",
                got.len(),
                want.len()
            );
        }
    }
}

/// A larger corpus, not committed: `python bench/goldens/prepare_eval.py --fuzz DIR 300`, then
/// `PREPARE_EVAL_FUZZ=DIR cargo test --release -p diffuse-jpeg --test encode -- --ignored`.
#[test]
#[ignore = "needs a corpus from bench/goldens/prepare_eval.py --fuzz"]
fn jpeg_encoder_matches_pillow_on_a_corpus() {
    let dir = PathBuf::from(
        std::env::var("PREPARE_EVAL_FUZZ").expect("set PREPARE_EVAL_FUZZ to the corpus folder"),
    );
    let mut n = 0;
    let mut bad = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let png = e.unwrap().path();
        if png.extension().and_then(|x| x.to_str()) != Some("png") {
            continue;
        }
        let stem = png.file_stem().unwrap().to_string_lossy().into_owned();
        let quality: u8 = stem.rsplit_once("_q").unwrap().1.parse().unwrap();
        let img = image::open(&png).unwrap().to_rgb8();
        let opts = EncodeOptions {
            quality,
            ..Default::default()
        };
        let (w, h) = (img.width() as usize, img.height() as usize);
        let got = encode_rgb(w, h, img.as_raw(), &opts).unwrap();
        if got != std::fs::read(png.with_extension("jpg")).unwrap() {
            bad.push(stem);
        }
        n += 1;
    }
    assert!(n > 0, "no cases in {}", dir.display());
    assert!(
        bad.is_empty(),
        "{} of {n} differ from Pillow: {bad:?}",
        bad.len()
    );
    println!("{n} files byte-identical to Pillow's");
}
