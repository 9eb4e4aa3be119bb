#!/usr/bin/env bash
# GPU side by side at the AFHQ configuration (UNet 58.8 M parameters, 64×64, 3 classes):
# diffuse on burn's CUDA backend (f32 and bf16 mixed precision) against the PyTorch twin
# (bench/torch/unet_torch.py: default = TF32 convolutions, and all-f32), then the digits demo end to
# end on the GPU. Sized for one device call of at most 8 minutes (each run has its own timeout;
# PyTorch runs first, so its numbers come back even if a burn run stalls).
#
#   BIN      folder holding the CUDA builds of `diffuse` and `unet_bench` (default .gpu; *.xz
#            files there are decompressed first). Build them here with
#              cargo build --release --features cuda --bin diffuse --example unet_bench
#   OUT      folder for the logs and the summary (default out/gpu)
#   ITERS    timed iterations per workload (default 10, after WARM=3 warm-ups)
#   DEVICE   cuda (default) or vulkan (a `--features vulkan` build; the loader from .gl/*.deb)
#   DEMO=0   skip the digits demo;  TORCH=0  skip PyTorch;  AMP=1  also PyTorch bf16 autocast;
#   OPS=1    also burn's per-op timings (`unet_bench 5 ops 2`: conv, GroupNorm, SiLU, attention,
#            linear, matmul at the AFHQ sizes); budget ~1 more minute
#   DRY_RUN=1  prove the plumbing on a machine without a GPU: the CPU device, a 32-channel
#            network on 16×16 images, 1 iteration, a 20-step demo; BIN defaults to
#            target/release (build `--bin diffuse --example unet_bench` first).
set -u
DRY=${DRY_RUN:-0}
OUT=${OUT:-out/gpu}
ITERS=${ITERS:-10}
WARM=${WARM:-3}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if [ "$DRY" = 1 ]; then
  BIN=${BIN:-target/release}
  DEV=cpu; TORCH_DEV=cpu; ITERS=1; WARM=0
  export UNET_BENCH_TINY=1 BENCH_TINY=1 RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
  DEMO_ARGS=(--steps 20 -n 20 --sample-steps 5 --threads 2)
  T_TORCH=300; T_BURN=300; T_DEMO=300
else
  BIN=${BIN:-.gpu}
  DEV=$DEVICE; TORCH_DEV=cuda
  DEMO_ARGS=()
  # Budget (s): 2 × 35 PyTorch + 2 × 120 burn (run-time kernel compilation and autotuning
  # happen in the warm-up) + 130 demo ≈ 440 s < 480 s.
  T_TORCH=35; T_BURN=120; T_DEMO=130
