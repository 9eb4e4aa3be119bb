//! Image data: folder-per-class loader, bundled digits, batch iterator (eval folder:
//! tests/prepare_eval.rs).
mod common;
use common::TempDir;
use std::path::Path;
use std::sync::Arc;

use diffuse::data::digits::{load_digits, NUM_DIGITS};
use diffuse::data::image_folder::{load_image_folder_report, ImageFolderConfig};
use diffuse::data::image_set::ImageSet;

fn rgb(path: &Path, w: u32, h: u32, px: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(px))
        .save(path)
        .unwrap();
}

/// ROOT/train/{b_dog (3 files), a_cat (2 + notes.txt + corrupt), c_wild (gray + RGBA jpg/png)}.
fn build_tree(root: &Path) {
    let t = root.join("train");
    rgb(&t.join("b_dog/01.png"), 20, 12, [255, 0, 0]);
    rgb(&t.join("b_dog/02.png"), 20, 12, [0, 255, 0]);
    rgb(&t.join("b_dog/03.jpg"), 20, 12, [0, 0, 255]);
    rgb(&t.join("a_cat/x1.PNG"), 8, 8, [10, 20, 30]);
    rgb(&t.join("a_cat/sub/x2.png"), 30, 30, [0, 0, 0]);
    std::fs::write(t.join("a_cat/notes.txt"), "not an image").unwrap();
    std::fs::write(t.join("a_cat/x3_corrupt.png"), b"\x89PNG\r\n\x1a\ngarbage").unwrap();
    std::fs::create_dir_all(t.join("c_wild")).unwrap();
    image::GrayImage::from_pixel(16, 16, image::Luma([255]))
        .save(t.join("c_wild/g.png"))
        .unwrap();
    image::RgbaImage::from_pixel(16, 16, image::Rgba([0, 255, 0, 7]))
        .save(t.join("c_wild/rgba.png"))
        .unwrap();
    std::fs::write(t.join("README.txt"), "a file at split level is not a class").unwrap();
}

#[test]
fn image_folder_classes_labels_cap_resize_range() {
    let dir = TempDir::new("folder");
    build_tree(&dir.0);
    let cfg = ImageFolderConfig {
        size: 8,
        max_per_class: 2,
        ..Default::default()
    };
    let (set, skipped) = load_image_folder_report(&dir.0, &cfg).unwrap();
    assert_eq!(set.class_names, ["a_cat", "b_dog", "c_wild"]);
    // a_cat: x1.PNG, sub/x2.png kept (cap 2, sorted paths: sub/x2.png < x1.PNG < x3_corrupt.png);
    // b_dog: 01, 02 (03 over the cap); c_wild: both.
    assert_eq!(set.labels, [1, 1, 2, 2, 3, 3]);
    assert!(
        skipped.is_empty(),
        "corrupt file is third in a_cat, beyond the cap: {skipped:?}"
    );
    assert_eq!((set.channels, set.height, set.width), (3, 8, 8));
    assert_eq!(set.images.len(), 6 * 3 * 64);
    assert!(set.images.iter().all(|v| (-1.0..=1.0).contains(v)));
    // Constant images stay constant through the resize: sub/x2.png is black, 01.png is red.
    assert!(set.image(0).iter().all(|&v| v == -1.0));
    let red = set.image(2);
    assert!(red[..64].iter().all(|&v| v == 1.0) && red[64..].iter().all(|&v| v == -1.0));
    // Grayscale white → (1, 1, 1); RGBA drops alpha → (−1, 1, −1).
    assert!(set.image(4).iter().all(|&v| v == 1.0));
    let g = set.image(5);
    assert!(g[..64].iter().all(|&v| v == -1.0) && g[64..128].iter().all(|&v| v == 1.0));

    // Without a cap the corrupt file is reached: skipped and reported by path, or fatal if strict.
    let cfg = ImageFolderConfig {
        size: 8,
        max_per_class: 0,
        ..Default::default()
    };
    let (set, skipped) = load_image_folder_report(&dir.0, &cfg).unwrap();
    assert_eq!(set.labels, [1, 1, 2, 2, 2, 3, 3]);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].path.ends_with("a_cat/x3_corrupt.png"));
    let strict = ImageFolderConfig {
        strict: true,
        ..cfg
    };
    let err = load_image_folder_report(&dir.0, &strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains("x3_corrupt.png"), "{err}");
}

