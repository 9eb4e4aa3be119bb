#!/usr/bin/env bash
# The GPU verdict: one device call (≤ 8 minutes) that says whether diffuse's CUDA path works and
# how it compares with PyTorch on the same machine, at the course's AFHQ configuration (UNet
# 58.8 M parameters, 64×64, 3 classes, batch 16). It prints, in this order, each line as soon as
# it is known:
#   (1) does the CUDA runtime start (`diffuse bench probe`: versions of the binary's CUDA
#       bindings, the driver and NVRTC, and the rule bindings ≤ NVRTC ≤ driver);
#   (2) the loss of a fixed seeded batch (dropout off) before and after one training step, on
#       CUDA against the CPU (flex) on the same machine: relative differences (target ≤ 1e-3);
#   (3) time to the first training step from process start, cold (empty caches, or CACHE_IN's)
#       and warm (a second process reading the caches the first wrote);
#   (4) median training step (forward + ε-MSE + backward + Adam + EMA, fixed batch on the
#       device, one synchronisation per step on both sides): diffuse f32 vs PyTorch default
#       (TF32 convolutions), diffuse bf16 vs PyTorch bf16 autocast;
#   (5) DDIM-50 with CFG (w = 7.5), 16 images, per image: diffuse f32 vs PyTorch default;
#   (6) peak GPU memory (nvidia-smi per stage, burn's pools, PyTorch's allocator);
#   (7) GPU utilisation sampled by nvidia-smi every 100 ms during the timed steps.
# Every stage has its own time limit (and all of them one overall budget, TOTAL); a stage that
# runs out prints TIMEOUT and the script goes on, so a partial run still returns a verdict.
# It leaves exactly two files in $OUT: verdict.txt (the lines above) and verdict-logs.tar.xz
# (every log, the nvidia-smi samples, the JSON reports, and the cache folder, so the next call
# can start warm with CACHE_IN).
#
# ---- Build here (a CPU machine with Rust), carry, run there (no Rust, no network) ----------
#   # CUDA 13.0 bindings for the H200 machines' driver 580 / NVRTC 13.0 (rule: bindings ≤ NVRTC
#   # ≤ driver; without the pin, a build machine without nvcc gets cudarc's newest, 13.4):
#   CUDARC_CUDA_VERSION=13000 CARGO_TARGET_DIR=target-gpu \
#     cargo build --release --offline --features cuda --bin diffuse
#   mkdir -p .gpu && grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >>.git/info/exclude
#   strip -o .gpu/diffuse target-gpu/release/diffuse && xz -T2 -9 -f .gpu/diffuse   # ~20 MB
#   # optional: a previous verdict's tarball, to start warm:  cp verdict-logs.tar.xz .gpu/
#   device tool:  run  carry: [".gpu"]  timeout_s: 540
#     command: bash bench/gpu_verdict.sh        (or CACHE_IN=.gpu/verdict-logs.tar.xz bash …)
#   The working tree plus .gpu must stay under 64 MiB; files back: at most 16 MiB each, so the
#   tarball drops the compiled-kernel cache when it would not fit (verdict.txt says so).
# ---- Dry run on a CPU machine ------------------------------------------------------------------
#   cargo build --release --bin diffuse && DRY_RUN=1 bash bench/gpu_verdict.sh
#   (the CPU device in place of CUDA, a 32-channel UNet on 16×16 images, 3 timed steps, DDIM-5;
#   PyTorch stages print "torch not available" when python3 cannot import torch).
# ---- Settings ------------------------------------------------------------------------------------
#   OUT        where the two files go (the device tool sets it; default out/verdict)
#   BIN        the diffuse binary (default .gpu/diffuse, decompressed from .gpu/diffuse.xz;
#              dry run: target/release/diffuse)
#   DEVICE     the device under test (default cuda; dry run: cpu — or e.g. wgpu:cpu with a
#              `--features wgpu` build and Mesa's lavapipe)
#   CACHE_IN   a verdict-logs.tar.xz of an earlier call: its cache/ seeds DIFFUSE_CACHE_DIR
#   TOTAL      overall budget in seconds (default 450: the call's 8 minutes less a margin)
#   STEPS, WARMUP   timed and untimed training steps (default 30, 3)
#   PYTHON     the Python that has torch (default python3)
set -u
START=$(date +%s)
DRY=${DRY_RUN:-0}
OUT=${OUT:-out/verdict}
PY=${PYTHON:-python3}
TOTAL=${TOTAL:-450}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/verdict.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
SUMMARY=$OUT/verdict.txt
: >"$SUMMARY"
export DIFFUSE_CACHE_DIR=$OUT/cache
export PYTHONUNBUFFERED=1

