"""Writes the hand-made part of the fuzz corpus (tests/fuzz_corpus/<target>/; the JPEG one in
crates/diffuse-jpeg/tests/fuzz_corpus/), run once:

    python bench/goldens/fuzz_corpus.py

The files are edge cases a mutator rarely reaches by chance: decompression bombs (a small file
whose header claims a huge image or tensor), a PyTorch checkpoint whose pickle calls
`os.system` (it must be refused without running anything), pickles naming huge storages or
stride-0 views, and text files with odd numbers. Files named `bomb_*` or `evil_*` must be
rejected with an error; the others are valid seeds that mutations start from. Needs only the
standard library and Pillow (the PNG seeds); PyTorch is not needed: pickles are written with
stand-in `torch` classes whose pickled form is what `torch.save` writes.
"""
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fuzz_corpus")


# The JPEG codec's corpus lives with its crate.
JPEG_CRATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "diffuse-jpeg", "tests")


def out(target, name, data):
    d = os.path.join(JPEG_CRATE, "fuzz_corpus") if target == "jpeg" else os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------
def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(w, h, idat):
    sig = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return sig + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def make_png():
    from PIL import Image

    img = Image.new("RGB", (7, 5))
    img.putdata([(x * 30, y * 50, (x * y) % 256) for y in range(5) for x in range(7)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out("png", "rgb_7x5.png", buf.getvalue())
    buf = io.BytesIO()
    img.convert("P", palette=Image.ADAPTIVE, colors=4).save(buf, "PNG")
    out("png", "palette_7x5.png", buf.getvalue())
    buf = io.BytesIO()
    img.convert("LA").save(buf, "PNG")
    out("png", "gray_alpha_7x5.png", buf.getvalue())
    buf = io.BytesIO()
    Image.new("I;16", (3, 4), 40000).save(buf, "PNG")
    out("png", "gray16_3x4.png", buf.getvalue())
    buf = io.BytesIO()
    img.convert("1").save(buf, "PNG")
    out("png", "bilevel_7x5.png", buf.getvalue())
    # A 1-row image compressed to almost nothing, with a header claiming 2^31−1 × 2^31−1.
    out("png", "bomb_huge_header.png", png_bomb(0x7FFFFFFF, 0x7FFFFFFF, zlib.compress(b"\0" * 64)))
    # 12000 × 12000 RGB (432 MB decoded, under the pixel limit) from 7 KB of deflated zeros.
    out("png", "bomb_zeros_12000x12000.png",
        png_bomb(12000, 12000, zlib.compress(b"\0" * (12000 * 3 + 1) * 200, 9)))


# ---------------------------------------------------------------------------------------------
# JPEG: the goldens in crates/diffuse-jpeg/tests/golden/jpeg are the seeds; here only headers claiming huge sizes.
# ---------------------------------------------------------------------------------------------
def patch_sof(data, w, h, marker=None):
    data = bytearray(data)
    i = 2
    while i < len(data):
        assert data[i] == 0xFF
        m = data[i + 1]
        ln = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if m in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, i + 5, h, w)
            if marker is not None:
                data[i + 1] = marker
            return bytes(data)
        i += 2 + ln
    raise ValueError("no SOF")


def make_jpeg():
    gold = os.path.join(JPEG_CRATE, "golden", "jpeg")
    base = open(os.path.join(gold, "odd_7x9_420.jpg"), "rb").read()
    prog = open(os.path.join(gold, "gray_prog.jpg"), "rb").read()
    out("jpeg", "bomb_65535x65535.jpg", patch_sof(base, 65535, 65535))
    out("jpeg", "bomb_13000x13000.jpg", patch_sof(base, 13000, 13000))
    out("jpeg", "bomb_progressive_13000x13000.jpg", patch_sof(prog, 13000, 13000))
    # Lossless JPEG (SOF3) goes to the fallback decoder, which must check the size too.
    gray = open(os.path.join(gold, "gray_q90.jpg"), "rb").read()
    out("jpeg", "bomb_lossless_13000x13000.jpg", patch_sof(gray, 13000, 13000, marker=0xC3))
    # Arithmetic coding (SOF9): neither decoder implements it; refused.
    out("jpeg", "evil_arithmetic_13000x13000.jpg", patch_sof(base, 13000, 13000, marker=0xC9))


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------
def safetensors(header, data, header_len=None):
    h = json.dumps(header).encode()
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + data


def make_safetensors():
    ok = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    out("safetensors", "tiny.safetensors", safetensors(ok, b"\0" * 16))
    out("safetensors", "evil_header_len_2e63.safetensors",
        safetensors(ok, b"\0" * 16, header_len=1 << 63))
    out("safetensors", "evil_header_len_past_end.safetensors",
        safetensors(ok, b"\0" * 16, header_len=1 << 20))
    big = {"layers.0.fc.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 20],
                                  "data_offsets": [0, 16]}}
    out("safetensors", "bomb_shape_2e40.safetensors", safetensors(big, b"\0" * 16))
    past = {"layers.0.fc.weight": {"dtype": "F32", "shape": [1 << 28], "data_offsets": [0, 1 << 30]}}
    out("safetensors", "evil_offsets_past_end.safetensors", safetensors(past, b"\0" * 16))
    overflow = {"w": {"dtype": "F64", "shape": [1 << 62, 8], "data_offsets": [0, 16]}}
    out("safetensors", "evil_shape_overflow.safetensors", safetensors(overflow, b"\0" * 16))
    deep = b"[" * 20000 + b"]" * 20000
    out("safetensors", "evil_deep_json.safetensors", struct.pack("<Q", len(deep)) + deep)