#[test]
fn image_folder_errors_are_clear() {
    let dir = TempDir::new("errors");
    let cfg = ImageFolderConfig::default();
    // Missing split folder.
    let err = load_image_folder_report(&dir.0, &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train"), "{err}");
    // Split folder without class folders.
    std::fs::create_dir_all(dir.0.join("train")).unwrap();
    let err = load_image_folder_report(&dir.0, &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no class sub-folders"), "{err}");
    // An empty class folder.
    rgb(&dir.0.join("train/cat/a.png"), 4, 4, [1, 2, 3]);
    std::fs::create_dir_all(dir.0.join("train/dog")).unwrap();
    std::fs::write(dir.0.join("train/dog/readme.md"), "x").unwrap();
    let err = load_image_folder_report(&dir.0, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'dog'") && err.contains("no png/jpg/jpeg"),
        "{err}"
    );
}

#[test]
fn digits_bundled_set() {
    let d = load_digits(8).unwrap();
    assert_eq!(d.len(), NUM_DIGITS);
    assert_eq!((d.channels, d.height, d.width), (1, 8, 8));
    assert_eq!(d.class_names.len(), 10);
    assert_eq!(d.class_names[0], "0");
    assert!(d.labels.iter().all(|&l| (1..=10).contains(&l)));
    for l in 1..=10 {
        assert!(d.labels.iter().filter(|&&x| x == l).count() > 150);
    }
    assert!(d.images.iter().all(|v| (-1.0..=1.0).contains(v)));
    let (lo, hi) = d
        .images
        .iter()
        .fold((1f32, -1f32), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((lo, hi), (-1.0, 1.0));
    // First row of the CSV: 0,0,5,13,… label 0.
    assert_eq!(d.labels[0], 1);
    assert_eq!(d.image(0)[2], 5.0 / 8.0 - 1.0);
    // 16×16 is pixel replication of the 8×8 image.
    let d16 = load_digits(16).unwrap();
    assert_eq!(d16.image_len(), 256);
    let (a, b) = (d.image(5), d16.image(5));
    for y in 0..16 {
        for x in 0..16 {
            assert_eq!(b[y * 16 + x], a[(y / 2) * 8 + x / 2]);
        }
    }
    assert!(load_digits(12).is_err());
}

#[test]
fn batches_are_seeded_shuffled_and_prefetched() {
    let set = Arc::new(ImageSet {
        images: (0..10).flat_map(|i| vec![i as f32; 4]).collect(),
        labels: (0..10).map(|i| 1 + i % 2).collect(),
        class_names: vec!["a".into(), "b".into()],
        channels: 1,
        height: 2,
        width: 2,
    });
    let take = |seed| -> Vec<Vec<f32>> {
        set.batches(3, seed, 2, 0, false)
            .unwrap()
            .take(6)
            .map(|b| {
                assert_eq!(b.shape, [3, 1, 2, 2]);
                assert_eq!(b.images.len(), 12);
                b.images.chunks(4).map(|c| c[0]).collect()
            })
            .collect()
    };
    let a = take(5);
    assert_eq!(a, take(5));
    assert_ne!(a, take(6));
    // Three batches per epoch (drop_last): no image repeats within an epoch.
    let mut epoch: Vec<f32> = a[..3].concat();
    epoch.sort_by(|x, y| x.partial_cmp(y).unwrap());
    epoch.dedup();
    assert_eq!(epoch.len(), 9);
    // Labels follow their images.
    let b = set.batches(3, 1, 1, 0, false).unwrap().next().unwrap();
    for (i, &l) in b.labels.iter().enumerate() {
        assert_eq!(l, 1 + (b.images[i * 4] as usize) % 2);
    }
    assert!(set.batches(11, 0, 1, 0, false).is_err());
    let dev = burn::prelude::Device::flex();
    let (t, labels) = b.into_tensor(&dev);
    assert_eq!(t.dims(), [3, 1, 2, 2]);
    assert_eq!(labels.len(), 3);
}
