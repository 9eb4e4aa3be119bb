"""The course's UNet and diffuse's exports, both ways (issue 21). Not needed by `cargo test`.

The course's `UNet(T, image_resolution, ch, ch_mult, attn, num_res_blocks, dropout, use_cfg,
cfg_dropout, num_classes)` hard-codes 3 input channels, GroupNorm(32) and a 256-wide timestep
sinusoid; `course_unet(**args)` below builds exactly that from `unet_torch.UNet`, the layer-by-
layer twin of the course's network (same modules, same state-dict keys).

  python bench/torch/course_export.py golden tests/golden
      A tiny course network (ch 32, one level) with seeded random weights, saved the way the
      course's `DiffusionModule.save` does: torch.save({"hparams": {"network": <module>,
      "var_scheduler": <module>}, "state_dict": <DiffusionModule state dict: network.*,
      var_scheduler.*>}) -> course_tiny.ckpt; and its outputs on fixed (x, t, class) ->
      course_tiny.json. tests/course_export.rs loads the .ckpt (without running its pickles),
      must reproduce the outputs, and must export the same state dict back.

  python bench/torch/course_export.py roundtrip EXPORT_DIR
      EXPORT_DIR holds `diffuse image export --format course` output (unet.safetensors +
      unet.json). Builds the course's UNet from unet.json, loads the weights with strict=True,
      runs it on fixed inputs, and saves everything again in the course's own .ckpt format as
      EXPORT_DIR/course.ckpt (hparams with the pickled network) for `diffuse image sample
      --ckpt EXPORT_DIR/course.ckpt`. Prints the key count and the output's scale.
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_torch import UNet  # noqa: E402


def course_unet(T, image_resolution, ch, ch_mult, attn, num_res_blocks, dropout, use_cfg, cfg_dropout,
                num_classes):
    """The course's constructor signature over the twin (3 channels, 32 groups, 256 features)."""
    return UNet(3, ch, tuple(ch_mult), tuple(attn), num_res_blocks, dropout,
                num_classes if use_cfg else 0, 32, 256)


class Scheduler(nn.Module):
    """Stands in for the course's `DDPMScheduler`: a module whose buffers land in the state dict."""

    def __init__(self, T=1000, beta_1=1e-4, beta_T=0.02):
        super().__init__()
        betas = torch.linspace(beta_1, beta_T, T)
        self.register_buffer("betas", betas)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0))


class DiffusionModule(nn.Module):
    def __init__(self, network, var_scheduler):
        super().__init__()
        self.network = network
        self.var_scheduler = var_scheduler

    def save(self, path):
        # The course's `save`, verbatim in effect: pickled modules plus the state dict.
        torch.save({"hparams": {"network": self.network, "var_scheduler": self.var_scheduler},
                    "state_dict": self.state_dict()}, path)


TINY = dict(T=1000, image_resolution=8, ch=32, ch_mult=[1], attn=[0], num_res_blocks=1, dropout=0.1,
            use_cfg=True, cfg_dropout=0.1, num_classes=2)


def golden(out_dir):
    torch.manual_seed(21)
    net = course_unet(**TINY).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim == 1:
                p.copy_((1.0 if name.endswith("weight") and ".0." in name else 0.0) + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))
    x = torch.randn(3, 3, 8, 8)
    t = torch.tensor([0.0, 500.0, 999.0])
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        out = net(x, t, labels)
    DiffusionModule(net, Scheduler()).save(os.path.join(out_dir, "course_tiny.ckpt"))
    doc = dict(args=TINY, x=x.flatten().tolist(), t=t.tolist(), labels=labels.tolist(),
               out=out.flatten().tolist(), keys=sorted(net.state_dict().keys()))
    with open(os.path.join(out_dir, "course_tiny.json"), "w") as f:
        json.dump(doc, f)
    print(f"wrote {out_dir}/course_tiny.ckpt and course_tiny.json "
          f"({sum(p.numel() for p in net.parameters())} parameters)")


def roundtrip(export_dir):
    from safetensors.torch import load_file

    with open(os.path.join(export_dir, "unet.json")) as f:
        args = json.load(f)
    net = course_unet(**args["unet"]).eval()
    state = load_file(os.path.join(export_dir, "unet.safetensors"))
    net.load_state_dict(state, strict=True)  # raises on any missing, unexpected or mis-shaped key
    torch.manual_seed(0)
    r = args["unet"]["image_resolution"]
    x = torch.randn(2, 3, r, r)
    with torch.no_grad():
        out = net(x, torch.tensor([10.0, 900.0]), torch.tensor([1, args["unet"]["num_classes"]]))
    s = args["scheduler"]
    DiffusionModule(net, Scheduler(s["num_train_timesteps"], s["beta_1"], s["beta_T"])).save(
        os.path.join(export_dir, "course.ckpt"))
    print(f"strict load of {len(state)} tensors: ok; output rms {out.pow(2).mean().sqrt():.6f}; "
          f"saved {export_dir}/course.ckpt in the course's format")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "golden":
        golden(sys.argv[2])
    elif mode == "roundtrip":
        roundtrip(sys.argv[2])
    else:
        sys.exit(__doc__)