# ---------------------------------------------------------------------------------------------
# PyTorch zip checkpoints, written with stand-ins for torch's classes.
# ---------------------------------------------------------------------------------------------
def install_fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("stand-in")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage = FloatStorage
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return FloatStorage, _rebuild_tensor_v2


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class TensorRef:
    """Pickles like torch.Tensor: _rebuild_tensor_v2(storage, offset, size, stride, …)."""

    def __init__(self, storage, size, stride, offset=0):
        self.storage, self.size, self.stride, self.offset = storage, size, stride, offset

    def __reduce__(self):
        import collections

        return (REBUILD, (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                          collections.OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FLOAT_STORAGE, obj.key, "cpu", obj.numel)
        return None


def torch_zip(obj, storages, name="archive"):
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as f:
        f.writestr(f"{name}/data.pkl", buf.getvalue())
        f.writestr(f"{name}/byteorder", "little")
        for key, data in storages.items():
            f.writestr(f"{name}/data/{key}", data)
        f.writestr(f"{name}/version", "3\n")
    return z.getvalue()


class Evil:
    """What a hostile checkpoint carries: unpickling calls os.system(cmd)."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def make_pytorch():
    import collections

    s = Storage("0", 4)
    ok = collections.OrderedDict([("w", TensorRef(s, [2, 2], [2, 1]))])
    out("pytorch", "tiny.pt", torch_zip(ok, {"0": b"\0" * 16}))
    # The command would create this file; the test checks it never appears.
    evil = collections.OrderedDict([
        ("layers.0.fc.weight", Evil("touch diffuse_pwned_marker")),
        ("w", TensorRef(s, [2, 2], [2, 1])),
    ])
    out("pytorch", "evil_os_system.pt", torch_zip(evil, {"0": b"\0" * 16}))
    buf = io.BytesIO()
    pickle.dump({"state_dict": Evil("touch diffuse_pwned_marker")}, buf, protocol=2)
    out("pytorch", "evil_os_system_plain.pt", buf.getvalue())
    # A storage claiming 2^40 floats with a 16-byte entry.
    huge = Storage("0", 1 << 40)
    out("pytorch", "evil_storage_2e40.pt",
        torch_zip({"layers.0.fc.weight": TensorRef(huge, [1 << 20, 1 << 20], [1 << 20, 1])},
                  {"0": b"\0" * 16}))
    # A stride-0 view: 4 bytes of storage expanded to 10^5 × 10^4 floats (4 GB) under the name
    # of a real parameter, so that burn would read it before comparing shapes.
    one = Storage("0", 1)
    out("pytorch", "bomb_expand_view.pt",
        torch_zip({"layers.0.fc.weight": TensorRef(one, [100000, 10000], [0, 0])},
                  {"0": b"\0" * 4}))
    deep = b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b"."
    out("pytorch", "evil_deep_nesting_plain.pt", deep)


# ---------------------------------------------------------------------------------------------
# Text files
# ---------------------------------------------------------------------------------------------
def make_text():
    out("json", "deep_nesting.json", b"[" * 20000 + b"]" * 20000)
    out("json", "huge_number.json", b'{"kind": "toy", "step": 1' + b"0" * 5000 + b"}")
    out("json", "long_string.json", b'{"kind": "' + b"x" * 20000 + b'"}')
    out("json", "bom.json", b'\xef\xbb\xbf{"kind": "toy"}')
    out("points_csv", "points.csv", b"x,y\n0.5,-1.25\n1e-3,2E2\n-0,+7\n")
    out("points_csv", "evil_nan.csv", b"x,y\nNaN,1\n")
    out("points_csv", "evil_inf.csv", b"x,y\n1e999,1\n")
    out("points_csv", "evil_long_line.csv", b"x,y\n" + b"1" * 20000 + b",2\n")
    out("labels_csv", "labels.csv", b"file,class\n0.png,3\n1.png,7\n2.png,0\n")
    out("labels_csv", "evil_no_header.csv", b"0.png,3\n")
    out("labels_csv", "evil_long_line.csv", b"file,class\n" + b"a" * 20000 + b"\n")


if __name__ == "__main__":
    FLOAT_STORAGE, REBUILD = install_fake_torch()
    make_png()
    make_jpeg()
    make_safetensors()
    make_pytorch()
    make_text()
    for target in sorted(os.listdir(ROOT)):
        files = sorted(os.listdir(os.path.join(ROOT, target)))
        size = sum(os.path.getsize(os.path.join(ROOT, target, f)) for f in files)
        print(f"{target}: {len(files)} files, {size} bytes")
