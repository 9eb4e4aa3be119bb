"""FID statistics files against pytorch-fid itself (issue 20 item 4; BENCHMARKS.md "FID .npz").

  bench/.venv/bin/python bench/fid_npz_interop.py [--diffuse target/release/diffuse]
      [--weights tests/golden/inception_std_tiny.pth] [--n 50] [--work DIR (default: a folder in the system temp dir)]

What it checks (every FID to 1e-4 relative, the issue's bar):
  1. `diffuse fid A B --save-stats A.npz` (and B.npz the other way round) on two image folders:
     pytorch-fid's `calculate_fid_given_paths([A.npz, B.npz])` — its own `np.load` of our files
     — against `diffuse fid A.npz B.npz` and against `diffuse fid A B` from the folders.
  2. pytorch-fid's own writer, `save_fid_stats([A.npz, pf_A.npz])` (it reads a .npz and
     re-saves it with `np.savez_compressed`), and EDM's layout (`np.savez`, as its
     `fid.py ref` writes): pytorch-fid from its own files gives the same FID as from ours,
     and diffuse reads its files and EDM's and gives pytorch-fid's number.
  3. Synthetic full-rank statistics (n > d features drawn by numpy, written by pytorch-fid's
     writer): the two implementations compared where pytorch-fid's `sqrtm` is well-posed.
     With n ≤ d images (case 1 at small n) both covariances are singular, pytorch-fid's general
     `scipy.linalg.sqrtm` of Σ₁Σ₂ is then less accurate than diffuse's symmetric form
     (src/metrics/fid.rs), and the difference is reported, not hidden.

pytorch-fid without torch: its FID needs only numpy and scipy, so when `import torch` fails
(torch is not installed in bench/.venv: `pip install --no-deps pytorch-fid numpy scipy pillow`)
the functions above are taken from the installed `pytorch_fid/fid_score.py` source with `ast`
and executed unchanged with numpy, scipy and a stand-in for `InceptionV3` that is only
constructed, never run (both inputs are .npz files, so pytorch-fid never computes features).

The images are synthetic (seeded noise at two contrasts, 32×32 PNG), the network is the
tiny pytorch-fid-layout Inception the tests use (tests/golden/inception_std_tiny.pth,
standard mode): what is tested is the file format and the distance, not image quality.
"""
import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.linalg
from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TOL = 1e-4


def pytorch_fid():
    """pytorch-fid's calculate_fid_given_paths and save_fid_stats (see the module docs)."""
    import pytorch_fid as pkg

    try:
        import torch  # noqa: F401
        from pytorch_fid import fid_score

        return fid_score.calculate_fid_given_paths, fid_score.save_fid_stats, "imported"
    except ImportError:
        pass
    path = os.path.join(os.path.dirname(pkg.__file__), "fid_score.py")
    tree = ast.parse(open(path).read(), path)
    wanted = {
        "calculate_frechet_distance",
        "compute_statistics_of_path",
        "calculate_fid_given_paths",
        "save_fid_stats",
    }
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in body} == wanted, f"pytorch-fid changed: {path}"

    class InceptionV3:  # constructed by pytorch-fid's functions, never called on .npz inputs
        BLOCK_INDEX_BY_DIM = {64: 0, 192: 1, 768: 2, 2048: 3}

        def __init__(self, *a, **k):
            pass

        def to(self, device):
            return self

    def no_images(*a, **k):
        raise RuntimeError("pytorch-fid asked for image features; this script passes only .npz")

    import pathlib

    ns = {
        "np": np,
        "linalg": scipy.linalg,
        "os": os,
        "pathlib": pathlib,
        "InceptionV3": InceptionV3,
        "IMAGE_EXTENSIONS": set(),
        "calculate_activation_statistics": no_images,
    }
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)
    return ns["calculate_fid_given_paths"], ns["save_fid_stats"], f"functions of {path}, without torch"


def pf_fid(fid_paths, a, b):
    return float(fid_paths([a, b], batch_size=50, device="cpu", dims=2048))


def diffuse_fid(exe, a, b, weights, extra=()):
    cmd = [exe, "fid", a, b, "--weights", weights, "--mode", "standard", "--quiet", *extra]
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    line = [l for l in out.stdout.splitlines() if l.startswith("fid: ")][-1]
    return float(line.split()[1]), time.time() - t0, out.stderr


