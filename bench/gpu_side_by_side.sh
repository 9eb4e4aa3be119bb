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
# Builds with the Vulkan backend are large (~85 MB each); they may travel xz-compressed.
for f in "$BIN"/*.xz; do [ -e "$f" ] && xz -dkf "$f" && chmod +x "${f%.xz}"; done
export PYTHONUNBUFFERED=1
# Vulkan loader and GL vendor-neutral dispatch (Debian's libvulkan1, libglvnd0, …) from .gl.
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd*.json \
  /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1)
echo "vulkan ICD: ${icd:-none found}"
[ -n "$icd" ] && export VK_DRIVER_FILES=$icd
ldconfig -p | grep -E "libvulkan.so.1|libGLX_nvidia|libGLdispatch|libnvidia-glcore" | head
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
echo "== burn (vulkan)"
VK_LOADER_DEBUG=${VK_LOADER_DEBUG:-error} DIFFUSE_DEVICE=vulkan timeout 200 "$BIN/unet_bench" 20 all 3 2>&1 | tee "$OUT/burn.log"
[ "${TORCH:-1}" = 1 ] || exit 0
echo "== torch (cuda, defaults: TF32 convolutions)"
BENCH_DEVICE=cuda timeout 120 python3 bench/unet_torch.py bench 20 all 3 2>&1 | tee "$OUT/torch.log"
echo "== torch (cuda, TF32 off: all f32)"
BENCH_DEVICE=cuda BENCH_TF32=0 timeout 120 python3 bench/unet_torch.py bench 20 all 3 2>&1 | tee "$OUT/torch_f32.log"
if [ "${DEMO:-1}" = 1 ]; then
  echo "== digits demo on the GPU"
  time timeout 150 "$BIN/diffuse" image run --data digits --device vulkan --out /tmp/demo 2>&1 \
    | grep -v "^\s*$" | tail -40 | tee "$OUT/demo.log"
fi