if [ "$DRY" = 1 ]; then
  BIN=${BIN:-target/release/diffuse}
  DEV=${DEVICE:-cpu}
  TORCH_DEV=cpu
  NET=(--channels 32 --image-size 16)
  BATCH=4; STEPS=${STEPS:-3}; WARMUP=${WARMUP:-1}; SAMPLE_STEPS=5
  TORCH_THREADS=(--threads 2)
  # (limit s) per stage: the 2-core CPU is slow even for the tiny network.
  T_PROBE=60; T_COLD=300; T_REF=300; T_WARM=300; T_TORCH=120; T_STEP=300; T_SAMPLE=300
  TOTAL=${TOTAL_DRY:-3000}
else
  BIN=${BIN:-.gpu/diffuse}
  DEV=${DEVICE:-cuda}
  TORCH_DEV=cuda
  NET=()
  BATCH=16; STEPS=${STEPS:-30}; WARMUP=${WARMUP:-3}; SAMPLE_STEPS=50
  TORCH_THREADS=()
  # Cold compilation and autotuning of every kernel happens in the first CUDA process (T_COLD)
  # and, for bf16's kernels, in the bf16 step run; the rest is seconds when warm.
  T_PROBE=60; T_COLD=180; T_REF=120; T_WARM=60; T_TORCH=60; T_STEP=150; T_SAMPLE=90
fi
if [ ! -x "$BIN" ] && [ -f "$BIN.xz" ]; then
  xz -dkf "$BIN.xz" && chmod +x "$BIN"
fi

# ---- helpers ---------------------------------------------------------------------------------
say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((TOTAL - ($(date +%s) - START))); }
HAVE_SMI=0
command -v nvidia-smi >/dev/null 2>&1 && [ "$DRY" != 1 -o "${DEV%%:*}" != cpu ] && HAVE_SMI=1

# finish: pack logs (+ cache) into the one tarball and leave only the two files in $OUT.
finish() {
  trap - EXIT INT TERM
  [ -n "${SMI_PID:-}" ] && kill "$SMI_PID" 2>/dev/null
  cp "$SUMMARY" "$LOGS/verdict.txt" 2>/dev/null
  local tarball=$OUT/verdict-logs.tar.xz
  [ -d "$DIFFUSE_CACHE_DIR" ] && mv "$DIFFUSE_CACHE_DIR" "$WORK/cache"
  local parts=(logs)
  [ -d "$WORK/cache" ] && parts+=(cache)
  tar -C "$WORK" -cJf "$tarball" "${parts[@]}" 2>/dev/null
  if [ "$(stat -c %s "$tarball" 2>/dev/null || echo 0)" -gt $((15 * 1024 * 1024)) ]; then
    local mb=$(du -sm "$WORK/cache" | cut -f1)
    tar -C "$WORK" -cJf "$tarball" logs
    echo "note: the cache ($mb MB unpacked) made the tarball exceed 15 MiB; it holds the logs only" \
      | tee -a "$SUMMARY"
  fi
  find "$OUT" -mindepth 1 -maxdepth 1 ! -name verdict.txt ! -name verdict-logs.tar.xz \
    -exec rm -rf {} + 2>/dev/null
  rm -rf "$WORK"
  echo "== $OUT: verdict.txt, verdict-logs.tar.xz ($(du -h "$tarball" | cut -f1)); $(($(date +%s) - START)) s"
}
trap finish EXIT
trap 'exit 130' INT TERM

