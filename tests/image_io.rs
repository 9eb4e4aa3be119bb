//! `data::image_io` against goldens written by PIL (bench/goldens/image_io.py).
mod common;
use common::{pattern, TempDir};
use std::path::{Path, PathBuf};

use diffuse::data::image_io::{list_images, load_rgb, resize_pil, to_chw_pm1, PilFilter};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// ((w, h), (ow, oh)): a source and a target size.
type Resize = ((u32, u32), (u32, u32));

/// `resize(pattern(w, h), ow, oh, filter)` against PIL's output in `{prefix}_{w}x{h}_to_{ow}x{oh}.bin`.
fn check_resize(prefix: &str, cases: &[Resize], filter: PilFilter) {
    for &((w, h), (ow, oh)) in cases {
        let want = std::fs::read(golden(&format!("{prefix}_{w}x{h}_to_{ow}x{oh}.bin"))).unwrap();
        let got = resize_pil(&pattern(w, h), ow, oh, filter);
        assert_eq!((got.width(), got.height()), (ow, oh));
        assert_eq!(got.as_raw().len(), want.len());
        let ndiff = got
            .as_raw()
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            ndiff, 0,
            "{filter:?} {w}x{h} -> {ow}x{oh}: {ndiff} bytes differ from PIL"
        );
    }
}

#[test]
fn resize_matches_pil_bit_exact() {
    let cases = [
        ((64, 64), (256, 256)),
        ((37, 23), (64, 64)),
        ((512, 512), (64, 64)),
        ((40, 30), (40, 75)),
        ((50, 20), (17, 20)),
    ];
    check_resize("resize", &cases, PilFilter::Bilinear);
    // Image.resize's default filter, used by the course's eval folder (bench/goldens/prepare_eval.py):
    // downsampling (support widened by the scale), upsampling, one axis only.
    let cases = [
        ((512, 512), (64, 64)),
        ((37, 23), (64, 64)),
        ((100, 90), (64, 64)),
        ((20, 16), (64, 48)),
        ((40, 30), (40, 75)),
        ((50, 20), (17, 20)),
    ];
    check_resize("resize_bicubic", &cases, PilFilter::Bicubic);
}

fn expected(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(golden("decode_expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[name]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect()
}

#[test]
fn decode_gray_and_rgba_like_pil_convert_rgb() {
    for name in ["gray.png", "rgba.png"] {
        let img = load_rgb(&golden(name)).unwrap();
        assert_eq!(img.as_raw(), &expected(name), "{name}");
    }
}

#[test]
fn decode_jpeg_like_pil_exactly() {
    // JPEGs are decoded by src/data/jpeg, which follows libjpeg-turbo (PIL's decoder) bit for
    // bit: this noisy 32x24 pattern saved by PIL at quality 75 (4:2:0) must match exactly
    // (jpeg-decoder was off by up to 2 levels, the `image` crate's zune-jpeg by up to 11, which
    // moved an FID by 1.6 %). tests/jpeg_decode.rs covers the other JPEG variants.
    let img = load_rgb(&golden("pattern.jpg")).unwrap();
    assert_eq!(img.as_raw(), &expected("pattern.jpg"));
}

#[test]
fn to_chw_layout_and_scale() {
    let img = pattern(4, 3);
    let v = to_chw_pm1(&img);
    assert_eq!(v.len(), 36);
    let p = img.get_pixel(2, 1).0;
    for c in 0..3 {
        let x = p[c] as f32 / 255.0;
        assert_eq!(v[c * 12 + 4 + 2], (x - 0.5) / 0.5);
    }
}

#[test]
fn list_and_load_errors() {
    let dir = std::env::temp_dir().join(format!("diffuse_image_io_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    pattern(3, 3).save(dir.join("b.PNG")).unwrap();
    pattern(3, 3).save(dir.join("sub/deeper/a.jpg")).unwrap();
    std::fs::copy(golden("gray.png"), dir.join("sub/c.JPEG")).unwrap(); // wrong extension is fine
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    std::fs::write(dir.join("sub/broken.png"), b"\x89PNG\r\n\x1a\ngarbage").unwrap();
    let files = list_images(&dir).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        names,
        ["b.PNG", "sub/broken.png", "sub/c.JPEG", "sub/deeper/a.jpg"]
            .map(PathBuf::from)
            .to_vec()
    );
    assert!(load_rgb(&dir.join("sub/c.JPEG")).is_ok());
    let err = load_rgb(&dir.join("sub/broken.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.png"), "{err}");
    let err = load_rgb(&dir.join("notes.txt")).unwrap_err().to_string();
    assert!(err.contains("notes.txt"), "{err}");
    let err = list_images(&dir.join("missing")).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    let err = list_images(&dir.join("b.PNG")).unwrap_err().to_string();
    assert!(err.contains("b.PNG"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Pillow's JPEG goldens of the codec crate (`crates/diffuse-jpeg`).
fn jpeg_goldens() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/diffuse-jpeg/tests/golden/jpeg")
}

/// Damaged files: a clear error naming the file, never a panic.
#[test]
fn corrupt_and_truncated_jpegs_are_errors_naming_the_file() {
    let dir = TempDir::new("jpeg-corrupt");
    let base = std::fs::read(jpeg_goldens().join("q75_420.jpg")).unwrap();
    let prog = std::fs::read(jpeg_goldens().join("prog_420.jpg")).unwrap();
    let sof = base.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut arithmetic = base.clone();
    arithmetic[sof + 1] = 0xC9; // SOF9: arithmetic coding, handed to the fallback decoder
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half.jpg", base[..base.len() / 2].to_vec()),
        ("no_eoi_progressive.jpg", prog[..prog.len() - 40].to_vec()),
        ("headers_only.jpg", base[..sof + 20].to_vec()),
        ("soi_only.jpg", vec![0xFF, 0xD8]),
        (
            "soi_garbage.jpg",
            [&[0xFF, 0xD8, 0xFF][..], &[0x42; 64]].concat(),
        ),
        ("arithmetic.jpg", arithmetic),
    ];
    for (name, bytes) in cases {
        let p = dir.0.join(name);
        std::fs::write(&p, &bytes).unwrap();
        let err = load_rgb(&p).expect_err(name).to_string();
        assert!(
            err.contains(name),
            "{name}: error does not name the file: {err}"
        );
        assert!(err.contains("JPEG"), "{name}: {err}");
    }
}
