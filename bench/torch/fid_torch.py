"""Reference computations for the FID feature (src/nn/inception.rs, src/metrics/fid.rs).

  python bench/torch/fid_torch.py goldens      # writes small committed files under tests/golden/
  python bench/torch/fid_torch.py throughput   # images/s of the reference network, 256x256, batch 32
  python bench/torch/fid_torch.py folders DIR  # writes DIR/{gt,gen}/*.png, DIR/tiny.ckpt and prints
                                         # the reference FID (PIL resize, torchvision, scipy)
  python bench/torch/fid_torch.py jpeg DIR     # after `folders`: DIR/gt_jpg = DIR/gt saved by PIL as
                                         # quality-75 JPEGs, and the reference FID gt_jpg vs gen
"""
import json
import os
import sys
import time

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

from inception_torch import RefInception, StdInception, det, tiny_state_dict

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")


def write_f32(name, arr):
    np.ascontiguousarray(arr, dtype="<f4").tofile(os.path.join(GOLDEN, name))


def frechet_scipy(mu1, s1, mu2, s2):
    """pytorch-fid's frechet_distance (scipy sqrtm, eps fallback, real part)."""
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + off).dot(s2 + off))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_eig(mu1, s1, mu2, s2):
    """Tr sqrt(S1 S2) = Tr sqrt(sqrt(S1) S2 sqrt(S1)) via symmetric eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r1 @ s2 @ r1
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr = np.sqrt(np.clip(ev, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr)


def stats(f):
    f = np.asarray(f, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def feature_set(n, d, seed, shift):
    """Deterministic features: det values with a per-dimension trend, so sets differ in mean and
    covariance. Same formula as `feature_set` in tests/fid.rs."""
    x = det(n * d, seed, 2.0).astype(np.float64).reshape(n, d)
    x = x + shift * np.arange(d) / d
    x[:, 1::2] += 0.5 * x[:, 0::2][:, : x[:, 1::2].shape[1]]
    return x


def goldens():
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    os.makedirs(GOLDEN, exist_ok=True)
    # Reference layout: a plain state dict saved as .ckpt, like afhq_inception_v3.ckpt.
    ref = RefInception(3).eval()
    sd = tiny_state_dict(ref.state_dict())
    torch.save(sd, os.path.join(GOLDEN, "inception_ref_tiny.ckpt"))
    ref.load_state_dict(sd)
    x = torch.from_numpy(det(2 * 3 * 96 * 96, 7, 2.0)).view(2, 3, 96, 96)
    with torch.no_grad():
        f = ref(x)
        logits = ref.final_fc(f)
    write_f32("inception_ref_features.bin", f.numpy())
    write_f32("inception_ref_logits.bin", logits.numpy())
    # pytorch-fid layout, nested under "state_dict" in a .pth.
    std = StdInception().eval()
    sds = tiny_state_dict(std.state_dict_std())
    torch.save({"state_dict": sds, "note": "synthetic pytorch-fid layout"},
               os.path.join(GOLDEN, "inception_std_tiny.pth"))
    std.load_std(sds)
    xs = torch.from_numpy(det(2 * 3 * 80 * 80, 8, 2.0)).view(2, 3, 80, 80)
    with torch.no_grad():
        fs = std(xs)
    write_f32("inception_std_features.bin", fs.numpy())
    # torch bilinear (align_corners=False, no antialias) on [0,1] images, as pytorch-fid resizes.
    interp = {}
    for (h, w), (oh, ow) in [((23, 37), (64, 64)), ((100, 90), (41, 47))]:
        src = (torch.from_numpy(det(3 * h * w, 9, 1.0)) + 0.5).view(1, 3, h, w)
        out = F.interpolate(src, size=(oh, ow), mode="bilinear", align_corners=False)
        write_f32(f"interp_{w}x{h}_to_{ow}x{oh}.bin", out.numpy())
    # Frechet distances on fixed feature sets.
    fid = {}
    for name, (n1, n2, d) in {"full_rank": (200, 150, 16), "rank_deficient": (20, 25, 64)}.items():
        a = feature_set(n1, d, 21, 0.0)
        b = feature_set(n2, d, 22, 0.7)
        m1, s1 = stats(a)
        m2, s2 = stats(b)
        fid[name] = {"n1": n1, "n2": n2, "d": d, "scipy": frechet_scipy(m1, s1, m2, s2),
                     "eig": frechet_eig(m1, s1, m2, s2),
                     "mu1_0": m1[0], "s1_01": s1[0, 1], "tr_s2": float(np.trace(s2))}
        print(name, fid[name])
    with open(os.path.join(GOLDEN, "fid_expected.json"), "w") as fh:
        json.dump(fid, fh, indent=1)
    print("features ref", f.mean().item(), "std", fs.mean().item())


def throughput(n_batches=3):
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    ref = RefInception(3).eval()
    ref.load_state_dict(tiny_state_dict(ref.state_dict()))
    x = torch.from_numpy(det(32 * 3 * 256 * 256, 5, 2.0)).view(32, 3, 256, 256)
    with torch.inference_mode():
        ref(x)  # warm-up
        ts = []
        for _ in range(n_batches):
            t0 = time.perf_counter()
            ref(x)
            ts.append(time.perf_counter() - t0)
    med = sorted(ts)[len(ts) // 2]
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} batch 32 @256: "
          f"median {med:.3f} s/batch -> {32 / med:.2f} images/s (times {['%.3f' % t for t in ts]})")


def folder_images(d, n, seed, size=64):
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        v = det(size * size * 3, seed * 1000 + i, 1.0).reshape(size, size, 3) + 0.5
        yy, xx = np.mgrid[0:size, 0:size] / size
        base = np.stack([np.sin(6 * xx + i * 0.3), np.cos(5 * yy + seed), xx * yy], -1) * 0.35 + 0.5
        img = np.clip(0.7 * base + 0.3 * v + (0.05 * seed), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(os.path.join(d, f"{i}.png"))


def reference_fid(gt, gen, ckpt, img_size=256, batch=16):
    """KAIST measure_fid.py pipeline: PIL RGB -> Resize((256,256)) -> ToTensor -> Normalize(.5,.5)
    -> StarGAN-v2 wrapper -> 2048 features -> np.cov -> scipy sqrtm."""
    import torchvision.transforms as T
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    net = RefInception(3).eval()
    sd = torch.load(ckpt)
    net.load_state_dict(sd)
    tf = T.Compose([T.Resize((img_size, img_size)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])

    def feats(d):
        files = sorted(p for p in os.listdir(d) if p.lower().endswith((".png", ".jpg", ".jpeg")))
        out = []
        for s in range(0, len(files), batch):
            x = torch.stack([tf(Image.open(os.path.join(d, p)).convert("RGB")) for p in files[s:s + batch]])
            with torch.no_grad():
                out.append(net(x).numpy())
        return np.concatenate(out)

    f1, f2 = feats(gt), feats(gen)
    m1, s1 = stats(f1)
    m2, s2 = stats(f2)
    return frechet_scipy(m1, s1, m2, s2), frechet_eig(m1, s1, m2, s2), f1, f2


def folders(root):
    gt, gen = os.path.join(root, "gt"), os.path.join(root, "gen")
    folder_images(gt, 40, 1)
    folder_images(gen, 30, 2)
    ckpt = os.path.join(GOLDEN, "inception_ref_tiny.ckpt")
    t0 = time.perf_counter()
    fs, fe, f1, f2 = reference_fid(gt, gen, ckpt)
    np.save(os.path.join(root, "features_gt.npy"), f1)
    print(f"reference FID (scipy sqrtm) {fs:.9g}  (eigen form) {fe:.9g}  "
          f"[{len(f1)} vs {len(f2)} images, {time.perf_counter() - t0:.1f} s]")


def test_images(d, n, seed):
    """`write_images` of tests/fid.rs: 16x16 RGB from the project's hash, truncated to u8."""
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        v = det(16 * 16 * 3, seed * 100 + i, 255.0).reshape(16, 16, 3)
        Image.fromarray((v.astype(np.float32) + np.float32(127.5)).astype(np.uint8)).save(
            os.path.join(d, f"{i}.png"))


