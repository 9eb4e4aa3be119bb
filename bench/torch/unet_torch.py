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

Only the module layout matters for interop; the weights written by `golden` are random
(not the reference init) so every parameter influences the output.
"""
import json
import math
import os
import statistics
import sys
import time

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


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "bench"
    if mode == "golden":
        golden(sys.argv[2] if len(sys.argv) > 2 else "tests/golden")
    else:
        bench(int(sys.argv[2]) if len(sys.argv) > 2 else 3, sys.argv[3] if len(sys.argv) > 3 else "all",
              int(sys.argv[4]) if len(sys.argv) > 4 else 1)
