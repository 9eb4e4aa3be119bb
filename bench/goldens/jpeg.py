"""JPEG test files and Pillow's decode of them (src/data/jpeg/, tests/jpeg_decode.rs).

  python bench/goldens/jpeg.py goldens          # tests/golden/jpeg/NAME.jpg + NAME.png (Pillow's
                                               # Image.open(NAME.jpg).convert("RGB"), lossless)
  python bench/goldens/jpeg.py corpus DIR N [S]  # N random photo-like JPEGs (256-512 px, every
                                               # subsampling, progressive (a quarter of them cut
                                               # after a few scans), restarts...) as
                                               # DIR/i.jpg + DIR/i.rgb (Pillow's RGB bytes)
"""
import io
import os
import sys

import numpy as np
from PIL import Image, ImageFile, features

# libjpeg-turbo writes progressive/optimized files in one go into Pillow's output buffer; with
# restart markers at high quality Pillow's default size can be too small ("Suspension not
# allowed here").
ImageFile.MAXBLOCK = 1 << 24

GOLDEN = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "diffuse-jpeg", "tests", "golden", "jpeg"
)


def photo(w, h, rng, gray=False):
    """Smooth gradients and waves, sensor-like noise and a few saturated sharp-edged patches
    (the patches drive the IDCT and colour conversion into their range limits)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xx /= max(w, 1)
    yy /= max(h, 1)
    ch = []
    for _ in range(3):
        a, b, c, d = rng.uniform(-1, 1, 4)
        f1, f2 = rng.uniform(1, 12, 2)
        v = 0.5 + 0.3 * (a * xx + b * yy) + 0.15 * np.sin(f1 * xx * 6.28 + c) * np.cos(f2 * yy * 6.28 + d)
        ch.append(v)
    img = np.stack(ch, -1) + rng.normal(0, rng.uniform(0.005, 0.06), (h, w, 3))
    for _ in range(rng.integers(0, 4)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(1, max(2, w // 3)), y0 + rng.integers(1, max(2, h // 3))
        img[y0:y1, x0:x1] = rng.choice([0.0, 1.0], 3)
    arr = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    return im.convert("L") if gray else im


def save(im, **kw):
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def pillow_rgb(data):
    return Image.open(io.BytesIO(data)).convert("RGB")


def drop_last_scans(data, keep):
    """A progressive file cut after its first `keep` scans, closed with EOI: its AC coefficients
    stay incomplete, so libjpeg-turbo applies block smoothing (decompress_smooth_data)."""
    out, pos, scans = bytearray(data[:2]), 2, 0
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        seglen = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = pos + 2 + seglen
        if marker == 0xDA:
            # Entropy-coded data runs to the next marker that is not RSTn or stuffing.
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
            scans += 1
            if scans > keep:
                break
        out += data[pos:end]
        pos = end
    return bytes(out + b"\xff\xd9")


def strip_dht(data):
    """The file without its DHT segments, like a Motion-JPEG frame: decoders fall back to the
    T.81 Annex K tables, which are also what libjpeg-turbo encodes with unless optimizing."""
    out, pos = bytearray(data[:2]), 2
    while data[pos + 1] != 0xDA:
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if data[pos + 1] != 0xC4:
            out += data[pos:end]
        pos = end
    return bytes(out + data[pos:])


def golden_cases():
    rng = np.random.default_rng(20261125)
    p = lambda w, h, gray=False: photo(w, h, rng, gray)
    cases = [
        ("q75_420", p(64, 48), dict(quality=75)),
        ("q95_444", p(40, 24), dict(quality=95, subsampling=0)),
        ("q50_422", p(48, 32), dict(quality=50, subsampling=1)),
        ("q100_444", p(24, 24), dict(quality=100, subsampling=0)),
        ("q90_420_saturated", p(48, 48), dict(quality=90)),
        ("prog_420", p(64, 48), dict(quality=85, progressive=True)),
        ("prog_444", p(33, 17), dict(quality=90, subsampling=0, progressive=True)),
        ("prog_422", p(37, 29), dict(quality=70, subsampling=1, progressive=True)),
        ("gray_q90", p(45, 31, True), dict(quality=90)),
        ("gray_prog", p(45, 31, True), dict(quality=60, progressive=True)),
        ("optimize_420", p(64, 40), dict(quality=80, optimize=True)),
        ("restart_blocks_420", p(64, 48), dict(quality=75, restart_marker_blocks=1)),
        ("restart_rows_prog", p(64, 48), dict(quality=75, restart_marker_rows=1, progressive=True)),
        ("odd_1x1_420", p(1, 1), dict(quality=75)),
        ("odd_7x9_420", p(7, 9), dict(quality=75)),
        ("odd_2x5_420", p(2, 5), dict(quality=75)),
        ("odd_4x4_420", p(4, 4), dict(quality=75)),
        ("odd_3x3_422", p(3, 3), dict(quality=75, subsampling=1)),
        ("odd_5x3_420", p(5, 3), dict(quality=75)),
        ("odd_513x9_420", p(513, 9), dict(quality=85)),
        ("odd_17x130_422", p(17, 130), dict(quality=65, subsampling=1)),
        ("odd_19x21_prog_420", p(19, 21), dict(quality=75, progressive=True)),
        ("cmyk", p(32, 24).convert("CMYK"), dict(quality=85)),
        ("adobe_rgb", p(32, 24), dict(quality=85, keep_rgb=True)),
    ]
    out = [(name, save(im, **kw)) for name, im, kw in cases]
    prog = save(p(40, 32), quality=80, progressive=True)
    out.append(("prog_partial_smoothed", drop_last_scans(prog, 3)))
    out.append(("prog_partial_dc_only", drop_last_scans(prog, 1)))
    out.append(("no_dht_420", strip_dht(save(p(40, 32), quality=80))))
    return out


def goldens():
    os.makedirs(GOLDEN, exist_ok=True)
    total = 0
    for name, data in golden_cases():
        with open(os.path.join(GOLDEN, name + ".jpg"), "wb") as f:
            f.write(data)
        png = os.path.join(GOLDEN, name + ".png")
        pillow_rgb(data).save(png, optimize=True)
        total += len(data) + os.path.getsize(png)
    print(f"Pillow {Image.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}: "
          f"{len(golden_cases())} goldens, {total / 1024:.0f} KiB in {os.path.normpath(GOLDEN)}")


def corpus(d, n, seed=1):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(256, 513, 2))
        gray = rng.random() < 0.1
        kw = dict(quality=int(rng.integers(50, 101)), progressive=bool(rng.random() < 0.4),
                  optimize=bool(rng.random() < 0.3))
        if not gray:
            kw["subsampling"] = int(rng.integers(0, 3))
        if rng.random() < 0.15:
            kw["restart_marker_blocks" if rng.random() < 0.5 else "restart_marker_rows"] = int(rng.integers(1, 5))
        data = save(photo(w, h, rng, gray), **kw)
        if kw["progressive"] and rng.random() < 0.25:
            data = drop_last_scans(data, int(rng.integers(1, 9)))
        with open(os.path.join(d, f"{i:04d}.jpg"), "wb") as f:
            f.write(data)
        with open(os.path.join(d, f"{i:04d}.rgb"), "wb") as f:
            f.write(pillow_rgb(data).tobytes())
    print(f"{n} JPEGs in {d}")


def speed_set(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(20):
        photo(512, 512, rng).save(os.path.join(d, f"{i:02d}.jpg"), quality=90, progressive=i % 4 == 3)
    print(f"20 JPEGs in {d}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "goldens"
    if cmd == "goldens":
        goldens()
    elif cmd == "corpus":
        corpus(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    elif cmd == "speed":
        speed_set(sys.argv[2])
    else:
        sys.exit(__doc__)
