"""FID statistics as other tools write them, for tests/stats_file.rs (src/metrics/stats_file.rs).

  python bench/goldens/fid_npz.py     # tests/golden/fid_npz/*.npz + expected.json

Written with numpy exactly as the tools do: pytorch-fid's `save_fid_stats` calls
`np.savez_compressed(path, mu=mu, sigma=sigma)` (deflate), EDM's `fid.py ref` calls
`np.savez(path, mu=mu, sigma=sigma)` (stored). Plus layouts other writers produce (float32,
Fortran order) and broken files, each of which diffuse must refuse with a clear error.
`expected.json` holds the valid files' arrays (Python's float repr round-trips f64 exactly).
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden", "fid_npz")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20)
    d = 5
    feats = rng.normal(size=(40, d)) @ rng.normal(size=(d, d))
    mu = feats.mean(0)
    sigma = np.cov(feats, rowvar=False)  # pytorch-fid: np.cov(act, rowvar=False)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    # Not symmetric, so that a reader that ignores `fortran_order` reads it transposed.
    asym = sigma + np.triu(np.ones((d, d)), 1)
    expected = {}

    def valid(name, mu_arr, sigma_arr, save=np.savez_compressed, want_sigma=None):
        save(os.path.join(OUT, name), mu=mu_arr, sigma=sigma_arr)
        s = sigma_arr if want_sigma is None else want_sigma
        expected[name] = {
            "mu": [float(v) for v in np.asarray(mu_arr, np.float64)],
            "sigma": [[float(v) for v in row] for row in np.asarray(s, np.float64)],
        }

    valid("pytorch_fid.npz", mu, sigma)  # np.savez_compressed, as pytorch-fid --save-stats
    valid("edm.npz", mu, sigma, save=np.savez)  # np.savez, as EDM's fid.py ref
    valid("fortran.npz", mu, np.asfortranarray(asym), want_sigma=asym)
    valid("float32.npz", mu.astype(np.float32), sigma.astype(np.float32))
    valid("big_endian.npz", mu.astype(">f8"), sigma.astype(">f8"))
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)

    bad = {
        "bad_missing_sigma.npz": dict(mu=mu),
        "bad_mu_2d.npz": dict(mu=mu[None, :], sigma=sigma),
        "bad_sigma_shape.npz": dict(mu=mu, sigma=sigma[:, :3]),
        "bad_int_dtype.npz": dict(mu=np.arange(d), sigma=sigma),
        "bad_complex_dtype.npz": dict(mu=mu.astype(np.complex128), sigma=sigma),
        "bad_object_dtype.npz": dict(mu=np.array([1.0, "x"], dtype=object), sigma=sigma),
        "bad_nan.npz": dict(mu=np.where(np.arange(d) == 2, np.nan, mu), sigma=sigma),
    }
    for name, arrays in bad.items():
        np.savez(os.path.join(OUT, name), **arrays)
    print(f"wrote {len(expected) + len(bad)} files to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
