"""Goldens for `diffuse prepare-eval` (tests/prepare_eval.rs), computed with Pillow, and a
side-by-side check of a whole evaluation folder.

The course builds its FID folder (`python dataset.py`) by copying every val image flat into
`eval/<file name>`, then `img = Image.open(p); img = img.resize((64, 64)); img.save(p)`:
Pillow's default filter (BICUBIC for RGB) and, for `.jpg`, Pillow's default JPEG settings
(libjpeg-turbo, quality 75, 4:2:0). `course_eval` below is that code.

Writes, under tests/golden/:
  resize_bicubic_{W}x{H}_to_{w}x{h}.bin  raw RGB8 of `pattern(W, H).resize((w, h))`
  (crates/diffuse-jpeg/tests/golden/) jpeg_encode/*.jpg: Pillow's `save` of known pixels
  prepare_eval/val/<class>/*             a small source tree (JPEGs as AFHQ ships, one PNG,
                                         one grayscale JPEG, one JPEG with a comment)
  prepare_eval/eval/*                    the course's eval folder built from it by Pillow

Run: python bench/goldens/prepare_eval.py            (goldens)
     python bench/goldens/prepare_eval.py --bench N  (N synthetic 512×512 JPEGs: Pillow's
        folder vs `target/release/diffuse prepare-eval`, bytes and FID with the tiny
        Inception weights; needs a release build)
     python bench/goldens/prepare_eval.py --fuzz DIR N, then
     PREPARE_EVAL_FUZZ=DIR cargo test --release --test prepare_eval -- --ignored
        (N random images of random sizes and qualities, encoder vs Pillow byte for byte)
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import PIL
from PIL import Image, features

sys.path.insert(0, os.path.dirname(__file__))
from image_io import pattern  # noqa: E402  (same formula as the Rust tests)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "golden")


def smooth(w, h, seed):
    """A photo-like image: a few low-frequency waves and blobs per channel, mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        v = rng.uniform(60, 190) * np.ones((h, w))
        for _ in range(4):
            fx, fy = rng.uniform(0.5, 4, 2) * 2 * np.pi / np.array([w, h])
            v += rng.uniform(10, 40) * np.sin(fx * x + fy * y + rng.uniform(0, 6.3))
        for _ in range(3):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * max(w, h)
            v += rng.uniform(-60, 60) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img[:, :, c] = v + rng.normal(0, 3, (h, w))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def course_eval(val_dir, eval_dir):
    """The course's `dataset.py` __main__ block, minus the multiprocessing pool."""
    os.makedirs(eval_dir, exist_ok=True)
    for cat in sorted(os.listdir(val_dir)):
        for src in sorted(p for p in _rglob(os.path.join(val_dir, cat))):
            dst = os.path.join(eval_dir, os.path.basename(src))
            shutil.copy(src, dst)
            img = Image.open(dst)
            img = img.resize((64, 64))
            img.save(dst)


def _rglob(d):
    for base, _, files in os.walk(d):
        for f in files:
            if f.lower().endswith((".png", ".jpg", ".jpeg")):
                yield os.path.join(base, f)


def resize_goldens():
    cases = [((512, 512), (64, 64)), ((37, 23), (64, 64)), ((100, 90), (64, 64)),
             ((20, 16), (64, 48)), ((40, 30), (40, 75)), ((50, 20), (17, 20))]
    for (w, h), (ow, oh) in cases:
        out = np.asarray(Image.fromarray(pattern(w, h), "RGB").resize((ow, oh)))
        assert out.shape == (oh, ow, 3)
        fn = f"resize_bicubic_{w}x{h}_to_{ow}x{oh}.bin"
        with open(os.path.join(OUT, fn), "wb") as f:
            f.write(out.tobytes())
        print(fn, out.mean())


def encode_cases():
    """(file name, pixels, save kwargs). The Rust test rebuilds the pixels: `pattern` from its
    formula, `smooth` from the committed 64×64 PNG."""
    sm = smooth(64, 64, 7)
    Image.fromarray(sm, "RGB").save(
        os.path.join(ROOT, "crates", "diffuse-jpeg", "tests", "golden", "jpeg_encode", "smooth_64x64.png")
    )
    cases = [("smooth_64x64.jpg", sm, {})]
    for w, h in [(64, 64), (37, 23), (16, 16), (17, 9), (1, 1), (8, 40), (130, 33)]:
        cases.append((f"pattern_{w}x{h}.jpg", pattern(w, h), {}))
    for q in [10, 50, 95, 100]:
        cases.append((f"pattern_64x64_q{q}.jpg", pattern(64, 64), {"quality": q}))
    cases.append(("pattern_64x64_comment.jpg", pattern(64, 64), {"comment": b"made by dataset.py"}))
    return cases


def jpeg_goldens():
    d = os.path.join(ROOT, "crates", "diffuse-jpeg", "tests", "golden", "jpeg_encode")
    os.makedirs(d, exist_ok=True)
    for name, px, kw in encode_cases():
        Image.fromarray(px, "RGB").save(os.path.join(d, name), **kw)
        print(name, os.path.getsize(os.path.join(d, name)))