# stage NAME LIMIT CMD…: runs CMD with its output in logs/NAME.log under min(LIMIT, what is left
# of TOTAL), nvidia-smi sampling into logs/NAME.smi meanwhile; sets RC (124: timed out or no
# time left) and records the wall time and end epoch in logs/NAME.time.
stage() {
  local name=$1 limit=$2; shift 2
  local l=$(($(left) - 8))
  [ "$l" -lt "$limit" ] && limit=$l
  if [ "$limit" -lt 5 ]; then
    echo "no time left" >"$LOGS/$name.log"; RC=124; return
  fi
  SMI_PID=
  if [ "$HAVE_SMI" = 1 ]; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
      -lms 100 >"$LOGS/$name.smi" 2>/dev/null &
    SMI_PID=$!
  fi
  local t0=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  RC=$?
  local t1=$(date +%s.%N)
  [ -n "$SMI_PID" ] && { kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; SMI_PID=; }
  echo "$t0 $t1 $RC $limit" >"$LOGS/$name.time"
  [ "$RC" = 124 ] && echo "TIMEOUT after $limit s" >>"$LOGS/$name.log"
}

# Reading the JSON reports and nvidia-smi samples (python3 is on both machines).
cat >"$WORK/v.py" <<'EOF'
import json, math, os, statistics, sys
from datetime import datetime

LOGS = os.environ["LOGS"]

def rep(name):
    """The JSON report a stage printed last, or None."""
    try:
        lines = open(os.path.join(LOGS, name + ".log"), errors="replace").read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None

def err(name):
    """A failed stage's reason: TIMEOUT, or its last error line."""
    try:
        lines = open(os.path.join(LOGS, name + ".log"), errors="replace").read().splitlines()
    except OSError:
        return "not run"
    if any(l.startswith("TIMEOUT") for l in lines):
        return [l for l in lines if l.startswith("TIMEOUT")][-1]
    if lines == ["no time left"]:
        return "TIMEOUT (no time left of the budget)"
    if lines and lines[0].startswith("skipped"):
        return lines[0]
    for l in lines:
        if "torch not available" in l:
            return "torch not available"
    errs = [l for l in lines if "rror" in l or "panicked" in l]
    return ("FAILED: " + (errs[-1] if errs else (lines[-1] if lines else "no output")))[:300]

def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)

def smi(name):
    """(timestamps, util %, memory MiB) sampled during a stage."""
    ts, util, mem = [], [], []
    try:
        for line in open(os.path.join(LOGS, name + ".smi")):
            p = [x.strip() for x in line.split(",")]
            if len(p) < 3:
                continue
            try:
                t = datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                ts.append(t); util.append(float(p[1])); mem.append(float(p[2]))
            except ValueError:
                pass
    except OSError:
        pass
    return ts, util, mem

def end_epoch(name):
    try:
        return float(open(os.path.join(LOGS, name + ".time")).read().split()[1])
    except (OSError, IndexError, ValueError):
        return None

def gib(b):
    return f"{b / 2**30:.2f} GiB"

def fmt_s(x):
    return f"{x:.1f} s" if x >= 10 else f"{x:.2f} s"

cmd = sys.argv[1]
if cmd == "probe":
    r = rep("probe")
    if r is None:
        print(f"(1) {os.environ['DEV']} runtime: {err('probe')}")
    else:
        v = r.get("cuda")
        ver = ""
        if v:
            f = lambda x: "unknown" if x is None else f"{x // 1000}.{(x % 1000) // 10}"
            ver = (f"; CUDA bindings {f(v['bindings'])}, driver {f(v['driver'])}, NVRTC {f(v['nvrtc'])}"
                   + (f", {v['device_name']}" if v.get("device_name") else ""))
        probs = r.get("problems") or []
        print(f"(1) {r['device']} runtime: STARTS (opened and proved in {fmt_s(r['open_s'])}){ver}"
              + ("; WARNING: " + " | ".join(probs) if probs else "; bindings ≤ NVRTC ≤ driver holds" if v else ""))
