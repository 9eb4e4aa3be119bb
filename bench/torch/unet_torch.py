"""PyTorch twin of `src/nn/unet.rs` (the reference DDPM UNet, reference state-dict key names).

Two uses, neither needed by `cargo test`:

  python bench/torch/unet_torch.py golden tests/golden
      Writes a small deterministic network (`unet_small.pth`, a plain state dict) and its
      outputs for fixed inputs (`unet_small.json`); the Rust test imports the .pth and must
      reproduce the outputs.

  python bench/torch/unet_torch.py bench [ITERS] [all|train|fwd] [WARMUP]
      Times, at the reference AFHQ configuration with torch.set_num_threads(2):
      a training step (forward + MSE + backward + Adam) at batch 16, 64x64;
      a forward pass at batch 32 without autograd;
      DDIM-50 sampling with CFG (2x batch per network call) for a batch of 16, per image.

  python bench/torch/unet_torch.py step [--steps N] [--warmup K] [--amp] [--json] ...
  python bench/torch/unet_torch.py sample [--steps 50] [--cfg-scale 7.5] [--json] ...
      The twins of `diffuse bench step` and `diffuse bench sample` (bench/gpu_verdict.sh): a
      training step of forward + MSE + backward + Adam + EMA on a fixed batch already on the
      device, one synchronisation per step; DDIM with CFG (2x batch per network call), the
      whole loop per run. `--amp` runs the network under bf16 autocast (norms, softmax and the
      loss stay f32); without it PyTorch's defaults apply (TF32 convolutions).

Only the module layout matters for interop; the weights written by `golden` are random
(not the reference init) so every parameter influences the output.
"""
import json
import math
import os
import statistics
import sys
import time

STARTED = time.perf_counter()  # before `import torch`: the twin's cold start counts it

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoid(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class TimeEmbedding(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        if t.ndim == 0:
            t = t.unsqueeze(-1)
        return self.mlp(sinusoid(t, self.freq))


class DownSample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.main = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, temb):
        return self.main(x)


class UpSample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.main = nn.Conv2d(c, c, 3, stride=1, padding=1)

    def forward(self, x, temb):
        return self.main(F.interpolate(x, scale_factor=2, mode="nearest"))


class AttnBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c)
        self.proj_q = nn.Conv2d(c, c, 1)
        self.proj_k = nn.Conv2d(c, c, 1)
        self.proj_v = nn.Conv2d(c, c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.group_norm(x)
        tok = lambda y: y.reshape(b, c, h * w).transpose(1, 2)
        q, k, v = tok(self.proj_q(n)), tok(self.proj_k(n)), tok(self.proj_v(n))
        o = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.proj(o.transpose(1, 2).reshape(b, c, h, w))


class RefAttnBlock(AttnBlock):
    """The reference module's attention as written there (two `torch.bmm` and a softmax over an
    explicit HW x HW matrix) instead of `F.scaled_dot_product_attention`: same function, same
    parameters; `BENCH_NET=reference` times the network built this way."""

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.group_norm(x)
        q = self.proj_q(n).permute(0, 2, 3, 1).reshape(b, h * w, c)
        k = self.proj_k(n).reshape(b, c, h * w)
        wgt = F.softmax(torch.bmm(q, k) * (int(c) ** (-0.5)), dim=-1)
        v = self.proj_v(n).permute(0, 2, 3, 1).reshape(b, h * w, c)
        o = torch.bmm(wgt, v).view(b, h, w, c).permute(0, 3, 1, 2)
        return x + self.proj(o)


def reference_init(net):
    """The reference's initialisation: xavier_uniform weights and zero biases for every conv and
    linear, gain 1e-5 for each ResBlock's last conv, the attention output projection and the
    tail conv (the class table keeps nn.Embedding's N(0, 1))."""
    small = set()
    for m in net.modules():
        if isinstance(m, ResBlock):
            small.add(m.block2[-1])
        if isinstance(m, AttnBlock):
            small.add(m.proj)
    small.add(net.tail[-1])
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=1e-5 if m in small else 1.0)
            nn.init.zeros_(m.bias)
    return net


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, dropout, attn, groups):
        super().__init__()
        self.block1 = nn.Sequential(nn.GroupNorm(groups, cin), Swish(), nn.Conv2d(cin, cout, 3, padding=1))
        self.temb_proj = nn.Sequential(Swish(), nn.Linear(tdim, cout))
        self.block2 = nn.Sequential(
            nn.GroupNorm(groups, cout), Swish(), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        )
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        attn_cls = RefAttnBlock if os.environ.get("BENCH_NET") == "reference" else AttnBlock
        self.attn = attn_cls(cout, groups) if attn else nn.Identity()

    def forward(self, x, temb):
        h = self.block1(x)
        h = h + self.temb_proj(temb)[:, :, None, None]
        h = self.block2(h)
        return self.attn(h + self.shortcut(x))


