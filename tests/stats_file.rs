//! FID statistics files (`src/metrics/stats_file.rs`): NumPy `.npz` as pytorch-fid and EDM
//! write it (goldens from `bench/goldens/fid_npz.py`, written by numpy), diffuse's own format,
//! round trips and the errors for broken files.
use std::path::{Path, PathBuf};

use diffuse::metrics::fid::{frechet_distance, FeatureStats};
use diffuse::metrics::stats_file::{load_stats, save_stats};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/fid_npz")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse_stats_file_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Statistics with every kind of f64 bit pattern a save must keep: non-round values,
/// negative zero, subnormals, large exponents.
fn odd_stats(d: usize, n: usize) -> FeatureStats {
    let feats: Vec<f64> = (0..n * d)
        .map(|i| ((i as f64 * 0.7301).sin() * 1e3).powi(3) / 7.0)
        .collect();
    let mut s = FeatureStats::from_features(&feats, d).unwrap();
    s.mu[0] = -0.0;
    s.mu[1] = 5e-324;
    s.sigma[(0, d - 1)] = 1.7e300;
    s.factor = None;
    s
}

fn same_bits(a: &FeatureStats, b: &FeatureStats) {
    let bits = |s: &FeatureStats| -> Vec<u64> {
        s.mu.iter()
            .chain(s.sigma.iter())
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(a.sigma.shape(), b.sigma.shape());
    assert_eq!(bits(a), bits(b));
}

#[test]
fn npz_round_trip_keeps_every_bit_and_the_metadata() {
    let s = odd_stats(7, 5);
    let p = scratch("rt.npz");
    let meta = serde_json::json!({"mode": "standard", "image_size": 299, "weights": "w.pth"});
    save_stats(&p, &s, &meta).unwrap();
    assert_eq!(&std::fs::read(&p).unwrap()[..4], b"PK\x03\x04", "not a zip");
    let (back, m) = load_stats(&p).unwrap();
    same_bits(&back, &s);
    assert_eq!(back.n, 5);
    assert_eq!(m["format"], "npz");
    assert_eq!(
        (m["mode"].as_str(), m["image_size"].as_u64()),
        (Some("standard"), Some(299))
    );
    assert_eq!((m["n"].as_u64(), m["dim"].as_u64()), (Some(5), Some(7)));
    // Same inputs, same bytes (no time stamps): runs can be compared by hash.
    let p2 = scratch("rt2.NPZ");
    save_stats(&p2, &s, &meta).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&p2).unwrap());

    // Any other extension: diffuse's own format, which still round-trips.
    let p3 = scratch("rt.stats");
    save_stats(&p3, &s, &meta).unwrap();
    assert_eq!(&std::fs::read(&p3).unwrap()[..8], b"DFIDSTAT");
    let (back3, m3) = load_stats(&p3).unwrap();
    same_bits(&back3, &s);
    assert_eq!(
        (m3["format"].as_str(), m3["mode"].as_str()),
        (Some("diffuse"), Some("standard"))
    );
}

/// What numpy must find in our file: the members and `.npy` headers `np.load` reads.
#[test]
fn npz_members_are_what_numpy_reads() {
    let s = odd_stats(3, 4);
    let p = scratch("layout.npz");
    save_stats(&p, &s, &serde_json::json!({})).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&p).unwrap()).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["diffuse_meta.npy", "mu.npy", "sigma.npy"]);
    for (name, shape) in [("mu.npy", "(3,)"), ("sigma.npy", "(3,3)")] {
        let mut m = zip.by_name(name).unwrap();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut m, &mut b).unwrap();
        assert_eq!(&b[..6], b"\x93NUMPY");
        let header =
            String::from_utf8_lossy(&b[10..10 + u16::from_le_bytes([b[8], b[9]]) as usize])
                .into_owned();
        assert!(header.contains("'descr': '<f8'"), "{name}: {header}");
        assert!(
            header.contains("'fortran_order': False"),
            "{name}: {header}"
        );
        assert!(
            // A Python tuple literal: npyz writes `(3, 3, )`, numpy `(3, 3)`; both parse the
            // same, so compare without spaces and trailing commas.
            header
                .replace(' ', "")
                .replace(",)", ")")
                .contains(&format!("'shape':{}", shape.replace(",)", ")"))),
            "{name}: {header}"
        );
    }
}

/// Files written by numpy as pytorch-fid (`savez_compressed`) and EDM (`savez`) write them,
/// and layouts other writers use: the same values, bit for bit.
#[test]
fn reads_numpy_written_files() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden("expected.json")).unwrap()).unwrap();
    let names = [
        "pytorch_fid.npz",
        "edm.npz",
        "fortran.npz",
        "float32.npz",
        "big_endian.npz",
    ];
    assert_eq!(expected.as_object().unwrap().len(), names.len());
    for name in names {
        let (s, m) = load_stats(&golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = &expected[name];
        let d = want["mu"].as_array().unwrap().len();
        assert_eq!(s.dim(), d, "{name}");
        for i in 0..d {
            assert_eq!(
                s.mu[i].to_bits(),
                want["mu"][i].as_f64().unwrap().to_bits(),
                "{name} mu[{i}]"
            );
            for j in 0..d {
                let w = want["sigma"][i][j].as_f64().unwrap();
                assert_eq!(
                    s.sigma[(i, j)].to_bits(),
                    w.to_bits(),
                    "{name} sigma[{i},{j}]"
                );
            }
        }
        // Other tools record neither the sample count nor how the features were computed.
        assert_eq!(s.n, 0, "{name}");
        assert_eq!(m["format"], "npz");
        assert!(m.get("mode").is_none(), "{name}: {m}");
    }
    // pytorch-fid's and EDM's files hold the same statistics: FID 0 (to rounding) between them.
    let a = load_stats(&golden("pytorch_fid.npz")).unwrap().0;
    let b = load_stats(&golden("edm.npz")).unwrap().0;
    let fid = frechet_distance(&a, &b).unwrap();
    assert!(fid.abs() < 1e-12 * a.sigma.trace(), "{fid}");
}

