//! The data layouts `--data` reads (folder per class with and without a split level, a flat
//! folder, EDM's folder and zip), `--xflip`, `--resize`, and unconditional training and
//! sampling end to end.
mod common;
use common::{fails_with, ok, TempDir};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use diffuse::data::image_folder::{fit, Resize};
use diffuse::data::layouts::{detect, load, DataOptions, Layout};

/// A 10×6 RGB image whose pixels encode (seed, x, y), so that any two differ.
fn img(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(10, 6, |x, y| {
        image::Rgb([seed.wrapping_mul(37), (x * 20) as u8, (y * 40) as u8])
    })
}

fn save(path: &Path, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img(seed).save(path).unwrap();
}

fn png_bytes(seed: u8) -> Vec<u8> {
    let mut v = Vec::new();
    img(seed)
        .write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
        .unwrap();
    v
}

fn opts(size: usize) -> DataOptions {
    DataOptions {
        size,
        ..DataOptions::default()
    }
}

/// Builds one data set per layout under `root`: (path, layout, class names, image count).
fn build_all(root: &Path) -> Vec<(std::path::PathBuf, Layout, Vec<String>, usize)> {
    let split = root.join("split");
    save(&split.join("train/dog/a.png"), 1);
    save(&split.join("train/dog/b.png"), 2);
    save(&split.join("train/cat/c.png"), 3);
    save(&split.join("train/cat/d.png"), 4);
    save(&split.join("val/cat/e.png"), 5);
    let classes = root.join("classes");
    save(&classes.join("x/1.png"), 6);
    save(&classes.join("x/2.png"), 7);
    save(&classes.join("y/deep/3.png"), 8);
    save(&classes.join("y/4.png"), 9);
    let flat = root.join("flat");
    for i in 0..4u8 {
        save(&flat.join(format!("{i}.png")), 10 + i);
    }
    save(&flat.join("more/9.png"), 20);
    let edm = root.join("edm");
    for i in 0..4u8 {
        save(&edm.join(format!("00000/img{i:08}.png")), 30 + i);
    }
    std::fs::write(
        edm.join("dataset.json"),
        r#"{"labels": [["00000/img00000000.png", 1], ["00000/img00000001.png", 0],
                       ["00000/img00000002.png", 1], ["00000/img00000003.png", 2]]}"#,
    )
    .unwrap();
    let zip_path = root.join("edm.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    for i in 0..4u8 {
        zip.start_file(format!("00000/img{i:08}.png"), o).unwrap();
        zip.write_all(&png_bytes(40 + i)).unwrap();
    }
    zip.start_file("dataset.json", o).unwrap();
    zip.write_all(br#"{"labels": null}"#).unwrap();
    zip.finish().unwrap();
    vec![
        (split, Layout::Split, vec!["cat".into(), "dog".into()], 4),
        (classes, Layout::Classes, vec!["x".into(), "y".into()], 4),
        (flat, Layout::Flat, vec![], 5),
        (
            edm,
            Layout::Edm,
            vec!["0".into(), "1".into(), "2".into()],
            4,
        ),
        (zip_path, Layout::Edm, vec![], 4),
    ]
}

#[test]
fn every_layout_is_detected_and_read_with_its_classes() {
    let dir = TempDir::new("layouts");
    for (path, layout, classes, n) in build_all(&dir.0) {
        assert_eq!(detect(&path).unwrap(), layout, "{}", path.display());
        let l = load(&path, &opts(4)).unwrap();
        assert_eq!(l.layout, layout);
        assert_eq!(l.set.class_names, classes, "{}", path.display());
        assert_eq!(l.set.len(), n, "{}", path.display());
        assert_eq!(l.set.image_len(), 3 * 4 * 4);
        if classes.is_empty() {
            assert!(l.set.labels.iter().all(|&x| x == 0));
        } else {
            assert!(l
                .set
                .labels
                .iter()
                .all(|&x| (1..=classes.len()).contains(&x)));
        }
    }
    // EDM labels follow dataset.json (index + 1), in file order.
    let edm = load(&dir.0.join("edm"), &opts(4)).unwrap();
    assert_eq!(edm.set.labels, vec![2, 1, 2, 3]);
    // The zip's images are the ones written into it, decoded in place.
    let z = load(&dir.0.join("edm.zip"), &opts(10)).unwrap();
    let want = fit(&img(40), 10, Resize::Squash);
    let px = diffuse::data::image_io::to_chw_pm1(&want);
    assert_eq!(&z.set.images[..px.len()], &px[..]);
    // A split data set reads the split asked for.
    let val = load(
        &dir.0.join("split"),
        &DataOptions {
            split: "val".into(),
            ..opts(4)
        },
    )
    .unwrap();
    assert_eq!(
        (val.set.len(), val.set.class_names.clone()),
        (1, vec!["cat".to_string()])
    );
}