def source_tree(val):
    """The small val tree of the folder golden."""
    for cat in ["cat", "dog", "wild"]:
        os.makedirs(os.path.join(val, cat), exist_ok=True)
    save = lambda px, rel, **kw: Image.fromarray(px).save(os.path.join(val, rel), **kw)  # noqa
    save(smooth(128, 128, 1), "cat/flickr_cat_000001.jpg", quality=90)
    save(smooth(96, 72, 2), "cat/pixabay_cat_000002.jpg", quality=90, comment=b"a cat")
    save(smooth(37, 23, 3), "dog/flickr_dog_000003.jpg", quality=95)
    save(smooth(50, 40, 4), "dog/pixabay_dog_000004.png")
    save(smooth(80, 80, 5)[:, :, 1], "wild/flickr_wild_000005.jpg", quality=90)
    os.makedirs(os.path.join(val, "wild", "nested"), exist_ok=True)
    save(smooth(64, 64, 6), "wild/nested/pixabay_wild_000006.jpg", quality=90)


def folder_golden():
    base = os.path.join(OUT, "prepare_eval")
    shutil.rmtree(base, ignore_errors=True)
    source_tree(os.path.join(base, "val"))
    course_eval(os.path.join(base, "val"), os.path.join(base, "eval"))
    for f in sorted(os.listdir(os.path.join(base, "eval"))):
        print("eval/" + f, os.path.getsize(os.path.join(base, "eval", f)))


def bench(n):
    """Pillow's folder vs ours on n synthetic 512×512 JPEG sources (3 classes)."""
    exe = os.path.join(ROOT, "target", "release", "diffuse")
    weights = os.path.join(OUT, "inception_ref_tiny.ckpt")
    tmp = tempfile.mkdtemp(prefix="prepare_eval_bench_")
    try:
        val = os.path.join(tmp, "ours", "val")
        for i in range(n):
            cat = ["cat", "dog", "wild"][i % 3]
            os.makedirs(os.path.join(val, cat), exist_ok=True)
            Image.fromarray(smooth(512, 512, 1000 + i)).save(
                os.path.join(val, cat, f"img_{i:05d}.jpg"), quality=95)
        pil_eval = os.path.join(tmp, "pillow_eval")
        course_eval(val, pil_eval)
        subprocess.run([exe, "prepare-eval", os.path.join(tmp, "ours")], check=True)
        ours = os.path.join(tmp, "ours", "eval")
        names = sorted(os.listdir(pil_eval))
        same = sum(open(os.path.join(pil_eval, f), "rb").read()
                   == open(os.path.join(ours, f), "rb").read() for f in names)
        maxdiff = max(np.abs(np.asarray(Image.open(os.path.join(pil_eval, f)).convert("RGB"), int)
                             - np.asarray(Image.open(os.path.join(ours, f)).convert("RGB"), int)).max()
                      for f in names)
        print(f"{len(names)} files, {same} byte-identical, max decoded difference {maxdiff}")
        # A second folder to measure FID against: the lossless bilinear PNG variant.
        png_root = os.path.join(tmp, "png")
        shutil.copytree(val, os.path.join(png_root, "val"))
        subprocess.run([exe, "prepare-eval", png_root, "--format", "png"], check=True)

        def fid(a, b):
            r = subprocess.run([exe, "fid", a, b, "--weights", weights], check=True,
                               capture_output=True, text=True)
            return float(r.stdout.strip().splitlines()[-1].split()[-1])
        f_pil, f_ours = fid(pil_eval, os.path.join(png_root, "eval")), fid(ours, os.path.join(png_root, "eval"))
        print(f"FID(course folder by Pillow, PNG folder) = {f_pil:.6f}")
        print(f"FID(course folder by diffuse, PNG folder) = {f_ours:.6f}")
        print(f"relative difference {abs(f_pil - f_ours) / abs(f_pil):.2e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fuzz(d, n):
    """n random images (1–149 px a side: noise, photo-like, saturated, constant, black/white)
    as lossless `{i}_q{q}.png` and Pillow's `save(quality=q)` as `{i}_q{q}.jpg`, for the
    ignored test `jpeg_encoder_matches_pillow_on_a_corpus`."""
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = int(rng.integers(1, 150)), int(rng.integers(1, 150))
        k = i % 5
        if k == 0:
            px = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif k == 1:
            px = smooth(w, h, i)
        elif k == 2:
            px = (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)
        elif k == 3:
            px = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        else:
            px = np.where(rng.random((h, w, 1)) < 0.5, 0, 255).astype(np.uint8).repeat(3, 2)
        q = int(rng.choice([75, 75, 75, 1, 5, 20, 50, 90, 99, 100]))
        Image.fromarray(px, "RGB").save(os.path.join(d, f"{i}_q{q}.png"))
        Image.fromarray(px, "RGB").save(os.path.join(d, f"{i}_q{q}.jpg"), quality=q)
    print(f"{n} cases in {d}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=int, default=0)
    ap.add_argument("--fuzz", nargs=2, metavar=("DIR", "N"))
    a = ap.parse_args()
    print("Pillow", PIL.__version__, "libjpeg-turbo", features.version("libjpeg_turbo"))
    if a.bench:
        bench(a.bench)
        return
    if a.fuzz:
        fuzz(a.fuzz[0], int(a.fuzz[1]))
        return
    resize_goldens()
    jpeg_goldens()
    folder_golden()


if __name__ == "__main__":
    main()
