"""PyTorch counterpart of `diffuse toy`: the reference 2D protocol, written independently.

  python bench/torch/toy_torch.py golden          # writes tests/golden/toy.json (+ simplenet_small.pth)
  python bench/torch/toy_torch.py run --seed 0    # the whole workflow, timed (torch.set_num_threads(2))

Used only for goldens and side-by-side timing; the Rust tests never run Python.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import det_t  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "golden")


# ---- model (reference layout: layers.i.fc, layers.i.time_embedding.mlp.{0,2}) ----
class TimeEmbedding(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        half = self.freq // 2
        f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        a = t.float()[:, None] * f[None]
        return self.mlp(torch.cat([torch.cos(a), torch.sin(a)], dim=-1))


class TimeLinear(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.time_embedding = TimeEmbedding(o)

    def forward(self, x, t):
        return self.fc(x) * self.time_embedding(t)


class SimpleNet(nn.Module):
    def __init__(self, dims=(2, 128, 128, 128, 2)):
        super().__init__()
        self.layers = nn.ModuleList([TimeLinear(a, b) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, x, t):
        if t.dim() == 0:
            t = t[None]
        for i, l in enumerate(self.layers):
            x = l(x, t)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def det_linear(lin, seed):
    o, i = lin.weight.shape
    s = 2.0 / math.sqrt(i)
    with torch.no_grad():
        lin.weight.copy_(det_t((o, i), seed, s))
        lin.bias.copy_(det_t((o,), seed + 1, s))


def det_simplenet(net):
    """Layer k: fc seeds 100k+1, mlp.0 100k+3, mlp.2 100k+5 (bias = seed + 1)."""
    for k, l in enumerate(net.layers):
        det_linear(l.fc, 100 * k + 1)
        det_linear(l.time_embedding.mlp[0], 100 * k + 3)
        det_linear(l.time_embedding.mlp[2], 100 * k + 5)
    return net


# ---- schedule and samplers (f64 tables) ----
def schedule(T=1000, b1=1e-4, bT=0.02, mode="linear"):
    if mode == "linear":
        betas = np.linspace(b1, bT, T, dtype=np.float64)
    else:
        betas = np.linspace(b1 ** 0.5, bT ** 0.5, T, dtype=np.float64) ** 2
    alphas = 1 - betas
    return betas, alphas, np.cumprod(alphas)


def ddpm_step(x, t, eps, z, betas, alphas, ab, sigma="small"):
    if sigma == "small":
        ab_prev = ab[t - 1] if t > 0 else 1.0
        s = math.sqrt(betas[t] * (1 - ab_prev) / (1 - ab[t]))
    else:
        s = math.sqrt(betas[t])
    mean = (x - eps * ((1 - alphas[t]) / math.sqrt(1 - ab[t]))) / math.sqrt(alphas[t])
    return mean + s * z if t > 0 else mean


def ddim_step(x, t, t_prev, eps, z, ab, eta):
    a_t = ab[t]
    a_p = ab[t_prev] if t_prev >= 0 else 1.0
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    sigma = eta * math.sqrt((1 - a_p) / (1 - a_t)) * math.sqrt(1 - a_t / a_p)
    return math.sqrt(a_p) * x0 + math.sqrt(max(1 - a_p - sigma ** 2, 0.0)) * eps + sigma * z


def golden():
    os.makedirs(GOLDEN, exist_ok=True)
    betas, alphas, ab = schedule()
    out = {"alpha_bar": {str(t): ab[t] for t in [0, 1, 9, 99, 499, 999]},
           "quad_alpha_bar": {str(t): schedule(mode="quad")[2][t] for t in [0, 499, 999]}}
    net = det_simplenet(SimpleNet())
    x = det_t((8, 2), 7, 4.0)
    t = torch.tensor([0, 1, 10, 100, 250, 500, 999, 42])
    with torch.no_grad():
        out["simplenet"] = {"x": x.flatten().tolist(), "t": t.tolist(), "eps": net(x, t).flatten().tolist()}
    x = det_t((8, 2), 11, 4.0)
    eps = det_t((8, 2), 12, 2.0)
    z = det_t((8, 2), 13, 2.0)
    steps = []
    for t in [999, 500, 1, 0]:
        for sig in ["small", "large"]:
            steps.append({"t": t, "sigma": sig, "out": ddpm_step(x, t, eps, z, betas, alphas, ab, sig).flatten().tolist()})
    out["ddpm_steps"] = steps
    dsteps = []
    for t, tp in [(980, 960), (500, 480), (20, 0), (0, -20)]:
        for eta in [0.0, 0.5, 1.0]:
            dsteps.append({"t": t, "t_prev": tp, "eta": eta, "out": ddim_step(x, t, tp, eps, z, ab, eta).flatten().tolist()})
    out["ddim_steps"] = dsteps
    out["inputs"] = {"x": x.flatten().tolist(), "eps": eps.flatten().tolist(), "z": z.flatten().tolist()}
    # Multi-step samplers on an analytic "model" both sides can compute.
    def dummy(x, t):
        return x * (0.5 * t / 1000.0) + 0.01 * math.cos(t / 100.0)

    def timesteps_leading(n):
        return [k * (1000 // n) for k in range(n)][::-1]

    def run_ddim(x, ts):
        for i, t in enumerate(ts):
            tp = ts[i + 1] if i + 1 < len(ts) else -1
            x = ddim_step(x, t, tp, dummy(x, t), 0, ab, 0.0)
        return x

    def run_dpm2m(x, ts):
        lam = lambda a: 0.5 * math.log(a / (1 - a))
        prev = None
        for i, t in enumerate(ts):
            a, s = math.sqrt(ab[t]), math.sqrt(1 - ab[t])
            x0 = (x - s * dummy(x, t)) / a
            if i + 1 == len(ts):
                return x0
            tn = ts[i + 1]
            an, sn = math.sqrt(ab[tn]), math.sqrt(1 - ab[tn])
            h = lam(ab[tn]) - lam(ab[t])
            if prev is None:
                D = x0
            else:
                r = prev[1] / h
                D = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev[0]
            x = (sn / s) * x - an * (math.exp(-h) - 1) * D
            prev = (x0, h)
        return x

    def run_heun(x, ts, heun=True):
        sig = lambda a: math.sqrt((1 - a) / a)
        for i, t in enumerate(ts):
            a_n = ab[ts[i + 1]] if i + 1 < len(ts) else 1.0
            s, sn = sig(ab[t]), (sig(a_n) if i + 1 < len(ts) else 0.0)
            xs = x / math.sqrt(ab[t])
            d = dummy(x, t)
            xn = xs + (sn - s) * d
            if heun and i + 1 < len(ts):
                d2 = dummy(xn * math.sqrt(a_n), ts[i + 1])
                xn = xs + (sn - s) * 0.5 * (d + d2)
            x = xn * math.sqrt(a_n)
        return x

    def run_invert(x, ts):
        asc = ts[::-1]
        cur = None
        for tn in asc:
            te = asc[0] if cur is None else cur
            a = 1.0 if cur is None else ab[cur]
            e = dummy(x, te)
            x0 = (x - math.sqrt(1 - a) * e) / math.sqrt(a)
            x = math.sqrt(ab[tn]) * x0 + math.sqrt(1 - ab[tn]) * e
            cur = tn
        return x

    xT = det_t((8, 2), 31, 4.0).double()
    ts = timesteps_leading(5)
    out["samplers"] = {
        "x": xT.flatten().tolist(), "steps": 5,
        "ddim": run_ddim(xT, ts).flatten().tolist(),
        "dpm++2m": run_dpm2m(xT, ts).flatten().tolist(),
        "euler": run_heun(xT, ts, heun=False).flatten().tolist(),
        "heun": run_heun(xT, ts).flatten().tolist(),
        "invert": run_invert(xT, ts).flatten().tolist(),
    }
    # A small reference-layout state dict for the PyTorch import test.
    small = det_simplenet(SimpleNet((2, 16, 2)))
    torch.save(small.state_dict(), os.path.join(GOLDEN, "simplenet_small.pth"))
    xs = det_t((4, 2), 21, 4.0)
    ts = torch.tensor([3, 30, 300, 900])
    with torch.no_grad():
        out["simplenet_small"] = {"x": xs.flatten().tolist(), "t": ts.tolist(), "eps": small(xs, ts).flatten().tolist()}
    with open(os.path.join(GOLDEN, "toy.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", os.path.join(GOLDEN, "toy.json"))


# ---- the reference workflow, timed ----
def swiss_roll(n, rng):
    from sklearn.datasets import make_swiss_roll
    x, _ = make_swiss_roll(n, noise=0.0, random_state=rng, hole=True)
    x = x[:, [0, 2]]
    return (x - x.mean()) / x.std() * 2


def chamfer(a, b):
    from scipy.spatial.distance import cdist
    d = cdist(a, b) ** 2
    return d.min(1).sum() + d.min(0).sum()


def run(seed, threads, eval_points=2048, ddim_steps=50):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t_all = time.time()
    data = torch.tensor(swiss_roll(1_000_000, seed), dtype=torch.float32)
    betas, alphas, ab = schedule()
    ab_t = torch.tensor(ab, dtype=torch.float32)
    net = SimpleNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0 = time.time()
    losses = []
    for step in range(5000):
        off = (step * 128) % 1_000_000
        x0 = data[off:off + 128]
        t = torch.randint(0, 1000, (128,))
        eps = torch.randn_like(x0)
        a = ab_t[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(net(xt, t), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    train_s = time.time() - t0
    ref = data[:eval_points].numpy()
    res = {"train_seconds": train_s, "final_loss": float(np.mean(losses[-100:]))}
    with torch.no_grad():
        t0 = time.time()
        x = torch.randn(eval_points, 2)
        for t in range(999, -1, -1):
            eps = net(x, torch.tensor(t))
            z = torch.randn_like(x) if t > 0 else None
            x = ddpm_step(x, t, eps, z, betas, alphas, ab)
        res["ddpm_seconds"] = time.time() - t0
        res["cd_ddpm"] = float(chamfer(x.numpy(), ref))
        t0 = time.time()
        x = torch.randn(eval_points, 2)
        ts = [k * (1000 // ddim_steps) for k in range(ddim_steps)][::-1]
        for i, t in enumerate(ts):
            tp = ts[i + 1] if i + 1 < len(ts) else -1
            eps = net(x, torch.tensor(t))
            x = ddim_step(x, t, tp, eps, 0, ab, 0.0)
        res["ddim_seconds"] = time.time() - t0
        res["cd_ddim"] = float(chamfer(x.numpy(), ref))
    res["total_seconds"] = time.time() - t_all
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["golden", "run"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    golden() if a.mode == "golden" else run(a.seed, a.threads)