#[test]
fn bad_data_sets_are_refused_naming_the_layouts() {
    let dir = TempDir::new("layouts-bad");
    let empty = dir.0.join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    std::fs::write(empty.join("notes.txt"), "x").unwrap();
    let e = detect(&empty).unwrap_err().to_string();
    assert!(
        e.contains("empty") && e.contains("dataset.json") && e.contains("<class>"),
        "{e}"
    );
    let txt = dir.0.join("a.txt");
    std::fs::write(&txt, "x").unwrap();
    assert!(detect(&txt).unwrap_err().to_string().contains("not a .zip"));
    // A zip that is not one, and labels that miss an image.
    let fake = dir.0.join("fake.zip");
    std::fs::write(&fake, "not a zip").unwrap();
    let e = load(&fake, &opts(4)).err().unwrap().to_string();
    assert!(e.contains("fake.zip") && e.contains("zip"), "{e}");
    // A zip bomb: a small archive whose image entry inflates past the 256 MiB entry limit.
    let bomb = dir.0.join("bomb.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&bomb).unwrap());
    zip.start_file("big.png", zip::write::SimpleFileOptions::default())
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..257 {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap();
    assert!(std::fs::metadata(&bomb).unwrap().len() < 4 << 20);
    let e = load(&bomb, &opts(4)).err().unwrap().to_string();
    assert!(e.contains("big.png") && e.contains("inflates"), "{e}");
    let edm = dir.0.join("edm");
    save(&edm.join("a.png"), 1);
    save(&edm.join("b.png"), 2);
    std::fs::write(edm.join("dataset.json"), r#"{"labels": [["a.png", 0]]}"#).unwrap();
    let e = load(&edm, &opts(4)).err().unwrap().to_string();
    assert!(e.contains("dataset.json") && e.contains("b.png"), "{e}");
    // A corrupt image: skipped (reported) by default, an error with strict.
    save(&edm.join("b2.png"), 3);
    std::fs::write(edm.join("dataset.json"), r#"{"labels": null}"#).unwrap();
    std::fs::write(edm.join("c.png"), b"\x89PNG garbage").unwrap();
    let l = load(&edm, &opts(4)).unwrap();
    assert_eq!((l.set.len(), l.skipped.len()), (3, 1));
    let strict = DataOptions {
        strict: true,
        ..opts(4)
    };
    assert!(load(&edm, &strict)
        .err()
        .unwrap()
        .to_string()
        .contains("c.png"));
}

#[test]
fn center_crop_keeps_the_middle_square_and_squash_keeps_everything() {
    // 10×6: the centred 6×6 square starts at x = 2; at the same size no resampling happens.
    let src = img(5);
    let c = fit(&src, 6, Resize::CenterCrop);
    for y in 0..6 {
        for x in 0..6 {
            assert_eq!(c.get_pixel(x, y), src.get_pixel(x + 2, y));
        }
    }
    let s = fit(&src, 6, Resize::Squash);
    assert_eq!(s.dimensions(), (6, 6));
    assert_ne!(s, c, "squash resamples the whole width");
}

#[test]
fn xflip_doubles_the_set_with_mirrored_copies_in_a_seeded_order() {
    let dir = TempDir::new("xflip");
    let flat = dir.0.join("flat");
    for i in 0..4u8 {
        save(&flat.join(format!("{i}.png")), i);
    }
    let set = Arc::new(load(&flat, &opts(6)).unwrap().set);
    let epoch = |seed, xflip| -> Vec<Vec<f32>> {
        let per_epoch = if xflip { 8 } else { 4 };
        set.batches(1, seed, 1, 0, xflip)
            .unwrap()
            .take(per_epoch)
            .map(|b| b.images)
            .collect()
    };
    let a = epoch(3, true);
    assert_eq!(a, epoch(3, true), "same seed, same batches");
    assert_ne!(a, epoch(4, true), "another seed, another order");
    // Every image appears once as it is and once mirrored (row by row, per channel).
    for i in 0..set.len() {
        let orig = set.image(i).to_vec();
        let mirrored: Vec<f32> = orig
            .chunks_exact(6)
            .flat_map(|row| row.iter().rev().copied())
            .collect();
        assert_ne!(orig, mirrored);
        assert_eq!(a.iter().filter(|b| **b == orig).count(), 1);
        assert_eq!(a.iter().filter(|b| **b == mirrored).count(), 1);
    }
    assert!(epoch(3, false)
        .iter()
        .all(|b| (0..4).any(|i| set.image(i) == &b[..])));
}

#[test]
fn each_layout_trains_and_samples_from_the_command_line() {
    let dir = TempDir::new("layouts-cli");
    for (k, (path, _, classes, _)) in build_all(&dir.0).into_iter().enumerate() {
        let out = dir.0.join(format!("run{k}"));
        let (p, o) = (path.to_str().unwrap(), out.to_str().unwrap());
        ok(&[
            "image",
            "train",
            "--data",
            p,
            "--preset",
            "digits",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--out",
            o,
            "-q",
            "--threads",
            "1",
        ]);
        let samples = dir.0.join(format!("samples{k}"));
        let s = samples.to_str().unwrap();
        let args = [
            "image",
            "sample",
            "--ckpt",
            o,
            "-n",
            "3",
            "--sampler",
            "ddim",
            "--steps",
            "2",
            "--out",
            s,
            "-q",
        ];
        ok(&args);
        assert!(samples.join("2.png").is_file());
        assert_eq!(samples.join("labels.csv").is_file(), !classes.is_empty());
        if classes.is_empty() {
            // Unconditional: no classes to ask for, no guidance.
            fails_with(
                &[&args[..], &["--cfg-scale", "2"]].concat(),
                "unconditional",
            );
            fails_with(&[&args[..], &["--class", "x"]].concat(), "unconditional");
            fails_with(&[&args[..], &["--guidance", "apg"]].concat(), "guidance");
        }
    }
}