elif cmd == "first-loss":
    dev, ref = rep("first_loss_dev"), rep("first_loss_ref")
    if dev is None or ref is None:
        why = err("first_loss_dev") if dev is None else err("first_loss_ref") + " (CPU reference)"
        print(f"(2) first-step loss vs CPU: {why}")
    else:
        r0, r1 = rel(dev["losses"][0], ref["losses"][0]), rel(dev["losses"][1], ref["losses"][1])
        ok = "PASS" if max(r0, r1) <= 1e-3 else "FAIL"
        # The loss barely depends on the network at initialisation (last conv at gain 1e-5):
        # the prediction's mean square and the gradient norm are the sharp checks.
        ro = rel(dev["out_ms"], ref["out_ms"]) if dev.get("out_ms") and ref.get("out_ms") else float("nan")
        rg = rel(dev["grad_norm"], ref["grad_norm"]) if dev.get("grad_norm") and ref.get("grad_norm") else float("nan")
        sharp = "ok" if max(ro, rg) <= 1e-2 else "CHECK"
        print(f"(2) first-step loss, fixed seeded batch b{dev['batch']} (dropout off), f32: "
              f"{dev['device']} {dev['losses'][0]:.7f} vs cpu {ref['losses'][0]:.7f} (rel diff {r0:.1e}); "
              f"after one step {dev['losses'][1]:.7f} vs {ref['losses'][1]:.7f} (rel diff {r1:.1e}); "
              f"target ≤ 1e-3: {ok}. Sharper: mean(prediction²) rel diff {ro:.1e}, "
              f"gradient norm rel diff {rg:.1e} (≤ 1e-2: {sharp}; TF32 kernels alone give ~1e-3)")
elif cmd == "first-loss-bf16":
    dev, ref = rep("first_loss_bf16"), rep("first_loss_ref")
    if dev is None or ref is None:
        print(f"(2b) bf16 first-step loss vs CPU f32: {err('first_loss_bf16') if dev is None else 'no CPU reference'}")
    else:
        r0, r1 = rel(dev["losses"][0], ref["losses"][0]), rel(dev["losses"][1], ref["losses"][1])
        ro = rel(dev["out_ms"], ref["out_ms"]) if dev.get("out_ms") and ref.get("out_ms") else float("nan")
        rg = rel(dev["grad_norm"], ref["grad_norm"]) if dev.get("grad_norm") and ref.get("grad_norm") else float("nan")
        print(f"(2b) bf16 mixed precision vs CPU f32: first loss rel diff {r0:.1e}, after one step "
              f"{r1:.1e}; mean(prediction²) {ro:.1e}, gradient norm {rg:.1e} (bf16 keeps ~3 "
              f"significant digits: expect ~1e-2 on the sharp checks)")
elif cmd == "cold":
    cold, warm = rep("first_loss_dev"), rep("first_loss_warm")
    label = os.environ.get("COLD_LABEL", "cold")
    a = (f"{fmt_s(cold['first_step_s'])} (device open {fmt_s(cold['open_s'])})" if cold else err("first_loss_dev"))
    b = (f"{fmt_s(warm['first_step_s'])} (device open {fmt_s(warm['open_s'])})" if warm else err("first_loss_warm"))
    b_ = (cold or warm or {}).get("batch", "?")
    print(f"(3) time to first training step (process start → first step done, f32 b{b_}): "
          f"{label} {a}; warm caches (second process) {b}; cache folder "
          f"{os.environ.get('CACHE_MB1') or 0} MB after the first process, "
          f"{os.environ.get('CACHE_MB2') or 0} MB after the second")
elif cmd == "step":
    prec = sys.argv[2]
    d, t = rep(f"step_{prec}"), rep(f"torch_step_{prec}")
    tname = "PyTorch default (TF32 convs)" if prec == "f32" else "PyTorch bf16 autocast"
    ds = f"{d['median_ms']:.2f} ms (min {d['min_ms']:.2f}, n={len(d['step_ms'])}; first step {fmt_s(d['first_step_s'])})" if d else err(f"step_{prec}")
    ts = f"{t['median_ms']:.2f} ms (min {t['min_ms']:.2f})" if t else err(f"torch_step_{prec}")
    ratio = ""
    if d and t:
        x = d["median_ms"] / t["median_ms"]
        ratio = f"; diffuse/PyTorch {x:.2f}× (target ≤ 1.25×: {'PASS' if x <= 1.25 else 'FAIL'})"
    tag = "(4)" if prec == "f32" else "(4b)"
    print(f"{tag} median training step b{(d or t or {}).get('batch', '?')}: diffuse {prec} {ds} | {tname} {ts}{ratio}")
