//! The decoder against Pillow: every file in tests/golden/jpeg/ (written by
//! bench/goldens/jpeg.py: qualities 50–100, 4:4:4/4:2:2/4:2:0, baseline/progressive, optimized
//! tables, restart markers, grayscale, CMYK, Adobe RGB, odd sizes, progressive files cut short
//! so that block smoothing applies, a frame without DHT like Motion-JPEG) must decode to
//! exactly the pixels of Pillow's `Image.open(f).convert("RGB")`, stored losslessly beside it
//! as PNG. Damaged files must give an error, never a panic.
use std::path::{Path, PathBuf};

use diffuse_jpeg::{decode_rgb, JpegError};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/jpeg")
}

fn goldens() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    v
}

/// Pillow's RGB pixels of a golden, stored as PNG beside it.
fn pillow_rgb(png: &Path) -> image::RgbImage {
    image::open(png).unwrap().to_rgb8()
}

#[test]
fn every_golden_matches_pillow_exactly() {
    let files = goldens();
    assert!(files.len() >= 27, "only {} goldens", files.len());
    let mut failures = Vec::new();
    for jpg in &files {
        let name = jpg.file_name().unwrap().to_string_lossy().into_owned();
        let got = decode_rgb(&std::fs::read(jpg).unwrap()).unwrap();
        let want = pillow_rgb(&jpg.with_extension("png"));
        let size = (got.width as u32, got.height as u32);
        if size != want.dimensions() {
            failures.push(format!("{name}: size {size:?} vs {:?}", want.dimensions()));
            continue;
        }
        let diff: Vec<(usize, i32)> = got
            .data
            .chunks(3)
            .zip(want.as_raw().chunks(3))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (*x as i32 - *y as i32).abs())
                    .max()
                    .unwrap()
            })
            .enumerate()
            .filter(|&(_, d)| d > 0)
            .collect();
        if let Some(&(i, _)) = diff.first() {
            let max = diff.iter().map(|d| d.1).max().unwrap();
            failures.push(format!(
                "{name}: {} pixels differ (max {max}), first at ({}, {})",
                diff.len(),
                i % got.width,
                i / got.width
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Variants the decoder leaves out are `Unsupported` (so a caller can fall back to another
/// decoder); damaged files are `Corrupt`.
#[test]
fn unsupported_and_corrupt_files_are_told_apart() {
    let base = std::fs::read(golden_dir().join("q75_420.jpg")).unwrap();
    let sof = base.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut arithmetic = base.clone();
    arithmetic[sof + 1] = 0xC9; // SOF9: arithmetic coding
    assert!(matches!(
        decode_rgb(&arithmetic),
        Err(JpegError::Unsupported(_))
    ));
    for bad in [
        &base[..base.len() / 2],
        &base[..sof + 20],
        &[0xFF, 0xD8][..],
    ] {
        assert!(matches!(decode_rgb(bad), Err(JpegError::Corrupt(_))));
    }
}

/// Truncations and random byte damage of every golden: decoding may fail but must not panic
/// (no out-of-bounds index, no arithmetic overflow).
#[test]
fn damaged_goldens_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut runs = 0;
    for f in goldens() {
        let data = std::fs::read(&f).unwrap();
        for cut in (0..data.len()).step_by(7) {
            let _ = decode_rgb(&data[..cut]);
            runs += 1;
        }
        for _ in 0..150 {
            let mut d = data.clone();
            for _ in 0..1 + rnd() % 4 {
                let p = rnd() as usize % d.len();
                d[p] = if rnd() % 2 == 0 {
                    d[p] ^ (1 << (rnd() % 8))
                } else {
                    rnd() as u8
                };
            }
            let _ = decode_rgb(&d);
            runs += 1;
        }
    }
    assert!(runs > 4000);
}

/// Decompression bombs (`tests/fuzz_corpus/`, from bench/goldens/fuzz_corpus.py): tiny files whose
/// headers claim up to 65535² pixels are refused before any pixel buffer is allocated.
#[test]
fn bombs_are_refused_before_allocating() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&p).unwrap();
        let err = decode_rgb(&data)
            .err()
            .unwrap_or_else(|| panic!("{name} decoded"));
        let msg = err.to_string();
        let refused = msg.contains("decompression bomb")
            || msg.contains("too large")
            || matches!(err, JpegError::Unsupported(_));
        assert!(refused, "{name}: {msg}");
        n += 1;
    }
    assert!(n >= 5, "only {n} bombs in {}", dir.display());
}
