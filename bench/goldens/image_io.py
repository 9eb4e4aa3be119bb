"""Golden files for src/data/image_io.rs, computed with PIL (what torchvision's Resize uses).

Writes tests/golden/resize_{W}x{H}_to_{w}x{h}.bin (raw RGB8, row-major) for a deterministic
source image that both sides generate from `pattern()`, plus tiny PNG/JPEG decode fixtures.
Run: python bench/goldens/image_io.py  (Pillow and numpy; see bench/README.md)
"""
import json
import os

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")


def pattern(w, h):
    """Smooth gradients plus hashed noise, so both smooth and high-frequency content are tested.
    Same formula as `pattern` in tests/image_io.rs."""
    y, x, c = np.meshgrid(np.arange(h, dtype=np.uint64), np.arange(w, dtype=np.uint64),
                          np.arange(3, dtype=np.uint64), indexing="ij")
    hsh = (x * np.uint64(73856093)) ^ (y * np.uint64(19349663)) ^ (c * np.uint64(83492791))
    v = (x * np.uint64(7) + y * np.uint64(13) + c * np.uint64(50) + hsh % np.uint64(64)) % np.uint64(256)
    return v.astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = [((64, 64), (256, 256)), ((37, 23), (64, 64)), ((512, 512), (64, 64)),
             ((40, 30), (40, 75)), ((50, 20), (17, 20))]
    for (w, h), (ow, oh) in cases:
        img = Image.fromarray(pattern(w, h), "RGB")
        out = np.asarray(img.resize((ow, oh), Image.BILINEAR))
        assert out.shape == (oh, ow, 3)
        fn = f"resize_{w}x{h}_to_{ow}x{oh}.bin"
        with open(os.path.join(OUT, fn), "wb") as f:
            f.write(out.tobytes())
        print(fn, out.mean())
    # decode fixtures: grayscale, RGBA, 16-bit gray PNG; expected = PIL convert("RGB")
    src = pattern(9, 7)
    fixtures = {
        "gray.png": Image.fromarray(src[:, :, 0], "L"),
        "rgba.png": Image.fromarray(np.concatenate([src, src[:, :, :1]], axis=2), "RGBA"),
    }
    expected = {}
    for name, im in fixtures.items():
        p = os.path.join(OUT, name)
        im.save(p)
        expected[name] = np.asarray(Image.open(p).convert("RGB")).reshape(-1).tolist()
    # JPEG: decoders may differ by rounding; the test reports the max difference.
    p = os.path.join(OUT, "pattern.jpg")
    Image.fromarray(pattern(32, 24), "RGB").save(p, quality=75)
    expected["pattern.jpg"] = np.asarray(Image.open(p).convert("RGB")).reshape(-1).tolist()
    with open(os.path.join(OUT, "decode_expected.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, **expected}, f)


if __name__ == "__main__":
    main()