elif cmd == "sample":
    d, t = rep("sample"), rep("torch_sample")
    ds = f"{d['per_image_ms']:.1f} ms/image (b{d['batch']}, DDIM-{d['steps']}, warm-up {fmt_s(d['warmup_s'])})" if d else err("sample")
    ts = f"{t['per_image_ms']:.1f} ms/image" if t else err("torch_sample")
    ratio = f"; diffuse/PyTorch {d['per_image_ms'] / t['per_image_ms']:.2f}×" if d and t else ""
    print(f"(5) DDIM with CFG w=7.5 per image: diffuse f32 {ds} | PyTorch default {ts}{ratio}")
elif cmd == "memory":
    parts = []
    for name, label in [("step_f32", "diffuse f32"), ("torch_step_f32", "torch f32"),
                        ("step_bf16", "diffuse bf16"), ("torch_step_bf16", "torch bf16"),
                        ("sample", "diffuse sample"), ("torch_sample", "torch sample")]:
        r = rep(name)
        bits = []
        _, _, mem = smi(name)
        if mem:
            bits.append(f"nvidia-smi {max(mem) / 1024:.2f} GiB")
        if r and r.get("pool_reserved_bytes") is not None:
            bits.append(f"pools {gib(r['pool_reserved_bytes'])}")
        if r and r.get("peak_reserved_bytes") is not None:
            bits.append(f"allocator peak {gib(r['peak_allocated_bytes'])} (reserved {gib(r['peak_reserved_bytes'])})")
        if bits:
            parts.append(f"{label}: " + ", ".join(bits))
    print("(6) peak GPU memory: " + ("; ".join(parts) if parts else "n/a (no nvidia-smi, and the CPU backend has no pools)"))
elif cmd == "util":
    parts = []
    for name, label in [("step_f32", "diffuse f32"), ("torch_step_f32", "torch f32"),
                        ("step_bf16", "diffuse bf16"), ("torch_step_bf16", "torch bf16")]:
        ts, util, _ = smi(name)
        r, end = rep(name), end_epoch(name)
        if not ts:
            continue
        # The timed steps are the last sum(step_ms) before the process ended.
        if r and end:
            span = sum(r["step_ms"]) / 1e3
            w = [u for t, u in zip(ts, util) if end - span - 0.5 <= t <= end]
            if w:
                parts.append(f"{label} {statistics.mean(w):.0f}% (median {statistics.median(w):.0f}%, {len(w)} samples)")
                continue
        parts.append(f"{label} {statistics.mean(util):.0f}% (whole stage)")
    print("(7) GPU utilisation during the timed steps: " + ("; ".join(parts) if parts else "n/a (no nvidia-smi)"))
EOF
export LOGS DEV
v() { python3 "$WORK/v.py" "$@" | tee -a "$SUMMARY"; }

# ---- the machine -----------------------------------------------------------------------------
{
  echo "verdict $(date -u +%FT%TZ), device $DEV, dry run $DRY, budget $TOTAL s"
  echo "git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo +dirty)"
  echo "binary $BIN: $(timeout 10 "$BIN" --version 2>&1 | head -1)"
  [ "$HAVE_SMI" = 1 ] && timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  command -v nvcc >/dev/null 2>&1 && timeout 20 nvcc --version | tail -2 | head -1
  echo "cpu: $(nproc) cores"
} >"$LOGS/machine.txt" 2>&1
cat "$LOGS/machine.txt" | tee -a "$SUMMARY"
if [ "${DEV%%:*}" = cuda ]; then
  # cubecl compiles kernels at run time with NVRTC, which needs the CUDA headers and libnvrtc:
  # the toolkit that ships nvcc.
  if [ -z "${CUDA_PATH:-}" ]; then
    for d in /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x/x)")")"; do
      [ -f "$d/include/cuda.h" ] && export CUDA_PATH=$d && break
    done
  fi
  for d in "${CUDA_PATH:-/usr/local/cuda}/lib64" "${CUDA_PATH:-/usr/local/cuda}/targets/x86_64-linux/lib"; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  echo "CUDA_PATH=${CUDA_PATH:-not found}" >>"$LOGS/machine.txt"
