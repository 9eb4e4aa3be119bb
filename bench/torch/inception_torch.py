"""PyTorch definitions shared by the FID bench scripts: the StarGAN-v2 style wrapper around
torchvision's Inception-v3 (the reference FID network), pytorch-fid's patched network, and a tiny
deterministic checkpoint built from strided views of a few shared storages (so that a full
Inception-v3 state dict is ~100 KB on disk instead of ~90 MB).
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import inception as tvi


def det(n, seed, scale):
    """The project's deterministic hash (same as `det` in the Rust tests): n values in
    [-scale/2, scale/2)."""
    i = np.arange(n, dtype=np.uint64)
    m = np.uint64(1 << 32)
    h0 = (i * np.uint64(2654435761) + np.uint64(seed * 40503)) % m
    h1 = h0 ^ (h0 >> np.uint64(15))
    h2 = (h1 * np.uint64(2246822519 + 2 * seed)) % m
    h3 = h2 ^ (h2 >> np.uint64(13))
    return ((h3.astype(np.float64) / 4294967296.0 - 0.5).astype(np.float32) * np.float32(scale))


class RefInception(nn.Module):
    """The reference wrapper (StarGAN v2 / KAIST measure_fid): torchvision Inception-v3 grouped
    in four blocks plus a `final_fc` head."""

    def __init__(self, num_classes=3):
        super().__init__()
        inc = tvi.Inception3(num_classes=1000, aux_logits=False, init_weights=False)
        self.block1 = nn.Sequential(inc.Conv2d_1a_3x3, inc.Conv2d_2a_3x3, inc.Conv2d_2b_3x3,
                                    nn.MaxPool2d(kernel_size=3, stride=2))
        self.block2 = nn.Sequential(inc.Conv2d_3b_1x1, inc.Conv2d_4a_3x3,
                                    nn.MaxPool2d(kernel_size=3, stride=2))
        self.block3 = nn.Sequential(inc.Mixed_5b, inc.Mixed_5c, inc.Mixed_5d, inc.Mixed_6a,
                                    inc.Mixed_6b, inc.Mixed_6c, inc.Mixed_6d, inc.Mixed_6e)
        self.block4 = nn.Sequential(inc.Mixed_7a, inc.Mixed_7b, inc.Mixed_7c,
                                    nn.AdaptiveAvgPool2d(output_size=(1, 1)))
        self.final_fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return x.view(x.size(0), -1)

    def logits(self, x):
        return self.final_fc(self.forward(x))


# pytorch-fid's patched blocks (TF-compatible pooling), re-implemented.
class FIDInceptionA(tvi.InceptionA):
    def _forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return [b1, b5, b3, bp]


class FIDInceptionC(tvi.InceptionC):
    def _forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = m(d)
        bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return [b1, b7, d, bp]


class _FIDInceptionE(tvi.InceptionE):
    def pool(self, x):
        raise NotImplementedError

    def _forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        bp = self.branch_pool(self.pool(x))
        return [b1, b3, d, bp]


class FIDInceptionE_1(_FIDInceptionE):
    def pool(self, x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class FIDInceptionE_2(_FIDInceptionE):
    def pool(self, x):
        return F.max_pool2d(x, 3, 1, 1)


class StdInception(nn.Module):
    """pytorch-fid's network: torchvision layout with patched Mixed blocks, 1008-class fc,
    state-dict keys `Conv2d_1a_3x3.*` ... `Mixed_7c.*`, `fc.*`."""

    def __init__(self):
        super().__init__()
        inc = tvi.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        inc.Mixed_5b = FIDInceptionA(192, pool_features=32)
        inc.Mixed_5c = FIDInceptionA(256, pool_features=64)
        inc.Mixed_5d = FIDInceptionA(288, pool_features=64)
        inc.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        inc.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        inc.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        inc.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        inc.Mixed_7b = FIDInceptionE_1(1280)
        inc.Mixed_7c = FIDInceptionE_2(2048)
        self.inc = inc

    def state_dict_std(self):
        return self.inc.state_dict()

    def load_std(self, sd):
        self.inc.load_state_dict(sd)

    def forward(self, x):
        """x already resized and in [-1, 1]; returns pool3 features [B, 2048]."""
        i = self.inc
        x = F.max_pool2d(i.Conv2d_2b_3x3(i.Conv2d_2a_3x3(i.Conv2d_1a_3x3(x))), 3, 2)
        x = F.max_pool2d(i.Conv2d_4a_3x3(i.Conv2d_3b_1x1(x)), 3, 2)
        for name in ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]:
            x = getattr(i, name)(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def name_seed(name):
    """FNV-1a of the key, reduced: a per-tensor offset into the shared storages."""
    h = 2166136261
    for b in name.encode():
        h = ((h ^ b) * 16777619) % (1 << 32)
    return h


def tiny_state_dict(template):
    """A state dict with `template`'s keys and shapes whose tensors are strided views of three
    small shared storages, so torch.save writes each storage once.
    - conv / linear weights: uniform [-0.5, 0.5) views, strides (5, 3, kw, 1)
    - BN weight ~ 1 ± 0.1, bias and running_mean ~ ± 0.05 (views)
    - BN running_var: a constant fan_in/36 expanded from a 1-element storage, which undoes the
      unscaled conv weights' gain so activations stay O(1) through the 94 layers
    """
    W = torch.from_numpy(det(16384, 11, 1.0))
    G = torch.from_numpy(1.0 + det(4096, 12, 0.2))
    B = torch.from_numpy(det(4096, 13, 0.1))
    sd = {}
    fan_in = {}
    for k, v in template.items():
        off = name_seed(k) % 3000
        shape = tuple(v.shape)
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0, dtype=torch.long)
        elif len(shape) == 4:
            o, i, kh, kw = shape
            sd[k] = W.as_strided(shape, (5, 3, kw, 1), off)
            fan_in[k.rsplit(".conv.", 1)[0]] = i * kh * kw
        elif len(shape) == 2:
            sd[k] = W.as_strided(shape, (5, 3), off)
        elif k.endswith("running_var"):
            f = fan_in[k.rsplit(".bn.", 1)[0]]
            sd[k] = torch.full((1,), f / 36.0).expand(shape)
        elif k.endswith("bn.weight"):
            sd[k] = G.as_strided(shape, (1,), off)
        else:  # bn.bias, bn.running_mean, fc bias
            sd[k] = B.as_strided(shape, (1,), off)
    return sd