class UNet(nn.Module):
    def __init__(self, in_ch=3, ch=128, ch_mult=(1, 2, 2, 2), attn=(1,), num_res_blocks=4, dropout=0.1,
                 num_classes=3, groups=32, freq=256):
        super().__init__()
        tdim = 4 * ch
        self.time_embedding = TimeEmbedding(tdim, freq)
        self.class_embedding = nn.Embedding(num_classes + 1, tdim) if num_classes > 0 else None
        self.head = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.downblocks = nn.ModuleList()
        chs, now = [ch], ch
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.downblocks.append(ResBlock(now, ch * m, tdim, dropout, i in attn, groups))
                now = ch * m
                chs.append(now)
            if i != len(ch_mult) - 1:
                self.downblocks.append(DownSample(now))
                chs.append(now)
        self.middleblocks = nn.ModuleList([
            ResBlock(now, now, tdim, dropout, True, groups),
            ResBlock(now, now, tdim, dropout, False, groups),
        ])
        self.upblocks = nn.ModuleList()
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.upblocks.append(ResBlock(chs.pop() + now, ch * m, tdim, dropout, i in attn, groups))
                now = ch * m
            if i != 0:
                self.upblocks.append(UpSample(now))
        self.tail = nn.Sequential(nn.GroupNorm(groups, now), Swish(), nn.Conv2d(now, in_ch, 3, padding=1))

    def forward(self, x, t, labels=None):
        temb = self.time_embedding(t)
        if self.class_embedding is not None and labels is not None:
            temb = temb + self.class_embedding(labels)
        h = self.head(x)
        hs = [h]
        for layer in self.downblocks:
            h = layer(h, temb)
            hs.append(h)
        for layer in self.middleblocks:
            h = layer(h, temb)
        for layer in self.upblocks:
            if isinstance(layer, ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = layer(h, temb)
        return self.tail(h)


SMALL = dict(image_size=16, in_channels=3, channels=16, channel_mult=[1, 2], num_res_blocks=1, attn_levels=[1],
             dropout=0.1, num_classes=2, num_groups=8, norm_eps=1e-5, time_freq_dim=256)


def small_net():
    c = SMALL
    return UNet(c["in_channels"], c["channels"], tuple(c["channel_mult"]), tuple(c["attn_levels"]),
                c["num_res_blocks"], c["dropout"], c["num_classes"], c["num_groups"], c["time_freq_dim"])


def golden(out_dir):
    torch.manual_seed(1234)
    net = small_net().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim == 1 and ("group_norm" in name or "block1.0" in name or "block2.0" in name or "tail.0" in name):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn_like(p))
            elif name == "class_embedding.weight":
                p.copy_(torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
    n = sum(p.numel() for p in net.parameters())
    os.makedirs(out_dir, exist_ok=True)
    torch.save(net.state_dict(), os.path.join(out_dir, "unet_small.pth"))
    s = SMALL["image_size"]
    x = torch.randn(3, SMALL["in_channels"], s, s)
    cases = []
    with torch.no_grad():
        t = torch.tensor([0.0, 500.0, 999.0])
        labels = torch.tensor([0, 1, 2])
        cases.append(dict(name="per_row_t_labels", t=t.tolist(), labels=labels.tolist(),
                          out=net(x, t, labels).flatten().tolist()))
        t1 = torch.tensor([250.0])
        cases.append(dict(name="shared_t_no_labels", t=t1.tolist(), labels=None,
                          out=net(x, t1, None).flatten().tolist()))
    doc = dict(config=SMALL, num_params=n, x_shape=list(x.shape), x=x.flatten().tolist(), cases=cases,
               keys={k: list(v.shape) for k, v in net.state_dict().items()})
    with open(os.path.join(out_dir, "unet_small.json"), "w") as f:
        json.dump(doc, f)
    print(f"wrote {out_dir}/unet_small.pth ({n} params) and unet_small.json")


DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(name, warm, iters, f):
    for _ in range(warm):
        f()
    sync()
    ts = []
    for _ in range(iters):
        s = time.perf_counter()
        f()
        sync()
        ts.append(time.perf_counter() - s)
    m = statistics.median(ts)
    print(f"BENCH torch {name}: median {m * 1e3:.1f} ms  min {min(ts) * 1e3:.1f} ms  (n={iters})", flush=True)
    return m


def bench(iters, which="all", warm=1):
    """Timings on BENCH_DEVICE (default cpu, 2 threads; `BENCH_DEVICE=cuda` for a GPU, where
    BENCH_TF32=0 turns off PyTorch's default TF32 convolutions for an all-f32 comparison and
    BENCH_AMP=bf16 runs the network under bf16 autocast). BENCH_TINY=1 shrinks the network
    (32 channels, 16x16 images) for a quick dry run of the plumbing."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if DEVICE.type == "cuda" and os.environ.get("BENCH_TF32") == "0":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    amp = os.environ.get("BENCH_AMP") == "bf16"
    tiny = os.environ.get("BENCH_TINY") == "1"
    size = 16 if tiny else 64

    def autocast():
        return torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=amp)

    torch.manual_seed(0)
    print("torch", torch.__version__, "threads", torch.get_num_threads(), "device", DEVICE,
          "cudnn tf32", torch.backends.cudnn.allow_tf32, "bf16 autocast", amp, "tiny", tiny,
          "net", os.environ.get("BENCH_NET", "twin"), flush=True)
    net = UNet(ch=32) if tiny else UNet()
    if os.environ.get("BENCH_NET") == "reference":
        net = reference_init(net)
    net = net.to(DEVICE)
    print("params", sum(p.numel() for p in net.parameters()), flush=True)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
    x = torch.randn(16, 3, size, size, device=DEVICE)
    eps = torch.randn(16, 3, size, size, device=DEVICE)
    t = torch.randint(0, 1000, (16,), device=DEVICE).float()
    labels = torch.randint(1, 4, (16,), device=DEVICE)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = net(x, t, labels)
        loss = F.mse_loss(out.float(), eps)
        loss.backward()
        opt.step()

    if which in ("all", "train"):
        timed("unet_train_step(b16,64x64)", warm, iters, step)
        if DEVICE.type == "cuda":
            print(f"torch peak GPU memory (training): {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB",
                  flush=True)
    if which not in ("all", "fwd"):
        return
    net.eval()
    x32 = torch.randn(32, 3, size, size, device=DEVICE)
    l32 = torch.randint(0, 4, (32,), device=DEVICE)
    t500 = torch.tensor([500.0], device=DEVICE)

    def fwd():
        with torch.inference_mode(), autocast():
            net(x32, t500, l32)

    m = timed("unet_forward(b32)", warm, iters, fwd)
    print(f"BENCH torch ddim50_cfg_per_image (50 x forward(b32) / 16, network only): {m * 50 / 16 * 1e3:.1f} ms",
          flush=True)


def linear_alpha_bar(T=1000, lo=1e-4, hi=0.02):
    """The linear schedule's cumulative products (float64, as diffuse's tables)."""
    betas = torch.linspace(lo, hi, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def bench_args(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="unet_torch.py step|sample")
    ap.add_argument("--device", default=os.environ.get("BENCH_DEVICE", "cuda"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast")
    ap.add_argument("--tf32", choices=["default", "on", "off"], default="default",
                    help="default: PyTorch's (TF32 convolutions, f32 matmuls)")
    ap.add_argument("--cfg-scale", type=float, default=7.5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    return ap.parse_args(argv)


def setup(a):
    dev = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.tf32 != "default":
        on = a.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on
    torch.manual_seed(a.seed)
    return dev


def dev_sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def mem_report(dev):
    if dev.type != "cuda":
        return {}
    return dict(peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                peak_reserved_bytes=torch.cuda.max_memory_reserved())


def step_mode(argv, started):
    """Training steps: forward + MSE + backward + Adam + EMA (decay 0.9999 with the same
    warm-up as diffuse's Ema), on a fixed batch, one synchronisation per step."""
    a = bench_args(argv)
    steps = 20 if a.steps is None else a.steps
    dev = setup(a)
    b, size = a.batch, a.image_size
    net = UNet(ch=a.channels).to(dev).train()
    params = [p for p in net.parameters()]
    opt = torch.optim.Adam(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
    ema = [p.detach().clone() for p in params]
    ema_updates = [0]
    ab = linear_alpha_bar()
    g = torch.Generator().manual_seed(a.seed)
    x0 = (torch.randn(b, 3, size, size, generator=g) * 0.5).clamp(-1, 1)
    eps = torch.randn(b, 3, size, size, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    labels = torch.randint(1, 4, (b,), generator=g)
    s1 = ab[t].sqrt().float()[:, None, None, None]
    s2 = (1 - ab[t]).sqrt().float()[:, None, None, None]
    x_t = (s1 * x0 + s2 * eps).to(dev)
    eps, t, labels = eps.to(dev), t.float().to(dev), labels.to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.amp):
            out = net(x_t, t, labels)
        loss = F.mse_loss(out.float(), eps)
        loss.backward()
        opt.step()
        k = ema_updates[0]
        d = min(0.9999, (1.0 + k) / (10.0 + k))
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1.0 - d)
        ema_updates[0] += 1
        return loss

    t1 = time.perf_counter()
    first = step().item()
    dev_sync(dev)
    first_only = time.perf_counter() - t1
    first_step_s = time.perf_counter() - started
    for _ in range(a.warmup):
        step()
        dev_sync(dev)
    ts, loss = [], None
    for i in range(steps):
        s = time.perf_counter()
        loss = step()
        dev_sync(dev)
        ts.append((time.perf_counter() - s) * 1e3)
    last = loss.item() if loss is not None else first
    r = dict(mode="step", framework="torch " + torch.__version__, device=str(dev),
             precision="bf16-autocast" if a.amp else "f32",
             cudnn_tf32=torch.backends.cudnn.allow_tf32,
             matmul_tf32=torch.backends.cuda.matmul.allow_tf32, batch=b, image_size=size,
             channels=a.channels, params=sum(p.numel() for p in params), first_step_s=first_step_s,
             first_step_only_s=first_only, losses=[first], last_loss=last, warmup=a.warmup,
             step_ms=ts, median_ms=statistics.median(ts) if ts else float("nan"),
             min_ms=min(ts) if ts else float("nan"), **mem_report(dev))
    print(f"step torch {r['precision']} b{b} {size}x{size}: first step {first_step_s:.2f} s, "
          f"median {r['median_ms']:.2f} ms, min {r['min_ms']:.2f} ms over {steps} steps, "
          f"last loss {last:.6f}", flush=True)
    if a.json:
        print(json.dumps(r), flush=True)


def sample_mode(argv, started):
    """DDIM (eta 0, leading spacing) with CFG over one batch, the whole loop timed after a
    2-step warm-up run, ending with the images on the host (as diffuse's Generator)."""
    a = bench_args(argv)
    steps = 50 if a.steps is None else a.steps
    dev = setup(a)
    b, size, w = a.batch, a.image_size, a.cfg_scale
    net = UNet(ch=a.channels).to(dev).eval()
    ab = linear_alpha_bar()
    labels = torch.tensor([1 + i % 3 for i in range(b)], device=dev)
    both = torch.cat([labels, torch.zeros_like(labels)])

    def run(n):
        ts = list(range(0, 1000, 1000 // n))[::-1]
        x = torch.randn(b, 3, size, size, device=dev)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.amp):
            for i, ti in enumerate(ts):
                tt = torch.full((2 * b,), float(ti), device=dev)
                e = net(torch.cat([x, x]), tt, both).float()
                e_c, e_u = e[:b], e[b:]
                e = (1 + w) * e_c - w * e_u
                a_t = float(ab[ti])
                a_p = float(ab[ts[i + 1]]) if i + 1 < len(ts) else 1.0
                x0 = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
                x = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p) * e
        return x.cpu()

    t0 = time.perf_counter()
    run(2)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = run(steps)
    dt = time.perf_counter() - t0
    r = dict(mode="sample", framework="torch " + torch.__version__, device=str(dev), batch=b,
             steps=steps, cfg_scale=w, image_size=size, channels=a.channels, warmup_s=warm,
             run_s=[dt], per_image_ms=dt / b * 1e3, mean=float(x.mean()), **mem_report(dev))
    print(f"sample torch DDIM-{steps} CFG w={w} b{b}: {r['per_image_ms']:.2f} ms per image", flush=True)
    if a.json:
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "bench"
    if mode in ("step", "sample"):
        (step_mode if mode == "step" else sample_mode)(sys.argv[2:], STARTED)
    elif mode == "golden":
        golden(sys.argv[2] if len(sys.argv) > 2 else "tests/golden")
    else:
        bench(int(sys.argv[2]) if len(sys.argv) > 2 else 3, sys.argv[3] if len(sys.argv) > 3 else "all",
              int(sys.argv[4]) if len(sys.argv) > 4 else 1)