fi
UNET_BENCH="$BIN/unet_bench"
[ -x "$UNET_BENCH" ] || UNET_BENCH="$BIN/examples/unet_bench"
DIFFUSE="$BIN/diffuse"
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
# Builds may travel xz-compressed (the 64 MiB limit on what travels).
for f in "$BIN"/*.xz; do [ -e "$f" ] && xz -dkf "$f" && chmod +x "${f%.xz}"; done

# --- the machine ---
HAVE_SMI=0
if command -v nvidia-smi >/dev/null 2>&1; then
  HAVE_SMI=1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fi
if [ "$DEV" = cuda ]; then
  # cubecl compiles its kernels at run time with NVRTC and needs the CUDA headers: point it at
  # the toolkit that ships nvcc, and put libnvrtc on the library path.
  if [ -z "${CUDA_PATH:-}" ]; then
    for d in /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x/x)")")"; do
      [ -f "$d/include/cuda.h" ] && export CUDA_PATH=$d && break
    done
  fi
  echo "CUDA_PATH=${CUDA_PATH:-not found}"
  for d in "${CUDA_PATH:-/usr/local/cuda}/lib64" "${CUDA_PATH:-/usr/local/cuda}/targets/x86_64-linux/lib"; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  # Autotuning effort (minimal|balanced|extensive|full): cubecl's default unless set.
  [ -n "${CUBECL_AUTOTUNE_LEVEL:-}" ] && echo "CUBECL_AUTOTUNE_LEVEL=$CUBECL_AUTOTUNE_LEVEL"
fi
if [ "$DEV" = vulkan ]; then
  for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
  ldconfig
  icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd*.json \
    /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1)
  echo "vulkan ICD: ${icd:-none found}"
  [ -n "$icd" ] && export VK_DRIVER_FILES=$icd
fi
"$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' \
  || echo "torch: not importable"

# Runs "$@" under a timeout while sampling the GPU's used memory every 100 ms; appends the
# peak (minus what was in use before) to the log as "peak GPU memory (nvidia-smi): X GiB".
run_logged() {
  local log=$1 secs=$2; shift 2
  local base=0 mon=""
  if [ "$HAVE_SMI" = 1 ]; then
    base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$log.mem" 2>/dev/null &
    mon=$!
  fi
  local t0=$(date +%s.%N)
  timeout "$secs" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local t1=$(date +%s.%N)
  if [ -n "$mon" ]; then
    kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
    sort -n "$log.mem" | tail -1 | awk -v b="$base" '{printf "peak GPU memory (nvidia-smi, process): %.2f GiB\n", ($1-b)/1024}' | tee -a "$log"
  fi
  awk -v a="$t0" -v b="$t1" -v rc="$rc" 'BEGIN { printf "wall %.1f s, exit %s\n", b - a, rc }' | tee -a "$log"
  [ "$rc" = 124 ] && echo "TIMED OUT after $secs s" | tee -a "$log"
  return 0
}

# One summary line per run: the three timings and the memory figures, grepped from its log.
summarize() {
  local name=$1 log=$2
  local tr fw dd mem
  tr=$(grep -o 'unet_train_step[^:]*: median [0-9.]* ms' "$log" | grep -o '[0-9.]* ms' | head -1)
  fw=$(grep -o 'unet_forward[^:]*: median [0-9.]* ms' "$log" | grep -o '[0-9.]* ms' | head -1)
  dd=$(grep -o 'ddim50_cfg_per_image[^:]*: [0-9.]* ms' "$log" | grep -o '[0-9.]* ms$' | head -1)
  mem=$(grep -E 'peak GPU memory|burn GPU memory after training' "$log" | sed 's/^/    /')
  printf '%-28s train b16 %-10s fwd b32 %-10s DDIM-50 CFG/img %-10s\n' \
    "$name" "${tr:-n/a}" "${fw:-n/a}" "${dd:-n/a}" >>"$SUMMARY"
  [ -n "$mem" ] && echo "$mem" >>"$SUMMARY"
}

# --- PyTorch ---
if [ "${TORCH:-1}" = 1 ]; then
  echo "== torch ($TORCH_DEV, defaults: TF32 convolutions)"
  BENCH_DEVICE=$TORCH_DEV run_logged "$OUT/torch.log" $T_TORCH "$PY" bench/torch/unet_torch.py bench "$ITERS" all "$WARM"
  summarize "torch default (TF32)" "$OUT/torch.log"
  echo "== torch ($TORCH_DEV, TF32 off: all f32)"
  BENCH_DEVICE=$TORCH_DEV BENCH_TF32=0 run_logged "$OUT/torch_f32.log" $T_TORCH "$PY" bench/torch/unet_torch.py bench "$ITERS" all "$WARM"
  summarize "torch f32" "$OUT/torch_f32.log"
  if [ "${AMP:-0}" = 1 ]; then
    echo "== torch ($TORCH_DEV, bf16 autocast)"
    BENCH_DEVICE=$TORCH_DEV BENCH_AMP=bf16 run_logged "$OUT/torch_bf16.log" $T_TORCH "$PY" bench/torch/unet_torch.py bench "$ITERS" all "$WARM"
    summarize "torch bf16 autocast" "$OUT/torch_bf16.log"
  fi
fi

# --- diffuse ---
for prec in f32 bf16; do
  echo "== diffuse ($DEV, $prec)"
  DIFFUSE_DEVICE=$DEV UNET_BENCH_PRECISION=$prec run_logged "$OUT/burn_$prec.log" $T_BURN "$UNET_BENCH" "$ITERS" all "$WARM"
  summarize "diffuse $DEV $prec" "$OUT/burn_$prec.log"
done

# --- per-op timings of burn's kernels at the AFHQ sizes (where the time goes, if slow) ---
if [ "${OPS:-0}" = 1 ]; then
  echo "== diffuse ($DEV) building blocks, b32"
  DIFFUSE_DEVICE=$DEV run_logged "$OUT/burn_ops.log" $T_BURN "$UNET_BENCH" 5 ops 2
  grep '^BENCH' "$OUT/burn_ops.log" | sed 's/^/    /' >>"$SUMMARY"
fi

# --- the digits demo end to end (train 1500 steps, sample 2 × 500, judge) ---
if [ "${DEMO:-1}" = 1 ]; then
  echo "== digits demo on $DEV"
  run_logged "$OUT/demo.log" $T_DEMO "$DIFFUSE" image run --data digits --device "$DEV" -q \
    --out /tmp/diffuse-demo "${DEMO_ARGS[@]}"
  acc=$(grep -o 'w = [0-9.]*: [0-9.]*% recognised' "$OUT/demo.log" | tr '\n' ' ')
  wall=$(grep -o '^wall [0-9.]* s, exit [0-9]*' "$OUT/demo.log" | tail -1)
  printf '%-28s %s; %s\n' "digits demo ($DEV)" "${wall:-n/a}" "${acc:-no accuracy line}" >>"$SUMMARY"
  cp /tmp/diffuse-demo/metrics.json "$OUT/demo_metrics.json" 2>/dev/null
fi
echo "== summary"
cat "$SUMMARY"