#[test]
fn broken_files_give_errors_naming_the_file_and_the_problem() {
    let cases = [
        ("bad_missing_sigma.npz", "no array `sigma`"),
        ("bad_mu_2d.npz", "expected `mu` of shape [d]"),
        ("bad_sigma_shape.npz", "[5, 3]"),
        ("bad_int_dtype.npz", "expected float64"),
        ("bad_complex_dtype.npz", "expected float64"),
        ("bad_object_dtype.npz", "expected float64"),
        ("bad_nan.npz", "non-finite"),
    ];
    for (name, want) in cases {
        let e = load_stats(&golden(name)).unwrap_err().to_string();
        assert!(e.contains(name), "{name}: {e}");
        assert!(e.contains(want), "{name}: want {want:?} in {e}");
    }
    // Not a zip, though it starts like one; not any statistics file at all.
    let p = scratch("truncated.npz");
    let good = std::fs::read(golden("edm.npz")).unwrap();
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(e.contains("truncated.npz") && e.contains("zip"), "{e}");
    let p = scratch("text.npz");
    std::fs::write(&p, "mu,sigma\n1,2\n").unwrap();
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(e.contains("text.npz") && e.contains("NumPy .npz"), "{e}");
    // A zip without arrays at all (e.g. a zipped image folder) says what it holds.
    let p = scratch("images.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    z.start_file("0.png", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut z, b"png").unwrap();
    z.finish().unwrap();
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(
        e.contains("images.zip") && e.contains("no array `mu`") && e.contains("[0.png]"),
        "{e}"
    );
}

/// A `.npy` member whose header claims 4 GiB is refused before that is allocated (npyz
/// itself would allocate the header's declared length).
#[test]
fn huge_npy_header_length_is_refused() {
    let p = scratch("huge_header.npz");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("mu.npy", opts).unwrap();
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    std::io::Write::write_all(&mut z, &b).unwrap();
    z.finish().unwrap();
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(
        e.contains("huge_header.npz") && e.contains("numpy's limit"),
        "{e}"
    );
}

/// A version-1 `.npy` member: magic, header length, the given header dict, then `data`.
fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{dict}\n").into_bytes();
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.append(&mut header);
    b.extend_from_slice(data);
    b
}

fn write_zip(path: &Path, members: &[(&str, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in members {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, bytes).unwrap();
    }
    z.finish().unwrap();
}

/// Shapes that claim more data than the member holds are refused before anything that size
/// is allocated (a 10¹²-element array in a file of a few hundred bytes), and so are feature
/// counts beyond any extractor's.
#[test]
fn shapes_claiming_more_than_the_file_holds_are_refused() {
    let f8 = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mu = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
        &f8(&[1.0, 2.0]),
    );
    let sigma = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
        &f8(&[1.0, 0.0, 0.0, 1.0]),
    );
    // The valid pair loads (the helpers write what numpy reads).
    let ok = scratch("two.npz");
    write_zip(&ok, &[("mu.npy", mu.clone()), ("sigma.npy", sigma.clone())]);
    assert_eq!(load_stats(&ok).unwrap().0.dim(), 2);

    let huge_meta = npy(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000,), }",
        b"{}",
    );
    let p = scratch("huge_meta.npz");
    write_zip(
        &p,
        &[
            ("mu.npy", mu.clone()),
            ("sigma.npy", sigma.clone()),
            ("diffuse_meta.npy", huge_meta),
        ],
    );
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(
        e.contains("huge_meta.npz") && e.contains("diffuse_meta"),
        "{e}"
    );

    let huge_sigma = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }",
        &f8(&[1.0; 4]),
    );
    let p = scratch("huge_sigma.npz");
    write_zip(&p, &[("mu.npy", mu.clone()), ("sigma.npy", huge_sigma)]);
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(
        e.contains("huge_sigma.npz") && e.contains("no more data"),
        "{e}"
    );

    // 2⁴⁰ × 2⁴⁰ elements: the count overflows 64 bits (npyz alone would panic on it in a
    // build with overflow checks).
    let overflow = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
        &f8(&[1.0; 4]),
    );
    let p = scratch("overflow.npz");
    write_zip(&p, &[("mu.npy", mu.clone()), ("sigma.npy", overflow)]);
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(
        e.contains("overflow.npz") && e.contains("not a countable size"),
        "{e}"
    );

    let wide_mu = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (20000,), }",
        &vec![0u8; 8 * 20000],
    );
    let p = scratch("wide.npz");
    write_zip(&p, &[("mu.npy", wide_mu), ("sigma.npy", sigma)]);
    let e = load_stats(&p).unwrap_err().to_string();
    assert!(
        e.contains("wide.npz") && e.contains("16384 features"),
        "{e}"
    );
}