def write_images(folder, n, contrast, seed):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.uniform(0, 255, 3)
        img = np.clip(base + rng.normal(0, contrast, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i}.png"))


def rel(a, b):
    return abs(a - b) / abs(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--diffuse", default=os.path.join(ROOT, "target", "release", "diffuse"))
    ap.add_argument("--weights", default=os.path.join(ROOT, "tests", "golden", "inception_std_tiny.pth"))
    ap.add_argument("--n", type=int, default=50, help="images per folder")
    ap.add_argument("--synthetic-n", type=int, default=4096, help="features per synthetic set (d = 2048)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "diffuse_fid_npz"))
    args = ap.parse_args()
    fid_paths, save_fid_stats, how = pytorch_fid()
    print(f"pytorch-fid: {how}")
    w = args.work
    os.makedirs(w, exist_ok=True)
    results = {"pytorch_fid": how}
    failures = []

    def check(name, got, want):
        r = rel(got, want)
        ok = r <= TOL
        print(f"  {name}: {got:.10g} vs {want:.10g}, relative difference {r:.2e} {'ok' if ok else 'FAIL'}")
        results[name] = {"got": got, "want": want, "rel": r}
        if not ok:
            failures.append(name)

    # 1. Real statistics from diffuse's own --save-stats.
    a_dir, b_dir = os.path.join(w, "A"), os.path.join(w, "B")
    if not (os.path.isdir(a_dir) and len(os.listdir(a_dir)) == args.n):
        write_images(a_dir, args.n, 20.0, 1)
        write_images(b_dir, args.n, 60.0, 2)
    ours_a, ours_b = os.path.join(w, "A.npz"), os.path.join(w, "B.npz")
    fid_folders, t_a, _ = diffuse_fid(args.diffuse, a_dir, b_dir, args.weights, ["--save-stats", ours_a])
    _, t_b, _ = diffuse_fid(args.diffuse, b_dir, a_dir, args.weights, ["--save-stats", ours_b])
    print(f"1. {args.n} images per folder, diffuse fid with --save-stats ({t_a:.1f} s, {t_b:.1f} s)")
    fid_ours_npz, _, log = diffuse_fid(args.diffuse, ours_a, ours_b, args.weights)
    print("  diffuse describes our file: " + log.splitlines()[0])
    pf_ours = pf_fid(fid_paths, ours_a, ours_b)
    results["real_n"] = args.n
    rank_note = "n <= d: singular covariances" if args.n <= 2048 else "n > d"
    # From folders with n <= d diffuse keeps the covariance factored and computes the trace term
    # in n dimensions; a statistics file has only Σ, so it is computed in d dimensions, where
    # the ~d - n zero eigenvalues come out as rounding noise: a small, real difference.
    check(f"real: diffuse from its .npz vs from the folders ({rank_note})", fid_ours_npz, fid_folders)
    check(f"real: pytorch-fid from our .npz vs diffuse ({rank_note})", pf_ours, fid_ours_npz)

    # 2. pytorch-fid's own writer and EDM's layout, from the same statistics.
    pf_a, pf_b = os.path.join(w, "pf_A.npz"), os.path.join(w, "pf_B.npz")
    for src, dst in [(ours_a, pf_a), (ours_b, pf_b)]:
        if os.path.exists(dst):
            os.remove(dst)
        save_fid_stats([src, dst], batch_size=50, device="cpu", dims=2048)
    edm_a, edm_b = os.path.join(w, "edm_A.npz"), os.path.join(w, "edm_B.npz")
    for src, dst in [(pf_a, edm_a), (pf_b, edm_b)]:
        with np.load(src) as f:
            np.savez(dst, mu=f["mu"], sigma=f["sigma"])
    pf_own = pf_fid(fid_paths, pf_a, pf_b)
    print("2. pytorch-fid's own files (save_fid_stats) and EDM's layout (np.savez)")
    results["real: pytorch-fid from its own .npz vs from ours"] = {"got": pf_own, "want": pf_ours}
    print(f"  pytorch-fid from its own files {pf_own:.10g}, from ours {pf_ours:.10g} (identical: {pf_own == pf_ours})")
    if pf_own != pf_ours:
        failures.append("pytorch-fid own vs ours")
    us_pf, _, log = diffuse_fid(args.diffuse, pf_a, pf_b, args.weights)
    print("  diffuse describes pytorch-fid's file: " + log.splitlines()[0])
    us_edm, _, _ = diffuse_fid(args.diffuse, edm_a, edm_b, args.weights)
    print(f"  diffuse from pytorch-fid's files {us_pf:.10g}, from EDM's {us_edm:.10g}, from ours {fid_ours_npz:.10g}")
    if not (us_pf == us_edm == fid_ours_npz):
        failures.append("diffuse: files differ")

    # 3. Full-rank synthetic statistics, written by pytorch-fid's writer.
    d, n = 2048, args.synthetic_n
    rng = np.random.default_rng(3)
    syn = []
    for k, scale in enumerate([1.0, 1.3]):
        feats = rng.normal(size=(n, d)) * scale + rng.normal(0, 0.2, d)
        raw = os.path.join(w, f"syn_raw_{k}.npz")
        np.savez(raw, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))
        dst = os.path.join(w, f"syn_pf_{k}.npz")
        if os.path.exists(dst):
            os.remove(dst)
        save_fid_stats([raw, dst], batch_size=50, device="cpu", dims=2048)
        syn.append(dst)
    t0 = time.time()
    pf_syn = pf_fid(fid_paths, syn[0], syn[1])
    t_pf = time.time() - t0
    us_syn, t_us, _ = diffuse_fid(args.diffuse, syn[0], syn[1], args.weights)
    print(f"3. synthetic, n = {n} > d = {d} (pytorch-fid {t_pf:.1f} s, diffuse {t_us:.1f} s)")
    check("synthetic full rank: diffuse from pytorch-fid's .npz vs pytorch-fid", us_syn, pf_syn)

    with open(os.path.join(w, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if failures:
        sys.exit(f"FAILED: {failures}")
    print("all checks passed")


if __name__ == "__main__":
    main()