def test_folders_golden(root):
    """The value golden of tests/fid.rs `fid_between_folders_and_errors`: reference-mode FID at
    75 px of its two folders (4 vs 3 images) with the tiny test Inception, into
    tests/golden/fid_expected.json["folders_ref_75"]."""
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    test_images(a, 4, 1)
    test_images(b, 3, 2)
    fs, fe, _, _ = reference_fid(a, b, os.path.join(GOLDEN, "inception_ref_tiny.ckpt"), img_size=75, batch=3)
    path = os.path.join(GOLDEN, "fid_expected.json")
    with open(path) as f:
        doc = json.load(f)
    doc["folders_ref_75"] = {"scipy_sqrtm": float(fs), "eigen": float(fe)}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"folders_ref_75: scipy sqrtm {fs:.9g}, eigen form {fe:.9g} -> {path}")


def jpeg_folders(root):
    """The JPEG variant of `folders`: FID of PIL-decoded JPEG ground truth (src/data/jpeg)."""
    gt, gt_jpg, gen = (os.path.join(root, d) for d in ("gt", "gt_jpg", "gen"))
    os.makedirs(gt_jpg, exist_ok=True)
    for f in sorted(os.listdir(gt)):
        if f.endswith(".png"):
            Image.open(os.path.join(gt, f)).convert("RGB").save(
                os.path.join(gt_jpg, f[:-4] + ".jpg"), quality=75)
    ckpt = os.path.join(GOLDEN, "inception_ref_tiny.ckpt")
    fs, fe, f1, f2 = reference_fid(gt_jpg, gen, ckpt)
    print(f"reference FID, JPEG gt (scipy sqrtm) {fs:.9g}  (eigen form) {fe:.9g}  "
          f"[{len(f1)} vs {len(f2)} images]")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "goldens"
    if cmd == "goldens":
        goldens()
    elif cmd == "throughput":
        throughput()
    elif cmd == "folders":
        folders(sys.argv[2])
    elif cmd == "jpeg":
        jpeg_folders(sys.argv[2])
    elif cmd == "test-folders":
        test_folders_golden(sys.argv[2])