fi
COLD_LABEL=cold
if [ -n "${CACHE_IN:-}" ]; then
  if tar -C "$WORK" -xJf "$CACHE_IN" cache 2>/dev/null && [ -d "$WORK/cache" ]; then
    mv "$WORK/cache" "$DIFFUSE_CACHE_DIR"
    COLD_LABEL="first process (caches from CACHE_IN)"
  else
    say "note: CACHE_IN=$CACHE_IN holds no cache/; starting cold"
  fi
fi
export COLD_LABEL
HAVE_TORCH=1
if ! timeout 60 "$PY" -c 'import torch' >/dev/null 2>&1; then
  HAVE_TORCH=0
fi
torch_stage() { # NAME LIMIT ARGS…: a PyTorch stage, or its "torch not available" log
  local name=$1 limit=$2; shift 2
  if [ "$HAVE_TORCH" = 1 ]; then
    stage "$name" "$limit" "$PY" bench/torch/unet_torch.py "$@" --device "$TORCH_DEV" \
      "${TORCH_THREADS[@]}" --json
  else
    echo "torch not available ($PY cannot import torch)" >"$LOGS/$name.log"
  fi
}
[ "$HAVE_TORCH" = 1 ] || say "note: torch not available ($PY cannot import torch): PyTorch stages skipped"

# ---- (1) does the runtime start --------------------------------------------------------------
stage probe "$T_PROBE" "$BIN" bench probe --device "$DEV" --json
v probe
DEV_OK=0
grep -q '^{' "$LOGS/probe.log" && DEV_OK=1

# ---- (2) first-step loss against the CPU; (3) cold and warm start ------------------------------
FL=(bench first-loss --batch "$BATCH" "${NET[@]}" --json -q)
if [ "$DEV_OK" = 1 ]; then
  stage first_loss_dev "$T_COLD" "$BIN" "${FL[@]}" --device "$DEV"
else
  echo "skipped: $DEV did not start" >"$LOGS/first_loss_dev.log"
fi
CACHE_MB1=$(du -sm "$DIFFUSE_CACHE_DIR" 2>/dev/null | cut -f1)
stage first_loss_ref "$T_REF" "$BIN" "${FL[@]}" --device cpu
v first-loss
if [ "$DEV_OK" = 1 ]; then
  stage first_loss_warm "$T_WARM" "$BIN" "${FL[@]}" --device "$DEV"
fi
CACHE_MB2=$(du -sm "$DIFFUSE_CACHE_DIR" 2>/dev/null | cut -f1)
export CACHE_MB1 CACHE_MB2
v cold

# ---- (4) training steps, each pair back to back ----------------------------------------------
ST=(bench step --batch "$BATCH" "${NET[@]}" --steps "$STEPS" --warmup "$WARMUP" --json -q)
TS=(step --batch "$BATCH" --channels "${NET[1]:-128}" --image-size "${NET[3]:-64}" --steps "$STEPS" --warmup "$WARMUP")
torch_stage torch_step_f32 "$T_TORCH" "${TS[@]}"
[ "$DEV_OK" = 1 ] && stage step_f32 "$T_STEP" "$BIN" "${ST[@]}" --device "$DEV" --precision f32
v step f32
torch_stage torch_step_bf16 "$T_TORCH" "${TS[@]}" --amp
[ "$DEV_OK" = 1 ] && stage step_bf16 "$T_STEP" "$BIN" "${ST[@]}" --device "$DEV" --precision bf16
v step bf16

# ---- (5) sampling ------------------------------------------------------------------------------
torch_stage torch_sample "$T_TORCH" sample --batch 16 --channels "${NET[1]:-128}" \
  --image-size "${NET[3]:-64}" --steps "$SAMPLE_STEPS"
[ "$DEV_OK" = 1 ] && stage sample "$T_SAMPLE" "$BIN" bench sample --batch 16 "${NET[@]}" \
  --steps "$SAMPLE_STEPS" --json -q --device "$DEV"
v sample

# ---- (6) memory, (7) utilisation ----------------------------------------------------------------
v memory
v util

# ---- extra, if time is left: bf16 mixed precision's first-step loss against the CPU's f32 ------
if [ "$DEV_OK" = 1 ] && [ "$(left)" -gt 40 ]; then
  stage first_loss_bf16 "$T_WARM" "$BIN" "${FL[@]}" --device "$DEV" --precision bf16
  v first-loss-bf16
fi
