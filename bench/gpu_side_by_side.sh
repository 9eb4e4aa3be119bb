#!/usr/bin/env bash
# GPU side by side at the AFHQ configuration (batch 16, 64×64): burn's Vulkan backend
# (`diffuse` built with `--features vulkan`) against the PyTorch/CUDA twin, on the device machine.
#   BIN: folder holding the Vulkan builds of `unet_bench` and `diffuse` (default .gpu)
#   OUT: folder for the logs (default out/gpu)
# The Vulkan loader comes from .gl/*.deb (Debian's libvulkan1) when the machine has none.
set -u
BIN=${BIN:-.gpu}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
echo "== burn (vulkan)"
DIFFUSE_DEVICE=vulkan timeout 240 "$BIN/unet_bench" 10 all 3 2>&1 | tee "$OUT/burn.log"
echo "== torch (cuda, defaults: TF32 convolutions)"
BENCH_DEVICE=cuda timeout 120 python3 bench/unet_torch.py bench 10 all 3 2>&1 | tee "$OUT/torch.log"
echo "== torch (cuda, TF32 off: all f32)"
BENCH_DEVICE=cuda BENCH_TF32=0 timeout 120 python3 bench/unet_torch.py bench 10 all 3 2>&1 | tee "$OUT/torch_f32.log"
if [ "${DEMO:-1}" = 1 ]; then
  echo "== digits demo on the GPU"
  time timeout 200 "$BIN/diffuse" image run --data digits --device vulkan --out /tmp/demo 2>&1 \
    | grep -v "^\s*$" | tail -40 | tee "$OUT/demo.log"
fi
