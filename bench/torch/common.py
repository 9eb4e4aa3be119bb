"""Helpers shared by the PyTorch counterparts: the deterministic weight formula that the Rust
tests reproduce (tests/common/mod.rs), so goldens need no weight files."""
import torch


def det(n, seed, scale):
    """n values in [-scale/2, scale/2) from an integer hash of (index, seed)."""
    m = 1 << 32
    out = []
    for i in range(n):
        h0 = (i * 2654435761 + seed * 40503) % m
        h1 = h0 ^ (h0 >> 15)
        h2 = (h1 * (2246822519 + 2 * seed)) % m
        h3 = h2 ^ (h2 >> 13)
        out.append((h3 / 4294967296.0 - 0.5) * scale)
    return torch.tensor(out, dtype=torch.float32)


def det_t(shape, seed, scale):
    n = 1
    for s in shape:
        n *= s
    return det(n, seed, scale).reshape(shape)
